// CPU stack sampling of one process: a perf-event (CPU_CLOCK) program runs
// on every CPU at the sampling rate; samples of other processes leave at the
// first test. User stacks are counted in the kernel, keyed by stack id; the
// agent drains the counts and the stacks once per interval.
// Defines: TARGET_TGID, STACK_STORAGE.
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>

BPF_HASH(gkd_counts, int, u64, STACK_STORAGE);
BPF_STACK_TRACE(gkd_stacks, STACK_STORAGE);
// 0: samples of the target, 1: samples without a user stack (lost)
BPF_ARRAY(gkd_cpu_stats, u64, 2);

int gkd_cpu_sample(struct bpf_perf_event_data *ctx) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != TARGET_TGID)
        return 0;
    int idx = 0;
    int id = gkd_stacks.get_stackid(&ctx->regs, BPF_F_USER_STACK);
    if (id < 0) {
        idx = 1;  // -EFAULT (no user stack), -ENOMEM/-EEXIST (map full)
    } else {
        gkd_counts.increment(id);
    }
    u64 *v = gkd_cpu_stats.lookup(&idx);
    if (v)
        __sync_fetch_and_add(v, 1);
    return 0;
}
