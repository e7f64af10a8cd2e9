/*
 * coord.h -- the coordinator: quorum reads and writes over the ring.
 *
 * Any node takes any call.  A key's *owners* are the first N members of
 * its preference list; the replicas a call asks are the first N *healthy*
 * ones: an owner whose ring status is down is skipped and the next healthy
 * member clockwise that is no owner stands in for it, a *fallback* tagged
 * with that owner (sloppy quorum).  moor_coord_where tells both lists.
 *
 * put/del are coordinated by an owner that is up (Riak's way; a fallback
 * never coordinates for an owner): it reads its local record (missing: a
 * new key), builds the next version with moor_record_write -- a ctx that
 * descends the record replaces its siblings, anything else adds a sibling;
 * this node's clock entry is raised to the next value of a node-wide
 * hybrid logical clock, so no counter is ever given to two versions, not
 * even after a crash lost unsynced writes -- writes it locally (visible at
 * once) and sends `_put {space, key, record}` to the other owners and
 * `_put {..., fallback_for = owner}` to the fallbacks, which keep it as a
 * hint (opts.hint_put) and never in their own data.  An owner that does
 * not answer in time (it gets half the time left when a spare exists) or
 * cannot be reached is replaced the same way by the next spare healthy
 * member, while the deadline is ahead.  A write WITHOUT a ctx (blind)
 * first reads the key from the other replicas (`_get`, R - 1 answers or
 * half the timeout) and builds on the merge, so a replica that missed a
 * recent write or delete cannot resurrect an old value.  It answers after
 * W acknowledgements, its own durable local write among them; a
 * fallback's ack counts unless req.sloppy is MOOR_COORD_SLOPPY_OFF.  Each
 * replica merges what it receives (moor_record_merge), so no acknowledged
 * write a later one did not see is lost.
 * Elsewhere the write is forwarded as `_coord {op, space, key, value?,
 * ctx?, n, w, timeout_ms, sloppy, receipt}` to the first owner that is up,
 * which coordinates it and answers the client-level result or the error;
 * if it does not answer (timeout, connection error, shutting down) the
 * next one is tried once.  The replica gets three quarters of the call's
 * timeout, so a forwarded call answers within twice its timeout.
 * get: asks the replicas with `_get {space, key}`, answers once R replies
 * found the key (a notfound does not satisfy R while another replica may
 * have it: notfound_ok = false), or once every replica answered, or at the
 * deadline with R answers, with their merge (every live sibling plus the
 * merged clock as ctx), and sends the merged record to owners that
 * answered with less, in the background (read repair).
 * With req.receipt the answer also carries `receipt`, one entry per
 * replica asked {node, status, fallback_for?}, and waits for every replica
 * (or the deadline) first.
 *
 * Failures say what happened, as codes (util/err.h): MOOR_EQUORUM "<k> of
 * <n> replicas acknowledged, <w> needed" (get: "answered", r) as soon as
 * the quorum is out of reach, or at the deadline when some replica
 * answered; MOOR_ETIMEDOUT when none answered by the deadline;
 * MOOR_EUNAVAIL when the ring has fewer members (or fewer healthy ones)
 * than the level needs, or every owner of a written key is down.  A
 * forwarded write: the code the coordinating replica answered (mapped
 * back from its wire name once, by the transport); MOOR_ETIMEDOUT when no
 * replica tried answered; MOOR_EQUORUM when none could be reached.  Levels
 * left 0 default to n = 3 and r = w = n / 2 + 1.
 *
 * A get whose siblings the resolver merged answers the resolved value with
 * the clock of its write-back (which descends the merge) as ctx.
 *
 * What the env must do: run every transport reply and store done exactly
 * once, even after moor_coord_free (they are then absorbed); copy what
 * request() and put() are given (borrowed for the call only); make a put
 * visible to get() as soon as put() returns 0.
 *
 * Talks to the world only through env.h.  One thread.  Deterministic given
 * the env: no randomness, no clock but clock.now_ms.
 */
#ifndef MOOR_CLUSTER_COORD_H
#define MOOR_CLUSTER_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "ring.h"

typedef struct moor_coord moor_coord_t;

/* Replicas of one key: the one maximum of n (and of r and w) everywhere --
 * the config (moor.space), request opts and _coord; lua/moor/config.lua
 * holds the same number for its early checks (a test pins them equal). */
#define MOOR_COORD_N_MAX 16

/* Answer to a client-level call, shaped like the wire methods' results:
 * get -> nil or {values = [...], ctx = bin}; put -> {ctx = bin}; del ->
 * true.  code 0 on success (result set), else a negative MOOR_E* code
 * (util/err.h: MOOR_EQUORUM, MOOR_EUNAVAIL, MOOR_ETIMEDOUT, MOOR_ECLOSED,
 * MOOR_EINVAL, MOOR_EBADCTX, ...) with errmsg saying what happened; the
 * wire's error name is moor_err_wire(code). */
typedef void (*moor_coord_done_fn)(void *arg, int code, const char *errmsg, const char *result,
                                   size_t rlen);

/* Optional resolver hook: given the encoded record of a key with more
 * than one live sibling, return 1 and append the resolved value
 * (MessagePack) to out, 0 to keep the siblings, <0 on error (logged,
 * siblings kept).  A resolved nil means "deleted": the write-back is a
 * tombstone and the get answers nil. */
typedef int (*moor_coord_resolve_fn)(void *ud, const char *space, size_t slen, const char *record,
                                     size_t rlen, moor_buf_t *out);

/* Optional check of the space and key of a request from a peer (`_get`,
 * `_put`, `_coord`): 0 if this node serves them, else nonzero with a
 * diagnostic (an undeclared space, a key over the limit): the request is
 * answered BAD_REQUEST with that message. */
typedef int (*moor_coord_check_fn)(void *ud, const char *space, size_t slen, const char *key,
                                   size_t klen);

/* Optional hint store: keeps rec (a record of space/key) for the member
 * owner, which is down, until it can be handed back (hints.h; the node's
 * moor_hints_add has this signature).  Queues the write; 0 and done
 * follows once durable, or an error and no done.  When NULL this node
 * refuses `_put`s with fallback_for (UNAVAILABLE), and coordinators do not
 * count such a fallback. */
typedef int (*moor_coord_hint_put_fn)(void *ud, const char *owner, size_t olen, const char *space,
                                      size_t slen, const char *key, size_t klen, const char *rec,
                                      size_t rlen, moor_store_done_fn done, void *arg);

/* The node-to-node protocol this release speaks: `_auth {secret, proto}`
 * carries it and is answered {proto = MOOR_PEER_PROTO}; README
 * "Node-to-node protocol" has the forms of the methods. */
#define MOOR_PEER_PROTO 1

/* Optional: the sibling limits of a space (README "Sibling limits"): a
 * write leaving a key with more than *warn siblings is logged and counted;
 * a blind write (no ctx) on a key with *max or more is refused
 * TOO_MANY_SIBLINGS.  Unset (NULL): 25 and 100. */
typedef void (*moor_coord_siblings_fn)(void *ud, const char *space, size_t slen, uint32_t *warn,
                                       uint32_t *max);

#define MOOR_COORD_SIBLING_WARN 25
#define MOOR_COORD_SIBLING_MAX 100

typedef struct moor_coord_opts {
    const char *node_id; /* this node's member id */
    size_t idlen;
    moor_clock_if_t clock;
    moor_transport_if_t transport;
    moor_store_if_t store;         /* this node's replicas */
    moor_coord_resolve_fn resolve; /* may be NULL */
    void *resolve_ud;
    moor_coord_check_fn check_key; /* may be NULL: every space and key served */
    void *check_ud;
    /* Stores a fallback's write as a hint for the owner (see
     * moor_coord_hint_put_fn); may be NULL: fallback writes refused. */
    int (*hint_put)(void *ud, const char *owner, size_t olen, const char *space, size_t slen,
                    const char *key, size_t klen, const char *rec, size_t rlen,
                    moor_store_done_fn done, void *arg);
    void *hint_ud;
    uint32_t timeout_ms; /* default per request; 0 = 2000 */
    /* Optional: told of every record this node writes to its store (a
     * replica's merge: coordinated writes, `_put`, read repair, repair),
     * with the record before (NULL: none) and after -- the anti-entropy
     * trees follow the store through it (aae.h moor_aae_note). */
    void (*on_write)(void *ud, const char *key, size_t klen, const char *old, size_t oldlen,
                     const char *rec, size_t rlen);
    void *on_write_ud;
    /* Pruning of the clocks this node writes (vclock.h moor_vclock_prune):
     * at most vc_max_entries (0 = MOOR_RECORD_VC_KEEP, also the cap), and
     * entries older than vc_max_age_ms (0 = no age limit) dropped while more
     * than vc_keep_min remain.  Pruning can only make versions look
     * concurrent (siblings), never drop one. */
    uint32_t vc_max_entries, vc_keep_min;
    uint64_t vc_max_age_ms;
    moor_coord_siblings_fn siblings; /* may be NULL: the defaults */
    void *siblings_ud;
} moor_coord_opts_t;

/* Where a request's time went, for the slow log: the coordinator adds to
 * it while the request runs and never after answering it, so it may live
 * in the caller's state of the request.  Measured with clock.mono_ns
 * (nothing is measured without one). */
typedef struct moor_coord_timing {
    uint64_t engine_ns;   /* in this node's store: reads, and its own writes until durable */
    uint64_t replicas_ns; /* waiting on other replicas: from the first request sent to the
                           * last answer that came before the reply */
} moor_coord_timing_t;

typedef struct moor_coord_req {
    const char *space; /* "default" when NULL */
    size_t slen;
    const char *key;
    size_t klen;
    const char *value; /* put: the MessagePack value; NULL for get/del */
    size_t vlen;
    const char *ctx; /* encoded clock from a get, or NULL */
    size_t ctxlen;
    uint32_t n, r, w;    /* 0 = the space's default given by the caller */
    uint32_t timeout_ms; /* 0 = opts.timeout_ms */
    /* Whether a fallback's ack counts toward W (sloppy quorum): 0 = the
     * default (on), MOOR_COORD_SLOPPY_ON, MOOR_COORD_SLOPPY_OFF (only the
     * key's owners count; fallbacks still get the write, as hints). */
    int sloppy;
    /* 1: the answer carries `receipt`, one entry per replica asked (then
     * the answer waits for every replica asked, or the deadline). */
    int receipt;
    /* 1: the write descends every version the coordinating replica holds
     * (and, without a ctx, what its read of the other replicas found):
     * its ctx is taken to be that record's whole clock, so it replaces the
     * key's value and never adds a sibling beside it (RESP SET; put/del
     * opts.overwrite).  A ctx given too is merged into it. */
    int overwrite;
    moor_coord_timing_t *timing; /* NULL: not measured (see moor_coord_timing_t) */
    /* put: the value expires ttl_ms after the write (its HLC time), then
     * reads as deleted -- a tombstone at that time (README "Expiry
     * (TTL)"); 0: never.  Ignored for get and del. */
    uint64_t ttl_ms;
} moor_coord_req_t;

/* The longest ttl_ms a put takes: 100 years. */
#define MOOR_COORD_TTL_MAX (100ull * 365 * 24 * 3600 * 1000)

#define MOOR_COORD_SLOPPY_ON 1
#define MOOR_COORD_SLOPPY_OFF (-1)

typedef struct moor_coord_stats {
    uint64_t gets, puts, dels, quorum_failures, timeouts, read_repairs, resolved;
    uint64_t fallback_writes;  /* _put sent to a fallback (fallback_for an owner) */
    uint64_t sloppy_writes;    /* writes acknowledged with a fallback's ack counted */
    uint64_t notfound_waits;   /* gets that had R answers but fewer than R found, so waited */
    uint64_t hints_taken;      /* _put with fallback_for this node stored as a hint */
    uint64_t siblings_warned;  /* writes that left a key over its sibling_warn */
    uint64_t siblings_refused; /* blind writes refused TOO_MANY_SIBLINGS */
    uint64_t siblings_most;    /* the most siblings a key had after a write coordinated here */
    uint64_t pending_writes;   /* copies sent to the new owners of ranges in motion */
} moor_coord_stats_t;

/* ===== API ===== */

int moor_coord_new(const moor_coord_opts_t *o, moor_coord_t **out);
/* Answers every call in flight with SHUTTING_DOWN, then frees. */
void moor_coord_free(moor_coord_t *c);

/* The default deadline of requests that name none (opts.timeout_ms), from
 * the next request on (moor reload); 0 = 2000.  Can't fail. */
void moor_coord_set_timeout(moor_coord_t *c, uint32_t timeout_ms);

/* The ring to route by (the coordinator takes a reference; calls already
 * started keep the ring they started with).  NULL: none (UNAVAILABLE). */
void moor_coord_set_ring(moor_coord_t *c, moor_ring_t *ring);

/* The rings the cluster moves toward while members join or leave (at
 * most MOOR_COORD_PENDING_MAX, the one with every move finished first; the coordinator takes
 * references and drops the previous ones; n 0: no move in progress).  A coordinated write also
 * goes, in the background and without counting toward W, to every member
 * that is among the key's first n in one of them but not among the
 * replicas it asked: a range in motion gets every write on its old owners
 * and its new one, so the new owner misses nothing the stream passed. */
#define MOOR_COORD_PENDING_MAX 16
void moor_coord_set_pending(moor_coord_t *c, moor_ring_t *const *rings, uint32_t n);

/* Client-level operations.  done runs exactly once (maybe before return);
 * it may start new calls but must not free c.  r, w, n must satisfy
 * 1 <= r, w <= n <= MOOR_COORD_N_MAX (else BAD_REQUEST). */
void moor_coord_get(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg);
void moor_coord_put(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg);
void moor_coord_del(moor_coord_t *c, const moor_coord_req_t *req, moor_coord_done_fn done,
                    void *arg);

/* One page of a key scan (coord_scan.c, README "Scanning keys"). */
typedef struct moor_coord_scan_req {
    const char *space; /* "default" when NULL */
    size_t slen;
    const char *prefix; /* only keys starting with it; plen 0: all */
    size_t plen;
    const char *cursor; /* from the previous page; clen 0: from the start */
    size_t clen;
    uint32_t limit;      /* keys per page, 0 = 100, at most 1000 (scan.h) */
    int values;          /* 1: each key's value too, as a get answers it */
    uint32_t n, r;       /* 0 = the defaults, as moor_coord_get */
    uint32_t timeout_ms; /* 0 = opts.timeout_ms */
} moor_coord_scan_req_t;

/* The next page of a scan of space: done gets {keys = [key, ...], values =
 * [...] (values only), cursor = bin or nil (nil: the scan is done)}, keys
 * in ring order, at most limit of them, deleted keys left out; a page may
 * be short or empty with a cursor.  Each page asks r owners of the stretch
 * of the ring it covers (`_scan`) and lists the union of what they hold.
 * Fails MOOR_EINVAL (malformed cursor, levels or limit out of range),
 * MOOR_EQUORUM (fewer than r owners of the stretch up or answering),
 * MOOR_ETIMEDOUT (none answered), MOOR_EUNAVAIL (no ring, or fewer members
 * than r).  done runs exactly once, as for get. */
void moor_coord_scan(moor_coord_t *c, const moor_coord_scan_req_t *req, moor_coord_done_fn done,
                     void *arg);

/* Merges rec (a record from a peer: checked like a `_put`'s -- it
 * decodes, has a sibling, and its clock is within bounds) into this
 * node's record of the engine key key.  0 and done follows once durable,
 * or MOOR_EINVAL (rec refused) / the store's error and no done.  The
 * anti-entropy repair writes through it (aae.h moor_aae_merge_fn). */
int moor_coord_merge_peer_record(moor_coord_t *c, const char *key, size_t klen, const char *rec,
                                 size_t rlen, moor_store_done_fn done, void *arg);

/* Replica side: a `_get`, `_put` or `_coord` that arrived from a peer.
 * done runs once (for _put after the local write is durable; for _coord
 * with the client-level answer; a _coord for a key this node is no replica
 * of is UNAVAILABLE, never forwarded again). */
void moor_coord_handle_peer(moor_coord_t *c, const char *method, size_t mlen, const char *params,
                            size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg);

void moor_coord_stats(const moor_coord_t *c, moor_coord_stats_t *out);

/* The stats as the `coordinator` map of info (README "info"): gets, puts,
 * dels, quorum_failures, timeouts, read_repairs, resolved, fallback_writes,
 * sloppy_writes, notfound_waits, hints_taken, siblings_warned,
 * siblings_refused.  0 or MOOR_ENOMEM. */
struct msgpack_packer;
int moor_coord_pack_stats(const moor_coord_t *c, struct msgpack_packer *pk);

/* Where a key lives: appends {replicas = [ids], fallbacks = [ids]} to out
 * -- the key's n owners in preference order (whatever their status), and
 * the healthy members that stand in for the owners that are down (the
 * ones sloppy quorum writes to, in the order they replace them).  n 0 =
 * 3.  0, MOOR_EUNAVAIL (no ring), MOOR_EINVAL (space over 255 bytes, n
 * over MOOR_COORD_N_MAX), MOOR_ENOMEM; with a diagnostic. */
int moor_coord_where(moor_coord_t *c, const char *space, size_t slen, const char *key, size_t klen,
                     uint32_t n, moor_buf_t *out);

/* The hybrid logical clock: the last counter this node stamped, and a
 * floor every later counter must exceed (a restart sets the high-water
 * mark it persisted, so a wall clock that went back cannot repeat a
 * counter given out before).  The floor only ever raises the clock. */
uint64_t moor_coord_hlc(const moor_coord_t *c);
void moor_coord_hlc_floor(moor_coord_t *c, uint64_t floor);

#endif
