/*
 * uvenv.h -- env.h's clock on a real libuv loop: wall-clock time from
 * core/util/clock.h and one-shot timers on uv_timer_t.
 *
 * Timer ids are unique for the env's lifetime (a counter, never reused),
 * so stopping an id that already fired is a safe no-op.  A fired or
 * stopped timer's memory is returned through its uv_close callback.
 * Threads: the loop thread only.
 */
#ifndef MOOR_NET_UVENV_H
#define MOOR_NET_UVENV_H

#include <stdint.h>
#include <uv.h>

#include "cluster/env.h"

typedef struct moor_uvenv moor_uvenv_t;

/* ===== API ===== */

/* 0 or MOOR_ENOMEM.  The loop is borrowed and must outlive the env. */
int moor_uvenv_new(uv_loop_t *loop, moor_uvenv_t **out);

/* The clock interface; valid until moor_uvenv_close. */
moor_clock_if_t moor_uvenv_clock(moor_uvenv_t *e);

/* Timers started and neither fired nor stopped. */
size_t moor_uvenv_pending(const moor_uvenv_t *e);

/* Stops every pending timer (their callbacks never run), frees the env
 * once the handles are closed, then calls done(ud) (may be NULL) on the
 * loop.  timer_start after this returns 0.  Call once. */
void moor_uvenv_close(moor_uvenv_t *e, void (*done)(void *ud), void *ud);

#endif
