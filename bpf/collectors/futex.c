// Futex waits of one process: how long its OS threads sleep in futex(2).
// Attached to the syscalls tracepoints, so while it is on every syscall on
// the node takes the kernel's slow syscall path (~40 ns); the TGID test comes
// first so other processes' futex calls leave at once.
// Defines: TARGET_TGID.
// Wait ops (op & 127, i.e. without PRIVATE/CLOCK_REALTIME): WAIT 0,
// LOCK_PI 6, WAIT_BITSET 9, WAIT_REQUEUE_PI 11, LOCK_PI2 13.

struct gkd_fstart_t { u64 ts; u32 op; u32 pad; };
struct gkd_hkey_t { u32 op; u32 slot; };
struct gkd_tval_t { u64 waits; u64 ns; };

// LRU: a thread killed mid-wait never reaches sys_exit; its entry ages out.
BPF_TABLE("lru_hash", u64, struct gkd_fstart_t, gkd_fstart, 16384);
BPF_HASH(gkd_fhist, struct gkd_hkey_t, u64, 1024);
BPF_HASH(gkd_fthreads, u32, struct gkd_tval_t, 8192);
BPF_HASH(gkd_fops, u32, struct gkd_tval_t, 16);
// 0: timeouts (-ETIMEDOUT), 1: eagain (-EAGAIN: value changed, no sleep)
BPF_ARRAY(gkd_fstats, u64, 2);

TRACEPOINT_PROBE(syscalls, sys_enter_futex) {
    u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) != TARGET_TGID)
        return 0;
    u32 op = args->op & 127;
    if (op != 0 && op != 9 && op != 6 && op != 11 && op != 13)
        return 0;
    struct gkd_fstart_t s = {};
    s.ts = bpf_ktime_get_ns();
    s.op = op;
    gkd_fstart.update(&id, &s);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_futex) {
    u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) != TARGET_TGID)
        return 0;
    struct gkd_fstart_t *s = gkd_fstart.lookup(&id);
    if (!s)
        return 0;
    u64 delta = bpf_ktime_get_ns() - s->ts;
    struct gkd_hkey_t hk = {};
    hk.op = s->op;
    hk.slot = bpf_log2l(delta / 1000);
    gkd_fstart.delete(&id);
    gkd_fhist.increment(hk);

    u32 op = hk.op;
    struct gkd_tval_t zero = {};
    struct gkd_tval_t *ov = gkd_fops.lookup_or_try_init(&op, &zero);
    if (ov) {
        __sync_fetch_and_add(&ov->waits, 1);
        __sync_fetch_and_add(&ov->ns, delta);
    }
    u32 tid = (u32)id;
    struct gkd_tval_t *tv = gkd_fthreads.lookup_or_try_init(&tid, &zero);
    if (tv) {
        __sync_fetch_and_add(&tv->waits, 1);
        __sync_fetch_and_add(&tv->ns, delta);
    }
    long ret = args->ret;
    int idx = -1;
    if (ret == -110)
        idx = 0;
    else if (ret == -11)
        idx = 1;
    if (idx >= 0) {
        u64 *v = gkd_fstats.lookup(&idx);
        if (v)
            __sync_fetch_and_add(v, 1);
    }
    return 0;
}
