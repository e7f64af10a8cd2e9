/*
 * uvenv.c -- env.h's clock on libuv: wall-clock now_ms and one-shot timers.
 *
 * Timers live on a hashed wheel driven by ONE uv_timer_t, not a libuv
 * timer each: a cluster node keeps thousands armed (a deadline per request
 * in flight), almost all of them stopped before they fire, and libuv's
 * timer heap paid a walk of pointer-linked nodes for every start and stop
 * (with a handle to close and free each time).  Here a start links the
 * timer into the list of its slot -- due time / UVENV_RES_MS, modulo
 * UVENV_SLOTS -- and a stop unlinks it: O(1), and the timer's memory goes
 * back to a free list.  The uv timer is armed for the first slot that holds
 * a timer; when it fires, every slot up to now is walked and the timers
 * whose due time has come fire, slot by slot (so in order of their due
 * time, to UVENV_RES_MS); a timer due more than one turn of the wheel away
 * waits in its slot until its turn.  A timer fires at most about
 * UVENV_RES_MS after its due time plus the loop's own latency, never
 * before.  Times are the loop's cached time (uv_now), as libuv's timers.
 *
 * Ids come from a 64-bit counter starting at 1 and are never reused; a
 * chained hash finds an armed timer by id (stop must not scan).  A timer is
 * in the table iff it is armed and its callback has not run.
 * Threads: the loop thread only.
 */
#include "net/uvenv.h"

#include <stdlib.h>

#include "util/clock.h"
#include "util/err.h"

#define UVENV_MIN_BUCKETS 64
#define UVENV_RES_MS 2
#define UVENV_SLOTS 4096 /* a turn of the wheel: 8.192 s */

typedef struct uvtimer {
    struct uvtimer *hnext;       /* bucket chain while armed; free list when not */
    struct uvtimer *prev, *next; /* the slot's (or the firing) list */
    uint64_t id;
    uint64_t due; /* uv_now time */
    moor_timer_fn cb;
    void *arg;
} uvtimer_t;

struct moor_uvenv {
    uv_loop_t *loop;
    uv_timer_t tick;             /* armed for the first slot with a timer */
    int armed;                   /* tick is armed, for the slot time armed_tick */
    int ticking;                 /* in tick_cb: it re-arms at its end */
    uint64_t armed_tick;         /* slot times are due / UVENV_RES_MS */
    uint64_t cursor;             /* slot time of the next slot to walk */
    uvtimer_t slot[UVENV_SLOTS]; /* list heads (prev/next only) */
    uvtimer_t **buckets;         /* nbuckets heads, power of two */
    size_t nbuckets;
    size_t count;     /* armed timers */
    uvtimer_t *spare; /* freed timers, for reuse */
    uint64_t next_id; /* > 0 */
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

static void list_unlink(uvtimer_t *t)
{
    t->prev->next = t->next;
    t->next->prev = t->prev;
    t->prev = t->next = t;
}

static void list_push(uvtimer_t *head, uvtimer_t *t)
{
    t->prev = head->prev;
    t->next = head;
    head->prev->next = t;
    head->prev = t;
}

static void timer_free(moor_uvenv_t *e, uvtimer_t *t)
{
    t->hnext = e->spare;
    e->spare = t;
}

static void tick_cb(uv_timer_t *h);

/* Arms the uv timer for the first slot from the cursor that holds a timer
 * (none: stopped). */
static void rearm(moor_uvenv_t *e)
{
    uint64_t now_tick = uv_now(e->loop) / UVENV_RES_MS, at;

    if (e->count == 0 || e->closing) {
        uv_timer_stop(&e->tick);
        e->armed = 0;
        return;
    }
    for (at = e->cursor; at < e->cursor + UVENV_SLOTS; at++)
        if (e->slot[at % UVENV_SLOTS].next != &e->slot[at % UVENV_SLOTS])
            break;
    e->armed = 1;
    e->armed_tick = at;
    uv_timer_start(&e->tick, tick_cb, at > now_tick ? (at - now_tick) * UVENV_RES_MS : 0, 0);
}

/* Fires every timer due by now, slot by slot from the cursor; a slot is
 * walked again while its walk found timers due (their callbacks may start
 * timers due at once). */
static void tick_cb(uv_timer_t *h)
{
    moor_uvenv_t *e = h->data;
    uint64_t now = uv_now(e->loop), now_tick = now / UVENV_RES_MS;
    uvtimer_t firing;

    e->armed = 0;
    e->ticking = 1;
    firing.prev = firing.next = &firing;
    while (e->cursor <= now_tick && e->count) {
        uvtimer_t *head = &e->slot[e->cursor % UVENV_SLOTS], *t, *next;
        for (t = head->next; t != head; t = next) {
            next = t->next;
            if (t->due <= now) {
                list_unlink(t);
                list_push(&firing, t);
            }
        }
        if (firing.next == &firing) {
            e->cursor++;
            continue;
        }
        /* Still in the table while on the firing list: a callback that
         * stops one of them unlinks it from there (timer_stop). */
        while (firing.next != &firing) {
            t = firing.next;
            list_unlink(t);
            table_take(e, t->id);
            moor_timer_fn cb = t->cb;
            void *arg = t->arg;
            timer_free(e, t);
            cb(arg);
            if (e->closing)
                return;
        }
    }
    e->ticking = 0;
    if (e->count == 0 && e->cursor <= now_tick)
        e->cursor = now_tick + 1;
    rearm(e);
}

static uint64_t env_now_ms(void *ud)
{
    (void)ud;
    return moor_clock_wall_ms();
}

static uint64_t env_timer_start(void *ud, uint64_t delay_ms, moor_timer_fn cb, void *arg)
{
    moor_uvenv_t *e = ud;
    uint64_t now = uv_now(e->loop), due_tick;
    uvtimer_t *t;
    size_t b;

    if (e->closing || !cb)
        return 0;
    if ((t = e->spare))
        e->spare = t->hnext;
    else if (!(t = malloc(sizeof(*t))))
        return 0;
    if (e->count >= e->nbuckets)
        table_grow(e);
    if (e->count == 0 && e->cursor < now / UVENV_RES_MS)
        e->cursor = now / UVENV_RES_MS; /* idle: nothing behind now to walk */
    t->id = e->next_id++;
    t->cb = cb;
    t->arg = arg;
    t->due = delay_ms > UINT64_MAX / 2 ? UINT64_MAX / 2 : now + delay_ms;
    due_tick = (t->due + UVENV_RES_MS - 1) / UVENV_RES_MS; /* never before due */
    if (due_tick < e->cursor)
        due_tick = e->cursor;
    list_push(&e->slot[due_tick % UVENV_SLOTS], t);
    b = bucket_of(e, t->id);
    t->hnext = e->buckets[b];
    e->buckets[b] = t;
    e->count++;
    if (!e->ticking && (!e->armed || due_tick < e->armed_tick))
        rearm(e);
    return t->id;
}

static void env_timer_stop(void *ud, uint64_t id)
{
    moor_uvenv_t *e = ud;
    uvtimer_t *t = id ? table_take(e, id) : NULL;

    if (!t)
        return;
    list_unlink(t);
    timer_free(e, t);
    if (e->count == 0 && e->armed) {
        uv_timer_stop(&e->tick);
        e->armed = 0;
    }
}

int moor_uvenv_new(uv_loop_t *loop, moor_uvenv_t **out)
{
    moor_uvenv_t *e = calloc(1, sizeof(*e));

    if (!e)
        goto fail;
    e->nbuckets = UVENV_MIN_BUCKETS;
    if (!(e->buckets = calloc(e->nbuckets, sizeof(*e->buckets))))
        goto fail;
    for (int i = 0; i < UVENV_SLOTS; i++)
        e->slot[i].prev = e->slot[i].next = &e->slot[i];
    e->loop = loop;
    e->next_id = 1;
    e->cursor = uv_now(loop) / UVENV_RES_MS;
    uv_timer_init(loop, &e->tick);
    e->tick.data = e;
    *out = e;
    return 0;
fail:
    free(e);
    return moor_diag(MOOR_ENOMEM, "uvenv: out of memory");
}

static uint64_t env_mono_ns(void *ud)
{
    (void)ud;
    return uv_hrtime();
}

moor_clock_if_t moor_uvenv_clock(moor_uvenv_t *e)
{
    moor_clock_if_t c = {e, env_now_ms, env_timer_start, env_timer_stop, env_mono_ns};
    return c;
}

size_t moor_uvenv_pending(const moor_uvenv_t *e)
{
    return e->count;
}

static void tick_closed(uv_handle_t *h)
{
    moor_uvenv_t *e = h->data;
    void (*done)(void *) = e->done;
    void *ud = e->done_ud;

    while (e->spare) {
        uvtimer_t *t = e->spare;
        e->spare = t->hnext;
        free(t);
    }
    free(e->buckets);
    free(e);
    if (done)
        done(ud);
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
            list_unlink(t);
            free(t);
        }
    uv_close((uv_handle_t *)&e->tick, tick_closed);
}
