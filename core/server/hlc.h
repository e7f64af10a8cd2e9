/*
 * hlc.h -- the high-water mark of a node's hybrid logical clock on disk.
 *
 * data_dir/HLC holds a counter no counter this node gave out exceeds: u64
 * little-endian, then its crc32c.  It is written ahead of use (MOOR_HLC_LEAD
 * beyond the clock, renewed once half of the lead is used), and a restart
 * starts the clock above it, so a wall clock that went back across a crash
 * cannot repeat a counter.  Both a node alone (solo.c) and a cluster member
 * (cluster.c) keep one: the coordinator stamps every version with it.
 *
 * Loop thread only; the renewals' writes run on libuv's threadpool.
 */
#ifndef MOOR_SERVER_HLC_H
#define MOOR_SERVER_HLC_H

#include <stdint.h>
#include <uv.h>

#define MOOR_HLC_LEAD (10000ull * 1000) /* counters reserved ahead: 10 s of the HLC's µs */

typedef struct moor_hlc_mark {
    uv_loop_t *loop;
    char path[4096 + 16]; /* data_dir/HLC or data_dir/HLC.alone */
    uint64_t reserved;    /* persisted: no counter up to it was given out after */
    uint64_t target;      /* what work writes */
    uv_work_t work;       /* a renewal on the threadpool */
    int rc, busy;
    void (*settled)(void *ud); /* told when a renewal begun by reserve() finished */
    void *ud;
} moor_hlc_mark_t;

/* Sets m up for data_dir/name (nothing is read yet): a cluster member
 * keeps MOOR_HLC_CLUSTER, a node alone MOOR_HLC_ALONE.  Two files, not
 * one: the cluster's mark also says when the node last ran in its
 * cluster (cluster.c refuses a rejoin after more than the tombstone grace
 * away), which a run alone must not refresh; the clock itself starts
 * above both (moor_hlc_mark_read_file of the other). */
#define MOOR_HLC_CLUSTER "HLC"
#define MOOR_HLC_ALONE "HLC.alone"
void moor_hlc_mark_init(moor_hlc_mark_t *m, uv_loop_t *loop, const char *data_dir, const char *name,
                        void (*settled)(void *ud), void *ud);

/* The mark saved in data_dir/name (0: none, or damaged: logged). */
uint64_t moor_hlc_mark_read_file(const char *data_dir, const char *name);

/* The saved mark as it is on disk (0: none, or damaged: logged). */
uint64_t moor_hlc_mark_read(const moor_hlc_mark_t *m);

/* mark, or 0 (logged) when it lies more than a day ahead of the clock: a
 * mark saved before counters were bounded must not make every write fail. */
uint64_t moor_hlc_mark_floor(const moor_hlc_mark_t *m, uint64_t mark);

/* Renews the reservation when less than half of its lead is left above
 * max(hlc, wall clock): with sync synchronously (at start, before the
 * first counter), else on the threadpool, so the loop never waits for the
 * fsync.  1 when a threadpool write began (settled follows), else 0. */
int moor_hlc_mark_reserve(moor_hlc_mark_t *m, uint64_t hlc, int sync);

#endif
