/*
 * test_sim.c -- the cluster under simulation (DESIGN.md "Simulation").
 *
 * First the simulator checks itself (sim.h): ties fire in scheduling order,
 * stopped timers never fire, the network delivers, delays, reorders, loses
 * and cuts as configured and answers every request exactly once, the store
 * acknowledges in FIFO order and a crash keeps or drops exactly the
 * unacknowledged writes, and a seed replays to the same trace.
 *
 * Then whole clusters of coordinators (3 or 5 nodes, vnodes 16, N = 3),
 * deterministically from a seed, over many seeds:
 *  1. no faults, R + W > N, writes to a key sequential (each key has one
 *     writer): every read returns the last write acknowledged before it
 *     started, or a newer one, and never siblings; the writer's own read
 *     after its acknowledged write returns exactly that write (deletes: nil).
 *  2. faults (loss, partitions, isolated nodes, crashes with and without
 *     loss of unsynced writes, restarts, failing store writes) and
 *     concurrent writers on few keys: after healing, draining and rounds of
 *     read repair, every acknowledged write is present as a sibling or
 *     superseded -- transitively -- by a present write whose ctx came from a
 *     read that returned it.  The checker tracks that causality itself, so a
 *     write dropped because its clock merely looks older is caught.
 *  3. after the repair, the N replicas of every key hold equal records (the
 *     clocks compare EQUAL, the same siblings).
 * Plus: every client call is answered exactly once, reads never return a
 * value nobody wrote, a crashed node restarts on its store, read repair
 * brings a restarted node up to date, two failed replicas give
 * QUORUM_FAILED, writes one coordinator stamps without having seen
 * each other (a blind write after another; two writes from one read) stay
 * siblings, and a member the ring says is down is never asked while
 * writes go on (sloppy quorum), and once back a get at r = 1 through it
 * never answers nil for a key it missed (notfound_ok = false).
 *
 * Seeds: MOOR_SIM_SEEDS=<count> (default 200) runs seeds 1..count;
 * MOOR_SIM_SEED=<n> replays exactly one, verbosely (MOOR_SIM_VERBOSE=1
 * also traces every client call).  A failing seed is printed with the
 * history of the key at fault (every write: client, coordinator, outcome,
 * the values its ctx had read, its clock) and what each replica holds.
 * TEST: MOOR_SIM_CLOCK_ORDER=1 weakens property 2 to the clock's view (a
 * write whose acknowledged clock descends from w's also supersedes w), to
 * look for other failures while a lost-update bug of that kind stands.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <msgpack.h>

#include "cluster/coord.h"
#include "cluster/hints.h"
#include "cluster/record.h"
#include "cluster/ring.h"
#include "cluster/vclock.h"
#include "util/mp.h"
#include "util/err.h"
#include "sim.h"
#include "testutil.h"

/* ================= the simulator's own tests ================= */

typedef struct order_log {
    int fired[16];
    int n;
} order_log_t;

typedef struct order_ev {
    order_log_t *log;
    int tag;
} order_ev_t;

static void order_fire(sim_t *s, sim_ev_t *ev)
{
    order_ev_t *o = ev->p;
    (void)s;
    o->log->fired[o->log->n++] = o->tag;
}

static void order_push(sim_t *s, order_log_t *log, uint64_t delay, int tag)
{
    order_ev_t *o = malloc(sizeof(*o));
    o->log = log;
    o->tag = tag;
    sim_schedule(s, delay, -1, order_fire, o);
}

static void timer_cb(void *arg)
{
    order_log_t *log = arg;
    log->fired[log->n] = 100 + log->n;
    log->n++;
}

static void test_queue_orders_ties_by_sequence(void **state)
{
    sim_t *s = sim_new(1, 1, NULL, NULL);
    order_log_t log = {{0}, 0};
    moor_clock_if_t ck = sim_clock(s, 0);
    uint64_t t1, t2;
    (void)state;

    order_push(s, &log, 10, 1);
    order_push(s, &log, 5, 2);
    order_push(s, &log, 10, 3);
    order_push(s, &log, 10, 4);
    order_push(s, &log, 0, 5);
    t1 = ck.timer_start(ck.ud, 7, timer_cb, &log);
    t2 = ck.timer_start(ck.ud, 7, timer_cb, &log);
    assert_true(t1 != 0 && t2 != 0 && t1 != t2);
    ck.timer_stop(ck.ud, t1);
    ck.timer_stop(ck.ud, t1);    /* twice: no-op */
    ck.timer_stop(ck.ud, 12345); /* unknown: no-op */
    sim_run_until(s, 100, 100);
    assert_int_equal(log.n, 6);
    assert_int_equal(log.fired[0], 5);
    assert_int_equal(log.fired[1], 2);
    assert_int_equal(log.fired[2], 102); /* only t2, at 7 */
    assert_int_equal(log.fired[3], 1);
    assert_int_equal(log.fired[4], 3);
    assert_int_equal(log.fired[5], 4);
    assert_int_equal(s->now, 100);
    ck.timer_stop(ck.ud, t2); /* already fired: no-op */
    /* the clock is simulated time plus the node's skew (a few ms) */
    int64_t d = (int64_t)ck.now_ms(ck.ud) - (int64_t)(SIM_T0 + 100);
    assert_true(d >= -5 && d <= 5);
    assert_int_equal(s->st.harness_errors, 0);
    sim_free(s);
}

/* An echo service: answers [node, params...] at once, or with an error
 * for method "_fail", or never for "_mute" (then done runs at sim_free). */
typedef struct echo {
    int delivered[SIM_MAX_NODES];
    moor_coord_done_fn pend_done[64];
    void *pend_arg[64];
    int npend;
} echo_t;

static void echo_handler(void *ud, int node, const char *method, size_t mlen, const char *params,
                         size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    echo_t *e = ud;
    char out[64];
    (void)nparams;

    e->delivered[node]++;
    if (mlen == 5 && memcmp(method, "_fail", 5) == 0) {
        done(arg, MOOR_EQUORUM, "no such thing", NULL, 0);
        return;
    }
    if (mlen == 5 && memcmp(method, "_mute", 5) == 0) {
        e->pend_done[e->npend] = done;
        e->pend_arg[e->npend++] = arg;
        return;
    }
    out[0] = (char)node;
    memcpy(out + 1, params, plen);
    done(arg, 0, NULL, out, plen + 1);
}

typedef struct answer {
    int calls, status;
    uint64_t at;
    char result[64];
    size_t rlen;
} answer_t;

static sim_t *answer_sim; /* for the arrival time */

static void answer_cb(void *arg, int status, const char *result, size_t rlen)
{
    answer_t *a = arg;
    a->calls++;
    a->status = status;
    a->at = answer_sim->now;
    a->rlen = rlen;
    if (rlen && rlen <= sizeof(a->result))
        memcpy(a->result, result, rlen);
}

static void send_n(sim_t *s, int from, const char *to, const char *method, answer_t *a, int n,
                   uint32_t timeout)
{
    moor_transport_if_t t = sim_transport(s, from);

    for (int i = 0; i < n; i++) {
        char p = (char)i;
        assert_int_equal(
            t.request(t.ud, to, strlen(to), method, &p, 1, 1, timeout, answer_cb, &a[i]), 0);
    }
}

static void test_net_delivers_reorders_and_answers_once(void **state)
{
    echo_t e = {{0}, {0}, {0}, 0};
    sim_t *s = sim_new(7, 3, echo_handler, &e);
    answer_t a[50] = {{0}};
    moor_transport_if_t t = sim_transport(s, 0);
    int reordered = 0;
    (void)state;

    answer_sim = s;
    send_n(s, 0, "n2", "_echo", a, 50, 1000);
    assert_int_equal(t.request(t.ud, "zz", 2, "_echo", "", 0, 0, 1000, answer_cb, &a[0]),
                     MOOR_EINVAL);
    sim_run_until(s, 5000, 100000);
    assert_int_equal(e.delivered[2], 50);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].status, 0);
        assert_int_equal(a[i].rlen, 2);
        assert_int_equal(a[i].result[0], 2);
        assert_int_equal(a[i].result[1], (char)i);
        assert_true(a[i].at >= 2 && a[i].at <= 40); /* two hops of 1..20 ms */
        if (i && a[i].at < a[i - 1].at)
            reordered++;
    }
    assert_true(reordered > 0);
    assert_int_equal(s->st.harness_errors, 0);
    sim_free(s);
}

static void test_net_loss_cuts_and_down_nodes_time_out(void **state)
{
    echo_t e = {{0}, {0}, {0}, 0};
    sim_t *s = sim_new(9, 3, echo_handler, &e);
    answer_t lost[20] = {{0}}, cut[5] = {{0}}, down[5] = {{0}}, err[1] = {{0}}, some[200] = {{0}};
    int ok = 0;
    (void)state;

    answer_sim = s;
    s->loss = 1.0;
    send_n(s, 0, "n1", "_echo", lost, 20, 300);
    s->loss = 0;
    sim_cut(s, 0, 1, 1);
    send_n(s, 0, "n1", "_echo", cut, 5, 300);
    sim_crash(s, 2, 0);
    send_n(s, 0, "n2", "_echo", down, 5, 300);
    send_n(s, 1, "n0", "_fail", err, 1, 300); /* cut: times out too */
    sim_run_until(s, 1000, 100000);
    for (int i = 0; i < 20; i++)
        assert_true(lost[i].calls == 1 && lost[i].status == MOOR_ETIMEDOUT && lost[i].at == 300);
    for (int i = 0; i < 5; i++) {
        assert_true(cut[i].calls == 1 && cut[i].status == MOOR_ETIMEDOUT && cut[i].at == 300);
        assert_true(down[i].calls == 1 && down[i].status == MOOR_ETIMEDOUT);
    }
    assert_int_equal(e.delivered[1] + e.delivered[2], 0);
    assert_int_equal(err[0].status, MOOR_ETIMEDOUT);
    /* mended: an error answer maps to its code */
    sim_heal(s);
    send_n(s, 1, "n0", "_fail", err, 1, 300);
    sim_run_until(s, 2000, 100000);
    assert_int_equal(err[0].calls, 2);
    assert_int_equal(err[0].status, MOOR_EQUORUM);
    /* partial loss: some answered, the rest timed out, each exactly once */
    s->loss = 0.3;
    send_n(s, 0, "n1", "_echo", some, 200, 300);
    sim_run_until(s, 3000, 100000);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(some[i].calls, 1);
        ok += some[i].status == 0;
    }
    assert_true(ok > 60 && ok < 180); /* ~0.49 of 200 both ways */
    /* refuse: a down target fails some requests fast, the rest time out */
    s->loss = 0;
    s->refuse = 1;
    memset(some, 0, sizeof(some));
    send_n(s, 0, "n2", "_echo", some, 40, 300);
    sim_run_until(s, 4000, 100000);
    ok = 0;
    for (int i = 0; i < 40; i++) {
        assert_int_equal(some[i].calls, 1);
        if (some[i].status == -ECONNREFUSED)
            ok++, assert_true(some[i].at < 3000 + 300);
        else
            assert_int_equal(some[i].status, MOOR_ETIMEDOUT);
    }
    assert_true(ok > 5 && ok < 35);
    assert_int_equal(s->st.harness_errors, 0);
    sim_free(s);
}

static void test_net_crash_cancels_the_old_process(void **state)
{
    echo_t e = {{0}, {0}, {0}, 0};
    sim_t *s = sim_new(3, 2, echo_handler, &e);
    answer_t a[4] = {{0}}, m[1] = {{0}};
    order_log_t log = {{0}, 0};
    moor_clock_if_t ck = sim_clock(s, 0);
    (void)state;

    answer_sim = s;
    send_n(s, 1, "n0", "_mute", m, 1, 300);
    sim_run_until(s, 25, 100); /* delivered: n0 owes an answer */
    assert_int_equal(e.npend, 1);
    send_n(s, 0, "n1", "_echo", a, 4, 300);
    ck.timer_start(ck.ud, 50, timer_cb, &log);
    sim_crash(s, 0, 0); /* n0 dies with requests, a pending answer and a timer */
    sim_run_until(s, 100, 100000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i].calls, 0); /* nothing of the dead process fires on its own */
    sim_release(s, 0);
    for (int i = 0; i < 4; i++) /* closed: each answered once, now */
        assert_true(a[i].calls == 1 && a[i].status == MOOR_ECLOSED && a[i].at == 100);
    sim_restart(s, 0);
    sim_run_until(s, 1000, 100000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i].calls, 1);
    assert_int_equal(log.n, 0);
    assert_int_equal(e.npend, 1);
    e.pend_done[0](e.pend_arg[0], 0, NULL, "x", 1); /* the dead n0 answers: dropped */
    sim_run_until(s, 1100, 100000);
    assert_int_equal(m[0].calls, 1);
    assert_int_equal(m[0].status, MOOR_ETIMEDOUT);
    assert_int_equal(m[0].at, 300);
    e.pend_done[0](e.pend_arg[0], 0, NULL, "x", 1); /* twice: a contract violation */
    assert_int_equal(s->st.harness_errors, 1);
    sim_free(s);
}

typedef struct store_log {
    int order[8];
    int n, closed;
} store_log_t;

static store_log_t *store_log_p;

static void store_done(void *arg, int status)
{
    if (status == MOOR_ECLOSED) {
        store_log_p->closed++;
        return;
    }
    assert_int_equal(status, 0);
    store_log_p->order[store_log_p->n++] = (int)(intptr_t)arg;
}

static void test_store_fifo_and_crash(void **state)
{
    sim_t *s = sim_new(5, 1, NULL, NULL);
    moor_store_if_t st = sim_store(s, 0);
    moor_buf_t out = MOOR_BUF_INIT;
    store_log_t log = {{0}, 0, 0};
    (void)state;

    store_log_p = &log;
    assert_int_equal(st.get(st.ud, "k", 1, &out), MOOR_ENOTFOUND);
    for (int i = 0; i < 6; i++) {
        char v = (char)('a' + i);
        assert_int_equal(
            st.put(st.ud, i % 2 ? "k" : "j", 1, &v, 1, store_done, (void *)(intptr_t)i), 0);
    }
    assert_int_equal(st.get(st.ud, "k", 1, &out), 0); /* visible before durable */
    assert_int_equal(out.len, 1);
    assert_int_equal(out.data[0], 'f');
    sim_run_until(s, 100, 1000);
    assert_int_equal(log.n, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(log.order[i], i);
    /* unsynced writes: dropped by one crash, kept by another */
    assert_int_equal(st.put(st.ud, "k", 1, "X", 1, store_done, (void *)(intptr_t)7), 0);
    assert_int_equal(st.put(st.ud, "n", 1, "Y", 1, store_done, (void *)(intptr_t)7), 0);
    sim_crash(s, 0, 1);
    assert_int_equal(log.closed, 0);
    sim_release(s, 0);
    assert_int_equal(log.closed, 2);
    sim_restart(s, 0);
    out.len = 0;
    assert_int_equal(st.get(st.ud, "k", 1, &out), 0);
    assert_int_equal(out.data[0], 'f');
    assert_int_equal(st.get(st.ud, "n", 1, &out), MOOR_ENOTFOUND);
    assert_int_equal(st.put(st.ud, "k", 1, "Z", 1, store_done, (void *)(intptr_t)7), 0);
    sim_crash(s, 0, 0);
    sim_restart(s, 0);
    sim_run_until(s, 200, 1000);
    assert_int_equal(log.n, 6); /* no done from a dead incarnation on its own */
    sim_release(s, 0);
    assert_int_equal(log.closed, 2); /* after its time: nothing left to close */
    out.len = 0;
    assert_int_equal(st.get(st.ud, "k", 1, &out), 0);
    assert_int_equal(out.data[0], 'Z');
    /* injected failures: an error and no done */
    s->store_fail = 1.0;
    assert_int_equal(st.put(st.ud, "k", 1, "Q", 1, store_done, (void *)(intptr_t)7), MOOR_EIO);
    sim_run_until(s, 300, 1000);
    assert_int_equal(log.n, 6);
    assert_int_equal(s->st.harness_errors, 0);
    moor_buf_free(&out);
    sim_free(s);
}

/* Random traffic over the echo service; returns the trace hash. */
static uint64_t echo_trace(uint64_t seed)
{
    echo_t e = {{0}, {0}, {0}, 0};
    sim_t *s = sim_new(seed, 4, echo_handler, &e);
    answer_t *a = calloc(300, sizeof(*a));
    uint64_t h;

    answer_sim = s;
    s->loss = 0.1;
    for (int i = 0; i < 300; i++) {
        moor_transport_if_t t = sim_transport(s, (int)sim_range(s, 0, 3));
        char to[4], p = (char)i;
        snprintf(to, sizeof(to), "n%d", (int)sim_range(s, 0, 3));
        t.request(t.ud, to, strlen(to), "_echo", &p, 1, 1, 100, answer_cb, &a[i]);
        sim_run_until(s, s->now + sim_range(s, 0, 3), 1000);
    }
    sim_run_until(s, s->now + 1000, 100000);
    h = s->trace;
    free(a);
    sim_free(s);
    return h;
}

static void test_sim_replays_a_seed(void **state)
{
    (void)state;
    assert_true(echo_trace(42) == echo_trace(42));
    assert_true(echo_trace(42) != echo_trace(43));
}

/* ================= a simulated cluster of coordinators ================= */

#define MAXKEYS 16
#define MAXCLIENTS 6
#define RF 3 /* N */

typedef enum { OP_GET, OP_PUT, OP_DEL } op_kind_t;

/* A write (put or del) the workload issued: the unit of the checker. */
typedef struct wrec {
    uint32_t id; /* value "w<id>"; ids grow in issue order */
    int key, client, node, del;
    int state;         /* 0 pending, 1 acknowledged, 2 failed */
    char err[24];      /* the failure's code */
    uint32_t *parents; /* values returned by the read whose ctx it used */
    uint32_t nparents;
    int blind;        /* written without a ctx */
    moor_buf_t clock; /* the ctx its acknowledgement returned */
    uint64_t issued, answered;
} wrec_t;

typedef struct cluster cluster_t;

/* A client call; kept until the run ends so a second answer is caught. */
typedef struct op {
    struct op *next;
    cluster_t *cl;
    int client, key, node, kind, done;
    uint32_t wid;            /* writes: the wrec */
    uint32_t acked_at_start; /* phase 1 reads: last acked write id of the key (0: none) */
    int acked_was_del;
    uint64_t issued;
} op_t;

typedef struct client {
    cluster_t *cl;
    int idx;
    int left;      /* operations still to issue */
    int scheduled; /* a client_next event is pending */
    int phase;     /* 1: owned keys, put then get; 2: shared keys, get then put */
    int step;      /* phase 1: 0 next write, 1 read own; phase 2: 0 read, 1 write */
    int key;
    moor_buf_t ctx[MAXKEYS]; /* ctx of the last read of each key (len 0: none) */
    uint32_t *seen;          /* values of the last read of `key` */
    uint32_t nseen;
    uint32_t expect; /* phase 1: the write the next own read must return (0: nil) */
} client_t;

struct cluster {
    sim_t *sim;
    uint64_t seed;
    int nnodes, r, w, verbose;
    moor_ring_t *ring;
    moor_coord_t *coord[SIM_MAX_NODES];
    moor_hints_t *hints[SIM_MAX_NODES]; /* with use_hints: each node's hint store */
    int use_hints;
    int status[SIM_MAX_NODES]; /* what the ring says of each node (the detector's verdict) */
    moor_coord_stats_t gone[SIM_MAX_NODES]; /* stats of crashed incarnations */
    client_t client[MAXCLIENTS];
    int nclients;
    int nkeys1, nkeys2; /* phase 1 keys a0..; phase 2 keys b0.. (index MAXKEYS + i) */
    char keyname[2 * MAXKEYS][16];
    wrec_t *w_; /* writes by id - 1 */
    uint32_t nw, wcap;
    uint32_t last_acked[2 * MAXKEYS]; /* phase 1: last acknowledged write (id) of a key */
    int last_acked_del[2 * MAXKEYS];
    op_t *ops;
    uint64_t nops, acked, failed, quorum_failed, timeouts, unavailable, other_err;
    int phase2_faults;
    int inflight;
    int fail_key;    /* key whose history explains cl->fail, -1 if none */
    int clock_order; /* MOOR_SIM_CLOCK_ORDER: a clock descendant supersedes too */
    int force_node;  /* scenarios: coordinate every call here; -1: a random live node */
    int no_blind;    /* phase 2 writes always carry the ctx of the read before (if any) */
    int dvv_watch;   /* the sibling watcher runs (run_dvv_seed) */
    uint32_t most_siblings; /* the most siblings the watcher saw at one replica */
    uint64_t shutting_down;
    char fail[2048]; /* first property violation */
};

static void cl_failf(cluster_t *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cl_failf(cluster_t *cl, const char *fmt, ...)
{
    va_list ap;

    if (cl->fail[0])
        return;
    va_start(ap, fmt);
    vsnprintf(cl->fail, sizeof(cl->fail), fmt, ap);
    va_end(ap);
}

static const char SPACE[] = "default";

/* ---- nodes ---- */

static void cl_handler(void *ud, int node, const char *method, size_t mlen, const char *params,
                       size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    cluster_t *cl = ud;
    moor_coord_handle_peer(cl->coord[node], method, mlen, params, plen, nparams, done, arg);
}

static int cl_hint_put(void *ud, const char *owner, size_t olen, const char *space, size_t slen,
                       const char *key, size_t klen, const char *rec, size_t rlen,
                       moor_store_done_fn done, void *arg)
{
    return moor_hints_add(ud, owner, olen, space, slen, key, klen, rec, rlen, done, arg);
}

/* Node i's hint store (use_hints): replay follows cl->status, as moord's
 * follows the failure detector. */
static void cl_start_hints(cluster_t *cl, int i)
{
    moor_hints_opts_t h;
    int rc;

    memset(&h, 0, sizeof(h));
    h.node_id = cl->sim->node[i].id;
    h.idlen = cl->sim->node[i].idlen;
    h.clock = sim_clock(cl->sim, i);
    h.transport = sim_transport(cl->sim, i);
    h.store = sim_store(cl->sim, i);
    h.rate_bytes_s = 64 << 10;
    h.timeout_ms = 500;
    if ((rc = moor_hints_new(&h, &cl->hints[i])))
        fail_msg("moor_hints_new: %d (%s): %s", rc, moor_err_name(rc), moor_diag_msg(rc));
    for (int k = 0; k < cl->nnodes; k++)
        if (k != i && cl->status[k] == MOOR_MEMBER_UP)
            moor_hints_owner_up(cl->hints[i], cl->sim->node[k].id, cl->sim->node[k].idlen);
}

static void cl_start_node(cluster_t *cl, int i)
{
    moor_coord_opts_t o;
    int rc;

    if (cl->use_hints)
        cl_start_hints(cl, i);
    memset(&o, 0, sizeof(o));
    o.node_id = cl->sim->node[i].id;
    o.idlen = cl->sim->node[i].idlen;
    o.clock = sim_clock(cl->sim, i);
    o.transport = sim_transport(cl->sim, i);
    o.store = sim_store(cl->sim, i);
    o.timeout_ms = 500;
    o.hint_put = cl->hints[i] ? cl_hint_put : NULL;
    o.hint_ud = cl->hints[i];
    rc = moor_coord_new(&o, &cl->coord[i]);
    if (rc)
        fail_msg("moor_coord_new: %d (%s): %s", rc, moor_err_name(rc), moor_diag_msg(rc));
    moor_coord_set_ring(cl->coord[i], cl->ring);
}

static void stats_add(moor_coord_stats_t *a, const moor_coord_stats_t *b)
{
    a->gets += b->gets, a->puts += b->puts, a->dels += b->dels;
    a->quorum_failures += b->quorum_failures, a->timeouts += b->timeouts;
    a->read_repairs += b->read_repairs, a->resolved += b->resolved;
}

static void cl_crash(cluster_t *cl, int i, int drop_unsynced)
{
    moor_coord_stats_t st;
    moor_coord_t *c = cl->coord[i];

    moor_coord_stats(c, &st);
    stats_add(&cl->gone[i], &st);
    sim_crash(cl->sim, i, drop_unsynced); /* first: nothing of the old process fires again */
    cl->coord[i] = NULL;
    moor_coord_free(c); /* answers its client calls with SHUTTING_DOWN */
    if (cl->hints[i]) {
        moor_hints_free(cl->hints[i]);
        cl->hints[i] = NULL;
    }
    sim_release(cl->sim, i);
}

static void cl_restart(cluster_t *cl, int i)
{
    sim_restart(cl->sim, i);
    cl_start_node(cl, i);
}

static void cl_init(cluster_t *cl, uint64_t seed, int nnodes, int r, int w)
{
    moor_member_t m[SIM_MAX_NODES];
    int rc;

    memset(cl, 0, sizeof(*cl));
    cl->seed = seed;
    cl->nnodes = nnodes;
    cl->r = r;
    cl->w = w;
    cl->fail_key = -1;
    cl->force_node = -1;
    cl->sim = sim_new(seed, nnodes, cl_handler, cl);
    memset(m, 0, sizeof(m));
    for (int i = 0; i < nnodes; i++) {
        m[i].idlen = (uint8_t)cl->sim->node[i].idlen;
        memcpy(m[i].id, cl->sim->node[i].id, m[i].idlen);
        snprintf(m[i].addr, sizeof(m[i].addr), "127.0.0.%d:7700", i + 2);
        m[i].vnodes = 16;
        m[i].status = MOOR_MEMBER_UP;
        cl->status[i] = MOOR_MEMBER_UP;
    }
    rc = moor_ring_build(m, (uint32_t)nnodes, &cl->ring);
    if (rc)
        fail_msg("moor_ring_build: %d: %s", rc, moor_diag_msg(rc));
    for (int i = 0; i < nnodes; i++)
        cl_start_node(cl, i);
    for (int k = 0; k < MAXKEYS; k++) {
        snprintf(cl->keyname[k], sizeof(cl->keyname[k]), "a%d", k);
        snprintf(cl->keyname[MAXKEYS + k], sizeof(cl->keyname[k]), "b%d", k);
    }
}

static void cl_free(cluster_t *cl)
{
    for (int i = 0; i < cl->nnodes; i++) {
        if (cl->coord[i])
            moor_coord_free(cl->coord[i]);
        if (cl->hints[i])
            moor_hints_free(cl->hints[i]);
    }
    moor_ring_free(cl->ring);
    sim_free(cl->sim);
    while (cl->ops) {
        op_t *o = cl->ops;
        cl->ops = o->next;
        free(o);
    }
    for (uint32_t i = 0; i < cl->nw; i++) {
        free(cl->w_[i].parents);
        moor_buf_free(&cl->w_[i].clock);
    }
    free(cl->w_);
    for (int c = 0; c < MAXCLIENTS; c++) {
        for (int k = 0; k < MAXKEYS; k++)
            moor_buf_free(&cl->client[c].ctx[k]);
        free(cl->client[c].seen);
    }
}

static void cl_stats(const cluster_t *cl, moor_coord_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < cl->nnodes; i++) {
        moor_coord_stats_t st;
        stats_add(out, &cl->gone[i]);
        if (cl->coord[i]) {
            moor_coord_stats(cl->coord[i], &st);
            stats_add(out, &st);
        }
    }
}

static int cl_pick_up_node(cluster_t *cl)
{
    int up[SIM_MAX_NODES], n = 0;

    for (int i = 0; i < cl->nnodes; i++)
        if (cl->sim->node[i].up)
            up[n++] = i;
    return up[sim_range(cl->sim, 0, (uint64_t)n - 1)];
}

/* ---- values and answers ---- */

static wrec_t *cl_write(cluster_t *cl, uint32_t id)
{
    return &cl->w_[id - 1];
}

static wrec_t *cl_new_write(cluster_t *cl, int client, int key, int node, int del)
{
    wrec_t *w;

    if (cl->nw == cl->wcap) {
        cl->wcap = cl->wcap ? cl->wcap * 2 : 256;
        cl->w_ = realloc(cl->w_, cl->wcap * sizeof(*cl->w_));
        if (!cl->w_)
            abort();
    }
    w = &cl->w_[cl->nw++];
    memset(w, 0, sizeof(*w));
    w->id = cl->nw;
    w->key = key;
    w->client = client;
    w->node = node;
    w->del = del;
    w->issued = cl->sim->now;
    return w;
}

/* The MessagePack value of write id: the str "w<id>". */
static size_t value_encode(uint32_t id, char *out, size_t cap)
{
    char s[16];
    int n = snprintf(s, sizeof(s), "w%u", id);

    if ((size_t)n + 1 > cap)
        abort();
    out[0] = (char)(0xa0 | n); /* fixstr */
    memcpy(out + 1, s, (size_t)n);
    return (size_t)n + 1;
}

/* The write id of a value, or 0 if it is not one of ours. */
static uint32_t value_id(const char *v, size_t vlen)
{
    const char *p = v, *s;
    uint32_t n;
    unsigned long id;
    char buf[16];

    if (moor_mp_read_str(&p, v + vlen, &s, &n) || p != v + vlen || n < 2 || n > 12 || s[0] != 'w')
        return 0;
    memcpy(buf, s + 1, n - 1);
    buf[n - 1] = 0;
    id = strtoul(buf, NULL, 10);
    return (uint32_t)id;
}

/* A get result: nil (*found 0), or {values = [...], ctx = bin}.  Fills the
 * value ids and ctx.  0, or -1 if malformed. */
static int parse_get(const char *res, size_t rlen, int *found, uint32_t *ids, uint32_t *nids,
                     uint32_t cap, moor_buf_t *ctx)
{
    const char *p = res, *end = res + rlen;
    uint32_t nmap;

    *nids = 0;
    *found = 0;
    ctx->len = 0;
    if (moor_mp_read_nil(&p, end) == 0)
        return p == end ? 0 : -1;
    if (moor_mp_read_map(&p, end, &nmap))
        return -1;
    *found = 1;
    for (uint32_t i = 0; i < nmap; i++) {
        const char *k, *b;
        uint32_t kl, n;
        if (moor_mp_read_str(&p, end, &k, &kl))
            return -1;
        if (kl == 6 && memcmp(k, "values", 6) == 0) {
            if (moor_mp_read_array(&p, end, &n) || n > cap)
                return -1;
            for (uint32_t j = 0; j < n; j++) {
                const char *v = p;
                if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                    return -1;
                ids[(*nids)++] = value_id(v, (size_t)(p - v));
            }
        } else if (kl == 3 && memcmp(k, "ctx", 3) == 0) {
            if (moor_mp_read_bin(&p, end, &b, &n) || moor_buf_append(ctx, b, n))
                return -1;
        } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
            return -1;
        }
    }
    return p == end ? 0 : -1;
}

/* A put result {ctx = bin}: the ctx into out.  0 or -1. */
static int parse_put(const char *res, size_t rlen, moor_buf_t *out)
{
    const char *p = res, *end = res + rlen, *k, *b;
    uint32_t n, kl, bl;

    if (moor_mp_read_map(&p, end, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return -1;
        if (kl == 3 && memcmp(k, "ctx", 3) == 0) {
            if (moor_mp_read_bin(&p, end, &b, &bl) || moor_buf_append(out, b, bl))
                return -1;
        } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
            return -1;
        }
    }
    return p == end ? 0 : -1;
}

/* ---- the workload ---- */

static void client_next(sim_t *s, sim_ev_t *ev);

/* Schedules the client's next step; one at a time, so a client's calls
 * are strictly sequential. */
static void client_later(client_t *c)
{
    if (c->scheduled)
        return;
    c->scheduled = 1;
    sim_schedule_p(c->cl->sim, sim_range(c->cl->sim, 0, 10), -1, client_next, c, 0);
}

static void count_error(cluster_t *cl, const char *errcode)
{
    cl->failed++;
    if (strcmp(errcode, "QUORUM_FAILED") == 0)
        cl->quorum_failed++;
    else if (strcmp(errcode, "TIMEOUT") == 0)
        cl->timeouts++;
    else if (strcmp(errcode, "UNAVAILABLE") == 0)
        cl->unavailable++;
    else if (strcmp(errcode, "SHUTTING_DOWN") == 0)
        cl->shutting_down++;
    else
        cl->other_err++;
}

static const char *key_of(cluster_t *cl, int key)
{
    return cl->keyname[key];
}

static void on_read(op_t *o, client_t *c, const char *res, size_t rlen);
static void on_write(op_t *o, client_t *c, const char *errcode, const char *res, size_t rlen);

static void op_done(void *arg, int code, const char *errmsg, const char *result, size_t rlen)
{
    const char *errcode = code ? moor_err_wire(code) : NULL;
    op_t *o = arg;
    cluster_t *cl = o->cl;
    client_t *c = &cl->client[o->client];

    if (o->done++) {
        cl_failf(cl, "a client call (op on %s via n%d) was answered twice", key_of(cl, o->key),
                 o->node);
        return;
    }
    cl->inflight--;
    sim_trace(cl->sim, errcode ? errcode : "ok", errcode ? strlen(errcode) : 2);
    sim_trace(cl->sim, result, rlen);
    if (cl->verbose > 1)
        fprintf(stderr, "  t=%llu c%d %s %s via n%d: %s %s\n", (unsigned long long)cl->sim->now,
                o->client,
                o->kind == OP_GET   ? "get"
                : o->kind == OP_PUT ? "put"
                                    : "del",
                key_of(cl, o->key), o->node, errcode ? errcode : "ok", errmsg ? errmsg : "");
    if (errcode)
        count_error(cl, errcode);
    else
        cl->acked++;
    if (o->kind == OP_GET) {
        if (!errcode)
            on_read(o, c, result, rlen);
        else if (c->phase == 1 && !cl->phase2_faults)
            cl_failf(cl, "no faults, yet get %s via n%d failed: %s %s", key_of(cl, o->key), o->node,
                     errcode, errmsg ? errmsg : "");
        else
            c->step = 0; /* read again */
    } else {
        on_write(o, c, errcode, result, rlen);
    }
    client_later(c);
}

static op_t *op_new(cluster_t *cl, client_t *c, int kind, int key)
{
    op_t *o = calloc(1, sizeof(*o));

    if (!o)
        abort();
    o->cl = cl;
    o->client = c->idx;
    o->kind = kind;
    o->key = key;
    o->node = cl->force_node >= 0 ? cl->force_node : cl_pick_up_node(cl);
    o->issued = cl->sim->now;
    o->next = cl->ops;
    cl->ops = o;
    cl->nops++;
    cl->inflight++;
    return o;
}

static void req_init(cluster_t *cl, moor_coord_req_t *q, int key)
{
    memset(q, 0, sizeof(*q));
    q->space = SPACE;
    q->slen = sizeof(SPACE) - 1;
    q->key = key_of(cl, key);
    q->klen = strlen(q->key);
    q->n = RF;
    q->r = (uint32_t)cl->r;
    q->w = (uint32_t)cl->w;
}

static void issue_get(cluster_t *cl, client_t *c, int key, uint32_t r)
{
    op_t *o = op_new(cl, c, OP_GET, key);
    moor_coord_req_t q;

    req_init(cl, &q, key);
    if (r)
        q.r = r;
    o->acked_at_start = cl->last_acked[key];
    o->acked_was_del = cl->last_acked_del[key];
    moor_coord_get(cl->coord[o->node], &q, op_done, o);
}

/* A put (or del) of a fresh value with the ctx of the client's last read
 * of key (none if blind); its parents are that read's values. */
static void issue_write(cluster_t *cl, client_t *c, int key, int del, int blind)
{
    op_t *o = op_new(cl, c, del ? OP_DEL : OP_PUT, key);
    wrec_t *w = cl_new_write(cl, c->idx, key, o->node, del);
    moor_coord_req_t q;
    char val[16];
    int slot = key % MAXKEYS;

    o->wid = w->id;
    req_init(cl, &q, key);
    w->blind = blind || c->ctx[slot].len == 0;
    if (!w->blind) {
        q.ctx = c->ctx[slot].data;
        q.ctxlen = c->ctx[slot].len;
        if (c->phase == 2 && c->nseen) {
            w->parents = malloc(c->nseen * sizeof(uint32_t));
            memcpy(w->parents, c->seen, c->nseen * sizeof(uint32_t));
            w->nparents = c->nseen;
        }
    }
    if (!del) {
        q.value = val;
        q.vlen = value_encode(w->id, val, sizeof(val));
        moor_coord_put(cl->coord[o->node], &q, op_done, o);
    } else {
        moor_coord_del(cl->coord[o->node], &q, op_done, o);
    }
}

/* Phase 1 key of client c: one of the keys k < nkeys1 with k % nclients == c. */
static int phase1_own_key(cluster_t *cl, client_t *c)
{
    int n = (cl->nkeys1 - c->idx + cl->nclients - 1) / cl->nclients;
    return c->idx + cl->nclients * (int)sim_range(cl->sim, 0, (uint64_t)n - 1);
}

static void phase1_next(cluster_t *cl, client_t *c)
{
    if (c->step == 0) {
        int key = phase1_own_key(cl, c);
        int del = cl->last_acked[key] && !cl->last_acked_del[key] && sim_chance(cl->sim, 0.15);
        c->key = key;
        issue_write(cl, c, key, del, 0);
    } else if (c->step == 1) {
        issue_get(cl, c, c->key, 0);
    } else {
        issue_get(cl, c, (int)sim_range(cl->sim, 0, (uint64_t)cl->nkeys1 - 1), 0);
    }
}

static void phase2_next(cluster_t *cl, client_t *c)
{
    if (c->step == 0) {
        c->key = MAXKEYS + (int)sim_range(cl->sim, 0, (uint64_t)cl->nkeys2 - 1);
        issue_get(cl, c, c->key, 0);
    } else {
        issue_write(cl, c, c->key, 0, sim_chance(cl->sim, 0.1) && !cl->no_blind);
    }
}

static void client_next(sim_t *s, sim_ev_t *ev)
{
    client_t *c = ev->p;
    (void)s;

    c->scheduled = 0;
    if (c->left <= 0 || c->cl->fail[0])
        return;
    c->left--;
    if (c->phase == 1)
        phase1_next(c->cl, c);
    else if (c->phase == 2)
        phase2_next(c->cl, c);
}

/* Is id a write of key (not a value nobody wrote)? */
static int known_value(cluster_t *cl, int key, uint32_t id)
{
    return id >= 1 && id <= cl->nw && cl_write(cl, id)->key == key && !cl_write(cl, id)->del;
}

/* Phase 1: a read of key that started when write `o->acked_at_start` was
 * the last acknowledged one may return it or a newer write, never older,
 * never siblings. */
static void check_phase1_read(cluster_t *cl, op_t *o, int found, const uint32_t *ids, uint32_t n)
{
    uint32_t a = o->acked_at_start;
    int newer_del = 0;

    for (uint32_t i = a; i < cl->nw; i++) /* writes issued after the acknowledged one */
        newer_del |= cl->w_[i].key == o->key && cl->w_[i].del;
    if (n > 1) {
        cl_failf(cl, "no faults, sequential writes, yet get %s returned %u siblings (w%u, w%u)",
                 key_of(cl, o->key), n, ids[0], ids[1]);
    } else if (!found || n == 0) {
        if (a && !o->acked_was_del && !newer_del)
            cl_failf(cl, "get %s returned nil, but w%u was acknowledged before it started",
                     key_of(cl, o->key), a);
    } else if (!known_value(cl, o->key, ids[0])) {
        cl_failf(cl, "get %s returned w%u, which nobody wrote to it", key_of(cl, o->key), ids[0]);
    } else if (ids[0] < a || (ids[0] == a && o->acked_was_del)) {
        cl_failf(cl,
                 "stale read: get %s (via n%d, t=%llu) returned w%u, but w%u was "
                 "acknowledged before it started",
                 key_of(cl, o->key), o->node, (unsigned long long)o->issued, ids[0], a);
    }
}

static void on_read(op_t *o, client_t *c, const char *res, size_t rlen)
{
    cluster_t *cl = o->cl;
    uint32_t ids[MOOR_RECORD_MAX_SIBLINGS], n;
    int found, slot = o->key % MAXKEYS;
    moor_buf_t ctx = MOOR_BUF_INIT;

    if (parse_get(res, rlen, &found, ids, &n, MOOR_RECORD_MAX_SIBLINGS, &ctx)) {
        cl_failf(cl, "get %s: malformed result (%zu bytes)", key_of(cl, o->key), rlen);
        goto out;
    }
    for (uint32_t i = 0; i < n; i++)
        if (!known_value(cl, o->key, ids[i]))
            cl_failf(cl, "get %s returned w%u, which nobody wrote to it", key_of(cl, o->key),
                     ids[i]);
    if (c->phase == 1) {
        check_phase1_read(cl, o, found, ids, n);
        if (c->step == 1 && !cl->fail[0]) {
            if (c->expect && (n != 1 || ids[0] != c->expect))
                cl_failf(cl,
                         "read-your-write: get %s via n%d returned %u values (first w%u), "
                         "expected exactly w%u",
                         key_of(cl, o->key), o->node, n, n ? ids[0] : 0, c->expect);
            /* the writer's next write descends from what it read */
            moor_buf_reset(&c->ctx[slot]);
            if (found && moor_buf_append(&c->ctx[slot], ctx.data, ctx.len))
                abort();
        }
        c->step = sim_chance(cl->sim, 0.3) ? 2 : 0;
        goto out;
    }
    /* phase 2 (the write that follows uses this read) and repair reads */
    moor_buf_reset(&c->ctx[slot]);
    if (found && moor_buf_append(&c->ctx[slot], ctx.data, ctx.len))
        abort();
    free(c->seen);
    c->seen = malloc((n ? n : 1) * sizeof(uint32_t));
    memcpy(c->seen, ids, n * sizeof(uint32_t));
    c->nseen = n;
    c->step = 1;
out:
    moor_buf_free(&ctx);
}

static void on_write(op_t *o, client_t *c, const char *errcode, const char *res, size_t rlen)
{
    cluster_t *cl = o->cl;
    wrec_t *w = cl_write(cl, o->wid);

    w->answered = cl->sim->now;
    if (errcode) {
        w->state = 2;
        snprintf(w->err, sizeof(w->err), "%s", errcode);
        if (c->phase == 1 && !cl->phase2_faults)
            cl_failf(cl, "no faults, yet %s %s via n%d failed: %s", w->del ? "del" : "put",
                     key_of(cl, o->key), o->node, errcode);
        c->step = 0;
        return;
    }
    w->state = 1;
    if (!w->del && parse_put(res, rlen, &w->clock))
        cl_failf(cl, "put %s: malformed result (%zu bytes)", key_of(cl, o->key), rlen);
    if (c->phase == 1) {
        cl->last_acked[o->key] = w->id;
        cl->last_acked_del[o->key] = w->del;
        c->expect = w->del ? 0 : w->id;
        c->step = 1;
    } else {
        c->step = 0;
    }
}

/* ---- faults ---- */

static int cl_down_count(cluster_t *cl)
{
    int n = 0;
    for (int i = 0; i < cl->nnodes; i++)
        n += !cl->sim->node[i].up;
    return n;
}

static void fault_next(sim_t *s, sim_ev_t *ev)
{
    static const double losses[] = {0, 0.02, 0.1, 0.3};
    cluster_t *cl = ev->p;
    int a = (int)sim_range(s, 0, (uint64_t)cl->nnodes - 1);
    int b = (int)sim_range(s, 0, (uint64_t)cl->nnodes - 1);

    if (!cl->phase2_faults)
        return;
    switch (sim_range(s, 0, 9)) {
    case 0: s->loss = losses[sim_range(s, 0, 3)]; break;
    case 1:
    case 2:
        if (a != b)
            sim_cut(s, a, b, 1);
        break;
    case 3: sim_isolate(s, a, 1); break;
    case 4: sim_heal(s); break;
    case 5:
    case 6:
        if (s->node[a].up && cl_down_count(cl) < (cl->nnodes - 1) / 2)
            cl_crash(cl, a, (int)sim_range(s, 0, 1));
        break;
    case 7:
    case 8:
        for (int i = 0; i < cl->nnodes; i++)
            if (!s->node[(a + i) % cl->nnodes].up) {
                cl_restart(cl, (a + i) % cl->nnodes);
                break;
            }
        break;
    default: s->store_fail = sim_chance(s, 0.5) ? 0.05 : 0; break;
    }
    sim_schedule_p(s, sim_range(s, 20, 120), -1, fault_next, cl, 0);
}

static void cl_heal_all(cluster_t *cl)
{
    sim_heal(cl->sim);
    cl->sim->loss = 0;
    cl->sim->store_fail = 0;
    for (int i = 0; i < cl->nnodes; i++)
        if (!cl->sim->node[i].up)
            cl_restart(cl, i);
}

/* Runs until every client is out of operations and nothing is in flight,
 * bounded by simulated time. */
static void cl_run_clients(cluster_t *cl, uint64_t limit_ms)
{
    uint64_t end = cl->sim->now + limit_ms;

    for (;;) {
        int busy = cl->inflight > 0;
        for (int i = 0; i < cl->nclients; i++)
            busy |= cl->client[i].left > 0;
        if (!busy || cl->fail[0] || cl->sim->now >= end)
            break;
        sim_run_until(cl->sim, cl->sim->now + 50, 1000000);
    }
}

static void cl_drain(cluster_t *cl, uint64_t ms)
{
    sim_run_until(cl->sim, cl->sim->now + ms, 10000000);
}

/* ---- the checks after repair ---- */

static void clock_str(const char *ctx, size_t len, char *out, size_t cap)
{
    const char *p = ctx;
    moor_vclock_t vc;
    size_t o = 0;

    out[0] = 0;
    if (!len || moor_vclock_decode(&p, ctx + len, &vc)) {
        snprintf(out, cap, len ? "(bad)" : "-");
        return;
    }
    for (uint32_t i = 0; i < vc.n && o + 1 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s:%llu", i ? "," : "", vc.e[i].idlen,
                              vc.e[i].id, (unsigned long long)vc.e[i].counter);
}

static uint32_t cl_replicas(cluster_t *cl, int key, int *out);
static void record_str(const moor_record_t *r, char *out, size_t cap);
static const moor_buf_t *peek_key(cluster_t *cl, int node, int key);

/* What each replica of key holds now. */
static void dump_replicas(cluster_t *cl, int key)
{
    int rep[RF];
    uint32_t n = cl_replicas(cl, key, rep);
    moor_record_t *rec = malloc(sizeof(*rec));
    char rs[1024];

    for (uint32_t i = 0; i < n; i++) {
        const moor_buf_t *b = peek_key(cl, rep[i], key);
        if (!b)
            snprintf(rs, sizeof(rs), "(none)");
        else if (moor_record_decode(b->data, b->len, rec))
            snprintf(rs, sizeof(rs), "(undecodable)");
        else
            record_str(rec, rs, sizeof(rs));
        fprintf(stderr, "  replica n%d: %s\n", rep[i], rs);
    }
    free(rec);
}

static void dump_key(cluster_t *cl, int key)
{
    char cs[256];

    fprintf(stderr, "  history of %s (id client node state issued..answered ctx-parents clock):\n",
            key_of(cl, key));
    for (uint32_t i = 0; i < cl->nw; i++) {
        wrec_t *w = &cl->w_[i];
        if (w->key != key)
            continue;
        clock_str(w->clock.data, w->clock.len, cs, sizeof(cs));
        fprintf(stderr, "    w%u c%d n%d %s%s %s%s t=%llu..%llu parents=[", w->id, w->client,
                w->node, w->del ? "del " : "",
                w->state == 1 ? "acked"
                : w->state    ? "failed"
                              : "pending",
                w->err, w->blind ? " blind" : "", (unsigned long long)w->issued,
                (unsigned long long)w->answered);
        for (uint32_t j = 0; j < w->nparents; j++)
            fprintf(stderr, "%sw%u", j ? " " : "", w->parents[j]);
        fprintf(stderr, "] clock=%s\n", cs);
    }
    dump_replicas(cl, key);
}

/* The preference list of key as simulator node indices. */
static uint32_t cl_replicas(cluster_t *cl, int key, int *out)
{
    uint32_t idx[RF], n = 0;
    uint64_t token;
    const char *k = key_of(cl, key);

    if (moor_ring_key_token(SPACE, sizeof(SPACE) - 1, k, strlen(k), &token) ||
        moor_ring_preference_list(cl->ring, token, RF, idx, &n))
        abort();
    for (uint32_t i = 0; i < n; i++) {
        const moor_member_t *m = moor_ring_member(cl->ring, idx[i]);
        out[i] = sim_node_by_id(cl->sim, m->id, m->idlen);
    }
    return n;
}

static int sib_equal(const moor_sibling_t *a, const moor_sibling_t *b)
{
    return a->tombstone == b->tombstone && a->ts == b->ts && a->vlen == b->vlen &&
           (a->vlen == 0 || memcmp(a->value, b->value, a->vlen) == 0);
}

static int record_same(const moor_record_t *a, const moor_record_t *b)
{
    if (moor_vclock_compare(&a->vc, &b->vc) != MOOR_VC_EQUAL || a->n != b->n)
        return 0;
    for (uint32_t i = 0; i < a->n; i++) {
        uint32_t j = 0;
        while (j < b->n && !sib_equal(&a->sib[i], &b->sib[j]))
            j++;
        if (j == b->n)
            return 0;
    }
    return 1;
}

static void record_str(const moor_record_t *r, char *out, size_t cap)
{
    moor_buf_t b = MOOR_BUF_INIT;
    size_t o;

    moor_vclock_encode(&r->vc, &b);
    clock_str(b.data, b.len, out, cap);
    moor_buf_free(&b);
    o = strlen(out);
    for (uint32_t i = 0; i < r->n && o + 1 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, " %s%u@%llu", r->sib[i].tombstone ? "X" : "w",
                              r->sib[i].tombstone ? 0 : value_id(r->sib[i].value, r->sib[i].vlen),
                              (unsigned long long)r->sib[i].ts);
}

/* Property 3 for key: its replicas hold equal records (or none has one).
 * Collects the live values into live/nlive.  0 or -1 (cl->fail set). */
static int check_replicas(cluster_t *cl, int key, uint32_t *live, uint32_t *nlive, int *exists)
{
    int rep[RF], have = 0;
    uint32_t n = cl_replicas(cl, key, rep);
    moor_buf_t ek = MOOR_BUF_INIT;
    moor_record_t *rec = calloc(RF, sizeof(*rec));
    const moor_buf_t *raw[RF];
    char s1[512], s2[512];
    int rc = 0;

    *nlive = 0;
    if (moor_record_key(SPACE, sizeof(SPACE) - 1, key_of(cl, key), strlen(key_of(cl, key)), &ek))
        abort();
    for (uint32_t i = 0; i < n; i++) {
        raw[i] = sim_store_peek(cl->sim, rep[i], ek.data, ek.len);
        have += raw[i] != NULL;
        if (raw[i] && moor_record_decode(raw[i]->data, raw[i]->len, &rec[i])) {
            cl_failf(cl, "replica n%d holds an undecodable record of %s", rep[i], key_of(cl, key));
            rc = -1;
            goto out;
        }
    }
    *exists = have > 0;
    if (have == 0)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        if (!raw[i]) {
            record_str(&rec[raw[0] ? 0 : 1], s1, sizeof(s1));
            cl_failf(cl, "after repair, replica n%d has no record of %s (others: %s)", rep[i],
                     key_of(cl, key), s1);
            rc = -1;
            goto out;
        }
        if (i && !record_same(&rec[0], &rec[i])) {
            record_str(&rec[0], s1, sizeof(s1));
            record_str(&rec[i], s2, sizeof(s2));
            cl_failf(cl, "after repair, replicas of %s differ: n%d {%s} vs n%d {%s}",
                     key_of(cl, key), rep[0], s1, rep[i], s2);
            rc = -1;
            goto out;
        }
    }
    for (uint32_t i = 0; i < rec[0].n; i++)
        if (!rec[0].sib[i].tombstone)
            live[(*nlive)++] = value_id(rec[0].sib[i].value, rec[0].sib[i].vlen);
out:
    free(rec);
    moor_buf_free(&ek);
    return rc;
}

/* Phase 1 keys after everything: exactly the last acknowledged write. */
static void check_phase1_key(cluster_t *cl, int key, const uint32_t *live, uint32_t n)
{
    uint32_t a = cl->last_acked[key];

    if (!a || cl->last_acked_del[key]) {
        if (n)
            cl_failf(cl, "%s: last acknowledged was %s, yet w%u is live after repair",
                     key_of(cl, key), a ? "a delete" : "nothing", live[0]);
    } else if (n != 1 || live[0] != a) {
        cl_failf(cl,
                 "%s: acknowledged w%u lost or joined by siblings: %u live values "
                 "(first w%u) after repair",
                 key_of(cl, key), a, n, n ? live[0] : 0);
    }
}

/* 1 if x's acknowledged clock descends from w's (both known). */
static int clock_descends(const wrec_t *x, const wrec_t *w)
{
    moor_vclock_t a, b;
    const char *p = w->clock.data, *q = x->clock.data;

    if (!w->clock.len || !x->clock.len || moor_vclock_decode(&p, p + w->clock.len, &a) ||
        moor_vclock_decode(&q, q + x->clock.len, &b))
        return 0;
    return moor_vclock_compare(&b, &a) == MOOR_VC_AFTER;
}

/* Property 2 for a phase 2 key: every acknowledged write is live, or a
 * write that read it (transitively) is live. */
static void check_phase2_key(cluster_t *cl, int key, const uint32_t *live, uint32_t n)
{
    char *covered = calloc(cl->nw + 1, 1);
    char cs[256], ds[256];

    for (uint32_t i = 0; i < n; i++)
        if (live[i] && live[i] <= cl->nw)
            covered[live[i]] = 1;
    for (uint32_t id = cl->nw; id >= 1; id--) { /* parents have smaller ids */
        wrec_t *w = cl_write(cl, id);
        if (w->key != key || !covered[id])
            continue;
        for (uint32_t j = 0; j < w->nparents; j++)
            covered[w->parents[j]] = 1;
        if (cl->clock_order)
            for (uint32_t k = 1; k < id; k++)
                if (cl_write(cl, k)->key == key &&
                    clock_descends(cl_write(cl, id), cl_write(cl, k)))
                    covered[k] = 1;
    }
    for (uint32_t id = 1; id <= cl->nw && !cl->fail[0]; id++) {
        wrec_t *w = cl_write(cl, id), *x;
        if (w->key != key || w->state != 1 || covered[id])
            continue;
        clock_str(w->clock.data, w->clock.len, cs, sizeof(cs));
        ds[0] = 0;
        /* a write whose clock claims to descend from w without having read it */
        for (uint32_t k = id + 1; k <= cl->nw; k++) {
            x = cl_write(cl, k);
            if (x->key == key && x->state == 1 && clock_descends(x, w)) {
                char xs[128];
                clock_str(x->clock.data, x->clock.len, xs, sizeof(xs));
                snprintf(ds, sizeof(ds),
                         "; w%u (client c%d via n%d, clock %s) has a clock that "
                         "descends from it but %s",
                         k, x->client, x->node, xs,
                         x->blind ? "was written blind" : "was not written after reading it");
                break;
            }
        }
        cl_failf(cl,
                 "acknowledged write lost: w%u to %s (client c%d via n%d, clock %s) is not "
                 "live after repair, and no live write read it%s",
                 id, key_of(cl, key), w->client, w->node, cs, ds);
        cl->fail_key = key;
    }
    free(covered);
}

/* Reads every key `rounds` times (read repair) and lets it all settle. */
static void cl_repair(cluster_t *cl, client_t *rc, int rounds, uint32_t r)
{
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < 2 * MAXKEYS; k++) {
            if ((k < MAXKEYS && k >= cl->nkeys1) || (k >= MAXKEYS && k - MAXKEYS >= cl->nkeys2))
                continue;
            issue_get(cl, rc, k, r);
        }
        cl_drain(cl, 1500);
    }
}

static void cl_check_final(cluster_t *cl)
{
    uint32_t live[MOOR_RECORD_MAX_SIBLINGS], n;
    int exists;

    if (cl->inflight)
        cl_failf(cl, "%d client call(s) never answered", cl->inflight);
    for (int k = 0; k < 2 * MAXKEYS && !cl->fail[0]; k++) {
        if ((k < MAXKEYS && k >= cl->nkeys1) || (k >= MAXKEYS && k - MAXKEYS >= cl->nkeys2))
            continue;
        if (check_replicas(cl, k, live, &n, &exists)) {
            cl->fail_key = k;
            break;
        }
        if (k < MAXKEYS)
            check_phase1_key(cl, k, live, n);
        else
            check_phase2_key(cl, k, live, n);
    }
    if (!cl->fail[0] && cl->sim->st.harness_errors)
        cl_failf(cl, "environment contract violated: %s", cl->sim->first_error);
}

/* ---- one seed ---- */

typedef struct run_result {
    int failed;
    uint64_t trace, ops, acked, failures, quorum_failed, timeouts, repairs, events, crashes;
} run_result_t;

static void clients_start(cluster_t *cl, int phase, int nclients, int ops)
{
    cl->nclients = nclients;
    for (int i = 0; i < nclients; i++) {
        client_t *c = &cl->client[i];
        c->cl = cl;
        c->idx = i;
        c->phase = phase;
        c->step = 0;
        c->left = ops;
        for (int k = 0; k < MAXKEYS; k++)
            moor_buf_reset(&c->ctx[k]);
        c->nseen = 0;
        client_later(c);
    }
}

static run_result_t run_seed(uint64_t seed, int verbose)
{
    static const int rw[3][2] = {{2, 2}, {1, 3}, {3, 1}};
    cluster_t *cl = calloc(1, sizeof(*cl));
    uint64_t pick = seed * 0x9e3779b97f4a7c15ull;
    int nnodes = (pick >> 33) % 2 ? 5 : 3, q = (int)((pick >> 40) % 3);
    client_t *repairer;
    moor_coord_stats_t st;
    run_result_t res;

    cl_init(cl, seed, nnodes, rw[q][0], rw[q][1]);
    cl->verbose = verbose;
    cl->clock_order = getenv("MOOR_SIM_CLOCK_ORDER") != NULL;
    cl->nkeys1 = 12;
    cl->nkeys2 = 4;
    /* 1: no faults, one writer per key */
    clients_start(cl, 1, 3, 40);
    cl_run_clients(cl, 60000);
    /* 2: faults, concurrent writers on few keys */
    cl->r = cl->w = 2;
    cl->phase2_faults = 1;
    cl->sim->refuse = (int)sim_range(cl->sim, 0, 1);
    clients_start(cl, 2, 4, 40);
    sim_schedule_p(cl->sim, 10, -1, fault_next, cl, 0);
    cl_run_clients(cl, 120000);
    cl->phase2_faults = 0;
    /* heal, let every timeout pass, repair by reading, check */
    cl_heal_all(cl);
    cl_drain(cl, 2000);
    repairer = &cl->client[MAXCLIENTS - 1];
    repairer->cl = cl;
    repairer->idx = MAXCLIENTS - 1;
    repairer->phase = 3;
    cl_repair(cl, repairer, 3, 0);
    if (!cl->fail[0])
        cl_check_final(cl);
    cl_stats(cl, &st);
    memset(&res, 0, sizeof(res));
    res.failed = cl->fail[0] != 0;
    res.trace = cl->sim->trace;
    res.ops = cl->nops;
    res.acked = cl->acked;
    res.failures = cl->failed;
    res.quorum_failed = cl->quorum_failed;
    res.timeouts = cl->timeouts;
    res.repairs = st.read_repairs;
    res.events = cl->sim->st.events;
    res.crashes = cl->sim->st.crashes;
    if (verbose > 0 || (res.failed && verbose == 0))
        fprintf(stderr,
                "seed %llu: %d nodes, phase-1 R=%d W=%d: ops %llu acked %llu failed "
                "%llu (QUORUM_FAILED %llu, TIMEOUT %llu, UNAVAILABLE %llu, SHUTTING_DOWN %llu, "
                "other %llu) read-repairs %llu events %llu crashes %llu lost-msgs %llu "
                "trace %016llx\n",
                (unsigned long long)seed, nnodes, rw[q][0], rw[q][1], (unsigned long long)res.ops,
                (unsigned long long)res.acked, (unsigned long long)res.failures,
                (unsigned long long)res.quorum_failed, (unsigned long long)res.timeouts,
                (unsigned long long)cl->unavailable, (unsigned long long)cl->shutting_down,
                (unsigned long long)cl->other_err, (unsigned long long)res.repairs,
                (unsigned long long)res.events, (unsigned long long)res.crashes,
                (unsigned long long)(cl->sim->st.lost + cl->sim->st.reply_lost),
                (unsigned long long)res.trace);
    if (res.failed && verbose >= 0) {
        fprintf(stderr,
                "seed %llu FAILED: %s\n  replay: MOOR_SIM_SEED=%llu "
                "<build>/cluster_test_sim (MOOR_SIM_VERBOSE=1 traces every call)\n",
                (unsigned long long)seed, cl->fail, (unsigned long long)seed);
        if (cl->fail_key >= 0)
            dump_key(cl, cl->fail_key);
    }
    cl_free(cl);
    free(cl);
    return res;
}

/* The seeds a property runs: MOOR_SIM_SEED=n (that one), else
 * MOOR_SIM_SEEDS=count from 1, else def from 1.  Returns the count. */
static uint64_t seed_range(uint64_t def, uint64_t *first)
{
    const char *one = getenv("MOOR_SIM_SEED"), *many = getenv("MOOR_SIM_SEEDS");

    *first = 1;
    if (one && *one) {
        *first = strtoull(one, NULL, 0);
        return 1;
    }
    return many && *many ? strtoull(many, NULL, 0) : def;
}

static void test_properties_over_seeds(void **state)
{
    uint64_t first, count = seed_range(200, &first), failed = 0, first_failed = 0;
    run_result_t tot, r;
    (void)state;

    memset(&tot, 0, sizeof(tot));
    for (uint64_t seed = first; seed < first + count; seed++) {
        r = run_seed(seed, count == 1 ? 1 + (getenv("MOOR_SIM_VERBOSE") != NULL) : count <= 200);
        if (r.failed && !failed++)
            first_failed = seed;
        tot.ops += r.ops, tot.acked += r.acked, tot.failures += r.failures;
        tot.quorum_failed += r.quorum_failed, tot.timeouts += r.timeouts;
        tot.repairs += r.repairs, tot.events += r.events, tot.crashes += r.crashes;
        if (failed >= 5)
            break;
    }
    fprintf(stderr,
            "sim: %llu seeds from %llu: ops %llu acked %llu failed %llu "
            "(QUORUM_FAILED %llu, TIMEOUT %llu) read-repairs %llu crashes %llu events %llu; "
            "%llu seeds failed\n",
            (unsigned long long)count, (unsigned long long)first, (unsigned long long)tot.ops,
            (unsigned long long)tot.acked, (unsigned long long)tot.failures,
            (unsigned long long)tot.quorum_failed, (unsigned long long)tot.timeouts,
            (unsigned long long)tot.repairs, (unsigned long long)tot.crashes,
            (unsigned long long)tot.events, (unsigned long long)failed);
    if (failed)
        fail_msg("%llu seed(s) failed; first: MOOR_SIM_SEED=%llu", (unsigned long long)failed,
                 (unsigned long long)first_failed);
}

static void test_cluster_replays_a_seed(void **state)
{
    const char *one = getenv("MOOR_SIM_SEED");
    uint64_t first = one && *one ? strtoull(one, NULL, 0) : 1;
    (void)state;

    for (uint64_t seed = first; seed < first + 3; seed++) {
        run_result_t a = run_seed(seed, -1), b = run_seed(seed, -1);
        if (a.trace != b.trace)
            fail_msg("seed %llu: trace %016llx then %016llx", (unsigned long long)seed,
                     (unsigned long long)a.trace, (unsigned long long)b.trace);
    }
}

/* ---- scenarios ---- */

static client_t *scenario_client(cluster_t *cl)
{
    client_t *c = &cl->client[0];
    c->cl = cl;
    c->idx = 0;
    c->phase = 3;
    cl->nclients = 1;
    return c;
}

static const moor_buf_t *peek_key(cluster_t *cl, int node, int key)
{
    moor_buf_t ek = MOOR_BUF_INIT;
    const moor_buf_t *b;

    moor_record_key(SPACE, sizeof(SPACE) - 1, key_of(cl, key), strlen(key_of(cl, key)), &ek);
    b = sim_store_peek(cl->sim, node, ek.data, ek.len);
    moor_buf_free(&ek);
    return b;
}

static void test_restart_keeps_acknowledged_writes(void **state)
{
    cluster_t *cl = calloc(1, sizeof(*cl));
    client_t *c;
    (void)state;

    cl_init(cl, 11, 3, 2, 3); /* W = all: durable on every replica when acked */
    c = scenario_client(cl);
    cl->nkeys1 = 1;
    issue_write(cl, c, 0, 0, 1);
    cl_drain(cl, 100);
    assert_int_equal(cl_write(cl, 1)->state, 1);
    for (int i = 0; i < 3; i++) {
        cl_crash(cl, i, 1); /* drops only what was never acknowledged */
        assert_non_null(peek_key(cl, i, 0));
        cl_restart(cl, i);
    }
    issue_get(cl, c, 0, 3);
    cl_drain(cl, 100);
    assert_int_equal(c->nseen, 1);
    assert_int_equal(c->seen[0], 1);
    assert_string_equal(cl->fail, "");
    assert_int_equal(cl->inflight, 0);
    cl_free(cl);
    free(cl);
}

static void test_read_repair_updates_a_restarted_node(void **state)
{
    cluster_t *cl = calloc(1, sizeof(*cl));
    client_t *c;
    moor_record_t a, b;
    (void)state;

    cl_init(cl, 12, 3, 2, 2);
    c = scenario_client(cl);
    cl->nkeys1 = 6;
    cl_crash(cl, 2, 0);
    for (int k = 0; k < 6; k++)
        issue_write(cl, c, k, 0, 1);
    cl_drain(cl, 1000);
    for (uint32_t id = 1; id <= 6; id++)
        if (cl_write(cl, id)->state != 1)
            fail_msg("w%u with one node down: %s", id, cl_write(cl, id)->err);
    cl_restart(cl, 2);
    for (int k = 0; k < 6; k++)
        assert_null(peek_key(cl, 2, k));
    for (int k = 0; k < 6; k++)
        issue_get(cl, c, k, 3);
    cl_drain(cl, 1000);
    for (int k = 0; k < 6; k++) {
        const moor_buf_t *x = peek_key(cl, 2, k), *y = peek_key(cl, 0, k);
        if (!x)
            fail_msg("read repair did not reach the restarted n2 for %s", key_of(cl, k));
        assert_non_null(y);
        assert_int_equal(moor_record_decode(x->data, x->len, &a), 0);
        assert_int_equal(moor_record_decode(y->data, y->len, &b), 0);
        assert_true(record_same(&a, &b));
    }
    assert_string_equal(cl->fail, "");
    cl_free(cl);
    free(cl);
}

static void test_two_failed_replicas_give_quorum_failed(void **state)
{
    cluster_t *cl = calloc(1, sizeof(*cl));
    client_t *c;
    (void)state;

    cl_init(cl, 13, 3, 2, 2);
    c = scenario_client(cl);
    cl->nkeys1 = 1;
    cl_crash(cl, 1, 0);
    cl_crash(cl, 2, 0);
    issue_write(cl, c, 0, 0, 1);
    issue_get(cl, c, 0, 0);
    cl_drain(cl, 3000);
    assert_int_equal(cl->inflight, 0);
    assert_int_equal(cl_write(cl, 1)->state, 2);
    assert_string_equal(cl_write(cl, 1)->err, "QUORUM_FAILED");
    assert_int_equal(cl->quorum_failed, 2);
    cl_free(cl);
    free(cl);
}

/* record.h: a write without ctx on an existing key adds a sibling; two
 * writes from one read are concurrent.  Both through the same coordinator,
 * one after the other, so only the clocks can tell them apart. */
static void test_writes_one_coordinator_did_not_see_are_kept(void **state)
{
    cluster_t *cl = calloc(1, sizeof(*cl));
    client_t *c;
    char why[2][256] = {"", ""};
    (void)state;

    cl_init(cl, 14, 3, 2, 2);
    c = scenario_client(cl);
    cl->nkeys1 = 2;
    cl->force_node = 0;
    /* a0: two blind writes, the second after the first was acknowledged */
    issue_write(cl, c, 0, 0, 1);
    cl_drain(cl, 100);
    issue_write(cl, c, 0, 0, 1);
    cl_drain(cl, 100);
    /* a1: one write, one read (of it), then two writes with that read's ctx */
    issue_write(cl, c, 1, 0, 1);
    cl_drain(cl, 100);
    issue_get(cl, c, 1, 3);
    cl_drain(cl, 100);
    issue_write(cl, c, 1, 0, 0);
    issue_write(cl, c, 1, 0, 0);
    cl_drain(cl, 100);
    for (uint32_t id = 1; id <= 5; id++)
        assert_int_equal(cl_write(cl, id)->state, 1);
    issue_get(cl, c, 0, 3);
    cl_drain(cl, 100);
    if (c->nseen != 2 || c->seen[0] + c->seen[1] != 3)
        snprintf(why[0], sizeof(why[0]),
                 "a0: blind writes w1 then w2 via n0: %u live value(s), first w%u; expected "
                 "siblings w1 and w2 (record.h: no ctx on an existing key adds one)",
                 c->nseen, c->nseen ? c->seen[0] : 0);
    issue_get(cl, c, 1, 3);
    cl_drain(cl, 100);
    if (c->nseen != 2 || c->seen[0] + c->seen[1] != 9)
        snprintf(why[1], sizeof(why[1]),
                 "a1: w4 and w5 both written with the ctx of one read (of w3) via n0: %u live "
                 "value(s), first w%u; expected siblings w4 and w5",
                 c->nseen, c->nseen ? c->seen[0] : 0);
    cl_free(cl);
    free(cl);
    if (why[0][0] || why[1][0])
        fail_msg("%s%s%s", why[0], why[0][0] && why[1][0] ? "\n" : "", why[1]);
}

/* The ring every coordinator routes by, with member i's status set. */
static void cl_set_status(cluster_t *cl, int i, int status)
{
    moor_member_t m[SIM_MAX_NODES];
    moor_ring_t *ring;

    for (uint32_t k = 0; k < (uint32_t)cl->nnodes; k++) {
        const moor_member_t *x = moor_ring_member(cl->ring, k);
        m[k] = *x;
        if (x->idlen == cl->sim->node[i].idlen && memcmp(x->id, cl->sim->node[i].id, x->idlen) == 0)
            m[k].status = status;
    }
    assert_int_equal(moor_ring_build(m, (uint32_t)cl->nnodes, &ring), 0);
    moor_ring_free(cl->ring);
    cl->ring = ring;
    for (int k = 0; k < cl->nnodes; k++)
        if (cl->coord[k])
            moor_coord_set_ring(cl->coord[k], ring);
    cl->status[i] = status;
    for (int k = 0; k < cl->nnodes; k++) {
        if (k == i || !cl->hints[k])
            continue;
        if (status == MOOR_MEMBER_UP)
            moor_hints_owner_up(cl->hints[k], cl->sim->node[i].id, cl->sim->node[i].idlen);
        else
            moor_hints_owner_down(cl->hints[k], cl->sim->node[i].id, cl->sim->node[i].idlen);
    }
}

/* Sloppy quorum and notfound_ok = false, 5 nodes, N = 3, R = 1, W = 2: a
 * member the ring says is down is never asked (no request goes to it),
 * writes keep being acknowledged; once it is back (and up) it has missed
 * them, yet a get at r = 1 through it never answers nil for a key the
 * others hold: its own notfound does not satisfy R. */
static void test_down_member_skipped_and_never_answers_null(void **state)
{
    cluster_t *cl = calloc(1, sizeof(*cl));
    client_t *c;
    uint64_t to_down;
    (void)state;

    cl_init(cl, 15, 5, 1, 2);
    c = scenario_client(cl);
    cl->nkeys1 = 12;
    cl_crash(cl, 4, 0);
    cl_set_status(cl, 4, MOOR_MEMBER_DOWN);
    to_down = cl->sim->st.to_down;
    for (int k = 0; k < 12; k++)
        issue_write(cl, c, k, 0, 1);
    cl_drain(cl, 1000);
    for (uint32_t id = 1; id <= 12; id++)
        if (cl_write(cl, id)->state != 1)
            fail_msg("w%u with n4 down in the ring: %s", id, cl_write(cl, id)->err);
    assert_int_equal(cl->sim->st.to_down, to_down); /* n4 was never asked */
    cl_restart(cl, 4);
    cl_set_status(cl, 4, MOOR_MEMBER_UP);
    cl->force_node = 4;
    for (int k = 0; k < 12; k++) {
        issue_get(cl, c, k, 1);
        cl_drain(cl, 1000);
        if (c->nseen != 1 || c->seen[0] != (uint32_t)k + 1)
            fail_msg("get %s at r = 1 via n4 (which missed the write): %u value(s), expected w%d",
                     key_of(cl, k), c->nseen, k + 1);
    }
    assert_string_equal(cl->fail, "");
    assert_int_equal(cl->inflight, 0);
    cl_free(cl);
    free(cl);
}

/* ---- sloppy quorum with hinted handoff, over seeds ---- */

/* Gives every node a hint store (before anything ran: the coordinators
 * are rebuilt with it). */
static void cl_enable_hints(cluster_t *cl)
{
    cl->use_hints = 1;
    for (int i = 0; i < cl->nnodes; i++) {
        moor_coord_free(cl->coord[i]);
        cl->coord[i] = NULL;
        cl_start_node(cl, i);
    }
}

/* Crashes a node and, at once, marks it down (a perfect detector: what
 * gossip decides is tested on its own in cluster_test_gossip); or
 * restarts one that is down and marks it up.  At most one node is down
 * at a time, so every key keeps two owners up. */
static void sloppy_fault_next(sim_t *s, sim_ev_t *ev)
{
    cluster_t *cl = ev->p;
    int a = (int)sim_range(s, 0, (uint64_t)cl->nnodes - 1);

    if (!cl->phase2_faults)
        return;
    if (cl_down_count(cl) == 0) {
        if (sim_chance(s, 0.6)) {
            cl_crash(cl, a, 0);
            cl_set_status(cl, a, MOOR_MEMBER_DOWN);
        }
    } else {
        for (int i = 0; i < cl->nnodes; i++)
            if (!s->node[i].up) {
                cl_restart(cl, i);
                cl_set_status(cl, i, MOOR_MEMBER_UP);
                break;
            }
    }
    sim_schedule_p(s, sim_range(s, 100, 600), -1, sloppy_fault_next, cl, 0);
}

/* Every acknowledged write of every key is on each of its N owners
 * (live there, or superseded there by a live write that read it), read
 * straight from the owners' stores: no read repair ran. */
static void check_owners_hold_acked(cluster_t *cl)
{
    moor_buf_t ek = MOOR_BUF_INIT;
    uint32_t live[MOOR_RECORD_MAX_SIBLINGS], n;
    moor_record_t rec;
    int rep[RF];

    for (int k = MAXKEYS; k < MAXKEYS + cl->nkeys2 && !cl->fail[0]; k++) {
        uint32_t nrep = cl_replicas(cl, k, rep);
        moor_buf_reset(&ek);
        if (moor_record_key(SPACE, sizeof(SPACE) - 1, key_of(cl, k), strlen(key_of(cl, k)), &ek))
            abort();
        for (uint32_t i = 0; i < nrep && !cl->fail[0]; i++) {
            const moor_buf_t *raw = sim_store_peek(cl->sim, rep[i], ek.data, ek.len);
            n = 0;
            if (raw) {
                if (moor_record_decode(raw->data, raw->len, &rec)) {
                    cl_failf(cl, "owner n%d holds an undecodable record of %s", rep[i],
                             key_of(cl, k));
                    break;
                }
                for (uint32_t j = 0; j < rec.n; j++)
                    if (!rec.sib[j].tombstone)
                        live[n++] = value_id(rec.sib[j].value, rec.sib[j].vlen);
            }
            check_phase2_key(cl, k, live, n);
            if (cl->fail[0]) {
                char msg[sizeof(cl->fail) + 32];
                snprintf(msg, sizeof(msg), "owner n%d: %s", rep[i], cl->fail);
                memcpy(cl->fail, msg, sizeof(cl->fail));
                cl->fail[sizeof(cl->fail) - 1] = '\0';
            }
        }
    }
    moor_buf_free(&ek);
}

typedef struct sloppy_result {
    int failed;
    uint64_t acked, fallback_writes, stored, delivered, dropped, crashes;
} sloppy_result_t;

static sloppy_result_t run_sloppy_seed(uint64_t seed, int verbose)
{
    cluster_t *cl = calloc(1, sizeof(*cl));
    moor_coord_stats_t st;
    moor_hints_stats_t hs;
    sloppy_result_t res;

    memset(&res, 0, sizeof(res));
    cl_init(cl, seed, 5, 2, 2);
    cl_enable_hints(cl);
    cl->verbose = verbose > 1 ? 2 : 0;
    cl->nkeys1 = 0;
    cl->nkeys2 = 8;
    cl->phase2_faults = 1;
    clients_start(cl, 2, 4, 40);
    sim_schedule_p(cl->sim, 50, -1, sloppy_fault_next, cl, 0);
    cl_run_clients(cl, 120000);
    cl->phase2_faults = 0;
    for (int i = 0; i < cl->nnodes; i++)
        if (!cl->sim->node[i].up) {
            cl_restart(cl, i);
            cl_set_status(cl, i, MOOR_MEMBER_UP);
        }
    cl_drain(cl, 30000); /* hints replay; no client reads, so no read repair */
    if (cl->inflight)
        cl_failf(cl, "%d client call(s) never answered", cl->inflight);
    for (int i = 0; i < cl->nnodes && !cl->fail[0]; i++) {
        moor_hints_stats(cl->hints[i], &hs);
        res.stored += hs.stored, res.delivered += hs.delivered, res.dropped += hs.dropped;
        if (hs.pending)
            cl_failf(cl, "n%d still holds %llu hints after 30 s with every owner up", i,
                     (unsigned long long)hs.pending);
        if (hs.dropped)
            cl_failf(cl, "n%d dropped %llu hints within its bounds", i,
                     (unsigned long long)hs.dropped);
    }
    if (!cl->fail[0])
        check_owners_hold_acked(cl);
    if (!cl->fail[0] && cl->sim->st.harness_errors)
        cl_failf(cl, "environment contract violated: %s", cl->sim->first_error);
    for (int i = 0; i < cl->nnodes; i++) {
        moor_coord_stats(cl->coord[i], &st);
        res.fallback_writes += st.fallback_writes;
    }
    res.failed = cl->fail[0] != 0;
    res.acked = cl->acked;
    res.crashes = cl->sim->st.crashes;
    if (res.failed && verbose >= 0)
        fprintf(stderr,
                "seed %llu FAILED (sloppy quorum + hints): %s\n  replay: MOOR_SIM_SEED=%llu "
                "MOOR_TEST_FILTER='*sloppy*' <build>/cluster_test_sim\n",
                (unsigned long long)seed, cl->fail, (unsigned long long)seed);
    cl_free(cl);
    free(cl);
    return res;
}

/* 5 nodes, N = 3, R = W = 2, writers on shared keys while nodes crash
 * and come back (one at a time, marked down and up as they go): after
 * every node is back and hints have drained, every acknowledged write is
 * on all N owners without any read repair, no hint is left and none was
 * dropped. */
static void test_sloppy_hints_over_seeds(void **state)
{
    uint64_t first, count = seed_range(300, &first), failed = 0, first_failed = 0;
    sloppy_result_t tot, r;
    (void)state;

    memset(&tot, 0, sizeof(tot));
    for (uint64_t seed = first; seed < first + count; seed++) {
        r = run_sloppy_seed(seed, count == 1 ? 1 + (getenv("MOOR_SIM_VERBOSE") != NULL) : 0);
        if (r.failed && !failed++)
            first_failed = seed;
        tot.acked += r.acked, tot.fallback_writes += r.fallback_writes;
        tot.stored += r.stored, tot.delivered += r.delivered, tot.crashes += r.crashes;
        if (failed >= 5)
            break;
    }
    fprintf(stderr,
            "sloppy+hints: %llu seeds from %llu: acked %llu, fallback writes %llu, hints "
            "stored %llu delivered %llu, crashes %llu; %llu seeds failed\n",
            (unsigned long long)count, (unsigned long long)first, (unsigned long long)tot.acked,
            (unsigned long long)tot.fallback_writes, (unsigned long long)tot.stored,
            (unsigned long long)tot.delivered, (unsigned long long)tot.crashes,
            (unsigned long long)failed);
    if (failed)
        fail_msg("%llu seed(s) failed; first: MOOR_SIM_SEED=%llu", (unsigned long long)failed,
                 (unsigned long long)first_failed);
    assert_true(tot.fallback_writes > 0);
    assert_true(tot.delivered > 0);
}

/* ---- DVV: siblings bounded by truly concurrent writes ---- */

/* 1 if write x read y: y is among x's parents, transitively. */
static int dvv_saw(cluster_t *cl, uint32_t x, uint32_t y, char *mark)
{
    wrec_t *w = cl_write(cl, x);

    if (mark[x])
        return 0;
    mark[x] = 1;
    for (uint32_t j = 0; j < w->nparents; j++)
        if (w->parents[j] == y || (w->parents[j] < x && dvv_saw(cl, w->parents[j], y, mark)))
            return 1;
    return 0;
}

/* Every few ms of simulated time, at every replica of every key: the
 * siblings are writes none of whose writers read another (an antichain:
 * truly concurrent), and there are at most as many as writers, plus the
 * writes of the key that failed (a failed write may have landed, and its
 * writer's next write did not read it). */
static void dvv_watch(sim_t *s, sim_ev_t *ev)
{
    cluster_t *cl = ev->p;
    moor_record_t *rec = malloc(sizeof(*rec));
    char *mark = malloc(cl->nw + 1);
    uint32_t ids[MOOR_RECORD_MAX_SIBLINGS];

    for (int k = MAXKEYS; k < MAXKEYS + cl->nkeys2 && !cl->fail[0]; k++) {
        uint32_t failed = 0;
        for (uint32_t id = 1; id <= cl->nw; id++)
            failed += cl_write(cl, id)->key == k && cl_write(cl, id)->state == 2;
        for (int i = 0; i < cl->nnodes && !cl->fail[0]; i++) {
            const moor_buf_t *raw = peek_key(cl, i, k);
            uint32_t n = 0;
            if (!raw)
                continue;
            if (moor_record_decode(raw->data, raw->len, rec)) {
                cl_failf(cl, "n%d holds an undecodable record of %s", i, key_of(cl, k));
                break;
            }
            for (uint32_t j = 0; j < rec->n; j++)
                ids[n++] = rec->sib[j].tombstone ? 0 : value_id(rec->sib[j].value, rec->sib[j].vlen);
            if (n > cl->most_siblings)
                cl->most_siblings = n;
            if (n > (uint32_t)cl->nclients + failed)
                cl_failf(cl, "n%d holds %u siblings of %s at t=%llu: more than %d writers plus %u "
                         "failed writes",
                         i, n, key_of(cl, k), (unsigned long long)s->now, cl->nclients, failed);
            for (uint32_t a = 0; a < n && !cl->fail[0]; a++)
                for (uint32_t b = 0; b < n && !cl->fail[0]; b++) {
                    if (a == b || !ids[a] || !ids[b] || ids[a] > cl->nw)
                        continue;
                    memset(mark, 0, cl->nw + 1);
                    if (dvv_saw(cl, ids[a], ids[b], mark))
                        cl_failf(cl, "n%d holds w%u beside w%u of %s, but w%u's writer read w%u",
                                 i, ids[a], ids[b], key_of(cl, k), ids[a], ids[b]);
                }
            if (cl->fail[0])
                cl->fail_key = k;
        }
    }
    free(mark);
    free(rec);
    if (cl->dvv_watch && !cl->fail[0])
        sim_schedule_p(s, 7, -1, dvv_watch, cl, 0);
}

/* Faults that lose and reorder messages and cut links, nothing else. */
static void dvv_fault_next(sim_t *s, sim_ev_t *ev)
{
    static const double losses[] = {0, 0.02, 0.1, 0.3};
    cluster_t *cl = ev->p;
    int a = (int)sim_range(s, 0, (uint64_t)cl->nnodes - 1);
    int b = (int)sim_range(s, 0, (uint64_t)cl->nnodes - 1);

    if (!cl->phase2_faults)
        return;
    switch (sim_range(s, 0, 3)) {
    case 0: s->loss = losses[sim_range(s, 0, 3)]; break;
    case 1:
        if (a != b)
            sim_cut(s, a, b, 1);
        break;
    default: sim_heal(s); break;
    }
    sim_schedule_p(s, sim_range(s, 20, 120), -1, dvv_fault_next, cl, 0);
}

typedef struct dvv_result {
    int failed;
    uint64_t acked, failures;
    uint32_t most;
} dvv_result_t;

/* W writers, each reading a key and writing back with the ctx it read, in
 * a loop, on two keys of a 3-node cluster (R = W = 2) while messages are
 * lost, reordered and links cut; then heal, repair and check that no
 * acknowledged write was lost (check_phase2_key). */
static dvv_result_t run_dvv_seed(uint64_t seed, int verbose)
{
    cluster_t *cl = calloc(1, sizeof(*cl));
    client_t *repairer;
    dvv_result_t res;

    cl_init(cl, seed, 3, 2, 2);
    cl->verbose = verbose;
    cl->nkeys1 = 0;
    cl->nkeys2 = 2;
    cl->no_blind = 1;
    cl->phase2_faults = 1;
    cl->dvv_watch = 1;
    clients_start(cl, 2, MAXCLIENTS - 1, 60);
    sim_schedule_p(cl->sim, 10, -1, dvv_fault_next, cl, 0);
    sim_schedule_p(cl->sim, 7, -1, dvv_watch, cl, 0);
    cl_run_clients(cl, 120000);
    cl->phase2_faults = 0;
    cl_heal_all(cl);
    cl_drain(cl, 2000);
    repairer = &cl->client[MAXCLIENTS - 1];
    repairer->cl = cl;
    repairer->idx = MAXCLIENTS - 1;
    repairer->phase = 3;
    cl_repair(cl, repairer, 3, 0);
    cl->dvv_watch = 0;
    if (!cl->fail[0])
        cl_check_final(cl);
    memset(&res, 0, sizeof(res));
    res.failed = cl->fail[0] != 0;
    res.acked = cl->acked;
    res.failures = cl->failed;
    res.most = cl->most_siblings;
    if (verbose > 0)
        fprintf(stderr, "dvv seed %llu: acked %llu failed %llu most siblings %u\n",
                (unsigned long long)seed, (unsigned long long)res.acked,
                (unsigned long long)res.failures, res.most);
    if (res.failed && verbose >= 0) {
        fprintf(stderr, "dvv seed %llu FAILED: %s\n  replay: MOOR_SIM_SEED=%llu\n",
                (unsigned long long)seed, cl->fail, (unsigned long long)seed);
        if (cl->fail_key >= 0)
            dump_key(cl, cl->fail_key);
    }
    cl_free(cl);
    free(cl);
    return res;
}

static void test_dvv_siblings_bounded_over_seeds(void **state)
{
    uint64_t first, count = seed_range(150, &first), failed = 0, first_failed = 0;
    uint64_t acked = 0, failures = 0;
    uint32_t most = 0;
    (void)state;

    for (uint64_t seed = first; seed < first + count; seed++) {
        dvv_result_t r = run_dvv_seed(seed, count == 1 ? 1 : 0);
        if (r.failed && !failed++)
            first_failed = seed;
        acked += r.acked, failures += r.failures;
        most = r.most > most ? r.most : most;
        if (failed >= 5)
            break;
    }
    fprintf(stderr,
            "dvv: %llu seeds from %llu, %d writers each reading then writing with the ctx: "
            "acked %llu, failed %llu, most siblings at a replica %u; %llu seeds failed\n",
            (unsigned long long)count, (unsigned long long)first, MAXCLIENTS - 1,
            (unsigned long long)acked, (unsigned long long)failures, most,
            (unsigned long long)failed);
    if (failed)
        fail_msg("%llu seed(s) failed; first: MOOR_SIM_SEED=%llu", (unsigned long long)failed,
                 (unsigned long long)first_failed);
    assert_true(acked > 0);
    assert_true(most >= 2); /* the writers did run concurrently */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_orders_ties_by_sequence),
        cmocka_unit_test(test_net_delivers_reorders_and_answers_once),
        cmocka_unit_test(test_net_loss_cuts_and_down_nodes_time_out),
        cmocka_unit_test(test_net_crash_cancels_the_old_process),
        cmocka_unit_test(test_store_fifo_and_crash),
        cmocka_unit_test(test_sim_replays_a_seed),
        cmocka_unit_test(test_restart_keeps_acknowledged_writes),
        cmocka_unit_test(test_read_repair_updates_a_restarted_node),
        cmocka_unit_test(test_two_failed_replicas_give_quorum_failed),
        cmocka_unit_test(test_writes_one_coordinator_did_not_see_are_kept),
        cmocka_unit_test(test_down_member_skipped_and_never_answers_null),
        cmocka_unit_test(test_cluster_replays_a_seed),
        cmocka_unit_test(test_properties_over_seeds),
        cmocka_unit_test(test_sloppy_hints_over_seeds),
        cmocka_unit_test(test_dvv_siblings_bounded_over_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
