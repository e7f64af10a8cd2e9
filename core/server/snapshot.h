/*
 * snapshot.h -- the `snapshot` method: point-in-time copies of a node's
 * data next to it, in data_dir/snapshots/<name>/, listed and deleted.
 *
 * A snapshot is the engine's checkpoint (engine.h moor_engine_checkpoint:
 * tables hard-linked, the commit log not yet in a table copied up to the
 * moment of the request) plus copies of the node's small files that go
 * with the data: MEMBERS (the membership table), HLC and HLC.alone (the
 * clock's high-water marks, which also tell a cluster how old the data
 * is: a restored snapshot older than the tombstone grace is refused at
 * start, as any node down that long), REPAIR and REPAIR_OWED (a repair
 * this node owes).  Hints live in the engine, so they come along with the
 * data.  LOCK is not copied (each open takes its own).
 *
 * A snapshot is built as data_dir/snapshots/.tmp-<name> and renamed to
 * <name> once whole, so a crash leaves only a dot-directory, which list
 * ignores and the next create removes.  Names are the UTC time of the
 * request, YYYYMMDDTHHMMSS.mmmZ, then "-" and the tag if one was given.
 *
 * Loop thread only; the disk work runs on libuv's threadpool.
 */
#ifndef MOOR_SERVER_SNAPSHOT_H
#define MOOR_SERVER_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "engine/engine.h"

#define MOOR_SNAP_TAG_MAX 64

typedef struct moor_snap moor_snap_t;

/* The answer: errcode NULL with the MessagePack result, or the wire error
 * name and a message.  Runs on the loop thread, once. */
typedef void (*moor_snap_done_fn)(void *ud, const char *errcode, const char *errmsg,
                                  const char *result, size_t rlen);

/* ===== API ===== */

/* The snapshots of data_dir, taken from engine e (borrowed; outlives s).
 * NULL without memory. */
moor_snap_t *moor_snap_new(uv_loop_t *loop, const char *data_dir, moor_engine_t *e);

/* Frees s.  REQUIRES: no request in flight (moord answers every request
 * before it closes the node). */
void moor_snap_free(moor_snap_t *s);

/* 1 while a snapshot is being taken (its copy on the threadpool, or its
 * answer not yet given): the engine must stay open until it is 0. */
int moor_snap_busy(const moor_snap_t *s);

/* Runs `snapshot` with params (np params, plen bytes): none, or one map
 * {op = "create" | "list" | "delete", tag = str (create), name = str
 * (delete)}.  Answers through done: create {name, path, bytes,
 * linked_bytes, copied_bytes, tables, ms}; list [{name, tag, created_ms,
 * bytes, path}, ...] oldest first; delete true.  Errors: BAD_REQUEST (bad
 * params, a bad tag, no snapshot of that name), BUSY (a create is
 * running), NO_SPACE (disk full; nothing is left behind), others from the
 * disk. */
void moor_snap_exec(moor_snap_t *s, const char *params, size_t plen, uint32_t np,
                    moor_snap_done_fn done, void *ud);

/* 1 if tag is a valid tag: [A-Za-z0-9._-]{1,64}. */
int moor_snap_tag_ok(const char *tag, size_t len);

#endif
