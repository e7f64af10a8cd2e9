/*
 * load.h -- every node's load, spread epidemically: a table of the last
 * load map each member published, kept by every node.
 *
 * Each node holds one entry per member: [id, seq, load, age_ms], load being an
 * opaque MessagePack map (the figures the node publishes: requests/s by
 * kind, p99 latency, bytes stored, ...; the server fills it, this module
 * never looks inside).  The node's own entry changes through
 * moor_load_set_local, which raises its seq.  Every interval the node
 * sends its whole table to up to `fanout` random members (the ids the
 * members callback gives) as
 *
 *   `_load` {from = id (bin), loads = [[id (bin), seq (uint), load (map)], ...]}
 *
 * and the receiver merges it (per id the higher seq wins) and answers
 * {loads = [...]} with its own table, which the sender merges too
 * (push-pull: a table spreads to everyone in O(log n) rounds, and message
 * loss only slows it).  A node's first seq is its clock at creation times
 * 1000, so a restarted node's entries win over what others remember of
 * its previous run.  An entry whose seq did not move for a while is still
 * reported, with its age (ms since its seq last moved here); one that did
 * not move for `expire_ms` is dropped.
 *
 * Decoding is bounded: at most MOOR_LOAD_MAX_ENTRIES entries, ids of
 * 1..MOOR_RING_ID_MAX bytes, a load map of at most MOOR_LOAD_MAX_BYTES
 * nested at most MOOR_LOAD_MAX_DEPTH deep.  A message breaking any bound
 * is refused whole (nothing merged), with a diagnostic.
 *
 * Only env.h (clock and transport); one thread; deterministic given the
 * seed and the environment.
 */
#ifndef MOOR_CLUSTER_LOAD_H
#define MOOR_CLUSTER_LOAD_H

#include <stddef.h>
#include <stdint.h>

#include "coord.h"
#include "env.h"
#include "ring.h"

#define MOOR_LOAD_INTERVAL_MS 1000u
#define MOOR_LOAD_FANOUT 3u
#define MOOR_LOAD_TIMEOUT_MS 1000u
#define MOOR_LOAD_EXPIRE_MS 300000u /* entries silent this long are dropped */
#define MOOR_LOAD_MAX_ENTRIES 1024u /* per table and per message */
#define MOOR_LOAD_MAX_BYTES 4096u   /* one load map, encoded */
#define MOOR_LOAD_MAX_DEPTH 4       /* nesting inside a load map */

typedef struct moor_load moor_load_t;

/* Fills ids[i] / lens[i] with at most max member ids (the node's own may
 * be among them: it is skipped); the pointers are borrowed until the next
 * call into this module.  Returns how many. */
typedef size_t (*moor_load_members_fn)(void *ud, const char **ids, size_t *lens, size_t max);

typedef struct moor_load_opts {
    const char *node_id; /* this node, 1..MOOR_RING_ID_MAX bytes (copied) */
    size_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t transport;
    moor_load_members_fn members; /* required */
    void *members_ud;
    uint32_t interval_ms; /* rounds; 0 = MOOR_LOAD_INTERVAL_MS */
    uint32_t fanout;      /* members per round; 0 = MOOR_LOAD_FANOUT */
    uint32_t timeout_ms;  /* per `_load`; 0 = MOOR_LOAD_TIMEOUT_MS */
    uint64_t expire_ms;   /* 0 = MOOR_LOAD_EXPIRE_MS */
    uint64_t seed;        /* picks the members of a round */
} moor_load_opts_t;

/* One entry as the table holds it; pointers borrowed until the table
 * changes (any call into this module). */
typedef struct moor_load_view {
    const char *id;
    size_t idlen;
    uint64_t seq;
    uint64_t age_ms;  /* since its seq last moved on this node */
    const char *load; /* MessagePack map; len 0 when the node never published */
    size_t len;
} moor_load_view_t;

typedef struct moor_load_stats {
    uint64_t rounds, sent, answered, failed, received, refused, merged, expired;
} moor_load_stats_t;

/* Calls fn for each entry of a `_load` message or answer, in order. */
typedef void (*moor_load_entry_fn)(void *ud, const char *id, size_t idlen, uint64_t seq,
                                   const char *load, size_t len, uint64_t age_ms);

/* ===== API ===== */

/* The table with only this node's entry (no load yet).  0, MOOR_EINVAL
 * (node id empty or too long, members or an interface missing) or
 * MOOR_ENOMEM. */
int moor_load_new(const moor_load_opts_t *o, moor_load_t **out);

/* Starts the rounds (the first one after an interval). */
void moor_load_start(moor_load_t *l);

/* Stops the rounds and frees, at once or -- when requests are still owed
 * an answer by the transport -- when the last of them is answered (env.h:
 * each answer comes exactly once). */
void moor_load_free(moor_load_t *l);

/* Publishes this node's load: a MessagePack map of at most
 * MOOR_LOAD_MAX_BYTES (copied); its seq goes up by one.  0, MOOR_EINVAL
 * (not a map within the bounds) or MOOR_ENOMEM. */
int moor_load_set_local(moor_load_t *l, const char *map, size_t len);

/* 1 for "_load". */
int moor_load_is_method(const char *method, size_t mlen);

/* Answers a peer's `_load`: merges it and answers {loads = table}; a
 * malformed message gets MOOR_EPROTO and changes nothing.  done runs
 * exactly once, before this returns. */
void moor_load_handle(moor_load_t *l, const char *method, size_t mlen, const char *params,
                      size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg);

/* Entries held (the node's own included), and the i-th in id order. */
size_t moor_load_count(const moor_load_t *l);
void moor_load_at(const moor_load_t *l, size_t i, moor_load_view_t *out);

/* The entry of id: 1 and *out, or 0. */
int moor_load_find(const moor_load_t *l, const char *id, size_t idlen, moor_load_view_t *out);

void moor_load_stats(const moor_load_t *l, moor_load_stats_t *out);

/* Decodes the `loads` array of a message (params of `_load`: one map with
 * `loads`; or an answer: the map {loads}) -- checks every bound first,
 * then calls fn per entry.  from/fromlen: the `from` field when present
 * (NULL otherwise).  0, or MOOR_EPROTO with a diagnostic (and fn never
 * called).  Safe on any bytes. */
int moor_load_decode(const char *msg, size_t len, moor_load_entry_fn fn, void *ud,
                     const char **from, size_t *fromlen);

/* Encodes the table as a message: {from = self, loads = [...]}.  0 or
 * MOOR_ENOMEM. */
int moor_load_encode(const moor_load_t *l, moor_buf_t *out);

#endif
