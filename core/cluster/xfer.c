/*
 * xfer.c -- streams that move ranges when members join and leave (see
 * xfer.h).
 *
 * Design: a move is a walk over this node's tokens, one step per token.
 * A step's work is a set of units, one per (range, peer) whose keyspaces
 * change owner between the ring before the step and the ring after it;
 * a unit is a loop of pages (pull: ask the source, merge what comes;
 * push: scan locally, send, wait for the ack) whose cursor is the last
 * engine key acknowledged.  The step ends when every unit is done; then
 * the new count of inactive tokens is saved and published, and the next
 * step is computed on the member table as it is then.  Steps that move
 * nothing are taken together and published once.
 */
#include "xfer.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/mp.h"

#define PAGE_ITEMS_MAX 4096
#define RETRY_MIN_MS 250
#define RETRY_MAX_MS 8000
#define LIVE_MS 5000 /* a range that moved a page within this long is live */
#define PULL_PAGE_MAX (8u << 20)

typedef struct peer_id {
    uint8_t len;
    char id[MOOR_RING_ID_MAX];
} peer_id_t;

typedef struct unit {
    uint64_t lo, hi;
    uint64_t smask; /* keyspaces (bits of x->spaces) */
    int push;       /* 1: this node sends to peer[0]; 0: pulls from peer[cur] */
    uint32_t npeers, cur;
    peer_id_t peer[MOOR_COORD_N_MAX];
    moor_buf_t cursor; /* last engine key acknowledged; empty: from the start */
    int done, running, counted;
    uint64_t keys_total, bytes_total; /* UINT64_MAX until known */
    uint64_t keys_done, bytes_done;
    uint64_t started_ms, last_ms;
    uint32_t backoff_ms;
    uint64_t timer;      /* the next page waits (bucket or backoff) */
    struct wake *wake;   /* the timer's argument */
} unit_t;

typedef struct wake {
    moor_xfer_t *x;
    uint64_t gen;
    uint32_t i;
} wake_t;

struct moor_xfer {
    moor_xfer_opts_t o;
    moor_xfer_space_t *spaces;
    char *id;
    moor_members_t table;
    int have_table;
    int state;
    uint32_t vnodes, inactive;
    unit_t *units;
    uint32_t nunits, ndone, running;
    int step_ready, settled, counted;
    uint64_t gen;      /* bumped when the units are replaced: late replies are dropped */
    uint64_t bucket;   /* clock time from which the next page may go */
    uint64_t t_kick;   /* kick timer */
    uint32_t refs;     /* 1 + timers and requests in flight */
    int dead;
    /* cleanup of ranges handed off */
    uint64_t t_clean;      /* the delay, then the paced scan's ticks */
    uint64_t clean_sig;    /* ring signature the scan under way works for */
    uint64_t cleaned_sig;  /* that of the last finished cleanup (saved) */
    int clean_loaded;
    moor_ring_t *clean_ring;
    moor_buf_t clean_cursor;
    /* progress restored by moor_xfer_load for the first step computed */
    uint32_t nresume;
    struct resume {
        uint64_t lo, hi, smask;
        int done, push;
        peer_id_t peer; /* the unit's first peer */
        moor_buf_t cursor;
    } *resume;
    int resume_state;        /* the move and step the saved progress is of */
    uint32_t resume_inactive;
    moor_xfer_stats_t st;
};

/* ---- small helpers ------------------------------------------------------------------ */

static void xlog(moor_xfer_t *x, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void xlog(moor_xfer_t *x, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (!x->o.log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    x->o.log(x->o.ud, level, msg);
}

static uint64_t now_ms(const moor_xfer_t *x)
{
    return x->o.clock.now_ms(x->o.clock.ud);
}

static void unref(moor_xfer_t *x)
{
    if (--x->refs == 0) {
        free(x->spaces);
        free(x->id);
        moor_members_free(&x->table);
        moor_ring_free(x->clean_ring);
        moor_buf_free(&x->clean_cursor);
        free(x->units);
        free(x->resume);
        free(x);
    }
}

static void store_done_quiet(void *arg, int status)
{
    (void)arg;
    (void)status;
}

/* The parts of an engine key (be64 token | u8 slen | space | key); -1 for
 * a key that is no record's (the internal ff x 8 | 00 block). */
static int key_parts(const char *key, size_t klen, uint64_t *token, const char **space,
                     size_t *slen)
{
    size_t sl;

    if (klen < 9 || (sl = (unsigned char)key[8]) == 0 || klen < 9 + sl)
        return -1;
    *token = moor_dec_be64(key);
    *space = key + 9;
    *slen = sl;
    return 0;
}

static int space_find(const moor_xfer_t *x, const char *s, size_t slen)
{
    for (uint32_t i = 0; i < x->o.nspaces; i++)
        if (x->spaces[i].nlen == slen && memcmp(x->spaces[i].name, s, slen) == 0)
            return (int)i;
    return -1;
}

static int in_range(uint64_t lo, uint64_t hi, uint64_t token)
{
    if (lo < hi)
        return token > lo && token <= hi;
    return lo == hi || token > lo || token <= hi;
}

static int same_id(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && memcmp(a, b, al) == 0;
}

static int is_self(const moor_xfer_t *x, const char *id, size_t len)
{
    return same_id(id, len, x->o.node_id, x->o.idlen);
}

/* ---- rings -------------------------------------------------------------------------- */

/* The ring of table t with member id's inactive tokens set to inactive
 * (and its status to status unless status < 0).  0 or an error. */
static int ring_with(const moor_members_t *t, const char *id, size_t idlen, int status,
                     uint32_t inactive, moor_ring_t **out)
{
    moor_member_t *m = malloc((t->n ? t->n : 1) * sizeof(*m));
    int rc;

    if (!m)
        return MOOR_ENOMEM;
    for (uint32_t i = 0; i < t->n; i++) {
        m[i] = t->e[i].m;
        if (same_id(m[i].id, m[i].idlen, id, idlen)) {
            m[i].inactive = inactive;
            if (status >= 0)
                m[i].status = status;
        }
    }
    rc = moor_ring_build(m, t->n, out);
    free(m);
    return rc;
}

static int in_motion(const moor_member_entry_t *e)
{
    if (e->m.status == MOOR_MEMBER_JOINING)
        return e->m.inactive > 0;
    return e->m.status == MOOR_MEMBER_LEAVING;
}

int moor_xfer_pending_rings(const moor_members_t *t, moor_ring_t **out, uint32_t max,
                            uint32_t *n)
{
    moor_member_t *all;
    uint32_t moving = 0;
    int rc = 0;

    *n = 0;
    if (t->n == 0 || max == 0)
        return 0;
    if (!(all = malloc(t->n * sizeof(*all))))
        return MOOR_ENOMEM;
    for (uint32_t i = 0; i < t->n; i++) {
        all[i] = t->e[i].m;
        if (!in_motion(&t->e[i]))
            continue;
        moving++;
        if (all[i].status == MOOR_MEMBER_JOINING)
            all[i].inactive = 0;
        else
            all[i].inactive = all[i].vnodes;
    }
    if (moving > 1 && moor_ring_build(all, t->n, &out[*n]) == 0)
        (*n)++; /* every move finished: first, so a cap never drops it */
    for (uint32_t i = 0; i < t->n && *n < max && moving; i++) {
        const moor_member_entry_t *e = &t->e[i];
        if (!in_motion(e))
            continue;
        rc = ring_with(t, e->m.id, e->m.idlen, -1,
                       e->m.status == MOOR_MEMBER_JOINING ? 0 : e->m.vnodes, &out[*n]);
        if (rc == 0)
            (*n)++;
        else if (rc != MOOR_EINVAL) /* a ring nobody is on: nothing to send to */
            break;
        rc = 0;
    }
    free(all);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

double moor_xfer_moved_share(const moor_ring_t *a, const moor_ring_t *b, uint32_t n)
{
    uint32_t na = moor_ring_vnode_count(a), nb = moor_ring_vnode_count(b), k = 0;
    uint64_t *tok = malloc(((size_t)na + nb) * sizeof(*tok)), t, prev;
    uint32_t la[MOOR_COORD_N_MAX], lb[MOOR_COORD_N_MAX], ca, cb;
    long double moved = 0;

    if (!tok || n == 0 || n > MOOR_COORD_N_MAX) {
        free(tok);
        return 0;
    }
    for (uint32_t i = 0; i < na; i++)
        if (moor_ring_vnode(a, i, &tok[k], &ca) == 0)
            k++;
    for (uint32_t i = 0; i < nb; i++)
        if (moor_ring_vnode(b, i, &tok[k], &cb) == 0)
            k++;
    qsort(tok, k, sizeof(*tok), cmp_u64);
    prev = k ? tok[k - 1] : 0;
    for (uint32_t i = 0; i < k; i++) {
        uint64_t width;
        t = tok[i];
        width = t - prev; /* wraps for the first interval */
        prev = t;
        if (width == 0)
            continue;
        if (moor_ring_preference_list(a, t, n, la, &ca) ||
            moor_ring_preference_list(b, t, n, lb, &cb))
            continue;
        for (uint32_t j = 0; j < cb; j++) {
            const moor_member_t *m = moor_ring_member(b, lb[j]);
            int found = 0;
            for (uint32_t q = 0; q < ca && !found; q++) {
                const moor_member_t *o = moor_ring_member(a, la[q]);
                found = same_id(m->id, m->idlen, o->id, o->idlen);
            }
            if (!found)
                moved += (long double)width;
        }
    }
    free(tok);
    return (double)(moved / ((long double)n * 18446744073709551616.0L));
}

/* ---- saved progress ----------------------------------------------------------------- */

static void save(moor_xfer_t *x)
{
    moor_buf_t b = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc = 0;

    moor_mp_packer_init(&pk, &b);
    rc |= msgpack_pack_array(&pk, 5);
    rc |= msgpack_pack_uint32(&pk, 1);
    rc |= msgpack_pack_uint32(&pk, (uint32_t)x->state);
    rc |= msgpack_pack_uint32(&pk, x->vnodes);
    rc |= msgpack_pack_uint32(&pk, x->inactive);
    rc |= msgpack_pack_array(&pk, x->step_ready ? x->nunits : 0);
    for (uint32_t i = 0; x->step_ready && i < x->nunits; i++) {
        const unit_t *u = &x->units[i];
        rc |= msgpack_pack_array(&pk, 7);
        rc |= msgpack_pack_uint64(&pk, u->lo);
        rc |= msgpack_pack_uint64(&pk, u->hi);
        rc |= msgpack_pack_bin_with_body(&pk, u->cursor.data, u->cursor.len);
        rc |= u->done ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        rc |= u->push ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        rc |= msgpack_pack_bin_with_body(&pk, u->peer[0].id, u->peer[0].len);
        rc |= msgpack_pack_uint64(&pk, u->smask);
    }
    if (rc == 0)
        rc = x->o.store.put(x->o.store.ud, MOOR_XFER_KEY, MOOR_XFER_KEY_LEN, b.data, b.len,
                            store_done_quiet, NULL);
    if (rc)
        xlog(x, 2, "transfer: cannot save progress: %s", moor_strerror(rc));
    moor_buf_free(&b);
}

int moor_xfer_load(moor_xfer_t *x, int *state, uint32_t *inactive)
{
    moor_buf_t b = MOOR_BUF_INIT;
    const char *p, *end;
    uint32_t n;
    uint64_t v, st, vn, in;
    int rc = x->o.store.get(x->o.store.ud, MOOR_XFER_KEY, MOOR_XFER_KEY_LEN, &b);

    *state = MOOR_XFER_IDLE;
    *inactive = 0;
    if (rc == MOOR_ENOTFOUND) {
        moor_buf_free(&b);
        return 0;
    }
    if (rc) {
        moor_buf_free(&b);
        return rc;
    }
    p = b.data;
    end = b.data + b.len;
    if (moor_mp_read_array(&p, end, &n) || n < 5 || moor_mp_read_uint(&p, end, &v) || v != 1 ||
        moor_mp_read_uint(&p, end, &st) || st > MOOR_XFER_LEFT ||
        moor_mp_read_uint(&p, end, &vn) || moor_mp_read_uint(&p, end, &in) || in > vn ||
        moor_mp_read_array(&p, end, &n) || n > 1u << 20) {
        xlog(x, 2, "transfer: saved progress is damaged; ignoring it");
        moor_buf_free(&b);
        return 0;
    }
    free(x->resume);
    x->resume = calloc(n ? n : 1, sizeof(*x->resume));
    x->nresume = 0;
    for (uint32_t i = 0; x->resume && i < n; i++) {
        struct resume *r = &x->resume[x->nresume];
        uint32_t k, cl, pl;
        const char *c, *pid;
        int d, push;
        if (moor_mp_read_array(&p, end, &k) || k < 7 || moor_mp_read_uint(&p, end, &r->lo) ||
            moor_mp_read_uint(&p, end, &r->hi) || moor_mp_read_bin(&p, end, &c, &cl) ||
            moor_mp_read_bool(&p, end, &d) || moor_mp_read_bool(&p, end, &push) ||
            moor_mp_read_bin(&p, end, &pid, &pl) || pl == 0 || pl > MOOR_RING_ID_MAX ||
            moor_mp_read_uint(&p, end, &r->smask))
            break;
        for (uint32_t q = 7; q < k; q++)
            moor_mp_skip(&p, end, 8);
        r->done = d;
        r->push = push;
        r->peer.len = (uint8_t)pl;
        memcpy(r->peer.id, pid, pl);
        moor_buf_init(&r->cursor);
        if (moor_buf_append(&r->cursor, c, cl))
            break;
        x->nresume++;
    }
    *state = (int)st;
    *inactive = (uint32_t)in;
    x->resume_state = (int)st;
    x->resume_inactive = (uint32_t)in;
    moor_buf_free(&b);
    return 0;
}

/* ---- steps -------------------------------------------------------------------------- */

static void kick(moor_xfer_t *x);
static void unit_go(moor_xfer_t *x, uint32_t i);

static void kick_cb(void *arg)
{
    moor_xfer_t *x = arg;

    x->t_kick = 0;
    if (!x->dead)
        kick(x);
    unref(x);
}

static void kick_later(moor_xfer_t *x, uint64_t ms)
{
    if (x->dead || x->t_kick)
        return;
    x->refs++;
    x->t_kick = x->o.clock.timer_start(x->o.clock.ud, ms, kick_cb, x);
    if (!x->t_kick)
        x->refs--;
}

static void free_units(moor_xfer_t *x)
{
    for (uint32_t i = 0; i < x->nunits; i++) {
        unit_t *u = &x->units[i];
        if (u->timer) {
            x->o.clock.timer_stop(x->o.clock.ud, u->timer);
            u->timer = 0;
            free(u->wake);
            x->refs--; /* the timer's reference */
        }
        moor_buf_free(&u->cursor);
    }
    free(x->units);
    x->units = NULL;
    x->nunits = x->ndone = x->running = 0;
    x->step_ready = 0;
    x->gen++;
}

/* Adds space s of range (lo, hi] with peers to the step's units (one
 * unit per range and first peer). */
static int add_unit(moor_xfer_t *x, uint32_t *cap, uint64_t lo, uint64_t hi, uint32_t s, int push,
                    const peer_id_t *peers, uint32_t np)
{
    unit_t *u;

    for (uint32_t i = 0; i < x->nunits; i++) {
        u = &x->units[i];
        int same = u->lo == lo && u->hi == hi && u->push == push && u->npeers == np;
        for (uint32_t k = 0; same && k < np; k++) /* the same sources, in the same order */
            same = same_id(u->peer[k].id, u->peer[k].len, peers[k].id, peers[k].len);
        if (same) {
            u->smask |= 1ull << s;
            return 0;
        }
    }
    if (x->nunits == *cap) {
        uint32_t nc = *cap ? *cap * 2 : 16;
        unit_t *nu = realloc(x->units, nc * sizeof(*nu));
        if (!nu)
            return MOOR_ENOMEM;
        x->units = nu;
        *cap = nc;
    }
    u = &x->units[x->nunits++];
    memset(u, 0, sizeof(*u));
    u->lo = lo;
    u->hi = hi;
    u->smask = 1ull << s;
    u->push = push;
    u->npeers = np;
    memcpy(u->peer, peers, np * sizeof(*peers));
    u->keys_total = u->bytes_total = UINT64_MAX;
    moor_buf_init(&u->cursor);
    return 0;
}

static int self_in(const moor_xfer_t *x, const moor_ring_t *r, const uint32_t *l, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const moor_member_t *m = moor_ring_member(r, l[i]);
        if (is_self(x, m->id, m->idlen))
            return 1;
    }
    return 0;
}

/* The units of moving from ring a to ring b (join: this node gains in b;
 * leave: it loses in b) into x->units.  0 or an error. */
static int diff_units(moor_xfer_t *x, const moor_ring_t *a, const moor_ring_t *b, int leave)
{
    const moor_ring_t *fine = leave ? a : b; /* the ring with more tokens */
    uint32_t nv = moor_ring_vnode_count(fine), cap = 0, la[MOOR_COORD_N_MAX],
             lb[MOOR_COORD_N_MAX], ca, cb;
    uint64_t lo, hi;
    int rc;

    for (uint32_t v = 0; v < nv; v++) {
        if ((rc = moor_ring_range_of(fine, v, &lo, &hi)) < 0)
            return rc;
        if (rc == 0)
            continue;
        for (uint32_t s = 0; s < x->o.nspaces; s++) {
            uint32_t n = x->spaces[s].n;
            peer_id_t peers[MOOR_COORD_N_MAX];
            uint32_t np = 0;
            if (n == 0 || n > MOOR_COORD_N_MAX ||
                moor_ring_preference_list(a, hi, n, la, &ca) ||
                moor_ring_preference_list(b, hi, n, lb, &cb))
                continue;
            if (!leave) {
                if (!self_in(x, b, lb, cb) || self_in(x, a, la, ca))
                    continue;
                /* sources: the owner that loses the range (it has every
                 * write the range got, and its cleanup drops them later),
                 * then a's other owners that are up, then the rest */
                for (int pass = 0; pass < 3; pass++)
                    for (uint32_t j = 0; j < ca; j++) {
                        const moor_member_t *m = moor_ring_member(a, la[j]);
                        int good = m->status != MOOR_MEMBER_DOWN && m->status != MOOR_MEMBER_SUSPECT;
                        int loses = 1, dup = 0;
                        for (uint32_t q = 0; q < cb && loses; q++) {
                            const moor_member_t *o = moor_ring_member(b, lb[q]);
                            loses = !same_id(o->id, o->idlen, m->id, m->idlen);
                        }
                        for (uint32_t q = 0; q < np && !dup; q++)
                            dup = same_id(peers[q].id, peers[q].len, m->id, m->idlen);
                        if (is_self(x, m->id, m->idlen) || dup ||
                            (pass == 0 && !(loses && good)) || (pass == 1 && !good))
                            continue;
                        peers[np].len = m->idlen;
                        memcpy(peers[np++].id, m->id, m->idlen);
                    }
                if (np == 0)
                    continue;
                if ((rc = add_unit(x, &cap, lo, hi, s, 0, peers, np)))
                    return rc;
                continue;
            }
            if (!self_in(x, a, la, ca) || self_in(x, b, lb, cb))
                continue;
            for (uint32_t j = 0; j < cb; j++) { /* every member that gains the range */
                const moor_member_t *m = moor_ring_member(b, lb[j]);
                int had = 0;
                for (uint32_t q = 0; q < ca && !had; q++) {
                    const moor_member_t *o = moor_ring_member(a, la[q]);
                    had = same_id(o->id, o->idlen, m->id, m->idlen);
                }
                if (had)
                    continue;
                peers[0].len = m->idlen;
                memcpy(peers[0].id, m->id, m->idlen);
                if ((rc = add_unit(x, &cap, lo, hi, s, 1, peers, 1)))
                    return rc;
            }
        }
    }
    return 0;
}

/* Rings before and after the next step. */
static int step_rings(moor_xfer_t *x, uint32_t inactive, moor_ring_t **a, moor_ring_t **b)
{
    int leave = x->state == MOOR_XFER_LEAVING, rc;
    uint32_t next = leave ? inactive + 1 : inactive - 1;

    *a = *b = NULL;
    if ((rc = ring_with(&x->table, x->o.node_id, x->o.idlen, -1, inactive, a)) &&
        rc != MOOR_EINVAL)
        return rc;
    if ((rc = ring_with(&x->table, x->o.node_id, x->o.idlen, -1, next, b))) {
        moor_ring_free(*a);
        *a = NULL;
        return rc;
    }
    return 0;
}

/* Ranges of every step left, for the progress figures.  REQUIRES: no
 * step ready (the units are computed and dropped here). */
static void count_total(moor_xfer_t *x)
{
    int leave = x->state == MOOR_XFER_LEAVING;
    uint64_t total = 0;

    for (uint32_t k = x->inactive; leave ? k < x->vnodes : k > 0; leave ? k++ : k--) {
        moor_ring_t *a, *b;
        if (step_rings(x, k, &a, &b))
            break;
        /* the step's units as they will be made (keyspaces that share
         * a range and its peers are one unit); none is in flight now */
        if (a && diff_units(x, a, b, leave) == 0)
            total += x->nunits;
        free_units(x);
        moor_ring_free(a);
        moor_ring_free(b);
    }
    x->st.ranges_total = x->st.ranges_done + total;
}

static void publish(moor_xfer_t *x)
{
    int status = x->state == MOOR_XFER_JOINING   ? MOOR_MEMBER_JOINING
                 : x->state == MOOR_XFER_LEAVING ? MOOR_MEMBER_LEAVING
                 : x->state == MOOR_XFER_LEFT    ? MOOR_MEMBER_LEFT
                                                 : MOOR_MEMBER_UP;
    int rc = x->o.publish(x->o.ud, status, x->inactive);

    if (rc)
        xlog(x, 2, "transfer: cannot publish this node's tokens: %s", moor_diag_msg(rc));
}

static void finish(moor_xfer_t *x, int state)
{
    int was = x->state;

    free_units(x);
    x->state = state;
    x->st.finished_ms = now_ms(x);
    save(x);
    publish(x);
    xlog(x, 1, "transfer: %s done: %llu ranges, %llu keys and %llu bytes received, %llu keys and "
               "%llu bytes sent in %.1f s",
         was == MOOR_XFER_JOINING ? "join" : "leave", (unsigned long long)x->st.ranges_done,
         (unsigned long long)x->st.keys_received, (unsigned long long)x->st.bytes_received,
         (unsigned long long)x->st.keys_sent, (unsigned long long)x->st.bytes_sent,
         (double)(x->st.finished_ms - x->st.started_ms) / 1000.0);
}

/* Restores the progress of a step a restart interrupted. */
static void apply_resume(moor_xfer_t *x)
{
    for (uint32_t i = 0; i < x->nresume; i++) {
        struct resume *r = &x->resume[i];
        for (uint32_t j = 0; j < x->nunits; j++) {
            unit_t *u = &x->units[j];
            if (u->lo != r->lo || u->hi != r->hi || u->push != r->push || u->smask != r->smask ||
                !same_id(u->peer[0].id, u->peer[0].len, r->peer.id, r->peer.len))
                continue;
            u->done = r->done;
            u->cursor.len = 0;
            moor_buf_append(&u->cursor, r->cursor.data, r->cursor.len);
        }
        moor_buf_free(&r->cursor);
    }
    x->nresume = 0;
    for (uint32_t j = 0; j < x->nunits; j++)
        x->ndone += x->units[j].done;
}

static int others_have_tokens(const moor_xfer_t *x, int *others)
{
    int any = 0;

    *others = 0;
    for (uint32_t i = 0; i < x->table.n; i++) {
        const moor_member_t *m = &x->table.e[i].m;
        if (is_self(x, m->id, m->idlen) || m->status == MOOR_MEMBER_LEFT)
            continue;
        (*others)++;
        any |= moor_member_tokens(m) > 0;
    }
    return any;
}

/* Computes the next step with work (publishing the steps without any at
 * once) and starts its units. */
static void kick(moor_xfer_t *x)
{
    int leave = x->state == MOOR_XFER_LEAVING, others, rc;
    uint32_t before = x->inactive;

    if (x->dead || (x->state != MOOR_XFER_JOINING && x->state != MOOR_XFER_LEAVING))
        return;
    if (x->step_ready) {
        for (uint32_t i = 0; i < x->nunits && x->running < x->o.p.concurrency; i++)
            if (!x->units[i].done && !x->units[i].running && !x->units[i].timer)
                unit_go(x, i);
        return;
    }
    if (!x->have_table || x->t_kick)
        return; /* no table yet, or waiting (settle, retry): the timer kicks */
    if (!leave && !others_have_tokens(x, &others)) {
        if (others == 0)
            return; /* not heard from the cluster yet: wait for the table */
        if (!x->settled) {
            /* maybe only another new member answered so far: look again
             * once the table had time to fill */
            x->settled = 1;
            kick_later(x, x->o.p.settle_ms);
            return;
        }
        xlog(x, 1, "transfer: no other member owns a token (a new cluster): all %u tokens on",
             x->vnodes);
        x->inactive = 0;
        finish(x, MOOR_XFER_IDLE);
        return;
    }
    if (!x->settled) {
        x->settled = 1;
        kick_later(x, x->o.p.settle_ms);
        return;
    }
    if (!x->counted) { /* the table is complete by now */
        count_total(x);
        x->counted = 1;
    }
    for (;;) {
        moor_ring_t *a, *b;
        if (leave ? x->inactive >= x->vnodes : x->inactive == 0) {
            finish(x, leave ? MOOR_XFER_LEFT : MOOR_XFER_IDLE);
            return;
        }
        if ((rc = step_rings(x, x->inactive, &a, &b))) {
            xlog(x, 2, "transfer: cannot compute the next step: %s; retrying",
                 moor_diag_msg(rc));
            kick_later(x, RETRY_MAX_MS);
            break;
        }
        free_units(x);
        rc = a ? diff_units(x, a, b, leave) : 0;
        moor_ring_free(a);
        moor_ring_free(b);
        if (rc) {
            free_units(x);
            xlog(x, 2, "transfer: cannot compute the next step: %s", moor_strerror(rc));
            kick_later(x, RETRY_MAX_MS);
            break;
        }
        x->step_ready = 1;
        if (x->nresume)
            apply_resume(x);
        if (x->ndone < x->nunits)
            break;
        x->st.ranges_done += x->nunits - x->ndone;
        free_units(x);
        x->inactive = leave ? x->inactive + 1 : x->inactive - 1;
    }
    if (x->inactive != before) {
        save(x);
        publish(x);
    }
    if (x->step_ready) {
        save(x);
        for (uint32_t i = 0; i < x->nunits && x->running < x->o.p.concurrency; i++)
            if (!x->units[i].done && !x->units[i].running)
                unit_go(x, i);
    }
}

static void step_done(moor_xfer_t *x)
{
    int leave = x->state == MOOR_XFER_LEAVING;

    free_units(x);
    x->inactive = leave ? x->inactive + 1 : x->inactive - 1;
    save(x);
    publish(x);
    kick(x);
}

/* ---- units -------------------------------------------------------------------------- */

typedef struct req {
    moor_xfer_t *x;
    uint64_t gen;
    uint32_t unit;
    uint32_t pending; /* merges not yet durable */
    int failed, replied, more;
    uint32_t n;
    uint64_t bytes;
    moor_buf_t last; /* last key of the page */
} req_t;

static void unit_page_done(moor_xfer_t *x, uint32_t i, const moor_buf_t *last, uint32_t n,
                           uint64_t bytes, int more);
static void unit_failed(moor_xfer_t *x, uint32_t i, int status, const char *why);

static int pack_spaces(const moor_xfer_t *x, uint64_t mask, msgpack_packer *pk)
{
    int rc = 0;
    uint32_t n = 0;

    for (uint32_t s = 0; s < x->o.nspaces; s++)
        n += (mask >> s) & 1;
    rc |= msgpack_pack_array(pk, n);
    for (uint32_t s = 0; s < x->o.nspaces; s++)
        if ((mask >> s) & 1)
            rc |= msgpack_pack_str_with_body(pk, x->spaces[s].name, x->spaces[s].nlen);
    return rc;
}

/* A page request's map of nfields, begun with {spaces, lo, hi}. */
static int pack_range(const moor_xfer_t *x, const unit_t *u, uint32_t nfields, msgpack_packer *pk)
{
    int rc = msgpack_pack_map(pk, nfields);

    rc |= msgpack_pack_str_with_body(pk, "spaces", 6);
    rc |= pack_spaces(x, u->smask, pk);
    rc |= msgpack_pack_str_with_body(pk, "lo", 2);
    rc |= msgpack_pack_uint64(pk, u->lo);
    rc |= msgpack_pack_str_with_body(pk, "hi", 2);
    rc |= msgpack_pack_uint64(pk, u->hi);
    return rc;
}

/* Calls fn for the records of the spaces in mask with tokens in (lo, hi],
 * in store order, after the engine key after (empty: from the start),
 * until fn returns nonzero. */
typedef int (*rec_fn)(void *arg, const char *key, size_t klen, const char *rec, size_t rlen);

typedef struct scan_ctx {
    const moor_xfer_t *x;
    uint64_t mask, last;
    rec_fn fn;
    void *arg;
    int stopped;
} scan_ctx_t;

static int scan_cb(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    scan_ctx_t *sc = arg;
    uint64_t token;
    const char *sp;
    size_t sl;
    int s;

    if (key_parts(key, klen, &token, &sp, &sl))
        return 0;
    if (token > sc->last)
        return 1;
    if ((s = space_find(sc->x, sp, sl)) < 0 || !((sc->mask >> s) & 1))
        return 0;
    if (sc->fn(sc->arg, key, klen, val, vlen)) {
        sc->stopped = 1;
        return 1;
    }
    return 0;
}

static int scan_range(const moor_xfer_t *x, uint64_t mask, uint64_t lo, uint64_t hi,
                      const char *after, size_t alen, rec_fn fn, void *arg)
{
    scan_ctx_t sc = {x, mask, 0, fn, arg, 0};
    struct {
        uint64_t a, b;
    } part[2];
    int np = 0, rc;

    if (lo == hi) {
        part[np].a = 0, part[np++].b = UINT64_MAX;
    } else if (lo < hi) {
        part[np].a = lo + 1, part[np++].b = hi;
    } else {
        if (lo != UINT64_MAX)
            part[np].a = lo + 1, part[np++].b = UINT64_MAX;
        part[np].a = 0, part[np++].b = hi;
    }
    for (int i = 0; i < np && !sc.stopped; i++) {
        moor_buf_t f = MOOR_BUF_INIT;
        char from[8];
        if (alen >= 8) {
            uint64_t at = moor_dec_be64(after);
            if (at < part[i].a || at > part[i].b)
                continue; /* the cursor is in a later part */
            rc = moor_buf_append(&f, after, alen) || moor_buf_append(&f, "", 1) ? MOOR_ENOMEM : 0;
            alen = 0;
        } else {
            moor_enc_be64(from, part[i].a);
            rc = moor_buf_append(&f, from, 8) ? MOOR_ENOMEM : 0;
        }
        sc.last = part[i].b;
        if (rc == 0)
            rc = x->o.store.scan(x->o.store.ud, "", 0, f.data, f.len, 0, scan_cb, &sc);
        moor_buf_free(&f);
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct page {
    msgpack_packer pk;
    moor_buf_t items;
    moor_buf_t last;
    uint32_t n, max_items;
    uint64_t bytes, max_bytes;
    int more;
} page_t;

static int page_cb(void *arg, const char *key, size_t klen, const char *rec, size_t rlen)
{
    page_t *pg = arg;

    if (pg->n >= pg->max_items || (pg->n && pg->bytes + klen + rlen > pg->max_bytes)) {
        pg->more = 1;
        return 1;
    }
    msgpack_pack_array(&pg->pk, 2);
    msgpack_pack_bin_with_body(&pg->pk, key, klen);
    msgpack_pack_bin_with_body(&pg->pk, rec, rlen);
    pg->n++;
    pg->bytes += klen + rlen;
    pg->last.len = 0;
    moor_buf_append(&pg->last, key, klen);
    return 0;
}

/* A range's totals for the progress figures, counted only up to
 * COUNT_MAX keys: the count runs on the loop, and a bigger range goes
 * without totals (and an ETA) rather than hold it. */
#define COUNT_MAX 65536

typedef struct count {
    uint64_t keys, bytes;
    int partial; /* stopped at COUNT_MAX */
} count_t;

static int count_cb(void *arg, const char *key, size_t klen, const char *rec, size_t rlen)
{
    count_t *c = arg;

    if (c->keys == COUNT_MAX) {
        c->partial = 1;
        return 1;
    }
    c->keys++;
    c->bytes += klen + rlen;
    return 0;
}

static void req_reply(void *arg, int status, const char *res, size_t rlen);

static void unit_timer_cb(void *arg);

/* Bytes of a page: page_kb, but no more than a quarter second of the
 * rate, so that a slow rate paces in small steps (4 KiB at least). */
static uint64_t page_bytes(const moor_xfer_t *x)
{
    uint64_t page = (uint64_t)x->o.p.page_kb * 1024, quarter = (uint64_t)x->o.p.rate_kb_s * 256;

    if (x->o.p.rate_kb_s && quarter < page)
        page = quarter < 4096 ? 4096 : quarter;
    return page;
}

/* Unit i's next page waits ms.  0, or -1 when no timer could start. */
static int unit_wait(moor_xfer_t *x, uint32_t i, uint64_t ms)
{
    unit_t *u = &x->units[i];
    wake_t *w = malloc(sizeof(*w));

    if (!w)
        return -1;
    w->x = x, w->gen = x->gen, w->i = i;
    x->refs++;
    u->timer = x->o.clock.timer_start(x->o.clock.ud, ms, unit_timer_cb, w);
    if (!u->timer) {
        x->refs--;
        free(w);
        return -1;
    }
    u->wake = w;
    return 0;
}

/* Sends the next page of unit i (now, or when the bucket allows). */
static void unit_go(moor_xfer_t *x, uint32_t i)
{
    unit_t *u = &x->units[i];
    moor_buf_t params = MOOR_BUF_INIT;
    msgpack_packer pk;
    req_t *r;
    uint64_t t = now_ms(x);
    int rc = 0;

    if (!u->running) {
        u->running = 1;
        x->running++;
        if (!u->started_ms)
            u->started_ms = t;
    }
    if (x->bucket > t && unit_wait(x, i, x->bucket - t) == 0)
        return;
    if (!(r = calloc(1, sizeof(*r)))) {
        unit_failed(x, i, MOOR_ENOMEM, "no memory");
        return;
    }
    r->x = x;
    r->gen = x->gen;
    r->unit = i;
    moor_buf_init(&r->last);
    moor_mp_packer_init(&pk, &params);
    if (!u->push) {
        int count = u->keys_total == UINT64_MAX;
        rc |= pack_range(x, u, count ? 6 : 5, &pk);
        rc |= msgpack_pack_str_with_body(&pk, "after", 5);
        rc |= u->cursor.len ? msgpack_pack_bin_with_body(&pk, u->cursor.data, u->cursor.len)
                            : msgpack_pack_nil(&pk);
        rc |= msgpack_pack_str_with_body(&pk, "max_bytes", 9);
        rc |= msgpack_pack_uint64(&pk, page_bytes(x));
        if (count) {
            rc |= msgpack_pack_str_with_body(&pk, "count", 5);
            rc |= msgpack_pack_true(&pk);
        }
    } else {
        page_t pg;
        memset(&pg, 0, sizeof(pg));
        moor_buf_init(&pg.items);
        moor_buf_init(&pg.last);
        moor_mp_packer_init(&pg.pk, &pg.items);
        pg.max_items = PAGE_ITEMS_MAX;
        pg.max_bytes = page_bytes(x);
        if (u->keys_total == UINT64_MAX) {
            count_t c = {0, 0, 0};
            if (scan_range(x, u->smask, u->lo, u->hi, NULL, 0, count_cb, &c) == 0 &&
                !c.partial) {
                u->keys_total = c.keys;
                u->bytes_total = c.bytes;
            }
        }
        rc = scan_range(x, u->smask, u->lo, u->hi, u->cursor.data, u->cursor.len, page_cb, &pg);
        if (rc == 0) {
            rc |= pack_range(x, u, 4, &pk);
            rc |= msgpack_pack_str_with_body(&pk, "items", 5);
            rc |= msgpack_pack_array(&pk, pg.n);
            rc |= moor_buf_append(&params, pg.items.data, pg.items.len);
            r->n = pg.n;
            r->bytes = pg.bytes;
            r->more = pg.more;
            rc |= moor_buf_append(&r->last, pg.last.data, pg.last.len);
        }
        moor_buf_free(&pg.items);
        moor_buf_free(&pg.last);
    }
    if (rc) {
        moor_buf_free(&params);
        moor_buf_free(&r->last);
        free(r);
        unit_failed(x, i, rc < 0 ? rc : MOOR_ENOMEM, "cannot build a page");
        return;
    }
    x->refs++;
    rc = x->o.transport.request(x->o.transport.ud, u->peer[u->cur].id, u->peer[u->cur].len,
                                u->push ? "_xfer_push" : "_xfer_pull", params.data, params.len, 1,
                                x->o.p.timeout_ms, req_reply, r);
    moor_buf_free(&params);
    if (rc) {
        x->refs--;
        moor_buf_free(&r->last);
        free(r);
        unit_failed(x, i, rc, "cannot send");
    }
}

static void unit_timer_cb(void *arg)
{
    wake_t *w = arg;
    moor_xfer_t *x = w->x;

    if (!x->dead && w->gen == x->gen && w->i < x->nunits) {
        x->units[w->i].timer = 0;
        x->units[w->i].wake = NULL;
        if (!x->units[w->i].done)
            unit_go(x, w->i);
    }
    free(w);
    unref(x);
}

static void unit_failed(moor_xfer_t *x, uint32_t i, int status, const char *why)
{
    unit_t *u = &x->units[i];

    u->backoff_ms = u->backoff_ms ? u->backoff_ms * 2 : RETRY_MIN_MS;
    if (u->backoff_ms > RETRY_MAX_MS)
        u->backoff_ms = RETRY_MAX_MS;
    xlog(x, u->backoff_ms >= RETRY_MAX_MS ? 2 : 0,
         "transfer: range (%016llx, %016llx] %s %.*s: %s (%s); again in %u ms",
         (unsigned long long)u->lo, (unsigned long long)u->hi, u->push ? "to" : "from",
         (int)u->peer[u->cur].len, u->peer[u->cur].id, why, moor_strerror(status), u->backoff_ms);
    if (!u->push && u->npeers > 1)
        u->cur = (u->cur + 1) % u->npeers; /* another owner */
    if (unit_wait(x, i, u->backoff_ms)) {
        u->running = 0; /* no timer: the kick restarts it */
        x->running--;
        kick_later(x, RETRY_MAX_MS);
    }
}

static void unit_page_done(moor_xfer_t *x, uint32_t i, const moor_buf_t *last, uint32_t n,
                           uint64_t bytes, int more)
{
    unit_t *u = &x->units[i];
    uint64_t t = now_ms(x), rate = x->o.p.rate_kb_s ? (uint64_t)x->o.p.rate_kb_s * 1024 : 0;

    u->backoff_ms = 0;
    u->keys_done += n;
    u->bytes_done += bytes;
    u->last_ms = t;
    if (last->len) {
        u->cursor.len = 0;
        moor_buf_append(&u->cursor, last->data, last->len);
    }
    if (rate)
        x->bucket = (x->bucket > t ? x->bucket : t) + bytes * 1000 / rate;
    if (more && last->len) {
        save(x);
        unit_go(x, i);
        return;
    }
    if (more) { /* a page of nothing that says more: a peer in trouble */
        unit_failed(x, i, MOOR_EPROTO, "an empty page with more to come");
        return;
    }
    u->done = 1;
    u->running = 0;
    x->running--;
    x->ndone++;
    x->st.ranges_done++;
    if (x->ndone == x->nunits) {
        step_done(x);
        return;
    }
    save(x);
    kick(x);
}

static void merge_done(void *arg, int status);

static void req_finish(req_t *r)
{
    moor_xfer_t *x = r->x;

    if (!x->dead && r->gen == x->gen && r->unit < x->nunits) {
        if (r->failed)
            unit_failed(x, r->unit, MOOR_EIO, "a record could not be stored");
        else
            unit_page_done(x, r->unit, &r->last, r->n, r->bytes, r->more);
    }
    moor_buf_free(&r->last);
    free(r);
    unref(x);
}

static void merge_done(void *arg, int status)
{
    req_t *r = arg;

    if (status)
        r->failed = 1;
    if (--r->pending == 0 && r->replied)
        req_finish(r);
}

/* Checks and merges the items of a page (pull answer or push); r->pending
 * counts the merges in flight.  0, or a diagnostic for a bad page. */
static const char *merge_items(moor_xfer_t *x, const char **p, const char *end, uint64_t mask,
                               uint64_t lo, uint64_t hi, void (*done)(void *, int), void *arg,
                               uint32_t *pending, uint32_t *n, uint64_t *bytes, moor_buf_t *last)
{
    uint32_t count;
    int rc;

    if (moor_mp_read_array(p, end, &count) || count > PAGE_ITEMS_MAX * 4)
        return "items must be an array";
    for (uint32_t i = 0; i < count; i++) {
        const char *k, *rec, *sp;
        uint32_t kl, rl, two;
        uint64_t token;
        size_t sl;
        int s;
        if (moor_mp_read_array(p, end, &two) || two != 2 || moor_mp_read_bin(p, end, &k, &kl) ||
            moor_mp_read_bin(p, end, &rec, &rl))
            return "an item must be [key (bin), record (bin)]";
        if (key_parts(k, kl, &token, &sp, &sl) || !in_range(lo, hi, token) ||
            (s = space_find(x, sp, sl)) < 0 || !((mask >> s) & 1))
            return "an item's key is outside the range or its keyspaces";
        if (last) { /* the cursor passes a refused record too: no page comes twice */
            last->len = 0;
            moor_buf_append(last, k, kl);
        }
        (*pending)++;
        if ((rc = x->o.merge(x->o.merge_ud, k, kl, rec, rl, done, arg))) {
            (*pending)--;
            if (rc != MOOR_EINVAL && rc != MOOR_EBADCTX && rc != MOOR_EPROTO)
                return "a record could not be stored here now"; /* the page is asked again */
            xlog(x, 2, "transfer: a record of %u bytes was refused (%s); skipped", rl,
                 moor_diag_msg(rc));
            continue;
        }
        (*n)++;
        *bytes += kl + rl;
    }
    return NULL;
}

static void req_reply(void *arg, int status, const char *res, size_t rlen)
{
    req_t *r = arg;
    moor_xfer_t *x = r->x;
    unit_t *u;
    moor_field_t f[5] = {{"items", 0, 0}, {"more", 0, 0}, {"total_keys", 0, 0},
                         {"total_bytes", 0, 0}, {"merged", 0, 0}};
    const char *why = NULL;
    int more = 0;

    if (x->dead || r->gen != x->gen || r->unit >= x->nunits) {
        moor_buf_free(&r->last);
        free(r);
        unref(x);
        return;
    }
    u = &x->units[r->unit];
    if (status) {
        unit_failed(x, r->unit, status, "no answer");
        moor_buf_free(&r->last);
        free(r);
        unref(x);
        return;
    }
    if (u->push) {
        x->st.keys_sent += r->n;
        x->st.bytes_sent += r->bytes;
        r->replied = 1;
        r->pending = 0;
        req_finish(r);
        return;
    }
    if ((why = moor_fields_read(res, rlen, 1, f, 5)) == NULL) {
        const char *p = f[0].v;
        uint64_t tk, tb;
        if (!p || moor_field_bool(&f[1], 0, &more))
            why = "an answer needs {items, more}";
        if (!why && moor_field_uint(&f[2], &tk) == 0 && moor_field_uint(&f[3], &tb) == 0) {
            u->keys_total = tk;
            u->bytes_total = tb;
        }
        if (!why) {
            r->more = more;
            r->pending = 1; /* held until every item was handed over */
            why = merge_items(x, &p, f[0].end, u->smask, u->lo, u->hi, merge_done, r, &r->pending,
                              &r->n, &r->bytes, &r->last);
            x->st.keys_received += r->n;
            x->st.bytes_received += r->bytes;
            r->replied = 1;
            if (why)
                r->failed = 1;
            if (--r->pending == 0)
                req_finish(r);
            return;
        }
    }
    unit_failed(x, r->unit, MOOR_EPROTO, why);
    moor_buf_free(&r->last);
    free(r);
    unref(x);
}

/* ---- serving peers ------------------------------------------------------------------ */

int moor_xfer_is_method(const char *method, size_t mlen)
{
    return mlen > 6 && memcmp(method, "_xfer_", 6) == 0;
}

static void answer_bad(moor_coord_done_fn done, void *arg, const char *why)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "%s", why);
    done(arg, MOOR_EINVAL, msg, NULL, 0);
}

/* The spaces named (unknown ones skipped: this node holds nothing of
 * them) as a mask.  0 or -1. */
static int read_spaces(const moor_xfer_t *x, const moor_field_t *f, uint64_t *mask)
{
    const char *p = f->v;
    uint32_t n;

    *mask = 0;
    if (!p || moor_mp_read_array(&p, f->end, &n) || n > MOOR_XFER_SPACES_MAX)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        int k;
        if (moor_mp_read_str(&p, f->end, &s, &sl))
            return -1;
        if ((k = space_find(x, s, sl)) >= 0)
            *mask |= 1ull << k;
    }
    return 0;
}

static void handle_pull(moor_xfer_t *x, const char *params, size_t plen, uint32_t nparams,
                        moor_coord_done_fn done, void *arg)
{
    moor_field_t f[6] = {{"spaces", 0, 0}, {"lo", 0, 0},        {"hi", 0, 0},
                         {"after", 0, 0},  {"max_bytes", 0, 0}, {"count", 0, 0}};
    uint64_t mask, lo, hi, maxb;
    const char *after = NULL;
    uint32_t alen = 0;
    int count, rc;
    page_t pg;
    count_t c = {0, 0, 0};
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_packer pk;

    if (moor_fields_read(params, plen, nparams, f, 6) || read_spaces(x, &f[0], &mask) ||
        moor_field_uint(&f[1], &lo) || moor_field_uint(&f[2], &hi) ||
        (!moor_field_nil(&f[3]) && moor_field_strbin(&f[3], &after, &alen)) ||
        moor_field_uint(&f[4], &maxb) || moor_field_bool(&f[5], 0, &count)) {
        answer_bad(done, arg, "_xfer_pull needs {spaces, lo, hi, after?, max_bytes, count?}");
        return;
    }
    if (maxb == 0 || maxb > PULL_PAGE_MAX)
        maxb = PULL_PAGE_MAX;
    memset(&pg, 0, sizeof(pg));
    moor_buf_init(&pg.items);
    moor_buf_init(&pg.last);
    moor_mp_packer_init(&pg.pk, &pg.items);
    pg.max_items = PAGE_ITEMS_MAX;
    pg.max_bytes = maxb;
    rc = mask ? scan_range(x, mask, lo, hi, after, alen, page_cb, &pg) : 0;
    if (rc == 0 && count && mask)
        rc = scan_range(x, mask, lo, hi, NULL, 0, count_cb, &c);
    if (rc) {
        done(arg, rc, moor_diag_msg(rc), NULL, 0);
    } else {
        moor_mp_packer_init(&pk, &out);
        count = count && mask && !c.partial; /* the totals, when known */
        msgpack_pack_map(&pk, count ? 4 : 2);
        msgpack_pack_str_with_body(&pk, "items", 5);
        msgpack_pack_array(&pk, pg.n);
        moor_buf_append(&out, pg.items.data, pg.items.len);
        msgpack_pack_str_with_body(&pk, "more", 4);
        pg.more ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        if (count) {
            msgpack_pack_str_with_body(&pk, "total_keys", 10);
            msgpack_pack_uint64(&pk, c.keys);
            msgpack_pack_str_with_body(&pk, "total_bytes", 11);
            msgpack_pack_uint64(&pk, c.bytes);
        }
        x->st.keys_sent += pg.n;
        x->st.bytes_sent += pg.bytes;
        done(arg, 0, NULL, out.data, out.len);
    }
    moor_buf_free(&out);
    moor_buf_free(&pg.items);
    moor_buf_free(&pg.last);
}

typedef struct push {
    moor_xfer_t *x;
    moor_coord_done_fn done;
    void *arg;
    uint32_t pending, n;
    int failed;
} push_t;

static void push_finish(push_t *ps)
{
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_packer pk;

    if (ps->failed) {
        ps->done(ps->arg, MOOR_EIO, "a record could not be stored", NULL, 0);
    } else {
        moor_mp_packer_init(&pk, &out);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "merged", 6);
        msgpack_pack_uint32(&pk, ps->n);
        ps->done(ps->arg, 0, NULL, out.data, out.len);
    }
    moor_buf_free(&out);
    unref(ps->x);
    free(ps);
}

static void push_merge_done(void *arg, int status)
{
    push_t *ps = arg;

    if (status)
        ps->failed = 1;
    if (--ps->pending == 0)
        push_finish(ps);
}

static void handle_push(moor_xfer_t *x, const char *params, size_t plen, uint32_t nparams,
                        moor_coord_done_fn done, void *arg)
{
    moor_field_t f[4] = {{"spaces", 0, 0}, {"lo", 0, 0}, {"hi", 0, 0}, {"items", 0, 0}};
    uint64_t mask, lo, hi, bytes = 0;
    const char *p, *why;
    push_t *ps;

    if (moor_fields_read(params, plen, nparams, f, 4) || read_spaces(x, &f[0], &mask) ||
        moor_field_uint(&f[1], &lo) || moor_field_uint(&f[2], &hi) || !f[3].v) {
        answer_bad(done, arg, "_xfer_push needs {spaces, lo, hi, items}");
        return;
    }
    if (!(ps = calloc(1, sizeof(*ps)))) {
        done(arg, MOOR_ENOMEM, "no memory", NULL, 0);
        return;
    }
    ps->x = x;
    ps->done = done;
    ps->arg = arg;
    ps->pending = 1;
    x->refs++;
    p = f[3].v;
    why = merge_items(x, &p, f[3].end, mask, lo, hi, push_merge_done, ps, &ps->pending, &ps->n,
                      &bytes, NULL);
    x->st.keys_received += ps->n;
    x->st.bytes_received += bytes;
    if (why) {
        /* what was handed over still lands; the sender hears the error */
        xlog(x, 2, "transfer: a bad _xfer_push: %s", why);
        ps->failed = 1;
    }
    if (--ps->pending == 0)
        push_finish(ps);
}

static void handle_status(moor_xfer_t *x, const char *params, size_t plen, uint32_t nparams,
                          moor_coord_done_fn done, void *arg)
{
    moor_field_t f[2] = {{"rate_kb_s", 0, 0}, {"concurrency", 0, 0}};
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint64_t rate = 0, conc = 0;
    int rc = 0;

    if (nparams &&
        (moor_fields_read(params, plen, nparams, f, 2) ||
         (!moor_field_nil(&f[0]) && (moor_field_uint(&f[0], &rate) || rate > 1ull << 30)) ||
         (!moor_field_nil(&f[1]) && (moor_field_uint(&f[1], &conc) || conc > 64)))) {
        answer_bad(done, arg, "_xfer_status takes {rate_kb_s?, concurrency?}");
        return;
    }
    if (rate || conc)
        moor_xfer_set_params(x, (uint32_t)rate, (uint32_t)conc);

    moor_mp_packer_init(&pk, &out);
    rc |= msgpack_pack_map(&pk, 4);
    rc |= msgpack_pack_str_with_body(&pk, "node", 4);
    rc |= msgpack_pack_str_with_body(&pk, x->o.node_id, x->o.idlen);
    rc |= msgpack_pack_str_with_body(&pk, "state", 5);
    rc |= msgpack_pack_str_with_body(&pk, moor_xfer_state_name(x->state),
                                     strlen(moor_xfer_state_name(x->state)));
    rc |= msgpack_pack_str_with_body(&pk, "info", 4);
    rc |= moor_xfer_pack_info(x, &pk);
    rc |= msgpack_pack_str_with_body(&pk, "ranges", 6);
    rc |= moor_xfer_pack_ranges(x, &pk);
    if (rc)
        done(arg, MOOR_ENOMEM, "no memory", NULL, 0);
    else
        done(arg, 0, NULL, out.data, out.len);
    moor_buf_free(&out);
}

void moor_xfer_handle(moor_xfer_t *x, const char *method, size_t mlen, const char *params,
                      size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg)
{
    if (mlen == 10 && memcmp(method, "_xfer_pull", 10) == 0)
        handle_pull(x, params, plen, nparams, done, arg);
    else if (mlen == 10 && memcmp(method, "_xfer_push", 10) == 0)
        handle_push(x, params, plen, nparams, done, arg);
    else if (mlen == 12 && memcmp(method, "_xfer_status", 12) == 0)
        handle_status(x, params, plen, nparams, done, arg);
    else
        done(arg, MOOR_EINVAL, "unknown transfer method", NULL, 0);
}

/* ---- cleanup ------------------------------------------------------------------------ */

#define CLEAN_CHUNK 1024

/* What decides who replicates what: members, their zones and tokens on
 * the ring (a status such as down changes nothing). */
static uint64_t ring_sig(const moor_members_t *t)
{
    uint64_t h = 1469598103934665603ull;

    for (uint32_t i = 0; i < t->n; i++) {
        const moor_member_t *m = &t->e[i].m;
        uint32_t tok = moor_member_tokens(m);
        if (!tok)
            continue;
        for (uint32_t k = 0; k < m->idlen; k++)
            h = (h ^ (unsigned char)m->id[k]) * 1099511628211ull;
        for (const char *z = m->zone; *z; z++)
            h = (h ^ (unsigned char)*z) * 1099511628211ull;
        h = (h ^ tok) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
    }
    return h;
}

static int table_in_motion(const moor_members_t *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        if (in_motion(&t->e[i]))
            return 1;
    return 0;
}

static void clean_stop(moor_xfer_t *x)
{
    if (x->t_clean) {
        x->o.clock.timer_stop(x->o.clock.ud, x->t_clean);
        x->t_clean = 0;
        x->refs--;
    }
    moor_ring_free(x->clean_ring);
    x->clean_ring = NULL;
    x->clean_cursor.len = 0;
    x->st.cleaning = 0;
}

typedef struct clean_scan {
    moor_xfer_t *x;
    uint32_t seen;
    uint64_t bytes;
    moor_buf_t last;
} clean_scan_t;

static int clean_cb(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    clean_scan_t *cs = arg;
    moor_xfer_t *x = cs->x;
    uint64_t token;
    const char *sp;
    size_t sl;
    int s;
    uint32_t l[MOOR_COORD_N_MAX], cnt;

    cs->seen++;
    cs->bytes += klen + vlen;
    cs->last.len = 0;
    moor_buf_append(&cs->last, key, klen);
    if (key_parts(key, klen, &token, &sp, &sl) || (s = space_find(x, sp, sl)) < 0 ||
        x->spaces[s].n == 0 || x->spaces[s].n > MOOR_COORD_N_MAX)
        return 0; /* internal keys, and keyspaces this node does not know: kept */
    if (moor_ring_preference_list(x->clean_ring, token, x->spaces[s].n, l, &cnt) ||
        self_in(x, x->clean_ring, l, cnt))
        return 0;
    if (x->o.store.del(x->o.store.ud, key, klen, store_done_quiet, NULL) == 0) {
        x->st.keys_cleaned++;
        x->st.bytes_cleaned += klen + vlen;
    }
    return 0;
}

static void clean_tick(void *arg)
{
    moor_xfer_t *x = arg;
    clean_scan_t cs = {x, 0, 0, MOOR_BUF_INIT};
    moor_buf_t from = MOOR_BUF_INIT;
    uint64_t rate = x->o.p.rate_kb_s ? (uint64_t)x->o.p.rate_kb_s * 1024 : 0;
    int rc;

    x->t_clean = 0;
    if (x->dead) {
        unref(x);
        return;
    }
    x->refs--; /* the timer's; x lives on (not dead) */
    if (!x->clean_ring) {
        /* the delay is over: a cleanup starts if the ring is still the one
         * it was armed for */
        if (table_in_motion(&x->table) || ring_sig(&x->table) != x->clean_sig ||
            x->state != MOOR_XFER_IDLE || moor_members_ring(&x->table, &x->clean_ring))
            return;
        x->clean_cursor.len = 0;
        x->st.cleaning = 1;
        xlog(x, 1, "transfer: cleanup: dropping the records of ranges this node no longer "
                   "replicates");
    }
    if (x->clean_cursor.len && (moor_buf_append(&from, x->clean_cursor.data, x->clean_cursor.len) ||
                                moor_buf_append(&from, "", 1)))
        rc = MOOR_ENOMEM;
    else
        rc = x->o.store.scan(x->o.store.ud, "", 0, from.data, from.len, CLEAN_CHUNK, clean_cb,
                             &cs);
    moor_buf_free(&from);
    if (rc == 0 && cs.seen == CLEAN_CHUNK) {
        x->clean_cursor.len = 0;
        moor_buf_append(&x->clean_cursor, cs.last.data, cs.last.len);
        moor_buf_free(&cs.last);
        x->refs++;
        x->t_clean = x->o.clock.timer_start(x->o.clock.ud, rate ? cs.bytes * 1000 / rate : 0,
                                            clean_tick, x);
        if (!x->t_clean) {
            x->refs--;
            clean_stop(x);
        }
        return;
    }
    moor_buf_free(&cs.last);
    if (rc) {
        xlog(x, 2, "transfer: cleanup scan failed: %s; it runs again after the next change",
             moor_strerror(rc));
        clean_stop(x);
        return;
    }
    {
        char v[8];
        moor_enc_be64(v, x->clean_sig);
        x->cleaned_sig = x->clean_sig;
        x->o.store.put(x->o.store.ud, MOOR_XFER_CLEAN_KEY, MOOR_XFER_KEY_LEN, v, 8,
                       store_done_quiet, NULL);
    }
    x->st.cleanups++;
    xlog(x, 1, "transfer: cleanup done: %llu records (%llu bytes) dropped so far",
         (unsigned long long)x->st.keys_cleaned, (unsigned long long)x->st.bytes_cleaned);
    clean_stop(x);
}

/* After a change of the table: a cleanup is due cleanup_ms after the last
 * change that leaves nobody in motion and a ring unlike the last one
 * cleaned for. */
static void clean_arm(moor_xfer_t *x)
{
    uint64_t sig;

    if (!x->o.p.cleanup_ms || x->dead)
        return;
    if (!x->clean_loaded) {
        moor_buf_t b = MOOR_BUF_INIT;
        if (x->o.store.get(x->o.store.ud, MOOR_XFER_CLEAN_KEY, MOOR_XFER_KEY_LEN, &b) == 0 &&
            b.len == 8)
            x->cleaned_sig = moor_dec_be64(b.data);
        moor_buf_free(&b);
        x->clean_loaded = 1;
    }
    sig = ring_sig(&x->table);
    if ((x->clean_ring || x->t_clean) && sig == x->clean_sig && !table_in_motion(&x->table) &&
        x->state == MOOR_XFER_IDLE)
        return; /* the wait or the scan under way is still right (a status flap changes
                 * nothing of who replicates what) */
    clean_stop(x);
    if (x->state != MOOR_XFER_IDLE || table_in_motion(&x->table) || sig == x->cleaned_sig)
        return;
    x->clean_sig = sig;
    x->refs++;
    x->t_clean = x->o.clock.timer_start(x->o.clock.ud, x->o.p.cleanup_ms, clean_tick, x);
    if (!x->t_clean)
        x->refs--;
}

/* ---- public ------------------------------------------------------------------------- */

void moor_xfer_params_default(moor_xfer_params_t *p)
{
    p->rate_kb_s = 65536;
    p->concurrency = 2;
    p->page_kb = 256;
    p->settle_ms = 2000;
    p->timeout_ms = 10000;
    p->cleanup_ms = 60000;
}

int moor_xfer_new(const moor_xfer_opts_t *o, moor_xfer_t **out)
{
    moor_xfer_t *x;

    *out = NULL;
    if (o->nspaces > MOOR_XFER_SPACES_MAX)
        return moor_diag(MOOR_EINVAL, "transfer: at most %d keyspaces", MOOR_XFER_SPACES_MAX);
    if (!(x = calloc(1, sizeof(*x))))
        return MOOR_ENOMEM;
    x->o = *o;
    if (!x->o.p.concurrency)
        x->o.p.concurrency = 1;
    if (!x->o.p.page_kb)
        x->o.p.page_kb = 256;
    if (!x->o.p.timeout_ms)
        x->o.p.timeout_ms = 10000;
    x->refs = 1;
    x->spaces = calloc(o->nspaces ? o->nspaces : 1, sizeof(*x->spaces));
    x->id = malloc(o->idlen ? o->idlen : 1);
    if (!x->spaces || !x->id) {
        unref(x);
        return MOOR_ENOMEM;
    }
    memcpy(x->id, o->node_id, o->idlen);
    x->o.node_id = x->id;
    for (uint32_t i = 0; i < o->nspaces; i++)
        x->spaces[i] = o->spaces[i];
    x->o.spaces = x->spaces;
    moor_members_init(&x->table);
    moor_buf_init(&x->clean_cursor);
    *out = x;
    return 0;
}

void moor_xfer_free(moor_xfer_t *x)
{
    if (!x)
        return;
    x->dead = 1;
    clean_stop(x);
    if (x->t_kick) {
        x->o.clock.timer_stop(x->o.clock.ud, x->t_kick);
        x->t_kick = 0;
        x->refs--;
    }
    free_units(x);
    for (uint32_t i = 0; i < x->nresume; i++)
        moor_buf_free(&x->resume[i].cursor);
    x->nresume = 0;
    unref(x);
}

int moor_xfer_start(moor_xfer_t *x, int state, uint32_t vnodes, uint32_t inactive)
{
    if (x->state == MOOR_XFER_LEFT)
        return moor_diag(MOOR_EINVAL, "this node has left the cluster");
    if (state != MOOR_XFER_JOINING && state != MOOR_XFER_LEAVING)
        return moor_diag(MOOR_EINVAL, "transfer: a move is a join or a leave");
    if (vnodes == 0 || inactive > vnodes)
        return moor_diag(MOOR_EINVAL, "transfer: %u of %u tokens inactive", inactive, vnodes);
    if (state == MOOR_XFER_LEAVING && x->have_table) {
        int others;
        if (!others_have_tokens(x, &others))
            return moor_diag(MOOR_EINVAL, "the last member with tokens cannot leave: its data "
                                          "would have nowhere to go");
    }
    if (x->state != state) {
        free_units(x);
        x->st.started_ms = now_ms(x);
        x->st.finished_ms = 0;
        x->st.ranges_done = 0;
    }
    clean_stop(x);
    if (state != x->resume_state || inactive != x->resume_inactive) {
        /* saved progress is of another move or step: not this one's */
        for (uint32_t i = 0; i < x->nresume; i++)
            moor_buf_free(&x->resume[i].cursor);
        x->nresume = 0;
    }
    x->state = state;
    x->vnodes = vnodes;
    x->inactive = inactive;
    x->settled = 0;
    x->counted = 0;
    save(x);
    publish(x);
    xlog(x, 1, "transfer: %s (%u of %u tokens on the ring)",
         state == MOOR_XFER_JOINING ? "joining" : "leaving", vnodes - inactive, vnodes);
    kick(x);
    return 0;
}

int moor_xfer_cancel(moor_xfer_t *x)
{
    if (x->state != MOOR_XFER_JOINING && x->state != MOOR_XFER_LEAVING)
        return moor_diag(MOOR_EINVAL, "no join or leave in progress");
    xlog(x, 1, "transfer: %s cancelled; reversing it",
         x->state == MOOR_XFER_JOINING ? "join" : "leave");
    return moor_xfer_start(x, x->state == MOOR_XFER_JOINING ? MOOR_XFER_LEAVING : MOOR_XFER_JOINING,
                           x->vnodes, x->inactive);
}

/* 1 if a peer of a unit not done has left (or been removed). */
static int unit_peer_left(const moor_xfer_t *x)
{
    for (uint32_t i = 0; i < x->nunits; i++) {
        const unit_t *u = &x->units[i];
        for (uint32_t k = 0; !u->done && k < u->npeers; k++) {
            const moor_member_entry_t *e =
                moor_members_find(&x->table, u->peer[k].id, u->peer[k].len);
            if (!e || e->m.status == MOOR_MEMBER_LEFT)
                return 1;
        }
    }
    return 0;
}

/* The step's progress as resume entries (matched when it is computed
 * again). */
static void units_to_resume(moor_xfer_t *x)
{
    struct resume *r;

    for (uint32_t i = 0; i < x->nresume; i++)
        moor_buf_free(&x->resume[i].cursor);
    free(x->resume);
    x->nresume = 0;
    if (!(x->resume = calloc(x->nunits ? x->nunits : 1, sizeof(*x->resume))))
        return;
    for (uint32_t i = 0; i < x->nunits; i++) {
        const unit_t *u = &x->units[i];
        r = &x->resume[x->nresume++];
        r->lo = u->lo;
        r->hi = u->hi;
        r->smask = u->smask;
        r->done = u->done;
        r->push = u->push;
        r->peer = u->peer[0];
        moor_buf_init(&r->cursor);
        moor_buf_append(&r->cursor, u->cursor.data, u->cursor.len);
    }
}

void moor_xfer_set_members(moor_xfer_t *x, const moor_members_t *t)
{
    moor_members_free(&x->table);
    moor_members_init(&x->table);
    if (moor_members_merge(&x->table, t) < 0) {
        x->have_table = 0;
        return;
    }
    x->have_table = 1;
    clean_arm(x);
    if (x->step_ready && unit_peer_left(x)) {
        /* a unit's peer is gone for good: compute the step again on the
         * table as it is, the units that stay keeping their progress */
        save(x);
        x->resume_state = x->state;
        x->resume_inactive = x->inactive;
        units_to_resume(x);
        free_units(x);
        kick(x);
        return;
    }
    if ((x->state == MOOR_XFER_JOINING || x->state == MOOR_XFER_LEAVING) && !x->step_ready &&
        !x->t_kick)
        kick(x);
}

void moor_xfer_set_params(moor_xfer_t *x, uint32_t rate_kb_s, uint32_t concurrency)
{
    if (rate_kb_s)
        x->o.p.rate_kb_s = rate_kb_s;
    if (concurrency) {
        x->o.p.concurrency = concurrency;
        kick(x);
    }
}

void moor_xfer_params(const moor_xfer_t *x, moor_xfer_params_t *p)
{
    *p = x->o.p;
}

void moor_xfer_stats(const moor_xfer_t *x, moor_xfer_stats_t *st)
{
    *st = x->st;
    st->state = x->state;
    st->vnodes = x->vnodes;
    st->inactive = x->inactive;
}

const char *moor_xfer_state_name(int state)
{
    switch (state) {
    case MOOR_XFER_IDLE:
        return "idle";
    case MOOR_XFER_JOINING:
        return "joining";
    case MOOR_XFER_LEAVING:
        return "leaving";
    case MOOR_XFER_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

static int pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    return msgpack_pack_str_with_body(pk, k, strlen(k)) | msgpack_pack_uint64(pk, v);
}

int moor_xfer_pack_info(const moor_xfer_t *x, msgpack_packer *pk)
{
    const char *s = moor_xfer_state_name(x->state);
    int rc = 0;

    rc |= msgpack_pack_map(pk, 13);
    rc |= msgpack_pack_str_with_body(pk, "state", 5);
    rc |= msgpack_pack_str_with_body(pk, s, strlen(s));
    rc |= pack_kv_u64(pk, "ranges_total", x->st.ranges_total);
    rc |= pack_kv_u64(pk, "ranges_done", x->st.ranges_done);
    rc |= pack_kv_u64(pk, "keys_sent", x->st.keys_sent);
    rc |= pack_kv_u64(pk, "keys_received", x->st.keys_received);
    rc |= pack_kv_u64(pk, "bytes_sent", x->st.bytes_sent);
    rc |= pack_kv_u64(pk, "bytes_received", x->st.bytes_received);
    rc |= pack_kv_u64(pk, "vnodes", x->vnodes);
    rc |= pack_kv_u64(pk, "inactive", x->inactive);
    rc |= msgpack_pack_str_with_body(pk, "rate_mb_s", 9);
    rc |= msgpack_pack_double(pk, (double)x->o.p.rate_kb_s / 1024.0);
    rc |= pack_kv_u64(pk, "concurrency", x->o.p.concurrency);
    rc |= pack_kv_u64(pk, "keys_cleaned", x->st.keys_cleaned);
    rc |= pack_kv_u64(pk, "cleanups", x->st.cleanups);
    return rc ? MOOR_ENOMEM : 0;
}

int moor_xfer_pack_ranges(const moor_xfer_t *x, msgpack_packer *pk)
{
    uint64_t t = now_ms(x);
    uint32_t n = 0;
    int rc = 0;

    for (uint32_t i = 0; i < x->nunits; i++)
        n += !x->units[i].done;
    rc |= msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < x->nunits; i++) {
        const unit_t *u = &x->units[i];
        const peer_id_t *p = &u->peer[u->cur];
        double secs = u->started_ms && t > u->started_ms ? (double)(t - u->started_ms) / 1000.0
                                                         : 0.0;
        double rate = secs > 0 ? (double)u->bytes_done / secs : 0.0;
        int known = u->bytes_total != UINT64_MAX;
        if (u->done)
            continue;
        rc |= msgpack_pack_map(pk, 12);
        rc |= msgpack_pack_str_with_body(pk, "from", 4);
        rc |= msgpack_pack_str_with_body(pk, u->push ? x->o.node_id : p->id,
                                         u->push ? x->o.idlen : p->len);
        rc |= msgpack_pack_str_with_body(pk, "to", 2);
        rc |= msgpack_pack_str_with_body(pk, u->push ? p->id : x->o.node_id,
                                         u->push ? p->len : x->o.idlen);
        rc |= msgpack_pack_str_with_body(pk, "spaces", 6);
        rc |= pack_spaces(x, u->smask, pk);
        rc |= pack_kv_u64(pk, "lo", u->lo);
        rc |= pack_kv_u64(pk, "hi", u->hi);
        rc |= pack_kv_u64(pk, "keys_done", u->keys_done);
        rc |= msgpack_pack_str_with_body(pk, "keys_total", 10);
        rc |= known ? msgpack_pack_uint64(pk, u->keys_total) : msgpack_pack_nil(pk);
        rc |= pack_kv_u64(pk, "bytes_done", u->bytes_done);
        rc |= msgpack_pack_str_with_body(pk, "bytes_total", 11);
        rc |= known ? msgpack_pack_uint64(pk, u->bytes_total) : msgpack_pack_nil(pk);
        rc |= msgpack_pack_str_with_body(pk, "rate_bytes_s", 12);
        rc |= msgpack_pack_double(pk, rate);
        rc |= msgpack_pack_str_with_body(pk, "eta_s", 5);
        if (known && rate > 0)
            rc |= msgpack_pack_double(pk, u->bytes_total > u->bytes_done
                                              ? (double)(u->bytes_total - u->bytes_done) / rate
                                              : 0.0);
        else
            rc |= msgpack_pack_nil(pk);
        rc |= msgpack_pack_str_with_body(pk, "live", 4);
        rc |= (u->running && !u->timer) || (u->last_ms && t - u->last_ms < LIVE_MS)
                  ? msgpack_pack_true(pk)
                  : msgpack_pack_false(pk);
    }
    return rc ? MOOR_ENOMEM : 0;
}
