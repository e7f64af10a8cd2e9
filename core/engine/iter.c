/*
 * iter.c -- the merging iterator and the empty iterator (iter.h).
 *
 * The merge picks the smallest current key among its children by a linear
 * scan.  Children are few (memtables + L0 tables + one per deeper level,
 * typically under 16), where a scan beats a heap's bookkeeping.  Ties go to
 * the lowest index, so callers order children newest first.
 */
#include "iter.h"

#include <stdlib.h>

#include "ikey.h"
#include "util/err.h"

typedef struct merge_iter {
    moor_iiter_t base;
    moor_iiter_t **kids;
    size_t n;
    moor_iiter_t *cur; /* child holding the current entry, NULL when !valid */
} merge_iter_t;

static void merge_pick(merge_iter_t *m)
{
    moor_iiter_t *best = NULL;

    for (size_t i = 0; i < m->n; i++) {
        moor_iiter_t *k = m->kids[i];
        if (k->status && !m->base.status)
            m->base.status = k->status;
        if (!k->valid)
            continue;
        if (!best || moor_ikey_cmp(k->key, k->klen, best->key, best->klen) < 0)
            best = k;
    }
    /* An error in any child ends the merge: continuing would skip its keys
     * and show older versions or deleted keys instead. */
    if (m->base.status)
        best = NULL;
    m->cur = best;
    m->base.valid = best != NULL;
    if (best) {
        m->base.key = best->key;
        m->base.klen = best->klen;
        m->base.val = best->val;
        m->base.vlen = best->vlen;
    }
}

static void merge_seek_first(moor_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;

    for (size_t i = 0; i < m->n; i++)
        m->kids[i]->seek_first(m->kids[i]);
    merge_pick(m);
}

static void merge_seek(moor_iiter_t *it, const char *t, size_t tlen)
{
    merge_iter_t *m = (merge_iter_t *)it;

    for (size_t i = 0; i < m->n; i++)
        m->kids[i]->seek(m->kids[i], t, tlen);
    merge_pick(m);
}

static void merge_next(moor_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;

    m->cur->next(m->cur);
    merge_pick(m);
}

static void merge_destroy(moor_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;

    for (size_t i = 0; i < m->n; i++)
        moor_iiter_destroy(m->kids[i]);
    free(m->kids);
    free(m);
}

moor_iiter_t *moor_iiter_merge(moor_iiter_t **children, size_t n)
{
    merge_iter_t *m = calloc(1, sizeof(*m));

    if (!m) {
        for (size_t i = 0; i < n; i++)
            moor_iiter_destroy(children[i]);
        free(children);
        return NULL;
    }
    m->base.seek_first = merge_seek_first;
    m->base.seek = merge_seek;
    m->base.next = merge_next;
    m->base.destroy = merge_destroy;
    m->kids = children;
    m->n = n;
    return &m->base;
}

static void empty_pos(moor_iiter_t *it) { it->valid = 0; }
static void empty_seek(moor_iiter_t *it, const char *t, size_t tlen) { it->valid = 0; }
static void empty_destroy(moor_iiter_t *it) { free(it); }

moor_iiter_t *moor_iiter_empty(int status)
{
    moor_iiter_t *it = calloc(1, sizeof(*it));

    if (!it)
        return NULL;
    it->seek_first = empty_pos;
    it->seek = empty_seek;
    it->next = empty_pos;
    it->destroy = empty_destroy;
    it->status = status;
    return it;
}
