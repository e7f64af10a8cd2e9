/*
 * gossip.h -- membership upkeep and failure detection: the join handshake
 * with the seeds, SWIM probing with Lifeguard's refinements, and the
 * dissemination of member changes (DESIGN.md, Cluster: membership and
 * failure detection).
 *
 * A gossip instance owns the node's member table (membership.h).  It runs
 * on the clock and transport of env.h only, so the simulation runs it as
 * the server does.  What it does:
 *
 *  - Join: `_join {members}` to every seed (transport ids given in opts)
 *    every join_interval_ms until that seed answered once; the answer is
 *    the seed's table, merged.  Afterwards a full-table push-pull
 *    (`_members {members}`) with one seed every sync_interval_ms, so a
 *    node that missed changes, or the two sides of a healed partition,
 *    catch up.
 *  - Probing (SWIM): every period one member, round-robin over a shuffled
 *    list, gets `_ping`; without an ack within probe_timeout, indirect_k
 *    other members are asked to ping it (`_ping_req`); without any ack by
 *    the end of the period the member becomes `suspect` (accused by this
 *    node).  A suspect becomes `down` when its suspicion timeout expires.
 *    `down` members are probed too (only directly): one that answers
 *    learns it is down, refutes, and is `up` again.
 *  - Refutation: a node that hears itself suspect or down (or described
 *    in any way it is not) at an incarnation >= its own publishes itself
 *    `up` at a higher incarnation.  Merge rules are membership.h's.
 *  - Dissemination: every change this node learns or makes is queued and
 *    piggybacked on pings, acks and `_gossip` messages (sent every
 *    gossip_interval_ms to gossip_fanout random members), at most
 *    max_piggyback per message, each retransmitted
 *    retransmit_mult * ceil(log10(n + 1)) times, least-sent first.
 *  - Lifeguard: a local health score 0..max_local_health-1 goes up when a
 *    probe of ours fails, when an intermediary does not even answer a
 *    `_ping_req` (a missed nack) and when we must refute; it goes down on
 *    every acked probe.  Probe period and timeout are multiplied by
 *    (score + 1), so a node that is itself slow probes less and waits
 *    longer.  The suspicion timeout starts at
 *    max = suspicion_max_mult * min, with
 *    min = suspicion_mult * max(1, log10 n) * period_ms, and shrinks
 *    toward min as other members independently accuse the same member:
 *    timeout(C) = max - (max - min) * log(C + 1) / log(K + 1), K =
 *    min(indirect_k, n - 2).  A timer that fires late by more than a
 *    period (this process was paused) does not declare anyone down at
 *    once: the suspicion gets a grace of min again, so a node that was
 *    stopped hears the others' refutations first.
 *
 * Wire forms (one map param each; unknown keys are skipped, so later
 * releases can add fields):
 *   _join     {members = table}              -> {members = table}
 *   _members  {members = table}              -> {members = table}
 *   _ping     {from = id, target = id, updates = [u...]} -> {updates = [u...]}
 *   _ping_req {from = id, target = id, updates = [u...]}
 *             -> {ack = bool, updates = [u...]}   (ack false: a nack)
 *   _gossip   {from = id, updates = [u...]}  -> {updates = [u...]}
 * table is membership.h's wire form; an update u is
 *   [id (bin), addr (str), zone (str), vnodes (uint), status (uint),
 *    incarnation (uint), by (bin: the accuser of a suspicion, else empty),
 *    inactive (uint, omitted when 0)].
 * A `_ping` whose target is not this node is answered with an error (the
 * address now belongs to someone else).
 *
 * Determinism: randomness only from opts.seed.  One thread.
 */
#ifndef MOOR_CLUSTER_GOSSIP_H
#define MOOR_CLUSTER_GOSSIP_H

#include <stddef.h>
#include <stdint.h>

#include "env.h"
#include "membership.h"

typedef struct moor_gossip moor_gossip_t;

/* The tunables, all from moor.gossip{...} (lua/moor/config.lua; README
 * "Configuration reference").  Ranges are checked by
 * moor_gossip_params_check. */
typedef struct moor_gossip_params {
    uint32_t period_ms;          /* probe period; 500 */
    uint32_t probe_timeout_ms;   /* direct probe's ack deadline; 200 (< period_ms) */
    uint32_t indirect_k;         /* members asked to probe indirectly; 3 */
    uint32_t suspicion_mult;     /* min suspicion = mult * max(1, log10 n) * period; 3 */
    uint32_t suspicion_max_mult; /* max suspicion = this * min; 4 */
    uint32_t retransmit_mult;    /* sends of an update = mult * ceil(log10(n + 1)); 4 */
    uint32_t max_local_health;   /* Lifeguard's multiplier cap; 8 */
    uint32_t gossip_interval_ms; /* dissemination round; 200 */
    uint32_t gossip_fanout;      /* members per dissemination round; 3 */
    uint32_t max_piggyback;      /* updates per message; 16 */
    uint32_t join_interval_ms;   /* retry of an unanswered seed; 1000 */
    uint32_t sync_interval_ms;   /* full-table push-pull with a seed; 5000 */
} moor_gossip_params_t;

/* old_status is -1 when the member was not in the table before. */
typedef void (*moor_gossip_status_fn)(void *ud, const char *id, size_t idlen, int old_status,
                                      int new_status);
/* The table changed (version moved): rebuild the ring, save it. */
typedef void (*moor_gossip_table_fn)(void *ud, const moor_members_t *t);
/* Something worth a log line (level: 0 debug, 1 info, 2 warn, 3 error). */
typedef void (*moor_gossip_log_fn)(void *ud, int level, const char *msg);
/* Answer of a handled method: status 0 and the encoded result, or a
 * negative code (with a diag).  Runs once. */
typedef void (*moor_gossip_answer_fn)(void *arg, int status, const char *result, size_t rlen);

typedef struct moor_gossip_opts {
    /* this node as it publishes itself: status up (any status but joining
     * with inactive tokens, leaving or left is published as up), or
     * joining/leaving with its inactive tokens (a restart in the middle of
     * a move) */
    moor_member_entry_t self;
    const moor_members_t *saved; /* known members (saved table); may be NULL */
    const char *const *seeds;    /* transport ids of the seeds (self excluded) */
    unsigned nseeds;
    moor_clock_if_t clock;
    moor_transport_if_t transport;
    uint64_t seed; /* PRNG seed */
    moor_gossip_params_t p;
    moor_gossip_status_fn on_status; /* may be NULL */
    moor_gossip_table_fn on_table;   /* may be NULL */
    moor_gossip_log_fn log;          /* may be NULL */
    void *ud;
} moor_gossip_opts_t;

typedef struct moor_gossip_stats {
    uint64_t probes;          /* direct pings sent */
    uint64_t probe_failures;  /* probes without any ack by the end of their period */
    uint64_t indirect_probes; /* _ping_req sent */
    uint64_t suspicions;      /* members this node marked suspect (its own accusations) */
    uint64_t refutations;     /* times this node refuted a suspicion of itself */
    uint64_t declared_down;   /* members this node declared down */
    uint64_t joins_sent, joins_answered, syncs;
    uint64_t messages_in, updates_in, updates_out;
    uint32_t local_health; /* current Lifeguard score */
    uint32_t queued;       /* updates waiting to be piggybacked */
    uint32_t by_status[6]; /* members of the table per status (ring.h values) */
} moor_gossip_stats_t;

/* ===== API ===== */

void moor_gossip_params_default(moor_gossip_params_t *p);
/* 0, or MOOR_EINVAL with a diag naming the bad field. */
int moor_gossip_params_check(const moor_gossip_params_t *p);

/* Builds the table (saved + self, self winning) and the state; sends
 * nothing.  0, MOOR_EINVAL (bad params or self entry) or MOOR_ENOMEM. */
int moor_gossip_new(const moor_gossip_opts_t *o, moor_gossip_t **out);
/* Starts joining, probing and gossiping. */
void moor_gossip_start(moor_gossip_t *g);
/* New tunables (moor reload): each round and probe started from now on
 * uses them; one already waiting keeps its deadline.  0, or MOOR_EINVAL
 * with a diag (p fails moor_gossip_params_check) and nothing changes. */
int moor_gossip_set_params(moor_gossip_t *g, const moor_gossip_params_t *p);
/* Stops timers and frees; replies still in flight are dropped when they
 * arrive (the transport must still deliver them, to free their state). */
void moor_gossip_free(moor_gossip_t *g);

/* 1 when method is one of the gossip methods above. */
int moor_gossip_is_method(const char *method, size_t mlen);
/* Serves a gossip method from a peer; answer runs once (later, for
 * `_ping_req`). */
void moor_gossip_handle(moor_gossip_t *g, const char *method, size_t mlen, const char *params,
                        size_t plen, uint32_t nparams, moor_gossip_answer_fn answer, void *arg);

const moor_members_t *moor_gossip_table(const moor_gossip_t *g);

/* This node as it publishes itself (status, inactive tokens,
 * incarnation). */
const moor_member_entry_t *moor_gossip_self(const moor_gossip_t *g);

/* Publishes a new status and count of inactive tokens for this node (a
 * join or leave in progress, ring.h), at a higher incarnation.  0, or
 * MOOR_EINVAL once this node has left. */
int moor_gossip_set_self(moor_gossip_t *g, int status, uint32_t inactive);

/* Marks another member `left` (an operator's `moor remove` of a dead
 * node): final, it never comes back under its id.  0, MOOR_ENOENT (no
 * such member), MOOR_EINVAL (this node: use leave). */
int moor_gossip_remove(moor_gossip_t *g, const char *id, size_t idlen);
void moor_gossip_stats(const moor_gossip_t *g, moor_gossip_stats_t *st);

/* A decoded gossip message (for the fuzz target and the tests).  Update
 * and table counts are bounded (MOOR_GOSSIP_UPDATES_MAX, membership.h). */
#define MOOR_GOSSIP_UPDATES_MAX 256
typedef struct moor_gossip_update {
    moor_member_entry_t e;
    uint8_t bylen;
    char by[MOOR_RING_ID_MAX];
} moor_gossip_update_t;

typedef struct moor_gossip_msg {
    uint8_t fromlen, targetlen;
    char from[MOOR_RING_ID_MAX], target[MOOR_RING_ID_MAX];
    int ack; /* -1 absent, else 0/1 */
    int has_members;
    moor_members_t members; /* when has_members */
    uint32_t nu;
    moor_gossip_update_t *u; /* nu updates */
} moor_gossip_msg_t;

/* Decodes one message map (params of a method, or an answer).  0 or
 * MOOR_EPROTO/MOOR_EINVAL with a diag; free with moor_gossip_msg_free in
 * every case. */
int moor_gossip_msg_decode(const char *p, size_t len, moor_gossip_msg_t *m);
void moor_gossip_msg_free(moor_gossip_msg_t *m);

#endif
