/* WL_HEARTBEAT: the guest side of VM monitoring. Sends a tools heartbeat (port 0xf0) every args[0]
 * pause iterations (default 2,000,000) and, after args[1] heartbeats (0: never), stops and spins
 * forever as a hung guest would. Prints each boot so a host can count resets. */
#include "guest.h"

#define TOOLS_HEARTBEAT_PORT 0xf0

int heartbeat(const struct params *p) {
    u64 interval = p->args[0] ? p->args[0] : 2000000, beats = p->args[1];
    gprintf("heartbeat: guest up, beating every %lu pauses%s\n", interval, beats ? "" : " forever");
    for (u64 n = 0; beats == 0 || n < beats; n++) {
        outl(TOOLS_HEARTBEAT_PORT, (u32)n);
        for (u64 k = 0; k < interval; k++) cpu_relax();
    }
    gprintf("heartbeat: hanging after %lu beats\n", beats);
    for (;;) cpu_relax();
}
