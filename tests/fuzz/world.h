/*
 * world.h -- TEST: the in-memory world of the fuzz targets for cluster
 * services (header-only): a store of at most MAX_KEYS records that only
 * takes records that decode (or internal keys: ff x 8 | 00 | ...), a clock
 * whose timers fire when settle() runs them, store completions run by
 * settle(), a transport (tr_request) whose requests fail at once unless
 * the target sets world_request, and check_answer, which aborts on an
 * answer that is not valid MessagePack or an error without a message.
 */
#ifndef MOOR_FUZZ_WORLD_H
#define MOOR_FUZZ_WORLD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/coord.h"
#include "cluster/record.h"
#include "util/err.h"
#include "util/mp.h"

/* Optional: a target's own transport (NULL: every request fails). */
static int (*world_request)(const char *to, size_t tolen, const char *method, const char *params,
                            size_t plen, moor_peer_reply_fn cb, void *arg);

#define MAX_KEYS 64
#define MAX_TIMERS 4096
#define MAX_DONES 4096

typedef struct kv {
    moor_buf_t key, rec;
} kv_t;

static kv_t store[MAX_KEYS];
static size_t nstore;

static struct {
    uint64_t id;
    moor_timer_fn cb;
    void *arg;
} timers[MAX_TIMERS];
static size_t ntimers;
static uint64_t next_timer = 1, now_ms = 1000000;

static struct {
    moor_store_done_fn done;
    void *arg;
} dones[MAX_DONES];
static size_t ndones;

static unsigned calls, answers;

static uint64_t clk_now(void *ud)
{
    (void)ud;
    return now_ms;
}

static uint64_t clk_start(void *ud, uint64_t delay, moor_timer_fn cb, void *arg)
{
    (void)ud, (void)delay;
    if (ntimers == MAX_TIMERS)
        return 0;
    timers[ntimers].id = next_timer;
    timers[ntimers].cb = cb;
    timers[ntimers].arg = arg;
    ntimers++;
    return next_timer++;
}

static void clk_stop(void *ud, uint64_t id)
{
    (void)ud;
    for (size_t i = 0; i < ntimers; i++)
        if (timers[i].id == id)
            timers[i].cb = NULL;
}

static int tr_request(void *ud, const char *to, size_t tolen, const char *method,
                      const char *params, size_t plen, uint32_t nparams, uint32_t timeout_ms,
                      moor_peer_reply_fn cb, void *arg)
{
    (void)ud, (void)nparams, (void)timeout_ms;
    if (world_request)
        return world_request(to, tolen, method, params, plen, cb, arg);
    return -111; /* ECONNREFUSED: the others are down */
}

static int st_get(void *ud, const char *key, size_t klen, moor_buf_t *out)
{
    (void)ud;
    for (size_t i = 0; i < nstore; i++)
        if (store[i].key.len == klen && memcmp(store[i].key.data, key, klen) == 0)
            return moor_buf_append(out, store[i].rec.data, store[i].rec.len);
    return MOOR_ENOTFOUND;
}

static int st_put(void *ud, const char *key, size_t klen, const char *rec, size_t rlen,
                  moor_store_done_fn done, void *arg)
{
    moor_record_t *r = malloc(sizeof(*r));
    kv_t *slot = NULL;

    (void)ud;
    /* only records that decode, and the trees' own saved state */
    if (!r || (!(klen > 9 && (unsigned char)key[8] == 0) && moor_record_decode(rec, rlen, r) != 0))
        abort();
    free(r);
    if (ndones == MAX_DONES)
        return MOOR_EAGAIN;
    for (size_t i = 0; i < nstore && !slot; i++)
        if (store[i].key.len == klen && memcmp(store[i].key.data, key, klen) == 0)
            slot = &store[i];
    if (!slot) {
        if (nstore == MAX_KEYS)
            return MOOR_ENOSPC;
        slot = &store[nstore++];
        moor_buf_append(&slot->key, key, klen);
    }
    slot->rec.len = 0;
    if (moor_buf_append(&slot->rec, rec, rlen))
        return MOOR_ENOMEM;
    dones[ndones].done = done;
    dones[ndones].arg = arg;
    ndones++;
    return 0;
}

static int st_del(void *ud, const char *key, size_t klen, moor_store_done_fn done, void *arg)
{
    (void)ud;
    if (ndones == MAX_DONES)
        return MOOR_EAGAIN;
    for (size_t i = 0; i < nstore; i++)
        if (store[i].key.len == klen && memcmp(store[i].key.data, key, klen) == 0) {
            moor_buf_free(&store[i].key);
            moor_buf_free(&store[i].rec);
            store[i] = store[--nstore];
            break;
        }
    dones[ndones].done = done;
    dones[ndones].arg = arg;
    ndones++;
    return 0;
}

static int key_cmp(const moor_buf_t *a, const char *b, size_t blen)
{
    size_t m = a->len < blen ? a->len : blen;
    int c = m ? memcmp(a->data, b, m) : 0;
    return c ? c : (a->len > blen) - (a->len < blen);
}

/* In key order (a selection each step: the store is small). */
static int st_scan(void *ud, const char *prefix, size_t plen, const char *from, size_t flen,
                   uint32_t limit, moor_store_scan_fn fn, void *arg)
{
    moor_buf_t last = MOOR_BUF_INIT;
    int have_last = 0;
    uint32_t seen = 0;

    (void)ud;
    for (;;) {
        kv_t *best = NULL;
        for (size_t i = 0; i < nstore; i++) {
            kv_t *k = &store[i];
            if (k->key.len < plen || (plen && memcmp(k->key.data, prefix, plen)))
                continue;
            if (flen && key_cmp(&k->key, from, flen) < 0)
                continue;
            if (have_last && key_cmp(&k->key, last.data, last.len) <= 0)
                continue;
            if (!best || key_cmp(&k->key, best->key.data, best->key.len) < 0)
                best = k;
        }
        if (!best || (limit && seen == limit))
            break;
        last.len = 0;
        moor_buf_append(&last, best->key.data, best->key.len);
        have_last = 1;
        seen++;
        if (fn(arg, best->key.data, best->key.len, best->rec.data, best->rec.len))
            break;
    }
    moor_buf_free(&last);
    return 0;
}

static void check_answer(void *arg, int code, const char *errmsg, const char *result, size_t rlen)
{
    const char *p = result;

    (void)arg;
    answers++;
    if (code
            ? (code > 0 || !errmsg)
            : (!result || moor_mp_skip(&p, result + rlen, MOOR_MP_MAX_DEPTH) || p != result + rlen))
        abort();
}

__attribute__((unused)) static moor_ring_t *make_ring(void)
{
    moor_member_t m[3];
    moor_ring_t *ring;

    memset(m, 0, sizeof(m));
    for (int i = 0; i < 3; i++) {
        m[i].idlen = 1;
        m[i].id[0] = (char)('a' + i);
        m[i].vnodes = 8;
        m[i].status = MOOR_MEMBER_UP;
        snprintf(m[i].addr, sizeof(m[i].addr), "127.0.0.%d:7700", i + 1);
    }
    if (moor_ring_build(m, 3, &ring))
        abort();
    return ring;
}

/* Store completions, then timers, until nothing is left. */
static void settle(void)
{
    while (ndones || ntimers) {
        while (ndones) {
            moor_store_done_fn done = dones[ndones - 1].done;
            void *arg = dones[ndones - 1].arg;
            ndones--;
            done(arg, 0);
        }
        if (ntimers) {
            moor_timer_fn cb = timers[ntimers - 1].cb;
            void *arg = timers[ntimers - 1].arg;
            ntimers--;
            now_ms += 1000;
            if (cb)
                cb(arg);
        }
    }
}

/* Empties the store between inputs. */
static void world_reset(void)
{
    for (size_t i = 0; i < nstore; i++) {
        moor_buf_free(&store[i].key);
        moor_buf_free(&store[i].rec);
    }
    nstore = 0;
}

#endif
