/*
 * sim.h -- TEST: a deterministic simulator for cluster code (header-only).
 *
 * Runs a whole cluster in one process from a seed (the FoundationDB
 * approach, DESIGN.md "Simulation"): simulated time is a priority queue of
 * events ordered by (time, sequence number), so ties fire in the order they
 * were scheduled and nothing depends on the host's clock, threads or
 * pointer values.  Each node gets env.h's three interfaces:
 *
 * - clock: now_ms = simulated time + a per-node skew of a few ms (seeded);
 *   timers are events.
 * - transport: a request is delivered to the target's peer handler after a
 *   random delay (1..20 ms; random delays reorder), unless it is lost
 *   (probability `loss`), the pair is cut (partitions, checked when sent and
 *   when delivered) or the target is down.  The answer travels back the same
 *   way.  The caller's cb runs exactly once: with the answer, or with
 *   MOOR_ETIMEDOUT at timeout_ms when the request or its answer was lost (or,
 *   with `refuse` set, -ECONNREFUSED after a delay when the target is down,
 *   as a real connection to a dead process fails).
 * - store: an in-memory map key -> record bytes.  A put or del is visible
 *   at once (like the engine's memtable) and becomes durable in FIFO order
 *   a few ms later, when done runs.  A crash either keeps everything
 *   (flushed) or drops what was not yet durable, i.e. never acknowledged
 *   (a lost del brings the key back).  scan walks the live keys in byte
 *   order (sorted per call: the key spaces are small).
 *
 * Crash and restart: sim_crash() bumps the node's incarnation, so nothing
 * belonging to the old process fires on its own again (its timers, request
 * callbacks, answers it owed, store completions); the owner then frees the
 * node's service and calls sim_release(), which answers the old process's
 * outstanding requests and store writes with MOOR_ECLOSED, at once, the way
 * a real node's peer pool and engine close (env.h: each callback runs
 * exactly once, so a freed service can drop what it still holds); later a
 * new service is built on the same store after sim_restart().
 *
 * The peer handler (what a delivered request calls) is a hook, so the
 * simulator tests itself without a coordinator.  Every event folds into a
 * trace hash: the same seed gives the same hash.  One thread; everything
 * the simulator allocates is freed by sim_free(), whatever the service
 * did with its callbacks.
 */
#ifndef MOOR_TEST_SIM_H
#define MOOR_TEST_SIM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/coord.h"
#include "cluster/env.h"
#include "util/buf.h"
#include "util/err.h"
#include "testutil.h"

#define SIM_MAX_NODES 24 /* the load table test runs 20 */
#define SIM_T0 1700000000000ull /* simulated epoch in ms: plausible wall clock */

typedef struct sim sim_t;
typedef struct sim_ev sim_ev_t;
typedef void (*sim_ev_fn)(sim_t *s, sim_ev_t *ev);

/* An event; `node`/`inc` set (node >= 0) means it belongs to that node's
 * incarnation and is dropped if the node crashed since. */
struct sim_ev {
    uint64_t at, seq;
    sim_ev_fn fn;
    void *p;  /* payload */
    int own;  /* 1: p is free()d after firing (or at sim_free) */
    int node; /* -1: the harness's own event */
    uint32_t inc;
    uint64_t timer_id; /* nonzero for clock timers */
    moor_timer_fn tcb; /* timer callback and its argument */
    void *targ;
    int cancelled;
};

/* The peer handler: a request delivered to node.  done(arg, ...) must run
 * once (maybe before return). */
typedef void (*sim_handler_fn)(void *ud, int node, const char *method, size_t mlen,
                               const char *params, size_t plen, uint32_t nparams,
                               moor_coord_done_fn done, void *arg);

typedef struct sim_kv {
    char *key;
    size_t klen;
    moor_buf_t live;    /* what get sees; len 0 and !has_live: absent */
    moor_buf_t durable; /* what survives a crash */
    int has_live, has_durable;
} sim_kv_t;

typedef struct sim_node {
    sim_t *sim;
    int idx;
    char id[16];
    size_t idlen;
    int64_t skew; /* ms added to simulated time by now_ms */
    uint32_t inc; /* incarnation: bumped by every crash */
    int up;
    sim_kv_t *kv; /* the store, linear (small key spaces) */
    size_t nkv, kvcap;
    uint64_t durable_at; /* FIFO completion time of the store */
    uint64_t puts, put_failures;
} sim_node_t;

/* A request in flight; kept until sim_free (answers may come late). */
typedef struct sim_req {
    struct sim_req *next;
    sim_t *sim;
    int from, to;
    uint32_t from_inc, to_inc;
    moor_peer_reply_fn cb;
    void *arg;
    int answered; /* cb ran */
    int handled;  /* the handler's done ran */
    char *method;
    size_t mlen;
    char *params;
    size_t plen;
    uint32_t nparams;
} sim_req_t;

typedef struct sim_stats {
    uint64_t events, sent, lost, cut, to_down, delivered, replies, reply_lost, timeouts, refused,
        timers, store_puts, store_dels, store_scans, store_fail, crashes, restarts, harness_errors;
} sim_stats_t;

struct sim {
    uint64_t rng;
    uint64_t now; /* simulated ms since SIM_T0 */
    uint64_t seq;
    sim_ev_t **heap;
    size_t nheap, heapcap;
    sim_ev_t **timers; /* by timer id - 1: pending timers, NULL once fired/stopped */
    size_t ntimers, timercap;
    int nnodes;
    sim_node_t node[SIM_MAX_NODES];
    unsigned char cutm[SIM_MAX_NODES][SIM_MAX_NODES]; /* 1: from i to j is cut */
    double loss;                   /* probability a message (request or answer) is lost */
    double store_fail;             /* probability a store put fails at once */
    int refuse;                    /* requests to a down node fail fast (sometimes) */
    uint32_t delay_min, delay_max; /* network delay bounds, ms */
    sim_handler_fn handler;
    void *handler_ud;
    sim_req_t *reqs;
    uint64_t trace; /* FNV-1a over every fired event */
    sim_stats_t st;
    char first_error[256]; /* first harness contract violation seen */
};

/* ===== helpers ===== */

static inline uint64_t sim_rand(sim_t *s)
{
    return testutil_rand(&s->rng);
}

/* Uniform in [lo, hi]. */
static inline uint64_t sim_range(sim_t *s, uint64_t lo, uint64_t hi)
{
    return lo + sim_rand(s) % (hi - lo + 1);
}

static inline int sim_chance(sim_t *s, double p)
{
    return p > 0 && (double)(sim_rand(s) >> 11) * (1.0 / 9007199254740992.0) < p;
}

static inline void sim_trace(sim_t *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        s->trace ^= b[i];
        s->trace *= 0x100000001b3ull;
    }
}

static inline void sim_trace_u64(sim_t *s, uint64_t v)
{
    sim_trace(s, &v, sizeof(v));
}

/* Records a harness contract violation (e.g. a done that ran twice); the
 * tests fail on s->st.harness_errors. */
static inline void sim_error(sim_t *s, const char *what)
{
    if (!s->st.harness_errors++)
        snprintf(s->first_error, sizeof(s->first_error), "t=%llu: %s", (unsigned long long)s->now,
                 what);
}

/* ===== the event queue: a binary heap on (at, seq) ===== */

static inline int sim_ev_less(const sim_ev_t *a, const sim_ev_t *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static inline void sim_heap_push(sim_t *s, sim_ev_t *ev)
{
    size_t i;

    if (s->nheap == s->heapcap) {
        s->heapcap = s->heapcap ? s->heapcap * 2 : 256;
        s->heap = realloc(s->heap, s->heapcap * sizeof(*s->heap));
        if (!s->heap)
            abort();
    }
    i = s->nheap++;
    while (i > 0 && sim_ev_less(ev, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = ev;
}

static inline sim_ev_t *sim_heap_pop(sim_t *s)
{
    sim_ev_t *top, *last;
    size_t i = 0;

    if (!s->nheap)
        return NULL;
    top = s->heap[0];
    last = s->heap[--s->nheap];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && sim_ev_less(s->heap[c + 1], s->heap[c]))
            c++;
        if (!sim_ev_less(s->heap[c], last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

/* Schedules fn(s, ev) at now + delay; node >= 0 ties it to that node's
 * current incarnation.  own: takes ownership of p (free()d after firing),
 * else p is borrowed. */
static inline sim_ev_t *sim_schedule_p(sim_t *s, uint64_t delay, int node, sim_ev_fn fn, void *p,
                                       int own)
{
    sim_ev_t *ev = calloc(1, sizeof(*ev));

    if (!ev)
        abort();
    ev->at = s->now + delay;
    ev->seq = ++s->seq;
    ev->fn = fn;
    ev->p = p;
    ev->own = own;
    ev->node = node;
    ev->inc = node >= 0 ? s->node[node].inc : 0;
    sim_heap_push(s, ev);
    return ev;
}

static inline sim_ev_t *sim_schedule(sim_t *s, uint64_t delay, int node, sim_ev_fn fn, void *p)
{
    return sim_schedule_p(s, delay, node, fn, p, 1);
}

static inline int sim_ev_stale(sim_t *s, const sim_ev_t *ev)
{
    return ev->cancelled || (ev->node >= 0 && s->node[ev->node].inc != ev->inc);
}

/* Fires the next event.  1, or 0 when the queue is empty. */
static inline int sim_step(sim_t *s)
{
    sim_ev_t *ev = sim_heap_pop(s);

    if (!ev)
        return 0;
    if (ev->at < s->now)
        sim_error(s, "event queue went back in time");
    s->now = ev->at;
    if (ev->timer_id && ev->timer_id <= s->ntimers && s->timers[ev->timer_id - 1] == ev)
        s->timers[ev->timer_id - 1] = NULL;
    if (!sim_ev_stale(s, ev)) {
        s->st.events++;
        sim_trace_u64(s, ev->at);
        sim_trace_u64(s, (uint64_t)(ev->node + 1));
        ev->fn(s, ev);
    }
    if (ev->own)
        free(ev->p);
    free(ev);
    return 1;
}

/* Runs events up to time t (ms since start), at most max_events of them.
 * Returns how many fired. */
static inline size_t sim_run_until(sim_t *s, uint64_t t, size_t max_events)
{
    size_t n = 0;

    while (n < max_events && s->nheap && s->heap[0]->at <= t) {
        sim_step(s);
        n++;
    }
    if (s->now < t && (!s->nheap || s->heap[0]->at > t))
        s->now = t;
    return n;
}

/* ===== clock ===== */

static uint64_t sim_clock_now(void *ud)
{
    sim_node_t *n = ud;
    return (uint64_t)((int64_t)(SIM_T0 + n->sim->now) + n->skew);
}

static void sim_timer_fire(sim_t *s, sim_ev_t *ev)
{
    s->st.timers++;
    sim_trace(s, "T", 1);
    ev->tcb(ev->targ);
}

static uint64_t sim_clock_timer_start(void *ud, uint64_t delay_ms, moor_timer_fn cb, void *arg)
{
    sim_node_t *n = ud;
    sim_t *s = n->sim;
    sim_ev_t *ev;

    if (!n->up) {
        sim_error(s, "timer_start on a node that is down");
        return 0;
    }
    ev = sim_schedule(s, delay_ms, n->idx, sim_timer_fire, NULL);
    ev->tcb = cb;
    ev->targ = arg;
    if (s->ntimers == s->timercap) {
        s->timercap = s->timercap ? s->timercap * 2 : 256;
        s->timers = realloc(s->timers, s->timercap * sizeof(*s->timers));
        if (!s->timers)
            abort();
    }
    s->timers[s->ntimers++] = ev;
    ev->timer_id = s->ntimers;
    return ev->timer_id;
}

static void sim_clock_timer_stop(void *ud, uint64_t id)
{
    sim_node_t *n = ud;
    sim_t *s = n->sim;

    if (id == 0 || id > s->ntimers || !s->timers[id - 1])
        return;
    s->timers[id - 1]->cancelled = 1;
    s->timers[id - 1] = NULL;
}

static inline moor_clock_if_t sim_clock(sim_t *s, int node)
{
    /* no mono_ns: the simulation measures nothing (deterministic) */
    moor_clock_if_t c = {&s->node[node], sim_clock_now, sim_clock_timer_start,
                         sim_clock_timer_stop, NULL};
    return c;
}

/* ===== network ===== */

typedef struct sim_reply {
    sim_req_t *req;
    int status;
    size_t rlen;
    char result[]; /* rlen bytes */
} sim_reply_t;

static inline int sim_node_by_id(sim_t *s, const char *id, size_t len)
{
    for (int i = 0; i < s->nnodes; i++)
        if (s->node[i].idlen == len && memcmp(s->node[i].id, id, len) == 0)
            return i;
    return -1;
}

/* Status for an error answer, as a real transport maps it: the code goes
 * over the wire by its name and comes back as the code that name maps to
 * (util/err.h, the one table). */
static inline int sim_err_status(int code)
{
    const char *name = moor_err_wire(code);

    return moor_err_from_wire(name, strlen(name));
}

/* Is the path from a to b open (both up, not cut)? */
static inline int sim_path_open(sim_t *s, int a, int b)
{
    return !s->cutm[a][b];
}

static void sim_req_answer(sim_t *s, sim_req_t *r, int status, const char *res, size_t rlen)
{
    if (r->answered)
        return; /* late: the timeout already answered */
    if (s->node[r->from].inc != r->from_inc)
        return; /* the asking process is gone */
    r->answered = 1;
    sim_trace_u64(s, (uint64_t)(int64_t)status);
    sim_trace(s, res, rlen);
    r->cb(r->arg, status, res, rlen);
}

static void sim_reply_arrive(sim_t *s, sim_ev_t *ev)
{
    sim_reply_t *rp = ev->p;

    if (rp->status != -ECONNREFUSED)
        s->st.replies++;
    sim_trace(s, "A", 1);
    sim_req_answer(s, rp->req, rp->status, rp->result, rp->rlen);
}

static void sim_req_timeout(sim_t *s, sim_ev_t *ev)
{
    sim_req_t *r = ev->p;

    if (r->answered)
        return;
    s->st.timeouts++;
    sim_trace(s, "O", 1);
    sim_req_answer(s, r, MOOR_ETIMEDOUT, NULL, 0);
}

/* The handler's answer: sent back unless the answering process died, the
 * answer is lost or the way back is cut. */
static void sim_peer_done(void *arg, int errcode, const char *errmsg, const char *result,
                          size_t rlen)
{
    sim_req_t *r = arg;
    sim_t *s = r->sim;
    sim_reply_t *rp;

    (void)errmsg;
    if (r->handled) {
        sim_error(s, "a peer handler answered twice");
        return;
    }
    r->handled = 1;
    if (!s->node[r->to].up || s->node[r->to].inc != r->to_inc)
        return; /* answered while dying: never leaves the node */
    if (sim_chance(s, s->loss) || !sim_path_open(s, r->to, r->from)) {
        s->st.reply_lost++;
        return;
    }
    if (!errcode && (!result || !rlen))
        sim_error(s, "a peer handler succeeded without a result");
    rp = malloc(sizeof(*rp) + (errcode ? 0 : rlen));
    if (!rp)
        abort();
    rp->req = r;
    rp->status = errcode ? sim_err_status(errcode) : 0;
    rp->rlen = errcode ? 0 : rlen;
    if (rp->rlen)
        memcpy(rp->result, result, rlen);
    sim_schedule(s, sim_range(s, s->delay_min, s->delay_max), r->from, sim_reply_arrive, rp);
}

static void sim_req_deliver(sim_t *s, sim_ev_t *ev)
{
    sim_req_t *r = ev->p;

    if (!s->node[r->to].up || !sim_path_open(s, r->from, r->to)) {
        s->st.cut++;
        return; /* the timeout answers */
    }
    s->st.delivered++;
    r->to_inc = s->node[r->to].inc;
    sim_trace(s, "D", 1);
    sim_trace(s, r->method, r->mlen);
    sim_trace(s, r->params, r->plen);
    s->handler(s->handler_ud, r->to, r->method, r->mlen, r->params, r->plen, r->nparams,
               sim_peer_done, r);
}

/* A request, owned by s->reqs until sim_free (answers may come late). */
static inline sim_req_t *sim_req_new(sim_t *s)
{
    sim_req_t *r = calloc(1, sizeof(*r));

    if (!r)
        abort();
    r->sim = s;
    r->next = s->reqs;
    s->reqs = r;
    return r;
}

static int sim_transport_request(void *ud, const char *to, size_t tolen, const char *method,
                                 const char *params, size_t plen, uint32_t nparams,
                                 uint32_t timeout_ms, moor_peer_reply_fn cb, void *arg)
{
    sim_node_t *n = ud;
    sim_t *s = n->sim;
    int target = sim_node_by_id(s, to, tolen);
    size_t mlen = strlen(method);
    sim_req_t *r;

    if (!n->up)
        sim_error(s, "a node that is down sent a request");
    if (target < 0)
        return moor_diag(MOOR_EINVAL, "sim: no member %.*s", (int)tolen, to);
    r = sim_req_new(s);
    r->from = n->idx;
    r->to = target;
    r->from_inc = n->inc;
    r->cb = cb;
    r->arg = arg;
    r->method = malloc(mlen + 1);
    r->params = malloc(plen ? plen : 1);
    if (!r->method || !r->params)
        abort();
    memcpy(r->method, method, mlen + 1);
    r->mlen = mlen;
    if (plen)
        memcpy(r->params, params, plen);
    r->plen = plen;
    r->nparams = nparams;
    s->st.sent++;
    sim_schedule_p(s, timeout_ms, n->idx, sim_req_timeout, r, 0);
    if (!s->node[target].up) {
        s->st.to_down++;
        if (s->refuse && sim_chance(s, 0.5)) {
            sim_reply_t *rp = calloc(1, sizeof(*rp));
            if (!rp)
                abort();
            rp->req = r;
            rp->status = -ECONNREFUSED;
            s->st.refused++;
            sim_schedule(s, sim_range(s, s->delay_min, s->delay_max), n->idx, sim_reply_arrive, rp);
        }
        return 0;
    }
    if (sim_chance(s, s->loss)) {
        s->st.lost++;
        return 0;
    }
    if (!sim_path_open(s, n->idx, target)) {
        s->st.cut++;
        return 0;
    }
    sim_schedule_p(s, sim_range(s, s->delay_min, s->delay_max), -1, sim_req_deliver, r, 0);
    return 0;
}

static inline moor_transport_if_t sim_transport(sim_t *s, int node)
{
    moor_transport_if_t t = {&s->node[node], sim_transport_request};
    return t;
}

/* Cuts (on = 1) or mends the link between a and b, both directions. */
static inline void sim_cut(sim_t *s, int a, int b, int on)
{
    s->cutm[a][b] = s->cutm[b][a] = (unsigned char)on;
}

/* Cuts a node off from every other node (on = 1) or mends its links. */
static inline void sim_isolate(sim_t *s, int a, int on)
{
    for (int b = 0; b < s->nnodes; b++)
        if (b != a)
            sim_cut(s, a, b, on);
}

static inline void sim_heal(sim_t *s)
{
    memset(s->cutm, 0, sizeof(s->cutm));
}

/* ===== store ===== */

static inline sim_kv_t *sim_kv_find(sim_node_t *n, const char *key, size_t klen, int create)
{
    sim_kv_t *kv;

    for (size_t i = 0; i < n->nkv; i++)
        if (n->kv[i].klen == klen && memcmp(n->kv[i].key, key, klen) == 0)
            return &n->kv[i];
    if (!create)
        return NULL;
    if (n->nkv == n->kvcap) {
        n->kvcap = n->kvcap ? n->kvcap * 2 : 16;
        n->kv = realloc(n->kv, n->kvcap * sizeof(*n->kv));
        if (!n->kv)
            abort();
    }
    kv = &n->kv[n->nkv++];
    memset(kv, 0, sizeof(*kv));
    kv->key = malloc(klen ? klen : 1);
    if (!kv->key)
        abort();
    memcpy(kv->key, key, klen);
    kv->klen = klen;
    return kv;
}

static inline void sim_buf_set(moor_buf_t *b, const char *p, size_t n)
{
    moor_buf_reset(b);
    if (moor_buf_append(b, p, n))
        abort();
}

static int sim_store_get(void *ud, const char *key, size_t klen, moor_buf_t *out)
{
    sim_node_t *n = ud;
    sim_kv_t *kv = sim_kv_find(n, key, klen, 0);

    if (!n->up)
        sim_error(n->sim, "a node that is down read its store");
    if (!kv || !kv->has_live)
        return MOOR_ENOTFOUND;
    return moor_buf_append(out, kv->live.data, kv->live.len);
}

typedef struct sim_durable {
    moor_store_done_fn done;
    void *arg;
    int del; /* 1: a deletion (no record bytes) */
    size_t klen, rlen;
    char bytes[]; /* key then record */
} sim_durable_t;

static void sim_store_durable(sim_t *s, sim_ev_t *ev)
{
    sim_durable_t *d = ev->p;
    sim_node_t *n = &s->node[ev->node];
    sim_kv_t *kv = sim_kv_find(n, d->bytes, d->klen, 1);

    sim_buf_set(&kv->durable, d->bytes + d->klen, d->rlen);
    kv->has_durable = !d->del;
    sim_trace(s, d->del ? "s" : "S", 1);
    d->done(d->arg, 0);
}

/* Queues the completion of a write (put, or del with rec NULL): durable
 * after the store's previous writes, 0..3 ms from now. */
static inline void sim_store_queue(sim_node_t *n, const char *key, size_t klen, const char *rec,
                                   size_t rlen, int del, moor_store_done_fn done, void *arg)
{
    sim_t *s = n->sim;
    sim_durable_t *d = malloc(sizeof(*d) + klen + rlen);
    uint64_t at;

    if (!d)
        abort();
    d->done = done;
    d->arg = arg;
    d->del = del;
    d->klen = klen;
    d->rlen = rlen;
    memcpy(d->bytes, key, klen);
    if (rlen)
        memcpy(d->bytes + klen, rec, rlen);
    at = s->now + sim_range(s, 0, 3);
    if (at < n->durable_at)
        at = n->durable_at; /* FIFO: a later write is never durable first */
    n->durable_at = at;
    sim_schedule(s, at - s->now, n->idx, sim_store_durable, d);
}

/* Before a put or del: a node that is down must not write; an injected
 * failure (store_fail) answers MOOR_EIO.  0 to go on. */
static inline int sim_store_may_write(sim_node_t *n, const char *what)
{
    sim_t *s = n->sim;

    if (!n->up)
        sim_error(s, "a node that is down wrote its store");
    if (sim_chance(s, s->store_fail)) {
        s->st.store_fail++;
        n->put_failures++;
        return moor_diag(MOOR_EIO, "sim: store %s failed (injected)", what);
    }
    return 0;
}

static int sim_store_put(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                         moor_store_done_fn done, void *arg)
{
    sim_node_t *n = ud;
    sim_t *s = n->sim;
    sim_kv_t *kv;
    int rc;

    if ((rc = sim_store_may_write(n, "write")))
        return rc;
    kv = sim_kv_find(n, key, klen, 1);
    sim_buf_set(&kv->live, rec, rlen);
    kv->has_live = 1;
    s->st.store_puts++;
    n->puts++;
    sim_store_queue(n, key, klen, rec, rlen, 0, done, arg);
    return 0;
}

static int sim_store_del(void *ud, const char *key, size_t klen, moor_store_done_fn done,
                         void *arg)
{
    sim_node_t *n = ud;
    sim_t *s = n->sim;
    sim_kv_t *kv;
    int rc;

    if ((rc = sim_store_may_write(n, "delete")))
        return rc;
    if ((kv = sim_kv_find(n, key, klen, 0))) {
        moor_buf_reset(&kv->live);
        kv->has_live = 0;
    }
    s->st.store_dels++;
    sim_store_queue(n, key, klen, NULL, 0, 1, done, arg);
    return 0;
}

static inline int sim_key_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = alen && blen ? memcmp(a, b, alen < blen ? alen : blen) : 0;
    return c ? c : (alen > blen) - (alen < blen);
}

/* Sorts the kv indices idx[0..m) by key: a bottom-up merge sort. */
static inline void sim_kv_sort(const sim_node_t *n, size_t *idx, size_t m)
{
    size_t *tmp = malloc((m + 1) * sizeof(*tmp)), *a = idx, *b = tmp;

    if (!tmp)
        abort();
    for (size_t w = 1; w < m; w *= 2) {
        for (size_t lo = 0; lo < m; lo += 2 * w) {
            size_t mid = lo + w < m ? lo + w : m, hi = lo + 2 * w < m ? lo + 2 * w : m;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                const sim_kv_t *x = &n->kv[a[i]], *y = &n->kv[a[j]];
                b[k++] = sim_key_cmp(x->key, x->klen, y->key, y->klen) <= 0 ? a[i++] : a[j++];
            }
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        size_t *t = a;
        a = b;
        b = t;
    }
    if (a != idx)
        memcpy(idx, a, m * sizeof(*idx));
    free(tmp);
}

static int sim_store_scan(void *ud, const char *prefix, size_t plen, const char *from,
                          size_t flen, uint32_t limit, moor_store_scan_fn fn, void *arg)
{
    sim_node_t *n = ud;
    size_t *idx, m = 0;
    int stop = 0;

    if (!n->up)
        sim_error(n->sim, "a node that is down read its store");
    n->sim->st.store_scans++;
    idx = malloc((n->nkv + 1) * sizeof(*idx));
    if (!idx)
        abort();
    for (size_t i = 0; i < n->nkv; i++) {
        const sim_kv_t *kv = &n->kv[i];
        if (kv->has_live && kv->klen >= plen && (!plen || memcmp(kv->key, prefix, plen) == 0) &&
            sim_key_cmp(kv->key, kv->klen, from, flen) >= 0)
            idx[m++] = i;
    }
    sim_kv_sort(n, idx, m);
    for (size_t i = 0; i < m && !stop && (!limit || i < limit); i++) {
        const sim_kv_t *kv = &n->kv[idx[i]];
        stop = fn(arg, kv->key, kv->klen, kv->live.data, kv->live.len);
    }
    free(idx);
    return 0;
}

static inline moor_store_if_t sim_store(sim_t *s, int node)
{
    moor_store_if_t st = {&s->node[node], sim_store_get, sim_store_put, sim_store_del,
                          sim_store_scan};
    return st;
}

/* The record bytes a node's store holds for key (live view), or NULL. */
static inline const moor_buf_t *sim_store_peek(sim_t *s, int node, const char *key, size_t klen)
{
    sim_kv_t *kv = sim_kv_find(&s->node[node], key, klen, 0);
    return kv && kv->has_live ? &kv->live : NULL;
}

/* ===== nodes ===== */

/* Kills node's process: nothing it scheduled fires again, and answers it
 * owed are never sent.  drop_unsynced: store writes not yet durable (never
 * acknowledged) are lost; else they all reached the disk. */
static inline void sim_crash(sim_t *s, int node, int drop_unsynced)
{
    sim_node_t *n = &s->node[node];

    n->up = 0;
    n->inc++;
    s->st.crashes++;
    sim_trace(s, "X", 1);
    sim_trace_u64(s, (uint64_t)node);
    for (size_t i = 0; i < n->nkv; i++) {
        sim_kv_t *kv = &n->kv[i];
        if (drop_unsynced) {
            kv->has_live = kv->has_durable;
            sim_buf_set(&kv->live, kv->durable.data, kv->durable.len);
        } else {
            kv->has_durable = kv->has_live;
            sim_buf_set(&kv->durable, kv->live.data, kv->live.len);
        }
    }
    n->durable_at = 0;
}

/* After a crash and the service's free: answers every request the dead
 * incarnations of node made and every store write they queued with
 * MOOR_ECLOSED, now (timers are the service's to stop). */
static inline void sim_release(sim_t *s, int node)
{
    sim_node_t *n = &s->node[node];
    sim_ev_t **dead = NULL;
    size_t ndead = 0;

    for (sim_req_t *r = s->reqs; r; r = r->next) {
        if (r->from != node || r->from_inc == n->inc || r->answered)
            continue;
        r->answered = 1;
        r->cb(r->arg, MOOR_ECLOSED, NULL, 0);
    }
    /* collected first: the callbacks may schedule */
    dead = malloc((s->nheap + 1) * sizeof(*dead));
    if (!dead)
        abort();
    for (size_t i = 0; i < s->nheap; i++) {
        sim_ev_t *ev = s->heap[i];
        if (ev->node == node && ev->inc != n->inc && ev->fn == sim_store_durable && !ev->cancelled)
            dead[ndead++] = ev;
    }
    for (size_t i = 0; i < ndead; i++) {
        sim_durable_t *d = dead[i]->p;
        dead[i]->cancelled = 1;
        d->done(d->arg, MOOR_ECLOSED);
    }
    free(dead);
}

static inline void sim_restart(sim_t *s, int node)
{
    s->node[node].up = 1;
    s->st.restarts++;
    sim_trace(s, "R", 1);
    sim_trace_u64(s, (uint64_t)node);
}

/* ===== life cycle ===== */

/* A simulator of nnodes nodes "n0".."n<k>", all up, seeded: delays
 * 1..20 ms, no loss, no cuts. */
static inline sim_t *sim_new(uint64_t seed, int nnodes, sim_handler_fn handler, void *ud)
{
    sim_t *s = calloc(1, sizeof(*s));
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;

    if (!s || nnodes < 1 || nnodes > SIM_MAX_NODES)
        abort();
    /* splitmix64, so that nearby seeds start far apart */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s->rng = (z ^ (z >> 31)) | 1;
    s->trace = 0xcbf29ce484222325ull;
    s->nnodes = nnodes;
    s->delay_min = 1;
    s->delay_max = 20;
    s->handler = handler;
    s->handler_ud = ud;
    for (int i = 0; i < nnodes; i++) {
        sim_node_t *n = &s->node[i];
        n->sim = s;
        n->idx = i;
        n->idlen = (size_t)snprintf(n->id, sizeof(n->id), "n%d", i);
        n->skew = (int64_t)sim_range(s, 0, 10) - 5;
        n->up = 1;
    }
    return s;
}

static inline void sim_free(sim_t *s)
{
    sim_ev_t *ev;

    while ((ev = sim_heap_pop(s))) {
        if (ev->own)
            free(ev->p);
        free(ev);
    }
    free(s->heap);
    free(s->timers);
    while (s->reqs) {
        sim_req_t *r = s->reqs;
        s->reqs = r->next;
        free(r->method);
        free(r->params);
        free(r);
    }
    for (int i = 0; i < s->nnodes; i++) {
        sim_node_t *n = &s->node[i];
        for (size_t k = 0; k < n->nkv; k++) {
            free(n->kv[k].key);
            moor_buf_free(&n->kv[k].live);
            moor_buf_free(&n->kv[k].durable);
        }
        free(n->kv);
    }
    free(s);
}

#endif
