/*
 * memtable.c -- the write buffer: a skiplist of user keys, each holding the
 * chain of its versions, with nodes and entries in one arena.
 *
 * Design: the skiplist has ONE node per user key; the node points at the
 * key's newest version, and each version at the next older one, so a key's
 * versions run newest first -- internal key order (ikey.h) within the key.
 * A version is one arena allocation: its older link and trailer, then the
 * entry bytes
 *     varint ikey_len | ikey (user key + 8-byte trailer) | varint vlen | value
 * and a node (key pointer, newest link, `height` forward links) is one more
 * for the first version of a key.  Heights are drawn with branching factor
 * 4 up to MEMTABLE_MAX_HEIGHT.  Ascending inserts of new keys (bulk loads,
 * sequential keys) skip the search: the writer keeps the path to the node
 * it added last, which is the rightmost path of the list whenever that node
 * is still the tail.
 *
 * Finding a key's node without searching: a table of slots, indexed by a
 * hash of the user key, holds the node written last among the keys that
 * hash there.  Every add writes its key's slot, so an empty slot means the
 * key is not here, and a slot holding the key's own node gives it in one or
 * two cache misses, where a search walks some 4 log4(n) nodes, a miss each.
 * An overwrite of a key whose slot is its own is therefore O(1): a new
 * version at the head of the chain.  A slot taken by another key (a
 * collision) sends the lookup down the list.
 *
 * Invariants: level 0 is the full list of keys in strictly increasing user
 * key order; level i is a sub-list of level i-1; a chain is in strictly
 * decreasing trailer order (seqnos are unique).  A node or version is
 * completely written before a release store makes it reachable, and is
 * never changed or removed afterwards, except that a version's older link
 * may later point at a version inserted behind it (an add whose seqno is
 * below the key's newest: never the engine's case, but allowed).
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
#include "util/buf.h"
#include "util/err.h"
#include "util/hash.h"

#define MEMTABLE_MAX_HEIGHT 12
#define MEMTABLE_SLOTS_MIN 64
#define MEMTABLE_SLOTS_MAX (1u << 22)
#define MEMTABLE_BYTES_PER_SLOT 128 /* one slot per this many bytes of budget */
#define MEMTABLE_BRANCH_MASK 3      /* grow a level with probability 1/4 */

typedef struct node node_t;
typedef struct version version_t;

struct version {
    _Atomic(version_t *) older; /* the next older version of the key, or NULL */
    uint64_t trailer;           /* seq << 8 | type, as at the end of the ikey */
    /* the entry bytes follow */
};

struct node {
    const char *key; /* user key bytes (in the first version's entry); NULL: head */
    size_t klen;
    _Atomic(version_t *) newest;
    _Atomic(node_t *) next[]; /* `height` links */
};

struct moor_memtable {
    atomic_uint refs;           /* frees everything when it drops to 0 */
    atomic_int max_height;      /* tallest node so far, 1..MAX_HEIGHT */
    atomic_size_t bytes;        /* arena used + slot table, for lock-free readers */
    atomic_uint_fast64_t count; /* versions published */
    uint64_t rnd;               /* writer only: height generator state */
    node_t *last;               /* writer only: last node added, NULL at first */
    /* Writer only: the prev[] of `last` on every level (head above its
     * height); it is the rightmost path while last is the tail. */
    node_t *splice[MEMTABLE_MAX_HEIGHT];
    node_t *head;             /* sentinel of MAX_HEIGHT links, in the arena */
    moor_arena_t arena;       /* writer only */
    _Atomic(node_t *) *slots; /* the node lookup table (see top) */
    size_t slot_mask;         /* slots - 1 (a power of two, minus one) */
    size_t slot_bytes;
};

static inline size_t slot_of(const moor_memtable_t *m, const char *key, size_t klen)
{
    return (size_t)moor_hash64(key, klen, 0x6d656d74u) & m->slot_mask;
}

static inline const char *ver_entry(const version_t *v)
{
    return (const char *)(v + 1);
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

static void entry_decode(const char *e, entry_view_t *v)
{
    v->ikey = read_len(e, &v->iklen);
    v->val = read_len(v->ikey + v->iklen, &v->vlen);
}

static inline int node_cmp(const node_t *n, const char *ukey, size_t ulen)
{
    return moor_ukey_cmp(n->key, n->klen, ukey, ulen);
}

static inline node_t *next_acq(node_t *n, int level)
{
    return atomic_load_explicit(&n->next[level], memory_order_acquire);
}

static inline version_t *newest_acq(node_t *n)
{
    return atomic_load_explicit(&n->newest, memory_order_acquire);
}

static inline version_t *older_acq(version_t *v)
{
    return atomic_load_explicit(&v->older, memory_order_acquire);
}

/* First node with a key >= ukey, or NULL.  When prev is not NULL, fills
 * prev[level] with the last node < ukey on every level below max_height. */
static node_t *find_ge(moor_memtable_t *m, const char *ukey, size_t ulen, node_t **prev)
{
    int level = atomic_load_explicit(&m->max_height, memory_order_relaxed) - 1;
    node_t *x = m->head;
    node_t *ge = NULL; /* a node already known >= target: skip comparing again */

    for (;;) {
        node_t *nx = next_acq(x, level);

        if (nx && nx != ge && node_cmp(nx, ukey, ulen) < 0) {
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

/* The node of ukey, or NULL: through its slot when the slot is its own,
 * else by a search. */
static node_t *find_key(moor_memtable_t *m, const char *ukey, size_t ulen)
{
    node_t *n = atomic_load_explicit(&m->slots[slot_of(m, ukey, ulen)], memory_order_acquire);

    if (!n)
        return NULL; /* no key that hashes here was ever added */
    if (node_cmp(n, ukey, ulen) == 0)
        return n;
    n = find_ge(m, ukey, ulen, NULL);
    return n && node_cmp(n, ukey, ulen) == 0 ? n : NULL;
}

/* Writer only: fills prev[] for inserting ukey and returns the node after
 * prev[0] (the key's own node when it has one).  When the last node added
 * is still the tail and below ukey, its splice is the rightmost path and
 * thus already the answer: any node after splice[i] on level i would come
 * after the tail. */
static node_t *find_prev(moor_memtable_t *m, const char *ukey, size_t ulen, node_t **prev)
{
    node_t *last = m->last;

    if (last && !atomic_load_explicit(&last->next[0], memory_order_relaxed) &&
        node_cmp(last, ukey, ulen) < 0) {
        memcpy(prev, m->splice, sizeof(m->splice));
        return NULL;
    }
    return find_ge(m, ukey, ulen, prev);
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
    moor_arena_init(&m->arena);
    m->head = moor_arena_alloc(&m->arena, hsize);
    if (!m->head)
        goto fail;
    m->head->key = NULL;
    m->head->klen = 0;
    atomic_init(&m->head->newest, NULL);
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

/* Carves a version out of the arena and writes its entry; *ukey points at
 * the user key inside it.  NULL on OOM or on sizes that overflow (the
 * arena is unaltered either way). */
static version_t *version_build(moor_memtable_t *m, uint64_t trailer, const char *key, size_t klen,
                                const char *val, size_t vlen, const char **ukey)
{
    size_t iklen = klen + MOOR_IKEY_TRAILER;
    size_t need = sizeof(version_t) + moor_varint_len(iklen) + iklen + moor_varint_len(vlen) + vlen;
    version_t *v;
    char *p;

    if (iklen < klen || vlen > SIZE_MAX / 2 || need < vlen || need < iklen)
        return NULL;
    v = moor_arena_alloc(&m->arena, need);
    if (!v)
        return NULL;
    atomic_init(&v->older, NULL);
    v->trailer = trailer;
    p = (char *)(v + 1);
    p += moor_enc_varint(p, iklen);
    *ukey = p;
    if (klen)
        memcpy(p, key, klen);
    moor_enc_fixed64(p + klen, trailer);
    p += iklen;
    p += moor_enc_varint(p, vlen);
    if (vlen)
        memcpy(p, val, vlen);
    return v;
}

/* Puts v into n's chain, which is newest first. */
static void chain_insert(node_t *n, version_t *v)
{
    version_t *p = atomic_load_explicit(&n->newest, memory_order_relaxed);
    version_t *q;

    if (v->trailer > p->trailer) {
        atomic_store_explicit(&v->older, p, memory_order_relaxed);
        atomic_store_explicit(&n->newest, v, memory_order_release);
        return;
    }
    while ((q = atomic_load_explicit(&p->older, memory_order_relaxed)) && q->trailer > v->trailer)
        p = q;
    atomic_store_explicit(&v->older, q, memory_order_relaxed);
    atomic_store_explicit(&p->older, v, memory_order_release);
}

/* Links a new node for the key of v, after prev[] on each level. */
static node_t *node_link(moor_memtable_t *m, version_t *v, const char *ukey, size_t klen,
                         node_t **prev)
{
    int height = random_height(m);
    int cur = atomic_load_explicit(&m->max_height, memory_order_relaxed);
    node_t *n =
        moor_arena_alloc(&m->arena, sizeof(node_t) + (size_t)height * sizeof(_Atomic(node_t *)));

    if (!n)
        return NULL;
    n->key = ukey;
    n->klen = klen;
    atomic_init(&n->newest, v);
    if (height > cur) {
        for (int i = cur; i < height; i++)
            prev[i] = m->head;
        /* Relaxed is enough: a reader that sees the new height but not yet
         * the node finds NULL at head and drops down a level. */
        atomic_store_explicit(&m->max_height, height, memory_order_relaxed);
    }
    for (int i = 0; i < height; i++) {
        /* The node's own link needs no ordering: the release store below
         * publishes it together with the node and its version.  (Readers
         * reaching n on a lower level never read this level's link.) */
        atomic_store_explicit(&n->next[i],
                              atomic_load_explicit(&prev[i]->next[i], memory_order_relaxed),
                              memory_order_relaxed);
        atomic_store_explicit(&prev[i]->next[i], n, memory_order_release);
    }
    for (int i = 0; i < MEMTABLE_MAX_HEIGHT; i++)
        m->splice[i] = i < height ? n : i < cur ? prev[i] : m->head;
    m->last = n;
    return n;
}

int moor_memtable_add(moor_memtable_t *m, uint64_t seq, int type, const char *key, size_t klen,
                      const char *val, size_t vlen)
{
    node_t *prev[MEMTABLE_MAX_HEIGHT];
    size_t slot = slot_of(m, key, klen);
    node_t *n = atomic_load_explicit(&m->slots[slot], memory_order_relaxed);
    const char *ukey;
    version_t *v = version_build(m, moor_ikey_trailer(seq, type), key, klen, val, vlen, &ukey);

    if (!v)
        goto oom;
    if (n && node_cmp(n, key, klen) == 0) {
        chain_insert(n, v); /* an overwrite through the key's own slot: no search */
    } else {
        n = find_prev(m, key, klen, prev);
        if (n && node_cmp(n, key, klen) == 0)
            chain_insert(n, v);
        else if (!(n = node_link(m, v, ukey, klen, prev)))
            goto oom;
    }
    /* After the list: a reader that finds n in its slot finds it in the
     * list too (release: the node and its versions are visible with it). */
    atomic_store_explicit(&m->slots[slot], n, memory_order_release);
    atomic_store_explicit(&m->bytes, moor_arena_used(&m->arena) + m->slot_bytes,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&m->count, 1, memory_order_relaxed);
    return 0;
oom:
    return moor_diag(MOOR_ENOMEM, "memtable: no memory for a %zu-byte key, %zu-byte value", klen,
                     vlen);
}

int moor_memtable_get(moor_memtable_t *m, const char *key, size_t klen, uint64_t snap_seq,
                      int *type, const char **val, size_t *vlen)
{
    uint64_t seq = snap_seq > MOOR_SEQ_MAX ? MOOR_SEQ_MAX : snap_seq;
    uint64_t limit = moor_ikey_trailer(seq, MOOR_VT_SEEK);
    node_t *n = find_key(m, key, klen);
    version_t *v = n ? newest_acq(n) : NULL;
    entry_view_t e;

    while (v && v->trailer > limit) /* newer than the snapshot */
        v = older_acq(v);
    if (!v)
        return 0;
    entry_decode(ver_entry(v), &e);
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

/* Walks the versions of every key in internal key order: keys ascending,
 * each key's chain newest first.  Versions added after a key was reached
 * may or may not be seen; the engine filters by seqno anyway. */
typedef struct mt_iter {
    moor_iiter_t base;
    moor_memtable_t *m; /* referenced until destroy */
    node_t *node;       /* current key, NULL past the end */
    version_t *ver;     /* current version of it */
} mt_iter_t;

static void iter_show(mt_iter_t *it)
{
    entry_view_t e;

    if (!it->ver) {
        it->node = NULL;
        it->base.valid = 0;
        it->base.key = it->base.val = NULL;
        it->base.klen = it->base.vlen = 0;
        return;
    }
    entry_decode(ver_entry(it->ver), &e);
    it->base.valid = 1;
    it->base.key = e.ikey;
    it->base.klen = e.iklen;
    it->base.val = e.val;
    it->base.vlen = e.vlen;
}

/* At the first version of node n (or the end). */
static void iter_land(mt_iter_t *it, node_t *n)
{
    it->node = n;
    it->ver = n ? newest_acq(n) : NULL;
    iter_show(it);
}

static void iter_seek_first(moor_iiter_t *base)
{
    mt_iter_t *it = (mt_iter_t *)base;

    iter_land(it, next_acq(it->m->head, 0));
}

/* First entry >= (ukey, trailer) in internal key order. */
static void iter_seek_to(mt_iter_t *it, const char *ukey, size_t ulen, uint64_t trailer)
{
    node_t *n = find_ge(it->m, ukey, ulen, NULL);
    version_t *v;

    if (!n || node_cmp(n, ukey, ulen) != 0) {
        iter_land(it, n);
        return;
    }
    /* Within the key, larger trailers sort first. */
    for (v = newest_acq(n); v && v->trailer > trailer; v = older_acq(v))
        ;
    if (!v) {
        iter_land(it, next_acq(n, 0));
        return;
    }
    it->node = n;
    it->ver = v;
    iter_show(it);
}

static void iter_seek(moor_iiter_t *base, const char *target, size_t tlen)
{
    mt_iter_t *it = (mt_iter_t *)base;

    /* A target too short to be an internal key is read as a bare user key:
     * the largest trailer sorts before every version of that key. */
    if (tlen < MOOR_IKEY_TRAILER)
        iter_seek_to(it, target, tlen, UINT64_MAX);
    else
        iter_seek_to(it, target, moor_ikey_ulen(tlen),
                     moor_dec_fixed64(target + tlen - MOOR_IKEY_TRAILER));
}

static void iter_next(moor_iiter_t *base)
{
    mt_iter_t *it = (mt_iter_t *)base;
    version_t *older;

    if (!it->node)
        return;
    if ((older = older_acq(it->ver))) {
        it->ver = older;
        iter_show(it);
        return;
    }
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
