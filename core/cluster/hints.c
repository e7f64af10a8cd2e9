/*
 * hints.c -- the hinted-handoff store and its replay (hints.h).
 *
 * Per owner, in memory: how many hints and bytes the store holds for it
 * (rebuilt by one scan at start, kept by add and remove), whether it is up,
 * the replay cursor (the key to scan from next) and the replay state: idle,
 * a timer pending, or a batch in flight.  The store itself is the queue:
 * every batch is a scan of the owner's prefix from the cursor, so a crash
 * loses nothing but the cursor, and the next process starts from the first
 * hint the store still holds.
 *
 * Replay of one owner, a loop of batches while it is up:
 *   - wait for the rate limiter: one token bucket in bytes over all owners,
 *     refilled at rate_bytes_s by the env clock and capped at zero, so a
 *     batch is sent only when the bucket is not in debt and then puts it in
 *     debt by the batch's size: over any second, at most the rate plus one
 *     batch goes out;
 *   - scan up to `batch` hints from the cursor; a hint past window_ms (or
 *     unreadable) is dropped instead of sent; the rest go out together,
 *     each as its own `_put`;
 *   - when every reply is in: each acknowledged hint is removed (deleted
 *     from the store), each one the owner refused as malformed is dropped;
 *     if any failed (error, timeout), the cursor stays at the first that
 *     failed and the next batch waits a backoff (doubling from
 *     MOOR_HINTS_BACKOFF_MIN_MS to _MAX_MS); else the cursor moves past
 *     the batch and the next one follows.
 *   - a scan that finds nothing ends the pass: the cursor goes back to the
 *     start and, while hints are left (their deletion failed), a new pass
 *     begins: at once if the last one removed something, else after a
 *     backoff, so a store that cannot delete is not hammered.
 * Any answer to `_put` that is not an error acknowledges the hint (the
 * owner answers true).
 * moor_hints_add kicks an idle replay of an owner that is up; owner_down
 * stops the timer and lets the batch in flight finish.
 *
 * Counts: a hint is removed through remove_hint, which reads it first and
 * only counts it off when it is still there, so a hint dropped by a bound
 * while its `_put` is in flight is never counted twice.
 *
 * Bounds: max_bytes is checked on add (the owner's oldest hints dropped
 * until the new one fits); window_ms by a sweep every window/8 (10 ms ..
 * 60 s) that drops each owner's expired hints oldest first, and by replay.
 *
 * Lifetime: the struct holds one reference per batch in flight plus one
 * for its owner (moor_hints_free); a batch's replies arriving after the
 * free only release it.  Store deletions use a done that touches nothing.
 */
#include "hints.h"

#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "ring.h"
#include "util/err.h"
#include "util/mp.h"

typedef struct owner owner_t;

struct owner {
    owner_t *next;
    moor_hints_t *h;
    uint8_t idlen;
    char id[MOOR_RING_ID_MAX];
    uint64_t count, bytes;
    int up;
    int busy;           /* a batch is in flight */
    uint64_t timer;     /* the next batch's timer, 0 if none */
    uint64_t backoff;   /* ms; 0 after a batch that went through */
    int progressed;     /* this pass removed a hint */
    moor_buf_t cursor;  /* scan from here; empty: from the owner's first hint */
    moor_buf_t low;     /* no hint of o below this key is left (empty: unknown) */
};

typedef struct entry {
    struct batch *b;
    char *key, *val; /* copies of the stored hint */
    size_t klen, vlen;
    moor_hint_t hint;
    int state; /* ENT_* */
    int status;
} entry_t;

enum { ENT_SEND = 0, ENT_SKIP, ENT_DONE };

typedef struct batch {
    moor_hints_t *h;
    owner_t *o;
    entry_t *e;
    uint32_t n, cap;
    uint32_t outstanding;
} batch_t;

struct moor_hints {
    char id[MOOR_RING_ID_MAX];
    size_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t tr;
    moor_store_if_t store;
    uint64_t window_ms, max_bytes, rate;
    uint32_t batch, timeout_ms;
    moor_hints_dropped_fn dropped;
    void *dropped_ud;
    owner_t *owners;
    uint64_t seq;       /* the last seq given out */
    int64_t tokens;     /* the rate limiter's bucket, bytes (<= 0) */
    uint64_t refilled;  /* now_ms of its last refill */
    uint64_t sweep_timer, sweep_ms;
    uint64_t pending, bytes, stored, delivered, ndropped;
    unsigned refs;
    int closed;
    moor_buf_t scratch;
};

static void schedule(owner_t *o, uint64_t delay);

/* ---- encoding ----------------------------------------------------------- */

static void put_be64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (char)(v & 0xff);
}

static uint64_t get_be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | (unsigned char)p[i];
    return v;
}

/* The prefix of every hint of owner: MOOR_HINTS_PREFIX | u8 len | id. */
static size_t owner_prefix(const char *id, size_t idlen, char *out)
{
    memcpy(out, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN);
    out[MOOR_HINTS_PREFIX_LEN] = (char)idlen;
    memcpy(out + MOOR_HINTS_PREFIX_LEN + 1, id, idlen);
    return MOOR_HINTS_PREFIX_LEN + 1 + idlen;
}

#define OWNER_PREFIX_MAX (MOOR_HINTS_PREFIX_LEN + 1 + MOOR_RING_ID_MAX)
#define HINT_KEY_MAX (OWNER_PREFIX_MAX + 8)

int moor_hints_key_decode(const char *key, size_t klen, const char **owner, size_t *olen,
                          uint64_t *seq)
{
    size_t n;

    if (klen < MOOR_HINTS_PREFIX_LEN + 1 ||
        memcmp(key, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN) != 0)
        return moor_diag(MOOR_ECORRUPT, "hint key: not under the hints prefix");
    n = (unsigned char)key[MOOR_HINTS_PREFIX_LEN];
    if (n == 0 || n > MOOR_RING_ID_MAX || klen != MOOR_HINTS_PREFIX_LEN + 1 + n + 8)
        return moor_diag(MOOR_ECORRUPT, "hint key of %zu bytes with an owner of %zu", klen, n);
    *owner = key + MOOR_HINTS_PREFIX_LEN + 1;
    *olen = n;
    *seq = get_be64(key + MOOR_HINTS_PREFIX_LEN + 1 + n);
    return 0;
}

int moor_hints_decode(const char *val, size_t vlen, moor_hint_t *out)
{
    const char *p = val, *end = val + vlen;
    uint32_t n;

    if (moor_mp_read_array(&p, end, &n) || n != 4 || moor_mp_read_uint(&p, end, &out->ts) ||
        moor_mp_read_bin(&p, end, &out->space, &out->slen) || out->slen > MOOR_SPACE_MAX ||
        moor_mp_read_bin(&p, end, &out->key, &out->klen) ||
        moor_mp_read_bin(&p, end, &out->record, &out->rlen) || p != end)
        return moor_diag(MOOR_ECORRUPT, "hint value: not [ts, space, key, record]");
    return 0;
}

static int encode_value(moor_buf_t *out, uint64_t ts, const char *space, size_t slen,
                        const char *key, size_t klen, const char *rec, size_t rlen)
{
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, out);
    rc = msgpack_pack_array(&pk, 4);
    rc |= msgpack_pack_uint64(&pk, ts);
    rc |= msgpack_pack_bin_with_body(&pk, space, slen);
    rc |= msgpack_pack_bin_with_body(&pk, key, klen);
    rc |= msgpack_pack_bin_with_body(&pk, rec, rlen);
    return rc ? MOOR_ENOMEM : 0;
}

int moor_hints_stats_pack(const moor_hints_stats_t *st, moor_buf_t *out)
{
    static const char *names[] = {"pending", "bytes", "stored", "delivered", "dropped"};
    uint64_t v[] = {st->pending, st->bytes, st->stored, st->delivered, st->dropped};
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, out);
    rc = msgpack_pack_map(&pk, 5);
    for (int i = 0; i < 5; i++) {
        rc |= msgpack_pack_str_with_body(&pk, names[i], strlen(names[i]));
        rc |= msgpack_pack_uint64(&pk, v[i]);
    }
    return rc ? MOOR_ENOMEM : 0;
}

/* ---- owners and counts ---------------------------------------------------------- */

static owner_t *owner_get(moor_hints_t *h, const char *id, size_t idlen, int create)
{
    owner_t *o;

    if (idlen == 0 || idlen > MOOR_RING_ID_MAX)
        return NULL;
    for (o = h->owners; o; o = o->next)
        if (o->idlen == idlen && memcmp(o->id, id, idlen) == 0)
            return o;
    if (!create || !(o = calloc(1, sizeof(*o))))
        return NULL;
    o->h = h;
    o->idlen = (uint8_t)idlen;
    memcpy(o->id, id, idlen);
    o->next = h->owners;
    h->owners = o;
    return o;
}

static void del_done(void *arg, int status)
{
    (void)arg;
    (void)status; /* a deletion lost in a crash only means the hint is sent again */
}

/* Removes the hint at key of o if the store still holds it: 1 if it did
 * (counted off), 0 if it was gone already, or an error. */
static int remove_hint(owner_t *o, const char *key, size_t klen)
{
    moor_hints_t *h = o->h;
    int rc;

    moor_buf_reset(&h->scratch);
    rc = h->store.get(h->store.ud, key, klen, &h->scratch);
    if (rc == MOOR_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if ((rc = h->store.del(h->store.ud, key, klen, del_done, NULL)))
        return rc;
    uint64_t size = klen + h->scratch.len;
    o->count -= o->count ? 1 : 0;
    o->bytes -= o->bytes >= size ? size : o->bytes;
    h->pending -= h->pending ? 1 : 0;
    h->bytes -= h->bytes >= size ? size : h->bytes;
    return 1;
}

/* Drops the hint at key (value val): removed, counted, reported.  As
 * remove_hint: 1, 0 (gone already) or an error. */
static int drop_hint(owner_t *o, const char *key, size_t klen, const char *val, size_t vlen)
{
    moor_hints_t *h = o->h;
    moor_hint_t hint;
    int rc = remove_hint(o, key, klen);

    if (rc != 1)
        return rc;
    h->ndropped++;
    if (!h->dropped)
        return 1;
    if (moor_hints_decode(val, vlen, &hint) == 0)
        h->dropped(h->dropped_ud, o->id, o->idlen, hint.space, hint.slen, hint.key, hint.klen);
    else
        h->dropped(h->dropped_ud, o->id, o->idlen, "", 0, "", 0);
    return 1;
}

/* ---- scans ------------------------------------------------------------------ */

/* Copies of up to cap hints of a scan, so the store may be written after. */
typedef struct collect {
    entry_t *e;
    uint32_t n, cap;
    uint64_t older_than; /* only hints stamped before this (0: all) */
    int err;
} collect_t;

static int collect_fn(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    collect_t *c = arg;
    entry_t *e = &c->e[c->n];
    moor_hint_t hint;

    if (c->older_than && moor_hints_decode(val, vlen, &hint) == 0 && hint.ts >= c->older_than)
        return 1; /* the first young hint: the rest are younger */
    memset(e, 0, sizeof(*e));
    e->key = malloc(klen ? klen : 1);
    e->val = malloc(vlen ? vlen : 1);
    if (!e->key || !e->val) {
        free(e->key);
        free(e->val);
        c->err = MOOR_ENOMEM;
        return 1;
    }
    if (klen)
        memcpy(e->key, key, klen);
    if (vlen)
        memcpy(e->val, val, vlen);
    e->klen = klen;
    e->vlen = vlen;
    e->state = moor_hints_decode(e->val, vlen, &e->hint) ? ENT_SKIP : ENT_SEND;
    return ++c->n >= c->cap;
}

static void entries_free(entry_t *e, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(e[i].key);
        free(e[i].val);
    }
}

/* Up to cap hints of o from `from` (flen 0: its first) into c->e (cap
 * slots).  0 or an error.  A scan from the first starts at o->low and
 * moves it to the first hint found: new hints sort after every older one
 * (seq grows), so none appears below it again, and the deletion marks of
 * the hints already gone are not walked over again and again. */
static int collect(owner_t *o, const char *from, size_t flen, collect_t *c)
{
    moor_hints_t *h = o->h;
    char prefix[OWNER_PREFIX_MAX];
    size_t plen = owner_prefix(o->id, o->idlen, prefix);
    int first = flen == 0, rc;

    if (first) {
        from = o->low.data;
        flen = o->low.len;
    }
    c->n = 0;
    c->err = 0;
    rc = h->store.scan(h->store.ud, prefix, plen, from, flen, c->cap, collect_fn, c);
    if (rc || c->err) {
        entries_free(c->e, c->n);
        c->n = 0;
        return rc ? rc : c->err;
    }
    if (first && c->n) {
        moor_buf_reset(&o->low);
        if (moor_buf_append(&o->low, c->e[0].key, c->e[0].klen))
            moor_buf_reset(&o->low); /* unknown again: correct, only slower */
    }
    return 0;
}

/* Drops o's oldest hints until need more bytes fit under max_bytes. */
static int make_room(owner_t *o, uint64_t need)
{
    moor_hints_t *h = o->h;
    entry_t e[16];
    collect_t c = {e, 0, 16, 0, 0};
    int rc = 0;

    while (rc == 0 && o->count && o->bytes + need > h->max_bytes) {
        if ((rc = collect(o, NULL, 0, &c)))
            return rc;
        if (!c.n) { /* the counts are off: nothing is stored for o */
            h->pending -= h->pending >= o->count ? o->count : h->pending;
            h->bytes -= h->bytes >= o->bytes ? o->bytes : h->bytes;
            o->count = o->bytes = 0;
            break;
        }
        for (uint32_t i = 0; i < c.n && rc >= 0 && o->bytes + need > h->max_bytes; i++)
            rc = drop_hint(o, e[i].key, e[i].klen, e[i].val, e[i].vlen);
        entries_free(e, c.n);
        rc = rc < 0 ? rc : 0; /* a store that cannot delete: the add fails */
    }
    return rc;
}

/* Drops o's hints stamped before now - window_ms, oldest first. */
static void expire(owner_t *o, uint64_t now)
{
    moor_hints_t *h = o->h;
    entry_t e[32];
    collect_t c = {e, 0, 32, 0, 0};

    if (now <= h->window_ms)
        return;
    c.older_than = now - h->window_ms;
    while (o->count) {
        if (collect(o, NULL, 0, &c) || !c.n)
            break;
        uint64_t before = o->count;
        for (uint32_t i = 0; i < c.n; i++)
            drop_hint(o, e[i].key, e[i].klen, e[i].val, e[i].vlen);
        entries_free(e, c.n);
        if (c.n < c.cap || o->count == before)
            break;
    }
}

static void sweep(void *arg)
{
    moor_hints_t *h = arg;
    uint64_t now = h->clock.now_ms(h->clock.ud);

    h->sweep_timer = 0;
    for (owner_t *o = h->owners; o; o = o->next)
        if (o->count)
            expire(o, now);
    h->sweep_timer = h->clock.timer_start(h->clock.ud, h->sweep_ms, sweep, h);
}

/* ---- replay -------------------------------------------------------------------- */

static void hints_unref(moor_hints_t *h)
{
    if (--h->refs)
        return;
    moor_buf_free(&h->scratch);
    free(h);
}

static void batch_free(batch_t *b)
{
    entries_free(b->e, b->n);
    free(b->e);
    free(b);
}

/* The rate limiter: 0 if a batch may go now, else the ms to wait. */
static uint64_t rate_wait(moor_hints_t *h)
{
    uint64_t now = h->clock.now_ms(h->clock.ud);

    if (now > h->refilled) {
        uint64_t add = (now - h->refilled) * h->rate / 1000;
        /* refill whole bytes only; keep the remainder's time */
        if (add) {
            h->tokens = h->tokens + (int64_t)add > 0 ? 0 : h->tokens + (int64_t)add;
            h->refilled = now;
        }
    } else if (now < h->refilled) {
        h->refilled = now; /* the clock went back: start over from here */
    }
    if (h->tokens >= 0)
        return 0;
    return ((uint64_t)-h->tokens * 1000 + h->rate - 1) / h->rate;
}

/* An owner's refusal of the hint itself (BAD_REQUEST and the like): sent
 * again it would be refused again, and hold up every hint behind it. */
static int permanent(int status)
{
    return status == MOOR_EINVAL || status == MOOR_EKEYTOOBIG || status == MOOR_EVALTOOBIG ||
           status == MOOR_EBADCTX;
}

static void batch_done(batch_t *b)
{
    moor_hints_t *h = b->h;
    owner_t *o = b->o;
    int failed = -1;

    if (h->closed) {
        batch_free(b);
        hints_unref(h);
        return;
    }
    for (uint32_t i = 0; i < b->n; i++) {
        entry_t *e = &b->e[i];
        if (e->state != ENT_DONE)
            continue;
        if (e->status == 0) {
            if (remove_hint(o, e->key, e->klen) == 1) {
                h->delivered++;
                o->progressed = 1;
            }
        } else if (permanent(e->status)) {
            drop_hint(o, e->key, e->klen, e->val, e->vlen);
            o->progressed = 1;
        } else if (failed < 0) {
            failed = (int)i;
        }
    }
    moor_buf_reset(&o->cursor);
    if (failed >= 0) {
        moor_buf_append(&o->cursor, b->e[failed].key, b->e[failed].klen);
        o->backoff = o->backoff ? o->backoff * 2 : MOOR_HINTS_BACKOFF_MIN_MS;
        if (o->backoff > MOOR_HINTS_BACKOFF_MAX_MS)
            o->backoff = MOOR_HINTS_BACKOFF_MAX_MS;
    } else {
        /* past the batch: its last key with a 0 byte after is the next key */
        if (moor_buf_append(&o->cursor, b->e[b->n - 1].key, b->e[b->n - 1].klen) ||
            moor_buf_append(&o->cursor, "", 1))
            moor_buf_reset(&o->cursor);
        o->backoff = 0;
    }
    o->busy = 0;
    batch_free(b);
    hints_unref(h);
    if (o->up)
        schedule(o, o->backoff);
}

static void put_reply(void *arg, int status, const char *result, size_t rlen)
{
    entry_t *e = arg;
    batch_t *b = e->b;

    (void)result; /* the owner answers true; any answer that is not an error means taken */
    (void)rlen;
    e->state = ENT_DONE;
    e->status = status;
    if (--b->outstanding == 0)
        batch_done(b);
}

static int put_params(moor_buf_t *out, const moor_hint_t *x)
{
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, out);
    rc = msgpack_pack_map(&pk, 3);
    rc |= msgpack_pack_str_with_body(&pk, "space", 5);
    rc |= msgpack_pack_str_with_body(&pk, x->space, x->slen);
    rc |= msgpack_pack_str_with_body(&pk, "key", 3);
    rc |= msgpack_pack_bin_with_body(&pk, x->key, x->klen);
    rc |= msgpack_pack_str_with_body(&pk, "record", 6);
    rc |= msgpack_pack_bin_with_body(&pk, x->record, x->rlen);
    return rc ? MOOR_ENOMEM : 0;
}

/* Sends the hints of b that are due; the others are dropped here.  With
 * nothing sent, b is finished at once. */
static void batch_send(batch_t *b)
{
    moor_hints_t *h = b->h;
    owner_t *o = b->o;
    uint64_t now = h->clock.now_ms(h->clock.ud), size = 0;
    moor_buf_t params = MOOR_BUF_INIT;

    h->refs++;
    b->outstanding = 1; /* held while sending */
    for (uint32_t i = 0; i < b->n; i++) {
        entry_t *e = &b->e[i];
        e->b = b;
        if (e->state == ENT_SKIP ||
            (h->window_ms && now > h->window_ms && e->hint.ts < now - h->window_ms)) {
            drop_hint(o, e->key, e->klen, e->val, e->vlen);
            o->progressed = 1;
            e->state = ENT_SKIP;
            continue;
        }
        moor_buf_reset(&params);
        int rc = put_params(&params, &e->hint);
        b->outstanding++;
        if (rc == 0)
            rc = h->tr.request(h->tr.ud, o->id, o->idlen, "_put", params.data, params.len, 1,
                               h->timeout_ms, put_reply, e);
        if (rc)
            put_reply(e, rc, NULL, 0);
        else
            size += e->klen + e->vlen;
    }
    moor_buf_free(&params);
    h->tokens -= (int64_t)size;
    if (--b->outstanding == 0)
        batch_done(b);
}

/* The owner's next batch, if it is up and nothing is in flight. */
static void replay(void *arg)
{
    owner_t *o = arg;
    moor_hints_t *h = o->h;
    batch_t *b;
    collect_t c;
    uint64_t wait;
    int rc;

    o->timer = 0;
    if (!o->up || o->busy)
        return;
    if ((wait = rate_wait(h))) {
        schedule(o, wait);
        return;
    }
    if (!(b = calloc(1, sizeof(*b))) || !(b->e = calloc(h->batch, sizeof(*b->e)))) {
        free(b);
        schedule(o, MOOR_HINTS_BACKOFF_MIN_MS);
        return;
    }
    c = (collect_t){b->e, 0, h->batch, 0, 0};
    rc = collect(o, o->cursor.data, o->cursor.len, &c); /* empty cursor: from o->low */
    if (rc || !c.n) {
        int progressed = o->progressed;
        batch_free(b);
        if (rc) {
            schedule(o, MOOR_HINTS_BACKOFF_MIN_MS);
            return;
        }
        if (!o->cursor.len) { /* nothing stored at all: the counts say so too */
            h->pending -= h->pending >= o->count ? o->count : h->pending;
            h->bytes -= h->bytes >= o->bytes ? o->bytes : h->bytes;
            o->count = o->bytes = 0;
        }
        /* the pass is over: another from the first hint left, at once if
         * this one removed some, else (deletions failing) after a backoff */
        moor_buf_reset(&o->cursor);
        o->progressed = 0;
        if (o->count) {
            o->backoff = progressed ? 0 : o->backoff ? o->backoff * 2 : MOOR_HINTS_BACKOFF_MIN_MS;
            if (o->backoff > MOOR_HINTS_BACKOFF_MAX_MS)
                o->backoff = MOOR_HINTS_BACKOFF_MAX_MS;
            schedule(o, o->backoff);
        }
        return;
    }
    b->h = h;
    b->o = o;
    b->n = c.n;
    o->busy = 1;
    batch_send(b);
}

static void schedule(owner_t *o, uint64_t delay)
{
    moor_hints_t *h = o->h;

    if (o->timer || o->busy || !o->up || h->closed)
        return;
    o->timer = h->clock.timer_start(h->clock.ud, delay, replay, o);
}

/* ---- API ------------------------------------------------------------------------ */

typedef struct rebuild {
    moor_hints_t *h;
    int err;
} rebuild_t;

static int rebuild_fn(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    rebuild_t *r = arg;
    moor_hints_t *h = r->h;
    const char *id;
    size_t idlen;
    uint64_t seq;
    owner_t *o;

    (void)val;
    if (moor_hints_key_decode(key, klen, &id, &idlen, &seq))
        return 0; /* not ours to count; replay never reaches it either */
    if (!(o = owner_get(h, id, idlen, 1))) {
        r->err = MOOR_ENOMEM;
        return 1;
    }
    o->count++;
    o->bytes += klen + vlen;
    h->pending++;
    h->bytes += klen + vlen;
    if (seq > h->seq)
        h->seq = seq;
    return 0;
}

int moor_hints_new(const moor_hints_opts_t *o, moor_hints_t **out)
{
    moor_hints_t *h;
    rebuild_t r;
    int rc;

    *out = NULL;
    if (!o->clock.now_ms || !o->clock.timer_start || !o->clock.timer_stop ||
        !o->transport.request || !o->store.get || !o->store.put || !o->store.del ||
        !o->store.scan)
        return moor_diag(MOOR_EINVAL, "hints: clock, transport and store (get, put, del, scan) "
                                      "are required");
    if (!o->node_id || o->idlen == 0 || o->idlen > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EINVAL, "hints: node id of %zu bytes (1..%d)", o->idlen,
                         MOOR_RING_ID_MAX);
    if (!(h = calloc(1, sizeof(*h))))
        return MOOR_ENOMEM;
    memcpy(h->id, o->node_id, o->idlen);
    h->idlen = o->idlen;
    h->clock = o->clock;
    h->tr = o->transport;
    h->store = o->store;
    h->window_ms = o->window_ms ? o->window_ms : MOOR_HINTS_WINDOW_MS;
    h->max_bytes = o->max_bytes ? o->max_bytes : MOOR_HINTS_MAX_BYTES;
    h->rate = o->rate_bytes_s ? o->rate_bytes_s : MOOR_HINTS_RATE;
    h->batch = o->batch ? o->batch : MOOR_HINTS_BATCH;
    h->timeout_ms = o->timeout_ms ? o->timeout_ms : MOOR_HINTS_TIMEOUT_MS;
    h->dropped = o->dropped;
    h->dropped_ud = o->dropped_ud;
    h->refs = 1;
    h->refilled = h->clock.now_ms(h->clock.ud);
    h->sweep_ms = h->window_ms / 8;
    if (h->sweep_ms < 10)
        h->sweep_ms = 10;
    if (h->sweep_ms > 60000)
        h->sweep_ms = 60000;
    r = (rebuild_t){h, 0};
    rc = h->store.scan(h->store.ud, MOOR_HINTS_PREFIX, MOOR_HINTS_PREFIX_LEN, NULL, 0, 0,
                       rebuild_fn, &r);
    if (rc || r.err) {
        moor_hints_free(h);
        return moor_diag_wrap(rc ? rc : r.err, rc ? rc : r.err, "hints: reading the stored hints");
    }
    h->sweep_timer = h->clock.timer_start(h->clock.ud, 0, sweep, h);
    *out = h;
    return 0;
}

void moor_hints_free(moor_hints_t *h)
{
    owner_t *o;

    if (!h)
        return;
    h->closed = 1;
    if (h->sweep_timer)
        h->clock.timer_stop(h->clock.ud, h->sweep_timer);
    while ((o = h->owners)) {
        h->owners = o->next;
        if (o->timer)
            h->clock.timer_stop(h->clock.ud, o->timer);
        moor_buf_free(&o->cursor);
        moor_buf_free(&o->low);
        free(o);
    }
    hints_unref(h);
}

int moor_hints_add(moor_hints_t *h, const char *owner, size_t olen, const char *space, size_t slen,
                   const char *key, size_t klen, const char *rec, size_t rlen,
                   moor_store_done_fn done, void *arg)
{
    char hkey[HINT_KEY_MAX];
    size_t hklen;
    uint64_t size;
    owner_t *o;
    int rc;

    if (olen == 0 || olen > MOOR_RING_ID_MAX)
        return moor_diag(MOOR_EINVAL, "hint: owner id of %zu bytes (1..%d)", olen,
                         MOOR_RING_ID_MAX);
    if (olen == h->idlen && memcmp(owner, h->id, olen) == 0)
        return moor_diag(MOOR_EINVAL, "hint: the owner is this node");
    if (slen > MOOR_SPACE_MAX)
        return moor_diag(MOOR_EINVAL, "hint: space name of %zu bytes (at most %d)", slen,
                         MOOR_SPACE_MAX);
    moor_buf_reset(&h->scratch);
    if ((rc = encode_value(&h->scratch, h->clock.now_ms(h->clock.ud), space, slen, key, klen, rec,
                           rlen)))
        return rc;
    hklen = owner_prefix(owner, olen, hkey);
    put_be64(hkey + hklen, h->seq + 1);
    hklen += 8;
    size = hklen + h->scratch.len;
    if (size > h->max_bytes)
        return moor_diag(MOOR_ENOSPC, "hint: %llu bytes, over the %llu bytes kept per owner",
                         (unsigned long long)size, (unsigned long long)h->max_bytes);
    if (!(o = owner_get(h, owner, olen, 1)))
        return MOOR_ENOMEM;
    if (o->bytes + size > h->max_bytes) {
        moor_buf_t val = MOOR_BUF_INIT; /* make_room reuses scratch */
        if (moor_buf_append(&val, h->scratch.data, h->scratch.len)) {
            moor_buf_free(&val);
            return MOOR_ENOMEM;
        }
        rc = make_room(o, size);
        moor_buf_reset(&h->scratch);
        if (rc == 0)
            rc = moor_buf_append(&h->scratch, val.data, val.len);
        moor_buf_free(&val);
        if (rc)
            return rc;
    }
    if ((rc = h->store.put(h->store.ud, hkey, hklen, h->scratch.data, h->scratch.len, done, arg)))
        return rc;
    h->seq++;
    o->count++;
    o->bytes += size;
    h->pending++;
    h->bytes += size;
    h->stored++;
    schedule(o, 0);
    return 0;
}

void moor_hints_owner_up(moor_hints_t *h, const char *owner, size_t olen)
{
    owner_t *o = owner_get(h, owner, olen, 1);

    if (!o || o->up)
        return;
    o->up = 1;
    o->backoff = 0;
    if (o->count)
        schedule(o, 0);
}

void moor_hints_owner_down(moor_hints_t *h, const char *owner, size_t olen)
{
    owner_t *o = owner_get(h, owner, olen, 0);

    if (!o)
        return;
    o->up = 0;
    if (o->timer) {
        h->clock.timer_stop(h->clock.ud, o->timer);
        o->timer = 0;
    }
}

void moor_hints_stats(const moor_hints_t *h, moor_hints_stats_t *out)
{
    out->pending = h->pending;
    out->bytes = h->bytes;
    out->stored = h->stored;
    out->delivered = h->delivered;
    out->dropped = h->ndropped;
}
