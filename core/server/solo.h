/*
 * solo.h -- a node alone: the coordinator of a one-member ring.
 *
 * A node without seeds serves get/put/del through the same coordinator
 * (core/cluster/coord.c) a cluster member does, over a ring that holds
 * only itself: one request path, one set of semantics (hybrid logical
 * clock, clock pruning, sibling limits, resolvers, deletes that leave a
 * tombstone).  With one member every replica is local, so no request ever
 * leaves the process; the coordinator's transport refuses, and no
 * gossip, hints, anti-entropy or transfers run.
 */
#ifndef MOOR_SERVER_SOLO_H
#define MOOR_SERVER_SOLO_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/coord.h"
#include "cluster/env.h"
#include "lua/config.h"

typedef struct moor_solo moor_solo_t;

/* The ring, clock, HLC mark (data_dir/HLC) and coordinator of a node
 * alone; cfg and store are borrowed and outlive it.  0, or MOOR_ENOMEM /
 * MOOR_EINVAL with a diagnostic. */
int moor_solo_new(uv_loop_t *loop, const moor_config_t *cfg, moor_store_if_t store,
                  moor_coord_resolve_fn resolve, void *resolve_ud, moor_solo_t **out);

moor_coord_t *moor_solo_coord(moor_solo_t *s);

/* Answers the calls in flight SHUTTING_DOWN, then closes its handles;
 * done(ud) once freed (may be NULL). */
void moor_solo_close(moor_solo_t *s, void (*done)(void *ud), void *ud);

/* The coordinator's sibling limits (coord.h moor_coord_siblings_fn, ud =
 * the config): the space's sibling_warn and sibling_max, the node's for
 * an unknown space. */
void moor_solo_space_siblings(void *ud, const char *space, size_t slen, uint32_t *warn,
                              uint32_t *max);

#endif
