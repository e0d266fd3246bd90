// Exact goroutine counter: +1 at every RET of runtime.newproc1 (a goroutine
// was created), +1 at the entry of runtime.goexit1 (one finished). Entry
// uprobes only: uretprobes crash Go programs. Per-CPU counters: no atomics.
// Defines: TARGET_TGID.
#include <uapi/linux/ptrace.h>

BPF_PERCPU_ARRAY(gkd_gcount, u64, 2);

int gkd_g_new(struct pt_regs *ctx) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_TGID)
        return 0;
    int k = 0;
    u64 *v = gkd_gcount.lookup(&k);
    if (v)
        (*v)++;
    return 0;
}

int gkd_g_exit(struct pt_regs *ctx) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_TGID)
        return 0;
    int k = 1;
    u64 *v = gkd_gcount.lookup(&k);
    if (v)
        (*v)++;
    return 0;
}
