/*
 * aae.c -- active anti-entropy (aae.h): the hash trees, their build and
 * saved state, the exchange of one range with one peer, the schedule,
 * repair progress and the reaping of old tombstones.
 *
 * Trees live in one array sorted by (space, hi); a key finds its tree by
 * a binary search over its space's slice, and its leaf by its token's
 * place in the range (segment s holds the offsets o from lo + 1 with
 * floor(o * SEGMENTS / span) == s, so segments are contiguous token runs).
 *
 * Build: the trees are zeroed and a cursor walks the whole store in
 * order, a chunk per timer tick, paced to build_kb_s; a write to a key the
 * cursor has passed updates the trees as usual, a write to a key ahead of
 * it is left to the scan (which reads the store as it is then), so the
 * finished trees are exact.
 *
 * Jobs: an exchange (tree, peer) or a reap (tree).  Each is a small state
 * machine (job_step) that sends one request at a time and continues from
 * its reply; a job whose ring generation went stale (the tree set
 * changed) ends as failed.  Jobs wait in two queues (repair first, then
 * the background pass); at most `concurrency` run.  Bytes of requests
 * and replies go through one token bucket refilled at rate_kb_s; a job
 * finding it in debt waits on a timer.
 *
 * Lifetime: the struct holds one reference per job in flight (a request
 * or a timer) plus one for its owner; replies after moor_aae_free only
 * release theirs.  Store writes use a done that touches nothing.
 */
#include "aae.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "record.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/mp.h"

#define LEAVES (MOOR_AAE_SEGMENTS / MOOR_AAE_BRANCHES)
#define HASH_SEED 0x6d6f6f7220616165ull
#define LIST_MAX_ITEMS 2048        /* keys per `_aae_keys` answer */
#define LIST_MAX_BYTES (64 << 10) /* bytes of one `_aae_keys` answer (at least one item): small,
                                      * so one answer never holds the loop long */
#define FETCH_MAX 128              /* keys per `_aae_fetch` */
#define PUSH_MAX_BYTES (64 << 10)  /* records per `_aae_push` */
#define SMALL_BRANCH 32            /* list a branch whole when neither side holds more keys */
#define BUILD_CHUNK 1024           /* keys per build tick */
#define REAP_BATCH 256
#define RETRY_MS 1000    /* a peer whose trees are still building is asked again after */
#define RETRY_MAX 60     /* ... at most so many times */
#define META_VERSION 1

enum { R_NONE = 0, R_PENDING, R_DONE };

typedef struct tree {
    uint32_t space;
    uint64_t lo, hi; /* the range (lo, hi]; lo == hi: the whole ring */
    uint64_t root;
    uint32_t count;
    uint64_t branch[MOOR_AAE_BRANCHES];
    uint32_t bcount[MOOR_AAE_BRANCHES];
    uint64_t leaf[MOOR_AAE_SEGMENTS];
    uint8_t rstate; /* R_*: this range in the current repair */
    uint8_t rfail;  /* an exchange of it failed or an owner was down */
    uint8_t busy;   /* a job of it runs: its next waits, so a replica missing
                     * the range gets it from one peer, not from each */
    uint32_t rjobs; /* repair jobs of it not finished */
    uint8_t fresh;  /* its hashes come from the build under way (a new range) */
} tree_t;

typedef struct space {
    char *name;
    size_t nlen;
    uint32_t n;
    uint64_t grace_ms;
} space_t;

enum job_kind { J_EXCHANGE, J_REAP };

/* Steps of an exchange. */
enum {
    X_TREE = 0,  /* send _aae_tree */
    X_BRANCH,    /* pick the next differing branch */
    X_LEAVES,    /* send _aae_leaves for branch b */
    X_SEG,       /* pick the next differing segment of branch b */
    X_PULL,      /* _aae_keys with records over [s0, s1] (this side empty there) */
    X_LIST,      /* _aae_keys with hashes over [s0, s1] */
    X_COMPARE,   /* compare the listing with the local one */
    X_FETCH,     /* _aae_fetch the next batch of need_fetch */
    X_PUSH,      /* _aae_push the next batch of need_push */
    X_UNIT_DONE, /* [s0, s1] reconciled: back to X_SEG or X_BRANCH */
    X_DONE,
    /* reap */
    R_SCAN,  /* collect candidates after `after` */
    R_CHECK, /* _aae_reap check to owner peer_i */
    R_DROP,  /* _aae_reap drop to owner peer_i */
    R_LOCAL  /* delete here */
};

typedef struct job job_t;

struct job {
    job_t *next;             /* in a queue */
    job_t *rnext, *rprev;    /* among the running */
    uint64_t timer;          /* a wait in progress, 0 if none */
    moor_aae_t *a;
    uint64_t gen;
    uint32_t tree;
    int kind;
    int repair; /* part of the repair (else of the background pass) */
    int step;
    int failed;
    uint32_t retries;
    uint8_t peerlen;
    char peer[MOOR_RING_ID_MAX];
    /* exchange */
    uint64_t pbranch[MOOR_AAE_BRANCHES];
    uint32_t pcount[MOOR_AAE_BRANCHES];
    uint64_t pleaf[LEAVES];
    uint32_t b;       /* branch under work */
    uint32_t seg;     /* next segment of b to look at (leaves mode) */
    int in_leaves;    /* the unit belongs to a segment walk of b */
    uint32_t s0, s1;  /* segments of the unit under work */
    moor_buf_t after; /* paging: the last user key of the previous answer */
    moor_buf_t plist; /* peer listing: entries (see klist_*) */
    moor_buf_t need_fetch, need_push; /* entries: engine keys */
    size_t fetch_at, push_at;         /* read offsets into them */
    moor_buf_t both;                  /* keys fetched that this side held too: pushed after */
    /* reap */
    moor_buf_t items; /* entries: engine key + record hash */
    uint32_t nitems;
    uint8_t ok[REAP_BATCH];
    uint32_t owners[MOOR_COORD_N_MAX];
    uint32_t nowners, peer_i;
    int scan_done;
};

struct moor_aae {
    int refs;
    int dead;
    char id[MOOR_RING_ID_MAX];
    uint8_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t tr;
    moor_store_if_t store;
    moor_aae_merge_fn merge_local;
    void *merge_ud;
    moor_aae_repaired_fn repaired;
    void *repaired_ud;
    space_t *spaces;
    uint32_t nspaces;
    uint64_t interval_ms;
    double rate_bps, build_bps;
    uint32_t concurrency, timeout_ms;

    moor_ring_t *ring;
    tree_t *trees;
    uint32_t ntrees;
    uint32_t *sfirst; /* nspaces + 1: space i's trees are [sfirst[i], sfirst[i + 1]) */
    uint64_t gen;
    int load_clean; /* the saved trees were clean: load them with the first ring */

    int building;
    moor_buf_t cursor; /* the build's last scanned key; empty: none yet */
    uint64_t build_timer, build_start, build_keys;

    double tokens;
    uint64_t tokens_at;

    job_t *rq, *rq_tail, *bq, *bq_tail;
    job_t *run; /* the running jobs */
    uint32_t running;
    uint64_t pass_timer, pass_start;
    int pass_running;
    uint32_t pass_jobs;

    int repairing;
    uint64_t repair_start;
    int rincomplete;
    moor_buf_t rsel; /* the last repair's selection, to tell a resume from a new one */

    moor_record_t *rec; /* scratch */
    moor_aae_stats_t st;
};

static void pump(moor_aae_t *a);
static void job_step(job_t *j);
static void job_finish(job_t *j);
static void reap_step(job_t *j);
static void reap_reply(job_t *j, const char *res, size_t rlen);
static tree_t *tree_exact(const moor_aae_t *a, uint32_t sp, uint64_t lo, uint64_t hi);
static int on_keys(job_t *j, const char *res, size_t rlen, int records);
static int keys_answer(moor_aae_t *a, uint32_t sp, uint64_t lo, uint64_t hi, uint32_t s0,
                       uint32_t s1, const char *after, size_t alen, int records, moor_buf_t *out);
static void unit_start(job_t *j, uint32_t s0, uint32_t s1, uint64_t peer_hash, uint64_t my_hash);

/* ---- small helpers ------------------------------------------------------------------ */

static void unref(moor_aae_t *a)
{
    if (--a->refs > 0)
        return;
    for (uint32_t i = 0; i < a->nspaces; i++)
        free(a->spaces[i].name);
    free(a->spaces);
    free(a->trees);
    free(a->sfirst);
    free(a->rec);
    moor_buf_free(&a->cursor);
    moor_buf_free(&a->rsel);
    moor_ring_free(a->ring);
    free(a);
}

static uint64_t now_ms(const moor_aae_t *a)
{
    return a->clock.now_ms(a->clock.ud);
}

static void store_done_quiet(void *arg, int status)
{
    (void)arg;
    (void)status;
}

/* The hash of a record as the trees, listings and reaps compare it: of
 * its bytes -- but for a record with an expiring sibling (record.h), of
 * the record with every such sibling already expired.  Expiring changes
 * nothing then: a record whose expired value a compaction or merge has
 * written as its tombstone (core/server/expire.c) hashes as before, so
 * the trees, which saw no write, stay exact, and replicas that expired
 * it at different times still compare equal.  A record without one (the
 * peek for the 6-element sibling array can only say yes wrongly) is
 * hashed as it is, so records of releases before expiry hash as they
 * did.  Loop thread only (one scratch record). */
static uint64_t rec_hash(const char *rec, size_t rlen)
{
    static moor_record_t scratch;
    static moor_buf_t norm;

    if (!rlen || !memmem(rec, rlen, "\x96\xc4", 2) || moor_record_decode(rec, rlen, &scratch) ||
        moor_record_expire(&scratch, UINT64_MAX) == 0)
        return moor_hash64(rec, rlen, HASH_SEED);
    moor_buf_reset(&norm);
    /* Out of memory for a few KiB: the bytes' own hash, which at worst
     * makes the key look different to exchanges until the trees are
     * rebuilt (an exchange finds no difference in it and moves on). */
    if (moor_record_encode(&scratch, &norm))
        return moor_hash64(rec, rlen, HASH_SEED);
    return moor_hash64(norm.data, norm.len, HASH_SEED);
}

static uint64_t key_hash(const char *key, size_t klen, uint64_t rhash)
{
    uint64_t h = moor_hash64(key, klen, rhash);
    return h ? h : 1; /* never 0: an empty leaf and a leaf of one key differ */
}

/* The parts of an engine key (be64 token | u8 slen | space | key); 0, or
 * -1 for a key that is no record's (the internal ff x 8 | 00 block). */
static int key_parts(const char *key, size_t klen, uint64_t *token, const char **space,
                     size_t *slen, const char **ukey, size_t *uklen)
{
    size_t sl;

    if (klen < 9 || (sl = (unsigned char)key[8]) == 0 || klen < 9 + sl)
        return -1;
    *token = moor_dec_be64(key);
    *space = key + 9;
    *slen = sl;
    *ukey = key + 9 + sl;
    *uklen = klen - 9 - sl;
    return 0;
}

static int space_find(const moor_aae_t *a, const char *s, size_t slen)
{
    for (uint32_t i = 0; i < a->nspaces; i++)
        if (a->spaces[i].nlen == slen && memcmp(a->spaces[i].name, s, slen) == 0)
            return (int)i;
    return -1;
}

static int in_range(const tree_t *t, uint64_t token)
{
    if (t->lo < t->hi)
        return token > t->lo && token <= t->hi;
    return t->lo == t->hi || token > t->lo || token <= t->hi;
}

/* The tree of space sp holding token, or NULL. */
static tree_t *tree_of(const moor_aae_t *a, uint32_t sp, uint64_t token)
{
    uint32_t lo = a->sfirst[sp], hi = a->sfirst[sp + 1], first = lo;
    tree_t *t;

    if (lo == hi)
        return NULL;
    while (lo < hi) { /* the first tree with hi >= token */
        uint32_t mid = lo + (hi - lo) / 2;
        if (a->trees[mid].hi < token)
            lo = mid + 1;
        else
            hi = mid;
    }
    t = &a->trees[lo < a->sfirst[sp + 1] ? lo : first];
    return in_range(t, token) ? t : NULL;
}

static uint32_t segment_of(const tree_t *t, uint64_t token)
{
    uint64_t off = token - t->lo - 1, span = t->hi - t->lo;

    if (span == 0)
        return (uint32_t)(off >> 54); /* 2^64 / 1024 */
    return (uint32_t)(((unsigned __int128)off * MOOR_AAE_SEGMENTS) / span);
}

/* The first offset (from lo + 1) of segment s; s may be MOOR_AAE_SEGMENTS
 * (the end: returns span, or 0 for the whole ring, meaning 2^64). */
static uint64_t segment_start(uint64_t lo, uint64_t hi, uint32_t s)
{
    uint64_t span = hi - lo;
    unsigned __int128 sp = span ? span : (unsigned __int128)1 << 64;

    return (uint64_t)((sp * s + MOOR_AAE_SEGMENTS - 1) / MOOR_AAE_SEGMENTS);
}

static void tree_apply(tree_t *t, uint64_t token, uint64_t delta, int dcount)
{
    uint32_t s = segment_of(t, token), b = s / LEAVES;

    t->leaf[s] ^= delta;
    t->branch[b] ^= delta;
    t->root ^= delta;
    t->bcount[b] += (uint32_t)dcount;
    t->count += (uint32_t)dcount;
}

/* Token bucket: bytes spent, and whether a job may go on now (else the
 * ms to wait). */
static void spend(moor_aae_t *a, size_t bytes)
{
    a->tokens -= (double)bytes;
}

static uint64_t wait_ms(moor_aae_t *a)
{
    uint64_t now = now_ms(a);

    if (now > a->tokens_at) {
        a->tokens += (double)(now - a->tokens_at) * a->rate_bps / 1000.0;
        if (a->tokens > a->rate_bps)
            a->tokens = a->rate_bps;
        a->tokens_at = now;
    }
    if (a->tokens >= 0)
        return 0;
    return (uint64_t)(-a->tokens * 1000.0 / a->rate_bps) + 1;
}

/* ---- key lists: entries of u32 len | key bytes | u64 hash ---------------------------- */

static int klist_add(moor_buf_t *b, const char *key, size_t klen, uint64_t h)
{
    char hdr[4], hb[8];
    uint32_t l = (uint32_t)klen;

    memcpy(hdr, &l, 4);
    moor_enc_be64(hb, h);
    return moor_buf_append(b, hdr, 4) || moor_buf_append(b, key, klen) ||
                   moor_buf_append(b, hb, 8)
               ? MOOR_ENOMEM
               : 0;
}

/* The entry at *off (advanced); 0, or -1 at the end. */
static int klist_next(const moor_buf_t *b, size_t *off, const char **key, size_t *klen,
                      uint64_t *h)
{
    uint32_t l;

    if (*off + 4 > b->len)
        return -1;
    memcpy(&l, b->data + *off, 4);
    *key = b->data + *off + 4;
    *klen = l;
    *h = moor_dec_be64(b->data + *off + 4 + l);
    *off += 4 + (size_t)l + 8;
    return 0;
}

/* ---- scans of a token interval ------------------------------------------------------ */

typedef int (*rec_fn)(void *arg, const char *key, size_t klen, uint64_t token, const char *rec,
                      size_t rlen);

typedef struct scan_ctx {
    const moor_aae_t *a;
    uint32_t space;
    uint64_t last; /* stop past this token */
    rec_fn fn;
    void *arg;
    int stopped; /* fn asked to stop */
    int past;    /* went past `last` */
} scan_ctx_t;

static int scan_cb(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    scan_ctx_t *sc = arg;
    uint64_t token;
    const char *sp, *uk;
    size_t sl, ukl;

    if (key_parts(key, klen, &token, &sp, &sl, &uk, &ukl))
        return 0;
    if (token > sc->last) {
        sc->past = 1;
        return 1;
    }
    if (sl != sc->a->spaces[sc->space].nlen || memcmp(sp, sc->a->spaces[sc->space].name, sl))
        return 0;
    if (sc->fn(sc->arg, key, klen, token, val, vlen)) {
        sc->stopped = 1;
        return 1;
    }
    return 0;
}

/* Calls fn for the records of space sp with tokens in [t0, t1] (t0 > t1:
 * the interval wraps), in store order, starting after the engine key
 * after (alen 0: from the start), until fn returns nonzero.  0 or the
 * store's error. */
static int scan_interval(const moor_aae_t *a, uint32_t sp, uint64_t t0, uint64_t t1,
                         const char *after, size_t alen, rec_fn fn, void *arg)
{
    scan_ctx_t sc = {a, sp, 0, fn, arg, 0, 0};
    struct { uint64_t x, y; } part[2];
    int nparts = 0, rc;

    if (t0 <= t1) {
        part[nparts].x = t0, part[nparts++].y = t1;
    } else {
        part[nparts].x = t0, part[nparts++].y = UINT64_MAX;
        part[nparts].x = 0, part[nparts++].y = t1;
    }
    for (int i = 0; i < nparts && !sc.stopped; i++) {
        char from[8];
        moor_buf_t f = MOOR_BUF_INIT;
        if (alen) {
            uint64_t at = moor_dec_be64(after);
            if (at > part[i].y || at < part[i].x)
                continue; /* the cursor is in the other part */
            if (moor_buf_append(&f, after, alen) || moor_buf_append(&f, "", 1)) {
                moor_buf_free(&f);
                return MOOR_ENOMEM;
            }
            alen = 0; /* the next part (if any) starts from its beginning */
        } else {
            moor_enc_be64(from, part[i].x);
            if (moor_buf_append(&f, from, 8)) {
                moor_buf_free(&f);
                return MOOR_ENOMEM;
            }
        }
        sc.last = part[i].y;
        sc.past = 0;
        rc = a->store.scan(a->store.ud, "", 0, f.data, f.len, 0, scan_cb, &sc);
        moor_buf_free(&f);
        if (rc)
            return rc;
    }
    return 0;
}

/* Tokens [t0, t1] of segments s0..s1 of the range (lo, hi]. */
static void seg_tokens(uint64_t lo, uint64_t hi, uint32_t s0, uint32_t s1, uint64_t *t0,
                       uint64_t *t1)
{
    *t0 = lo + 1 + segment_start(lo, hi, s0);
    *t1 = lo + segment_start(lo, hi, s1 + 1); /* lo + 1 + (start of s1 + 1) - 1 */
}

/* ---- tree set from the ring -------------------------------------------------------- */

static int tree_cmp(const void *x, const void *y)
{
    const tree_t *a = x, *b = y;

    if (a->space != b->space)
        return a->space < b->space ? -1 : 1;
    return a->hi < b->hi ? -1 : a->hi > b->hi;
}

static int self_index(const moor_aae_t *a, const moor_ring_t *ring)
{
    return ring ? moor_ring_find(ring, a->id, a->idlen) : -1;
}

/* The owners of tree t's range (first n of its preference list) into
 * out; the count. */
static uint32_t owners_of(const moor_aae_t *a, const tree_t *t, uint32_t *out)
{
    uint32_t n = a->spaces[t->space].n, count = 0;

    if (n > MOOR_COORD_N_MAX)
        n = MOOR_COORD_N_MAX;
    if (!a->ring || moor_ring_preference_list(a->ring, t->hi, n, out, &count))
        return 0;
    return count;
}

/* The trees ring gives this node, sorted (bare: no hashes), into *out. */
static int trees_for(const moor_aae_t *a, const moor_ring_t *ring, tree_t **out, uint32_t *nout)
{
    uint32_t nv = moor_ring_vnode_count(ring), n = 0, cap = 0;
    int self = self_index(a, ring);
    tree_t *ts = NULL;

    *out = NULL;
    *nout = 0;
    if (self < 0)
        return 0;
    for (uint32_t i = 0; i < nv; i++) {
        uint64_t lo, hi;
        if (moor_ring_range_of(ring, i, &lo, &hi) != 1)
            continue;
        for (uint32_t s = 0; s < a->nspaces; s++) {
            uint32_t own[MOOR_COORD_N_MAX], count = 0, nn = a->spaces[s].n;
            int mine = 0;
            if (nn > MOOR_COORD_N_MAX)
                nn = MOOR_COORD_N_MAX;
            if (moor_ring_preference_list(ring, hi, nn, own, &count))
                continue;
            for (uint32_t k = 0; k < count; k++)
                mine |= own[k] == (uint32_t)self;
            if (!mine)
                continue;
            if (n == cap) {
                tree_t *g = realloc(ts, (cap ? cap * 2 : 64) * sizeof(*ts));
                if (!g) {
                    free(ts);
                    return MOOR_ENOMEM;
                }
                ts = g;
                cap = cap ? cap * 2 : 64;
            }
            memset(&ts[n], 0, sizeof(ts[n]));
            ts[n].space = s;
            ts[n].lo = lo;
            ts[n].hi = hi;
            n++;
        }
    }
    if (n)
        qsort(ts, n, sizeof(*ts), tree_cmp);
    *out = ts;
    *nout = n;
    return 0;
}

static int same_set(const moor_aae_t *a, const tree_t *ts, uint32_t n)
{
    if (n != a->ntrees)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if (ts[i].space != a->trees[i].space || ts[i].lo != a->trees[i].lo ||
            ts[i].hi != a->trees[i].hi)
            return 0;
    return 1;
}

/* ---- saved state ------------------------------------------------------------------- */

#define TREE_BYTES (4 + 4 * MOOR_AAE_BRANCHES + 8 * MOOR_AAE_SEGMENTS)

static int meta_key(moor_buf_t *k)
{
    return moor_buf_append(k, MOOR_AAE_PREFIX, MOOR_AAE_PREFIX_LEN) || moor_buf_append(k, "", 1)
               ? MOOR_ENOMEM
               : 0;
}

static int tree_key(const moor_aae_t *a, const tree_t *t, moor_buf_t *k)
{
    const space_t *s = &a->spaces[t->space];
    char hdr[2] = {1, (char)s->nlen}, b[16];

    moor_enc_be64(b, t->lo);
    moor_enc_be64(b + 8, t->hi);
    return moor_buf_append(k, MOOR_AAE_PREFIX, MOOR_AAE_PREFIX_LEN) ||
                   moor_buf_append(k, hdr, 2) || moor_buf_append(k, s->name, s->nlen) ||
                   moor_buf_append(k, b, 16)
               ? MOOR_ENOMEM
               : 0;
}

static int put_meta(moor_aae_t *a, int clean, moor_store_done_fn done, void *arg)
{
    moor_buf_t k = MOOR_BUF_INIT, v = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, &v);
    rc = meta_key(&k);
    rc |= msgpack_pack_map(&pk, 2);
    rc |= msgpack_pack_str_with_body(&pk, "v", 1);
    rc |= msgpack_pack_uint32(&pk, META_VERSION);
    rc |= msgpack_pack_str_with_body(&pk, "clean", 5);
    rc |= clean ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    rc = rc ? MOOR_ENOMEM : a->store.put(a->store.ud, k.data, k.len, v.data, v.len, done, arg);
    moor_buf_free(&k);
    moor_buf_free(&v);
    return rc;
}

int moor_aae_load(moor_aae_t *a)
{
    moor_buf_t k = MOOR_BUF_INIT, v = MOOR_BUF_INIT;
    moor_field_t f[2] = {{"v", NULL, NULL}, {"clean", NULL, NULL}};
    uint64_t ver = 0;
    int clean = 0, rc;

    if ((rc = meta_key(&k)))
        return rc;
    rc = a->store.get(a->store.ud, k.data, k.len, &v);
    if (rc == 0 && !moor_fields_read(v.data, v.len, 1, f, 2) && !moor_field_uint(&f[0], &ver) &&
        ver == META_VERSION && !moor_field_bool(&f[1], 0, &clean))
        a->load_clean = clean;
    moor_buf_free(&k);
    moor_buf_free(&v);
    if (rc && rc != MOOR_ENOTFOUND)
        return rc;
    /* From now on the saved trees lag behind the store until the next
     * clean save: a crash before it rebuilds them. */
    return a->load_clean ? put_meta(a, 0, store_done_quiet, NULL) : 0;
}

/* Reads every tree of the (new) set from the store; 0 if all were there. */
static int load_trees(moor_aae_t *a)
{
    moor_buf_t k = MOOR_BUF_INIT, v = MOOR_BUF_INIT;
    int rc = 0;

    for (uint32_t i = 0; i < a->ntrees && rc == 0; i++) {
        tree_t *t = &a->trees[i];
        k.len = v.len = 0;
        if ((rc = tree_key(a, t, &k)) ||
            (rc = a->store.get(a->store.ud, k.data, k.len, &v)))
            break;
        if (v.len != TREE_BYTES) {
            rc = MOOR_ECORRUPT;
            break;
        }
        memcpy(&t->count, v.data, 4);
        memcpy(t->bcount, v.data + 4, 4 * MOOR_AAE_BRANCHES);
        t->root = 0;
        memset(t->branch, 0, sizeof(t->branch));
        for (uint32_t s = 0; s < MOOR_AAE_SEGMENTS; s++) {
            t->leaf[s] = moor_dec_be64(v.data + 4 + 4 * MOOR_AAE_BRANCHES + 8 * s);
            t->branch[s / LEAVES] ^= t->leaf[s];
            t->root ^= t->leaf[s];
        }
    }
    moor_buf_free(&k);
    moor_buf_free(&v);
    return rc;
}

typedef struct save {
    moor_store_done_fn done;
    void *arg;
    uint32_t left;
    int status;
} save_t;

static void save_one_done(void *arg, int status)
{
    save_t *s = arg;

    if (status && !s->status)
        s->status = status;
    if (--s->left == 0) {
        s->done(s->arg, s->status);
        free(s);
    }
}

/* Collects the saved trees' keys that belong to no current tree. */
typedef struct stale {
    moor_aae_t *a;
    moor_buf_t keys; /* klist entries */
} stale_t;

static int stale_cb(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    stale_t *st = arg;
    moor_aae_t *a = st->a;
    size_t off = MOOR_AAE_PREFIX_LEN + 1, sl;
    int sp;
    tree_t *t;

    (void)val, (void)vlen;
    if (klen < off + 1 || klen != off + 1 + (sl = (unsigned char)key[off]) + 16 ||
        (sp = space_find(a, key + off + 1, sl)) < 0 ||
        !(t = tree_exact(a, (uint32_t)sp, moor_dec_be64(key + off + 1 + sl),
                         moor_dec_be64(key + off + 1 + sl + 8))))
        klist_add(&st->keys, key, klen, 0);
    return 0;
}

/* Deletes saved trees of ranges this node no longer keeps. */
static void drop_stale(moor_aae_t *a)
{
    char prefix[MOOR_AAE_PREFIX_LEN + 1];
    stale_t st = {a, MOOR_BUF_INIT};
    size_t off = 0, kl;
    const char *k;
    uint64_t h;

    memcpy(prefix, MOOR_AAE_PREFIX, MOOR_AAE_PREFIX_LEN);
    prefix[MOOR_AAE_PREFIX_LEN] = 1;
    if (a->store.scan(a->store.ud, prefix, sizeof(prefix), NULL, 0, 0, stale_cb, &st) == 0)
        while (klist_next(&st.keys, &off, &k, &kl, &h) == 0)
            a->store.del(a->store.ud, k, kl, store_done_quiet, NULL);
    moor_buf_free(&st.keys);
}

void moor_aae_save(moor_aae_t *a, moor_store_done_fn done, void *arg)
{
    moor_buf_t k = MOOR_BUF_INIT, v = MOOR_BUF_INIT;
    save_t *s;
    int rc = 0;

    if (a->building || a->ntrees == 0 || !(s = calloc(1, sizeof(*s)))) {
        done(arg, 0);
        return;
    }
    s->done = done;
    s->arg = arg;
    s->left = 1; /* the meta */
    drop_stale(a);
    if (moor_buf_reserve(&v, TREE_BYTES))
        rc = MOOR_ENOMEM;
    for (uint32_t i = 0; i < a->ntrees && rc == 0; i++) {
        const tree_t *t = &a->trees[i];
        k.len = v.len = 0;
        if ((rc = tree_key(a, t, &k)))
            break;
        moor_buf_append(&v, (const char *)&t->count, 4);
        moor_buf_append(&v, (const char *)t->bcount, 4 * MOOR_AAE_BRANCHES);
        for (uint32_t j = 0; j < MOOR_AAE_SEGMENTS; j++) {
            char b[8];
            moor_enc_be64(b, t->leaf[j]);
            moor_buf_append(&v, b, 8);
        }
        s->left++;
        if ((rc = a->store.put(a->store.ud, k.data, k.len, v.data, v.len, save_one_done, s)))
            s->left--;
    }
    /* Clean only if every tree went out: the meta follows them in the
     * store's order, so it is durable only if they are. */
    if (rc || put_meta(a, 1, save_one_done, s)) {
        moor_log_warn("anti-entropy: cannot save the trees (%s); they are rebuilt at the "
                      "next start",
                      moor_strerror(rc ? rc : MOOR_EIO));
        save_one_done(s, rc ? rc : MOOR_EIO);
    }
    moor_buf_free(&k);
    moor_buf_free(&v);
}

/* ---- build ------------------------------------------------------------------------- */

static void build_tick(void *arg);

static int build_cb(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    moor_aae_t *a = arg;
    uint64_t token;
    const char *sp, *uk;
    size_t sl, ukl;
    int s;
    tree_t *t;

    a->cursor.len = 0;
    moor_buf_append(&a->cursor, key, klen);
    a->build_keys++;
    if (key_parts(key, klen, &token, &sp, &sl, &uk, &ukl) == 0 &&
        (s = space_find(a, sp, sl)) >= 0 && (t = tree_of(a, (uint32_t)s, token)) && t->fresh)
        tree_apply(t, token, key_hash(key, klen, rec_hash(val, vlen)), 1);
    return 0;
}

typedef struct build_scan {
    moor_aae_t *a;
    uint32_t seen;
    size_t bytes;
} build_scan_t;

static int build_scan_cb(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    build_scan_t *b = arg;

    b->seen++;
    b->bytes += klen + vlen;
    return build_cb(b->a, key, klen, val, vlen);
}

static void build_done(moor_aae_t *a)
{
    a->building = 0;
    for (uint32_t i = 0; i < a->ntrees; i++)
        a->trees[i].fresh = 0;
    a->st.build_keys = a->build_keys;
    a->st.build_s = (double)(now_ms(a) - a->build_start) / 1000.0;
    moor_log_info("anti-entropy: %u trees built from %llu keys in %.1f s", a->ntrees,
                  (unsigned long long)a->build_keys, a->st.build_s);
    pump(a);
}

static void build_tick(void *arg)
{
    moor_aae_t *a = arg;
    build_scan_t b = {a, 0, 0};
    moor_buf_t from = MOOR_BUF_INIT;
    int rc;

    a->build_timer = 0;
    if (a->dead) {
        unref(a);
        return;
    }
    if (a->cursor.len && (moor_buf_append(&from, a->cursor.data, a->cursor.len) ||
                          moor_buf_append(&from, "", 1))) {
        rc = MOOR_ENOMEM;
    } else {
        /* Record keys only: stop before the internal ff x 8 | 00 block
         * (hints, saved trees) by scanning with no prefix and letting
         * key_parts skip them -- they are few and last but one. */
        rc = a->store.scan(a->store.ud, "", 0, from.data, from.len, BUILD_CHUNK, build_scan_cb,
                           &b);
    }
    moor_buf_free(&from);
    if (rc) {
        moor_log_warn("anti-entropy: tree build scan failed (%s); retrying", moor_strerror(rc));
        b.seen = BUILD_CHUNK;
    }
    if (b.seen < BUILD_CHUNK) {
        unref(a);
        build_done(a);
        return;
    }
    a->build_timer = a->clock.timer_start(a->clock.ud,
                                          (uint64_t)((double)b.bytes * 1000.0 / a->build_bps),
                                          build_tick, a);
    if (!a->build_timer)
        unref(a);
}

static void build_start(moor_aae_t *a)
{
    if (a->build_timer) {
        a->clock.timer_stop(a->clock.ud, a->build_timer);
        a->build_timer = 0;
        unref(a);
    }
    for (uint32_t i = 0; i < a->ntrees; i++) {
        tree_t *t = &a->trees[i];
        if (!t->fresh)
            continue;
        t->root = 0;
        t->count = 0;
        memset(t->branch, 0, sizeof(t->branch));
        memset(t->bcount, 0, sizeof(t->bcount));
        memset(t->leaf, 0, sizeof(t->leaf));
    }
    a->building = 1;
    a->cursor.len = 0;
    a->build_keys = 0;
    a->build_start = now_ms(a);
    a->refs++;
    a->build_timer = a->clock.timer_start(a->clock.ud, 0, build_tick, a);
    if (!a->build_timer) {
        a->refs--;
        a->building = 0;
    }
}

/* ---- writes ------------------------------------------------------------------------ */

void moor_aae_note(moor_aae_t *a, const char *key, size_t klen, const char *old, size_t oldlen,
                   const char *rec, size_t rlen)
{
    uint64_t token, delta = 0;
    const char *sp, *uk;
    size_t sl, ukl;
    int s, dc = 0;
    tree_t *t;

    if (!a || a->dead)
        return;
    if (a->load_clean && a->ntrees == 0) {
        a->load_clean = 0; /* a write before the saved trees were loaded: rebuild */
        return;
    }
    if (key_parts(key, klen, &token, &sp, &sl, &uk, &ukl) || (s = space_find(a, sp, sl)) < 0 ||
        !(t = tree_of(a, (uint32_t)s, token)))
        return;
    if (a->building && t->fresh) {
        size_t m = klen < a->cursor.len ? klen : a->cursor.len;
        int c = m ? memcmp(key, a->cursor.data, m) : 0;
        if (a->cursor.len == 0 || c > 0 || (c == 0 && klen > a->cursor.len))
            return; /* ahead of the scan: it will read the key as it is then */
    }
    if (old) {
        delta ^= key_hash(key, klen, rec_hash(old, oldlen));
        dc--;
    }
    if (rec) {
        delta ^= key_hash(key, klen, rec_hash(rec, rlen));
        dc++;
    }
    tree_apply(t, token, delta, dc);
}

/* ---- jobs -------------------------------------------------------------------------- */

static job_t *job_new(moor_aae_t *a, uint32_t tree, int kind, int repair, const char *peer,
                      size_t plen)
{
    job_t *j = calloc(1, sizeof(*j));

    if (!j)
        return NULL;
    j->a = a;
    j->gen = a->gen;
    j->tree = tree;
    j->kind = kind;
    j->repair = repair;
    j->step = kind == J_EXCHANGE ? X_TREE : R_SCAN;
    if (plen) {
        memcpy(j->peer, peer, plen);
        j->peerlen = (uint8_t)plen;
    }
    return j;
}

static void job_free(job_t *j)
{
    moor_buf_free(&j->after);
    moor_buf_free(&j->plist);
    moor_buf_free(&j->need_fetch);
    moor_buf_free(&j->need_push);
    moor_buf_free(&j->both);
    moor_buf_free(&j->items);
    free(j);
}

static void enqueue(moor_aae_t *a, job_t *j)
{
    job_t **head = j->repair ? &a->rq : &a->bq, **tail = j->repair ? &a->rq_tail : &a->bq_tail;

    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

/* The first job of a queue whose tree has none running, unlinked. */
static job_t *take(moor_aae_t *a, job_t **head, job_t **tail)
{
    job_t *j, *prev = NULL;

    for (j = *head; j; prev = j, j = j->next) {
        if (j->gen == a->gen && a->trees[j->tree].busy)
            continue;
        if (prev)
            prev->next = j->next;
        else
            *head = j->next;
        if (*tail == j)
            *tail = prev;
        j->next = NULL;
        return j;
    }
    return NULL;
}

static job_t *dequeue(moor_aae_t *a)
{
    job_t *j = take(a, &a->rq, &a->rq_tail);

    return j ? j : take(a, &a->bq, &a->bq_tail);
}

static void free_queue(job_t **head, job_t **tail)
{
    job_t *j, *next;

    for (j = *head; j; j = next) {
        next = j->next;
        job_free(j);
    }
    *head = *tail = NULL;
}

static void pump(moor_aae_t *a)
{
    job_t *j;

    while (!a->dead && !a->building && a->running < a->concurrency && (j = dequeue(a))) {
        a->running++;
        a->refs++;
        if (j->gen == a->gen)
            a->trees[j->tree].busy = 1;
        j->rnext = a->run;
        if (a->run)
            a->run->rprev = j;
        a->run = j;
        job_step(j);
    }
}

static void repair_end(moor_aae_t *a)
{
    uint64_t now = now_ms(a);

    a->repairing = 0;
    a->st.last_full_pass_s = (double)(now - a->repair_start) / 1000.0;
    a->st.last_full_pass_ms = now;
    moor_log_info("anti-entropy: repair of %u ranges done in %.1f s: %llu keys compared, %llu "
                  "repaired%s",
                  a->st.ranges_total, a->st.last_full_pass_s,
                  (unsigned long long)a->st.keys_compared,
                  (unsigned long long)a->st.keys_repaired,
                  a->rincomplete ? " (some ranges could not be exchanged with every owner)"
                                 : "");
    if (!a->rincomplete && a->repaired)
        a->repaired(a->repaired_ud);
}

static void tree_job_done(moor_aae_t *a, tree_t *t, int failed)
{
    if (failed)
        t->rfail = 1;
    if (t->rjobs && --t->rjobs == 0 && t->rstate == R_PENDING) {
        /* Done either way (a resume skips it); an incomplete one is
         * counted, and a new repair tries it again. */
        t->rstate = R_DONE;
        if (t->rfail) {
            a->rincomplete = 1;
            a->st.ranges_incomplete++;
        }
        a->st.ranges_done++;
        if (a->repairing && a->st.ranges_done >= a->st.ranges_total)
            repair_end(a);
    }
}

static void pass_end(moor_aae_t *a);

/* A job is over (j->failed says how): counts, the next one. */
static void job_finish(job_t *j)
{
    moor_aae_t *a = j->a;

    a->running--;
    if (j->rprev)
        j->rprev->rnext = j->rnext;
    else
        a->run = j->rnext;
    if (j->rnext)
        j->rnext->rprev = j->rprev;
    if (!a->dead && j->gen == a->gen) {
        a->trees[j->tree].busy = 0;
        if (j->kind == J_EXCHANGE) {
            if (j->failed)
                a->st.exchange_failures++;
            else
                a->st.exchanges++;
        }
        if (j->repair && a->repairing)
            tree_job_done(a, &a->trees[j->tree], j->failed);
        if (!j->repair && a->pass_running && --a->pass_jobs == 0)
            pass_end(a);
    }
    job_free(j);
    if (!a->dead)
        pump(a);
    unref(a);
}

static void job_fail(job_t *j, const char *why, int status)
{
    moor_aae_t *a = j->a;

    if (!a->dead && j->gen == a->gen)
        moor_log_debug("anti-entropy: exchange of a range with '%.*s' failed: %s (%s)",
                       (int)j->peerlen, j->peer, why, moor_strerror(status));
    j->failed = 1;
    job_finish(j);
}

static void job_timer(void *arg)
{
    job_t *j = arg;

    j->timer = 0;
    job_step(j);
}

/* Waits ms, then goes on with j. */
static void job_later(job_t *j, uint64_t ms)
{
    if (!(j->timer = j->a->clock.timer_start(j->a->clock.ud, ms, job_timer, j)))
        job_fail(j, "no timer", MOOR_ENOMEM);
}

/* Sends method(params) to the job's peer; the reply comes to job_reply. */
static void job_reply(void *arg, int status, const char *res, size_t rlen);

typedef struct inflight {
    job_t *j;
    size_t sent;
} inflight_t;

static void job_send(job_t *j, const char *method, const moor_buf_t *params)
{
    moor_aae_t *a = j->a;
    int rc;

    spend(a, params->len);
    a->st.bytes_sent += params->len;
    rc = a->tr.request(a->tr.ud, j->peer, j->peerlen, method, params->data, params->len, 1,
                       a->timeout_ms, job_reply, j);
    if (rc)
        job_fail(j, method, rc);
}

/* Packs {space, lo, hi, ...} with extra pairs to come: the map header for
 * 3 + extra entries. */
static void pack_range(const moor_aae_t *a, const tree_t *t, msgpack_packer *pk, uint32_t extra)
{
    const space_t *s = &a->spaces[t->space];

    msgpack_pack_map(pk, 3 + extra);
    msgpack_pack_str_with_body(pk, "space", 5);
    msgpack_pack_str_with_body(pk, s->name, s->nlen);
    msgpack_pack_str_with_body(pk, "lo", 2);
    msgpack_pack_uint64(pk, t->lo);
    msgpack_pack_str_with_body(pk, "hi", 2);
    msgpack_pack_uint64(pk, t->hi);
}

/* ---- the exchange: sending -------------------------------------------------------- */

/* Collects local keys of an interval into a key list (hash of the record). */
typedef struct collect {
    moor_buf_t *out;
    uint32_t n;
    int rc;
} collect_t;

static int collect_cb(void *arg, const char *key, size_t klen, uint64_t token, const char *rec,
                      size_t rlen)
{
    collect_t *c = arg;

    (void)token;
    if ((c->rc = klist_add(c->out, key, klen, rec_hash(rec, rlen))))
        return 1;
    c->n++;
    return 0;
}

static int collect_local(job_t *j, moor_buf_t *out, uint32_t *n)
{
    moor_aae_t *a = j->a;
    const tree_t *t = &a->trees[j->tree];
    collect_t c = {out, 0, 0};
    uint64_t t0, t1;
    int rc;

    seg_tokens(t->lo, t->hi, j->s0, j->s1, &t0, &t1);
    rc = scan_interval(a, t->space, t0, t1, NULL, 0, collect_cb, &c);
    if (n)
        *n = c.n;
    return rc ? rc : c.rc;
}

static void send_tree(job_t *j)
{
    moor_aae_t *a = j->a;
    const tree_t *t = &a->trees[j->tree];
    moor_buf_t p = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &p);
    pack_range(a, t, &pk, 2);
    msgpack_pack_str_with_body(&pk, "root", 4);
    msgpack_pack_uint64(&pk, t->root);
    msgpack_pack_str_with_body(&pk, "count", 5);
    msgpack_pack_uint32(&pk, t->count);
    job_send(j, "_aae_tree", &p);
    moor_buf_free(&p);
}

static void send_leaves(job_t *j)
{
    moor_buf_t p = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &p);
    pack_range(j->a, &j->a->trees[j->tree], &pk, 1);
    msgpack_pack_str_with_body(&pk, "branch", 6);
    msgpack_pack_uint32(&pk, j->b);
    job_send(j, "_aae_leaves", &p);
    moor_buf_free(&p);
}

static void send_keys(job_t *j, int records)
{
    moor_buf_t p = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &p);
    pack_range(j->a, &j->a->trees[j->tree], &pk, 4);
    msgpack_pack_str_with_body(&pk, "s0", 2);
    msgpack_pack_uint32(&pk, j->s0);
    msgpack_pack_str_with_body(&pk, "s1", 2);
    msgpack_pack_uint32(&pk, j->s1);
    msgpack_pack_str_with_body(&pk, "records", 7);
    records ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    msgpack_pack_str_with_body(&pk, "after", 5);
    if (j->after.len)
        msgpack_pack_bin_with_body(&pk, j->after.data, j->after.len);
    else
        msgpack_pack_nil(&pk);
    job_send(j, "_aae_keys", &p);
    moor_buf_free(&p);
}

/* The user key of an engine key. */
static void user_key(const char *key, size_t klen, const char **uk, size_t *ukl)
{
    size_t sl = (unsigned char)key[8];

    *uk = key + 9 + sl;
    *ukl = klen - 9 - sl;
}

static void pack_space(const moor_aae_t *a, uint32_t sp, msgpack_packer *pk)
{
    msgpack_pack_str_with_body(pk, "space", 5);
    msgpack_pack_str_with_body(pk, a->spaces[sp].name, a->spaces[sp].nlen);
}

/* _aae_fetch of the next FETCH_MAX keys of need_fetch; 0 if none left. */
static int send_fetch(job_t *j)
{
    moor_aae_t *a = j->a;
    moor_buf_t p = MOOR_BUF_INIT;
    msgpack_packer pk;
    size_t off = j->fetch_at;
    uint32_t n = 0;
    const char *k;
    size_t kl;
    uint64_t h;

    while (n < FETCH_MAX && klist_next(&j->need_fetch, &off, &k, &kl, &h) == 0)
        n++;
    if (!n)
        return 0;
    moor_mp_packer_init(&pk, &p);
    msgpack_pack_map(&pk, 2);
    pack_space(a, a->trees[j->tree].space, &pk);
    msgpack_pack_str_with_body(&pk, "keys", 4);
    msgpack_pack_array(&pk, n);
    off = j->fetch_at;
    while (n-- && klist_next(&j->need_fetch, &off, &k, &kl, &h) == 0) {
        const char *uk;
        size_t ukl;
        user_key(k, kl, &uk, &ukl);
        msgpack_pack_bin_with_body(&pk, uk, ukl);
    }
    job_send(j, "_aae_fetch", &p);
    moor_buf_free(&p);
    return 1;
}

/* _aae_push of the next records of need_push (read from the store now:
 * a key merged a moment ago goes out merged); 0 if none left. */
static int send_push(job_t *j)
{
    moor_aae_t *a = j->a;
    moor_buf_t items = MOOR_BUF_INIT, p = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;
    msgpack_packer pk, ik;
    uint32_t n = 0;
    const char *k;
    size_t kl;
    uint64_t h;

    moor_mp_packer_init(&ik, &items);
    while (items.len < PUSH_MAX_BYTES &&
           klist_next(&j->need_push, &j->push_at, &k, &kl, &h) == 0) {
        const char *uk;
        size_t ukl;
        rec.len = 0;
        if (a->store.get(a->store.ud, k, kl, &rec))
            continue; /* gone meanwhile (reaped): nothing to give */
        user_key(k, kl, &uk, &ukl);
        msgpack_pack_array(&ik, 2);
        msgpack_pack_bin_with_body(&ik, uk, ukl);
        msgpack_pack_bin_with_body(&ik, rec.data, rec.len);
        n++;
    }
    moor_buf_free(&rec);
    if (!n) {
        moor_buf_free(&items);
        return 0;
    }
    a->st.keys_repaired += n;
    moor_mp_packer_init(&pk, &p);
    msgpack_pack_map(&pk, 2);
    pack_space(a, a->trees[j->tree].space, &pk);
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, n);
    moor_buf_append(&p, items.data, items.len);
    moor_buf_free(&items);
    job_send(j, "_aae_push", &p);
    moor_buf_free(&p);
    return 1;
}

/* ---- the exchange: replies --------------------------------------------------------- */

/* The map answer's fields. */
static int answer_fields(const char *res, size_t rlen, moor_field_t *f, size_t n)
{
    return moor_fields_read(res, rlen, 1, f, n) ? -1 : 0;
}

static int read_hashes(const moor_field_t *f, uint64_t *out, uint32_t n)
{
    const char *s;
    uint32_t len;

    if (moor_field_strbin(f, &s, &len) || len != 8 * n)
        return -1;
    for (uint32_t i = 0; i < n; i++)
        out[i] = moor_dec_be64(s + 8 * i);
    return 0;
}

/* The tree answer: same, not ready, or the branches and counts. */
static int on_tree(job_t *j, const char *res, size_t rlen)
{
    moor_field_t f[6] = {{"same", 0, 0},   {"ready", 0, 0}, {"branches", 0, 0},
                         {"counts", 0, 0}, {"items", 0, 0}, {"empty", 0, 0}};
    const tree_t *t = &j->a->trees[j->tree];
    int same = 0, ready = 1, empty = 0, rc;
    const char *p;
    uint32_t n;

    if (answer_fields(res, rlen, f, 6) || moor_field_bool(&f[0], 0, &same) ||
        moor_field_bool(&f[1], 1, &ready) || moor_field_bool(&f[5], 0, &empty))
        return -1;
    if (f[4].v) { /* this side was empty: the peer's records came at once */
        j->s0 = 0;
        j->s1 = MOOR_AAE_SEGMENTS - 1;
        j->in_leaves = 0;
        j->b = MOOR_AAE_BRANCHES - 1;
        if ((rc = on_keys(j, res, rlen, 1)) < 0)
            return -1;
        j->step = rc ? X_PULL : X_DONE;
        if (!rc)
            j->after.len = 0;
        return 0;
    }
    if (empty) { /* the peer holds nothing here: everything goes */
        j->in_leaves = 0;
        j->b = MOOR_AAE_BRANCHES - 1;
        unit_start(j, 0, MOOR_AAE_SEGMENTS - 1, 0, 1);
        return 0;
    }
    if (!ready) {
        if (++j->retries > RETRY_MAX)
            return -1;
        j->step = X_TREE;
        return 1; /* later */
    }
    if (same) {
        j->a->st.keys_compared += t->count;
        j->step = X_DONE;
        return 0;
    }
    if (read_hashes(&f[2], j->pbranch, MOOR_AAE_BRANCHES) || !f[3].v)
        return -1;
    p = f[3].v;
    if (moor_mp_read_array(&p, f[3].end, &n) || n != MOOR_AAE_BRANCHES)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t c;
        if (moor_mp_read_uint(&p, f[3].end, &c) || c > UINT32_MAX)
            return -1;
        j->pcount[i] = (uint32_t)c;
    }
    j->b = 0;
    j->step = X_BRANCH;
    return 0;
}

/* Reads the items of a _aae_keys answer: with records, merges each here;
 * else appends (engine key, hash) to plist.  Sets `after` to the last
 * key and returns 1 if more follow, 0 if not, -1 on a bad answer. */
static int on_keys(job_t *j, const char *res, size_t rlen, int records)
{
    moor_aae_t *a = j->a;
    const tree_t *t = &a->trees[j->tree];
    const space_t *sp = &a->spaces[t->space];
    moor_field_t f[2] = {{"items", 0, 0}, {"more", 0, 0}};
    moor_buf_t ek = MOOR_BUF_INIT;
    const char *p;
    uint32_t n;
    int more = 0, rc = 0;

    if (answer_fields(res, rlen, f, 2) || moor_field_bool(&f[1], 0, &more) || !f[0].v)
        return -1;
    p = f[0].v;
    if (moor_mp_read_array(&p, f[0].end, &n))
        return -1;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        const char *k, *v = NULL;
        uint32_t kl, m, vl = 0;
        uint64_t h = 0;
        if (moor_mp_read_array(&p, f[0].end, &m) || m != 2 ||
            moor_mp_read_strbin(&p, f[0].end, &k, &kl)) {
            rc = -1;
            break;
        }
        if (records) {
            if (moor_mp_read_bin(&p, f[0].end, &v, &vl)) {
                rc = -1;
                break;
            }
        } else if (moor_mp_read_uint(&p, f[0].end, &h)) {
            rc = -1;
            break;
        }
        ek.len = 0;
        if (moor_record_key(sp->name, sp->nlen, k, kl, &ek)) {
            rc = -1;
            break;
        }
        if (records) {
            a->st.keys_compared++;
            a->st.keys_repaired++;
            if (a->merge_local(a->merge_ud, ek.data, ek.len, v, vl, store_done_quiet, NULL))
                moor_log_debug("anti-entropy: a record from '%.*s' not merged: %s",
                               (int)j->peerlen, j->peer, moor_diag_last()->msg);
        } else if (klist_add(&j->plist, ek.data, ek.len, h)) {
            rc = -1;
        }
        j->after.len = 0;
        moor_buf_append(&j->after, k, kl);
    }
    moor_buf_free(&ek);
    if (rc)
        return -1;
    return more && n ? 1 : 0;
}

/* Compares plist (the peer's) with the local listing of [s0, s1]:
 * need_fetch gets what the peer has and this side lacks or holds
 * otherwise, need_push what only this side has; both, the keys that
 * differ, which are pushed again after the fetch merged them. */
static int compare_lists(job_t *j)
{
    moor_buf_t mine = MOOR_BUF_INIT;
    size_t po = 0, mo = 0;
    const char *pk = NULL, *mk = NULL;
    size_t pkl = 0, mkl = 0;
    uint64_t ph = 0, mh = 0;
    int hp, hm, rc;

    if ((rc = collect_local(j, &mine, NULL)))
        goto out;
    hp = klist_next(&j->plist, &po, &pk, &pkl, &ph) == 0;
    hm = klist_next(&mine, &mo, &mk, &mkl, &mh) == 0;
    while ((hp || hm) && rc == 0) {
        int c;
        if (!hp)
            c = 1;
        else if (!hm)
            c = -1;
        else {
            size_t m = pkl < mkl ? pkl : mkl;
            c = memcmp(pk, mk, m);
            if (c == 0)
                c = pkl < mkl ? -1 : pkl > mkl;
        }
        j->a->st.keys_compared++;
        if (c < 0) { /* only the peer */
            rc = klist_add(&j->need_fetch, pk, pkl, ph);
            hp = klist_next(&j->plist, &po, &pk, &pkl, &ph) == 0;
        } else if (c > 0) { /* only here */
            rc = klist_add(&j->need_push, mk, mkl, mh);
            hm = klist_next(&mine, &mo, &mk, &mkl, &mh) == 0;
        } else {
            if (ph != mh) {
                rc = klist_add(&j->need_fetch, pk, pkl, ph);
                if (!rc)
                    rc = klist_add(&j->both, pk, pkl, ph);
            }
            hp = klist_next(&j->plist, &po, &pk, &pkl, &ph) == 0;
            hm = klist_next(&mine, &mo, &mk, &mkl, &mh) == 0;
        }
    }
out:
    moor_buf_free(&mine);
    return rc;
}

/* The _aae_fetch answer {records = [rec or nil, ...]}, in the order asked:
 * each merged here. */
static int on_fetch(job_t *j, const char *res, size_t rlen)
{
    moor_aae_t *a = j->a;
    moor_field_t f[1] = {{"records", 0, 0}};
    const char *p, *k;
    size_t kl;
    uint64_t h;
    uint32_t n;

    if (answer_fields(res, rlen, f, 1) || !f[0].v)
        return -1;
    p = f[0].v;
    if (moor_mp_read_array(&p, f[0].end, &n) || n > FETCH_MAX)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *v;
        uint32_t vl;
        if (klist_next(&j->need_fetch, &j->fetch_at, &k, &kl, &h))
            return -1;
        if (moor_mp_read_nil(&p, f[0].end) == 0)
            continue; /* gone at the peer meanwhile */
        if (moor_mp_read_bin(&p, f[0].end, &v, &vl))
            return -1;
        a->st.keys_repaired++;
        if (a->merge_local(a->merge_ud, k, kl, v, vl, store_done_quiet, NULL))
            moor_log_debug("anti-entropy: a record from '%.*s' not merged: %s", (int)j->peerlen,
                           j->peer, moor_diag_last()->msg);
    }
    return 0;
}

/* ---- the exchange: the state machine ----------------------------------------------- */

/* Starts reconciling segments s0..s1 of the tree with the peer. */
static void unit_start(job_t *j, uint32_t s0, uint32_t s1, uint64_t peer_hash, uint64_t my_hash)
{
    j->s0 = s0;
    j->s1 = s1;
    j->after.len = j->plist.len = j->need_fetch.len = j->need_push.len = j->both.len = 0;
    j->fetch_at = j->push_at = 0;
    if (peer_hash == 0) { /* the peer holds nothing there: give it everything */
        uint32_t n = 0;
        if (collect_local(j, &j->need_push, &n))
            j->failed = 1;
        j->a->st.keys_compared += n;
        j->step = X_PUSH;
    } else if (my_hash == 0) {
        j->step = X_PULL;
    } else {
        j->step = X_LIST;
    }
}

static void job_step(job_t *j)
{
    moor_aae_t *a = j->a;
    tree_t *t;
    uint64_t w;

    if (a->dead || j->gen != a->gen) {
        j->failed = 1;
        job_finish(j);
        return;
    }
    t = &a->trees[j->tree];
    for (;;) {
        if (j->failed) {
            job_fail(j, "local store", MOOR_EIO);
            return;
        }
        switch (j->step) {
        case X_TREE:
            /* its answer may carry records (a side empty there): paced too */
            if ((w = wait_ms(a))) {
                job_later(j, w);
                return;
            }
            send_tree(j);
            return;
        case X_BRANCH: {
            uint32_t b = j->b, e;
            while (b < MOOR_AAE_BRANCHES && j->pbranch[b] == t->branch[b])
                b++;
            if (b == MOOR_AAE_BRANCHES) {
                j->step = X_DONE;
                break;
            }
            j->b = b;
            j->in_leaves = 0;
            /* A run of branches where one side is empty goes as one unit,
             * so a wiped replica costs one listing per range, not 32. */
            if (j->pbranch[b] == 0 || t->branch[b] == 0) {
                int peer_empty = j->pbranch[b] == 0;
                for (e = b + 1; e < MOOR_AAE_BRANCHES; e++) {
                    uint64_t x = peer_empty ? j->pbranch[e] : t->branch[e];
                    if (x != 0)
                        break;
                }
                j->b = e - 1; /* the unit ends here; X_UNIT_DONE moves past it */
                unit_start(j, b * LEAVES, e * LEAVES - 1, peer_empty ? 0 : 1,
                           peer_empty ? 1 : 0);
            } else if (j->pcount[b] <= SMALL_BRANCH && t->bcount[b] <= SMALL_BRANCH) {
                unit_start(j, b * LEAVES, b * LEAVES + LEAVES - 1, j->pbranch[b], t->branch[b]);
            } else {
                j->step = X_LEAVES;
            }
            break;
        }
        case X_LEAVES:
            if ((w = wait_ms(a))) {
                job_later(j, w);
                return;
            }
            send_leaves(j);
            return;
        case X_SEG: {
            uint32_t s = j->seg, base = j->b * LEAVES;
            while (s < LEAVES && j->pleaf[s] == t->leaf[base + s])
                s++;
            if (s == LEAVES) {
                j->in_leaves = 0;
                j->b++;
                j->step = X_BRANCH;
                break;
            }
            j->seg = s + 1;
            j->in_leaves = 1;
            unit_start(j, base + s, base + s, j->pleaf[s], t->leaf[base + s]);
            break;
        }
        case X_PULL:
        case X_LIST:
            if ((w = wait_ms(a))) {
                job_later(j, w);
                return;
            }
            send_keys(j, j->step == X_PULL);
            return;
        case X_COMPARE:
            if (compare_lists(j)) {
                j->failed = 1;
                break;
            }
            j->step = X_FETCH;
            break;
        case X_FETCH:
            if ((w = wait_ms(a))) {
                job_later(j, w);
                return;
            }
            if (send_fetch(j))
                return;
            /* The keys both sides held go back merged. */
            if (j->both.len) {
                if (moor_buf_append(&j->need_push, j->both.data, j->both.len)) {
                    j->failed = 1;
                    break;
                }
                j->both.len = 0;
            }
            j->step = X_PUSH;
            break;
        case X_PUSH:
            if ((w = wait_ms(a))) {
                job_later(j, w);
                return;
            }
            if (send_push(j))
                return;
            j->step = X_UNIT_DONE;
            break;
        case X_UNIT_DONE:
            if (j->in_leaves) {
                j->step = X_SEG;
            } else {
                j->b++;
                j->step = X_BRANCH;
            }
            break;
        case X_DONE:
            job_finish(j);
            return;
        default:
            reap_step(j);
            return;
        }
    }
}

static void job_reply(void *arg, int status, const char *res, size_t rlen)
{
    job_t *j = arg;
    moor_aae_t *a = j->a;
    int rc = 0;

    if (a->dead || j->gen != a->gen) {
        j->failed = 1;
        job_finish(j);
        return;
    }
    if (status) {
        job_fail(j, "request", status);
        return;
    }
    spend(a, rlen);
    a->st.bytes_received += rlen;
    switch (j->step) {
    case X_TREE:
        rc = on_tree(j, res, rlen);
        if (rc == 1) {
            job_later(j, RETRY_MS);
            return;
        }
        break;
    case X_LEAVES: {
        moor_field_t f[1] = {{"leaves", 0, 0}};
        if (answer_fields(res, rlen, f, 1) || read_hashes(&f[0], j->pleaf, LEAVES)) {
            rc = -1;
            break;
        }
        j->seg = 0;
        j->step = X_SEG;
        break;
    }
    case X_PULL:
    case X_LIST:
        rc = on_keys(j, res, rlen, j->step == X_PULL);
        if (rc == 1) {
            rc = 0; /* more: the same step again */
        } else if (rc == 0) {
            j->after.len = 0;
            j->step = j->step == X_PULL ? X_UNIT_DONE : X_COMPARE;
        }
        break;
    case X_FETCH:
        rc = on_fetch(j, res, rlen);
        break;
    case X_PUSH:
        break; /* {merged = n}: the records are the peer's now */
    default:
        reap_reply(j, res, rlen);
        return;
    }
    if (rc) {
        job_fail(j, "a bad answer", MOOR_EPROTO);
        return;
    }
    job_step(j);
}

/* ---- reaping ----------------------------------------------------------------------- */

typedef struct reap_scan {
    job_t *j;
    uint64_t cutoff; /* tombstones written before this may go */
    uint64_t now;    /* values that expired by then count as tombstones */
    uint32_t seen;
    int rc;
} reap_scan_t;

/* 1 if rec is a record whose every sibling is a tombstone written before
 * cutoff -- an expired value being the tombstone written at its expiry
 * (record.h), which the other owners, holding the same bytes, agree on. */
static int reapable(moor_aae_t *a, const char *rec, size_t rlen, uint64_t cutoff, uint64_t now)
{
    if (moor_record_decode(rec, rlen, a->rec) || a->rec->n == 0)
        return 0;
    moor_record_expire(a->rec, now);
    if (!moor_record_is_deleted(a->rec))
        return 0;
    for (uint32_t i = 0; i < a->rec->n; i++)
        if (a->rec->sib[i].ts >= cutoff)
            return 0;
    return 1;
}

static int reap_scan_cb(void *arg, const char *key, size_t klen, uint64_t token, const char *rec,
                        size_t rlen)
{
    reap_scan_t *r = arg;
    job_t *j = r->j;

    (void)token;
    r->seen++;
    j->after.len = 0;
    moor_buf_append(&j->after, key, klen);
    if (reapable(j->a, rec, rlen, r->cutoff, r->now)) {
        if ((r->rc = klist_add(&j->items, key, klen, rec_hash(rec, rlen))))
            return 1;
        j->nitems++;
    }
    return j->nitems >= REAP_BATCH || r->seen >= 8 * REAP_BATCH;
}

/* The other owners of the job's range into j->owners; 0, or -1 when one
 * of them is not up (nothing is reaped while an owner cannot confirm). */
static int reap_owners(job_t *j)
{
    moor_aae_t *a = j->a;
    uint32_t own[MOOR_COORD_N_MAX], n = owners_of(a, &a->trees[j->tree], own);
    int self = self_index(a, a->ring);

    j->nowners = 0;
    for (uint32_t i = 0; i < n; i++) {
        if ((int)own[i] == self)
            continue;
        if (moor_ring_member(a->ring, own[i])->status != MOOR_MEMBER_UP)
            return -1;
        j->owners[j->nowners++] = own[i];
    }
    return 0;
}

static void send_reap(job_t *j, const char *phase)
{
    moor_aae_t *a = j->a;
    const moor_member_t *m = moor_ring_member(a->ring, j->owners[j->peer_i]);
    moor_buf_t p = MOOR_BUF_INIT;
    msgpack_packer pk;
    size_t off = 0;
    uint32_t n = 0, i = 0;
    const char *k;
    size_t kl;
    uint64_t h;

    memcpy(j->peer, m->id, m->idlen);
    j->peerlen = m->idlen;
    for (i = 0; i < j->nitems; i++)
        n += j->ok[i];
    moor_mp_packer_init(&pk, &p);
    msgpack_pack_map(&pk, 3);
    pack_space(a, a->trees[j->tree].space, &pk);
    msgpack_pack_str_with_body(&pk, "phase", 5);
    msgpack_pack_str_with_body(&pk, phase, strlen(phase));
    msgpack_pack_str_with_body(&pk, "items", 5);
    msgpack_pack_array(&pk, n);
    for (i = 0; klist_next(&j->items, &off, &k, &kl, &h) == 0; i++) {
        const char *uk;
        size_t ukl;
        if (!j->ok[i])
            continue;
        user_key(k, kl, &uk, &ukl);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_bin_with_body(&pk, uk, ukl);
        msgpack_pack_uint64(&pk, h);
    }
    job_send(j, "_aae_reap", &p);
    moor_buf_free(&p);
}

/* Deletes key here if its record still hashes to h; 1 if it is gone. */
static int reap_here(moor_aae_t *a, const char *key, size_t klen, uint64_t h)
{
    moor_buf_t cur = MOOR_BUF_INIT;
    int rc = a->store.get(a->store.ud, key, klen, &cur), gone = 0;

    if (rc == MOOR_ENOTFOUND) {
        gone = 1;
    } else if (rc == 0 && rec_hash(cur.data, cur.len) == h &&
               a->store.del(a->store.ud, key, klen, store_done_quiet, NULL) == 0) {
        moor_aae_note(a, key, klen, cur.data, cur.len, NULL, 0);
        a->st.tombstones_reaped++;
        gone = 1;
    }
    moor_buf_free(&cur);
    return gone;
}

static void reap_step(job_t *j)
{
    moor_aae_t *a = j->a;
    tree_t *t = &a->trees[j->tree];
    const space_t *sp = &a->spaces[t->space];
    uint64_t w;

    switch (j->step) {
    case R_SCAN: {
        reap_scan_t r = {j, 0, 0, 0, 0};
        uint64_t now = now_ms(a);
        int rc;
        if (sp->grace_ms == 0 || now <= sp->grace_ms || reap_owners(j)) {
            job_finish(j);
            return;
        }
        r.cutoff = now - sp->grace_ms;
        r.now = now;
        j->items.len = 0;
        j->nitems = 0;
        rc = scan_interval(a, t->space, t->lo + 1, t->hi, j->after.data, j->after.len,
                           reap_scan_cb, &r);
        if (rc || r.rc) {
            job_fail(j, "reap scan", rc ? rc : r.rc);
            return;
        }
        if (r.seen < 8 * REAP_BATCH && j->nitems < REAP_BATCH)
            j->scan_done = 1;
        if (j->nitems == 0) {
            if (j->scan_done)
                job_finish(j);
            else
                job_later(j, 0); /* the next stretch, after the loop breathes */
            return;
        }
        memset(j->ok, 1, sizeof(j->ok));
        j->peer_i = 0;
        j->step = R_CHECK;
        if (j->nowners == 0) {
            j->step = R_LOCAL;
            reap_step(j);
            return;
        }
        send_reap(j, "check");
        return;
    }
    case R_CHECK:
    case R_DROP:
        if ((w = wait_ms(a))) {
            job_later(j, w);
            return;
        }
        send_reap(j, j->step == R_CHECK ? "check" : "drop");
        return;
    case R_LOCAL: {
        size_t off = 0;
        const char *k;
        size_t kl;
        uint64_t h;
        for (uint32_t i = 0; klist_next(&j->items, &off, &k, &kl, &h) == 0; i++)
            if (j->ok[i])
                reap_here(a, k, kl, h);
        if (j->scan_done) {
            job_finish(j);
            return;
        }
        j->step = R_SCAN;
        job_later(j, 0);
        return;
    }
    default:
        job_fail(j, "bad step", MOOR_EINVAL);
    }
}

/* {ok = [bool, ...]} for the items sent (those still ok), in order.  A
 * check narrows the items to those this owner holds identically; a drop
 * that failed at an owner only means that owner keeps its tombstone. */
static void reap_reply(job_t *j, const char *res, size_t rlen)
{
    moor_field_t f[1] = {{"ok", 0, 0}};
    const char *p;
    uint32_t n, sent = 0, any = 0;

    for (uint32_t i = 0; i < j->nitems; i++)
        sent += j->ok[i];
    if (answer_fields(res, rlen, f, 1) || !f[0].v) {
        job_fail(j, "a bad reap answer", MOOR_EPROTO);
        return;
    }
    p = f[0].v;
    if (moor_mp_read_array(&p, f[0].end, &n) || n != sent) {
        job_fail(j, "a bad reap answer", MOOR_EPROTO);
        return;
    }
    for (uint32_t i = 0; i < j->nitems; i++) {
        int v;
        if (!j->ok[i])
            continue;
        if (moor_mp_read_bool(&p, f[0].end, &v)) {
            job_fail(j, "a bad reap answer", MOOR_EPROTO);
            return;
        }
        if (j->step == R_CHECK)
            j->ok[i] = (uint8_t)(v != 0);
        any += j->ok[i];
    }
    if (j->step == R_CHECK && !any) {
        j->step = R_SCAN;
        if (j->scan_done)
            job_finish(j);
        else
            job_later(j, 0);
        return;
    }
    if (++j->peer_i >= j->nowners) {
        j->peer_i = 0;
        j->step = j->step == R_CHECK ? R_DROP : R_LOCAL;
    }
    reap_step(j);
}

/* ---- the peer side ----------------------------------------------------------------- */

int moor_aae_is_method(const char *method, size_t mlen)
{
    return mlen > 5 && memcmp(method, "_aae_", 5) == 0;
}

static void answer_buf(moor_coord_done_fn done, void *arg, const moor_buf_t *b)
{
    done(arg, 0, NULL, b->data, b->len);
}

static void answer_bad(moor_coord_done_fn done, void *arg, const char *why)
{
    moor_diag(MOOR_EPROTO, "%s", why);
    done(arg, MOOR_EPROTO, why, NULL, 0);
}

/* The space field; its index, or -1. */
static int field_space(const moor_aae_t *a, const moor_field_t *f)
{
    const char *s;
    uint32_t l;

    return moor_field_strbin(f, &s, &l) ? -1 : space_find(a, s, l);
}

/* This node's tree of (space, lo, hi), or NULL. */
static tree_t *tree_exact(const moor_aae_t *a, uint32_t sp, uint64_t lo, uint64_t hi)
{
    tree_t *t = tree_of(a, sp, hi);

    return t && t->lo == lo && t->hi == hi ? t : NULL;
}

static void handle_tree(moor_aae_t *a, const moor_field_t *f, moor_coord_done_fn done, void *arg)
{
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint64_t lo, hi, root, count = UINT64_MAX;
    int sp = field_space(a, &f[0]);
    tree_t *t;
    char b[8 * MOOR_AAE_BRANCHES];

    if (sp < 0 || moor_field_uint(&f[1], &lo) || moor_field_uint(&f[2], &hi) ||
        moor_field_uint(&f[3], &root) ||
        (!moor_field_nil(&f[4]) && moor_field_uint(&f[4], &count))) {
        answer_bad(done, arg, "_aae_tree needs {space, lo, hi, root, count?}");
        return;
    }
    moor_mp_packer_init(&pk, &out);
    t = tree_exact(a, (uint32_t)sp, lo, hi);
    if (t && !a->building && t->root != root && count == 0 && t->count) {
        /* The asker holds nothing here: the records at once, as _aae_keys
         * would give them. */
        int rc = keys_answer(a, (uint32_t)sp, lo, hi, 0, MOOR_AAE_SEGMENTS - 1, NULL, 0, 1, &out);
        if (rc)
            done(arg, rc, moor_diag_msg(rc), NULL, 0);
        else
            answer_buf(done, arg, &out);
        moor_buf_free(&out);
        return;
    }
    if (t && !a->building && t->root != root && t->count == 0) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "empty", 5);
        msgpack_pack_true(&pk);
    } else if (!t || a->building) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "ready", 5);
        msgpack_pack_false(&pk);
    } else if (t->root == root) {
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "same", 4);
        msgpack_pack_true(&pk);
    } else {
        for (uint32_t i = 0; i < MOOR_AAE_BRANCHES; i++)
            moor_enc_be64(b + 8 * i, t->branch[i]);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "branches", 8);
        msgpack_pack_bin_with_body(&pk, b, sizeof(b));
        msgpack_pack_str_with_body(&pk, "counts", 6);
        msgpack_pack_array(&pk, MOOR_AAE_BRANCHES);
        for (uint32_t i = 0; i < MOOR_AAE_BRANCHES; i++)
            msgpack_pack_uint32(&pk, t->bcount[i]);
    }
    answer_buf(done, arg, &out);
    moor_buf_free(&out);
}

static void handle_leaves(moor_aae_t *a, const moor_field_t *f, moor_coord_done_fn done,
                          void *arg)
{
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint64_t lo, hi, br;
    int sp = field_space(a, &f[0]);
    tree_t *t;
    char b[8 * LEAVES];

    if (sp < 0 || moor_field_uint(&f[1], &lo) || moor_field_uint(&f[2], &hi) ||
        moor_field_uint(&f[3], &br) || br >= MOOR_AAE_BRANCHES) {
        answer_bad(done, arg, "_aae_leaves needs {space, lo, hi, branch}");
        return;
    }
    moor_mp_packer_init(&pk, &out);
    msgpack_pack_map(&pk, 1);
    if (!(t = tree_exact(a, (uint32_t)sp, lo, hi)) || a->building) {
        msgpack_pack_str_with_body(&pk, "ready", 5);
        msgpack_pack_false(&pk);
    } else {
        for (uint32_t i = 0; i < LEAVES; i++)
            moor_enc_be64(b + 8 * i, t->leaf[br * LEAVES + i]);
        msgpack_pack_str_with_body(&pk, "leaves", 6);
        msgpack_pack_bin_with_body(&pk, b, sizeof(b));
    }
    answer_buf(done, arg, &out);
    moor_buf_free(&out);
}

typedef struct keys_out {
    moor_buf_t items;
    msgpack_packer pk;
    uint32_t n;
    int records;
    int more;
} keys_out_t;

static int keys_cb(void *arg, const char *key, size_t klen, uint64_t token, const char *rec,
                   size_t rlen)
{
    keys_out_t *o = arg;
    const char *uk;
    size_t ukl;

    (void)token;
    if (o->n >= LIST_MAX_ITEMS || o->items.len >= LIST_MAX_BYTES) {
        o->more = 1;
        return 1;
    }
    user_key(key, klen, &uk, &ukl);
    msgpack_pack_array(&o->pk, 2);
    msgpack_pack_bin_with_body(&o->pk, uk, ukl);
    if (o->records)
        msgpack_pack_bin_with_body(&o->pk, rec, rlen);
    else
        msgpack_pack_uint64(&o->pk, rec_hash(rec, rlen));
    o->n++;
    return 0;
}

/* Appends the answer {items = [[key, hash or record], ...], more} over
 * segments s0..s1 of (lo, hi] of space sp, after the engine key after
 * (alen 0: from the start).  0 or the store's error. */
static int keys_answer(moor_aae_t *a, uint32_t sp, uint64_t lo, uint64_t hi, uint32_t s0,
                       uint32_t s1, const char *after, size_t alen, int records, moor_buf_t *out)
{
    keys_out_t o;
    msgpack_packer pk;
    uint64_t t0, t1;
    int rc;

    memset(&o, 0, sizeof(o));
    o.records = records;
    seg_tokens(lo, hi, s0, s1, &t0, &t1);
    moor_mp_packer_init(&o.pk, &o.items);
    rc = scan_interval(a, sp, t0, t1, after, alen, keys_cb, &o);
    if (rc == 0) {
        moor_mp_packer_init(&pk, out);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "items", 5);
        msgpack_pack_array(&pk, o.n);
        moor_buf_append(out, o.items.data, o.items.len);
        msgpack_pack_str_with_body(&pk, "more", 4);
        o.more ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        a->st.bytes_sent += out->len;
    }
    moor_buf_free(&o.items);
    return rc;
}

static void handle_keys(moor_aae_t *a, const moor_field_t *f, moor_coord_done_fn done, void *arg)
{
    moor_buf_t out = MOOR_BUF_INIT, after = MOOR_BUF_INIT;
    uint64_t lo, hi, s0, s1;
    const char *ak = NULL;
    uint32_t al = 0;
    int sp = field_space(a, &f[0]), records, rc;

    if (sp < 0 || moor_field_uint(&f[1], &lo) || moor_field_uint(&f[2], &hi) ||
        moor_field_uint(&f[3], &s0) || moor_field_uint(&f[4], &s1) || s0 > s1 ||
        s1 >= MOOR_AAE_SEGMENTS || moor_field_bool(&f[5], 0, &records) ||
        (!moor_field_nil(&f[6]) && moor_field_strbin(&f[6], &ak, &al))) {
        answer_bad(done, arg, "_aae_keys needs {space, lo, hi, s0, s1, records?, after?}");
        return;
    }
    if (ak && moor_record_key(a->spaces[sp].name, a->spaces[sp].nlen, ak, al, &after)) {
        answer_bad(done, arg, "_aae_keys: a bad `after` key");
        return;
    }
    rc = keys_answer(a, (uint32_t)sp, lo, hi, (uint32_t)s0, (uint32_t)s1, after.data, after.len,
                     records, &out);
    if (rc)
        done(arg, rc, moor_diag_msg(rc), NULL, 0);
    else
        answer_buf(done, arg, &out);
    moor_buf_free(&after);
    moor_buf_free(&out);
}

static void handle_fetch(moor_aae_t *a, const moor_field_t *f, moor_coord_done_fn done,
                         void *arg)
{
    moor_buf_t out = MOOR_BUF_INIT, ek = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;
    msgpack_packer pk;
    const char *p = f[1].v;
    uint32_t n;
    int sp = field_space(a, &f[0]), rc = 0;

    if (sp < 0 || !p || moor_mp_read_array(&p, f[1].end, &n) || n > FETCH_MAX) {
        answer_bad(done, arg, "_aae_fetch needs {space, keys = [at most 128 keys]}");
        return;
    }
    moor_mp_packer_init(&pk, &out);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "records", 7);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        const char *k;
        uint32_t kl;
        ek.len = rec.len = 0;
        if (moor_mp_read_strbin(&p, f[1].end, &k, &kl) ||
            moor_record_key(a->spaces[sp].name, a->spaces[sp].nlen, k, kl, &ek)) {
            rc = MOOR_EPROTO;
            break;
        }
        rc = a->store.get(a->store.ud, ek.data, ek.len, &rec);
        if (rc == MOOR_ENOTFOUND) {
            msgpack_pack_nil(&pk);
            rc = 0;
        } else if (rc == 0) {
            msgpack_pack_bin_with_body(&pk, rec.data, rec.len);
        }
    }
    if (rc == MOOR_EPROTO)
        answer_bad(done, arg, "_aae_fetch: keys must be str or bin");
    else if (rc)
        done(arg, rc, moor_diag_msg(rc), NULL, 0);
    else {
        a->st.bytes_sent += out.len;
        answer_buf(done, arg, &out);
    }
    moor_buf_free(&out);
    moor_buf_free(&ek);
    moor_buf_free(&rec);
}

/* A `_aae_push` in progress: answered once every merge is durable. */
typedef struct push {
    moor_coord_done_fn done;
    void *arg;
    uint32_t left, merged, refused;
    int status;
} push_t;

static void push_answer(push_t *ps)
{
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_packer pk;

    if (ps->status) {
        ps->done(ps->arg, ps->status, moor_strerror(ps->status), NULL, 0);
    } else {
        moor_mp_packer_init(&pk, &out);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "merged", 6);
        msgpack_pack_uint32(&pk, ps->merged);
        msgpack_pack_str_with_body(&pk, "refused", 7);
        msgpack_pack_uint32(&pk, ps->refused);
        answer_buf(ps->done, ps->arg, &out);
        moor_buf_free(&out);
    }
    free(ps);
}

static void push_one_done(void *arg, int status)
{
    push_t *ps = arg;

    if (status && !ps->status)
        ps->status = status;
    else if (!status)
        ps->merged++;
    if (--ps->left == 0)
        push_answer(ps);
}

static void handle_push(moor_aae_t *a, const moor_field_t *f, moor_coord_done_fn done, void *arg)
{
    moor_buf_t ek = MOOR_BUF_INIT;
    const char *p = f[1].v;
    uint32_t n;
    int sp = field_space(a, &f[0]);
    push_t *ps;

    if (sp < 0 || !p || moor_mp_read_array(&p, f[1].end, &n)) {
        answer_bad(done, arg, "_aae_push needs {space, items = [[key, record], ...]}");
        return;
    }
    if (!(ps = calloc(1, sizeof(*ps)))) {
        done(arg, MOOR_ENOMEM, "no memory", NULL, 0);
        return;
    }
    ps->done = done;
    ps->arg = arg;
    ps->left = 1;
    a->st.bytes_received += (size_t)(f[1].end - f[1].v);
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t kl, m, vl;
        if (moor_mp_read_array(&p, f[1].end, &m) || m != 2 ||
            moor_mp_read_strbin(&p, f[1].end, &k, &kl)) {
            ps->status = MOOR_EPROTO;
            break;
        }
        if (moor_mp_read_bin(&p, f[1].end, &v, &vl)) {
            ps->status = MOOR_EPROTO;
            break;
        }
        ek.len = 0;
        if (moor_record_key(a->spaces[sp].name, a->spaces[sp].nlen, k, kl, &ek)) {
            ps->status = MOOR_EPROTO;
            break;
        }
        ps->left++;
        if (a->merge_local(a->merge_ud, ek.data, ek.len, v, vl, push_one_done, ps)) {
            ps->left--;
            ps->refused++;
        }
    }
    moor_buf_free(&ek);
    push_one_done(ps, 0); /* the initial count; it counts as no merge */
}

static void handle_reap(moor_aae_t *a, const moor_field_t *f, moor_coord_done_fn done, void *arg)
{
    moor_buf_t out = MOOR_BUF_INIT, ek = MOOR_BUF_INIT, rec = MOOR_BUF_INIT;
    msgpack_packer pk;
    const char *p = f[2].v, *ph;
    uint32_t n, phl;
    int sp = field_space(a, &f[0]), drop;

    if (sp < 0 || moor_field_strbin(&f[1], &ph, &phl) ||
        !((phl == 5 && memcmp(ph, "check", 5) == 0) || (phl == 4 && memcmp(ph, "drop", 4) == 0)) ||
        !p || moor_mp_read_array(&p, f[2].end, &n) || n > REAP_BATCH) {
        answer_bad(done, arg, "_aae_reap needs {space, phase = check|drop, items}");
        return;
    }
    drop = phl == 4;
    moor_mp_packer_init(&pk, &out);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl, m;
        uint64_t h;
        int ok = 0, rc;
        if (moor_mp_read_array(&p, f[2].end, &m) || m != 2 ||
            moor_mp_read_strbin(&p, f[2].end, &k, &kl) || moor_mp_read_uint(&p, f[2].end, &h)) {
            moor_buf_free(&out);
            answer_bad(done, arg, "_aae_reap: items are [key, hash]");
            goto out;
        }
        ek.len = rec.len = 0;
        if (moor_record_key(a->spaces[sp].name, a->spaces[sp].nlen, k, kl, &ek) == 0) {
            if (drop) {
                ok = reap_here(a, ek.data, ek.len, h);
            } else {
                rc = a->store.get(a->store.ud, ek.data, ek.len, &rec);
                ok = rc == 0 && rec_hash(rec.data, rec.len) == h;
            }
        }
        ok ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    }
    answer_buf(done, arg, &out);
    moor_buf_free(&out);
out:
    moor_buf_free(&ek);
    moor_buf_free(&rec);
}

void moor_aae_handle(moor_aae_t *a, const char *method, size_t mlen, const char *params,
                     size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    static const char *const names[] = {"_aae_tree", "_aae_leaves", "_aae_keys",
                                        "_aae_fetch", "_aae_push", "_aae_reap"};
    moor_field_t f[7] = {{"space", 0, 0}};
    const char *why;
    int m = -1;

    for (int i = 0; i < 6; i++)
        if (strlen(names[i]) == mlen && memcmp(names[i], method, mlen) == 0)
            m = i;
    switch (m) {
    case 0: f[1].name = "lo", f[2].name = "hi", f[3].name = "root", f[4].name = "count"; break;
    case 1: f[1].name = "lo", f[2].name = "hi", f[3].name = "branch"; break;
    case 2:
        f[1].name = "lo", f[2].name = "hi", f[3].name = "s0", f[4].name = "s1";
        f[5].name = "records", f[6].name = "after";
        break;
    case 3: f[1].name = "keys"; break;
    case 4: f[1].name = "items"; break;
    case 5: f[1].name = "phase", f[2].name = "items"; break;
    default:
        moor_diag(MOOR_ENOTFOUND, "no method '%.*s'", (int)(mlen > 64 ? 64 : mlen), method);
        done(arg, MOOR_ENOTFOUND, moor_diag_last()->msg, NULL, 0);
        return;
    }
    for (int i = 1; i < 7; i++)
        if (!f[i].name)
            f[i].name = "";
    if (a->dead) {
        done(arg, MOOR_ECLOSED, "shutting down", NULL, 0);
        return;
    }
    if ((why = moor_fields_read(params, plen, nparams, f, 7))) {
        answer_bad(done, arg, why);
        return;
    }
    switch (m) {
    case 0: handle_tree(a, f, done, arg); break;
    case 1: handle_leaves(a, f, done, arg); break;
    case 2: handle_keys(a, f, done, arg); break;
    case 3: handle_fetch(a, f, done, arg); break;
    case 4: handle_push(a, f, done, arg); break;
    default: handle_reap(a, f, done, arg); break;
    }
}

/* ---- schedule and repair ----------------------------------------------------------- */

/* Queues the jobs of tree ti: an exchange with every other owner that is
 * up (all: a repair; those after this node: the background pass) and a
 * reap where this node is the first owner.  The count of jobs queued. */
static uint32_t queue_tree(moor_aae_t *a, uint32_t ti, int repair)
{
    tree_t *t = &a->trees[ti];
    uint32_t own[MOOR_COORD_N_MAX], n = owners_of(a, t, own), q = 0;
    int self = self_index(a, a->ring);
    job_t *j;

    for (uint32_t i = 0; i < n; i++) {
        const moor_member_t *m = moor_ring_member(a->ring, own[i]);
        if ((int)own[i] == self)
            continue;
        if (!repair) {
            size_t l = m->idlen < a->idlen ? m->idlen : a->idlen;
            int c = memcmp(m->id, a->id, l);
            if (c < 0 || (c == 0 && m->idlen <= a->idlen))
                continue; /* that owner starts this pair's exchange */
        }
        if (m->status != MOOR_MEMBER_UP) {
            if (repair)
                t->rfail = 1;
            continue;
        }
        if ((j = job_new(a, ti, J_EXCHANGE, repair, m->id, m->idlen))) {
            enqueue(a, j);
            q++;
        }
    }
    if (repair && n < 2)
        t->rfail = 1; /* no other replica to repair from */
    if (n && (int)own[0] == self && a->spaces[t->space].grace_ms &&
        (j = job_new(a, ti, J_REAP, repair, NULL, 0))) {
        enqueue(a, j);
        q++;
    }
    return q;
}

static void pass_timer_cb(void *arg);

static void pass_schedule(moor_aae_t *a, uint64_t ms)
{
    if (a->dead || !a->interval_ms || a->pass_timer)
        return;
    a->refs++;
    if (!(a->pass_timer = a->clock.timer_start(a->clock.ud, ms, pass_timer_cb, a)))
        a->refs--;
}

static void pass_end(moor_aae_t *a)
{
    uint64_t now = now_ms(a), took = now - a->pass_start;

    a->pass_running = 0;
    a->st.passes++;
    if (!a->repairing) {
        a->st.last_full_pass_s = (double)took / 1000.0;
        a->st.last_full_pass_ms = now;
    }
    pass_schedule(a, took < a->interval_ms ? a->interval_ms - took : 0);
}

static void pass_timer_cb(void *arg)
{
    moor_aae_t *a = arg;

    a->pass_timer = 0;
    if (a->dead) {
        unref(a);
        return;
    }
    if (a->pass_running || a->building || !a->ring) {
        unref(a);
        pass_schedule(a, a->interval_ms);
        return;
    }
    a->pass_running = 1;
    a->pass_start = now_ms(a);
    a->pass_jobs = 0;
    for (uint32_t i = 0; i < a->ntrees; i++)
        a->pass_jobs += queue_tree(a, i, 0);
    if (a->pass_jobs == 0)
        pass_end(a);
    else
        pump(a);
    unref(a);
}

/* Starts the repair of the trees marked R_PENDING. */
static void repair_queue(moor_aae_t *a)
{
    for (uint32_t i = 0; i < a->ntrees; i++) {
        tree_t *t = &a->trees[i];
        if (t->rstate != R_PENDING)
            continue;
        t->rfail = 0;
        t->rjobs = queue_tree(a, i, 1);
        if (t->rjobs == 0) { /* nothing to exchange (one replica, or owners down) */
            t->rjobs = 1;
            tree_job_done(a, t, t->rfail);
        }
        if (!a->repairing)
            break; /* that was the last one */
    }
    pump(a);
}

int moor_aae_repair(moor_aae_t *a, const char *space, size_t slen, const uint64_t *ranges,
                    uint32_t nranges, int restart)
{
    moor_buf_t sel = MOOR_BUF_INIT;
    uint32_t total = 0, done = 0;
    int sp = -1, resume;

    if (space && (sp = space_find(a, space, slen)) < 0)
        return moor_diag(MOOR_EINVAL, "no keyspace '%.*s'", (int)(slen > 64 ? 64 : slen), space);
    for (uint32_t r = 0; r < nranges; r++) {
        int found = 0;
        for (uint32_t i = 0; i < a->ntrees && !found; i++)
            found = a->trees[i].lo == ranges[2 * r] && a->trees[i].hi == ranges[2 * r + 1] &&
                    (sp < 0 || a->trees[i].space == (uint32_t)sp);
        if (!found)
            return moor_diag(MOOR_EINVAL,
                             "range (%llu, %llu] is not a range this node replicates",
                             (unsigned long long)ranges[2 * r],
                             (unsigned long long)ranges[2 * r + 1]);
    }
    if (a->ntrees == 0)
        return moor_diag(MOOR_EINVAL, "this node replicates no range yet (no ring)");
    if (a->repairing)
        return 0; /* already running: it goes on */
    /* The selection, to tell a resume from a new repair. */
    moor_buf_append(&sel, (const char *)&sp, sizeof(sp));
    if (space)
        moor_buf_append(&sel, space, slen);
    if (nranges)
        moor_buf_append(&sel, (const char *)ranges, 16 * (size_t)nranges);
    resume = !restart && a->st.ranges_done < a->st.ranges_total && sel.len == a->rsel.len &&
             memcmp(sel.data, a->rsel.data, sel.len) == 0;
    moor_buf_free(&a->rsel);
    a->rsel = sel;
    for (uint32_t i = 0; i < a->ntrees; i++) {
        tree_t *t = &a->trees[i];
        int want = sp < 0 || t->space == (uint32_t)sp;
        if (want && nranges) {
            want = 0;
            for (uint32_t r = 0; r < nranges; r++)
                want |= t->lo == ranges[2 * r] && t->hi == ranges[2 * r + 1];
        }
        if (!want) {
            t->rstate = R_NONE;
            continue;
        }
        total++;
        if (resume && t->rstate == R_DONE) {
            done++;
            continue;
        }
        t->rstate = R_PENDING;
        t->rjobs = 0;
    }
    a->repairing = 1;
    a->rincomplete = 0;
    if (!resume) {
        a->st.ranges_incomplete = 0;
        a->repair_start = now_ms(a);
        a->st.keys_compared = a->st.keys_repaired = 0;
        a->st.bytes_sent = a->st.bytes_received = 0;
    }
    a->st.ranges_total = total;
    a->st.ranges_done = done;
    moor_log_info("anti-entropy: repair of %u ranges %s", total,
                  resume ? "resumed" : "started");
    repair_queue(a);
    return 0;
}

int moor_aae_repair_stop(moor_aae_t *a)
{
    int was = a->repairing;

    /* Queued repair jobs go; those in flight finish (and count). */
    free_queue(&a->rq, &a->rq_tail);
    for (uint32_t i = 0; i < a->ntrees; i++)
        if (a->trees[i].rstate == R_PENDING)
            a->trees[i].rjobs = 0;
    a->repairing = 0;
    if (was)
        moor_log_info("anti-entropy: repair stopped at %u of %u ranges", a->st.ranges_done,
                      a->st.ranges_total);
    return was;
}

/* ---- ring, lifetime, figures ------------------------------------------------------- */

static int set_trees(moor_aae_t *a, tree_t *ts, uint32_t n)
{
    uint32_t *sf = calloc(a->nspaces + 1, sizeof(*sf));

    if (!sf)
        return MOOR_ENOMEM;
    for (uint32_t i = 0, s = 0; s <= a->nspaces; s++) {
        while (i < n && ts[i].space < s)
            i++;
        sf[s] = i;
    }
    sf[a->nspaces] = n;
    free(a->trees);
    free(a->sfirst);
    a->trees = ts;
    a->ntrees = n;
    a->sfirst = sf;
    return 0;
}

void moor_aae_set_ring(moor_aae_t *a, moor_ring_t *ring)
{
    tree_t *ts;
    uint32_t n;
    int rc;

    if (a->dead || !ring)
        return;
    moor_ring_ref(ring);
    moor_ring_free(a->ring);
    a->ring = ring;
    if ((rc = trees_for(a, ring, &ts, &n))) {
        moor_log_error("anti-entropy: cannot compute the ranges this node replicates: %s",
                       moor_strerror(rc));
        return;
    }
    if (a->trees && same_set(a, ts, n)) {
        free(ts);
        return;
    }
    /* Another set of ranges: the jobs of the old one end, the trees are
     * loaded (the first ring after a clean start) or rebuilt. */
    a->gen++;
    if (a->repairing) {
        moor_log_warn("anti-entropy: the ring changed during a repair; run it again");
        moor_aae_repair_stop(a);
    }
    free_queue(&a->rq, &a->rq_tail);
    free_queue(&a->bq, &a->bq_tail);
    if (a->pass_running) {
        a->pass_running = 0;
        pass_schedule(a, a->interval_ms);
    }
    /* A range this node already replicated keeps its hashes (a join or
     * leave moves a few ranges at a time); only the new ones are built,
     * unless a build was under way (then all are). */
    for (uint32_t i = 0; i < n; i++) {
        tree_t *old = a->building || !a->trees ? NULL : tree_exact(a, ts[i].space, ts[i].lo, ts[i].hi);
        ts[i].fresh = 1;
        if (old) {
            memcpy(ts[i].branch, old->branch, sizeof(old->branch));
            memcpy(ts[i].bcount, old->bcount, sizeof(old->bcount));
            memcpy(ts[i].leaf, old->leaf, sizeof(old->leaf));
            ts[i].root = old->root;
            ts[i].count = old->count;
            ts[i].fresh = 0;
        }
    }
    if (set_trees(a, ts, n)) {
        free(ts);
        return;
    }
    if (a->load_clean) {
        a->load_clean = 0;
        if (load_trees(a) == 0) {
            for (uint32_t i = 0; i < a->ntrees; i++)
                a->trees[i].fresh = 0;
            moor_log_info("anti-entropy: %u trees loaded", a->ntrees);
            pass_schedule(a, a->interval_ms);
            return;
        }
    }
    build_start(a);
    pass_schedule(a, a->interval_ms);
}

int moor_aae_new(const moor_aae_opts_t *o, moor_aae_t **out)
{
    moor_aae_t *a;

    *out = NULL;
    if (!o->node_id || !o->idlen || o->idlen > MOOR_RING_ID_MAX || !o->clock.now_ms ||
        !o->clock.timer_start || !o->transport.request || !o->store.get || !o->store.put ||
        !o->store.del || !o->store.scan || !o->merge_local)
        return moor_diag(MOOR_EINVAL, "anti-entropy: incomplete options");
    if (!(a = calloc(1, sizeof(*a))) || !(a->rec = malloc(sizeof(*a->rec))) ||
        !(a->spaces = calloc(o->nspaces ? o->nspaces : 1, sizeof(*a->spaces))) ||
        !(a->sfirst = calloc(o->nspaces + 1, sizeof(*a->sfirst)))) {
        if (a) {
            free(a->rec);
            free(a->spaces);
        }
        free(a);
        return moor_diag(MOOR_ENOMEM, "anti-entropy: no memory");
    }
    a->refs = 1;
    memcpy(a->id, o->node_id, o->idlen);
    a->idlen = (uint8_t)o->idlen;
    a->clock = o->clock;
    a->tr = o->transport;
    a->store = o->store;
    a->merge_local = o->merge_local;
    a->merge_ud = o->merge_ud;
    a->repaired = o->repaired;
    a->repaired_ud = o->repaired_ud;
    for (uint32_t i = 0; i < o->nspaces; i++) {
        space_t *s = &a->spaces[i];
        if (!(s->name = malloc(o->spaces[i].nlen ? o->spaces[i].nlen : 1))) {
            a->nspaces = i;
            unref(a);
            return moor_diag(MOOR_ENOMEM, "anti-entropy: no memory");
        }
        memcpy(s->name, o->spaces[i].name, o->spaces[i].nlen);
        s->nlen = o->spaces[i].nlen;
        s->n = o->spaces[i].n ? o->spaces[i].n : 3;
        s->grace_ms = o->spaces[i].grace_ms;
    }
    a->nspaces = o->nspaces;
    a->interval_ms = (uint64_t)o->interval_s * 1000;
    a->rate_bps = (o->rate_kb_s ? o->rate_kb_s : 8192) * 1024.0;
    a->build_bps = (o->build_kb_s ? o->build_kb_s : 32768) * 1024.0;
    a->concurrency = o->concurrency ? o->concurrency : 2;
    a->timeout_ms = o->timeout_ms ? o->timeout_ms : 5000;
    a->tokens = a->rate_bps;
    a->tokens_at = now_ms(a);
    *out = a;
    return 0;
}

void moor_aae_free(moor_aae_t *a)
{
    job_t *j, *next;

    if (!a)
        return;
    a->dead = 1;
    if (a->build_timer) {
        a->clock.timer_stop(a->clock.ud, a->build_timer);
        a->build_timer = 0;
        a->refs--;
    }
    if (a->pass_timer) {
        a->clock.timer_stop(a->clock.ud, a->pass_timer);
        a->pass_timer = 0;
        a->refs--;
    }
    free_queue(&a->rq, &a->rq_tail);
    free_queue(&a->bq, &a->bq_tail);
    /* Jobs waiting on a timer end now; those with a request in flight
     * end with its reply. */
    for (j = a->run; j; j = next) {
        next = j->rnext;
        if (j->timer) {
            a->clock.timer_stop(a->clock.ud, j->timer);
            j->timer = 0;
            j->failed = 1;
            job_finish(j);
        }
    }
    unref(a);
}

void moor_aae_stats(const moor_aae_t *a, moor_aae_stats_t *out)
{
    *out = a->st;
    out->running = a->repairing;
    out->trees_ready = a->ring && !a->building;
    out->trees = a->ntrees;
}

int moor_aae_root(const moor_aae_t *a, const char *space, size_t slen, uint64_t hi,
                  uint64_t *root)
{
    int sp = space_find(a, space, slen);
    tree_t *t;

    *root = 0;
    if (sp < 0 || !(t = tree_of(a, (uint32_t)sp, hi)) || t->hi != hi)
        return 0;
    *root = t->root;
    return 1;
}
