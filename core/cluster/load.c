/*
 * load.c -- the epidemic load table (load.h).
 *
 * The table is an array sorted by id (members are few: a linear insert is
 * cheap and keeps moor_load_at in a stable order).  A round encodes the
 * table once and sends the same bytes to up to `fanout` distinct random
 * members; every answer is merged as it comes.  Requests in flight hold a
 * reference: moor_load_free only marks the table closed when some are
 * owed, and the last answer frees it.
 *
 * Owned by the thread that drives the cluster (env.h); never blocks.
 */
#include "load.h"

#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/mp.h"

typedef struct entry {
    char id[MOOR_RING_ID_MAX];
    size_t idlen;
    uint64_t seq;
    uint64_t moved_ms; /* local clock when seq last moved */
    char *load;        /* malloc'd map, NULL until published */
    size_t len;
} entry_t;

struct moor_load {
    moor_load_opts_t o;
    char self[MOOR_RING_ID_MAX];
    entry_t *e; /* sorted by id */
    size_t n, cap;
    uint64_t timer; /* 0: none */
    uint64_t rng;
    unsigned inflight; /* requests whose answer is owed */
    int closed;        /* moor_load_free ran: free at inflight == 0 */
    moor_load_stats_t st;
};

static uint64_t now_ms(const moor_load_t *l)
{
    return l->o.clock.now_ms(l->o.clock.ud);
}

static uint64_t rnd(moor_load_t *l)
{
    /* xorshift64*: deterministic from the seed */
    l->rng ^= l->rng >> 12;
    l->rng ^= l->rng << 25;
    l->rng ^= l->rng >> 27;
    return l->rng * 0x2545F4914F6CDD1Dull;
}

static int id_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    return c ? c : (alen > blen) - (alen < blen);
}

/* Index of id, or of where it would go (*found 0). */
static size_t find(const moor_load_t *l, const char *id, size_t idlen, int *found)
{
    size_t lo = 0, hi = l->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = id_cmp(l->e[mid].id, l->e[mid].idlen, id, idlen);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

/* The entry of id, inserted empty when new; NULL on a full table or OOM. */
static entry_t *entry_get(moor_load_t *l, const char *id, size_t idlen)
{
    int found;
    size_t i = find(l, id, idlen, &found);

    if (found)
        return &l->e[i];
    if (l->n >= MOOR_LOAD_MAX_ENTRIES)
        return NULL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        entry_t *e = realloc(l->e, cap * sizeof(*e));
        if (!e)
            return NULL;
        l->e = e;
        l->cap = cap;
    }
    memmove(&l->e[i + 1], &l->e[i], (l->n - i) * sizeof(*l->e));
    l->n++;
    memset(&l->e[i], 0, sizeof(l->e[i]));
    memcpy(l->e[i].id, id, idlen);
    l->e[i].idlen = idlen;
    return &l->e[i];
}

/* Checks that [map, map+len) is exactly one map within the bounds. */
static int check_map(const char *map, size_t len)
{
    const char *p = map;
    uint32_t count;

    if (len == 0 || len > MOOR_LOAD_MAX_BYTES)
        return moor_diag(MOOR_EINVAL, "load: a load map of %zu bytes (1..%u)", len,
                         MOOR_LOAD_MAX_BYTES);
    if (moor_mp_read_map(&p, map + len, &count))
        return moor_diag(MOOR_EINVAL, "load: a load is not a map");
    p = map;
    if (moor_mp_skip(&p, map + len, MOOR_LOAD_MAX_DEPTH) || p != map + len)
        return moor_diag(MOOR_EINVAL, "load: a load map is malformed or nested over %d levels",
                         MOOR_LOAD_MAX_DEPTH);
    return 0;
}

/* Takes seq/load for id when seq is newer.  0, or MOOR_ENOMEM. */
static int merge_one(moor_load_t *l, const char *id, size_t idlen, uint64_t seq, const char *load,
                     size_t len, uint64_t age_ms)
{
    uint64_t now = now_ms(l);
    entry_t *e;
    char *copy;

    if (idlen == 0 || idlen > MOOR_RING_ID_MAX)
        return 0;
    /* Our own entry only ever moves through moor_load_set_local: a newer
     * seq from others would be an older run's, which the clock-based first
     * seq already outranks. */
    if (idlen == l->o.idlen && memcmp(id, l->self, idlen) == 0)
        return 0;
    if (!(e = entry_get(l, id, idlen)))
        return MOOR_ENOMEM;
    if (e->seq >= seq && e->moved_ms)
        return 0;
    if (!(copy = malloc(len ? len : 1)))
        return MOOR_ENOMEM;
    memcpy(copy, load, len);
    free(e->load);
    e->load = copy;
    e->len = len;
    e->seq = seq;
    /* the age travels with the figures: every copy of a silent member's
     * entry grows old together, and one that expired here and comes back
     * from a member that has not dropped it yet expires again at once */
    e->moved_ms = age_ms < now ? now - age_ms : 1;
    if (e->moved_ms == 0)
        e->moved_ms = 1;
    l->st.merged++;
    return 0;
}

static void merge_cb(void *ud, const char *id, size_t idlen, uint64_t seq, const char *load,
                     size_t len, uint64_t age_ms)
{
    (void)merge_one(ud, id, idlen, seq, load, len, age_ms);
}

/* ---- the wire form -------------------------------------------------------------- */

/* One [id, seq, load, age_ms?] of a loads array: checks it and advances
 * *p. */
static int read_entry(const char **p, const char *end, const char **id, uint32_t *idlen,
                      uint64_t *seq, const char **load, size_t *len, uint64_t *age_ms)
{
    uint32_t n;
    const char *s;

    *age_ms = 0;
    if (moor_mp_read_array(p, end, &n) || n < 3 || n > 4)
        return moor_diag(MOOR_EPROTO, "_load: an entry must be [id, seq, load, age_ms?]");
    if (moor_mp_read_strbin(p, end, id, idlen) || *idlen == 0 || *idlen > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EPROTO, "_load: an entry's id must be 1..%d bytes", MOOR_RING_ID_MAX);
    if (moor_mp_read_uint(p, end, seq))
        return moor_diag(MOOR_EPROTO, "_load: an entry's seq must be an unsigned integer");
    s = *p;
    if (moor_mp_skip(p, end, MOOR_LOAD_MAX_DEPTH) || check_map(s, (size_t)(*p - s)))
        return moor_diag(MOOR_EPROTO,
                         "_load: an entry's load must be a map of at most %u bytes, nested at "
                         "most %d levels",
                         MOOR_LOAD_MAX_BYTES, MOOR_LOAD_MAX_DEPTH);
    *load = s;
    *len = (size_t)(*p - s);
    if (n == 4 && (moor_mp_read_uint(p, end, age_ms) || *age_ms > (1ull << 40)))
        return moor_diag(MOOR_EPROTO, "_load: an entry's age_ms must be an unsigned integer");
    return 0;
}

/* The loads array at [p, end): checks every entry, then (fn non-NULL)
 * passes them to fn. */
static int read_loads(const char *p, const char *end, moor_load_entry_fn fn, void *ud)
{
    for (int pass = 0; pass < 2; pass++) {
        const char *q = p;
        uint32_t n;
        if (moor_mp_read_array(&q, end, &n))
            return moor_diag(MOOR_EPROTO, "_load: loads must be an array");
        if (n > MOOR_LOAD_MAX_ENTRIES)
            return moor_diag(MOOR_EPROTO, "_load: %u entries, more than %u", n,
                             MOOR_LOAD_MAX_ENTRIES);
        for (uint32_t i = 0; i < n; i++) {
            const char *id = NULL, *load = NULL;
            uint32_t idlen = 0;
            uint64_t seq = 0, age = 0;
            size_t len = 0;
            int rc = read_entry(&q, end, &id, &idlen, &seq, &load, &len, &age);
            if (rc)
                return rc;
            if (pass == 1)
                fn(ud, id, idlen, seq, load, len, age);
        }
        if (q != end)
            return moor_diag(MOOR_EPROTO, "_load: bytes after the loads array");
        if (!fn)
            break;
    }
    return 0;
}

int moor_load_decode(const char *msg, size_t len, moor_load_entry_fn fn, void *ud,
                     const char **from, size_t *fromlen)
{
    const char *p = msg, *end = msg + len, *loads = NULL, *loads_end = NULL, *f = NULL;
    uint32_t count, flen = 0;

    if (from)
        *from = NULL, *fromlen = 0;
    if (moor_mp_read_map(&p, end, &count))
        return moor_diag(MOOR_EPROTO, "_load: the message must be a map");
    while (count--) {
        const char *k, *v;
        uint32_t klen;
        if (moor_mp_read_str(&p, end, &k, &klen))
            return moor_diag(MOOR_EPROTO, "_load: the map's keys must be str");
        v = p;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return moor_diag(MOOR_EPROTO, "_load: a value is not MessagePack");
        if (klen == 5 && memcmp(k, "loads", 5) == 0) {
            if (loads)
                return moor_diag(MOOR_EPROTO, "_load: loads given twice");
            loads = v;
            loads_end = p;
        } else if (klen == 4 && memcmp(k, "from", 4) == 0) {
            const char *q = v;
            if (f || moor_mp_read_strbin(&q, p, &f, &flen) || flen == 0 || flen > MOOR_RING_ID_MAX)
                return moor_diag(MOOR_EPROTO, "_load: from must be one id of 1..%d bytes",
                                 MOOR_RING_ID_MAX);
        } /* other fields: a later release's, skipped */
    }
    if (p != end)
        return moor_diag(MOOR_EPROTO, "_load: bytes after the message");
    if (!loads)
        return moor_diag(MOOR_EPROTO, "_load: loads is missing");
    if (from && f)
        *from = f, *fromlen = flen;
    return read_loads(loads, loads_end, fn, ud);
}

static int pack_bin(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_bin(pk, n) || msgpack_pack_bin_body(pk, s, n);
}

/* {[from = self,] loads = [...]} */
static int encode(const moor_load_t *l, int with_from, moor_buf_t *out)
{
    msgpack_packer pk;
    size_t have = 0;
    uint64_t now = now_ms(l);
    int rc = 0;

    for (size_t i = 0; i < l->n; i++)
        have += l->e[i].load != NULL;
    moor_mp_packer_init(&pk, out);
    rc |= msgpack_pack_map(&pk, with_from ? 2 : 1);
    if (with_from) {
        rc |= msgpack_pack_str_with_body(&pk, "from", 4);
        rc |= pack_bin(&pk, l->self, l->o.idlen);
    }
    rc |= msgpack_pack_str_with_body(&pk, "loads", 5);
    rc |= msgpack_pack_array(&pk, have);
    for (size_t i = 0; i < l->n; i++) {
        const entry_t *e = &l->e[i];
        if (!e->load)
            continue;
        rc |= msgpack_pack_array(&pk, 4);
        rc |= pack_bin(&pk, e->id, e->idlen);
        rc |= msgpack_pack_uint64(&pk, e->seq);
        rc |= moor_mp_pack_raw(out, e->load, e->len);
        rc |= msgpack_pack_uint64(&pk, e->moved_ms && now > e->moved_ms ? now - e->moved_ms : 0);
    }
    return rc ? MOOR_ENOMEM : 0;
}

int moor_load_encode(const moor_load_t *l, moor_buf_t *out)
{
    return encode(l, 1, out);
}

/* ---- rounds ---------------------------------------------------------------------- */

static void free_now(moor_load_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->e[i].load);
    free(l->e);
    free(l);
}

static void answered(void *arg, int status, const char *res, size_t rlen)
{
    moor_load_t *l = arg;

    l->inflight--;
    if (l->closed) {
        if (l->inflight == 0)
            free_now(l);
        return;
    }
    if (status) {
        l->st.failed++;
        return;
    }
    l->st.answered++;
    if (moor_load_decode(res, rlen, merge_cb, l, NULL, NULL))
        l->st.refused++;
}

/* Drops the entries (not ours) whose seq did not move for expire_ms. */
static void expire(moor_load_t *l, uint64_t now)
{
    size_t j = 0;

    for (size_t i = 0; i < l->n; i++) {
        entry_t *e = &l->e[i];
        int self = e->idlen == l->o.idlen && memcmp(e->id, l->self, e->idlen) == 0;
        if (!self && e->moved_ms && now > e->moved_ms && now - e->moved_ms > l->o.expire_ms) {
            free(e->load);
            l->st.expired++;
            continue;
        }
        l->e[j++] = *e;
    }
    l->n = j;
}

static void round_cb(void *arg);

static void arm(moor_load_t *l)
{
    l->timer = l->o.clock.timer_start(l->o.clock.ud, l->o.interval_ms, round_cb, l);
}

/* Picks up to fanout distinct members other than self (a partial
 * Fisher-Yates over the callback's list). */
static size_t pick(moor_load_t *l, const char **ids, size_t *lens, size_t n)
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++) /* self out first */
        if (!(lens[i] == l->o.idlen && memcmp(ids[i], l->self, lens[i]) == 0) && lens[i] > 0 &&
            lens[i] <= MOOR_RING_ID_MAX)
            ids[k] = ids[i], lens[k] = lens[i], k++;
    for (size_t i = 0; i < k && i < l->o.fanout; i++) {
        size_t j = i + (size_t)(rnd(l) % (k - i));
        const char *t = ids[i];
        size_t tl = lens[i];
        ids[i] = ids[j], lens[i] = lens[j];
        ids[j] = t, lens[j] = tl;
    }
    return k < l->o.fanout ? k : l->o.fanout;
}

static void round_cb(void *arg)
{
    moor_load_t *l = arg;
    const char *ids[MOOR_LOAD_MAX_ENTRIES];
    size_t lens[MOOR_LOAD_MAX_ENTRIES], n;
    moor_buf_t msg = MOOR_BUF_INIT;

    l->timer = 0;
    l->st.rounds++;
    expire(l, now_ms(l));
    n = l->o.members(l->o.members_ud, ids, lens, MOOR_LOAD_MAX_ENTRIES);
    n = pick(l, ids, lens, n > MOOR_LOAD_MAX_ENTRIES ? MOOR_LOAD_MAX_ENTRIES : n);
    if (n && encode(l, 1, &msg) == 0) {
        for (size_t i = 0; i < n; i++) {
            l->inflight++;
            if (l->o.transport.request(l->o.transport.ud, ids[i], lens[i], "_load", msg.data,
                                       msg.len, 1, l->o.timeout_ms, answered, l)) {
                l->inflight--;
                l->st.failed++;
            } else {
                l->st.sent++;
            }
        }
    }
    moor_buf_free(&msg);
    arm(l);
}

/* ---- API ------------------------------------------------------------------------- */

int moor_load_new(const moor_load_opts_t *o, moor_load_t **out)
{
    moor_load_t *l;
    entry_t *self;

    *out = NULL;
    if (!o->node_id || o->idlen == 0 || o->idlen > MOOR_RING_ID_MAX || !o->members ||
        !o->clock.now_ms || !o->clock.timer_start || !o->clock.timer_stop || !o->transport.request)
        return moor_diag(MOOR_EINVAL,
                         "load: node id of 1..%d bytes, members, clock and "
                         "transport are required",
                         MOOR_RING_ID_MAX);
    if (!(l = calloc(1, sizeof(*l))))
        return MOOR_ENOMEM;
    l->o = *o;
    memcpy(l->self, o->node_id, o->idlen);
    l->o.node_id = l->self;
    if (!l->o.interval_ms)
        l->o.interval_ms = MOOR_LOAD_INTERVAL_MS;
    if (!l->o.fanout)
        l->o.fanout = MOOR_LOAD_FANOUT;
    if (!l->o.timeout_ms)
        l->o.timeout_ms = MOOR_LOAD_TIMEOUT_MS;
    if (!l->o.expire_ms)
        l->o.expire_ms = MOOR_LOAD_EXPIRE_MS;
    l->rng = o->seed | 1;
    if (!(self = entry_get(l, l->self, o->idlen))) {
        free_now(l);
        return MOOR_ENOMEM;
    }
    self->seq = now_ms(l) * 1000;
    *out = l;
    return 0;
}

void moor_load_start(moor_load_t *l)
{
    if (!l->timer)
        arm(l);
}

void moor_load_free(moor_load_t *l)
{
    if (!l)
        return;
    if (l->timer)
        l->o.clock.timer_stop(l->o.clock.ud, l->timer);
    l->timer = 0;
    l->closed = 1;
    if (l->inflight == 0)
        free_now(l);
}

int moor_load_set_local(moor_load_t *l, const char *map, size_t len)
{
    entry_t *e;
    char *copy;
    int rc;

    if ((rc = check_map(map, len)))
        return rc;
    if (!(e = entry_get(l, l->self, l->o.idlen)) || !(copy = malloc(len)))
        return MOOR_ENOMEM;
    memcpy(copy, map, len);
    free(e->load);
    e->load = copy;
    e->len = len;
    e->seq++;
    e->moved_ms = now_ms(l);
    return 0;
}

int moor_load_is_method(const char *method, size_t mlen)
{
    return mlen == 5 && memcmp(method, "_load", 5) == 0;
}

void moor_load_handle(moor_load_t *l, const char *method, size_t mlen, const char *params,
                      size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    moor_buf_t ans = MOOR_BUF_INIT;
    int rc;

    (void)method, (void)mlen;
    l->st.received++;
    if (nparams != 1) {
        l->st.refused++;
        rc = moor_diag(MOOR_EPROTO, "_load takes one map");
        done(arg, rc, moor_diag_msg(rc), NULL, 0);
        return;
    }
    if ((rc = moor_load_decode(params, plen, merge_cb, l, NULL, NULL))) {
        l->st.refused++;
        done(arg, rc, moor_diag_msg(rc), NULL, 0);
        return;
    }
    if ((rc = encode(l, 0, &ans))) {
        done(arg, rc, moor_diag_msg(rc), NULL, 0);
        moor_buf_free(&ans);
        return;
    }
    done(arg, 0, NULL, ans.data, ans.len);
    moor_buf_free(&ans);
}

size_t moor_load_count(const moor_load_t *l)
{
    return l->n;
}

static void view(const moor_load_t *l, const entry_t *e, moor_load_view_t *out)
{
    uint64_t now = now_ms(l);

    out->id = e->id;
    out->idlen = e->idlen;
    out->seq = e->seq;
    out->age_ms = e->moved_ms && now > e->moved_ms ? now - e->moved_ms : 0;
    out->load = e->load;
    out->len = e->load ? e->len : 0;
}

void moor_load_at(const moor_load_t *l, size_t i, moor_load_view_t *out)
{
    view(l, &l->e[i], out);
}

int moor_load_find(const moor_load_t *l, const char *id, size_t idlen, moor_load_view_t *out)
{
    int found;
    size_t i = find(l, id, idlen, &found);

    if (found)
        view(l, &l->e[i], out);
    return found;
}

void moor_load_stats(const moor_load_t *l, moor_load_stats_t *out)
{
    *out = l->st;
}
