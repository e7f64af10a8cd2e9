/*
 * coord_internal.h -- INTERNAL to core/cluster/coord*.c: the op, its
 * slots, the coordinator's state, and the functions the coordinator's
 * files share.  Not an API: nothing outside coord*.c includes it.
 *
 * The coordinator is split by job:
 *   coord.c          operation lifetime (op_*), planning a call over the
 *                    ring, the deadline, and the public new/free/ring/stats;
 *   coord_hlc.c      the hybrid logical clock and the versions it stamps;
 *   coord_write.c    coordinated writes, the blind write's read, forwarding;
 *   coord_read.c     quorum reads, merging replies, read repair, resolving;
 *   coord_replica.c  the replica side: the peer methods _get, _put, _coord;
 *   coord_scan.c     key scans: a page over the ring, and the peer method _scan.
 * coord.c's header comment tells the design and the op's lifetime rules.
 *
 * Shared functions keep their short names in the code; the defines below
 * give them the moor_coord_ prefix as linker symbols.
 */
#ifndef MOOR_CLUSTER_COORD_INTERNAL_H
#define MOOR_CLUSTER_COORD_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "record.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"

#define answer_fmt moor_coord_answer_fmt
#define op_new moor_coord_op_new
#define op_unlink moor_coord_op_unlink
#define op_unref moor_coord_op_unref
#define op_set_done moor_coord_op_set_done
#define op_answer moor_coord_op_answer
#define op_fail moor_coord_op_fail
#define op_start_timer moor_coord_op_start_timer
#define op_all_local moor_coord_op_all_local
#define op_stop_timer_at moor_coord_op_stop_timer_at
#define op_stop_timer moor_coord_op_stop_timer
#define op_set_key moor_coord_op_set_key
#define op_set_target moor_coord_op_set_target
#define write_version moor_coord_write_version
#define expiry_now moor_coord_expiry_now
#define record_decode moor_coord_record_decode
#define merge_into moor_coord_merge_into
#define record_same moor_coord_record_same
#define local_merge moor_coord_local_merge
#define plan_levels moor_coord_plan_levels
#define plan_replicas moor_coord_plan_replicas
#define op_from_plan moor_coord_op_from_plan
#define pack_params moor_coord_pack_params
#define write_background moor_coord_write_background
#define write_call moor_coord_write_call
#define get_finish moor_coord_get_finish
#define get_answer_now moor_coord_get_answer_now
#define write_quorum_met moor_coord_write_quorum_met
#define write_answer_now moor_coord_write_answer_now
#define pack_receipt_result moor_coord_pack_receipt_result
#define slot_receipt_status moor_coord_slot_receipt_status
#define parse_get_answer moor_coord_parse_get_answer
#define op_remaining_ms moor_coord_op_remaining_ms
#define op_mark moor_coord_op_mark
#define op_time_engine moor_coord_op_time_engine
#define op_time_sent moor_coord_op_time_sent
#define op_time_replica moor_coord_op_time_replica
#define nil_mp moor_coord_nil_mp
#define true_mp moor_coord_true_mp
#define scan_peer moor_coord_scan_peer

#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_N 3
#define FWD_TRIES 2 /* replicas a non-replica coordinator forwards a write to */

enum op_kind { OP_GET, OP_WRITE, OP_PEER_PUT, OP_PEER_HINT, OP_FORWARD, OP_SCAN };
enum slot_state { SLOT_PENDING = 0, SLOT_OK, SLOT_MISSING, SLOT_FAILED };
/* What a replica answered, for receipts. */
enum receipt_status { RS_NONE = 0, RS_FOUND, RS_NOTFOUND, RS_OK, RS_TIMEOUT, RS_DOWN, RS_ERROR };

typedef struct op op_t;

typedef struct slot {
    op_t *op;
    int state; /* a slot_state; set once */
    uint8_t idlen;
    char id[MOOR_RING_ID_MAX]; /* the replica's member id */
    int self;                  /* 1: this node, reached through the store */
    int rstate;                /* blind write's read: a slot_state; set once */
    int rs;                    /* its answer for the receipt: a receipt_status */
    int err;                   /* write: the code it failed with (0: none) */
    int spare;                 /* write: a spare not (yet) asked; not in the receipt */
    uint8_t fblen;             /* a fallback: the owner it stands in for; 0: an owner */
    char fb[MOOR_RING_ID_MAX];
    moor_buf_t rec; /* get, SLOT_OK: the replica's record */
} slot_t;

struct op {
    op_t *prev, *next; /* in c->ops while attached */
    moor_coord_t *c;   /* NULL once the coordinator is gone */
    int kind;          /* an op_kind */
    uint32_t refs;     /* outstanding callbacks + timer + start guard */
    uint64_t timer;    /* deadline timer id; 0 when none runs */
    int answered;      /* done ran (or will never: done is NULL) */
    int finished;      /* get: read repair decided */
    moor_coord_done_fn done;
    void *arg;
    uint32_t n;            /* replicas asked at first (slots 0..n-1): the first n healthy */
    uint32_t pn;           /* the space's n (a write's pending owners are its first pn) */
    uint32_t nslots;       /* slots: n, then spares a write may ask instead of a silent one */
    uint32_t cap;          /* slots allocated (a reused op may have more than nslots) */
    struct op *spare_next; /* in c->spare while kept for reuse */
    uint32_t used;         /* slots asked (n <= used <= nslots) */
    uint32_t need;         /* r or w; 0 for background writes */
    uint32_t ok, failed;   /* get: replies (found or not) and failures; write: acks that
                            * count toward W and positions that cannot give one */
    uint32_t found;        /* get: replies with a record */
    uint32_t replied;      /* slots that answered or failed (of used) */
    uint32_t fb_acks;      /* write: fallback acks counted toward W */
    int sloppy;            /* write: fallbacks' acks count */
    int receipt;           /* answer with a receipt (waits for every slot or the deadline) */
    int overwrite;         /* write: descend everything seen (moor_coord_req_t.overwrite) */
    uint64_t ttl_ms;       /* put: the value expires ttl_ms after the write; 0: never */
    int built;             /* write: rec was built on this node's record in this turn */
    int waited;            /* get: counted in notfound_waits */
    uint64_t deadline;     /* clock time of the deadline (0: none) */
    uint32_t timeout_ms;
    uint32_t tries;        /* forward: replicas tried */
    uint32_t next_slot;    /* forward: the next slot to try */
    uint32_t timedout;     /* forward: attempts that timed out */
    char why[128];         /* forward: why the last attempt failed */
    slot_t *local;         /* coordinated write: this node's slot, which must ack */
    int reading;           /* blind write: still reading the other replicas */
    uint64_t rtimer;       /* blind write: end of the read; 0 when none runs */
    uint32_t rneed;        /* blind write: answers the read waits for */
    uint32_t rok, rfailed; /* blind write: read answers and failures */
    int tombstone;         /* blind write: a delete */
    moor_buf_t value;      /* blind write: the value, kept across the read */
    moor_buf_t seen;       /* blind write: merge of the records read so far */
    moor_buf_t base;       /* built: this node's record the version was built on */
    size_t slen, klen;     /* space and key, back to back in sk */
    moor_buf_t sk;
    moor_buf_t ekey;   /* engine key */
    moor_buf_t rec;    /* write: the version; get: merge of replies so far;
                        * forward: the _coord params */
    moor_buf_t result; /* write: the answer on success */
    uint64_t scan_to;  /* scan: last token of the stretch (ekey: the start position,
                        * sk: space then prefix, klen: the prefix's length) */
    uint32_t limit;    /* scan: keys per page */
    int values;        /* scan: values too */
    moor_coord_timing_t *timing; /* the request's, while not answered; NULL: unmeasured */
    uint64_t t_sent;             /* timing: when the first peer request went (mono ns) */
    uint64_t t_local;            /* timing: when this node's own write was queued */
    slot_t slot[];
};

struct moor_coord {
    op_t *spare; /* finished ops kept for reuse, with their buffers (op_new) */
    uint32_t nspare;
    uint8_t idlen;
    char id[MOOR_VC_ID_MAX];
    moor_clock_if_t clock;
    moor_transport_if_t tr;
    moor_store_if_t store;
    moor_coord_resolve_fn resolve;
    void *resolve_ud;
    moor_coord_check_fn check_key; /* may be NULL: every space and key */
    void *check_ud;
    moor_coord_hint_put_fn hint_put; /* may be NULL: fallback writes refused */
    void *hint_ud;
    void (*on_write)(void *ud, const char *key, size_t klen, const char *old, size_t oldlen,
                     const char *rec, size_t rlen);
    void *on_write_ud;
    uint32_t vc_max_entries, vc_keep_min;
    uint64_t vc_max_age_ms;
    moor_coord_siblings_fn siblings;
    void *siblings_ud;
    uint64_t sib_warn_ms, sib_warn_quiet; /* last sibling warning logged; ones since unlogged */
    uint32_t timeout_ms;
    moor_ring_t *ring; /* our reference; NULL until set */
    /* rings of the joins and leaves in progress (moor_coord_set_pending) */
    moor_ring_t *pending[MOOR_COORD_PENDING_MAX];
    uint32_t npending;
    uint64_t hlc;                /* last counter stamped */
    op_t *ops;                   /* in flight, newest first */
    moor_record_t *ra, *rb, *rw; /* scratch */
    moor_coord_stats_t st;
};

extern const char nil_mp[2], true_mp[2]; /* MessagePack nil and true */

/* A call's replicas and quorum, checked before anything is sent.  The
 * replica set is the first n healthy members clockwise (down ones
 * skipped): the owners that are not down, and for each down owner, in
 * order, the next healthy member, a fallback tagged with that owner. */
typedef struct plan {
    const char *space;
    size_t slen;
    uint32_t n, r, w;
    uint32_t nowners, owner[MOOR_COORD_N_MAX]; /* the key's n owners, any status */
    uint32_t count, idx[MOOR_COORD_N_MAX];     /* the replica set: ring member indices */
    int32_t fb[MOOR_COORD_N_MAX]; /* per replica: -1 an owner, else the down owner's index */
    uint32_t nhealthy;            /* owners in the set */
    uint32_t nspare, spare[MOOR_COORD_N_MAX]; /* healthy members after the set */
    uint32_t timeout_ms;
    int sloppy, receipt, overwrite;
    uint64_t ttl_ms;
} plan_t;

/* ---- coord.c: operation lifetime ---- */

/* Answers done with code and a formatted message. */
void answer_fmt(moor_coord_done_fn done, void *arg, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A new op of kind with nslots slots, linked into c->ops, holding the start
 * guard (one reference); NULL without memory. */
op_t *op_new(moor_coord_t *c, int kind, uint32_t nslots);
void op_unlink(op_t *op);
/* Drops a reference; the last frees op. */
void op_unref(op_t *op);
void op_set_done(op_t *op, moor_coord_done_fn done, void *arg);
/* Runs done once.  REQUIRES: the caller holds a reference. */
void op_answer(op_t *op, int code, const char *msg, const char *res, size_t rlen);
void op_fail(op_t *op, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The deadline timer (op->timeout_ms); takes a reference while it runs. */
/* 1 if every slot of op is this node's own replica (no peer to wait for). */
int op_all_local(const op_t *op);
void op_start_timer(op_t *op);
/* Stops the timer *t of op if running.  REQUIRES: another reference. */
void op_stop_timer_at(op_t *op, uint64_t *t);
void op_stop_timer(op_t *op);
int op_set_key(op_t *op, const char *space, size_t slen, const char *key, size_t klen);
void op_set_target(op_t *op, uint32_t i, const char *id, size_t idlen);
/* Levels and space of a request into pl: 0, or the code with msg. */
int plan_levels(moor_coord_t *c, const moor_coord_req_t *req, plan_t *pl, char *msg, size_t msz);
/* The replicas of the key into pl: 0, or the code with msg. */
int plan_replicas(moor_coord_t *c, const moor_coord_req_t *req, plan_t *pl, uint32_t need,
                  const char *level, char *msg, size_t msz);
/* An op over the plan's replicas, keyed, done set; NULL after answering
 * done with the failure. */
op_t *op_from_plan(moor_coord_t *c, int kind, const plan_t *pl, const moor_coord_req_t *req,
                   moor_coord_done_fn done, void *arg);
/* The params of _get {space, key} (rec NULL) or _put {space, key, record,
 * fallback_for?} (fb NULL or fblen 0: none). */
int pack_params(const op_t *op, const moor_buf_t *rec, const char *fb, size_t fblen,
                moor_buf_t *out);
/* The receipt status of a failed request's status code. */
int slot_receipt_status(int status);
/* A replica's answer to `_get`: SLOT_OK with the record (bin) in *rec, *n,
 * SLOT_MISSING (nil), or SLOT_FAILED with *status the reason (the
 * request's error, or MOOR_EPROTO for malformed bytes). */
int parse_get_answer(int *status, const char *res, size_t rlen, const char **rec, uint32_t *n);
/* res (the normal answer: a map, nil or true) with `receipt` added into
 * out: a map gains the field, nil becomes {values = [], receipt}, true
 * becomes {receipt}.  0 or MOOR_ENOMEM. */
int pack_receipt_result(const op_t *op, const char *res, size_t rlen, moor_buf_t *out);
/* Timing of a measured op (op->timing), which stops once it answered:
 * op_mark is the clock's mono ns (0 when op is not measured now);
 * op_time_engine adds the time since mark t0 to engine_ns; op_time_sent
 * notes the first peer request; op_time_replica a peer's answer. */
uint64_t op_mark(const op_t *op);
void op_time_engine(op_t *op, uint64_t t0);
void op_time_sent(op_t *op);
void op_time_replica(op_t *op);
/* Time left before op's deadline (at least 1), or its timeout_ms if none. */
uint32_t op_remaining_ms(const op_t *op);

/* ---- coord_hlc.c: versions ---- */

int write_version(moor_coord_t *c, const moor_record_t *cur, const char *ctx, size_t ctxlen,
                  const char *value, size_t vlen, int tombstone, uint64_t ttl_ms, moor_buf_t *rec,
                  moor_buf_t *ctx_out, uint32_t *nsib);
/* The clock expiry is judged by: the env's wall clock.  Not the HLC: it
 * restarts up to MOOR_HLC_LEAD above the wall clock (hlc.h), and judged by
 * it a value would expire that much early.  An expiry itself is set from
 * the write's HLC time (write_version), which is never below the wall
 * clock, so no value expires before ttl_ms by its coordinator's clock. */
uint64_t expiry_now(const moor_coord_t *c);
/* moor_record_decode, then moor_record_expire at expiry_now: the only way
 * the coordinator reads a record, so no path sees an expired value.  The
 * number of siblings that expired (>= 0), or MOOR_ECORRUPT. */
int record_decode(moor_coord_t *c, const char *buf, size_t len, moor_record_t *r);

/* ---- coord_read.c: merging and reads ---- */

/* acc = merge(acc, rec); acc empty means no record yet. */
int merge_into(moor_coord_t *c, moor_buf_t *acc, const char *rec, size_t rlen);
/* 1 if a replica's record x holds the versions of the merge m. */
int record_same(const moor_record_t *m, const moor_record_t *x);
/* Read repair decided; REQUIRES op->c. */
void get_finish(op_t *op);
/* Answers a get with what it has (R replies came). */
void get_answer_now(op_t *op);

/* ---- coord_write.c: writes ---- */

/* A background write of rec to the chosen slots of from (all: pick NULL). */
uint32_t write_background(op_t *from, const moor_buf_t *rec, const uint8_t *pick);
/* 1 if a write has its W acks, its own among them. */
int write_quorum_met(const op_t *op);
/* Answers a write whose quorum is met (with its receipt if asked). */
void write_answer_now(op_t *op);
/* A client write (from_peer: a _coord a peer forwarded). */
void write_call(moor_coord_t *c, const moor_coord_req_t *req, int tombstone, int from_peer,
                moor_coord_done_fn done, void *arg);

/* ---- coord_scan.c: key scans ---- */

/* The replica side of `_scan`: answers done with this node's page. */
void scan_peer(moor_coord_t *c, const char *params, size_t plen, uint32_t nparams,
               moor_coord_done_fn done, void *arg);

/* ---- coord_replica.c: the local replica ---- */

/* Merges rec into the local record of key and queues the write. */
int local_merge(moor_coord_t *c, const char *key, size_t klen, const char *rec, size_t rlen,
                moor_store_done_fn done, void *arg);

#endif
