/*
 * cluster.c -- the wiring of a node's cluster (cluster.h): the gossip
 * instance (core/cluster/gossip.c) and the coordinator on libuv's clock
 * and the peer pool, the ring rebuilt from gossip's table, and what
 * outlives a process: data_dir/MEMBERS, HLC and REPAIR.
 */
#include "cluster.h"
#include "hlc.h"
#include "solo.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/aae.h"
#include "cluster/gossip.h"
#include "cluster/hints.h"
#include "cluster/load.h"
#include "cluster/membership.h"
#include "cluster/vclock.h"
#include "cluster/xfer.h"
#include "util/file.h"
#include "net/peer.h"
#include "net/uvenv.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/mp.h"

#define SEED_PREFIX "seed@"
#define MEMBERS_MAGIC "MOORMEM1"
#define PEER_TIMEOUT_MS 2000

typedef struct seed {
    char addr[MOOR_RING_ADDR_MAX];
    char pid[MOOR_RING_ADDR_MAX + sizeof(SEED_PREFIX)]; /* pool id of the seed's connection */
    int self;                                           /* our own address: skipped */
} seed_t;

struct moor_cl {
    uv_loop_t *loop;
    const moor_config_t *cfg;
    char self_addr[MOOR_RING_ADDR_MAX];
    char path[4096 + 16];        /* data_dir/MEMBERS */
    char repair_path[4096 + 16]; /* data_dir/REPAIR: present while a repair is due */
    char repair_why[256];        /* its reason; "" when no repair is due */
    char owed_path[4096 + 16];   /* data_dir/REPAIR_OWED: hints dropped, per key */
    FILE *owed;                  /* open for appending once a hint was dropped */
    moor_hlc_mark_t hlc;         /* data_dir/HLC */
    moor_gossip_t *gossip;       /* owns the member table */
    moor_ring_t *ring;           /* built from the table; NULL until the first build */
    moor_uvenv_t *env;
    moor_peer_pool_t *pool;
    moor_coord_t *coord;
    moor_hints_t *hints;    /* writes this node holds for owners that were down */
    moor_aae_t *aae;        /* anti-entropy: hash trees, exchanges, repair */
    moor_peer_pool_t *bulk; /* the streams' own connections (xfer) */
    moor_xfer_t *xfer;      /* joins and leaves: the ranges this node streams */
    int xfer_state0;        /* the move to start (or resume) once gossip runs */
    uint32_t xfer_inactive0;
    moor_load_t *load;    /* every member's load (autoscale.c publishes ours) */
    uv_timer_t due_timer; /* starts the repair a REPAIR mark asks for */
    uv_timer_t hlc_timer; /* renews the HLC reservation */
    seed_t *seeds;
    unsigned nseeds;
    moor_buf_t mem_next;   /* the table to save next, encoded; empty: none */
    moor_buf_t mem_saving; /* what mem_work is writing */
    uv_work_t mem_work;    /* saves MEMBERS on the threadpool */
    int mem_rc, mem_busy;
    int closing, handles_open;
    void (*close_done)(void *ud);
    void *close_ud;
    moor_gossip_status_fn on_status; /* the owner's, may be NULL */
    void *status_ud;
};

static const moor_members_t *table_of(const moor_cl_t *cl)
{
    static const moor_members_t none; /* after close */

    return cl->gossip ? moor_gossip_table(cl->gossip) : &none;
}

/* ---- the member table ----------------------------------------------------------- */

static int fill_self(moor_cl_t *cl, moor_member_entry_t *e, uint64_t incarnation)
{
    const moor_config_t *cfg = cl->cfg;
    size_t idlen = strlen(cfg->node);

    memset(e, 0, sizeof(*e));
    if (idlen == 0 || idlen > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EINVAL, "cluster: node id of %zu bytes (1..%d)", idlen,
                         MOOR_RING_ID_MAX);
    e->m.idlen = (uint8_t)idlen;
    memcpy(e->m.id, cfg->node, idlen);
    snprintf(e->m.addr, sizeof(e->m.addr), "%s", cl->self_addr);
    snprintf(e->m.zone, sizeof(e->m.zone), "%s", cfg->zone);
    e->m.vnodes = cfg->vnodes ? cfg->vnodes : 64;
    e->m.status = MOOR_MEMBER_UP;
    e->incarnation = incarnation;
    return 0;
}

static void maybe_done(moor_cl_t *cl);
static void persist_start(moor_cl_t *cl);

/* Threadpool side: only path and mem_saving are read, mem_rc written. */
static void persist_work_cb(uv_work_t *w)
{
    moor_cl_t *cl = w->data;

    cl->mem_rc = moor_file_replace(cl->path, cl->mem_saving.data, cl->mem_saving.len);
}

static void persist_after_cb(uv_work_t *w, int status)
{
    moor_cl_t *cl = w->data;
    int rc = status ? status : cl->mem_rc;

    if (rc)
        moor_log_warn("cannot save the member table: %s (it is rebuilt from the seeds)",
                      moor_diag_msg(rc));
    cl->mem_busy = 0;
    cl->handles_open--;
    persist_start(cl); /* a newer table came meanwhile: its turn */
    if (cl->closing)
        maybe_done(cl);
}

/* Writes the newest encoded table, unless a write is on its way (its
 * completion starts the next one): changes in a burst cost one write. */
static void persist_start(moor_cl_t *cl)
{
    moor_buf_t t;

    if (cl->mem_busy || cl->mem_next.len == 0)
        return;
    t = cl->mem_saving;
    cl->mem_saving = cl->mem_next;
    cl->mem_next = t;
    moor_buf_reset(&cl->mem_next);
    cl->mem_work.data = cl;
    if (uv_queue_work(cl->loop, &cl->mem_work, persist_work_cb, persist_after_cb) == 0) {
        cl->mem_busy = 1;
        cl->handles_open++; /* the cluster is freed only after the write */
    }
}

/* data_dir/MEMBERS: magic, u32 crc32c (little-endian) of the table, the
 * encoded table.  Encoded here, replaced atomically (moor_file_replace)
 * on the threadpool, so the loop never waits for the fsync however often
 * the detector changes a status. */
static void persist(moor_cl_t *cl, const moor_members_t *t)
{
    moor_buf_t *b = &cl->mem_next;
    uint32_t crc;

    moor_buf_reset(b);
    if (moor_buf_append(b, MEMBERS_MAGIC, 8) || moor_buf_append(b, "\0\0\0\0", 4) ||
        moor_members_encode(t, b)) {
        moor_buf_reset(b);
        moor_log_warn("cannot save the member table: no memory to encode it");
        return;
    }
    crc = moor_crc32c(b->data + 12, b->len - 12);
    for (int i = 0; i < 4; i++)
        b->data[8 + i] = (char)(unsigned char)(crc >> (8 * i));
    persist_start(cl);
}

/* The table saved last run, merged into saved; a missing file is fine,
 * a damaged one is logged and ignored. */
static void load_saved(moor_cl_t *cl, moor_members_t *saved)
{
    FILE *f = fopen(cl->path, "rb");
    moor_buf_t b = MOOR_BUF_INIT;
    moor_members_t t;
    char chunk[4096];
    size_t n;
    const char *p;
    uint32_t crc = 0;

    if (!f)
        return;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (moor_buf_append(&b, chunk, n))
            break;
    fclose(f);
    if (b.len < 12 || memcmp(b.data, MEMBERS_MAGIC, 8) != 0)
        goto bad;
    for (int i = 3; i >= 0; i--)
        crc = crc << 8 | (unsigned char)b.data[8 + i];
    if (crc != moor_crc32c(b.data + 12, b.len - 12))
        goto bad;
    p = b.data + 12;
    if (moor_members_decode(&p, b.data + b.len, &t))
        goto bad;
    moor_members_merge(saved, &t);
    moor_members_free(&t);
    moor_buf_free(&b);
    return;
bad:
    moor_log_warn("%s is damaged; ignoring it (the table is rebuilt from the seeds)", cl->path);
    moor_buf_free(&b);
}

/* gossip's table changed (a member, an address, a status): a new ring
 * for the coordinator, addresses for the pool, the saved copy. */
static void table_changed(void *ud, const moor_members_t *t)
{
    moor_cl_t *cl = ud;
    moor_ring_t *ring = NULL;
    uint32_t moving = 0;
    int rc;

    for (uint32_t i = 0; i < t->n; i++) {
        const moor_member_t *m = &t->e[i].m;
        if (m->idlen == strlen(cl->cfg->node) && memcmp(m->id, cl->cfg->node, m->idlen) == 0)
            continue;
        if (moor_peer_pool_set_addr(cl->pool, m->id, m->idlen, m->addr) ||
            (cl->bulk && moor_peer_pool_set_addr(cl->bulk, m->id, m->idlen, m->addr)))
            moor_log_warn("member '%.*s' has an unusable address '%s': %s", (int)m->idlen, m->id,
                          m->addr, moor_diag_msg(MOOR_EINVAL));
    }
    {
        /* writes to ranges in motion also go to their owners to be */
        moor_ring_t *pend[MOOR_COORD_PENDING_MAX];
        if (moor_xfer_pending_rings(t, pend, MOOR_COORD_PENDING_MAX, &moving) == 0) {
            moor_coord_set_pending(cl->coord, pend, moving);
            for (uint32_t i = 0; i < moving; i++)
                moor_ring_free(pend[i]);
        }
    }
    if (cl->xfer)
        moor_xfer_set_members(cl->xfer, t);
    if ((rc = moor_members_ring(t, &ring)) == 0) {
        moor_coord_set_ring(cl->coord, ring);
        /* the trees follow the ring once a join or leave is over, not at
         * each of its steps (every step would start a tree build) */
        if (cl->aae && moving == 0)
            moor_aae_set_ring(cl->aae, ring);
        moor_ring_free(cl->ring);
        cl->ring = ring;
    } else {
        moor_log_error("cannot build the ring: %s", moor_diag_msg(rc));
    }
    moor_log_debug("member table: %u members (version %llu)", t->n, (unsigned long long)t->version);
    persist(cl, t);
}

static int is_self(const moor_cl_t *cl, const char *id, size_t idlen)
{
    return idlen == strlen(cl->cfg->node) && memcmp(id, cl->cfg->node, idlen) == 0;
}

/* Hint replay follows the failure detector: to an owner that is `up` it
 * runs (moor_hints_owner_up only schedules, so calling it from inside
 * gossip is safe), to one that is down or gone it pauses; `suspect` and
 * the others leave it as it is. */
static void hints_follow(moor_cl_t *cl, const char *id, size_t idlen, int status)
{
    if (!cl->hints || is_self(cl, id, idlen))
        return;
    if (status == MOOR_MEMBER_UP)
        moor_hints_owner_up(cl->hints, id, idlen);
    else if (status == MOOR_MEMBER_DOWN || status == MOOR_MEMBER_LEFT)
        moor_hints_owner_down(cl->hints, id, idlen);
}

/* A hint dropped over its bounds (hints.window_s / hints.max_mb): the
 * owner misses that write until a repair.  Logged, and appended to
 * data_dir/REPAIR_OWED as "owner<TAB>space<TAB>key in hex" so the
 * anti-entropy repair knows which keys of which owner to repair first. */
static void hint_dropped(void *ud, const char *owner, size_t olen, const char *space, size_t slen,
                         const char *key, size_t klen)
{
    moor_cl_t *cl = ud;
    FILE *f = cl->owed ? cl->owed : (cl->owed = fopen(cl->owed_path, "a"));

    moor_log_warn("hints: dropped a write of space '%.*s' for '%.*s' (over hints.window_s or "
                  "hints.max_mb); it reaches that node only by a repair",
                  (int)(slen > 64 ? 64 : slen), space, (int)olen, owner);
    if (!f) {
        moor_log_warn("cannot record the dropped hint in %s: %s", cl->owed_path, strerror(errno));
        return;
    }
    fprintf(f, "%.*s\t%.*s\t", (int)olen, owner, (int)slen, space);
    for (size_t i = 0; i < klen; i++)
        fprintf(f, "%02x", (unsigned char)key[i]);
    fputc('\n', f);
    fflush(f); /* a burst of drops costs one write each, never an open */
}

/* coord hint_put: a `_put` with fallback_for, kept as a hint. */
static int hint_put(void *ud, const char *owner, size_t olen, const char *space, size_t slen,
                    const char *key, size_t klen, const char *rec, size_t rlen,
                    moor_store_done_fn done, void *arg)
{
    return moor_hints_add(ud, owner, olen, space, slen, key, klen, rec, rlen, done, arg);
}

static void due_timer_cb(uv_timer_t *t);

static void member_status(void *ud, const char *id, size_t idlen, int old, int status)
{
    moor_cl_t *cl = ud;

    if (old < 0)
        moor_log_info("member '%.*s' joined (%s)", (int)idlen, id, moor_member_status_name(status));
    else
        moor_log_info("member '%.*s' is %s (was %s)", (int)idlen, id,
                      moor_member_status_name(status), moor_member_status_name(old));
    hints_follow(cl, id, idlen, status);
    if (status == MOOR_MEMBER_LEFT && old >= 0 && old != MOOR_MEMBER_LEFT && cl->gossip &&
        !is_self(cl, id, idlen)) {
        const moor_member_entry_t *e = moor_members_find(moor_gossip_table(cl->gossip), id, idlen);
        if (e && e->m.inactive < e->m.vnodes) {
            /* removed, not handed off: the ranges it held are rebuilt from
             * the other replicas by a repair of every range here */
            snprintf(cl->repair_why, sizeof(cl->repair_why), "member '%.*s' was removed",
                     (int)idlen, id);
            moor_log_warn("member '%.*s' was removed: repairing the ranges it replicated",
                          (int)idlen, id);
            if (!cl->closing)
                uv_timer_start(&cl->due_timer, due_timer_cb, 3000, 30000);
        }
    }
    if (cl->on_status)
        cl->on_status(cl->status_ud, id, idlen, old, status);
}

static void gossip_log(void *ud, int level, const char *msg)
{
    (void)ud;
    moor_log(level == 0   ? MOOR_LOG_DEBUG
             : level == 1 ? MOOR_LOG_INFO
             : level == 2 ? MOOR_LOG_WARN
                          : MOOR_LOG_ERROR,
             "%s", msg);
}

/* ---- the hybrid logical clock's high-water mark ---------------------------------------- */

/* The HLC mark's renewal finished (hlc.h): the close may go on. */
static void hlc_settled(void *ud)
{
    moor_cl_t *cl = ud;

    cl->handles_open--;
    if (cl->closing)
        maybe_done(cl);
}

static void hlc_reserve(moor_cl_t *cl, int sync)
{
    if (moor_hlc_mark_reserve(&cl->hlc, moor_coord_hlc(cl->coord), sync))
        cl->handles_open++; /* the cluster is freed only after the write */
}

/* ---- peer methods ------------------------------------------------------------------- */

/* The one place this file answers a peer: status 0 with the result, or a
 * code mapped to the wire's error names. */
static void answer(moor_coord_done_fn done, void *arg, int status, const char *res, size_t rlen)
{
    if (status == 0)
        done(arg, 0, NULL, res, rlen);
    else
        done(arg, status, moor_diag_msg(status), NULL, 0);
}

typedef struct pending {
    moor_coord_done_fn done;
    void *arg;
} pending_t;

static void gossip_answered(void *arg, int status, const char *res, size_t rlen)
{
    pending_t *pd = arg;

    answer(pd->done, pd->arg, status, res, rlen);
    free(pd);
}

void moor_cl_handle_peer(moor_cl_t *cl, const char *method, size_t mlen, const char *params,
                         size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    pending_t *pd;

    if (moor_xfer_is_method(method, mlen)) {
        if (cl->closing || !cl->xfer)
            answer(done, arg, MOOR_ECLOSED, NULL, 0);
        else
            moor_xfer_handle(cl->xfer, method, mlen, params, plen, nparams, done, arg);
        return;
    }
    if (moor_load_is_method(method, mlen)) {
        if (cl->closing || !cl->load)
            answer(done, arg, MOOR_ECLOSED, NULL, 0);
        else
            moor_load_handle(cl->load, method, mlen, params, plen, nparams, done, arg);
        return;
    }
    if (moor_aae_is_method(method, mlen)) {
        if (cl->closing || !cl->aae)
            answer(done, arg, MOOR_ECLOSED, NULL, 0);
        else
            moor_aae_handle(cl->aae, method, mlen, params, plen, nparams, done, arg);
        return;
    }
    if (!moor_gossip_is_method(method, mlen)) {
        moor_coord_handle_peer(cl->coord, method, mlen, params, plen, nparams, done, arg);
        return;
    }
    if (cl->closing || !cl->gossip) {
        answer(done, arg, MOOR_ECLOSED, NULL, 0);
        return;
    }
    if (!(pd = malloc(sizeof(*pd)))) {
        answer(done, arg, MOOR_ENOMEM, NULL, 0);
        return;
    }
    pd->done = done;
    pd->arg = arg;
    moor_gossip_handle(cl->gossip, method, mlen, params, plen, nparams, gossip_answered, pd);
}

/* ---- reporting ---------------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    pack_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void pack_bool(msgpack_packer *pk, const char *k, int v)
{
    pack_str(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

int moor_cl_pack_ring(const moor_cl_t *cl, msgpack_packer *pk)
{
    size_t selflen = strlen(cl->cfg->node);
    moor_peer_stats_t ps;
    const char *link;
    int rc = 0;

    rc |= msgpack_pack_map(pk, 4);
    pack_str(pk, "node");
    pack_str(pk, cl->cfg->node);
    pack_str(pk, "cluster");
    rc |= msgpack_pack_true(pk);
    pack_u64(pk, "version", table_of(cl)->version);
    pack_str(pk, "nodes");
    rc |= msgpack_pack_array(pk, table_of(cl)->n);
    for (uint32_t i = 0; i < table_of(cl)->n; i++) {
        const moor_member_entry_t *e = &table_of(cl)->e[i];
        int idx = cl->ring ? moor_ring_find(cl->ring, e->m.id, e->m.idlen) : -1;
        rc |= msgpack_pack_map(pk, 9);
        pack_str(pk, "id");
        rc |= msgpack_pack_str_with_body(pk, e->m.id, e->m.idlen);
        pack_str(pk, "addr");
        pack_str(pk, e->m.addr);
        pack_str(pk, "zone");
        pack_str(pk, e->m.zone);
        pack_str(pk, "status");
        pack_str(pk, moor_member_status_name(e->m.status));
        pack_u64(pk, "vnodes", e->m.vnodes);
        pack_u64(pk, "incarnation", e->incarnation);
        pack_str(pk, "share");
        rc |= msgpack_pack_double(pk,
                                  idx >= 0 ? moor_ring_owned_share(cl->ring, (uint32_t)idx) : 0.0);
        pack_str(pk, "self");
        if (e->m.idlen == selflen && memcmp(e->m.id, cl->cfg->node, selflen) == 0) {
            rc |= msgpack_pack_true(pk);
            link = "self";
        } else {
            rc |= msgpack_pack_false(pk);
            link = moor_peer_pool_stats(cl->pool, e->m.id, e->m.idlen, &ps) != 0 ? "unknown"
                   : ps.down                                                     ? "down"
                   : ps.connected                                                ? "connected"
                                                                                 : "idle";
        }
        pack_str(pk, "link");
        pack_str(pk, link);
    }
    return rc ? MOOR_ENOMEM : 0;
}

/* "peers": the connection of every other member: {id: {connected, down,
 * inflight, requests, errors, timeouts, connect_failures, reconnects,
 * replies, latency_us}} (latency_us: the sum of the answered requests'
 * round trips). */
static int pack_peers(const moor_cl_t *cl, msgpack_packer *pk)
{
    size_t selflen = strlen(cl->cfg->node);
    uint32_t n = 0;
    moor_peer_stats_t ps;

    for (uint32_t i = 0; i < table_of(cl)->n; i++) {
        const moor_member_t *m = &table_of(cl)->e[i].m;
        n += !(m->idlen == selflen && memcmp(m->id, cl->cfg->node, selflen) == 0) &&
             moor_peer_pool_stats(cl->pool, m->id, m->idlen, &ps) == 0;
    }
    pack_str(pk, "peers");
    msgpack_pack_map(pk, n);
    for (uint32_t i = 0; i < table_of(cl)->n; i++) {
        const moor_member_t *m = &table_of(cl)->e[i].m;
        if ((m->idlen == selflen && memcmp(m->id, cl->cfg->node, selflen) == 0) ||
            moor_peer_pool_stats(cl->pool, m->id, m->idlen, &ps) != 0)
            continue;
        msgpack_pack_str_with_body(pk, m->id, m->idlen);
        msgpack_pack_map(pk, 10);
        pack_u64(pk, "replies", ps.replies);
        pack_u64(pk, "latency_us", ps.latency_us);
        pack_str(pk, "connected");
        ps.connected ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        pack_str(pk, "down");
        ps.down ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        pack_u64(pk, "inflight", ps.inflight);
        pack_u64(pk, "requests", ps.requests);
        pack_u64(pk, "errors", ps.errors);
        pack_u64(pk, "timeouts", ps.timeouts);
        pack_u64(pk, "connect_failures", ps.connect_failures);
        if (msgpack_pack_str_with_body(pk, "reconnects", 10) ||
            msgpack_pack_uint64(pk, ps.reconnects))
            return MOOR_ENOMEM;
    }
    return 0;
}

/* "gossip": the failure detector's figures (README, info). */
static void pack_gossip(const moor_cl_t *cl, msgpack_packer *pk)
{
    moor_gossip_stats_t gs;

    moor_gossip_stats(cl->gossip, &gs);
    pack_str(pk, "gossip");
    msgpack_pack_map(pk, 13);
    pack_u64(pk, "probes", gs.probes);
    pack_u64(pk, "probe_failures", gs.probe_failures);
    pack_u64(pk, "indirect_probes", gs.indirect_probes);
    pack_u64(pk, "suspicions", gs.suspicions);
    pack_u64(pk, "refutations", gs.refutations);
    pack_u64(pk, "declared_down", gs.declared_down);
    pack_u64(pk, "local_health", gs.local_health);
    pack_u64(pk, "queued_updates", gs.queued);
    pack_u64(pk, "joins_sent", gs.joins_sent);
    pack_u64(pk, "joins_answered", gs.joins_answered);
    pack_u64(pk, "syncs", gs.syncs);
    pack_u64(pk, "messages_in", gs.messages_in);
    pack_str(pk, "members");
    msgpack_pack_map(pk, MOOR_MEMBER_STATUS_COUNT);
    for (int i = 0; i < MOOR_MEMBER_STATUS_COUNT; i++)
        pack_u64(pk, moor_member_status_name(i), gs.by_status[i]);
}

int moor_cl_pack_repair(const moor_cl_t *cl, msgpack_packer *pk)
{
    moor_aae_stats_t st;

    memset(&st, 0, sizeof(st));
    if (cl->aae)
        moor_aae_stats(cl->aae, &st);
    msgpack_pack_map(pk, 18);
    pack_bool(pk, "running", st.running);
    pack_u64(pk, "ranges_total", st.ranges_total);
    pack_u64(pk, "ranges_done", st.ranges_done);
    pack_u64(pk, "ranges_incomplete", st.ranges_incomplete);
    pack_u64(pk, "exchanges", st.exchanges);
    pack_u64(pk, "exchange_failures", st.exchange_failures);
    pack_u64(pk, "keys_compared", st.keys_compared);
    pack_u64(pk, "keys_repaired", st.keys_repaired);
    pack_u64(pk, "bytes_sent", st.bytes_sent);
    pack_u64(pk, "bytes_received", st.bytes_received);
    pack_u64(pk, "tombstones_reaped", st.tombstones_reaped);
    pack_u64(pk, "passes", st.passes);
    pack_str(pk, "last_full_pass_s");
    msgpack_pack_double(pk, st.last_full_pass_s);
    pack_u64(pk, "last_full_pass_ms", st.last_full_pass_ms);
    pack_u64(pk, "trees", st.trees);
    pack_bool(pk, "trees_ready", st.trees_ready);
    pack_u64(pk, "build_keys", st.build_keys);
    pack_str(pk, "build_s");
    msgpack_pack_double(pk, st.build_s);
    return 0;
}

int moor_cl_repair(moor_cl_t *cl, const char *space, size_t slen, const uint64_t *ranges,
                   uint32_t nranges, int stop, int restart)
{
    if (!cl->aae || cl->closing)
        return moor_diag(MOOR_ECLOSED, "shutting down");
    if (stop) {
        moor_aae_repair_stop(cl->aae);
        return 0;
    }
    return moor_aae_repair(cl->aae, space, slen, ranges, nranges, restart);
}

int moor_cl_pack_hints(const moor_cl_t *cl, moor_buf_t *out)
{
    moor_hints_stats_t st = {0};

    if (cl->hints)
        moor_hints_stats(cl->hints, &st);
    return moor_hints_stats_pack(&st, out);
}

void moor_cl_coord_stats(const moor_cl_t *cl, moor_coord_stats_t *out)
{
    moor_coord_stats(cl->coord, out);
}

int moor_cl_pack_info(const moor_cl_t *cl, msgpack_packer *pk)
{
    const moor_members_t *t = table_of(cl);
    uint32_t up = 0;

    for (uint32_t i = 0; i < t->n; i++)
        up += t->e[i].m.status == MOOR_MEMBER_UP;
    msgpack_pack_map(pk, cl->repair_why[0] ? 8 : 7);
    pack_str(pk, "needs_repair");
    cl->repair_why[0] ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    if (cl->repair_why[0]) {
        pack_str(pk, "repair_reason");
        pack_str(pk, cl->repair_why);
    }
    pack_u64(pk, "members", t->n);
    pack_u64(pk, "members_up", up);
    pack_u64(pk, "ring_version", t->version);
    pack_gossip(cl, pk);
    pack_str(pk, "coordinator");
    moor_coord_pack_stats(cl->coord, pk);
    return pack_peers(cl, pk);
}

/* ---- life cycle ------------------------------------------------------------------- */

/* Whether "host:port" (or "[v6]:port") names the address ip (numeric;
 * both parsed, so spellings of one IPv6 address match). */
static int addr_has_ip(const char *addr, const char *ip)
{
    char host[MOOR_RING_ADDR_MAX];
    unsigned char a[16], b[16];
    const char *colon = strrchr(addr, ':');
    size_t n;
    int fam;

    if (!colon)
        return 0;
    n = (size_t)(colon - addr);
    if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']')
        addr++, n -= 2;
    if (n >= sizeof(host))
        return 0;
    memcpy(host, addr, n);
    host[n] = '\0';
    fam = strchr(host, ':') ? AF_INET6 : AF_INET;
    return inet_pton(fam, host, a) == 1 && inet_pton(fam, ip, b) == 1 &&
           memcmp(a, b, fam == AF_INET ? 4 : 16) == 0;
}

int moor_cl_member_ip(const moor_cl_t *cl, const char *ip)
{
    for (uint32_t i = 0; i < table_of(cl)->n; i++)
        if (addr_has_ip(table_of(cl)->e[i].m.addr, ip))
            return 1;
    for (unsigned i = 0; i < cl->nseeds; i++)
        if (addr_has_ip(cl->seeds[i].addr, ip))
            return 1;
    return 0;
}

const moor_members_t *moor_cl_members(const moor_cl_t *cl)
{
    return table_of(cl);
}

struct moor_load *moor_cl_load(moor_cl_t *cl)
{
    return cl->load;
}

/* The load table's peers: every member not left or down. */
static size_t load_members(void *ud, const char **ids, size_t *lens, size_t max)
{
    const moor_members_t *t = table_of(ud);
    size_t k = 0;

    for (uint32_t i = 0; i < t->n && k < max; i++)
        if (t->e[i].m.status != MOOR_MEMBER_LEFT && t->e[i].m.status != MOOR_MEMBER_DOWN) {
            ids[k] = t->e[i].m.id;
            lens[k++] = t->e[i].m.idlen;
        }
    return k;
}

static int start_load(moor_cl_t *cl)
{
    moor_load_opts_t lo;

    memset(&lo, 0, sizeof(lo));
    lo.node_id = cl->cfg->node;
    lo.idlen = strlen(cl->cfg->node);
    lo.clock = moor_uvenv_clock(cl->env);
    lo.transport = moor_peer_pool_transport(cl->pool);
    lo.members = load_members;
    lo.members_ud = cl;
    lo.seed = moor_hash_token(cl->cfg->node, lo.idlen) ^ moor_clock_wall_ms();
    return moor_load_new(&lo, &cl->load);
}

moor_coord_t *moor_cl_coord(moor_cl_t *cl)
{
    return cl->coord;
}

static int setup_seeds(moor_cl_t *cl)
{
    const moor_config_t *cfg = cl->cfg;

    cl->nseeds = cfg->nseeds;
    if (!(cl->seeds = calloc(cfg->nseeds ? cfg->nseeds : 1, sizeof(seed_t))))
        return MOOR_ENOMEM;
    for (unsigned i = 0; i < cfg->nseeds; i++) {
        seed_t *sd = &cl->seeds[i];
        int rc;
        snprintf(sd->addr, sizeof(sd->addr), "%s", cfg->seeds[i]);
        snprintf(sd->pid, sizeof(sd->pid), SEED_PREFIX "%s", sd->addr);
        sd->self = strcmp(sd->addr, cl->self_addr) == 0;
        if (!sd->self &&
            (rc = moor_peer_pool_set_addr(cl->pool, sd->pid, strlen(sd->pid), sd->addr)))
            return moor_diag_wrap(rc, rc, "seeds[%u] '%s'", i + 1, sd->addr);
    }
    return 0;
}

static void free_cl(moor_cl_t *cl)
{
    if (cl->owed)
        fclose(cl->owed);
    moor_buf_free(&cl->mem_next);
    moor_buf_free(&cl->mem_saving);
    moor_gossip_free(cl->gossip);
    moor_ring_free(cl->ring);
    free(cl->seeds);
    free(cl);
}

/* coord check_key: a peer may only touch declared spaces and keys a
 * client could have written. */
static int check_peer_key(void *ud, const char *space, size_t slen, const char *key, size_t klen)
{
    const moor_config_t *cfg = ud;

    if (!moor_config_space(cfg, space, slen))
        return moor_diag(MOOR_EINVAL, "unknown space '%.*s'", (int)(slen > 64 ? 64 : slen), space);
    if (klen == 0 || klen > cfg->key_max)
        return moor_diag(MOOR_EKEYTOOBIG, "key of %zu bytes is not within 1..%zu", klen,
                         cfg->key_max);
    return 0;
}

/* data_dir/REPAIR: the reason this node needs a repair, as text, written
 * by the node when its engine's recovery skipped damage (node.c
 * mark_repair) and left until a repair clears it. */
static void repair_mark(moor_cl_t *cl)
{
    FILE *f;
    size_t n;

    if ((f = fopen(cl->repair_path, "rb"))) {
        n = fread(cl->repair_why, 1, sizeof(cl->repair_why) - 1, f);
        cl->repair_why[n] = '\0';
        if (!cl->repair_why[0])
            snprintf(cl->repair_why, sizeof(cl->repair_why), "marked by an earlier run");
        fclose(f);
    }
    if (cl->repair_why[0])
        moor_log_error("cluster: this node needs a repair from its replicas (%s); it starts "
                       "one once the cluster is reachable, and read repair restores keys as "
                       "they are read until then",
                       cl->repair_why);
}

/* aae repaired: every range was exchanged with every owner, so the writes
 * a damaged log or a dropped hint lost are back: the marks go. */
static void repaired(void *ud)
{
    moor_cl_t *cl = ud;

    if (cl->owed) {
        fclose(cl->owed);
        cl->owed = NULL;
    }
    if ((unlink(cl->owed_path) && errno != ENOENT) ||
        (unlink(cl->repair_path) && errno != ENOENT)) {
        moor_log_warn("cluster: repair done, but its mark cannot be removed: %s", strerror(errno));
        return;
    }
    if (cl->repair_why[0])
        moor_log_info("cluster: repaired from the replicas; the repair mark (%s) is cleared",
                      cl->repair_why);
    cl->repair_why[0] = '\0';
}

/* A REPAIR mark (or hints owed to this node's peers) and no repair
 * running: start one (a stopped or unfinished one resumes). */
static void due_timer_cb(uv_timer_t *t)
{
    moor_cl_t *cl = t->data;
    moor_aae_stats_t st;

    if (cl->closing || !cl->aae || !cl->repair_why[0])
        return;
    moor_aae_stats(cl->aae, &st);
    if (!st.running && st.trees_ready && st.trees &&
        moor_aae_repair(cl->aae, NULL, 0, NULL, 0, 0) == 0)
        moor_log_info("cluster: repair started for the mark (%s)", cl->repair_why);
}

/* coord on_write: the trees follow every record this node stores. */
static void aae_note(void *ud, const char *key, size_t klen, const char *old, size_t oldlen,
                     const char *rec, size_t rlen)
{
    moor_cl_t *cl = ud;

    moor_aae_note(cl->aae, key, klen, old, oldlen, rec, rlen);
}

/* aae merge_local: a peer's record through the coordinator's checked
 * merge (which calls aae_note). */
static int aae_merge(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                     moor_store_done_fn done, void *arg)
{
    moor_cl_t *cl = ud;

    if (!cl->coord)
        return MOOR_ECLOSED;
    return moor_coord_merge_peer_record(cl->coord, key, klen, rec, rlen, done, arg);
}

/* The anti-entropy instance over every declared space, its trees loaded
 * (or built once the ring comes). */
static int start_aae(moor_cl_t *cl, const moor_store_if_t *store)
{
    const moor_config_t *cfg = cl->cfg;
    moor_aae_space_t sp[MOOR_CFG_MAX_SPACES];
    moor_aae_opts_t ao;
    int rc;

    memset(&ao, 0, sizeof(ao));
    for (unsigned i = 0; i < cfg->nspaces; i++) {
        const moor_space_cfg_t *s = &cfg->spaces[i];
        uint32_t n, r, w;
        moor_config_levels(cfg, s, &n, &r, &w);
        sp[i].name = s->name;
        sp[i].nlen = strlen(s->name);
        sp[i].n = n;
        sp[i].grace_ms = (s->grace_s >= 0 ? (uint64_t)s->grace_s : cfg->tombstone_grace_s) * 1000;
    }
    ao.node_id = cfg->node;
    ao.idlen = strlen(cfg->node);
    ao.clock = moor_uvenv_clock(cl->env);
    ao.transport = moor_peer_pool_transport(cl->pool);
    ao.store = *store;
    ao.merge_local = aae_merge;
    ao.merge_ud = cl;
    ao.repaired = repaired;
    ao.repaired_ud = cl;
    ao.spaces = sp;
    ao.nspaces = cfg->nspaces;
    ao.interval_s = cfg->ae_interval_s;
    ao.rate_kb_s = cfg->ae_rate_kb_s;
    ao.build_kb_s = cfg->ae_build_kb_s;
    ao.concurrency = cfg->ae_concurrency;
    ao.timeout_ms = cfg->request_timeout_ms > 5000 ? cfg->request_timeout_ms : 5000;
    if ((rc = moor_aae_new(&ao, &cl->aae)))
        return rc;
    if ((rc = moor_aae_load(cl->aae)))
        moor_log_warn("anti-entropy: the saved trees cannot be read (%s); they are rebuilt",
                      moor_diag_msg(rc));
    return 0;
}

/* xfer publish: this node's status and tokens in motion, through gossip. */
static int xfer_publish(void *ud, int status, uint32_t inactive)
{
    moor_cl_t *cl = ud;

    if (!cl->gossip)
        return MOOR_ECLOSED;
    if (status == MOOR_MEMBER_UP && inactive == 0)
        moor_log_info("cluster: this node owns all its tokens: up");
    if (status == MOOR_MEMBER_LEFT)
        moor_log_info("cluster: this node has left the cluster: every range it held was handed "
                      "off; it serves nothing now and can be shut down");
    return moor_gossip_set_self(cl->gossip, status, inactive);
}

/* The transfer service over every declared space, on its own peer pool,
 * and the move a restart interrupted. */
static int start_xfer(moor_cl_t *cl, const moor_store_if_t *store, const moor_peer_opts_t *po)
{
    const moor_config_t *cfg = cl->cfg;
    moor_xfer_space_t sp[MOOR_CFG_MAX_SPACES];
    moor_xfer_opts_t xo;
    int rc;

    if ((rc = moor_peer_pool_new(cl->loop, po, &cl->bulk)))
        return rc;
    memset(&xo, 0, sizeof(xo));
    for (unsigned i = 0; i < cfg->nspaces; i++) {
        uint32_t n, r, w;
        moor_config_levels(cfg, &cfg->spaces[i], &n, &r, &w);
        sp[i].name = cfg->spaces[i].name;
        sp[i].nlen = strlen(cfg->spaces[i].name);
        sp[i].n = n;
    }
    xo.node_id = cfg->node;
    xo.idlen = strlen(cfg->node);
    xo.clock = moor_uvenv_clock(cl->env);
    xo.transport = moor_peer_pool_transport(cl->bulk);
    xo.store = *store;
    xo.merge = aae_merge;
    xo.merge_ud = cl;
    xo.spaces = sp;
    xo.nspaces = cfg->nspaces;
    moor_xfer_params_default(&xo.p);
    xo.p.rate_kb_s = cfg->xfer_rate_kb_s;
    xo.p.concurrency = cfg->xfer_concurrency;
    xo.p.settle_ms = cfg->xfer_settle_ms;
    xo.p.cleanup_ms = cfg->xfer_cleanup_s * 1000;
    xo.p.timeout_ms = cfg->request_timeout_ms > 10000 ? cfg->request_timeout_ms : 10000;
    xo.publish = xfer_publish;
    xo.log = gossip_log;
    xo.ud = cl;
    if ((rc = moor_xfer_new(&xo, &cl->xfer)))
        return rc;
    if ((rc = moor_xfer_load(cl->xfer, &cl->xfer_state0, &cl->xfer_inactive0)))
        return moor_diag_wrap(rc, rc, "cluster: the saved transfer progress cannot be read");
    if (cl->xfer_state0 == MOOR_XFER_LEFT)
        return moor_diag(MOOR_EINVAL,
                         "this node left the cluster (its ranges were handed off): a member "
                         "that left does not come back. To join again, wipe %s and start it "
                         "with a new node id",
                         cfg->data_dir);
    return 0;
}

/* A node that was down longer than the shortest tombstone grace may hold
 * values whose deletes the others have since reaped: repair would bring
 * them back.  data_dir/HLC (renewed every second while the node runs,
 * 10 s ahead) tells when it last ran. */
static int check_rejoin(const moor_cl_t *cl, uint64_t hlc_mark)
{
    const moor_config_t *cfg = cl->cfg;
    uint64_t now = moor_clock_wall_ms(), last = hlc_mark / 1000, grace = UINT64_MAX;

    for (unsigned i = 0; i < cfg->nspaces; i++) {
        const moor_space_cfg_t *s = &cfg->spaces[i];
        uint64_t g = s->grace_s >= 0 ? (uint64_t)s->grace_s : cfg->tombstone_grace_s;
        if (g && g * 1000 < grace)
            grace = g * 1000;
    }
    if (!hlc_mark || grace == UINT64_MAX || last + grace >= now)
        return 0;
    if (cfg->force_rejoin) {
        moor_log_warn("cluster: this node was down for %llu s, longer than the tombstone grace "
                      "(%llu s); rejoining as told (--force-rejoin): deletes reaped meanwhile "
                      "may come back",
                      (unsigned long long)((now - last) / 1000),
                      (unsigned long long)(grace / 1000));
        return 0;
    }
    return moor_diag(MOOR_EINVAL,
                     "this node was down for %llu s, longer than the tombstone grace (%llu s): "
                     "its data may bring back deletes the cluster has reaped since. Wipe %s and "
                     "start it again (a repair refills it), or start it with --force-rejoin",
                     (unsigned long long)((now - last) / 1000), (unsigned long long)(grace / 1000),
                     cfg->data_dir);
}

static void hlc_timer_cb(uv_timer_t *t)
{
    moor_cl_t *cl = t->data;

    if (!cl->closing)
        hlc_reserve(cl, 0);
}

/* The gossip instance: this node's entry (incarnation from the wall
 * clock; gossip raises it above the saved one), the saved table, the
 * seeds' pool ids, the libuv clock and the peer pool. */
static int start_gossip(moor_cl_t *cl)
{
    moor_gossip_opts_t go;
    moor_members_t saved;
    const char **sids;
    unsigned n = 0;
    int rc;

    memset(&go, 0, sizeof(go));
    if ((rc = fill_self(cl, &go.self, moor_clock_wall_ms())))
        return rc;
    if (!(sids = calloc(cl->nseeds ? cl->nseeds : 1, sizeof(*sids))))
        return MOOR_ENOMEM;
    for (unsigned i = 0; i < cl->nseeds; i++)
        if (!cl->seeds[i].self)
            sids[n++] = cl->seeds[i].pid;
    moor_members_init(&saved);
    load_saved(cl, &saved);
    if (cl->xfer_state0 == MOOR_XFER_IDLE && saved.n == 0 && n > 0) {
        /* a new member: it owns nothing until its ranges have streamed in */
        cl->xfer_state0 = MOOR_XFER_JOINING;
        cl->xfer_inactive0 = go.self.m.vnodes;
    }
    if (cl->xfer_state0 == MOOR_XFER_JOINING || cl->xfer_state0 == MOOR_XFER_LEAVING) {
        go.self.m.status =
            cl->xfer_state0 == MOOR_XFER_JOINING ? MOOR_MEMBER_JOINING : MOOR_MEMBER_LEAVING;
        go.self.m.inactive =
            cl->xfer_inactive0 > go.self.m.vnodes ? go.self.m.vnodes : cl->xfer_inactive0;
    }
    go.saved = &saved;
    go.seeds = sids;
    go.nseeds = n;
    go.clock = moor_uvenv_clock(cl->env);
    go.transport = moor_peer_pool_transport(cl->pool);
    go.seed = moor_hash_token(cl->cfg->node, strlen(cl->cfg->node)) ^ moor_clock_wall_ms();
    go.p = cl->cfg->gossip;
    go.on_status = member_status;
    go.on_table = table_changed;
    go.log = gossip_log;
    go.ud = cl;
    rc = moor_gossip_new(&go, &cl->gossip);
    moor_members_free(&saved);
    free(sids);
    return rc;
}

int moor_cl_new(const moor_cl_opts_t *o, moor_cl_t **out)
{
    moor_cl_t *cl = calloc(1, sizeof(*cl));
    moor_peer_opts_t po;
    moor_coord_opts_t co;
    moor_hints_opts_t ho;
    char host[MOOR_RING_ADDR_MAX], *colon;
    uint64_t hlc_mark;
    int rc;

    *out = NULL;
    if (!cl)
        return MOOR_ENOMEM;
    cl->loop = o->loop;
    cl->cfg = o->cfg;
    cl->on_status = o->on_status;
    cl->status_ud = o->status_ud;
    snprintf(cl->self_addr, sizeof(cl->self_addr), "%s", o->self_addr);
    snprintf(cl->path, sizeof(cl->path), "%s/MEMBERS", o->cfg->data_dir);
    moor_hlc_mark_init(&cl->hlc, o->loop, o->cfg->data_dir, MOOR_HLC_CLUSTER, hlc_settled, cl);
    snprintf(cl->repair_path, sizeof(cl->repair_path), "%s/REPAIR", o->cfg->data_dir);
    snprintf(cl->owed_path, sizeof(cl->owed_path), "%s/REPAIR_OWED", o->cfg->data_dir);
    repair_mark(cl);

    snprintf(host, sizeof(host), "%s", cl->self_addr);
    if ((colon = strrchr(host, ':')))
        *colon = '\0';
    if (host[0] == '[') { /* [v6]:port */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    moor_peer_opts_default(&po);
    po.self_addr = host;
    po.secret = o->cfg->cluster_secret;
    po.seed = moor_hash_token(o->cfg->node, strlen(o->cfg->node)) ^ moor_clock_wall_ms();
    po.max_frame = o->cfg->max_frame; /* what every member's server takes */
    if ((rc = moor_uvenv_new(o->loop, &cl->env)) ||
        (rc = moor_peer_pool_new(o->loop, &po, &cl->pool)))
        goto fail;
    memset(&ho, 0, sizeof(ho));
    ho.node_id = o->cfg->node;
    ho.idlen = strlen(o->cfg->node);
    ho.clock = moor_uvenv_clock(cl->env);
    ho.transport = moor_peer_pool_transport(cl->pool);
    ho.store = o->store;
    ho.window_ms = (uint64_t)o->cfg->hints_window_s * 1000;
    ho.max_bytes = (uint64_t)o->cfg->hints_max_mb << 20;
    ho.rate_bytes_s = (uint64_t)o->cfg->hints_rate_kb_s * 1024;
    ho.dropped = hint_dropped;
    ho.dropped_ud = cl;
    if ((rc = moor_hints_new(&ho, &cl->hints)))
        goto fail;
    memset(&co, 0, sizeof(co));
    co.hint_put = hint_put;
    co.hint_ud = cl->hints;
    co.node_id = o->cfg->node;
    co.idlen = strlen(o->cfg->node);
    co.clock = moor_uvenv_clock(cl->env);
    co.transport = moor_peer_pool_transport(cl->pool);
    co.store = o->store;
    co.resolve = o->resolve;
    co.resolve_ud = o->resolve_ud;
    co.check_key = check_peer_key;
    co.check_ud = (void *)o->cfg;
    co.timeout_ms = o->cfg->request_timeout_ms;
    co.vc_max_entries = o->cfg->vc_max_entries;
    co.vc_keep_min = o->cfg->vc_keep_min;
    co.vc_max_age_ms = o->cfg->vc_max_age_ms;
    co.on_write = aae_note;
    co.on_write_ud = cl;
    co.siblings = moor_solo_space_siblings;
    co.siblings_ud = (void *)o->cfg;
    hlc_mark = moor_hlc_mark_read(&cl->hlc);
    if ((rc = check_rejoin(cl, hlc_mark)) || (rc = start_aae(cl, &o->store)) ||
        (rc = start_xfer(cl, &o->store, &po)) || (rc = moor_coord_new(&co, &cl->coord)) ||
        (rc = setup_seeds(cl)) || (rc = start_gossip(cl)) || (rc = start_load(cl)))
        goto fail;
    {
        /* the clock starts above what it gave out alone too (solo.c) */
        uint64_t alone = moor_hlc_mark_read_file(o->cfg->data_dir, MOOR_HLC_ALONE);
        moor_coord_hlc_floor(cl->coord,
                             moor_hlc_mark_floor(&cl->hlc, alone > hlc_mark ? alone : hlc_mark));
    }
    hlc_reserve(cl, 1);
    uv_timer_init(o->loop, &cl->hlc_timer);
    cl->hlc_timer.data = cl;
    uv_timer_init(o->loop, &cl->due_timer);
    cl->due_timer.data = cl;
    cl->handles_open += 2; /* the HLC and repair timers; a save may already be on its way */
    table_changed(cl, moor_gossip_table(cl->gossip));
    {
        const moor_members_t *t = moor_gossip_table(cl->gossip);
        for (uint32_t i = 0; i < t->n; i++)
            hints_follow(cl, t->e[i].m.id, t->e[i].m.idlen, t->e[i].m.status);
    }
    *out = cl;
    return 0;
fail:
    moor_load_free(cl->load);
    if (cl->coord)
        moor_coord_free(cl->coord);
    if (cl->aae)
        moor_aae_free(cl->aae);
    if (cl->xfer)
        moor_xfer_free(cl->xfer);
    if (cl->bulk)
        moor_peer_pool_close(cl->bulk, NULL, NULL);
    if (cl->hints)
        moor_hints_free(cl->hints);
    if (cl->pool)
        moor_peer_pool_close(cl->pool, NULL, NULL);
    if (cl->env)
        moor_uvenv_close(cl->env, NULL, NULL);
    free_cl(cl);
    return rc;
}

int moor_cl_reconfigure(moor_cl_t *cl)
{
    int rc = moor_gossip_set_params(cl->gossip, &cl->cfg->gossip);

    if (rc == 0)
        moor_coord_set_timeout(cl->coord, cl->cfg->request_timeout_ms);
    return rc;
}

void moor_cl_start(moor_cl_t *cl)
{
    uv_timer_start(&cl->hlc_timer, hlc_timer_cb, 1000, 1000);
    uv_timer_start(&cl->due_timer, due_timer_cb, 10000, 30000);
    moor_gossip_start(cl->gossip);
    if (cl->xfer_state0 == MOOR_XFER_JOINING || cl->xfer_state0 == MOOR_XFER_LEAVING) {
        const moor_member_entry_t *me = moor_gossip_self(cl->gossip);
        int rc = moor_xfer_start(cl->xfer, cl->xfer_state0, me->m.vnodes, me->m.inactive);
        if (rc)
            moor_log_error("cluster: cannot %s: %s",
                           cl->xfer_state0 == MOOR_XFER_JOINING ? "join" : "go on leaving",
                           moor_diag_msg(rc));
    }
    moor_load_start(cl->load);
}

static void maybe_done(moor_cl_t *cl)
{
    /* the timer is closed only after the pool and env; a renewal of the
     * clock's mark may still be on the threadpool */
    if (cl->handles_open)
        return;
    void (*done)(void *) = cl->close_done;
    void *ud = cl->close_ud;
    free_cl(cl);
    if (done)
        done(ud);
}

static void handle_closed(uv_handle_t *h)
{
    moor_cl_t *cl = h->data;

    cl->handles_open--;
    maybe_done(cl);
}

static void env_closed(void *ud)
{
    moor_cl_t *cl = ud;

    uv_close((uv_handle_t *)&cl->hlc_timer, handle_closed);
    uv_close((uv_handle_t *)&cl->due_timer, handle_closed);
}

/* The trees' clean save is durable: the close may finish. */
static void aae_saved(void *ud, int status)
{
    moor_cl_t *cl = ud;

    (void)status;
    cl->handles_open--;
    maybe_done(cl);
}

static void pool_closed(void *ud)
{
    moor_cl_t *cl = ud;

    moor_uvenv_close(cl->env, env_closed, cl);
}

static void bulk_closed(void *ud)
{
    moor_cl_t *cl = ud;

    moor_peer_pool_close(cl->pool, pool_closed, cl);
}

void moor_cl_close(moor_cl_t *cl, void (*done)(void *ud), void *ud)
{
    cl->closing = 1;
    cl->close_done = done;
    cl->close_ud = ud;
    uv_timer_stop(&cl->hlc_timer);
    uv_timer_stop(&cl->due_timer);
    /* the trees go to the store while it is open; the close waits for it */
    cl->handles_open++;
    moor_aae_save(cl->aae, aae_saved, cl);
    moor_aae_free(cl->aae);
    cl->aae = NULL;
    /* gossip first: its requests in flight are then answered (closed) by
     * the pool into nothing */
    moor_gossip_free(cl->gossip);
    cl->gossip = NULL;
    moor_load_free(cl->load); /* its requests in flight are answered by the pool's close */
    cl->load = NULL;
    moor_coord_free(cl->coord);
    cl->coord = NULL;
    moor_hints_free(cl->hints);
    cl->hints = NULL;
    moor_xfer_free(cl->xfer);
    cl->xfer = NULL;
    moor_peer_pool_close(cl->bulk, bulk_closed, cl);
}

/* ---- joining and leaving ---------------------------------------------------------- */

int moor_cl_leave(moor_cl_t *cl, int cancel)
{
    moor_xfer_stats_t st;

    if (cl->closing || !cl->xfer || !cl->gossip)
        return moor_diag(MOOR_ECLOSED, "shutting down");
    moor_xfer_stats(cl->xfer, &st);
    if (cancel) {
        if (st.state != MOOR_XFER_LEAVING)
            return moor_diag(MOOR_EINVAL, "this node is not leaving (it is %s)",
                             moor_xfer_state_name(st.state));
        return moor_xfer_cancel(cl->xfer);
    }
    if (st.state == MOOR_XFER_LEAVING)
        return 0;
    if (st.state == MOOR_XFER_JOINING)
        return moor_xfer_cancel(cl->xfer); /* a join stops and hands back what it took */
    if (st.state == MOOR_XFER_LEFT)
        return moor_diag(MOOR_EINVAL, "this node has already left the cluster");
    return moor_xfer_start(cl->xfer, MOOR_XFER_LEAVING, moor_gossip_self(cl->gossip)->m.vnodes,
                           moor_gossip_self(cl->gossip)->m.inactive);
}

int moor_cl_remove(moor_cl_t *cl, const char *id, size_t idlen)
{
    const moor_member_entry_t *e;

    if (cl->closing || !cl->gossip)
        return moor_diag(MOOR_ECLOSED, "shutting down");
    e = moor_members_find(moor_gossip_table(cl->gossip), id, idlen);
    if (!e)
        return moor_diag(MOOR_EINVAL, "no member '%.*s'", (int)(idlen > 64 ? 64 : idlen), id);
    if (is_self(cl, id, idlen))
        return moor_diag(MOOR_EINVAL, "a node cannot remove itself: use leave");
    if (e->m.status == MOOR_MEMBER_UP || e->m.status == MOOR_MEMBER_SUSPECT ||
        e->m.status == MOOR_MEMBER_JOINING || e->m.status == MOOR_MEMBER_LEAVING)
        return moor_diag(MOOR_EBUSY,
                         "member '%.*s' is %s, not down: remove takes out a dead node (a live "
                         "one leaves with `moor leave` on it, handing its data off)",
                         (int)idlen, id, moor_member_status_name(e->m.status));
    moor_log_warn("cluster: removing member '%.*s' (was %s); its ranges are rebuilt from the "
                  "other replicas",
                  (int)idlen, id, moor_member_status_name(e->m.status));
    return moor_gossip_remove(cl->gossip, id, idlen);
}

int moor_cl_has_left(const moor_cl_t *cl)
{
    return cl->gossip && moor_gossip_self(cl->gossip)->m.status == MOOR_MEMBER_LEFT;
}

int moor_cl_pack_transfer(const moor_cl_t *cl, msgpack_packer *pk)
{
    if (!cl->xfer) {
        msgpack_pack_nil(pk);
        return 0;
    }
    return moor_xfer_pack_info(cl->xfer, pk);
}

/* transfers: _xfer_status of every member that is not left, gathered. */
typedef struct gather {
    moor_coord_done_fn done;
    void *arg;
    uint32_t n, left;
    struct gone {
        char id[MOOR_RING_ID_MAX];
        uint8_t idlen;
        int status;
        moor_buf_t res;
    } * g;
} gather_t;

typedef struct gslot {
    gather_t *ga;
    uint32_t i;
} gslot_t;

static void gather_end(gather_t *ga)
{
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint32_t ok = 0;

    for (uint32_t i = 0; i < ga->n; i++)
        ok += ga->g[i].status == 0;
    moor_mp_packer_init(&pk, &out);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "nodes");
    msgpack_pack_array(&pk, ok);
    for (uint32_t i = 0; i < ga->n; i++)
        if (ga->g[i].status == 0)
            moor_buf_append(&out, ga->g[i].res.data, ga->g[i].res.len);
    pack_str(&pk, "errors");
    msgpack_pack_array(&pk, ga->n - ok);
    for (uint32_t i = 0; i < ga->n; i++) {
        if (ga->g[i].status == 0)
            continue;
        msgpack_pack_map(&pk, 2);
        pack_str(&pk, "node");
        msgpack_pack_str_with_body(&pk, ga->g[i].id, ga->g[i].idlen);
        pack_str(&pk, "error");
        pack_str(&pk, moor_err_wire(ga->g[i].status));
    }
    ga->done(ga->arg, 0, NULL, out.data, out.len);
    moor_buf_free(&out);
    for (uint32_t i = 0; i < ga->n; i++)
        moor_buf_free(&ga->g[i].res);
    free(ga->g);
    free(ga);
}

static void gather_one(void *arg, int status, const char *res, size_t rlen)
{
    gslot_t *gs = arg;
    gather_t *ga = gs->ga;

    ga->g[gs->i].status = status;
    if (status == 0 && moor_buf_append(&ga->g[gs->i].res, res, rlen))
        ga->g[gs->i].status = MOOR_ENOMEM;
    free(gs);
    if (--ga->left == 0)
        gather_end(ga);
}

static void gather_local(void *arg, int code, const char *msg, const char *res, size_t rlen)
{
    (void)msg;
    gather_one(arg, code, res, rlen);
}

void moor_cl_transfers(moor_cl_t *cl, uint32_t rate_kb_s, uint32_t concurrency,
                       moor_coord_done_fn done, void *arg)
{
    const moor_members_t *t = table_of(cl);
    moor_buf_t params = MOOR_BUF_INIT;
    msgpack_packer pk;
    gather_t *ga;

    if (cl->closing || !cl->xfer) {
        done(arg, MOOR_ECLOSED, "shutting down", NULL, 0);
        return;
    }
    if (!(ga = calloc(1, sizeof(*ga))) || !(ga->g = calloc(t->n ? t->n : 1, sizeof(*ga->g)))) {
        free(ga);
        done(arg, MOOR_ENOMEM, "no memory", NULL, 0);
        return;
    }
    ga->done = done;
    ga->arg = arg;
    moor_mp_packer_init(&pk, &params);
    msgpack_pack_map(&pk, (rate_kb_s ? 1 : 0) + (concurrency ? 1 : 0));
    if (rate_kb_s) {
        pack_str(&pk, "rate_kb_s");
        msgpack_pack_uint32(&pk, rate_kb_s);
    }
    if (concurrency) {
        pack_str(&pk, "concurrency");
        msgpack_pack_uint32(&pk, concurrency);
    }
    for (uint32_t i = 0; i < t->n; i++) {
        const moor_member_t *m = &t->e[i].m;
        if (m->status == MOOR_MEMBER_LEFT)
            continue;
        memcpy(ga->g[ga->n].id, m->id, m->idlen);
        ga->g[ga->n].idlen = m->idlen;
        moor_buf_init(&ga->g[ga->n].res);
        ga->n++;
    }
    ga->left = ga->n + 1; /* + the start guard */
    for (uint32_t i = 0; i < ga->n; i++) {
        gslot_t *gs = malloc(sizeof(*gs));
        int rc;
        if (!gs) {
            ga->g[i].status = MOOR_ENOMEM;
            ga->left--;
            continue;
        }
        gs->ga = ga;
        gs->i = i;
        if (is_self(cl, ga->g[i].id, ga->g[i].idlen)) {
            moor_xfer_handle(cl->xfer, "_xfer_status", 12, params.data, params.len, 1, gather_local,
                             gs);
            continue;
        }
        rc = moor_peer_pool_transport(cl->pool).request(
            moor_peer_pool_transport(cl->pool).ud, ga->g[i].id, ga->g[i].idlen, "_xfer_status",
            params.data, params.len, 1, PEER_TIMEOUT_MS, gather_one, gs);
        if (rc)
            gather_one(gs, rc, NULL, 0);
    }
    moor_buf_free(&params);
    if (--ga->left == 0)
        gather_end(ga);
}
