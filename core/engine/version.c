/*
 * version.c -- immutable sets of live tables ("versions"), the table
 * references they hold, point lookups and iterators over the levels, and
 * saving a version to the MANIFEST.
 *
 * A version is never changed after it is installed: the background thread
 * makes an edited copy and swaps it in under e->mu.  Readers pin the
 * version they started with, so a compaction can replace tables while a
 * long scan still reads the old ones; a replaced table's file is deleted
 * when its last reference goes.
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

void moor_table_path(char *out, size_t size, const char *dir, uint64_t number)
{
    snprintf(out, size, "%s/%016llu.sst", dir, (unsigned long long)number);
}

/* ---- table references ---------------------------------------------------- */

static int meta_copy(moor_file_meta_t *dst, const moor_file_meta_t *src)
{
    *dst = *src;
    dst->smallest = malloc(src->smallest_len);
    dst->largest = malloc(src->largest_len);
    if (!dst->smallest || !dst->largest) {
        free(dst->smallest);
        free(dst->largest);
        return MOOR_ENOMEM;
    }
    memcpy(dst->smallest, src->smallest, src->smallest_len);
    memcpy(dst->largest, src->largest, src->largest_len);
    return 0;
}

int moor_tref_open(struct moor_engine *e, const moor_file_meta_t *meta, moor_tref_t **out)
{
    char path[4096];
    moor_tref_t *t = calloc(1, sizeof(*t));
    int rc;

    *out = NULL;
    if (!t)
        return MOOR_ENOMEM;
    if ((rc = meta_copy(&t->meta, meta))) {
        free(t);
        return rc;
    }
    moor_table_path(path, sizeof(path), e->dir, meta->number);
    rc = moor_table_open(path, meta->number, e->cache, &t->table);
    if (rc) {
        free(t->meta.smallest);
        free(t->meta.largest);
        free(t);
        return rc;
    }
    atomic_init(&t->refs, 1);
    atomic_init(&t->obsolete, 0);
    t->e = e;
    *out = t;
    return 0;
}

void moor_tref_ref(moor_tref_t *t) { atomic_fetch_add(&t->refs, 1); }

void moor_tref_unref(moor_tref_t *t)
{
    char path[4096];

    if (atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    moor_table_close(t->table);
    if (atomic_load(&t->obsolete)) {
        moor_table_path(path, sizeof(path), t->e->dir, t->meta.number);
        if (unlink(path) != 0)
            moor_log_warn("cannot delete obsolete table %s: %m", path);
        moor_cache_erase_file(t->e->cache, t->meta.number);
    }
    free(t->meta.smallest);
    free(t->meta.largest);
    free(t);
}

/* ---- versions -------------------------------------------------------------- */

moor_version_t *moor_version_new(void)
{
    moor_version_t *v = calloc(1, sizeof(*v));

    if (v)
        atomic_init(&v->refs, 1);
    return v;
}

void moor_version_ref(moor_version_t *v) { atomic_fetch_add(&v->refs, 1); }

void moor_version_unref(moor_version_t *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    for (int l = 0; l < MOOR_MAX_LEVELS; l++) {
        for (size_t i = 0; i < v->n[l]; i++)
            moor_tref_unref(v->files[l][i]);
        free(v->files[l]);
    }
    free(v);
}

static int ukey_of_cmp(const moor_tref_t *a, const moor_tref_t *b)
{
    return moor_ikey_cmp(a->meta.smallest, a->meta.smallest_len, b->meta.smallest,
                         b->meta.smallest_len);
}

/* Level order: L0 newest (highest number) first; others by smallest key. */
static int level_before(int level, const moor_tref_t *a, const moor_tref_t *b)
{
    if (level == 0)
        return a->meta.number > b->meta.number;
    return ukey_of_cmp(a, b) < 0;
}

moor_version_t *moor_version_edit(const moor_version_t *v, moor_tref_t **del, size_t ndel,
                                  moor_tref_t **add, size_t nadd)
{
    moor_version_t *nv = moor_version_new();

    if (!nv)
        return NULL;
    for (int l = 0; l < MOOR_MAX_LEVELS; l++) {
        size_t cap = (v ? v->n[l] : 0), k = 0;
        for (size_t j = 0; j < nadd; j++)
            cap += add[j]->meta.level == l;
        if (!cap)
            continue;
        nv->files[l] = malloc(cap * sizeof(moor_tref_t *));
        if (!nv->files[l])
            goto fail;
        for (size_t i = 0; v && i < v->n[l]; i++) {
            int gone = 0;
            for (size_t j = 0; j < ndel && !gone; j++)
                gone = del[j]->meta.number == v->files[l][i]->meta.number;
            if (!gone) {
                moor_tref_ref(v->files[l][i]);
                nv->files[l][k++] = v->files[l][i];
            }
        }
        for (size_t j = 0; j < nadd; j++) {
            if (add[j]->meta.level != l)
                continue;
            /* insertion keeps the level ordered */
            size_t pos = k;
            while (pos > 0 && level_before(l, add[j], nv->files[l][pos - 1])) {
                nv->files[l][pos] = nv->files[l][pos - 1];
                pos--;
            }
            moor_tref_ref(add[j]);
            nv->files[l][pos] = add[j];
            k++;
        }
        nv->n[l] = k;
    }
    return nv;
fail:
    moor_version_unref(nv);
    return NULL;
}

uint64_t moor_version_level_bytes(const moor_version_t *v, int level)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < v->n[level]; i++)
        sum += v->files[level][i]->meta.size;
    return sum;
}

/* Does table t's user-key range contain ukey? */
static int tref_covers(const moor_tref_t *t, const char *ukey, size_t ulen)
{
    const moor_file_meta_t *m = &t->meta;

    return moor_ukey_cmp(ukey, ulen, m->smallest, moor_ikey_ulen(m->smallest_len)) >= 0 &&
           moor_ukey_cmp(ukey, ulen, m->largest, moor_ikey_ulen(m->largest_len)) <= 0;
}

/* In a sorted, disjoint level: index of the first table whose largest user
 * key is >= ukey (n if none). */
static size_t level_find(const moor_version_t *v, int level, const char *ukey, size_t ulen)
{
    size_t lo = 0, hi = v->n[level];

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const moor_file_meta_t *m = &v->files[level][mid]->meta;
        if (moor_ukey_cmp(m->largest, moor_ikey_ulen(m->largest_len), ukey, ulen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int moor_version_get(moor_version_t *v, const char *ukey, size_t ulen, uint64_t snap_seq,
                     moor_buf_t *val, int *type)
{
    moor_buf_t ik = MOOR_BUF_INIT;
    int rc = 0;

    if (moor_ikey_build(&ik, ukey, ulen, snap_seq, MOOR_VT_SEEK))
        return MOOR_ENOMEM;
    for (size_t i = 0; i < v->n[0] && rc == 0; i++)
        if (tref_covers(v->files[0][i], ukey, ulen))
            rc = moor_table_get(v->files[0][i]->table, ik.data, ik.len, val, type);
    for (int l = 1; l < MOOR_MAX_LEVELS && rc == 0; l++) {
        size_t i = level_find(v, l, ukey, ulen);
        if (i < v->n[l] && tref_covers(v->files[l][i], ukey, ulen))
            rc = moor_table_get(v->files[l][i]->table, ik.data, ik.len, val, type);
    }
    moor_buf_free(&ik);
    return rc;
}

int moor_version_deeper_has(const moor_version_t *v, int level, const char *ukey, size_t ulen)
{
    for (int l = level + 1; l < MOOR_MAX_LEVELS; l++) {
        size_t i = level_find(v, l, ukey, ulen);
        if (i < v->n[l] && tref_covers(v->files[l][i], ukey, ulen))
            return 1;
    }
    return 0;
}

int moor_version_overlaps(const moor_version_t *v, int level, const char *lo, size_t lolen,
                          const char *hi, size_t hilen, moor_tref_t ***out, size_t *n)
{
    moor_tref_t **arr = malloc((v->n[level] + 1) * sizeof(*arr));
    size_t k = 0;

    if (!arr)
        return MOOR_ENOMEM;
    for (size_t i = 0; i < v->n[level]; i++) {
        const moor_file_meta_t *m = &v->files[level][i]->meta;
        if (lo && moor_ukey_cmp(m->largest, moor_ikey_ulen(m->largest_len), lo, lolen) < 0)
            continue;
        if (hi && moor_ukey_cmp(m->smallest, moor_ikey_ulen(m->smallest_len), hi, hilen) > 0)
            continue;
        arr[k++] = v->files[level][i];
    }
    *out = arr;
    *n = k;
    return 0;
}

int moor_version_save(struct moor_engine *e, const moor_version_t *v, uint64_t log_number,
                      uint64_t last_seq, uint64_t next_file)
{
    moor_manifest_t m;
    int rc = 0;

    moor_manifest_init(&m);
    m.log_number = log_number;
    m.last_seq = last_seq;
    m.next_file = next_file;
    for (int l = 0; l < MOOR_MAX_LEVELS && rc == 0; l++)
        for (size_t i = 0; i < v->n[l] && rc == 0; i++) {
            moor_file_meta_t fm = v->files[l][i]->meta;
            fm.level = l;
            rc = moor_manifest_add(&m, &fm);
        }
    if (rc == 0)
        rc = moor_manifest_write(e->dir, &m);
    moor_manifest_clear(&m);
    return rc;
}

/* ---- level iterator: walks a sorted, disjoint level table by table ------- */

typedef struct level_iter {
    moor_iiter_t base;
    moor_tref_t **files; /* pinned */
    size_t n, idx;       /* idx: table under cur */
    moor_iiter_t *cur;
} level_iter_t;

static void level_sync(level_iter_t *li)
{
    moor_iiter_t *c = li->cur;

    li->base.valid = c && c->valid;
    if (c && c->status && !li->base.status)
        li->base.status = c->status;
    if (li->base.status)
        li->base.valid = 0;
    if (li->base.valid) {
        li->base.key = c->key;
        li->base.klen = c->klen;
        li->base.val = c->val;
        li->base.vlen = c->vlen;
    }
}

static int level_open(level_iter_t *li, size_t idx)
{
    moor_iiter_destroy(li->cur);
    li->cur = NULL;
    li->idx = idx;
    if (idx >= li->n)
        return 0;
    li->cur = moor_table_iter(li->files[idx]->table);
    if (!li->cur) {
        li->base.status = MOOR_ENOMEM;
        return MOOR_ENOMEM;
    }
    return 0;
}

/* Moves to following tables while the current one is exhausted. */
static void level_skip_empty(level_iter_t *li)
{
    while (li->cur && !li->cur->valid && !li->cur->status && li->idx + 1 < li->n) {
        if (level_open(li, li->idx + 1))
            break;
        li->cur->seek_first(li->cur);
    }
    level_sync(li);
}

static void level_seek_first(moor_iiter_t *it)
{
    level_iter_t *li = (level_iter_t *)it;

    if (level_open(li, 0) == 0 && li->cur)
        li->cur->seek_first(li->cur);
    level_skip_empty(li);
}

static void level_seek(moor_iiter_t *it, const char *t, size_t tlen)
{
    level_iter_t *li = (level_iter_t *)it;
    size_t lo = 0, hi = li->n;

    /* first table whose largest internal key >= target */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const moor_file_meta_t *m = &li->files[mid]->meta;
        if (moor_ikey_cmp(m->largest, m->largest_len, t, tlen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (level_open(li, lo) == 0 && li->cur)
        li->cur->seek(li->cur, t, tlen);
    level_skip_empty(li);
}

static void level_next(moor_iiter_t *it)
{
    level_iter_t *li = (level_iter_t *)it;

    li->cur->next(li->cur);
    level_skip_empty(li);
}

static void level_destroy(moor_iiter_t *it)
{
    level_iter_t *li = (level_iter_t *)it;

    moor_iiter_destroy(li->cur);
    for (size_t i = 0; i < li->n; i++)
        moor_tref_unref(li->files[i]);
    free(li->files);
    free(li);
}

static moor_iiter_t *level_iter_new(moor_tref_t **files, size_t n)
{
    level_iter_t *li = calloc(1, sizeof(*li));

    if (!li)
        return NULL;
    li->files = malloc(n * sizeof(*li->files));
    if (!li->files) {
        free(li);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        moor_tref_ref(files[i]);
        li->files[i] = files[i];
    }
    li->n = n;
    li->base.seek_first = level_seek_first;
    li->base.seek = level_seek;
    li->base.next = level_next;
    li->base.destroy = level_destroy;
    return &li->base;
}

/* ---- a single table, pinned ---------------------------------------------- */

typedef struct pinned_iter {
    moor_iiter_t base;
    moor_iiter_t *in;
    moor_tref_t *t;
} pinned_iter_t;

static void pinned_sync(pinned_iter_t *p)
{
    p->base.valid = p->in->valid;
    p->base.status = p->in->status;
    p->base.key = p->in->key;
    p->base.klen = p->in->klen;
    p->base.val = p->in->val;
    p->base.vlen = p->in->vlen;
}

static void pinned_seek_first(moor_iiter_t *it)
{
    pinned_iter_t *p = (pinned_iter_t *)it;
    p->in->seek_first(p->in);
    pinned_sync(p);
}

static void pinned_seek(moor_iiter_t *it, const char *t, size_t tlen)
{
    pinned_iter_t *p = (pinned_iter_t *)it;
    p->in->seek(p->in, t, tlen);
    pinned_sync(p);
}

static void pinned_next(moor_iiter_t *it)
{
    pinned_iter_t *p = (pinned_iter_t *)it;
    p->in->next(p->in);
    pinned_sync(p);
}

static void pinned_destroy(moor_iiter_t *it)
{
    pinned_iter_t *p = (pinned_iter_t *)it;
    moor_iiter_destroy(p->in);
    moor_tref_unref(p->t);
    free(p);
}

static moor_iiter_t *pinned_iter_new(moor_tref_t *t)
{
    pinned_iter_t *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->in = moor_table_iter(t->table);
    if (!p->in) {
        free(p);
        return NULL;
    }
    moor_tref_ref(t);
    p->t = t;
    p->base.seek_first = pinned_seek_first;
    p->base.seek = pinned_seek;
    p->base.next = pinned_next;
    p->base.destroy = pinned_destroy;
    return &p->base;
}

static int push_iter(moor_iiter_t ***its, size_t *n, size_t *cap, moor_iiter_t *it)
{
    if (!it)
        return MOOR_ENOMEM;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        moor_iiter_t **a = realloc(*its, nc * sizeof(*a));
        if (!a) {
            moor_iiter_destroy(it);
            return MOOR_ENOMEM;
        }
        *its = a;
        *cap = nc;
    }
    (*its)[(*n)++] = it;
    return 0;
}

int moor_version_iters(moor_version_t *v, moor_iiter_t ***its, size_t *n, size_t *cap)
{
    int rc = 0;

    for (size_t i = 0; i < v->n[0] && rc == 0; i++)
        rc = push_iter(its, n, cap, pinned_iter_new(v->files[0][i]));
    for (int l = 1; l < MOOR_MAX_LEVELS && rc == 0; l++)
        if (v->n[l])
            rc = push_iter(its, n, cap, level_iter_new(v->files[l], v->n[l]));
    return rc;
}
