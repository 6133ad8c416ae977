/* Freestanding runtime: memory functions, UART output with a cross-vCPU lock, formatting. */
#include "guest.h"

#define UART 0x3f8

void *memset(void *d, int c, size_t n) {
    u8 *p = d;
    while (n--) *p++ = (u8)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n) {
    u8 *a = d;
    const u8 *b = s;
    while (n--) *a++ = *b++;
    return d;
}

int memcmp(const void *a, const void *b, size_t n) {
    const u8 *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y) return *x < *y ? -1 : 1;
    return 0;
}

size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

u64 mix64(u64 x) { /* splitmix64 finalizer */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static u64 heap_next, heap_limit;

void heap_init(u64 start, u64 end) {
    heap_next = start;
    heap_limit = end;
}

void *heap_alloc(u64 size, u64 align) {
    u64 p = (heap_next + align - 1) & ~(align - 1);
    if (p + size > heap_limit || p + size < p) return 0;
    heap_next = p + size;
    return (void *)p;
}

static volatile int print_lock;

static void uart_put(char c) {
    while (!(inb(UART + 5) & 0x20)) cpu_relax(); /* wait for THR empty */
    outb(UART, (u8)c);
}

static void put_number(char *buf, int *len, u64 value, int base, int width, int is_signed) {
    char digits[24];
    int n = 0, negative = 0;
    if (is_signed && (int64_t)value < 0) {
        negative = 1;
        value = (u64)(-(int64_t)value);
    }
    do {
        digits[n++] = "0123456789abcdef"[value % base];
        value /= base;
    } while (value);
    while (n < width) digits[n++] = '0';
    if (negative) buf[(*len)++] = '-';
    while (n) buf[(*len)++] = digits[--n];
}

/* printf subset: %d %u %x %s %c with l/ll and a zero-padded width; one line at a time under a lock. */
void gprintf(const char *fmt, ...) {
    char buf[256];
    int len = 0;
    va_list ap;
    va_start(ap, fmt);
    for (const char *p = fmt; *p && len < 200; p++) {
        if (*p != '%') {
            buf[len++] = *p;
            continue;
        }
        p++;
        int width = 0, longs = 0;
        if (*p == '0') p++;
        while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
        while (*p == 'l') { longs++; p++; }
        switch (*p) {
        case 'd': put_number(buf, &len, longs ? va_arg(ap, long) : (long)va_arg(ap, int), 10, width, 1); break;
        case 'u': put_number(buf, &len, longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 10, width, 0); break;
        case 'x': put_number(buf, &len, longs ? va_arg(ap, unsigned long) : va_arg(ap, unsigned), 16, width, 0); break;
        case 'c': buf[len++] = (char)va_arg(ap, int); break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s && len < 240) buf[len++] = *s++;
            break;
        }
        default: buf[len++] = *p; break;
        }
    }
    va_end(ap);
    while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE)) cpu_relax();
    for (int i = 0; i < len; i++) uart_put(buf[i]);
    __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE);
}
