// GC cycles of a Go program: uprobes on runtime.gcStart (entry: a cycle may
// begin; called a few times per cycle at most) and runtime.gcMarkTermination
// (entry: exactly once per completed cycle, with the world stopped). The time
// from the first gcStart to gcMarkTermination is the cycle's concurrent mark
// phase. A few hits per GC cycle: cheap even at ~10 µs per uprobe hit.
// Defines: TARGET_TGID.
#include <uapi/linux/ptrace.h>

// 0: completed cycles, 1: sum of cycle ns, 2: start of the running cycle
// (0 = none), 3: longest cycle ns since the last read
BPF_ARRAY(gkd_gc, u64, 4);

int gkd_gc_start(struct pt_regs *ctx) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_TGID)
        return 0;
    int k = 2;
    u64 *start = gkd_gc.lookup(&k);
    if (start && *start == 0)
        *start = bpf_ktime_get_ns();
    return 0;
}

int gkd_gc_term(struct pt_regs *ctx) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_TGID)
        return 0;
    u64 now = bpf_ktime_get_ns();
    int k = 0;
    u64 *cycles = gkd_gc.lookup(&k);
    if (cycles)
        __sync_fetch_and_add(cycles, 1);
    k = 2;
    u64 *start = gkd_gc.lookup(&k);
    if (!start || *start == 0)
        return 0;
    u64 d = now - *start;
    *start = 0;
    k = 1;
    u64 *sum = gkd_gc.lookup(&k);
    if (sum)
        __sync_fetch_and_add(sum, d);
    k = 3;
    u64 *mx = gkd_gc.lookup(&k);
    if (mx && d > *mx)
        *mx = d;
    return 0;
}
