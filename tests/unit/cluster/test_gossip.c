/*
 * test_gossip.c -- gossip membership and SWIM failure detection
 * (core/cluster/gossip.c) on a simulated network of up to thousands of
 * nodes.
 *
 * The network here is its own small event queue (sim.h is built for the
 * coordinator and stops at 8 nodes): events ordered by (simulated ms,
 * sequence), each request delivered after 1..3 ms unless lost (each way
 * with probability `loss`) or its target crashed; the caller's callback
 * runs once, with the answer or MOOR_ETIMEDOUT at its timeout.  A frozen
 * node (SIGSTOP) handles nothing until it thaws: its timers, the requests
 * sent to it and the answers it awaits all wait and then run late, timers
 * first, the way a stopped process catches up.
 *
 * Properties (asserted on simulated time only; the figures are printed):
 *  - 100 members, 10% loss: a crashed member is `down` at all of the
 *    others within 10 s in every seed, and within 6 s for >= 99% of the
 *    (seed, member) pairs over all seeds (a seed where nobody happened to
 *    probe the dead member for several periods is counted and printed:
 *    SWIM's first detection is a race of random probes); nobody healthy
 *    is ever declared down;
 *  - 100 members, 10% loss, 10 of them frozen for 0.5..2 s at random
 *    times: nobody is declared down;
 *  - 1,000 members, 10% loss: a new member joining through one seed is known to all
 *    within 15 protocol periods;
 *  - joining through seeds, restart with a higher incarnation, refutation
 *    of a suspicion, wire decoding of bad messages, parameter checks.
 * Seeds: 200 by default per property (40 under ASan); MOOR_SIM_SEEDS=10000
 * for the long mode (the 1,000-member run stops at 20), MOOR_SIM_SEED=n
 * replays one; MOOR_SIM_LOG=1 prints every node's gossip log,
 * MOOR_TEST_FILTER='*crash*' runs only the matching tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/gossip.h"
#include "testutil.h"
#include "util/err.h"
#include "util/mp.h"

/* Seeds per property by default: fewer under ASan (make test runs the
 * sanitizer build too), where the same runs take several times longer. */
#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_SEEDS 40
#else
#define DEFAULT_SEEDS 200
#endif

/* ---- the simulated network -------------------------------------------------------- */

enum { EV_TIMER, EV_DELIVER, EV_REPLY, EV_TIMEOUT };

typedef struct ev {
    uint64_t t, seq;
    int kind, node; /* the node that handles it */
    uint64_t id;    /* timer id or request id */
    moor_timer_fn fn;
    void *arg;
    char method[16];
    char *data;
    size_t len;
    int status;
} ev_t;

typedef struct rq {
    moor_peer_reply_fn cb;
    void *arg;
    int from, done;
} rq_t;

typedef struct net net_t;

typedef struct snode {
    net_t *net;
    int idx;
    moor_gossip_t *g;
    int crashed;
    uint64_t frozen_until;
    uint64_t gen; /* bumped at each crash: older timers are void */
} snode_t;

typedef struct answer {
    net_t *net;
    uint64_t rid;
    int responder;
} answer_t;

struct net {
    uint64_t now, seq, rng;
    ev_t **heap;
    size_t nheap, capheap;
    uint8_t *timer_live; /* by timer id */
    uint64_t ntimers, captimers;
    rq_t *rq;
    uint64_t nrq, caprq;
    snode_t *nodes;
    int n;
    double loss;
    int tearing_down;
    uint64_t events, messages;
    /* observations */
    int watch;            /* the member whose status is observed */
    uint64_t *down_at;    /* per node: first time it saw `watch` down (0 = never) */
    uint64_t *known_at;   /* per node: first time it knew `watch` at all */
    uint64_t false_downs; /* down verdicts on members other than `watch` */
    uint64_t first_false;
};

static double frand(net_t *s)
{
    return (double)(testutil_rand(&s->rng) >> 11) / 9007199254740992.0;
}

static int ev_less(const ev_t *a, const ev_t *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(net_t *s, ev_t *e)
{
    size_t i;

    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? s->capheap * 2 : 1024;
        s->heap = realloc(s->heap, s->capheap * sizeof(*s->heap));
        assert_non_null(s->heap);
    }
    e->seq = s->seq++;
    i = s->nheap++;
    while (i > 0 && ev_less(e, s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
}

static ev_t *pop(net_t *s)
{
    ev_t *top = s->heap[0], *last = s->heap[--s->nheap];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && ev_less(s->heap[c + 1], s->heap[c]))
            c++;
        if (!ev_less(s->heap[c], last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

static ev_t *ev_new(net_t *s, int kind, int node, uint64_t at)
{
    ev_t *e = calloc(1, sizeof(*e));

    assert_non_null(e);
    e->kind = kind;
    e->node = node;
    e->t = at;
    return e;
}

static void ev_free(ev_t *e)
{
    free(e->data);
    free(e);
}

/* clock */
typedef struct clk {
    net_t *net;
    int node;
} clk_t;

static uint64_t clk_now(void *ud)
{
    return ((clk_t *)ud)->net->now;
}

static uint64_t clk_start(void *ud, uint64_t delay, moor_timer_fn cb, void *arg)
{
    clk_t *c = ud;
    net_t *s = c->net;
    ev_t *e = ev_new(s, EV_TIMER, c->node, s->now + delay);

    if (s->ntimers + 1 >= s->captimers) {
        s->captimers = s->captimers ? s->captimers * 2 : 4096;
        s->timer_live = realloc(s->timer_live, s->captimers);
        assert_non_null(s->timer_live);
    }
    e->id = ++s->ntimers;
    s->timer_live[e->id] = 1;
    e->fn = cb;
    e->arg = arg;
    e->status = (int)s->nodes[c->node].gen;
    push(s, e);
    return e->id;
}

static void clk_stop(void *ud, uint64_t id)
{
    net_t *s = ((clk_t *)ud)->net;

    if (id && id <= s->ntimers)
        s->timer_live[id] = 0;
}

static int node_of(net_t *s, const char *id, size_t len)
{
    int v = 0;

    if (len < 2 || id[0] != 'n')
        return -1;
    for (size_t i = 1; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return -1;
        v = v * 10 + (id[i] - '0');
    }
    return v < s->n ? v : -1;
}

static int tr_request(void *ud, const char *to, size_t tolen, const char *method,
                      const char *params, size_t plen, uint32_t nparams, uint32_t timeout_ms,
                      moor_peer_reply_fn cb, void *arg)
{
    clk_t *c = ud;
    net_t *s = c->net;
    int dst = node_of(s, to, tolen);
    uint64_t rid;
    ev_t *e;

    (void)nparams;
    if (dst < 0)
        return MOOR_EINVAL;
    if (s->nrq == s->caprq) {
        s->caprq = s->caprq ? s->caprq * 2 : 4096;
        s->rq = realloc(s->rq, s->caprq * sizeof(*s->rq));
        assert_non_null(s->rq);
    }
    rid = s->nrq++;
    s->rq[rid] = (rq_t){.cb = cb, .arg = arg, .from = c->node};
    s->messages++;
    e = ev_new(s, EV_TIMEOUT, c->node, s->now + timeout_ms);
    e->id = rid;
    push(s, e);
    if (frand(s) < s->loss)
        return 0;
    e = ev_new(s, EV_DELIVER, dst, s->now + 1 + testutil_rand(&s->rng) % 3);
    e->id = rid;
    snprintf(e->method, sizeof(e->method), "%s", method);
    e->data = malloc(plen ? plen : 1);
    memcpy(e->data, params, plen);
    e->len = plen;
    push(s, e);
    return 0;
}

static void sim_answer(void *arg, int status, const char *res, size_t rlen)
{
    answer_t *a = arg;
    net_t *s = a->net;
    ev_t *e;

    if (!s->tearing_down && !s->nodes[a->responder].crashed && frand(s) >= s->loss) {
        e = ev_new(s, EV_REPLY, s->rq[a->rid].from, s->now + 1 + testutil_rand(&s->rng) % 3);
        e->id = a->rid;
        e->status = status;
        if (status == 0) {
            e->data = malloc(rlen ? rlen : 1);
            memcpy(e->data, res, rlen);
            e->len = rlen;
        }
        push(s, e);
    }
    free(a);
}

static void finish_rq(net_t *s, uint64_t rid, int status, const char *res, size_t len)
{
    rq_t *r = &s->rq[rid];

    if (r->done)
        return;
    r->done = 1;
    r->cb(r->arg, status, res, len);
}

static void on_status(void *ud, const char *id, size_t idlen, int old, int new_status)
{
    snode_t *nd = ud;
    net_t *s = nd->net;
    int who = node_of(s, id, idlen);

    (void)old;
    if (who < 0)
        return;
    if (old < 0 && who == s->watch && s->known_at && !s->known_at[nd->idx])
        s->known_at[nd->idx] = s->now;
    if (new_status != MOOR_MEMBER_DOWN)
        return;
    if (who == s->watch) {
        if (s->down_at && !s->down_at[nd->idx])
            s->down_at[nd->idx] = s->now;
    } else if (!s->false_downs++) {
        s->first_false = s->now;
    }
}

static clk_t *clks; /* one per node, kept by the net below */

/* MOOR_SIM_LOG=1: every node's gossip log lines, with simulated time. */
static void sim_log(void *ud, int level, const char *msg)
{
    snode_t *nd = ud;

    fprintf(stderr, "%llu n%d [%d] %s\n", (unsigned long long)nd->net->now, nd->idx, level, msg);
}

static void entry(moor_member_entry_t *e, int i, uint64_t inc)
{
    memset(e, 0, sizeof(*e));
    e->m.idlen = (uint8_t)snprintf(e->m.id, sizeof(e->m.id), "n%d", i);
    snprintf(e->m.addr, sizeof(e->m.addr), "10.0.%d.%d:7700", i / 250, i % 250 + 1);
    e->m.vnodes = 8;
    e->m.status = MOOR_MEMBER_UP;
    e->incarnation = inc;
}

/* Starts node i's gossip: knowing `known` (NULL: only itself) and the
 * seeds given (node indexes). */
static void node_boot(net_t *s, int i, const moor_members_t *known, const int *seeds, int nseeds,
                      uint64_t inc, const moor_gossip_params_t *p)
{
    moor_gossip_opts_t o;
    char ids[8][16];
    const char *sp[8];

    memset(&o, 0, sizeof(o));
    entry(&o.self, i, inc);
    o.saved = known;
    for (int k = 0; k < nseeds && k < 8; k++) {
        snprintf(ids[k], sizeof(ids[k]), "n%d", seeds[k]);
        sp[k] = ids[k];
    }
    o.seeds = sp;
    o.nseeds = (unsigned)nseeds;
    o.clock = (moor_clock_if_t){
        .ud = &clks[i], .now_ms = clk_now, .timer_start = clk_start, .timer_stop = clk_stop};
    o.transport = (moor_transport_if_t){.ud = &clks[i], .request = tr_request};
    o.seed = testutil_rand(&s->rng);
    if (p)
        o.p = *p;
    else
        moor_gossip_params_default(&o.p);
    o.on_status = on_status;
    if (getenv("MOOR_SIM_LOG"))
        o.log = sim_log;
    o.ud = &s->nodes[i];
    assert_int_equal(moor_gossip_new(&o, &s->nodes[i].g), 0);
    s->nodes[i].crashed = 0;
    moor_gossip_start(s->nodes[i].g);
}

static net_t *net_new(int n, uint64_t seed, double loss)
{
    net_t *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    s->n = n;
    s->rng = seed * 0x9e3779b97f4a7c15ull + 1;
    s->now = 1000;
    s->loss = loss;
    s->watch = -1;
    s->nodes = calloc((size_t)n, sizeof(*s->nodes));
    clks = calloc((size_t)n, sizeof(*clks));
    for (int i = 0; i < n; i++) {
        s->nodes[i] = (snode_t){.net = s, .idx = i};
        clks[i] = (clk_t){.net = s, .node = i};
    }
    return s;
}

/* Everyone knows everyone, all up. */
static void boot_full(net_t *s, const moor_gossip_params_t *p)
{
    moor_members_t t;
    moor_member_entry_t e;

    moor_members_init(&t);
    for (int i = 0; i < s->n; i++) {
        entry(&e, i, 1);
        assert_int_equal(moor_members_apply(&t, &e), 1);
    }
    for (int i = 0; i < s->n; i++)
        node_boot(s, i, &t, NULL, 0, 1, p);
    moor_members_free(&t);
}

static void crash(net_t *s, int i)
{
    s->nodes[i].crashed = 1;
    s->nodes[i].gen++;
}

/* Runs events until simulated time `until`. */
static void run_until(net_t *s, uint64_t until)
{
    while (s->nheap && s->heap[0]->t <= until) {
        ev_t *e = pop(s);
        snode_t *nd = &s->nodes[e->node];
        s->now = e->t;
        s->events++;
        if (nd->crashed) {
            /* a dead process: its timers and what it awaited are gone
             * (answers it awaited are settled at teardown) */
            ev_free(e);
            continue;
        }
        if (nd->frozen_until > s->now) {
            e->t = nd->frozen_until;
            push(s, e);
            continue;
        }
        switch (e->kind) {
        case EV_TIMER:
            if (e->id <= s->ntimers && s->timer_live[e->id] && (uint64_t)e->status == nd->gen) {
                s->timer_live[e->id] = 0;
                e->fn(e->arg);
            }
            break;
        case EV_DELIVER: {
            answer_t *a = malloc(sizeof(*a));
            *a = (answer_t){.net = s, .rid = e->id, .responder = e->node};
            moor_gossip_handle(nd->g, e->method, strlen(e->method), e->data, e->len, 1, sim_answer,
                               a);
            break;
        }
        case EV_REPLY: finish_rq(s, e->id, e->status, e->data, e->len); break;
        case EV_TIMEOUT: finish_rq(s, e->id, MOOR_ETIMEDOUT, NULL, 0); break;
        }
        ev_free(e);
    }
    s->now = until;
}

static void net_free(net_t *s)
{
    s->tearing_down = 1;
    for (int i = 0; i < s->n; i++)
        moor_gossip_free(s->nodes[i].g);
    for (uint64_t r = 0; r < s->nrq; r++)
        finish_rq(s, r, MOOR_ECLOSED, NULL, 0);
    while (s->nheap) {
        ev_t *e = pop(s);
        ev_free(e);
    }
    free(s->heap);
    free(s->timer_live);
    free(s->rq);
    free(s->nodes);
    free(s->down_at);
    free(s->known_at);
    free(clks);
    clks = NULL;
    free(s);
}

static const moor_member_entry_t *view(net_t *s, int at, int of)
{
    char id[16];
    int len = snprintf(id, sizeof(id), "n%d", of);

    return moor_members_find(moor_gossip_table(s->nodes[at].g), id, (size_t)len);
}

static uint64_t seeds_to_run(uint64_t dflt, uint64_t *first)
{
    const char *one = getenv("MOOR_SIM_SEED"), *many = getenv("MOOR_SIM_SEEDS");

    *first = 1;
    if (one && *one) {
        *first = strtoull(one, NULL, 0);
        return 1;
    }
    if (many && *many)
        return strtoull(many, NULL, 0);
    return dflt;
}

/* ---- properties over seeds ----------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void test_crash_detected_with_loss(void **state)
{
    uint64_t first, count = seeds_to_run(DEFAULT_SEEDS, &first), pairs = 0, within6 = 0, worst = 0;
    uint64_t slow_seeds = 0;
    uint64_t *all, nall = 0, events = 0;
    const int n = 100;
    (void)state;

    all = calloc(count * (size_t)n, sizeof(*all));
    for (uint64_t seed = first; seed < first + count; seed++) {
        net_t *s = net_new(n, seed, 0.10);
        uint64_t t0, in6 = 0;
        int victim;
        s->down_at = calloc((size_t)n, sizeof(uint64_t));
        boot_full(s, NULL);
        run_until(s, 4000);
        victim = (int)(testutil_rand(&s->rng) % (uint64_t)n);
        s->watch = victim;
        t0 = s->now;
        crash(s, victim);
        run_until(s, t0 + 12000);
        for (int i = 0; i < n; i++) {
            uint64_t d;
            if (i == victim)
                continue;
            if (!s->down_at[i]) {
                fprintf(stderr, "seed %llu: n%d never saw n%d down\n", (unsigned long long)seed, i,
                        victim);
                fail();
            }
            d = s->down_at[i] - t0;
            all[nall++] = d;
            pairs++;
            in6 += d <= 6000;
            worst = d > worst ? d : worst;
            if (d > 10000) {
                fprintf(stderr, "seed %llu: n%d saw n%d down after %llu ms\n",
                        (unsigned long long)seed, i, victim, (unsigned long long)d);
                fail();
            }
        }
        within6 += in6;
        if (getenv("MOOR_SIM_VERBOSE")) {
            uint64_t sus = 0, lo = UINT64_MAX, hi = 0;
            for (int i = 0; i < n; i++) {
                moor_gossip_stats_t st;
                if (i == victim)
                    continue;
                moor_gossip_stats(s->nodes[i].g, &st);
                sus += st.suspicions;
                lo = s->down_at[i] - t0 < lo ? s->down_at[i] - t0 : lo;
                hi = s->down_at[i] - t0 > hi ? s->down_at[i] - t0 : hi;
            }
            fprintf(stderr, "seed %llu: victim n%d down after %llu..%llu ms, %llu suspicions\n",
                    (unsigned long long)seed, victim, (unsigned long long)lo,
                    (unsigned long long)hi, (unsigned long long)sus);
        }
        if (in6 * 100 < (uint64_t)(n - 1) * 99) {
            slow_seeds++;
            fprintf(stderr, "seed %llu: %llu of %d within 6 s (all within 10 s)\n",
                    (unsigned long long)seed, (unsigned long long)in6, n - 1);
        }
        if (s->false_downs) {
            fprintf(stderr, "seed %llu: %llu healthy members declared down\n",
                    (unsigned long long)seed, (unsigned long long)s->false_downs);
            fail();
        }
        events += s->events;
        net_free(s);
    }
    qsort(all, nall, sizeof(*all), cmp_u64);
    fprintf(stderr,
            "gossip sim: crash of 1 of %d members, 10%% loss, %llu seeds: down everywhere; "
            "detection ms p50 %llu p99 %llu max %llu; %.3f%% of (seed, member) pairs within 6 s; "
            "%llu seeds with < 99%% of members within 6 s (%llu events)\n",
            n, (unsigned long long)count, (unsigned long long)all[nall / 2],
            (unsigned long long)all[nall * 99 / 100], (unsigned long long)worst,
            100.0 * (double)within6 / (double)pairs, (unsigned long long)slow_seeds,
            (unsigned long long)events);
    assert_true(within6 * 100 >= pairs * 99);
    free(all);
}

static void test_frozen_members_not_declared_down(void **state)
{
    uint64_t first, count = seeds_to_run(DEFAULT_SEEDS, &first), suspicions = 0, refutations = 0;
    const int n = 100, nfrozen = 10;
    (void)state;

    for (uint64_t seed = first; seed < first + count; seed++) {
        net_t *s = net_new(n, seed, 0.10);
        int picked[100] = {0};
        boot_full(s, NULL);
        run_until(s, 3000);
        for (int k = 0; k < nfrozen; k++) {
            int i;
            do
                i = (int)(testutil_rand(&s->rng) % (uint64_t)n);
            while (picked[i]);
            picked[i] = 1;
            (void)i;
        }
        /* freeze each picked member once, at a random time, for 0.5..2 s */
        {
            uint64_t at[100];
            for (int i = 0; i < n; i++)
                at[i] = picked[i] ? 3000 + testutil_rand(&s->rng) % 8000 : 0;
            for (uint64_t t = 3000; t < 11000; t += 100) {
                run_until(s, t);
                for (int i = 0; i < n; i++)
                    if (picked[i] && at[i] >= t && at[i] < t + 100)
                        s->nodes[i].frozen_until = t + 500 + testutil_rand(&s->rng) % 1501;
            }
        }
        run_until(s, 20000);
        s->loss = 0; /* then every open suspicion must end in a refutation */
        run_until(s, 35000);
        if (s->false_downs) {
            fprintf(stderr, "seed %llu: %llu down verdicts on healthy members (first at %llu)\n",
                    (unsigned long long)seed, (unsigned long long)s->false_downs,
                    (unsigned long long)s->first_false);
            fail();
        }
        for (int i = 0; i < n; i++) {
            moor_gossip_stats_t st;
            moor_gossip_stats(s->nodes[i].g, &st);
            suspicions += st.suspicions;
            refutations += st.refutations;
            for (int k = 0; k < n; k++)
                if (view(s, i, k)->m.status != MOOR_MEMBER_UP)
                    fprintf(stderr, "seed %llu: n%d sees n%d %s at the end\n",
                            (unsigned long long)seed, i, k,
                            moor_member_status_name(view(s, i, k)->m.status));
            assert_int_equal(st.by_status[MOOR_MEMBER_UP], n);
        }
        net_free(s);
    }
    fprintf(stderr,
            "gossip sim: %d of %d members frozen 0.5..2 s, 10%% loss, %llu seeds: none declared "
            "down (%llu suspicions, %llu refutations)\n",
            nfrozen, n, (unsigned long long)count, (unsigned long long)suspicions,
            (unsigned long long)refutations);
}

static void test_change_reaches_1000_members(void **state)
{
    uint64_t first, count = seeds_to_run(2, &first);
    const int n = 1001; /* 1,000 members, then one more joins through n0 */
    moor_gossip_params_t p;
    (void)state;

    moor_gossip_params_default(&p);
    if (count > 20)
        count = 20; /* a 1,000-node run is heavy: the long mode runs 20 */
    for (uint64_t seed = first; seed < first + count; seed++) {
        net_t *s = net_new(n, seed, 0.10);
        moor_members_t t;
        moor_member_entry_t e;
        int seed0 = 0;
        uint64_t t0, last = 0;
        s->known_at = calloc((size_t)n, sizeof(uint64_t));
        moor_members_init(&t);
        for (int i = 0; i < n - 1; i++) {
            entry(&e, i, 1);
            moor_members_apply(&t, &e);
        }
        for (int i = 0; i < n - 1; i++)
            node_boot(s, i, &t, NULL, 0, 1, &p);
        moor_members_free(&t);
        run_until(s, 2000);
        s->watch = n - 1;
        t0 = s->now;
        node_boot(s, n - 1, NULL, &seed0, 1, 5, &p);
        for (uint64_t t = t0; t < t0 + 30 * p.period_ms; t += p.period_ms) {
            int k = 0;
            uint64_t q = 0, sus = 0;
            run_until(s, t);
            for (int i = 0; i < n - 1; i++) {
                moor_gossip_stats_t st;
                moor_gossip_stats(s->nodes[i].g, &st);
                q += st.queued;
                sus += st.suspicions;
                k += s->known_at[i] != 0;
            }
            if (getenv("MOOR_SIM_VERBOSE"))
                fprintf(stderr, "  +%llu ms: %d know it, %llu queued, %llu suspicions\n",
                        (unsigned long long)(t - t0), k, (unsigned long long)q,
                        (unsigned long long)sus);
        }
        for (int i = 0; i < n - 1; i++) {
            if (!s->known_at[i]) {
                fprintf(stderr, "seed %llu: n%d never heard of the new member\n",
                        (unsigned long long)seed, i);
                fail();
            }
            last = s->known_at[i] > last ? s->known_at[i] : last;
        }
        fprintf(stderr,
                "gossip sim: a join reached all of 1,000 members in %llu ms = %.1f periods "
                "(%.1f gossip rounds), seed %llu, %llu messages\n",
                (unsigned long long)(last - t0), (double)(last - t0) / p.period_ms,
                (double)(last - t0) / p.gossip_interval_ms, (unsigned long long)seed,
                (unsigned long long)s->messages);
        assert_true(last - t0 <= 15ull * p.period_ms);
        net_free(s);
    }
}

/* ---- scenarios ----------------------------------------------------------------------------------
 */

static void test_join_through_seeds(void **state)
{
    net_t *s = net_new(8, 7, 0.0);
    int seed0 = 0;
    (void)state;

    node_boot(s, 0, NULL, NULL, 0, 1, NULL);
    for (int i = 1; i < 8; i++)
        node_boot(s, i, NULL, &seed0, 1, 1, NULL);
    run_until(s, 1000 + 5000);
    for (int i = 0; i < 8; i++) {
        const moor_members_t *t = moor_gossip_table(s->nodes[i].g);
        moor_gossip_stats_t st;
        assert_int_equal(t->n, 8);
        for (uint32_t k = 0; k < t->n; k++)
            assert_int_equal(t->e[k].m.status, MOOR_MEMBER_UP);
        moor_gossip_stats(s->nodes[i].g, &st);
        if (i)
            assert_int_equal(st.joins_answered, 1);
    }
    net_free(s);
}

static void test_restart_with_higher_incarnation(void **state)
{
    net_t *s = net_new(8, 11, 0.05);
    moor_members_t saved;
    (void)state;

    s->watch = 3;
    s->down_at = calloc(8, sizeof(uint64_t));
    boot_full(s, NULL);
    run_until(s, 3000);
    crash(s, 3);
    run_until(s, 15000);
    for (int i = 0; i < 8; i++)
        if (i != 3) {
            assert_int_equal(view(s, i, 3)->m.status, MOOR_MEMBER_DOWN);
            assert_true(s->down_at[i] > 3000);
        }
    /* the restarted process knows its old table (MEMBERS) and starts at a
     * wall-clock incarnation; the saved one would be older anyway */
    moor_members_init(&saved);
    moor_members_merge(&saved, moor_gossip_table(s->nodes[3].g));
    moor_gossip_free(s->nodes[3].g);
    s->nodes[3].g = NULL;
    {
        int seed0 = 0;
        node_boot(s, 3, &saved, &seed0, 1, 2, NULL);
    }
    moor_members_free(&saved);
    assert_true(view(s, 3, 3)->incarnation >= 2);
    run_until(s, 15000 + 3000);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(view(s, i, 3)->m.status, MOOR_MEMBER_UP);
        assert_true(view(s, i, 3)->incarnation >= 2);
    }
    assert_int_equal(s->false_downs, 0);
    net_free(s);
}

/* Sends _gossip{updates = [u]} to node `to` from the test itself. */
static void got_reply(void *arg, int status, const char *res, size_t rlen)
{
    (void)res, (void)rlen;
    *(int *)arg = status == 0 ? 1 : -1;
}

static void inject(net_t *s, int to, const moor_gossip_update_t *u, int *answered)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    answer_t *a = malloc(sizeof(*a));

    moor_mp_packer_init(&pk, &b);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "updates", 7);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_bin_with_body(&pk, u->e.m.id, u->e.m.idlen);
    msgpack_pack_str_with_body(&pk, u->e.m.addr, strlen(u->e.m.addr));
    msgpack_pack_str_with_body(&pk, u->e.m.zone, strlen(u->e.m.zone));
    msgpack_pack_uint32(&pk, u->e.m.vnodes);
    msgpack_pack_uint32(&pk, (uint32_t)u->e.m.status);
    msgpack_pack_uint64(&pk, u->e.incarnation);
    msgpack_pack_bin_with_body(&pk, u->by, u->bylen);
    /* as a request from node 0 */
    if (s->nrq == s->caprq) {
        s->caprq = s->caprq ? s->caprq * 2 : 4096;
        s->rq = realloc(s->rq, s->caprq * sizeof(*s->rq));
    }
    s->rq[s->nrq] = (rq_t){.cb = got_reply, .arg = answered, .from = 0};
    *a = (answer_t){.net = s, .rid = s->nrq++, .responder = to};
    moor_gossip_handle(s->nodes[to].g, "_gossip", 7, b.data, b.len, 1, sim_answer, a);
    moor_buf_free(&b);
}

static void test_refutation(void **state)
{
    net_t *s = net_new(8, 13, 0.0);
    moor_gossip_update_t u;
    moor_gossip_stats_t st;
    int answered = 0;
    (void)state;

    boot_full(s, NULL);
    run_until(s, 2000);
    /* n1 is told "n5 suspects n2": n1 suspects it, the news reaches n2,
     * which refutes at incarnation 2 before anyone declares it down */
    memset(&u, 0, sizeof(u));
    u.e = *view(s, 1, 2);
    u.e.m.status = MOOR_MEMBER_SUSPECT;
    u.bylen = 2;
    memcpy(u.by, "n5", 2);
    inject(s, 1, &u, &answered);
    assert_int_equal(view(s, 1, 2)->m.status, MOOR_MEMBER_SUSPECT);
    run_until(s, 2100);
    assert_int_equal(answered, 1);
    run_until(s, 6000);
    moor_gossip_stats(s->nodes[2].g, &st);
    assert_int_equal(st.refutations, 1);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(view(s, i, 2)->m.status, MOOR_MEMBER_UP);
        assert_int_equal(view(s, i, 2)->incarnation, 2);
    }
    assert_int_equal(s->false_downs, 0);
    /* a "down" verdict about a live node at its incarnation is refuted too */
    u.e = *view(s, 4, 2);
    u.e.m.status = MOOR_MEMBER_DOWN;
    u.bylen = 0;
    inject(s, 4, &u, &answered);
    run_until(s, 10000);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(view(s, i, 2)->m.status, MOOR_MEMBER_UP);
        assert_int_equal(view(s, i, 2)->incarnation, 3);
    }
    net_free(s);
}

static void test_down_member_comes_back_after_partition(void **state)
{
    net_t *s = net_new(6, 17, 0.0);
    (void)state;

    /* n5 frozen far longer than any suspicion: declared down; once it
     * runs again, it learns it, refutes, and is up everywhere */
    boot_full(s, NULL);
    run_until(s, 2000);
    s->nodes[5].frozen_until = 30000;
    run_until(s, 30000);
    for (int i = 0; i < 5; i++)
        assert_int_equal(view(s, i, 5)->m.status, MOOR_MEMBER_DOWN);
    run_until(s, 36000);
    for (int i = 0; i < 6; i++)
        assert_int_equal(view(s, i, 5)->m.status, MOOR_MEMBER_UP);
    for (int i = 0; i < 5; i++)
        assert_int_equal(view(s, 5, i)->m.status, MOOR_MEMBER_UP);
    net_free(s);
}

/* ---- wire and parameters -------------------------------------------------------------------- */

static void test_decode_rejects_bad_messages(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\x90", 1}, /* not a map */
        {"\x81\xa4"
         "from"
         "\xc4\x00",
         8}, /* empty from */
        {"\x81\xa7"
         "updates"
         "\x91\x90",
         10}, /* update of 0 fields */
        {"\x81\xa3"
         "ack"
         "\x01",
         5}, /* ack not a bool */
        {"\x81\xa7"
         "members"
         "\x91\x90",
         10}, /* bad table */
        {"\x81\xa7"
         "updates"
         "\xdd\x00\x00\x10\x00",
         13}, /* too many updates */
        {"\x82\xa1"
         "x"
         "\xc1",
         4}, /* bad skipped value */
    };
    moor_gossip_msg_t m;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_true(moor_gossip_msg_decode(bad[i].bytes, bad[i].len, &m) < 0);
        moor_gossip_msg_free(&m);
    }
    /* unknown keys are skipped (a later release's fields) */
    assert_int_equal(moor_gossip_msg_decode("\x82\xa3"
                                            "new"
                                            "\x92\x01\x02\xa3"
                                            "ack"
                                            "\xc3",
                                            13, &m),
                     0);
    assert_int_equal(m.ack, 1);
    moor_gossip_msg_free(&m);
}

static void test_params_checked(void **state)
{
    moor_gossip_params_t p;
    (void)state;

    moor_gossip_params_default(&p);
    assert_int_equal(moor_gossip_params_check(&p), 0);
    p.probe_timeout_ms = p.period_ms;
    assert_int_equal(moor_gossip_params_check(&p), MOOR_EINVAL);
    moor_gossip_params_default(&p);
    p.gossip_fanout = 0;
    assert_int_equal(moor_gossip_params_check(&p), MOOR_EINVAL);
    moor_gossip_params_default(&p);
    p.indirect_k = 17;
    assert_int_equal(moor_gossip_params_check(&p), MOOR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_checked),
        cmocka_unit_test(test_decode_rejects_bad_messages),
        cmocka_unit_test(test_join_through_seeds),
        cmocka_unit_test(test_refutation),
        cmocka_unit_test(test_restart_with_higher_incarnation),
        cmocka_unit_test(test_down_member_comes_back_after_partition),
        cmocka_unit_test(test_change_reaches_1000_members),
        cmocka_unit_test(test_crash_detected_with_loss),
        cmocka_unit_test(test_frozen_members_not_declared_down),
    };

    if (getenv("MOOR_TEST_FILTER")) /* e.g. "*frozen*" */
        cmocka_set_test_filter(getenv("MOOR_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
