/*
 * iter.c -- the merging iterator and the empty iterator (iter.h).
 *
 * The merge keeps its valid children in a binary min-heap ordered by
 * (current key, child index), so ties go to the lowest index and callers
 * order children newest first.  next() advances only the child on top and
 * sifts it down: two comparisons when it stays on top, which is the usual
 * case in a scan (runs of keys come from one table), against one per
 * child for a linear pick (a memtable, four or more L0 tables and a few
 * levels make 8-10 children; the linear pick cost 5% of a full scan).
 *
 * Errors: a child's status can only change when it moves, so positioning
 * calls check every child and next() checks the one it moved.  An error in
 * any child ends the merge: continuing would skip its keys and show older
 * versions or deleted keys instead.
 */
#include "iter.h"

#include <stdlib.h>

#include "ikey.h"
#include "util/err.h"

typedef struct merge_iter {
    moor_iiter_t base;
    moor_iiter_t **kids;
    size_t n;
    size_t *heap; /* indexes into kids of the valid children; heap[0] is the least */
    size_t nheap;
} merge_iter_t;

/* 1 if child a comes before child b. */
static inline int merge_less(const merge_iter_t *m, size_t a, size_t b)
{
    const moor_iiter_t *x = m->kids[a], *y = m->kids[b];
    int r = moor_ikey_cmp(x->key, x->klen, y->key, y->klen);

    return r < 0 || (r == 0 && a < b);
}

static void merge_sift_down(merge_iter_t *m, size_t i)
{
    size_t *h = m->heap, n = m->nheap, v = h[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= n)
            break;
        if (c + 1 < n && merge_less(m, h[c + 1], h[c]))
            c++;
        if (!merge_less(m, h[c], v))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* Publishes the top of the heap (or the end, or the error). */
static void merge_publish(merge_iter_t *m)
{
    moor_iiter_t *best;

    if (m->base.status || m->nheap == 0) {
        m->base.valid = 0;
        m->nheap = m->base.status ? 0 : m->nheap;
        return;
    }
    best = m->kids[m->heap[0]];
    m->base.valid = 1;
    m->base.key = best->key;
    m->base.klen = best->klen;
    m->base.val = best->val;
    m->base.vlen = best->vlen;
}

/* Rebuilds the heap after every child was positioned. */
static void merge_build(merge_iter_t *m)
{
    m->nheap = 0;
    for (size_t i = 0; i < m->n; i++) {
        moor_iiter_t *k = m->kids[i];

        if (k->status && !m->base.status)
            m->base.status = k->status;
        if (k->valid)
            m->heap[m->nheap++] = i;
    }
    for (size_t i = m->nheap / 2; i-- > 0;)
        merge_sift_down(m, i);
    merge_publish(m);
}

static void merge_seek_first(moor_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;

    for (size_t i = 0; i < m->n; i++)
        m->kids[i]->seek_first(m->kids[i]);
    merge_build(m);
}

static void merge_seek(moor_iiter_t *it, const char *t, size_t tlen)
{
    merge_iter_t *m = (merge_iter_t *)it;

    for (size_t i = 0; i < m->n; i++)
        m->kids[i]->seek(m->kids[i], t, tlen);
    merge_build(m);
}

static void merge_next(moor_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;
    moor_iiter_t *top = m->kids[m->heap[0]];

    top->next(top);
    if (top->status) {
        if (!m->base.status)
            m->base.status = top->status;
    } else if (!top->valid) {
        m->heap[0] = m->heap[--m->nheap];
        if (m->nheap)
            merge_sift_down(m, 0);
    } else {
        merge_sift_down(m, 0);
    }
    merge_publish(m);
}

static void merge_destroy(moor_iiter_t *it)
{
    merge_iter_t *m = (merge_iter_t *)it;

    for (size_t i = 0; i < m->n; i++)
        moor_iiter_destroy(m->kids[i]);
    free(m->kids);
    free(m->heap);
    free(m);
}

moor_iiter_t *moor_iiter_merge(moor_iiter_t **children, size_t n)
{
    merge_iter_t *m = calloc(1, sizeof(*m));
    size_t *heap = malloc((n ? n : 1) * sizeof(*heap));

    if (!m || !heap) {
        for (size_t i = 0; i < n; i++)
            moor_iiter_destroy(children[i]);
        free(children);
        free(heap);
        free(m);
        return NULL;
    }
    m->base.seek_first = merge_seek_first;
    m->base.seek = merge_seek;
    m->base.next = merge_next;
    m->base.destroy = merge_destroy;
    m->kids = children;
    m->n = n;
    m->heap = heap;
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
