/*
 * cluster.h -- a node's place in the cluster: its member table, the ring
 * derived from it, the pooled connections to the other members and the
 * coordinator that serves get/put/del over them.
 *
 * Membership and failure detection are core/cluster/gossip.c's (joining
 * through the seeds, SWIM probing, suspicion, refutation, dissemination;
 * parameters from moor.gossip{}); this file gives it its environment
 * (libuv's clock, the peer pool: the seeds are reached through pool ids
 * "seed@host:port" until their member ids are known) and keeps what must
 * outlive a process.  The node's own entry starts at incarnation = the
 * wall clock at start, never below the one saved in data_dir/MEMBERS on
 * its last run, so a restart always wins over what others remember of it.
 * Every table change (a member, an address, a status) rebuilds the ring
 * the coordinator routes by (down members keep their tokens) and saves the
 * table to data_dir/MEMBERS.
 *
 * Threads: the loop thread only.
 */
#ifndef MOOR_SERVER_CLUSTER_H
#define MOOR_SERVER_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <msgpack.h>

#include "cluster/coord.h"
#include "cluster/env.h"
#include "cluster/gossip.h"
#include "cluster/membership.h"
#include "lua/config.h"

typedef struct moor_cl moor_cl_t;

typedef struct moor_cl_opts {
    uv_loop_t *loop;
    const moor_config_t *cfg;      /* borrowed; outlives the cluster */
    const char *self_addr;         /* "host:port" peers reach this node at (copied) */
    moor_store_if_t store;         /* this node's replicas */
    moor_coord_resolve_fn resolve; /* may be NULL */
    void *resolve_ud;
    /* Told every member status change the failure detector or gossip
     * makes (old_status -1: a new member); may be NULL.  Runs on the loop
     * thread, inside gossip: it must not call back into the cluster
     * synchronously (defer with a timer or an async). */
    moor_gossip_status_fn on_status;
    void *status_ud;
} moor_cl_opts_t;

/* ===== API ===== */

/* Sets up the table (self + data_dir/MEMBERS), ring, peer pool and
 * coordinator; does not send anything yet.  0, MOOR_EINVAL (bad address)
 * or MOOR_ENOMEM, with a diagnostic. */
int moor_cl_new(const moor_cl_opts_t *o, moor_cl_t **out);

/* Starts joining the seeds. */
void moor_cl_start(moor_cl_t *cl);

/* The config (opts.cfg, borrowed) changed in place (moor reload): takes
 * its live settings that were copied at start -- the gossip tunables and
 * request_timeout_ms; the rest is read from it per request.  0, or
 * MOOR_EINVAL with a diag (bad gossip tunables) and nothing changes. */
int moor_cl_reconfigure(moor_cl_t *cl);

moor_coord_t *moor_cl_coord(moor_cl_t *cl);

/* 1 when ip (numeric) is the host of a member's address or of a seed:
 * who may take the server's peer slots (a member's outgoing connections
 * come from its listen address, peer.h). */
int moor_cl_member_ip(const moor_cl_t *cl, const char *ip);

/* A `_` method from a peer: the gossip ones (_join, _members, _ping,
 * _ping_req, _gossip) or the coordinator's (_get, _put, _coord).  done
 * runs once. */
void moor_cl_handle_peer(moor_cl_t *cl, const char *method, size_t mlen, const char *params,
                         size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg);

/* Packs the `ring` method's answer: {node, cluster = true, version,
 * nodes = [{id, addr, zone, status, vnodes, incarnation, share, self,
 * link}]}; status is the failure detector's (up, suspect, down,
 * joining, leaving, left: what routing uses); link is this node's
 * connection to the member: "self", "connected", "down" (in a reconnect
 * backoff), "idle" (none open yet). */
int moor_cl_pack_ring(const moor_cl_t *cl, msgpack_packer *pk);

/* Appends the "hints" map of `info`: {pending, bytes, stored, delivered,
 * dropped} (hints.h) -- to out, the buffer the caller's packer writes. */
int moor_cl_pack_hints(const moor_cl_t *cl, moor_buf_t *out);

/* Packs the "cluster" map of `info`: needs_repair, [repair_reason],
 * members, members_up, ring_version, gossip = {probes, probe_failures,
 * indirect_probes, suspicions, refutations, declared_down, local_health,
 * queued_updates, joins_sent, joins_answered, syncs, messages_in,
 * members = {joining, up, suspect, down, leaving, left}}, coordinator,
 * peers. */
int moor_cl_pack_info(const moor_cl_t *cl, msgpack_packer *pk);

/* Packs the "repair" map of `info` (README "Anti-entropy"): running,
 * ranges_total, ranges_done, ranges_incomplete, exchanges, exchange_failures, keys_compared,
 * keys_repaired, bytes_sent, bytes_received, tombstones_reaped, passes,
 * last_full_pass_s, last_full_pass_ms, trees, trees_ready, build_keys,
 * build_s.  0. */
int moor_cl_pack_repair(const moor_cl_t *cl, msgpack_packer *pk);

/* The `repair` method: stop (1) the running repair, or start / resume one
 * of space (NULL: all) and ranges (lo, hi pairs; nranges 0: all); restart
 * forgets a stopped one's progress.  0, or MOOR_EINVAL with a diagnostic
 * (unknown space, a range that is not this node's). */
int moor_cl_repair(moor_cl_t *cl, const char *space, size_t slen, const uint64_t *ranges,
                   uint32_t nranges, int stop, int restart);
/* The coordinator's counters (info.siblings sums them with a lone node's). */
void moor_cl_coord_stats(const moor_cl_t *cl, moor_coord_stats_t *out);

/* leave (README "Joining and leaving"): this node starts handing its
 * ranges off and is `left` once every one is (a joining node reverses its
 * join instead); cancel: a leave in progress turns back into a join.  0
 * or an error with a diag. */
int moor_cl_leave(moor_cl_t *cl, int cancel);
/* remove: marks a member that is down `left` for good; every node then
 * repairs its ranges from the surviving replicas.  MOOR_EBUSY (the member
 * is not down), MOOR_EINVAL (no such member, or this node). */
int moor_cl_remove(moor_cl_t *cl, const char *id, size_t idlen);
/* 1 once this node has left the cluster (or was removed): its client
 * reads and writes are refused UNAVAILABLE. */
int moor_cl_has_left(const moor_cl_t *cl);
/* info.transfer (xfer.h moor_xfer_pack_info). */
int moor_cl_pack_transfer(const moor_cl_t *cl, msgpack_packer *pk);
/* transfers: {nodes = [{node, state, info, ranges}], errors = [{node,
 * error}]} from every member not left; rate_kb_s / concurrency (0: kept)
 * are set on each first.  done runs once. */
void moor_cl_transfers(moor_cl_t *cl, uint32_t rate_kb_s, uint32_t concurrency,
                       moor_coord_done_fn done, void *arg);
/* The member table (borrowed until the next loop turn), and the load
 * table every member publishes into (core/cluster/load.h; NULL after
 * close).  For autoscale.c. */
const moor_members_t *moor_cl_members(const moor_cl_t *cl);
struct moor_load *moor_cl_load(moor_cl_t *cl);

/* Answers every call in flight (SHUTTING_DOWN), closes connections and
 * timers, frees, then done(ud) on the loop (may be NULL).  Call once. */
void moor_cl_close(moor_cl_t *cl, void (*done)(void *ud), void *ud);

#endif
