/*
 * aae.h -- active anti-entropy: hash trees over the records this node
 * replicates, exchanged with the other replicas so that they converge by
 * themselves, plus the reaping of old tombstones.
 *
 * Trees.  For every keyspace and every vnode range (lo, hi] of the ring
 * this node replicates under that space's n, one tree: MOOR_AAE_SEGMENTS
 * leaves, each over a fixed slice of the range's tokens (so a segment is
 * one contiguous scan of the store, which orders keys by token), grouped
 * into MOOR_AAE_BRANCHES branches.  A leaf is the XOR of
 * hash(engine key, hash(record bytes)) over the keys of its segment, a
 * branch the XOR of its leaves, the root the XOR of the branches (as
 * Riak's TictacAAE does): a write changes one leaf, its branch and the
 * root by XOR-ing the old key hash out and the new one in -- O(1), no
 * reread of the segment.  Every record write of this node reaches the
 * trees through moor_aae_note (the coordinator's on_write hook); a tree
 * set that is missing or stale at start (no clean shutdown, another ring)
 * is rebuilt by a throttled scan of the store (`build_kb_s`), during which
 * exchanges of that node wait.  moor_aae_save writes the trees at a clean
 * shutdown; the next start loads them when the ring is the same.
 *
 * Exchange (one range, this node and one other owner of it that is up):
 * roots first (`_aae_roots`, many ranges per request), then for a range
 * whose roots differ the 32 branch hashes and key counts
 * (`_aae_branches`), then per differing branch: a side whose branch is
 * empty gets the other's records straight away (`_aae_push` /
 * `_aae_keys` with records); otherwise the keys and record hashes of the
 * branch -- or, for a branch holding many keys, of its differing
 * segments (`_aae_leaves` first) -- are compared (`_aae_keys`), and each
 * differing key is repaired: the peer's record is fetched
 * (`_aae_fetch`), merged into this node's (opts.merge_local: the clocks
 * decide), and the merge pushed back where it was missing or stale.
 * Bytes are capped (`rate_kb_s`) and so are exchanges at once
 * (`concurrency`).
 *
 * Schedule: every `interval_s` a background pass exchanges each range
 * with the other owners whose id sorts after this node's (each pair of
 * replicas once per pass).  moor_aae_repair starts a repair: every range
 * this node replicates (or those asked for) with every other owner, with
 * progress (moor_aae_stats); it can be stopped and resumes by range.
 *
 * Tombstones: in each pass, the first owner of a range lists the keys
 * whose every sibling is a tombstone written more than the space's
 * grace ago, asks every other owner whether it holds the same record
 * (`_aae_reap` check), and only when all of them do has each delete it
 * (`_aae_reap` drop, which deletes only a record still identical), then
 * deletes its own.  An owner that does not answer keeps the key for a
 * later pass, so a delete never comes back through repair.
 *
 * Talks to the world only through env.h.  One thread.  Deterministic.
 */
#ifndef MOOR_CLUSTER_AAE_H
#define MOOR_CLUSTER_AAE_H

#include <stddef.h>
#include <stdint.h>

#include "coord.h"
#include "env.h"
#include "ring.h"

#define MOOR_AAE_SEGMENTS 1024
#define MOOR_AAE_BRANCHES 32 /* of MOOR_AAE_SEGMENTS / MOOR_AAE_BRANCHES leaves each */

/* Store keys of the trees' saved state: ff x 8 | 00 | 'a' | ... (after
 * every record key, beside the hints' ff x 8 | 00 | 'h'). */
#define MOOR_AAE_PREFIX "\xff\xff\xff\xff\xff\xff\xff\xff\x00" "a"
#define MOOR_AAE_PREFIX_LEN 10

typedef struct moor_aae moor_aae_t;

typedef struct moor_aae_space {
    const char *name;
    size_t nlen;
    uint32_t n;        /* replicas */
    uint64_t grace_ms; /* tombstones older than this may be reaped; 0 = never */
} moor_aae_space_t;

/* Merges rec (a record of the engine key key) into this node's store, as
 * a replica's `_put` does (the coordinator's local merge, which also calls
 * moor_aae_note).  0 and done follows once durable, or an error and no done. */
typedef int (*moor_aae_merge_fn)(void *ud, const char *key, size_t klen, const char *rec,
                                 size_t rlen, moor_store_done_fn done, void *arg);

/* A repair ran over every range it was asked for and every exchange
 * completed (the node may clear its repair marks). */
typedef void (*moor_aae_repaired_fn)(void *ud);

typedef struct moor_aae_opts {
    const char *node_id;
    size_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t transport;
    moor_store_if_t store;
    moor_aae_merge_fn merge_local;
    void *merge_ud;
    moor_aae_repaired_fn repaired; /* may be NULL */
    void *repaired_ud;
    const moor_aae_space_t *spaces; /* copied */
    uint32_t nspaces;
    uint32_t interval_s;  /* background pass every so often; 0 = none */
    uint32_t rate_kb_s;   /* exchange bytes (sent + received) per second; 0 = 8192 */
    uint32_t build_kb_s;  /* tree-build scan bytes per second; 0 = 32768 */
    uint32_t concurrency; /* exchanges at once; 0 = 2 */
    uint32_t timeout_ms;  /* per request; 0 = 5000 */
} moor_aae_opts_t;

typedef struct moor_aae_stats {
    int running;                /* a repair is in progress */
    int trees_ready;            /* every tree built */
    uint32_t trees;             /* (space, range) trees this node keeps */
    uint32_t ranges_total;      /* of the current (or last) repair */
    uint32_t ranges_done;
    uint32_t ranges_incomplete; /* of those, ranges not exchanged with every owner (one was
                                 * down or an exchange failed): a new repair tries them again */
    uint64_t exchanges;         /* range exchanges completed (repair and background) */
    uint64_t exchange_failures; /* range exchanges a peer did not complete */
    uint64_t keys_compared;
    uint64_t keys_repaired; /* keys fetched or pushed because they differed */
    uint64_t bytes_sent, bytes_received;
    uint64_t tombstones_reaped;
    uint64_t passes;            /* background passes completed */
    double last_full_pass_s;    /* duration of the last completed repair or pass; 0: none yet */
    uint64_t last_full_pass_ms; /* wall-clock ms when it ended; 0: none */
    uint64_t build_keys;        /* keys scanned by the last tree build */
    double build_s;             /* duration of the last tree build */
} moor_aae_stats_t;

/* ===== API ===== */

int moor_aae_new(const moor_aae_opts_t *o, moor_aae_t **out);
/* Stops everything (requests in flight are absorbed), frees. */
void moor_aae_free(moor_aae_t *a);

/* Reads the saved trees' state (none: they are built when a ring comes). */
int moor_aae_load(moor_aae_t *a);

/* The ring to follow (a reference is taken).  A ring that gives the same
 * set of (space, range) trees keeps them; another one rebuilds them. */
void moor_aae_set_ring(moor_aae_t *a, moor_ring_t *ring);

/* A record of engine key key changed in this node's store from old (NULL:
 * absent) to rec (NULL: deleted).  Called for every record write. */
void moor_aae_note(moor_aae_t *a, const char *key, size_t klen, const char *old, size_t oldlen,
                   const char *rec, size_t rlen);

/* Starts (or resumes) a repair of the ranges this node replicates: space
 * (NULL: every space) and ranges (pairs lo, hi; nranges 0: all).  restart
 * 1 forgets a stopped repair's progress.  0, or MOOR_EINVAL (unknown
 * space, a range that is no tree here), MOOR_EBUSY (trees still building
 * is fine: the repair waits for them). */
int moor_aae_repair(moor_aae_t *a, const char *space, size_t slen, const uint64_t *ranges,
                    uint32_t nranges, int restart);
/* Stops a running repair after the exchanges in flight; 1 if one ran. */
int moor_aae_repair_stop(moor_aae_t *a);

/* Saves the trees and marks them clean; done(arg, status) once durable
 * (at once with 0 when there is nothing to save). */
void moor_aae_save(moor_aae_t *a, moor_store_done_fn done, void *arg);

void moor_aae_stats(const moor_aae_t *a, moor_aae_stats_t *out);

/* 1 if method is one of the `_aae_*` peer methods. */
int moor_aae_is_method(const char *method, size_t mlen);
/* Answers a peer's `_aae_*` request; done runs exactly once. */
void moor_aae_handle(moor_aae_t *a, const char *method, size_t mlen, const char *params,
                     size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg);

/* TEST: the root of the tree of space's range ending at hi (0 when none);
 * 1 if found. */
int moor_aae_root(const moor_aae_t *a, const char *space, size_t slen, uint64_t hi,
                  uint64_t *root);

#endif
