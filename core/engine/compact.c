/*
 * compact.c -- memtable flushes and leveled compaction.  Runs only on the
 * engine's background thread, which is also the only writer of versions
 * and of the MANIFEST, so nothing here races with itself.
 *
 * Leveled, as LevelDB: L0 holds flushed memtables (overlapping), L1..L6
 * each hold disjoint tables and are 10x the size of the level above
 * (L1 = level1_bytes).  When L0 has l0_compact tables they are all merged
 * into L1; when a deeper level is over its target, one table (round-robin
 * by key) is merged with the tables it overlaps in the next level.  A table
 * that overlaps nothing below is moved by a manifest edit, not rewritten.
 *
 * What a merge keeps: only the newest version of each user key (no caller
 * can see older ones: iterators pin the tables they read), and a tombstone
 * only while it is younger than tombstone_grace or some deeper level may
 * still hold an older version of its key.  The optional compaction filter
 * (engine.h) then sees each kept value once and may rewrite it or turn it
 * into a deletion (a mark of time 0, dropped by the rule above when
 * nothing deeper holds the key); flushes never call it, so a flush costs
 * what it did.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_impl.h"
#include "ikey.h"
#include "util/err.h"
#include "util/log.h"

/* What build_tables drops. */
typedef struct drop_policy {
    int keep_all;            /* 1: keep every entry (never used for merges) */
    int drop_tombstones;     /* 0 for flushes: a tombstone must shadow L1+ */
    const moor_version_t *v; /* for "deeper levels may hold the key" */
    int out_level;
    uint64_t now_ms, grace_ms;
} drop_policy_t;

typedef struct outputs {
    moor_tref_t **t;
    size_t n, cap;
    uint64_t bytes;
} outputs_t;

static void outputs_drop(outputs_t *o, int delete_files)
{
    for (size_t i = 0; i < o->n; i++) {
        if (delete_files)
            atomic_store(&o->t[i]->obsolete, 1);
        moor_tref_unref(o->t[i]);
    }
    free(o->t);
    memset(o, 0, sizeof(*o));
}

static int outputs_push(outputs_t *o, moor_tref_t *t)
{
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 8;
        moor_tref_t **a = realloc(o->t, nc * sizeof(*a));
        if (!a)
            return MOOR_ENOMEM;
        o->t = a;
        o->cap = nc;
    }
    o->t[o->n++] = t;
    o->bytes += t->meta.size;
    return 0;
}

/* One output table being written. */
typedef struct out_file {
    int fd;
    uint64_t number;
    moor_table_builder_t *b;
    moor_buf_t smallest, largest;
} out_file_t;

static int out_open(struct moor_engine *e, out_file_t *of)
{
    char path[4096];
    moor_table_opts_t to = {e->o.block_size, e->o.compression_level, e->o.bloom_bits};

    of->number = moor_db_new_file_number(e);
    moor_table_path(path, sizeof(path), e->dir, of->number);
    of->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (of->fd < 0)
        return moor_diag(-errno, "cannot create table %s: %m", path);
    of->b = moor_table_builder_new(of->fd, &to);
    if (!of->b) {
        close(of->fd);
        unlink(path);
        return MOOR_ENOMEM;
    }
    moor_buf_reset(&of->smallest);
    moor_buf_reset(&of->largest);
    return 0;
}

static void out_abandon(struct moor_engine *e, out_file_t *of)
{
    char path[4096];

    if (!of->b)
        return;
    moor_table_builder_abandon(of->b);
    of->b = NULL;
    close(of->fd);
    moor_table_path(path, sizeof(path), e->dir, of->number);
    unlink(path);
}

/* Finishes, syncs and opens the output as a table of level. */
static int out_finish(struct moor_engine *e, out_file_t *of, int level, outputs_t *outs)
{
    moor_file_meta_t m = {0};
    moor_tref_t *t;
    uint64_t size;
    uint64_t entries = moor_table_builder_entries(of->b);
    int rc = moor_table_builder_finish(of->b, &size);

    of->b = NULL;
    if (rc == 0 && fdatasync(of->fd) != 0)
        rc = moor_diag(-errno, "fdatasync of table %llu failed: %m",
                       (unsigned long long)of->number);
    close(of->fd);
    if (rc == 0) {
        m.level = level;
        m.number = of->number;
        m.size = size;
        m.entries = entries;
        m.smallest = of->smallest.data;
        m.smallest_len = of->smallest.len;
        m.largest = of->largest.data;
        m.largest_len = of->largest.len;
        rc = moor_tref_open(e, &m, &t);
    }
    if (rc == 0 && (rc = outputs_push(outs, t)) != 0) {
        atomic_store(&t->obsolete, 1);
        moor_tref_unref(t);
    }
    if (rc != 0) {
        char path[4096];
        moor_table_path(path, sizeof(path), e->dir, of->number);
        unlink(path);
    }
    return rc;
}

/* Decides whether the entry at `it` is written.  prev holds the user key of
 * the previous entry seen (any fate). */
static int keep_entry(const drop_policy_t *p, moor_iiter_t *it, moor_buf_t *prev, int *first)
{
    size_t ulen = moor_ikey_ulen(it->klen);
    int same = !*first && moor_ukey_cmp(prev->data, prev->len, it->key, ulen) == 0;

    if (!same) {
        moor_buf_reset(prev);
        if (moor_buf_append(prev, it->key, ulen))
            return MOOR_ENOMEM;
        *first = 0;
    }
    if (p->keep_all)
        return 1;
    if (same)
        return 0; /* an older version, shadowed */
    if (moor_ikey_type(it->key, it->klen) == MOOR_VT_DEL && p->drop_tombstones) {
        uint64_t ts = it->vlen == 8 ? moor_dec_fixed64(it->val) : 0;
        if (p->now_ms >= ts && p->now_ms - ts >= p->grace_ms &&
            !moor_version_deeper_has(p->v, p->out_level, it->key, ulen))
            return 0;
    }
    return 1;
}

/* One entry to write: the iterator's, or what the filter made of it. */
typedef struct entry {
    const char *key, *val;
    size_t klen, vlen;
} entry_t;

/* The compaction filter's verdict on a kept value at `it` (merges only):
 * 1 and *en to write, or 0 to write nothing.  del holds a deletion
 * mark's key and value. */
static int filter_entry(struct moor_engine *e, const drop_policy_t *p, moor_iiter_t *it,
                        moor_buf_t *del, entry_t *en)
{
    size_t ulen = moor_ikey_ulen(it->klen);
    const void *nv = NULL;
    size_t nvl = 0;
    char trailer[8], ts[8] = {0};
    int v;

    *en = (entry_t){it->key, it->val, it->klen, it->vlen};
    if (!e->o.filter || !p->drop_tombstones || moor_ikey_type(it->key, it->klen) != MOOR_VT_PUT)
        return 1;
    v = e->o.filter(e->o.filter_ud, it->key, ulen, it->val, it->vlen, &nv, &nvl);
    if (v == MOOR_ENGINE_FILTER_REWRITE && nv) {
        atomic_fetch_add(&e->st_filter_rewrites, 1);
        en->val = nv;
        en->vlen = nvl;
    } else if (v == MOOR_ENGINE_FILTER_DROP) {
        atomic_fetch_add(&e->st_filter_drops, 1);
        if (!moor_version_deeper_has(p->v, p->out_level, it->key, ulen))
            return 0;
        /* Something older below: a mark of time 0 shadows it, and the
         * grace rule lets it go once nothing deeper holds the key. */
        moor_enc_fixed64(trailer, moor_ikey_trailer(moor_ikey_seq(it->key, it->klen), MOOR_VT_DEL));
        moor_buf_reset(del);
        if (moor_buf_append(del, it->key, ulen) || moor_buf_append(del, trailer, 8) ||
            moor_buf_append(del, ts, 8))
            return MOOR_ENOMEM;
        *en = (entry_t){del->data, del->data + ulen + 8, ulen + 8, 8};
    }
    return 1;
}

/* Writes what `it` yields (from seek_first) into tables of out_level. */
static int build_tables(struct moor_engine *e, moor_iiter_t *it, const drop_policy_t *p,
                        outputs_t *outs)
{
    out_file_t of = {.fd = -1};
    moor_buf_t prev = MOOR_BUF_INIT, del = MOOR_BUF_INIT;
    int first = 1, rc = 0, keep;
    entry_t en;

    for (it->seek_first(it); it->valid && rc == 0; it->next(it)) {
        keep = keep_entry(p, it, &prev, &first);
        if (keep > 0)
            keep = filter_entry(e, p, it, &del, &en);
        if (keep <= 0) {
            rc = keep;
            continue;
        }
        /* Cut only between user keys, so a level stays disjoint by user key. */
        if (of.b && moor_table_builder_size(of.b) >= e->o.table_bytes &&
            moor_ukey_cmp(of.largest.data, moor_ikey_ulen(of.largest.len), it->key,
                          moor_ikey_ulen(it->klen)) != 0) {
            rc = out_finish(e, &of, p->out_level, outs);
            if (rc)
                break;
        }
        if (!of.b && (rc = out_open(e, &of)) != 0)
            break;
        if (of.smallest.len == 0)
            rc = moor_buf_append(&of.smallest, en.key, en.klen);
        moor_buf_reset(&of.largest);
        if (rc == 0)
            rc = moor_buf_append(&of.largest, en.key, en.klen);
        if (rc == 0)
            rc = moor_table_builder_add(of.b, en.key, en.klen, en.val, en.vlen);
    }
    if (rc == 0 && it->status)
        rc = it->status;
    if (rc == 0 && of.b)
        rc = out_finish(e, &of, p->out_level, outs);
    out_abandon(e, &of);
    moor_buf_free(&of.smallest);
    moor_buf_free(&of.largest);
    moor_buf_free(&prev);
    moor_buf_free(&del);
    return rc;
}

/* Saves nv to the manifest and makes it current.  Takes ownership of nv. */
static int install(struct moor_engine *e, moor_version_t *nv, int pop_frozen)
{
    uint64_t log_number, last_seq, next_file;
    moor_version_t *old;
    moor_memtable_t *flushed = NULL;
    int rc;

    pthread_mutex_lock(&e->mu);
    /* After a flush the oldest log still needed is the next frozen one's. */
    log_number = e->nfrozen > (unsigned)pop_frozen ? e->frozen[pop_frozen].log_number
                                                   : e->mem_log;
    last_seq = e->last_seq;
    next_file = e->next_file;
    pthread_mutex_unlock(&e->mu);

    rc = moor_version_save(e, nv, log_number, last_seq, next_file);
    if (rc) {
        moor_version_unref(nv);
        return rc;
    }
    pthread_mutex_lock(&e->mu);
    old = e->cur;
    e->cur = nv;
    if (pop_frozen) {
        flushed = e->frozen[0].mem;
        memmove(&e->frozen[0], &e->frozen[1], (e->nfrozen - 1) * sizeof(e->frozen[0]));
        e->nfrozen--;
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    moor_version_unref(old);
    if (flushed)
        moor_memtable_unref(flushed);
    if (pop_frozen)
        moor_db_delete_old_logs(e, log_number); /* all of it is in tables now */
    return 0;
}

int moor_compact_flush_one(struct moor_engine *e)
{
    drop_policy_t p = {0};
    outputs_t outs = {0};
    moor_memtable_t *mem;
    moor_version_t *nv;
    moor_iiter_t *it;
    int rc;

    pthread_mutex_lock(&e->mu);
    if (e->nfrozen == 0) {
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
    mem = e->frozen[0].mem;
    moor_memtable_ref(mem);
    pthread_mutex_unlock(&e->mu);

    it = moor_memtable_iter(mem);
    moor_memtable_unref(mem); /* the iterator holds its own reference */
    if (!it)
        return MOOR_ENOMEM;
    p.out_level = 0;
    rc = build_tables(e, it, &p, &outs);
    moor_iiter_destroy(it);
    if (rc) {
        outputs_drop(&outs, 1);
        return rc;
    }
    nv = moor_version_edit(e->cur, NULL, 0, outs.t, outs.n); /* cur: bg-owned */
    if (!nv) {
        outputs_drop(&outs, 1);
        return MOOR_ENOMEM;
    }
    rc = install(e, nv, 1);
    if (rc == 0) {
        atomic_fetch_add(&e->st_flush_bytes, outs.bytes);
        atomic_fetch_add(&e->st_flushes, 1);
    }
    outputs_drop(&outs, rc != 0);
    return rc;
}

static uint64_t level_target(struct moor_engine *e, int level)
{
    uint64_t t = e->o.level1_bytes;

    for (int l = 1; l < level; l++)
        t *= 10;
    return t;
}

/* Merges inputs of level (ordered as in the version) with the overlapping
 * tables of level+1 into level+1.  Takes ownership of both arrays. */
static int merge_into_next(struct moor_engine *e, int level, moor_tref_t **in, size_t nin,
                           moor_tref_t **next, size_t nnext)
{
    drop_policy_t p = {0};
    outputs_t outs = {0};
    moor_iiter_t **kids = NULL, *it;
    moor_tref_t **del = NULL;
    moor_version_t *nv;
    size_t nk = 0, cap = 0;
    uint64_t read_bytes = 0;
    int rc = 0;

    /* A scratch version lays the inputs out for moor_version_iters: L0
     * inputs overlap and each gets its own child; inputs from a sorted level
     * are disjoint and share one concatenating child, as does level+1. */
    moor_version_t tmp = {0};
    int in_slot = level == 0 ? 0 : 1;
    tmp.files[in_slot] = in;
    tmp.n[in_slot] = nin;
    tmp.files[2] = next;
    tmp.n[2] = nnext;
    rc = moor_version_iters(&tmp, &kids, &nk, &cap);
    del = malloc((nin + nnext + 1) * sizeof(*del));
    if (rc || !del) {
        for (size_t i = 0; i < nk; i++)
            moor_iiter_destroy(kids[i]);
        free(kids);
        rc = rc ? rc : MOOR_ENOMEM;
        goto out;
    }
    it = moor_iiter_merge(kids, nk);
    if (!it) {
        rc = MOOR_ENOMEM;
        goto out;
    }
    p.drop_tombstones = 1;
    p.v = e->cur;
    p.out_level = level + 1;
    p.now_ms = e->clock();
    p.grace_ms = e->o.tombstone_grace_ms;
    rc = build_tables(e, it, &p, &outs);
    moor_iiter_destroy(it);
    if (rc)
        goto out;
    for (size_t i = 0; i < nin; i++)
        del[i] = in[i], read_bytes += in[i]->meta.size;
    for (size_t i = 0; i < nnext; i++)
        del[nin + i] = next[i], read_bytes += next[i]->meta.size;
    nv = moor_version_edit(e->cur, del, nin + nnext, outs.t, outs.n);
    if (!nv) {
        rc = MOOR_ENOMEM;
        goto out;
    }
    /* Pin the inputs across install, which may free the old version and
     * with it the last other reference, then mark them for deletion. */
    for (size_t i = 0; i < nin + nnext; i++)
        moor_tref_ref(del[i]);
    rc = install(e, nv, 0);
    for (size_t i = 0; i < nin + nnext; i++) {
        if (rc == 0)
            atomic_store(&del[i]->obsolete, 1);
        moor_tref_unref(del[i]);
    }
    if (rc == 0) {
        atomic_fetch_add(&e->st_compact_read, read_bytes);
        atomic_fetch_add(&e->st_compact_written, outs.bytes);
        atomic_fetch_add(&e->st_compactions, 1);
    }
out:
    outputs_drop(&outs, rc != 0);
    free(del);
    free(in);
    free(next);
    return rc;
}

/* Moves one table down a level without rewriting it. */
static int move_down(struct moor_engine *e, moor_tref_t *t)
{
    moor_file_meta_t m = t->meta;
    moor_tref_t *moved;
    moor_version_t *nv;
    int rc;

    m.level++;
    rc = moor_tref_open(e, &m, &moved);
    if (rc)
        return rc;
    nv = moor_version_edit(e->cur, &t, 1, &moved, 1);
    moor_tref_unref(moved);
    if (!nv)
        return MOOR_ENOMEM;
    return install(e, nv, 0);
}

/* User-key range [lo, hi] of a set of tables (borrowed pointers into them). */
static void range_of(moor_tref_t **t, size_t n, const char **lo, size_t *lolen,
                     const char **hi, size_t *hilen)
{
    *lo = *hi = NULL;
    for (size_t i = 0; i < n; i++) {
        const moor_file_meta_t *m = &t[i]->meta;
        size_t sl = moor_ikey_ulen(m->smallest_len), ll = moor_ikey_ulen(m->largest_len);
        if (!*lo || moor_ukey_cmp(m->smallest, sl, *lo, *lolen) < 0)
            *lo = m->smallest, *lolen = sl;
        if (!*hi || moor_ukey_cmp(m->largest, ll, *hi, *hilen) > 0)
            *hi = m->largest, *hilen = ll;
    }
}

/* Compacts inputs of level into level+1; allow_move lets a lone table with
 * nothing under it move down instead (automatic compactions only: a manual
 * one must rewrite to drop tombstones).  Takes ownership of in. */
static int compact_level(struct moor_engine *e, int level, moor_tref_t **in, size_t nin,
                         int allow_move)
{
    const char *lo, *hi;
    size_t lolen = 0, hilen = 0, nnext;
    moor_tref_t **next;
    int rc;

    range_of(in, nin, &lo, &lolen, &hi, &hilen);
    rc = moor_version_overlaps(e->cur, level + 1, lo, lolen, hi, hilen, &next, &nnext);
    if (rc) {
        free(in);
        return rc;
    }
    if (allow_move && level > 0 && nin == 1 && nnext == 0) {
        rc = move_down(e, in[0]);
        free(in);
        free(next);
        return rc;
    }
    return merge_into_next(e, level, in, nin, next, nnext);
}

int moor_compact_auto(struct moor_engine *e)
{
    moor_version_t *v = e->cur;
    double best = 0;
    int level = -1;
    moor_tref_t **in;
    size_t pick = 0;

    if (e->o.l0_compact && (double)v->n[0] / e->o.l0_compact >= 1.0)
        best = (double)v->n[0] / e->o.l0_compact, level = 0;
    for (int l = 1; l < MOOR_MAX_LEVELS - 1; l++) {
        double s = (double)moor_version_level_bytes(v, l) / (double)level_target(e, l);
        if (s >= 1.0 && s > best)
            best = s, level = l;
    }
    if (level < 0)
        return 0;
    if (level == 0) {
        in = malloc(v->n[0] * sizeof(*in));
        if (!in)
            return MOOR_ENOMEM;
        memcpy(in, v->files[0], v->n[0] * sizeof(*in));
        return compact_level(e, 0, in, v->n[0], 1) ?: 1;
    }
    /* Round-robin: the first table after the last one compacted here. */
    moor_buf_t *ptr = &e->compact_ptr[level];
    for (pick = 0; ptr->len && pick < v->n[level]; pick++) {
        const moor_file_meta_t *m = &v->files[level][pick]->meta;
        if (moor_ikey_cmp(m->smallest, m->smallest_len, ptr->data, ptr->len) > 0)
            break;
    }
    if (pick == v->n[level])
        pick = 0;
    moor_buf_reset(ptr);
    moor_buf_append(ptr, v->files[level][pick]->meta.largest,
                    v->files[level][pick]->meta.largest_len);
    in = malloc(sizeof(*in));
    if (!in)
        return MOOR_ENOMEM;
    in[0] = v->files[level][pick];
    return compact_level(e, level, in, 1, 1) ?: 1;
}

int moor_compact_manual(struct moor_engine *e, const char *lo, size_t lolen, const char *hi,
                        size_t hilen, int has_lo, int has_hi)
{
    int deepest = 1, rc = 0;
    moor_tref_t **in;
    size_t nin;

    for (int l = MOOR_MAX_LEVELS - 1; l > 1; l--) {
        if ((rc = moor_version_overlaps(e->cur, l, has_lo ? lo : NULL, lolen,
                                        has_hi ? hi : NULL, hilen, &in, &nin)))
            return rc;
        free(in);
        if (nin) {
            deepest = l;
            break;
        }
    }
    int rewrote_deepest = 0;
    for (int l = 0; l < deepest && rc == 0; l++) {
        /* All of L0, not just the tables in range: an older L0 table left
         * behind could hold a key of a newer one moved below it, and L0 is
         * read before L1, so the old value would win. */
        rc = moor_version_overlaps(e->cur, l, l == 0 || !has_lo ? NULL : lo, lolen,
                                   l == 0 || !has_hi ? NULL : hi, hilen, &in, &nin);
        if (rc)
            break;
        if (nin == 0) {
            free(in);
            continue;
        }
        rc = compact_level(e, l, in, nin, 0);
        rewrote_deepest = l + 1 == deepest;
    }
    if (rc == 0 && !rewrote_deepest) {
        /* Everything in range already sits in the deepest level: rewrite it
         * in place (a merge from an empty level above) to drop what it can. */
        moor_tref_t **next, **none = malloc(sizeof(*none));
        size_t nnext;
        if (!none)
            return MOOR_ENOMEM;
        rc = moor_version_overlaps(e->cur, deepest, has_lo ? lo : NULL, lolen,
                                   has_hi ? hi : NULL, hilen, &next, &nnext);
        if (rc) {
            free(none);
            return rc;
        }
        if (nnext == 0) {
            free(none);
            free(next);
            return 0;
        }
        rc = merge_into_next(e, deepest - 1, none, 0, next, nnext);
    }
    return rc;
}
