/*
 * slowlog.h -- the slow-request log (as Redis's SLOWLOG): requests and
 * handler calls that took longer than a threshold, kept in a bounded
 * ring with where their time went.
 *
 * The ring holds the newest max_len entries; adding to a full ring drops
 * the oldest.  Entries get ids from 1 up, never reused (reset keeps the
 * count going), so a reader can tell which entries it has seen.  A key
 * is kept to its first MOOR_SLOWLOG_KEY_MAX bytes; its full length is
 * kept too and said when the entry is shown.
 *
 * Cost: one comparison per request under the threshold; an entry over
 * it is a copy into a preallocated slot (no allocation).  Loop thread
 * only.
 */
#ifndef MOOR_SERVER_SLOWLOG_H
#define MOOR_SERVER_SLOWLOG_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define MOOR_SLOWLOG_KEY_MAX 64
#define MOOR_SLOWLOG_METHOD_MAX 32
#define MOOR_SLOWLOG_SPACE_MAX 64
#define MOOR_SLOWLOG_CLIENT_MAX 64

typedef struct moor_slowlog moor_slowlog_t;

typedef struct moor_slowlog_entry {
    uint64_t id;          /* set by moor_slowlog_add */
    uint64_t time_ms;     /* when the request arrived, unix ms */
    uint64_t duration_us; /* until it was answered */
    uint64_t engine_us;   /* in this node's engine (reads; own writes until durable) */
    uint64_t replicas_us; /* waiting on other replicas */
    uint64_t lua_us;      /* running Lua (a handler call) */
    char method[MOOR_SLOWLOG_METHOD_MAX];
    char space[MOOR_SLOWLOG_SPACE_MAX]; /* "" when the method has none */
    char client[MOOR_SLOWLOG_CLIENT_MAX];
    uint8_t key[MOOR_SLOWLOG_KEY_MAX]; /* the first klen bytes (binary) */
    uint32_t klen;                     /* bytes kept, <= MOOR_SLOWLOG_KEY_MAX */
    uint32_t key_total;                /* the key's whole length */
} moor_slowlog_entry_t;

/* ===== API ===== */

/* A log keeping max_len entries (>= 1) of requests taking threshold_us or
 * more; threshold_us < 0 logs nothing.  NULL without memory. */
moor_slowlog_t *moor_slowlog_new(uint32_t max_len, int64_t threshold_us);
void moor_slowlog_free(moor_slowlog_t *l);

/* 1 if a request of duration_us goes into the log.  Can't fail. */
int moor_slowlog_over(const moor_slowlog_t *l, uint64_t duration_us);

/* Copies e into the ring (dropping the oldest entry when full) with the
 * next id; returns that id.  Can't fail. */
uint64_t moor_slowlog_add(moor_slowlog_t *l, const moor_slowlog_entry_t *e);

/* Sets the copy of key into e: its first MOOR_SLOWLOG_KEY_MAX bytes and
 * its length.  Can't fail. */
void moor_slowlog_set_key(moor_slowlog_entry_t *e, const void *key, size_t klen);

/* Entry i counting from the newest (0), or NULL past the end. */
const moor_slowlog_entry_t *moor_slowlog_get(const moor_slowlog_t *l, uint32_t i);

uint32_t moor_slowlog_len(const moor_slowlog_t *l);   /* entries kept */
uint64_t moor_slowlog_total(const moor_slowlog_t *l); /* entries ever added (the
                                                       * metric moor_slow_requests_total) */
int64_t moor_slowlog_threshold_us(const moor_slowlog_t *l);
/* A new threshold (< 0: off), for requests answered from now on (a reload). */
void moor_slowlog_set_threshold_us(moor_slowlog_t *l, int64_t threshold_us);
uint32_t moor_slowlog_max_len(const moor_slowlog_t *l);
void moor_slowlog_reset(moor_slowlog_t *l); /* empties the ring; ids and total go on */

/* The key of e as text: printable ASCII as is, '\\' as "\\\\", other
 * bytes as \xNN, then "... (N more bytes)" when it was cut.  Into out
 * (NUL-terminated, cut to size).  Can't fail. */
void moor_slowlog_key_text(const moor_slowlog_entry_t *e, char *out, size_t size);

/* Appends the `slowlog get` answer for the newest count entries, newest
 * first: [{id, time_ms, duration_us, method, space, key, client,
 * engine_us, replicas_us, lua_us}, ...] (key: moor_slowlog_key_text).
 * 0 or MOOR_ENOMEM. */
int moor_slowlog_pack(const moor_slowlog_t *l, uint32_t count, moor_buf_t *out);

#endif
