/* WL_MEMORY_GENERATIONS: memory that must survive migrations page for page, plus a downtime probe.
 *
 * Every writer vCPU owns `args[0]` bytes (whole pages) and writes them in passes: pass g writes
 * generation g into each page in order, so at any moment pages [0, cursor) hold generation g and
 * pages [cursor, n) hold g - 1 (all zeros while g = 1). A page holds
 *   word 0 = "MEMG" << 32 | vcpu, word 1 = page index, word 2 = generation,
 *   word i (3..511) = mix64(seed ^ page << 20 ^ generation) + i
 * so a page that is lost (zeros), stale (an older generation), torn (part old, part new) or
 * misplaced (another page's content) fails the check.
 *
 * Between pages a writer polls the migration epoch port (0xe0, the machine's restore count).
 * When it changed, the machine was restored elsewhere: the writer verifies every page it owns
 * against (generation, cursor) before writing on, prints the result on the UART, and powers the
 * machine off with R_VERIFY_MISMATCH on the first wrong page.
 *
 * With args[3] = 1 the last vCPU is the gap probe instead of a writer: it reads the TSC in a
 * tight loop and looks at the epoch port every 1 ms; after each migration it prints the largest
 * gap it saw between two consecutive TSC reads since the previous one (the guest-visible
 * downtime, plus any throttling) in microseconds.
 *
 * args[0] = bytes per writer (default 16 MiB), args[1] = bytes per second per writer (0: as fast
 * as it can), args[2] = passes before the writers stop writing and only watch (0: forever),
 * args[3] = 1 for the gap probe, args[4] = power off with success after this many verified
 * migrations (0: never), args[5] = seed. Needs tsc_khz in the parameter block for pacing. */
#include "guest.h"

#define MEMG_MAGIC 0x4d454d47ull
#define WORDS 512

static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

static inline u32 epoch(void) { return inl(EPOCH_PORT); }

static void fill_page(u64 *page, u32 vcpu, u64 index, u64 generation, u64 seed) {
    u64 base = mix64(seed ^ (index << 20) ^ generation);
    page[0] = (MEMG_MAGIC << 32) | vcpu;
    page[1] = index;
    page[2] = generation;
    for (int i = 3; i < WORDS; i++) page[i] = base + (u64)i;
}

/* 0 when the page holds `generation` (all zeros for generation 0), else the first bad word + 1. */
static int check_page(const u64 *page, u32 vcpu, u64 index, u64 generation, u64 seed) {
    if (generation == 0) {
        for (int i = 0; i < WORDS; i++)
            if (page[i]) return i + 1;
        return 0;
    }
    if (page[0] != ((MEMG_MAGIC << 32) | vcpu)) return 1;
    if (page[1] != index) return 2;
    if (page[2] != generation) return 3;
    u64 base = mix64(seed ^ (index << 20) ^ generation);
    for (int i = 3; i < WORDS; i++)
        if (page[i] != base + (u64)i) return i + 1;
    return 0;
}

static volatile u32 verified_migrations;

/* Verifies every page of a writer; returns 0 or R_VERIFY_MISMATCH (after printing the first bad page). */
static int verify_all(u64 *pages, u32 vcpu, u64 count, u64 generation, u64 cursor, u64 seed, u32 seen) {
    for (u64 p = 0; p < count; p++) {
        u64 expected = p < cursor ? generation : generation - 1;
        int bad = check_page(pages + p * WORDS, vcpu, p, expected, seed);
        if (bad) {
            const u64 *page = pages + p * WORDS;
            gprintf("memgen: vcpu %u epoch %u: page %lu at 0x%lx is wrong at word %d: expected generation %lu, page says %lu (word0 %lx)\n",
                    vcpu, seen, p, (u64)page, bad - 1, expected, page[2], page[0]);
            return R_VERIFY_MISMATCH;
        }
    }
    gprintf("memgen: vcpu %u epoch %u: verified %lu pages (generation %lu, cursor %lu)\n", vcpu, seen, count, generation, cursor);
    return 0;
}

static void writer(const struct params *p, u32 vcpu, u32 writers) {
    u64 bytes = p->args[0] ? p->args[0] : (16ull << 20);
    u64 rate = p->args[1], passes = p->args[2], stop_after = p->args[4], seed = p->args[5];
    u64 count = bytes / 4096;
    u64 start = (p->heap_start + (2ull << 20) - 1) & ~((2ull << 20) - 1);
    u64 *pages = (u64 *)(start + (u64)vcpu * count * 4096);
    if (bytes % 4096 || count == 0 || start + (u64)writers * count * 4096 > p->heap_end) {
        gprintf("memgen: %u writers of %lu bytes do not fit in the heap\n", writers, bytes);
        outl(EXIT_PORT, R_BAD_PARAMETERS);
        park();
    }
    if (rate && !p->tsc_khz) {
        gprintf("memgen: pacing needs the TSC frequency\n");
        outl(EXIT_PORT, R_BAD_PARAMETERS);
        park();
    }
    u64 ticks_per_page = rate ? 4096 * p->tsc_khz * 1000 / rate : 0;
    u32 seen = epoch();
    if (vcpu == 0) gprintf("memgen: %u writers of %lu pages at 0x%lx, %lu bytes/s each, epoch %u\n", writers, count, start, rate, seen);
    u64 generation = 1, cursor = 0, next = rdtsc();
    for (;;) {
        if (passes == 0 || generation <= passes) {
            fill_page(pages + cursor * WORDS, vcpu, cursor, generation, seed);
            cursor++;
            if (cursor == count) {
                if (passes && generation == passes) gprintf("memgen: vcpu %u wrote its last pass (%lu)\n", vcpu, generation);
                if (passes == 0 || generation < passes) {
                    generation++;
                    cursor = 0;
                } else {
                    generation++; /* past the last pass: only watch */
                }
            }
            if (ticks_per_page) {
                next += ticks_per_page;
                u64 now = rdtsc();
                if (now > next + ticks_per_page * 64) next = now; /* fell behind (paused): do not burst */
                while (rdtsc() < next) cpu_relax();
            }
        } else {
            u64 until = rdtsc() + p->tsc_khz; /* idle for ~1 ms between looks */
            while (rdtsc() < until) cpu_relax();
        }
        if ((cursor & 255) == 0 || generation > passes) {
            u32 now = epoch();
            if (now != seen) {
                seen = now;
                u64 g = (passes && generation > passes) ? passes : generation;
                u64 c = (passes && generation > passes) ? count : cursor;
                if (verify_all(pages, vcpu, count, g, c, seed, seen)) {
                    outl(EXIT_PORT, R_VERIFY_MISMATCH);
                    park();
                }
                u32 done = __atomic_add_fetch(&verified_migrations, 1, __ATOMIC_SEQ_CST);
                if (stop_after && done == stop_after * writers) {
                    gprintf("memgen: %lu migrations verified by every writer\n", stop_after);
                    outl(EXIT_PORT, R_SUCCESS);
                    park();
                }
            }
        }
    }
}

static void gap_probe(const struct params *p, u32 vcpu) {
    u64 khz = p->tsc_khz;
    if (!khz) {
        gprintf("gapprobe: no TSC frequency\n");
        park();
    }
    u32 seen = epoch();
    u64 previous = rdtsc(), next_look = previous + khz, largest = 0;
    gprintf("gapprobe: vcpu %u watching, TSC %lu kHz\n", vcpu, khz);
    for (;;) {
        u64 now = rdtsc();
        if (now - previous > largest) largest = now - previous;
        previous = now;
        if (now >= next_look) {
            next_look = now + khz;
            u32 e = epoch();
            if (e != seen) {
                seen = e;
                gprintf("gapprobe: epoch %u largest gap %lu us\n", e, largest * 1000 / khz);
                largest = 0;
            }
            previous = rdtsc();
        }
    }
}

__attribute__((noreturn)) void memory_generations(const struct params *p, u32 vcpu, u32 count) {
    int probe = p->args[3] == 1 && count >= 2;
    u32 writers = probe ? count - 1 : count;
    if (probe && vcpu == count - 1) gap_probe(p, vcpu);
    writer(p, vcpu, writers);
    park();
}
