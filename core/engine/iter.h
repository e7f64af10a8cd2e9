/*
 * iter.h -- the internal iterator: one interface over memtables, blocks,
 * tables, levels and their merge.  Forward only.
 *
 * Positioning calls (seek_first, seek, next) leave the iterator either on
 * an entry -- valid != 0, key/klen and val/vlen describe it -- or past the
 * end (valid == 0).  key and val are borrowed until the next positioning
 * call or destroy.  Keys are internal keys (ikey.h) except for index
 * iterators, which the table module uses privately.
 *
 * An I/O or checksum failure makes the iterator invalid with status set to a
 * negative MOOR_E* code (and the diagnostics slot naming file and offset);
 * status stays set until destroy.
 */
#ifndef MOOR_ENGINE_ITER_H
#define MOOR_ENGINE_ITER_H

#include <stddef.h>

typedef struct moor_iiter moor_iiter_t;

struct moor_iiter {
    void (*seek_first)(moor_iiter_t *it);
    /* First entry with key >= target (internal key order). */
    void (*seek)(moor_iiter_t *it, const char *target, size_t tlen);
    void (*next)(moor_iiter_t *it); /* REQUIRES: valid */
    void (*destroy)(moor_iiter_t *it);

    int valid;           /* 1 while positioned on an entry */
    int status;          /* 0, or the MOOR_E* code that stopped it */
    const char *key;     /* current internal key (borrowed) */
    size_t klen;
    const char *val;     /* current value (borrowed) */
    size_t vlen;
};

/* ===== API ===== */

/* Merges n children (takes ownership of them and of the array, which must
 * come from malloc) into one iterator in internal key order; on equal keys
 * the child with the lower index comes first.  Returns NULL on OOM, having
 * destroyed the children. */
moor_iiter_t *moor_iiter_merge(moor_iiter_t **children, size_t n);

/* An iterator with no entries and the given status (0 for a plain empty
 * one).  Returns NULL on OOM. */
moor_iiter_t *moor_iiter_empty(int status);

static inline void moor_iiter_destroy(moor_iiter_t *it)
{
    if (it)
        it->destroy(it);
}

#endif
