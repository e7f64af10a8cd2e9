/*
 * slowlog.c -- the slow-request ring (slowlog.h).
 *
 * A fixed array of max_len entries used as a ring: head is where the next
 * entry goes, len how many are kept.  Allocated once at creation, so
 * logging a slow request never allocates.
 */
#include "slowlog.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/mp.h"

struct moor_slowlog {
    int64_t threshold_us;       /* < 0: nothing is logged */
    uint32_t max_len;           /* >= 1 */
    uint32_t head;              /* next slot written */
    uint32_t len;               /* entries kept, <= max_len */
    uint64_t next_id;           /* ids from 1, never reused */
    uint64_t total;             /* entries ever added */
    moor_slowlog_entry_t *ring; /* max_len slots */
};

moor_slowlog_t *moor_slowlog_new(uint32_t max_len, int64_t threshold_us)
{
    moor_slowlog_t *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->max_len = max_len ? max_len : 1;
    l->threshold_us = threshold_us;
    l->next_id = 1;
    if (!(l->ring = calloc(l->max_len, sizeof(*l->ring)))) {
        free(l);
        return NULL;
    }
    return l;
}

void moor_slowlog_free(moor_slowlog_t *l)
{
    if (!l)
        return;
    free(l->ring);
    free(l);
}

int moor_slowlog_over(const moor_slowlog_t *l, uint64_t duration_us)
{
    return l && l->threshold_us >= 0 && duration_us >= (uint64_t)l->threshold_us;
}

uint64_t moor_slowlog_add(moor_slowlog_t *l, const moor_slowlog_entry_t *e)
{
    moor_slowlog_entry_t *slot = &l->ring[l->head];

    *slot = *e;
    slot->id = l->next_id++;
    l->head = (l->head + 1) % l->max_len;
    if (l->len < l->max_len)
        l->len++;
    l->total++;
    return slot->id;
}

void moor_slowlog_set_key(moor_slowlog_entry_t *e, const void *key, size_t klen)
{
    e->key_total = klen > UINT32_MAX ? UINT32_MAX : (uint32_t)klen;
    e->klen = klen > MOOR_SLOWLOG_KEY_MAX ? MOOR_SLOWLOG_KEY_MAX : (uint32_t)klen;
    if (e->klen)
        memcpy(e->key, key, e->klen);
}

const moor_slowlog_entry_t *moor_slowlog_get(const moor_slowlog_t *l, uint32_t i)
{
    if (i >= l->len)
        return NULL;
    return &l->ring[(l->head + l->max_len - 1 - i) % l->max_len];
}

uint32_t moor_slowlog_len(const moor_slowlog_t *l)
{
    return l->len;
}

uint64_t moor_slowlog_total(const moor_slowlog_t *l)
{
    return l->total;
}

int64_t moor_slowlog_threshold_us(const moor_slowlog_t *l)
{
    return l->threshold_us;
}

void moor_slowlog_set_threshold_us(moor_slowlog_t *l, int64_t threshold_us)
{
    l->threshold_us = threshold_us;
}

uint32_t moor_slowlog_max_len(const moor_slowlog_t *l)
{
    return l->max_len;
}

void moor_slowlog_reset(moor_slowlog_t *l)
{
    l->len = 0;
    l->head = 0;
}

void moor_slowlog_key_text(const moor_slowlog_entry_t *e, char *out, size_t size)
{
    size_t k = 0;

    if (!size)
        return;
    for (uint32_t i = 0; i < e->klen && k + 5 < size; i++) {
        uint8_t c = e->key[i];
        if (c == '\\') {
            out[k++] = '\\';
            out[k++] = '\\';
        } else if (c >= 0x20 && c < 0x7f) {
            out[k++] = (char)c;
        } else {
            k += (size_t)snprintf(out + k, size - k, "\\x%02x", c);
        }
    }
    out[k] = '\0';
    if (e->key_total > e->klen)
        snprintf(out + k, size - k, "... (%u more bytes)", e->key_total - e->klen);
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    pack_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

int moor_slowlog_pack(const moor_slowlog_t *l, uint32_t count, moor_buf_t *out)
{
    char key[MOOR_SLOWLOG_KEY_MAX * 4 + 48];
    msgpack_packer pk;

    if (count > l->len)
        count = l->len;
    /* An entry packs to well under 768 bytes (strings bounded above):
     * with room made first, packing cannot fail half way. */
    if (moor_buf_reserve(out, 16 + (size_t)count * 768))
        return MOOR_ENOMEM;
    moor_mp_packer_init(&pk, out);
    msgpack_pack_array(&pk, count);
    for (uint32_t i = 0; i < count; i++) {
        const moor_slowlog_entry_t *e = moor_slowlog_get(l, i);
        msgpack_pack_map(&pk, 10);
        pack_u64(&pk, "id", e->id);
        pack_u64(&pk, "time_ms", e->time_ms);
        pack_u64(&pk, "duration_us", e->duration_us);
        pack_str(&pk, "method");
        pack_str(&pk, e->method);
        pack_str(&pk, "space");
        pack_str(&pk, e->space);
        moor_slowlog_key_text(e, key, sizeof(key));
        pack_str(&pk, "key");
        pack_str(&pk, key);
        pack_str(&pk, "client");
        pack_str(&pk, e->client);
        pack_u64(&pk, "engine_us", e->engine_us);
        pack_u64(&pk, "replicas_us", e->replicas_us);
        pack_u64(&pk, "lua_us", e->lua_us);
    }
    return 0;
}
