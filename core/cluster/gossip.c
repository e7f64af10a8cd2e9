/*
 * gossip.c -- join handshake, SWIM probing with Lifeguard, dissemination
 * (gossip.h).
 *
 * State besides the table: per member (an array parallel to the table's
 * sorted entries) the suspicion this node holds of it; one probe in
 * flight; a queue of updates to piggyback; the requests in flight (so
 * their replies, after moor_gossip_free, find nothing to touch).  Every
 * entry point (timer, reply, handled method) ends in flush(), which tells
 * the owner about a changed table and sends the refutation notices.
 */
#include "gossip.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "util/err.h"
#include "util/mp.h"

#define ACCUSERS_MAX 16
#define NOTIFY_MAX 8

typedef struct mstate {
    int active;          /* a suspicion is running */
    uint64_t inc;        /* ... of this incarnation */
    uint64_t start, due; /* clock ms */
    uint32_t nacc;       /* distinct accusers heard (first included) */
    uint64_t acc[ACCUSERS_MAX];
    int final;              /* the last-chance probes were sent */
    uint32_t final_pending; /* ... and have not all failed yet */
} mstate_t;

typedef struct bcast {
    moor_gossip_update_t u;
    uint32_t sent;
} bcast_t;

typedef struct mid {
    uint8_t len;
    char id[MOOR_RING_ID_MAX];
} mid_t;

enum { R_PING, R_PINGREQ, R_RELAY, R_GOSSIP, R_JOIN, R_SYNC, R_FINAL };

typedef struct req {
    struct req *prev, *next;
    moor_gossip_t *g; /* NULL once the instance is gone */
    int kind;
    uint32_t seq;                 /* probe sequence (R_PING, R_PINGREQ) */
    unsigned seed;                /* R_JOIN/R_SYNC: index of the seed */
    moor_gossip_answer_fn answer; /* R_RELAY */
    void *answer_arg;
    mid_t about;  /* R_FINAL: the suspect */
    uint64_t inc; /* ... at this incarnation */
    int via;      /* R_FINAL through a _ping_req */
} req_t;

typedef struct probe {
    int active;
    uint32_t seq;
    mid_t target;
    int target_down; /* probed a down member: no indirect probes, no accusation */
    int acked;
    uint32_t indirect_pending;
    int direct_done;
} probe_t;

struct moor_gossip {
    moor_gossip_opts_t o;
    moor_gossip_params_t p;
    moor_members_t table;
    mstate_t *ms;
    uint32_t ms_cap;
    moor_member_entry_t me; /* this node's current entry */
    uint64_t rng;
    /* probing */
    mid_t *order;
    uint32_t norder, order_pos;
    probe_t probe;
    uint32_t probe_seq;
    uint32_t health;
    uint64_t grace_until; /* after a stall: no one declared down before this */
    /* dissemination */
    bcast_t *q;
    uint32_t nq, qcap;
    mid_t notify[NOTIFY_MAX]; /* accusers to tell of a refutation at once */
    uint32_t nnotify;
    mid_t urgent[NOTIFY_MAX]; /* suspects others accused: probed next */
    uint32_t nurgent;
    /* seeds */
    char **seeds;
    uint8_t *seed_answered, *seed_inflight;
    unsigned nseeds, sync_next;
    uint64_t next_sync;
    /* timers */
    uint64_t t_probe, t_gossip, t_sweep, t_join;
    uint64_t due_probe, due_gossip, due_sweep, due_join;
    uint64_t told_version;
    int started;
    req_t reqs; /* list head */
    moor_gossip_stats_t st;
};

/* ---- parameters ------------------------------------------------------------------ */

void moor_gossip_params_default(moor_gossip_params_t *p)
{
    p->period_ms = 500;
    p->probe_timeout_ms = 200;
    p->indirect_k = 3;
    p->suspicion_mult = 2;
    p->suspicion_max_mult = 4;
    p->retransmit_mult = 4;
    p->max_local_health = 8;
    p->gossip_interval_ms = 200;
    p->gossip_fanout = 3;
    p->max_piggyback = 16;
    p->join_interval_ms = 1000;
    p->sync_interval_ms = 5000;
}

#define CHECK(f, lo, hi)                                                                         \
    if ((int64_t)p->f < (lo) || p->f > (hi))                                                     \
        return moor_diag(MOOR_EINVAL, "gossip." #f " must be in %u..%u, got %u", (unsigned)(lo), \
                         (unsigned)(hi), (unsigned)p->f);

int moor_gossip_params_check(const moor_gossip_params_t *p)
{
    CHECK(period_ms, 10, 60000);
    CHECK(probe_timeout_ms, 1, 60000);
    CHECK(indirect_k, 0, 16);
    CHECK(suspicion_mult, 1, 100);
    CHECK(suspicion_max_mult, 1, 100);
    CHECK(retransmit_mult, 1, 100);
    CHECK(max_local_health, 1, 100);
    CHECK(gossip_interval_ms, 10, 60000);
    CHECK(gossip_fanout, 1, 16);
    CHECK(max_piggyback, 1, 128);
    CHECK(join_interval_ms, 10, 600000);
    CHECK(sync_interval_ms, 10, 3600000);
    if (p->probe_timeout_ms >= p->period_ms)
        return moor_diag(MOOR_EINVAL, "gossip.probe_timeout_ms (%u) must be below period_ms (%u)",
                         p->probe_timeout_ms, p->period_ms);
    return 0;
}

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t rnd(moor_gossip_t *g)
{
    /* splitmix64 */
    uint64_t z = (g->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t now(moor_gossip_t *g)
{
    return g->o.clock.now_ms(g->o.clock.ud);
}

static uint64_t timer(moor_gossip_t *g, uint64_t delay, moor_timer_fn fn, uint64_t *due)
{
    *due = now(g) + delay;
    return g->o.clock.timer_start(g->o.clock.ud, delay, fn, g);
}

static void timer_stop(moor_gossip_t *g, uint64_t *id)
{
    if (*id)
        g->o.clock.timer_stop(g->o.clock.ud, *id);
    *id = 0;
}

static void glog(moor_gossip_t *g, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (!g->o.log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    g->o.log(g->o.ud, level, msg);
}

static uint64_t id_hash(const char *id, size_t len)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    return h;
}

static int is_self(const moor_gossip_t *g, const char *id, size_t len)
{
    return len == g->me.m.idlen && memcmp(id, g->me.m.id, len) == 0;
}

static long index_of(const moor_gossip_t *g, const char *id, size_t len)
{
    const moor_member_entry_t *e = moor_members_find(&g->table, id, len);

    return e ? (long)(e - g->table.e) : -1;
}

/* Members that count for the timeouts: everyone not `left`. */
static uint32_t live_count(const moor_gossip_t *g)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < g->table.n; i++)
        n += g->table.e[i].m.status != MOOR_MEMBER_LEFT;
    return n;
}

static uint32_t hmul(const moor_gossip_t *g)
{
    return g->health + 1;
}

static void health_add(moor_gossip_t *g, int d)
{
    if (d > 0 && g->health + 1 < g->p.max_local_health)
        g->health++;
    else if (d < 0 && g->health > 0)
        g->health--;
}

static uint64_t suspicion_min(const moor_gossip_t *g)
{
    double n = live_count(g), l = n > 1 ? log10(n) : 0;

    return (uint64_t)(g->p.suspicion_mult * (l > 1 ? l : 1) * g->p.period_ms);
}

static uint64_t suspicion_timeout(const moor_gossip_t *g, uint32_t nacc)
{
    uint64_t lo = suspicion_min(g), hi = lo * g->p.suspicion_max_mult;
    uint32_t n = live_count(g), k = g->p.indirect_k < n - 2 || n < 2 ? g->p.indirect_k : n - 2;
    uint32_t c = nacc > 0 ? nacc - 1 : 0;
    double t;

    if (n < 2)
        k = 0;
    if (k == 0 || hi <= lo)
        return lo;
    if (c > k)
        c = k;
    t = (double)hi - (double)(hi - lo) * log((double)c + 1) / log((double)k + 1);
    return t < (double)lo ? lo : (uint64_t)t;
}

/* ---- the table and its parallel state ----------------------------------------------- */

static void tell_status(moor_gossip_t *g, const moor_member_t *m, int old)
{
    if (g->o.on_status && old != m->status)
        g->o.on_status(g->o.ud, m->id, m->idlen, old, m->status);
}

/* moor_members_apply keeping ms[] parallel. */
static int table_apply(moor_gossip_t *g, const moor_member_entry_t *e)
{
    long before = index_of(g, e->m.id, e->m.idlen);
    int rc;

    if (before < 0 && g->table.n + 1 > g->ms_cap) {
        uint32_t cap = g->ms_cap ? g->ms_cap * 2 : 16;
        mstate_t *ns = realloc(g->ms, cap * sizeof(*ns));
        if (!ns)
            return MOOR_ENOMEM;
        g->ms = ns;
        g->ms_cap = cap;
    }
    rc = moor_members_apply(&g->table, e);
    if (rc == 1 && before < 0) {
        long i = index_of(g, e->m.id, e->m.idlen);
        memmove(&g->ms[i + 1], &g->ms[i], (g->table.n - 1 - (size_t)i) * sizeof(*g->ms));
        memset(&g->ms[i], 0, sizeof(*g->ms));
    }
    return rc;
}

/* ---- dissemination queue ------------------------------------------------------------- */

static uint32_t retransmits(const moor_gossip_t *g)
{
    uint32_t l = (uint32_t)ceil(log10((double)g->table.n + 1));

    return g->p.retransmit_mult * (l > 2 ? l : 2);
}

static void enqueue(moor_gossip_t *g, const moor_gossip_update_t *u)
{
    uint32_t j = 0;

    /* drop what the new update supersedes (a confirmation -- same suspect
     * entry, other accuser -- travels beside the first) */
    for (uint32_t i = 0; i < g->nq; i++) {
        const moor_gossip_update_t *o = &g->q[i].u;
        int same = o->e.m.idlen == u->e.m.idlen && memcmp(o->e.m.id, u->e.m.id, u->e.m.idlen) == 0;
        int keep = !same ||
                   (o->e.incarnation == u->e.incarnation && o->e.m.status == MOOR_MEMBER_SUSPECT &&
                    u->e.m.status == MOOR_MEMBER_SUSPECT &&
                    (o->bylen != u->bylen || memcmp(o->by, u->by, u->bylen) != 0));
        if (keep)
            g->q[j++] = g->q[i];
    }
    g->nq = j;
    if (g->nq == g->qcap) {
        uint32_t cap = g->qcap ? g->qcap * 2 : 32;
        bcast_t *nq;
        if (cap > 4 * MOOR_RING_MEMBERS_MAX || !(nq = realloc(g->q, cap * sizeof(*nq)))) {
            /* full: forget the most-sent one */
            uint32_t w = 0;
            for (uint32_t i = 1; i < g->nq; i++)
                if (g->q[i].sent > g->q[w].sent)
                    w = i;
            g->q[w] = g->q[--g->nq];
        } else {
            g->q = nq;
            g->qcap = cap;
        }
    }
    g->q[g->nq].u = *u;
    g->q[g->nq].sent = 0;
    g->nq++;
}

static void self_update(const moor_gossip_t *g, moor_gossip_update_t *u)
{
    memset(u, 0, sizeof(*u));
    u->e = g->me;
}

/* ---- encoding ----------------------------------------------------------------------- */

static int pack_update(msgpack_packer *pk, const moor_gossip_update_t *u)
{
    const moor_member_entry_t *e = &u->e;
    int rc = 0;

    rc |= msgpack_pack_array(pk, e->m.inactive ? 8 : 7);
    rc |= msgpack_pack_bin_with_body(pk, e->m.id, e->m.idlen);
    rc |= msgpack_pack_str_with_body(pk, e->m.addr, strlen(e->m.addr));
    rc |= msgpack_pack_str_with_body(pk, e->m.zone, strlen(e->m.zone));
    rc |= msgpack_pack_uint32(pk, e->m.vnodes);
    rc |= msgpack_pack_uint32(pk, (uint32_t)e->m.status);
    rc |= msgpack_pack_uint64(pk, e->incarnation);
    rc |= msgpack_pack_bin_with_body(pk, u->by, u->bylen);
    if (e->m.inactive)
        rc |= msgpack_pack_uint32(pk, e->m.inactive);
    return rc;
}

static int by_sent(const void *a, const void *b)
{
    const bcast_t *x = a, *y = b;

    return x->sent < y->sent ? -1 : x->sent > y->sent;
}

/* "updates": first the extra ones given (self, a probed member's entry),
 * then up to max_piggyback queued ones, least sent first. */
static int pack_updates(moor_gossip_t *g, msgpack_packer *pk, const moor_gossip_update_t *extra,
                        uint32_t nextra)
{
    uint32_t take = g->nq < g->p.max_piggyback ? g->nq : g->p.max_piggyback, limit, j = 0;
    int rc = 0;

    if (take && take < g->nq)
        qsort(g->q, g->nq, sizeof(*g->q), by_sent);
    rc |= msgpack_pack_str_with_body(pk, "updates", 7);
    rc |= msgpack_pack_array(pk, nextra + take);
    for (uint32_t i = 0; i < nextra; i++)
        rc |= pack_update(pk, &extra[i]);
    for (uint32_t i = 0; i < take; i++) {
        rc |= pack_update(pk, &g->q[i].u);
        g->q[i].sent++;
    }
    g->st.updates_out += nextra + take;
    limit = retransmits(g);
    for (uint32_t i = 0; i < g->nq; i++)
        if (g->q[i].sent < limit)
            g->q[j++] = g->q[i];
    g->nq = j;
    return rc;
}

static void pack_id(msgpack_packer *pk, const char *key, const char *id, size_t len)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_bin_with_body(pk, id, len);
}

/* {from, [target], updates} */
static int pack_probe_msg(moor_gossip_t *g, moor_buf_t *b, const mid_t *target,
                          const moor_gossip_update_t *extra, uint32_t nextra)
{
    msgpack_packer pk;

    moor_mp_packer_init(&pk, b);
    msgpack_pack_map(&pk, target ? 3 : 2);
    pack_id(&pk, "from", g->me.m.id, g->me.m.idlen);
    if (target)
        pack_id(&pk, "target", target->id, target->len);
    return pack_updates(g, &pk, extra, nextra) ? MOOR_ENOMEM : 0;
}

static int pack_members(moor_gossip_t *g, moor_buf_t *b)
{
    msgpack_packer pk;

    moor_mp_packer_init(&pk, b);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "members", 7);
    return moor_members_encode(&g->table, b);
}

/* ---- decoding ----------------------------------------------------------------------- */

static int decode_id(const char **p, const char *end, char *id, uint8_t *len, int empty_ok,
                     const char *what)
{
    const char *s;
    uint32_t n;

    if (moor_mp_read_strbin(p, end, &s, &n) || n > MOOR_RING_ID_MAX || (!empty_ok && n == 0))
        return moor_diag(MOOR_EPROTO, "gossip: %s must be an id of 1..%d bytes", what,
                         MOOR_RING_ID_MAX);
    memcpy(id, s, n);
    *len = (uint8_t)n;
    return 0;
}

static int decode_update(const char **p, const char *end, moor_gossip_update_t *u)
{
    moor_member_entry_t *e = &u->e;
    const char *s;
    uint32_t n, len;
    uint64_t vnodes, status;

    memset(u, 0, sizeof(*u));
    if (moor_mp_read_array(p, end, &n) || n < 7)
        return moor_diag(MOOR_EPROTO, "gossip: an update must be an array of 7");
    if (decode_id(p, end, e->m.id, &e->m.idlen, 0, "update id"))
        return MOOR_EPROTO;
    if (moor_mp_read_str(p, end, &s, &len) || len >= sizeof(e->m.addr))
        return moor_diag(MOOR_EPROTO, "gossip: update address must be a short string");
    memcpy(e->m.addr, s, len);
    if (moor_mp_read_str(p, end, &s, &len) || len >= sizeof(e->m.zone))
        return moor_diag(MOOR_EPROTO, "gossip: update zone must be a short string");
    memcpy(e->m.zone, s, len);
    if (moor_mp_read_uint(p, end, &vnodes) || vnodes == 0 || vnodes > MOOR_RING_VNODES_MAX ||
        moor_mp_read_uint(p, end, &status) || status >= MOOR_MEMBER_STATUS_COUNT ||
        moor_mp_read_uint(p, end, &e->incarnation))
        return moor_diag(MOOR_EPROTO, "gossip: update vnodes, status or incarnation out of range");
    e->m.vnodes = (uint32_t)vnodes;
    e->m.status = (int)status;
    if (decode_id(p, end, u->by, &u->bylen, 1, "update accuser"))
        return MOOR_EPROTO;
    if (n > 7) {
        uint64_t inactive;
        if (moor_mp_read_uint(p, end, &inactive) || inactive > vnodes)
            return moor_diag(MOOR_EPROTO, "gossip: update inactive tokens out of range");
        e->m.inactive = (uint32_t)inactive;
    }
    for (uint32_t i = 8; i < n; i++) /* later fields */
        if (moor_mp_skip(p, end, 8))
            return moor_diag(MOOR_EPROTO, "gossip: malformed update field");
    return 0;
}

void moor_gossip_msg_free(moor_gossip_msg_t *m)
{
    if (m->has_members)
        moor_members_free(&m->members);
    m->has_members = 0;
    free(m->u);
    m->u = NULL;
    m->nu = 0;
}

static int key_is(const char *k, uint32_t kl, const char *s)
{
    return kl == strlen(s) && memcmp(k, s, kl) == 0;
}

int moor_gossip_msg_decode(const char *p, size_t len, moor_gossip_msg_t *m)
{
    const char *end = p + len, *k;
    uint32_t n, kl;
    int rc;

    memset(m, 0, sizeof(*m));
    m->ack = -1;
    if (moor_mp_read_map(&p, end, &n))
        return moor_diag(MOOR_EPROTO, "gossip: a message must be a map");
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return moor_diag(MOOR_EPROTO, "gossip: message keys must be strings");
        if (key_is(k, kl, "from")) {
            if ((rc = decode_id(&p, end, m->from, &m->fromlen, 0, "from")))
                return rc;
        } else if (key_is(k, kl, "target")) {
            if ((rc = decode_id(&p, end, m->target, &m->targetlen, 0, "target")))
                return rc;
        } else if (key_is(k, kl, "ack")) {
            if (moor_mp_read_bool(&p, end, &m->ack))
                return moor_diag(MOOR_EPROTO, "gossip: ack must be a boolean");
        } else if (key_is(k, kl, "members")) {
            if (m->has_members)
                return moor_diag(MOOR_EPROTO, "gossip: members given twice");
            if ((rc = moor_members_decode(&p, end, &m->members)))
                return rc;
            m->has_members = 1;
        } else if (key_is(k, kl, "updates")) {
            uint32_t nu;
            if (m->u || moor_mp_read_array(&p, end, &nu) || nu > MOOR_GOSSIP_UPDATES_MAX)
                return moor_diag(MOOR_EPROTO, "gossip: updates must be one array of at most %d",
                                 MOOR_GOSSIP_UPDATES_MAX);
            if (!(m->u = calloc(nu ? nu : 1, sizeof(*m->u))))
                return MOOR_ENOMEM;
            for (; m->nu < nu; m->nu++)
                if ((rc = decode_update(&p, end, &m->u[m->nu])))
                    return rc;
        } else if (moor_mp_skip(&p, end, 16)) {
            return moor_diag(MOOR_EPROTO, "gossip: malformed value of '%.*s'",
                             (int)(kl > 32 ? 32 : kl), k);
        }
    }
    return 0;
}

/* ---- applying what we hear ------------------------------------------------------------ */

static void arm_sweep(moor_gossip_t *g);

static int add_accuser(mstate_t *s, const char *by, size_t len)
{
    uint64_t h = id_hash(by, len);

    for (uint32_t i = 0; i < s->nacc && i < ACCUSERS_MAX; i++)
        if (s->acc[i] == h)
            return 0;
    if (s->nacc < ACCUSERS_MAX)
        s->acc[s->nacc] = h;
    s->nacc++;
    return 1;
}

/* Someone to send our news to at the end of this step (flush). */
static void note_accuser(moor_gossip_t *g, const char *by, size_t len)
{
    if (len == 0 || is_self(g, by, len))
        return;
    for (uint32_t i = 0; i < g->nnotify; i++)
        if (g->notify[i].len == len && memcmp(g->notify[i].id, by, len) == 0)
            return;
    if (g->nnotify < NOTIFY_MAX) {
        g->notify[g->nnotify].len = (uint8_t)len;
        memcpy(g->notify[g->nnotify].id, by, len);
        g->nnotify++;
    }
}

/* What someone says about this node. */
static void apply_self(moor_gossip_t *g, const moor_gossip_update_t *u)
{
    const moor_member_t *a = &u->e.m, *b = &g->me.m;
    moor_gossip_update_t su;

    if (a->status == MOOR_MEMBER_SUSPECT || a->status == MOOR_MEMBER_DOWN)
        note_accuser(g, u->by, u->bylen); /* each accuser hears the refutation */
    if (a->status == MOOR_MEMBER_LEFT && b->status != MOOR_MEMBER_LEFT) {
        /* removed by an operator (`moor remove`): final, no refutation */
        glog(g, 3, "this node was removed from the cluster; it serves nothing now");
        g->me = u->e; /* as the remover wrote it: its inactive tells a removal */
        table_apply(g, &g->me);
        return;
    }
    if (u->e.incarnation < g->me.incarnation)
        return;
    if (a->status == b->status && a->vnodes == b->vnodes && a->inactive == b->inactive &&
        strcmp(a->addr, b->addr) == 0 &&
        strcmp(a->zone, b->zone) == 0 && u->e.incarnation == g->me.incarnation)
        return;
    if (u->e.incarnation > g->me.incarnation && strcmp(a->addr, b->addr) != 0)
        glog(g, 3,
             "member table: another node claims id '%.*s' at %s (this node is at %s); node ids "
             "must be unique",
             (int)b->idlen, b->id, a->addr, b->addr);
    if (a->status == MOOR_MEMBER_SUSPECT || a->status == MOOR_MEMBER_DOWN) {
        g->st.refutations++;
        health_add(g, 1);
        glog(g, 1, "refuting: told this node is %s at incarnation %llu",
             moor_member_status_name(a->status), (unsigned long long)u->e.incarnation);
    }
    g->me.incarnation = u->e.incarnation + 1;
    table_apply(g, &g->me);
    self_update(g, &su);
    enqueue(g, &su);
}

/* Member t is in doubt (someone accuses it, or it did not answer a
 * _gossip): probe it next. */
static void urgent(moor_gossip_t *g, const mid_t *t)
{
    for (uint32_t i = 0; i < g->nurgent; i++)
        if (g->urgent[i].len == t->len && memcmp(g->urgent[i].id, t->id, t->len) == 0)
            return;
    if (g->nurgent < NOTIFY_MAX)
        g->urgent[g->nurgent++] = *t;
}

/* Applies one update; 1 if it told us something new (it is then queued
 * to be passed on), 0 if not, <0 for an invalid one. */
static int apply_update(moor_gossip_t *g, const moor_gossip_update_t *u)
{
    const moor_member_entry_t *cur;
    long i;
    int old = -1, rc;
    uint64_t t;

    g->st.updates_in++;
    if (is_self(g, u->e.m.id, u->e.m.idlen)) {
        apply_self(g, u);
        return 0;
    }
    if ((cur = moor_members_find(&g->table, u->e.m.id, u->e.m.idlen)))
        old = cur->m.status;
    if ((rc = table_apply(g, &u->e)) < 0)
        return rc;
    i = index_of(g, u->e.m.id, u->e.m.idlen);
    if (rc == 1) {
        mstate_t *s = &g->ms[i];
        if (u->e.m.status == MOOR_MEMBER_SUSPECT) {
            memset(s, 0, sizeof(*s));
            s->active = 1;
            s->inc = u->e.incarnation;
            s->start = now(g);
            if (u->bylen)
                add_accuser(s, u->by, u->bylen);
            if (!is_self(g, u->by, u->bylen)) {
                mid_t t;
                t.len = u->e.m.idlen;
                memcpy(t.id, u->e.m.id, t.len);
                urgent(g, &t);
            }
            s->due = s->start + suspicion_timeout(g, s->nacc);
            arm_sweep(g);
        } else {
            s->active = 0;
        }
        tell_status(g, &g->table.e[i].m, old);
        enqueue(g, u);
        return 1;
    }
    cur = &g->table.e[i];
    if (u->e.m.status == MOOR_MEMBER_SUSPECT && cur->m.status == MOOR_MEMBER_SUSPECT &&
        cur->incarnation == u->e.incarnation && u->bylen && g->ms[i].active &&
        add_accuser(&g->ms[i], u->by, u->bylen)) {
        t = g->ms[i].start + suspicion_timeout(g, g->ms[i].nacc);
        if (t < g->ms[i].due && !g->ms[i].final) { /* not while the last probes run */
            g->ms[i].due = t;
            arm_sweep(g);
        }
        enqueue(g, u);
        return 1;
    }
    return 0;
}

static void apply_msg(moor_gossip_t *g, const moor_gossip_msg_t *m)
{
    int rc;

    for (uint32_t i = 0; i < m->nu; i++)
        if ((rc = apply_update(g, &m->u[i])) < 0)
            glog(g, 0, "gossip: an update was refused: %s", moor_diag_msg(rc));
    if (m->has_members)
        for (uint32_t i = 0; i < m->members.n; i++) {
            moor_gossip_update_t u;
            memset(&u, 0, sizeof(u));
            u.e = m->members.e[i];
            if ((rc = apply_update(g, &u)) < 0)
                glog(g, 0, "gossip: a member entry was refused: %s", moor_diag_msg(rc));
        }
}

/* Alive as far as this node knows: up, or in the middle of a join or a
 * leave (a member moving is probed, suspected and declared down like any
 * other; its tokens in motion stay in its entry). */
static int live(int status)
{
    return status == MOOR_MEMBER_UP || status == MOOR_MEMBER_SUSPECT ||
           status == MOOR_MEMBER_JOINING || status == MOOR_MEMBER_LEAVING;
}

/* This node accuses member id (its probe failed). */
static void accuse(moor_gossip_t *g, const mid_t *id)
{
    long i = index_of(g, id->id, id->len);
    moor_gossip_update_t u;

    if (i < 0)
        return;
    if (!live(g->table.e[i].m.status))
        return;
    memset(&u, 0, sizeof(u));
    u.e = g->table.e[i];
    u.e.m.status = MOOR_MEMBER_SUSPECT;
    u.bylen = g->me.m.idlen;
    memcpy(u.by, g->me.m.id, u.bylen);
    if (apply_update(g, &u) == 1) {
        /* tell the accused at once, so it can refute (Lifeguard's buddy
         * system; the queue's newest entry is this suspicion) */
        note_accuser(g, id->id, id->len);
        g->st.suspicions++;
        glog(g, 0, "gossip: suspecting '%.*s'", (int)id->len, id->id);
    }
}

/* ---- requests --------------------------------------------------------------------------- */

static void flush(moor_gossip_t *g);

static req_t *req_new(moor_gossip_t *g, int kind)
{
    req_t *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->g = g;
    r->kind = kind;
    r->next = g->reqs.next;
    r->prev = &g->reqs;
    g->reqs.next->prev = r;
    g->reqs.next = r;
    return r;
}

static void req_free(req_t *r)
{
    if (r->g) {
        r->prev->next = r->next;
        r->next->prev = r->prev;
    }
    free(r);
}

static void on_reply(void *arg, int status, const char *res, size_t rlen);
static void final_answer(moor_gossip_t *g, const req_t *r, int alive);

/* Sends method(b) to id; 0, or an error (r freed). */
static int send_req(moor_gossip_t *g, req_t *r, const char *to, size_t tolen, const char *method,
                    const moor_buf_t *b, uint32_t timeout)
{
    int rc = g->o.transport.request(g->o.transport.ud, to, tolen, method, b->data, b->len, 1,
                                    timeout, on_reply, r);

    if (rc)
        req_free(r);
    return rc;
}

/* Packs {from, [target], updates} (extra updates first) and sends it;
 * 0, or an error (r freed). */
static int send_probe(moor_gossip_t *g, req_t *r, const char *to, size_t tolen, const char *method,
                      const mid_t *target, const moor_gossip_update_t *extra, uint32_t nextra,
                      uint32_t timeout)
{
    moor_buf_t b = MOOR_BUF_INIT;
    int rc = pack_probe_msg(g, &b, target, extra, nextra);

    if (rc)
        req_free(r);
    else
        rc = send_req(g, r, to, tolen, method, &b, timeout);
    moor_buf_free(&b);
    return rc;
}

static void probe_finish(moor_gossip_t *g, int failed)
{
    probe_t *pr = &g->probe;

    if (!pr->active)
        return;
    pr->active = 0;
    if (!failed) {
        health_add(g, -1);
        return;
    }
    if (pr->target_down)
        return;
    if (now(g) < g->grace_until) /* we were stalled: not their fault */
        return;
    g->st.probe_failures++;
    health_add(g, 1);
    accuse(g, &pr->target);
}

/* Random live members (not self, not except) into out. */
static uint32_t pick_random(moor_gossip_t *g, const mid_t *except, mid_t *out, uint32_t want)
{
    uint32_t got = 0, n = g->table.n;

    for (uint32_t tries = 0; got < want && tries < 4 * want + 8 && n > 0; tries++) {
        const moor_member_t *m = &g->table.e[rnd(g) % n].m;
        int dup = 0;
        if (is_self(g, m->id, m->idlen) ||
            !live(m->status) ||
            (except && except->len == m->idlen && memcmp(except->id, m->id, m->idlen) == 0))
            continue;
        for (uint32_t j = 0; j < got; j++)
            dup |= out[j].len == m->idlen && memcmp(out[j].id, m->id, m->idlen) == 0;
        if (dup)
            continue;
        out[got].len = m->idlen;
        memcpy(out[got].id, m->id, m->idlen);
        got++;
    }
    return got;
}

static void send_indirect(moor_gossip_t *g)
{
    probe_t *pr = &g->probe;
    mid_t via[16];
    uint32_t n = pick_random(g, &pr->target, via, g->p.indirect_k);
    uint32_t remain = (g->p.period_ms - g->p.probe_timeout_ms) * hmul(g);

    for (uint32_t i = 0; i < n; i++) {
        req_t *r = req_new(g, R_PINGREQ);
        if (!r)
            break;
        r->seq = pr->seq;
        if (send_probe(g, r, via[i].id, via[i].len, "_ping_req", &pr->target, NULL, 0, remain) ==
            0) {
            pr->indirect_pending++;
            g->st.indirect_probes++;
        }
    }
}

/* A probed member's own entry travels with the ping when it is in doubt,
 * so it can refute (Lifeguard's buddy system). */
static uint32_t probe_extra(moor_gossip_t *g, const mid_t *t, moor_gossip_update_t *x)
{
    const moor_member_entry_t *e = moor_members_find(&g->table, t->id, t->len);

    if (!e || (e->m.status != MOOR_MEMBER_SUSPECT && e->m.status != MOOR_MEMBER_DOWN))
        return 0;
    memset(x, 0, sizeof(*x));
    x->e = *e;
    return 1;
}

static void relay_answer(req_t *r, int acked, moor_gossip_t *g)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;

    if (!g) {
        r->answer(r->answer_arg, MOOR_ECLOSED, NULL, 0);
        return;
    }
    moor_mp_packer_init(&pk, &b);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "ack", 3);
    acked ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    if (pack_updates(g, &pk, NULL, 0))
        r->answer(r->answer_arg, MOOR_ENOMEM, NULL, 0);
    else
        r->answer(r->answer_arg, 0, b.data, b.len);
    moor_buf_free(&b);
}

static void on_reply(void *arg, int status, const char *res, size_t rlen)
{
    req_t *r = arg;
    moor_gossip_t *g = r->g;
    moor_gossip_msg_t m;
    int rc = 1;

    if (!g) {
        if (r->kind == R_RELAY)
            relay_answer(r, 0, NULL);
        free(r);
        return;
    }
    memset(&m, 0, sizeof(m));
    if (status == 0) {
        rc = moor_gossip_msg_decode(res, rlen, &m);
        if (rc)
            glog(g, 0, "gossip: malformed answer: %s", moor_diag_msg(rc));
        else {
            g->st.messages_in++;
            apply_msg(g, &m);
        }
    }
    switch (r->kind) {
    case R_PING:
        if (r->seq == g->probe.seq && g->probe.active) {
            g->probe.direct_done = 1;
            if (rc == 0) {
                g->probe.acked = 1;
                probe_finish(g, 0);
            } else if (g->probe.target_down) {
                probe_finish(g, 1);
            } else {
                send_indirect(g); /* nobody to ask: the period's end decides */
            }
        }
        break;
    case R_PINGREQ:
        if (rc != 0)
            health_add(g, 1); /* not even a nack: maybe it is us */
        if (r->seq == g->probe.seq && g->probe.active) {
            if (g->probe.indirect_pending)
                g->probe.indirect_pending--;
            if (rc == 0 && m.ack == 1) {
                g->probe.acked = 1;
                probe_finish(g, 0);
            } else if (!g->probe.indirect_pending && g->probe.direct_done) {
                probe_finish(g, 1);
            }
        }
        break;
    case R_RELAY: relay_answer(r, rc == 0, g); break;
    case R_FINAL: final_answer(g, r, rc == 0 && (!r->via || m.ack == 1)); break;
    case R_JOIN:
        g->seed_inflight[r->seed] = 0;
        if (rc == 0 && !g->seed_answered[r->seed]) {
            g->seed_answered[r->seed] = 1;
            g->st.joins_answered++;
            glog(g, 1, "joined through seed %s", g->seeds[r->seed]);
        } else if (rc != 0 && !g->seed_answered[r->seed]) {
            glog(g, 0, "seed %s: %s", g->seeds[r->seed],
                 status ? moor_diag_msg(status) : "malformed answer");
        }
        break;
    case R_GOSSIP:
        if (rc != 0)
            urgent(g, &r->about); /* no answer: probe it next */
        break;
    default: break;
    }
    moor_gossip_msg_free(&m);
    req_free(r);
    flush(g);
}

/* ---- timers --------------------------------------------------------------------------------- */

/* A timer that fires more than a period late means this process was
 * stalled: give the others a chance to reach us before acting. */
static void check_stall(moor_gossip_t *g, uint64_t due)
{
    uint64_t t = now(g);

    if (t > due + g->p.period_ms) {
        uint64_t until = t + suspicion_min(g);
        if (until > g->grace_until)
            g->grace_until = until;
        glog(g, 1, "gossip: this node was stalled for %llu ms; holding suspicions",
             (unsigned long long)(t - due));
    }
}

static void shuffle_order(moor_gossip_t *g)
{
    mid_t *o = realloc(g->order, (g->table.n ? g->table.n : 1) * sizeof(*o));

    if (!o)
        return;
    g->order = o;
    g->norder = 0;
    for (uint32_t i = 0; i < g->table.n; i++) {
        const moor_member_t *m = &g->table.e[i].m;
        if (is_self(g, m->id, m->idlen) || m->status == MOOR_MEMBER_LEFT)
            continue;
        o[g->norder].len = m->idlen;
        memcpy(o[g->norder].id, m->id, m->idlen);
        g->norder++;
    }
    for (uint32_t i = g->norder; i > 1; i--) {
        uint32_t j = (uint32_t)(rnd(g) % i);
        mid_t t = o[i - 1];
        o[i - 1] = o[j];
        o[j] = t;
    }
    g->order_pos = 0;
}

static int next_target(moor_gossip_t *g, mid_t *out)
{
    /* a member in doubt is checked first: an independent confirmation
     * (or an ack) comes within a period */
    while (g->nurgent) {
        const mid_t *c = &g->urgent[--g->nurgent];
        const moor_member_entry_t *e = moor_members_find(&g->table, c->id, c->len);
        if (e && live(e->m.status)) {
            *out = *c;
            return 1;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        while (g->order_pos < g->norder) {
            const mid_t *c = &g->order[g->order_pos++];
            const moor_member_entry_t *e = moor_members_find(&g->table, c->id, c->len);
            if (e && e->m.status != MOOR_MEMBER_LEFT) {
                *out = *c;
                return 1;
            }
        }
        shuffle_order(g);
    }
    return 0;
}

static void probe_cb(void *arg)
{
    moor_gossip_t *g = arg;
    probe_t *pr = &g->probe;
    moor_gossip_update_t x;
    const moor_member_entry_t *e;
    req_t *r;

    g->t_probe = 0;
    check_stall(g, g->due_probe);
    probe_finish(g, 1); /* still open at the period's end: failed */
    if (next_target(g, &pr->target) &&
        (e = moor_members_find(&g->table, pr->target.id, pr->target.len))) {
        pr->active = 1;
        pr->seq = ++g->probe_seq;
        pr->acked = pr->direct_done = 0;
        pr->indirect_pending = 0;
        pr->target_down = e->m.status == MOOR_MEMBER_DOWN;
        g->st.probes++;
        if ((r = req_new(g, R_PING))) {
            r->seq = pr->seq;
            if (send_probe(g, r, pr->target.id, pr->target.len, "_ping", &pr->target, &x,
                           probe_extra(g, &pr->target, &x), g->p.probe_timeout_ms * hmul(g))) {
                pr->direct_done = 1;
                if (!pr->target_down)
                    send_indirect(g);
            }
        }
    }
    g->t_probe = timer(g, (uint64_t)g->p.period_ms * hmul(g), probe_cb, &g->due_probe);
    flush(g);
}

static void send_gossip(moor_gossip_t *g, const mid_t *to, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        moor_buf_t b = MOOR_BUF_INIT;
        req_t *r = req_new(g, R_GOSSIP);
        if (!r)
            return;
        r->about = to[i];
        if (pack_probe_msg(g, &b, NULL, NULL, 0) == 0)
            send_req(g, r, to[i].id, to[i].len, "_gossip", &b, g->p.period_ms);
        else
            req_free(r);
        moor_buf_free(&b);
    }
}

static void gossip_cb(void *arg)
{
    moor_gossip_t *g = arg;
    mid_t to[16];

    g->t_gossip = 0;
    check_stall(g, g->due_gossip);
    if (g->nq)
        send_gossip(g, to, pick_random(g, NULL, to, g->p.gossip_fanout));
    g->t_gossip = timer(g, g->p.gossip_interval_ms, gossip_cb, &g->due_gossip);
    flush(g);
}

/* A suspicion ran out: one last direct ping and indirect_k indirect ones
 * before the verdict (the ping carries the suspicion, so a live member
 * that missed the news refutes in its ack).  Returns how many were sent. */
static uint32_t final_check(moor_gossip_t *g, uint32_t i)
{
    const moor_member_entry_t *e = &g->table.e[i];
    mid_t t, via[16];
    moor_gossip_update_t x;
    uint32_t sent = 0, n;

    t.len = e->m.idlen;
    memcpy(t.id, e->m.id, t.len);
    n = pick_random(g, &t, via, g->p.indirect_k);
    for (uint32_t k = 0; k <= n; k++) {
        req_t *r = req_new(g, R_FINAL);
        if (!r)
            break;
        r->about = t;
        r->inc = e->incarnation;
        r->via = k > 0;
        if (send_probe(g, r, k ? via[k - 1].id : t.id, k ? via[k - 1].len : t.len,
                       k ? "_ping_req" : "_ping", &t, &x, k == 0 ? probe_extra(g, &t, &x) : 0,
                       (k ? g->p.period_ms : g->p.probe_timeout_ms) * hmul(g)) == 0)
            sent++;
    }
    return sent;
}

static void final_answer(moor_gossip_t *g, const req_t *r, int alive)
{
    long i = index_of(g, r->about.id, r->about.len);
    mstate_t *s;

    if (i < 0)
        return;
    s = &g->ms[i];
    if (!s->active || !s->final || s->inc != r->inc)
        return; /* refuted meanwhile, or another suspicion */
    if (alive) {
        /* it answered without refuting (it will: the ping told it) */
        s->final = 0;
        s->due = now(g) + suspicion_min(g);
        arm_sweep(g);
    } else if (s->final_pending && --s->final_pending == 0) {
        s->due = now(g);
        arm_sweep(g);
    }
}

static void sweep_cb(void *arg)
{
    moor_gossip_t *g = arg;
    uint64_t t;

    g->t_sweep = 0;
    check_stall(g, g->due_sweep);
    t = now(g);
    for (uint32_t i = 0; i < g->table.n; i++) {
        mstate_t *s = &g->ms[i];
        moor_gossip_update_t u;
        if (!s->active || s->due > t)
            continue;
        if (t < g->grace_until) {
            s->due = g->grace_until;
            continue;
        }
        if (!s->final && g->table.e[i].m.status == MOOR_MEMBER_SUSPECT &&
            g->table.e[i].incarnation == s->inc) {
            s->final = 1;
            s->final_pending = final_check(g, i);
            glog(g, 0, "gossip: last-chance probes of '%.*s': %u sent", (int)g->table.e[i].m.idlen,
                 g->table.e[i].m.id, s->final_pending);
            if (s->final_pending) {
                s->due = t + (uint64_t)g->p.period_ms * hmul(g);
                continue;
            }
        }
        s->active = 0;
        if (g->table.e[i].m.status != MOOR_MEMBER_SUSPECT || g->table.e[i].incarnation != s->inc)
            continue;
        memset(&u, 0, sizeof(u));
        u.e = g->table.e[i];
        u.e.m.status = MOOR_MEMBER_DOWN;
        g->st.declared_down++;
        glog(g, 1, "gossip: member '%.*s' is down (suspected %llu ms ago, %u accusers)",
             (int)u.e.m.idlen, u.e.m.id, (unsigned long long)(t - s->start), s->nacc);
        apply_update(g, &u);
        /* the table may have grown: nothing beyond i moved though */
    }
    arm_sweep(g);
    flush(g);
}

static void arm_sweep(moor_gossip_t *g)
{
    uint64_t due = UINT64_MAX, t;

    if (!g->started)
        return;
    for (uint32_t i = 0; i < g->table.n; i++)
        if (g->ms[i].active && g->ms[i].due < due)
            due = g->ms[i].due;
    if (due == UINT64_MAX) {
        timer_stop(g, &g->t_sweep);
        return;
    }
    if (g->t_sweep && g->due_sweep == due)
        return;
    timer_stop(g, &g->t_sweep);
    t = now(g);
    g->t_sweep = timer(g, due > t ? due - t : 0, sweep_cb, &g->due_sweep);
}

static void send_members(moor_gossip_t *g, unsigned seed, int kind)
{
    moor_buf_t b = MOOR_BUF_INIT;
    req_t *r = req_new(g, kind);

    if (!r)
        return;
    r->seed = seed;
    if (pack_members(g, &b))
        req_free(r);
    else if (send_req(g, r, g->seeds[seed], strlen(g->seeds[seed]),
                      kind == R_JOIN ? "_join" : "_members", &b, g->p.join_interval_ms) == 0)
        g->seed_inflight[seed] = 1;
    moor_buf_free(&b);
}

static void join_cb(void *arg)
{
    moor_gossip_t *g = arg;
    unsigned pending = 0;

    g->t_join = 0;
    for (unsigned i = 0; i < g->nseeds; i++)
        if (!g->seed_answered[i]) {
            pending++;
            if (!g->seed_inflight[i]) {
                g->st.joins_sent++;
                send_members(g, i, R_JOIN);
            }
        }
    if (!pending && g->nseeds && now(g) >= g->next_sync) {
        unsigned i = g->sync_next++ % g->nseeds;
        g->next_sync = now(g) + g->p.sync_interval_ms;
        if (!g->seed_inflight[i]) {
            g->st.syncs++;
            send_members(g, i, R_SYNC);
        }
    }
    g->t_join = timer(g, g->p.join_interval_ms, join_cb, &g->due_join);
    flush(g);
}

/* ---- every entry point ends here ----------------------------------------------------------- */

static void flush(moor_gossip_t *g)
{
    if (g->nnotify && g->started) {
        mid_t to[NOTIFY_MAX + 16];
        uint32_t n = g->nnotify;
        memcpy(to, g->notify, n * sizeof(*to));
        g->nnotify = 0;
        n += pick_random(g, NULL, to + n, g->p.gossip_fanout);
        send_gossip(g, to, n);
    }
    if (g->table.version != g->told_version) {
        g->told_version = g->table.version;
        if (g->o.on_table)
            g->o.on_table(g->o.ud, &g->table);
    }
}

/* ---- serving ------------------------------------------------------------------------------- */

int moor_gossip_is_method(const char *method, size_t mlen)
{
    static const char *const names[] = {"_join", "_members", "_ping", "_ping_req", "_gossip"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (mlen == strlen(names[i]) && memcmp(method, names[i], mlen) == 0)
            return 1;
    return 0;
}

void moor_gossip_handle(moor_gossip_t *g, const char *method, size_t mlen, const char *params,
                        size_t plen, uint32_t nparams, moor_gossip_answer_fn answer, void *arg)
{
    moor_gossip_msg_t m;
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc, answered = 0;

    if (nparams != 1) {
        answer(arg, moor_diag(MOOR_EPROTO, "%.*s takes one map", (int)mlen, method), NULL, 0);
        return;
    }
    if ((rc = moor_gossip_msg_decode(params, plen, &m))) {
        moor_gossip_msg_free(&m);
        answer(arg, rc, NULL, 0);
        return;
    }
    g->st.messages_in++;
    if (key_is(method, (uint32_t)mlen, "_join") || key_is(method, (uint32_t)mlen, "_members")) {
        if (!m.has_members) {
            rc = moor_diag(MOOR_EPROTO, "%.*s needs members", (int)mlen, method);
        } else {
            apply_msg(g, &m);
            rc = pack_members(g, &b);
        }
    } else if (key_is(method, (uint32_t)mlen, "_ping") ||
               key_is(method, (uint32_t)mlen, "_gossip")) {
        moor_gossip_update_t self;
        int ping = mlen == 5;
        apply_msg(g, &m);
        if (ping && m.targetlen && !is_self(g, m.target, m.targetlen)) {
            rc = moor_diag(MOOR_EINVAL, "ping for '%.*s' reached '%.*s'", (int)m.targetlen,
                           m.target, (int)g->me.m.idlen, g->me.m.id);
        } else {
            /* an ack carries our news (SWIM's piggyback); a _gossip
             * answer only says "received": it would mostly carry the news
             * back to whoever just brought it, and use up its sends */
            self_update(g, &self);
            moor_mp_packer_init(&pk, &b);
            msgpack_pack_map(&pk, 1);
            if (ping) {
                rc = pack_updates(g, &pk, &self, 1) ? MOOR_ENOMEM : 0;
            } else {
                msgpack_pack_str_with_body(&pk, "updates", 7);
                rc = msgpack_pack_array(&pk, 0) ? MOOR_ENOMEM : 0;
            }
        }
    } else if (key_is(method, (uint32_t)mlen, "_ping_req")) {
        mid_t t;
        moor_gossip_update_t x;
        req_t *r = NULL;
        apply_msg(g, &m);
        t.len = m.targetlen;
        memcpy(t.id, m.target, m.targetlen);
        if (!m.targetlen || !moor_members_find(&g->table, t.id, t.len) || is_self(g, t.id, t.len))
            rc = moor_diag(MOOR_EINVAL, "_ping_req needs a known target");
        else if (!(r = req_new(g, R_RELAY)))
            rc = MOOR_ENOMEM;
        else if ((rc = pack_probe_msg(g, &b, &t, &x, probe_extra(g, &t, &x))))
            req_free(r);
        else {
            r->answer = answer;
            r->answer_arg = arg;
            if (send_req(g, r, t.id, t.len, "_ping", &b, g->p.probe_timeout_ms * hmul(g))) {
                /* could not even send (r is freed): a nack at once */
                req_t tmp = {.answer = answer, .answer_arg = arg};
                relay_answer(&tmp, 0, g);
            }
            answered = 1; /* now or when the ping's answer comes */
        }
    } else {
        rc = moor_diag(MOOR_ENOMETHOD, "not a gossip method");
    }
    if (!answered)
        answer(arg, rc, rc ? NULL : b.data, rc ? 0 : b.len);
    moor_buf_free(&b);
    moor_gossip_msg_free(&m);
    flush(g);
}

/* ---- life cycle ----------------------------------------------------------------------------- */

const moor_members_t *moor_gossip_table(const moor_gossip_t *g)
{
    return &g->table;
}

void moor_gossip_stats(const moor_gossip_t *g, moor_gossip_stats_t *st)
{
    *st = g->st;
    st->local_health = g->health;
    st->queued = g->nq;
    memset(st->by_status, 0, sizeof(st->by_status));
    for (uint32_t i = 0; i < g->table.n; i++)
        if (g->table.e[i].m.status >= 0 && g->table.e[i].m.status < 6)
            st->by_status[g->table.e[i].m.status]++;
}

int moor_gossip_new(const moor_gossip_opts_t *o, moor_gossip_t **out)
{
    moor_gossip_t *g;
    int rc;

    *out = NULL;
    if ((rc = moor_gossip_params_check(&o->p)))
        return rc;
    if (!(g = calloc(1, sizeof(*g))))
        return MOOR_ENOMEM;
    g->o = *o;
    g->p = o->p;
    g->rng = o->seed;
    g->me = o->self;
    if (!(g->me.m.status == MOOR_MEMBER_JOINING && g->me.m.inactive > 0) &&
        g->me.m.status != MOOR_MEMBER_LEAVING && g->me.m.status != MOOR_MEMBER_LEFT)
        g->me.m.status = MOOR_MEMBER_UP;
    g->reqs.next = g->reqs.prev = &g->reqs;
    moor_members_init(&g->table);
    if (o->saved)
        for (uint32_t i = 0; i < o->saved->n; i++)
            if ((rc = table_apply(g, &o->saved->e[i])) < 0)
                goto fail;
    {
        /* what was known of this node must not win over it */
        const moor_member_entry_t *old = moor_members_find(&g->table, g->me.m.id, g->me.m.idlen);
        if (old && (old->incarnation > g->me.incarnation ||
                    (old->incarnation == g->me.incarnation &&
                     (old->m.status != g->me.m.status || old->m.vnodes != g->me.m.vnodes ||
                      old->m.inactive != g->me.m.inactive ||
                      strcmp(old->m.addr, g->me.m.addr) || strcmp(old->m.zone, g->me.m.zone)))))
            g->me.incarnation = old->incarnation + 1;
    }
    if ((rc = table_apply(g, &g->me)) < 0)
        goto fail;
    {
        /* removed (or left) in an earlier run: that is final */
        const moor_member_entry_t *cur = moor_members_find(&g->table, g->me.m.id, g->me.m.idlen);
        if (cur && cur->m.status == MOOR_MEMBER_LEFT)
            g->me = *cur;
    }
    g->nseeds = o->nseeds;
    g->seeds = calloc(o->nseeds ? o->nseeds : 1, sizeof(*g->seeds));
    g->seed_answered = calloc(o->nseeds ? o->nseeds : 1, 1);
    g->seed_inflight = calloc(o->nseeds ? o->nseeds : 1, 1);
    if (!g->seeds || !g->seed_answered || !g->seed_inflight) {
        rc = MOOR_ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < o->nseeds; i++)
        if (!(g->seeds[i] = strdup(o->seeds[i]))) {
            rc = MOOR_ENOMEM;
            goto fail;
        }
    g->told_version = g->table.version;
    *out = g;
    return 0;
fail:
    moor_gossip_free(g);
    return rc;
}

int moor_gossip_set_params(moor_gossip_t *g, const moor_gossip_params_t *p)
{
    int rc = moor_gossip_params_check(p);

    if (rc == 0)
        g->p = *p; /* every timer is re-armed from g->p when it fires */
    return rc;
}

void moor_gossip_start(moor_gossip_t *g)
{
    moor_gossip_update_t su;
    uint32_t jitter;

    g->started = 1;
    /* a (re)started node tells everyone its incarnation */
    self_update(g, &su);
    enqueue(g, &su);
    g->next_sync = now(g) + g->p.sync_interval_ms;
    join_cb(g);
    jitter = (uint32_t)(rnd(g) % g->p.period_ms);
    g->t_probe = timer(g, jitter, probe_cb, &g->due_probe);
    g->t_gossip = timer(g, rnd(g) % g->p.gossip_interval_ms, gossip_cb, &g->due_gossip);
    arm_sweep(g);
}

void moor_gossip_free(moor_gossip_t *g)
{
    if (!g)
        return;
    timer_stop(g, &g->t_probe);
    timer_stop(g, &g->t_gossip);
    timer_stop(g, &g->t_sweep);
    timer_stop(g, &g->t_join);
    for (req_t *r = g->reqs.next; r != &g->reqs;) {
        req_t *next = r->next;
        r->g = NULL; /* its reply frees it */
        if (r->kind == R_RELAY) {
            r->answer(r->answer_arg, MOOR_ECLOSED, NULL, 0);
            r->kind = R_GOSSIP;
        }
        r = next;
    }
    for (unsigned i = 0; g->seeds && i < g->nseeds; i++)
        free(g->seeds[i]);
    free(g->seeds);
    free(g->seed_answered);
    free(g->seed_inflight);
    moor_members_free(&g->table);
    free(g->ms);
    free(g->order);
    free(g->q);
    free(g);
}

/* ---- membership changes this node makes ---------------------------------------------- */

int moor_gossip_set_self(moor_gossip_t *g, int status, uint32_t inactive)
{
    moor_gossip_update_t su;
    int old = g->me.m.status, rc;

    if (old == MOOR_MEMBER_LEFT)
        return moor_diag(MOOR_EINVAL, "this node has left the cluster");
    if (inactive > g->me.m.vnodes || status < 0 || status >= MOOR_MEMBER_STATUS_COUNT)
        return moor_diag(MOOR_EINVAL, "set_self: status %d, inactive %u", status, inactive);
    if (status == old && inactive == g->me.m.inactive)
        return 0;
    g->me.m.status = status;
    g->me.m.inactive = inactive;
    g->me.incarnation++;
    if ((rc = table_apply(g, &g->me)) < 0)
        return rc;
    tell_status(g, &g->me.m, old);
    self_update(g, &su);
    enqueue(g, &su);
    if (status == MOOR_MEMBER_LEFT) /* tell every live member now: it may be stopped at once */
        for (uint32_t i = 0; i < g->table.n; i++) {
            const moor_member_t *m = &g->table.e[i].m;
            if (!is_self(g, m->id, m->idlen) && live(m->status))
                note_accuser(g, m->id, m->idlen);
        }
    flush(g);
    return 0;
}

int moor_gossip_remove(moor_gossip_t *g, const char *id, size_t idlen)
{
    const moor_member_entry_t *e = moor_members_find(&g->table, id, idlen);
    moor_member_entry_t left;
    moor_gossip_update_t u;
    int old, rc;

    if (!e)
        return moor_diag(MOOR_ENOENT, "no member '%.*s'", (int)idlen, id);
    if (is_self(g, id, idlen))
        return moor_diag(MOOR_EINVAL, "a node cannot remove itself: use leave");
    if (e->m.status == MOOR_MEMBER_LEFT)
        return 0;
    left = *e;
    old = left.m.status;
    left.m.status = MOOR_MEMBER_LEFT; /* inactive kept: < vnodes tells a removal from a leave */
    if ((rc = table_apply(g, &left)) < 0)
        return rc;
    tell_status(g, &left.m, old);
    memset(&u, 0, sizeof(u));
    u.e = left;
    enqueue(g, &u);
    flush(g);
    return 0;
}

const moor_member_entry_t *moor_gossip_self(const moor_gossip_t *g)
{
    return &g->me;
}
