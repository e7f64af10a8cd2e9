/*
 * memtable.c -- the write buffer: a skiplist of internal keys whose nodes
 * and entries live in one arena.
 *
 * Design: every insert makes ONE arena allocation holding the node (entry
 * pointer + `height` forward links) followed by the entry bytes
 *     varint ikey_len | ikey (user key + 8-byte trailer) | varint vlen | value
 * so an insert costs one bump allocation, one copy and one search.  Heights
 * are drawn with branching factor 4 up to MEMTABLE_MAX_HEIGHT.  Ascending
 * inserts (bulk loads, sequential keys) skip the search: the writer keeps
 * the path to the node it added last, which is the rightmost path of the
 * list whenever that node is still the tail.
 *
 * Point lookups skip the list when they can: a table of slots, indexed by
 * a hash of the user key, holds the node added last among the keys that
 * hash there, and every node links to the node that held its slot before
 * it (`hnext`), so a slot heads the chain of every entry whose key hashes
 * there, newest first.  A get walks that chain: the first node with its
 * own key and a seqno within its snapshot is the newest visible version
 * (later versions come earlier in the chain and are skipped), and the end
 * of the chain means the key is not here at all.  With about one slot per
 * entry a chain is one or two nodes, a cache miss each, where a search of
 * the list walks about 4 log4(n) of them; the chain matters most for keys
 * that are NOT in the memtable, which are most gets once the tables hold
 * most of the data (with only the last node per slot, a key absent here
 * but sharing its slot had to search the list: 19% of readrandom's time).
 * All this needs seqnos to grow with each add, as the engine's do; the
 * first add that breaks the order turns the slots off for good
 * (`unordered`) and gets search the list.
 *
 * Updates in place (opt-in, moor_memtable_replace_in_place): while no one
 * but the owner holds the memtable, a new version of a key whose newest
 * node the slot finds replaces that node's entry instead of adding a node
 * before it -- the skiplist search and its cache misses were most of an
 * update's cost.  No reader can be holding the version it replaces (see
 * replace_newest); a memtable updated so keeps one version per key where
 * the list would have kept every one.
 *
 * Invariants: level 0 is the full list in strictly increasing internal key
 * order (keys are unique because (key, seq) is new on every add); level i is
 * a sub-list of level i-1.  A node is completely written before a release
 * store makes it reachable, and is never removed afterwards; its entry
 * changes only by an in-place update, to a newer version of the same key
 * (the order is kept: nothing of that key sat before it).
 *
 * Threads: one writer (the engine serialises moor_memtable_add) owns the
 * arena, the height generator and the splice; any number of readers walk
 * links with acquire loads and take no lock.  max_height, bytes and count
 * are atomics that readers may see slightly behind the list; a stale
 * max_height only means a reader starts one level lower, and a new taller
 * height with a NULL head link just makes the reader drop down a level.
 * The reference count is atomic; the last unref frees the arena.
 */
#include "memtable.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ikey.h"
#include "util/arena.h"
#include "util/hash.h"
#include "util/buf.h"
#include "util/err.h"

#define MEMTABLE_MAX_HEIGHT 12
#define MEMTABLE_SLOTS_MIN 64
#define MEMTABLE_SLOTS_MAX (1u << 22)
#define MEMTABLE_BYTES_PER_SLOT 128 /* one slot per this many bytes of budget */
#define MEMTABLE_BRANCH_MASK 3      /* grow a level with probability 1/4 */

typedef struct node node_t;

struct node {
    const char *entry; /* encoded entry (NULL only for the head) */
    /* The node that held this node's slot before it (NULL: none).  Written
     * before the release store that puts this node in its slot, never
     * changed after, so readers that reached the node through the slot may
     * read it plainly. */
    node_t *hnext;
    _Atomic(node_t *) next[]; /* `height` links; the entry bytes follow */
};

struct moor_memtable {
    atomic_uint refs;           /* frees everything when it drops to 0 */
    atomic_int max_height;      /* tallest node so far, 1..MAX_HEIGHT */
    atomic_size_t bytes;        /* moor_arena_used(), for lock-free readers */
    atomic_uint_fast64_t count; /* entries published */
    uint64_t rnd;               /* writer only: height generator state */
    node_t *last;               /* writer only: last node added, NULL at first */
    /* Writer only: the prev[] of `last` on every level (head above its
     * height); it is the rightmost path while last is the tail. */
    node_t *splice[MEMTABLE_MAX_HEIGHT];
    node_t *head;             /* sentinel of MAX_HEIGHT links, in the arena */
    moor_arena_t arena;       /* writer only */
    _Atomic(node_t *) *slots; /* the point-lookup table (see top) */
    atomic_int unordered;     /* an add came with a seqno below an earlier one */
    int inplace;              /* moor_memtable_replace_in_place */
    uint64_t max_seq;         /* writer only: highest seqno added */
    size_t slot_mask;         /* slots - 1 (a power of two, minus one) */
    size_t slot_bytes;
};

static inline size_t slot_of(const moor_memtable_t *m, const char *key, size_t klen)
{
    return (size_t)moor_hash64(key, klen, 0x6d656d74u) & m->slot_mask;
}

/* A decoded view of an entry; pointers borrow from the arena. */
typedef struct entry_view {
    const char *ikey;
    size_t iklen;
    const char *val;
    size_t vlen;
} entry_view_t;

/* Entries were written by this module, so their varints are well formed;
 * the one-byte case is the common one and skips the general decoder. */
static inline const char *read_len(const char *p, size_t *n)
{
    uint64_t v;

    if (!(*p & 0x80)) {
        *n = (unsigned char)*p;
        return p + 1;
    }
    (void)moor_get_varint(&p, p + 10, &v);
    *n = (size_t)v;
    return p;
}

static inline const char *entry_ikey(const char *e, size_t *iklen)
{
    return read_len(e, iklen);
}

static void entry_decode(const char *e, entry_view_t *v)
{
    v->ikey = read_len(e, &v->iklen);
    v->val = read_len(v->ikey + v->iklen, &v->vlen);
}

/* Internal key order (ikey.h) of a node against a target given as user key
 * + trailer, so lookups need not build the target key in memory. */
static inline int node_cmp(const node_t *n, const char *ukey, size_t ulen, uint64_t trailer)
{
    size_t iklen;
    const char *ik = entry_ikey(n->entry, &iklen);
    int r = moor_ukey_cmp(ik, iklen - MOOR_IKEY_TRAILER, ukey, ulen);
    uint64_t t;

    if (r)
        return r;
    t = moor_dec_fixed64(ik + iklen - MOOR_IKEY_TRAILER);
    return t > trailer ? -1 : t < trailer;
}

static inline node_t *next_acq(node_t *n, int level)
{
    return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

/* First node >= target, or NULL.  When prev is not NULL, fills prev[level]
 * with the last node < target on every level below max_height. */
static node_t *find_ge(moor_memtable_t *m, const char *ukey, size_t ulen, uint64_t trailer,
                       node_t **prev)
{
    int level = atomic_load_explicit(&m->max_height, memory_order_relaxed) - 1;
    node_t *x = m->head;
    node_t *ge = NULL; /* a node already known >= target: skip comparing again */

    for (;;) {
        node_t *nx = next_acq(x, level);

        if (nx && nx != ge && node_cmp(nx, ukey, ulen, trailer) < 0) {
            x = nx;
            continue;
        }
        if (prev)
            prev[level] = x;
        if (level == 0)
            return nx;
        ge = nx;
        level--;
    }
}

/* Writer only: fills prev[] for inserting target.  When the last node added
 * is still the tail and below target, its splice is the rightmost path and
 * thus already the answer: any node after splice[i] on level i would come
 * after the tail. */
static void find_prev(moor_memtable_t *m, const char *ukey, size_t ulen, uint64_t trailer,
                      node_t **prev)
{
    node_t *last = m->last;

    if (last && !atomic_load_explicit(&last->next[0], memory_order_relaxed) &&
        node_cmp(last, ukey, ulen, trailer) < 0) {
        memcpy(prev, m->splice, sizeof(m->splice));
        return;
    }
    find_ge(m, ukey, ulen, trailer, prev);
}

static int random_height(moor_memtable_t *m)
{
    int h = 1;
    uint64_t x = m->rnd;

    /* xorshift64: writer-only state, so no atomics needed. */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    m->rnd = x;
    while (h < MEMTABLE_MAX_HEIGHT && (x & MEMTABLE_BRANCH_MASK) == 0) {
        h++;
        x >>= 2;
    }
    return h;
}

moor_memtable_t *moor_memtable_new(void)
{
    return moor_memtable_new_sized(1024 * MEMTABLE_BYTES_PER_SLOT);
}

moor_memtable_t *moor_memtable_new_sized(size_t budget)
{
    moor_memtable_t *m = malloc(sizeof(*m));
    size_t hsize = sizeof(node_t) + MEMTABLE_MAX_HEIGHT * sizeof(_Atomic(node_t *));
    size_t nslots = MEMTABLE_SLOTS_MIN;

    if (!m)
        return NULL;
    while (nslots < MEMTABLE_SLOTS_MAX && nslots < budget / MEMTABLE_BYTES_PER_SLOT)
        nslots <<= 1;
    m->slot_mask = nslots - 1;
    m->slot_bytes = nslots * sizeof(*m->slots);
    m->slots = malloc(m->slot_bytes);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    for (size_t i = 0; i < nslots; i++)
        atomic_init(&m->slots[i], NULL);
    atomic_init(&m->unordered, 0);
    m->inplace = 0;
    m->max_seq = 0;
    moor_arena_init(&m->arena);
    m->head = moor_arena_alloc(&m->arena, hsize);
    if (!m->head)
        goto fail;
    m->head->entry = NULL;
    m->head->hnext = NULL;
    for (int i = 0; i < MEMTABLE_MAX_HEIGHT; i++) {
        atomic_init(&m->head->next[i], NULL);
        m->splice[i] = m->head;
    }
    m->last = NULL;
    atomic_init(&m->refs, 1);
    atomic_init(&m->max_height, 1);
    atomic_init(&m->bytes, moor_arena_used(&m->arena) + m->slot_bytes);
    atomic_init(&m->count, 0);
    m->rnd = (uint64_t)(uintptr_t)m ^ UINT64_C(0x9e3779b97f4a7c15);
    if (!m->rnd)
        m->rnd = 1;
    return m;

fail:
    moor_arena_destroy(&m->arena);
    free(m->slots);
    free(m);
    return NULL;
}

void moor_memtable_ref(moor_memtable_t *m)
{
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void moor_memtable_unref(moor_memtable_t *m)
{
    if (!m)
        return;
    /* acq_rel: every use by other holders happens before the free. */
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
        return;
    moor_arena_destroy(&m->arena);
    free(m->slots);
    free(m);
}

/* Carves node + entry out of the arena and writes the entry.  NULL on OOM
 * or on sizes that overflow (the arena is unaltered either way). */
/* Bytes of the entry of key/value, or 0 when the sizes overflow. */
static size_t entry_size(size_t klen, size_t vlen)
{
    size_t iklen = klen + MOOR_IKEY_TRAILER;
    size_t need = moor_varint_len(iklen) + iklen + moor_varint_len(vlen) + vlen;

    if (iklen < klen || vlen > SIZE_MAX / 2 || need < vlen || need < iklen)
        return 0;
    return need;
}

static void entry_fill(char *p, uint64_t trailer, const char *key, size_t klen, const char *val,
                       size_t vlen)
{
    size_t iklen = klen + MOOR_IKEY_TRAILER;

    p += moor_enc_varint(p, iklen);
    if (klen)
        memcpy(p, key, klen);
    moor_enc_fixed64(p + klen, trailer);
    p += iklen;
    p += moor_enc_varint(p, vlen);
    if (vlen)
        memcpy(p, val, vlen);
}

static node_t *node_build(moor_memtable_t *m, int height, uint64_t trailer, const char *key,
                          size_t klen, const char *val, size_t vlen)
{
    size_t links = sizeof(node_t) + (size_t)height * sizeof(_Atomic(node_t *));
    size_t esize = entry_size(klen, vlen);
    node_t *n;

    if (!esize || links + esize < esize || !(n = moor_arena_alloc(&m->arena, links + esize)))
        return NULL;
    n->entry = (char *)n + links;
    entry_fill((char *)n + links, trailer, key, klen, val, vlen);
    return n;
}

void moor_memtable_replace_in_place(moor_memtable_t *m, int on)
{
    m->inplace = on != 0;
}

/* The in-place update (moor_memtable_replace_in_place): the newest node
 * of key, found through its slot's chain, takes the new entry instead of a new
 * node going in front of it -- no search, no links.  Only while nobody
 * but the owner holds the memtable (refs 1, and the owner adds under the
 * lock that readers take a reference under), so no reader, iterator or
 * snapshot can see the version it replaces.  1 if done, 0 to add a node,
 * <0 on error. */
static int replace_newest(moor_memtable_t *m, uint64_t seq, uint64_t trailer, const char *key,
                          size_t klen, const char *val, size_t vlen)
{
    node_t *x;
    size_t iklen, esize;
    const char *ik;
    char *p;

    if (!m->inplace || seq <= m->max_seq ||
        atomic_load_explicit(&m->unordered, memory_order_relaxed) ||
        atomic_load_explicit(&m->refs, memory_order_acquire) != 1)
        return 0;
    /* The slot's chain, newest first: the first node of key is its newest. */
    for (x = atomic_load_explicit(&m->slots[slot_of(m, key, klen)], memory_order_relaxed); x;
         x = x->hnext) {
        ik = entry_ikey(x->entry, &iklen);
        if (moor_ukey_cmp(ik, iklen - MOOR_IKEY_TRAILER, key, klen) == 0)
            break;
    }
    if (!x)
        return 0; /* not in this memtable */
    if (!(esize = entry_size(klen, vlen)) || !(p = moor_arena_alloc(&m->arena, esize)))
        return moor_diag(MOOR_ENOMEM, "memtable: no memory for a %zu-byte key, %zu-byte value",
                         klen, vlen);
    entry_fill(p, trailer, key, klen, val, vlen);
    x->entry = p;
    m->max_seq = seq;
    atomic_store_explicit(&m->bytes, moor_arena_used(&m->arena) + m->slot_bytes,
                          memory_order_relaxed);
    return 1;
}

int moor_memtable_add(moor_memtable_t *m, uint64_t seq, int type, const char *key, size_t klen,
                      const char *val, size_t vlen)
{
    node_t *prev[MEMTABLE_MAX_HEIGHT];
    uint64_t trailer = moor_ikey_trailer(seq, type);
    int done = replace_newest(m, seq, trailer, key, klen, val, vlen);
    _Atomic(node_t *) *slot;
    int height, cur;
    node_t *n;

    if (done)
        return done < 0 ? done : 0;
    height = random_height(m);
    cur = atomic_load_explicit(&m->max_height, memory_order_relaxed);
    n = node_build(m, height, trailer, key, klen, val, vlen);
    if (!n)
        return moor_diag(MOOR_ENOMEM, "memtable: no memory for a %zu-byte key, %zu-byte value",
                         klen, vlen);
    if (seq <= m->max_seq) /* before n is reachable: see moor_memtable_get */
        atomic_store_explicit(&m->unordered, 1, memory_order_release);
    else
        m->max_seq = seq;
    /* Chained before n is reachable at all.  Only this writer stores to
     * slots, so the relaxed load sees the last store. */
    slot = &m->slots[slot_of(m, key, klen)];
    n->hnext = atomic_load_explicit(slot, memory_order_relaxed);
    find_prev(m, key, klen, trailer, prev);
    if (height > cur) {
        for (int i = cur; i < height; i++)
            prev[i] = m->head;
        /* Relaxed is enough: a reader that sees the new height but not yet
         * the node finds NULL at head and drops down a level. */
        atomic_store_explicit(&m->max_height, height, memory_order_relaxed);
    }
    for (int i = 0; i < height; i++) {
        /* The node's own link needs no ordering: the release store below
         * publishes it together with the entry.  (Readers reaching n on a
         * lower level never read this level's link.) */
        atomic_store_explicit(&n->next[i],
                              atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&prev[i]->next[i], n, memory_order_release);
    }
    for (int i = 0; i < MEMTABLE_MAX_HEIGHT; i++)
        m->splice[i] = i < height ? n : i < cur ? prev[i] : m->head;
    m->last = n;
    /* After the list: a reader that finds n in its slot finds it in the
     * list too (release: n's entry and hnext are visible with it). */
    atomic_store_explicit(slot, n, memory_order_release);
    atomic_store_explicit(&m->bytes, moor_arena_used(&m->arena) + m->slot_bytes,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    return 0;
}

int moor_memtable_get(moor_memtable_t *m, const char *key, size_t klen, uint64_t snap_seq,
                      int *type, const char **val, size_t *vlen)
{
    uint64_t seq = snap_seq > MOOR_SEQ_MAX ? MOOR_SEQ_MAX : snap_seq;
    node_t *n = atomic_load_explicit(&m->slots[slot_of(m, key, klen)], memory_order_acquire);
    entry_view_t e;

    /* Loaded after the slot: if the slot holds an add that broke the
     * order, the flag set before it is seen. */
    int unordered = atomic_load_explicit(&m->unordered, memory_order_acquire);

    if (!unordered) {
        /* The slot's chain, newest first: the first version of key within
         * the snapshot is the answer; the end of the chain, a miss. */
        for (; n; n = n->hnext) {
            entry_decode(n->entry, &e);
            if (moor_ukey_cmp(e.ikey, moor_ikey_ulen(e.iklen), key, klen) == 0 &&
                moor_ikey_seq(e.ikey, e.iklen) <= seq)
                goto found;
        }
        return 0;
    }
    n = find_ge(m, key, klen, moor_ikey_trailer(seq, MOOR_VT_SEEK), NULL);
    if (!n)
        return 0;
    entry_decode(n->entry, &e);
    if (moor_ukey_cmp(e.ikey, moor_ikey_ulen(e.iklen), key, klen) != 0)
        return 0;
found:
    *type = moor_ikey_type(e.ikey, e.iklen);
    *val = e.val;
    *vlen = e.vlen;
    return 1;
}

size_t moor_memtable_bytes(const moor_memtable_t *m)
{
    return atomic_load_explicit(&((moor_memtable_t *)m)->bytes, memory_order_relaxed);
}

uint64_t moor_memtable_count(const moor_memtable_t *m)
{
    return atomic_load_explicit(&((moor_memtable_t *)m)->count, memory_order_relaxed);
}

/* ---- iterator ----------------------------------------------------------- */

typedef struct mt_iter {
    moor_iiter_t base;
    moor_memtable_t *m; /* referenced until destroy */
    node_t *node;       /* current node, NULL past the end */
} mt_iter_t;

static void iter_land(mt_iter_t *it, node_t *n)
{
    entry_view_t e;

    it->node = n;
    if (!n) {
        it->base.valid = 0;
        it->base.key = it->base.val = NULL;
        it->base.klen = it->base.vlen = 0;
        return;
    }
    /* Nodes lie in the arena in insertion order, not key order, so each
     * step of a scan is a cache miss; start fetching the next node now,
     * while the caller works on this entry. */
    {
        const char *nx = (const char *)atomic_load_explicit(&n->next[0], memory_order_relaxed);

        /* Links and the start of the entry span two lines more often
         * than not (arena addresses are 8-byte aligned). */
        if (nx) {
            __builtin_prefetch(nx);
            __builtin_prefetch(nx + 64);
        }
    }
    entry_decode(n->entry, &e);
    it->base.valid = 1;
    it->base.key = e.ikey;
    it->base.klen = e.iklen;
    it->base.val = e.val;
    it->base.vlen = e.vlen;
}

static void iter_seek_first(moor_iiter_t *base)
{
    mt_iter_t *it = (mt_iter_t *)base;

    iter_land(it, next_acq(it->m->head, 0));
}

static void iter_seek(moor_iiter_t *base, const char *target, size_t tlen)
{
    mt_iter_t *it = (mt_iter_t *)base;

    /* A target too short to be an internal key is read as a bare user key:
     * the largest trailer sorts before every version of that key. */
    if (tlen < MOOR_IKEY_TRAILER) {
        iter_land(it, find_ge(it->m, target, tlen, UINT64_MAX, NULL));
        return;
    }
    iter_land(it, find_ge(it->m, target, moor_ikey_ulen(tlen),
                          moor_dec_fixed64(target + tlen - MOOR_IKEY_TRAILER), NULL));
}

static void iter_next(moor_iiter_t *base)
{
    mt_iter_t *it = (mt_iter_t *)base;

    if (it->node)
        iter_land(it, next_acq(it->node, 0));
}

static void iter_destroy(moor_iiter_t *base)
{
    mt_iter_t *it = (mt_iter_t *)base;

    moor_memtable_unref(it->m);
    free(it);
}

moor_iiter_t *moor_memtable_iter(moor_memtable_t *m)
{
    mt_iter_t *it = calloc(1, sizeof(*it));

    if (!it)
        return NULL;
    it->base.seek_first = iter_seek_first;
    it->base.seek = iter_seek;
    it->base.next = iter_next;
    it->base.destroy = iter_destroy;
    moor_memtable_ref(m);
    it->m = m;
    return &it->base;
}
