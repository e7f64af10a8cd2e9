/*
 * uvenv.c -- env.h's clock on libuv: wall-clock now_ms and one-shot timers.
 *
 * Each timer is a heap-allocated uv_timer_t found by id through a chained
 * hash table (the coordinator stops most of its deadline timers, so stop
 * must not scan).  A timer leaves the table when it fires or is stopped,
 * and its memory goes back in the uv_close callback.  `live` counts the
 * env's own handle plus every timer handle not yet closed; the env is
 * freed when closing and live reaches 0, which is always in a close
 * callback, so done never runs inside moor_uvenv_close.
 *
 * Invariants: a timer is in the table iff it is armed and its callback has
 * not run; ids come from a 64-bit counter starting at 1 and are never
 * reused.  Threads: the loop thread only.
 */
#include "net/uvenv.h"

#include <stdlib.h>

#include "util/clock.h"
#include "util/err.h"

#define UVENV_MIN_BUCKETS 64

typedef struct uvtimer {
    uv_timer_t h;          /* h.data = this */
    struct uvtimer *hnext; /* bucket chain while armed */
    moor_uvenv_t *env;
    uint64_t id;
    moor_timer_fn cb;
    void *arg;
} uvtimer_t;

struct moor_uvenv {
    uv_loop_t *loop;
    uv_idle_t self;      /* never started: makes close asynchronous */
    uvtimer_t **buckets; /* nbuckets heads, power of two */
    size_t nbuckets;
    size_t count;     /* armed timers */
    uint64_t next_id; /* > 0 */
    size_t live;      /* handles not yet closed (self included) */
    int closing;
    void (*done)(void *ud);
    void *done_ud;
};

static size_t bucket_of(const moor_uvenv_t *e, uint64_t id)
{
    return (size_t)((id * 0x9e3779b97f4a7c15u) >> 32) & (e->nbuckets - 1);
}

/* Doubles the table; on allocation failure the old one keeps working. */
static void table_grow(moor_uvenv_t *e)
{
    size_t n = e->nbuckets * 2, i;
    uvtimer_t **nb = calloc(n, sizeof(*nb)), *t, *next;
    uvtimer_t **old = e->buckets;
    size_t oldn = e->nbuckets;

    if (!nb)
        return;
    e->buckets = nb;
    e->nbuckets = n;
    for (i = 0; i < oldn; i++)
        for (t = old[i]; t; t = next) {
            next = t->hnext;
            t->hnext = nb[bucket_of(e, t->id)];
            nb[bucket_of(e, t->id)] = t;
        }
    free(old);
}

/* Removes and returns the armed timer with this id, or NULL. */
static uvtimer_t *table_take(moor_uvenv_t *e, uint64_t id)
{
    uvtimer_t **pp = &e->buckets[bucket_of(e, id)], *t;

    for (; (t = *pp); pp = &t->hnext)
        if (t->id == id) {
            *pp = t->hnext;
            e->count--;
            return t;
        }
    return NULL;
}

static void env_release(moor_uvenv_t *e)
{
    if (--e->live || !e->closing)
        return;
    void (*done)(void *) = e->done;
    void *ud = e->done_ud;

    free(e->buckets);
    free(e);
    if (done)
        done(ud);
}

static void timer_closed(uv_handle_t *h)
{
    uvtimer_t *t = h->data;
    moor_uvenv_t *e = t->env;

    free(t);
    env_release(e);
}

static void timer_fired(uv_timer_t *h)
{
    uvtimer_t *t = h->data;

    /* Out of the table first: a timer_stop(id) from cb is then a no-op. */
    table_take(t->env, t->id);
    uv_close((uv_handle_t *)&t->h, timer_closed);
    t->cb(t->arg);
}

static uint64_t env_now_ms(void *ud)
{
    (void)ud;
    return moor_clock_wall_ms();
}

static uint64_t env_timer_start(void *ud, uint64_t delay_ms, moor_timer_fn cb, void *arg)
{
    moor_uvenv_t *e = ud;
    uvtimer_t *t;
    size_t b;

    if (e->closing || !cb || !(t = calloc(1, sizeof(*t))))
        return 0;
    if (e->count >= e->nbuckets)
        table_grow(e);
    t->env = e;
    t->id = e->next_id++;
    t->cb = cb;
    t->arg = arg;
    uv_timer_init(e->loop, &t->h);
    t->h.data = t;
    e->live++;
    uv_timer_start(&t->h, timer_fired, delay_ms, 0);
    b = bucket_of(e, t->id);
    t->hnext = e->buckets[b];
    e->buckets[b] = t;
    e->count++;
    return t->id;
}

static void env_timer_stop(void *ud, uint64_t id)
{
    moor_uvenv_t *e = ud;
    uvtimer_t *t = id ? table_take(e, id) : NULL;

    if (t)
        uv_close((uv_handle_t *)&t->h, timer_closed); /* closing stops it */
}

int moor_uvenv_new(uv_loop_t *loop, moor_uvenv_t **out)
{
    moor_uvenv_t *e = calloc(1, sizeof(*e));

    if (!e)
        goto fail;
    e->nbuckets = UVENV_MIN_BUCKETS;
    if (!(e->buckets = calloc(e->nbuckets, sizeof(*e->buckets))))
        goto fail;
    e->loop = loop;
    e->next_id = 1;
    uv_idle_init(loop, &e->self);
    e->self.data = e;
    e->live = 1;
    *out = e;
    return 0;
fail:
    free(e);
    return moor_diag(MOOR_ENOMEM, "uvenv: out of memory");
}

moor_clock_if_t moor_uvenv_clock(moor_uvenv_t *e)
{
    moor_clock_if_t c = {e, env_now_ms, env_timer_start, env_timer_stop};
    return c;
}

size_t moor_uvenv_pending(const moor_uvenv_t *e)
{
    return e->count;
}

static void self_closed(uv_handle_t *h)
{
    env_release(h->data);
}

void moor_uvenv_close(moor_uvenv_t *e, void (*done)(void *ud), void *ud)
{
    size_t i;
    uvtimer_t *t;

    e->closing = 1;
    e->done = done;
    e->done_ud = ud;
    for (i = 0; i < e->nbuckets; i++)
        while ((t = e->buckets[i])) {
            e->buckets[i] = t->hnext;
            e->count--;
            uv_close((uv_handle_t *)&t->h, timer_closed);
        }
    uv_close((uv_handle_t *)&e->self, self_closed);
}
