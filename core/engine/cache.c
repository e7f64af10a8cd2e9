/*
 * cache.c -- the block cache: a chained hash table keyed by (file, offset)
 * plus an intrusive doubly linked LRU list, bounded by the bytes charged.
 *
 * Reference counting: an entry holds one reference for being in the cache
 * (in_cache) and one per pinned handle.  Only entries that are in the cache
 * and unpinned (refs == 1) sit on the LRU list, so eviction never has to
 * skip pinned entries: it pops from the cold end while usage > capacity.
 * An entry leaves the table by eviction, replacement or erase_file; it is
 * freed (deleter called, exactly once) when its last reference goes.
 *
 * Invariants (under mu):
 *   usage == sum of charge over entries with in_cache;
 *   entry on lru  <=>  in_cache && refs == 1;
 *   usage <= capacity whenever the lru is non-empty after an operation
 *   (only pinned entries may keep usage above capacity).
 *
 * Threads: every public call takes the one mutex for a few pointer moves.
 * Deleters run after the mutex is dropped, so they may be slow or even call
 * back into the cache.
 */
#include "cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "util/err.h"

#define CACHE_MIN_BUCKETS 64

struct moor_cache_handle {
    uint64_t file, off; /* the key */
    uint64_t hash;      /* mix of the key, cached for resizes */
    void *value;        /* owned; handed to deleter at the end */
    size_t charge;      /* bytes this entry counts for */
    void (*deleter)(void *value);
    moor_cache_handle_t *chain; /* next in the hash bucket */
    moor_cache_handle_t *prev;  /* LRU links, valid only while on the lru */
    moor_cache_handle_t *next;
    uint32_t refs; /* in_cache + pins */
    bool in_cache; /* reachable through the table */
};

struct moor_cache {
    pthread_mutex_t mu;
    moor_cache_handle_t **buckets; /* nbuckets heads; power of two */
    size_t nbuckets;
    size_t entries; /* entries in the table */
    size_t usage;   /* see invariants */
    size_t capacity;
    moor_cache_handle_t lru; /* sentinel: lru.next is the coldest */
    uint64_t hits, misses;
};

/* ---- hashing and the table ---------------------------------------------- */

static uint64_t key_hash(uint64_t file, uint64_t off)
{
    /* splitmix64 finaliser over a combination of both halves. */
    uint64_t x = file * UINT64_C(0x9e3779b97f4a7c15) ^ off;

    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/* Address of the link pointing at (file, off), or at the bucket's NULL end. */
static moor_cache_handle_t **table_find(moor_cache_t *c, uint64_t file, uint64_t off, uint64_t hash)
{
    moor_cache_handle_t **pp = &c->buckets[hash & (c->nbuckets - 1)];

    while (*pp && ((*pp)->file != file || (*pp)->off != off))
        pp = &(*pp)->chain;
    return pp;
}

/* Doubles the table.  On OOM keeps the old one: chains just get longer. */
static void table_grow(moor_cache_t *c)
{
    size_t n = c->nbuckets * 2;
    moor_cache_handle_t **nb = calloc(n, sizeof(*nb));

    if (!nb)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        moor_cache_handle_t *e = c->buckets[i];
        while (e) {
            moor_cache_handle_t *next = e->chain;
            moor_cache_handle_t **head = &nb[e->hash & (n - 1)];
            e->chain = *head;
            *head = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
}

/* ---- LRU list ----------------------------------------------------------- */

static void lru_remove(moor_cache_handle_t *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static void lru_append(moor_cache_t *c, moor_cache_handle_t *e)
{
    e->next = &c->lru;
    e->prev = c->lru.prev;
    e->prev->next = e;
    c->lru.prev = e;
}

/* ---- entry lifetime ----------------------------------------------------- */

/* Entries whose last reference went while mu was held; freed after unlock. */
typedef struct graveyard {
    moor_cache_handle_t *head; /* linked through chain */
} graveyard_t;

static void bury(graveyard_t *g, moor_cache_handle_t *e)
{
    e->chain = g->head;
    g->head = e;
}

static void graveyard_free(graveyard_t *g)
{
    moor_cache_handle_t *e = g->head;

    while (e) {
        moor_cache_handle_t *next = e->chain;
        if (e->deleter)
            e->deleter(e->value);
        free(e);
        e = next;
    }
    g->head = NULL;
}

/* Drops the cache's own reference of an entry already unlinked from the
 * table.  REQUIRES: e->in_cache was true; mu held. */
static void detach(moor_cache_t *c, moor_cache_handle_t *e, graveyard_t *g)
{
    e->in_cache = false;
    c->usage -= e->charge;
    c->entries--;
    if (e->refs == 1) {
        lru_remove(e);
        e->refs = 0;
        bury(g, e);
    } else {
        e->refs--;
    }
}

static void evict_to_capacity(moor_cache_t *c, graveyard_t *g)
{
    while (c->usage > c->capacity && c->lru.next != &c->lru) {
        moor_cache_handle_t *e = c->lru.next;
        moor_cache_handle_t **pp = table_find(c, e->file, e->off, e->hash);

        *pp = e->chain;
        detach(c, e, g);
    }
}

/* ---- API ---------------------------------------------------------------- */

moor_cache_t *moor_cache_new(size_t capacity)
{
    moor_cache_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->buckets = calloc(CACHE_MIN_BUCKETS, sizeof(*c->buckets));
    if (!c->buckets)
        goto fail;
    if (pthread_mutex_init(&c->mu, NULL) != 0)
        goto fail;
    c->nbuckets = CACHE_MIN_BUCKETS;
    c->capacity = capacity;
    c->lru.next = c->lru.prev = &c->lru;
    return c;

fail:
    free(c->buckets);
    free(c);
    return NULL;
}

void moor_cache_free(moor_cache_t *c)
{
    graveyard_t g = {NULL};

    if (!c)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        moor_cache_handle_t *e = c->buckets[i];
        while (e) {
            moor_cache_handle_t *next = e->chain;
            bury(&g, e);
            e = next;
        }
    }
    graveyard_free(&g);
    pthread_mutex_destroy(&c->mu);
    free(c->buckets);
    free(c);
}

moor_cache_handle_t *moor_cache_lookup(moor_cache_t *c, uint64_t file, uint64_t off)
{
    uint64_t hash = key_hash(file, off);
    moor_cache_handle_t *e;

    pthread_mutex_lock(&c->mu);
    e = *table_find(c, file, off, hash);
    if (e) {
        if (e->refs == 1)
            lru_remove(e); /* pinned entries are not eviction candidates */
        e->refs++;
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return e;
}

moor_cache_handle_t *moor_cache_insert(moor_cache_t *c, uint64_t file, uint64_t off, void *value,
                                       size_t charge, void (*deleter)(void *value))
{
    moor_cache_handle_t *e = malloc(sizeof(*e));
    moor_cache_handle_t **pp, *old;
    graveyard_t g = {NULL};

    if (!e) {
        if (deleter)
            deleter(value);
        moor_diag(MOOR_ENOMEM, "cache: no memory for an entry of file %llu",
                  (unsigned long long)file);
        return NULL;
    }
    *e = (moor_cache_handle_t){.file = file,
                               .off = off,
                               .hash = key_hash(file, off),
                               .value = value,
                               .charge = charge,
                               .deleter = deleter,
                               .refs = 2,
                               .in_cache = true};
    pthread_mutex_lock(&c->mu);
    pp = table_find(c, file, off, e->hash);
    old = *pp;
    if (old) {
        *pp = old->chain;
        detach(c, old, &g);
    }
    e->chain = c->buckets[e->hash & (c->nbuckets - 1)];
    c->buckets[e->hash & (c->nbuckets - 1)] = e;
    c->entries++;
    c->usage += charge;
    evict_to_capacity(c, &g);
    if (c->entries > c->nbuckets)
        table_grow(c);
    pthread_mutex_unlock(&c->mu);
    graveyard_free(&g);
    return e;
}

void *moor_cache_value(const moor_cache_handle_t *h)
{
    return h->value;
}

void moor_cache_release(moor_cache_t *c, moor_cache_handle_t *h)
{
    graveyard_t g = {NULL};

    pthread_mutex_lock(&c->mu);
    if (--h->refs == 0) {
        bury(&g, h); /* already out of the table */
    } else if (h->refs == 1 && h->in_cache) {
        lru_append(c, h);
        /* Pins may have held usage above capacity; settle it now so an idle
         * cache never stays over its bound. */
        evict_to_capacity(c, &g);
    }
    pthread_mutex_unlock(&c->mu);
    graveyard_free(&g);
}

void moor_cache_erase_file(moor_cache_t *c, uint64_t file)
{
    graveyard_t g = {NULL};

    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->nbuckets; i++) {
        moor_cache_handle_t **pp = &c->buckets[i];
        while (*pp) {
            moor_cache_handle_t *e = *pp;
            if (e->file != file) {
                pp = &e->chain;
                continue;
            }
            *pp = e->chain;
            detach(c, e, &g);
        }
    }
    pthread_mutex_unlock(&c->mu);
    graveyard_free(&g);
}

void moor_cache_stats(moor_cache_t *c, moor_cache_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->usage = c->usage;
    out->capacity = c->capacity;
    out->entries = c->entries;
    pthread_mutex_unlock(&c->mu);
}
