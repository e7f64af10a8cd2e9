/*
 * cluster.h -- a node's place in the cluster: its member table, the ring
 * derived from it, the pooled connections to the other members and the
 * coordinator that serves get/put/del over them.
 *
 * Joining: the node starts with its own entry (incarnation = the wall
 * clock at start, never below the one it persisted last time, so a restart
 * always wins over what others remember of it) plus the table it saved in
 * data_dir/MEMBERS on its last run.  It sends `_join(table)` to every seed
 * (config `seeds`, its own address skipped) once a second until that seed
 * has answered; the seed merges the table, answers its own, and whoever's
 * table changed announces the new table to every member with
 * `_members(table)` (coalesced: once per change burst).  Afterwards the
 * node re-syncs with one seed every few seconds, so a node that missed an
 * announcement (it was down) catches up.  Every node therefore ends up
 * with the same table and derives the same ring (membership.h: the merge
 * is order-independent).  This is the seam gossip plugs into: a gossip
 * round is one more caller of the same merge-and-announce step, and
 * failure detection will change members' status through the same table.
 *
 * Member status: a node that joins is `up` at once -- there is no data
 * streaming to wait for yet (hinted handoff and anti-entropy come with the
 * next issue); read repair brings a new or restarted replica's keys up to
 * date as they are read.
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
#include "lua/config.h"

typedef struct moor_cl moor_cl_t;

typedef struct moor_cl_opts {
    uv_loop_t *loop;
    const moor_config_t *cfg;      /* borrowed; outlives the cluster */
    const char *self_addr;         /* "host:port" peers reach this node at (copied) */
    moor_store_if_t store;         /* this node's replicas */
    moor_coord_resolve_fn resolve; /* may be NULL */
    void *resolve_ud;
    uint32_t join_interval_ms; /* retry of unanswered seeds; default 1000 */
    uint32_t sync_interval_ms; /* re-sync with a seed afterwards; default 5000 */
} moor_cl_opts_t;

/* ===== API ===== */

/* Sets up the table (self + data_dir/MEMBERS), ring, peer pool and
 * coordinator; does not send anything yet.  0, MOOR_EINVAL (bad address)
 * or MOOR_ENOMEM, with a diagnostic. */
int moor_cl_new(const moor_cl_opts_t *o, moor_cl_t **out);

/* Starts joining the seeds. */
void moor_cl_start(moor_cl_t *cl);

moor_coord_t *moor_cl_coord(moor_cl_t *cl);

/* 1 when ip (numeric) is the host of a member's address or of a seed:
 * who may take the server's peer slots (a member's outgoing connections
 * come from its listen address, peer.h). */
int moor_cl_member_ip(const moor_cl_t *cl, const char *ip);

/* A `_` method from a peer: _join, _members, _get, _put, _coord.  done
 * runs once. */
void moor_cl_handle_peer(moor_cl_t *cl, const char *method, size_t mlen, const char *params,
                         size_t plen, uint32_t nparams, moor_coord_done_fn done, void *arg);

/* Packs the `ring` method's answer: {node, cluster = true, version,
 * nodes = [{id, addr, zone, status, vnodes, incarnation, share, self,
 * link}]}; link is this node's connection to the member: "self",
 * "connected", "down" (in a reconnect backoff), "idle" (none open yet). */
int moor_cl_pack_ring(const moor_cl_t *cl, msgpack_packer *pk);

/* Packs the "cluster" map of `info`. */
int moor_cl_pack_info(const moor_cl_t *cl, msgpack_packer *pk);

/* Answers every call in flight (SHUTTING_DOWN), closes connections and
 * timers, frees, then done(ud) on the loop (may be NULL).  Call once. */
void moor_cl_close(moor_cl_t *cl, void (*done)(void *ud), void *ud);

#endif
