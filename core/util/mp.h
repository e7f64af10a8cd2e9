/*
 * mp.h -- reading MessagePack from untrusted bytes, and packing it.
 *
 * Moor decodes wire frames and stored records with these readers rather
 * than with msgpack-c's object unpacker, for two reasons: a value must come
 * back byte-identical (so values are kept as the exact byte span the client
 * sent, found by moor_mp_skip, never re-encoded), and every read must be
 * bounded by an end pointer with no allocation (safe on any input, cheap).
 * Packing uses msgpack-c's msgpack_packer writing into a moor_buf_t.
 *
 * Readers take a cursor (*p) and an end; on success they advance *p past
 * the object and return 0.  On a type mismatch they return MOOR_EINVAL and
 * leave *p unchanged; on short input MOOR_EAGAIN (more bytes may complete
 * it); on bytes that can never be valid (0xc1, depth over the limit)
 * MOOR_EPROTO.
 */
#ifndef MOOR_UTIL_MP_H
#define MOOR_UTIL_MP_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum moor_mp_type {
    MOOR_MP_NIL = 1,
    MOOR_MP_BOOL,
    MOOR_MP_UINT,   /* positive fixint or uint8..64: a non-negative integer */
    MOOR_MP_INT,    /* negative fixint or int8..64: signed, may still be >= 0 */
    MOOR_MP_FLOAT,  /* float32 or float64 */
    MOOR_MP_STR,
    MOOR_MP_BIN,
    MOOR_MP_ARRAY,
    MOOR_MP_MAP,
    MOOR_MP_EXT
};

#define MOOR_MP_MAX_DEPTH 64

/* ===== API ===== */

/* Type of the object at *p (not consumed): a moor_mp_type, MOOR_EAGAIN if
 * p >= end, MOOR_EPROTO for 0xc1. */
int moor_mp_peek(const char *p, const char *end);

/* Validates and skips one whole object, nested up to max_depth levels of
 * containers (an empty one counts: max_depth 0 allows scalars only).
 * 0, MOOR_EAGAIN (truncated: the object continues past end, or a container
 * counts more elements than bytes remain) or MOOR_EPROTO.  Never reads past
 * end; O(size) time, no allocation. */
int moor_mp_skip(const char **p, const char *end, int max_depth);

/* The value of key in the map at p (NULL p, not a map, a malformed map or
 * no such str key: NULL).  Keys compare as bytes with key's strlen. */
const char *moor_mp_map_find(const char *p, const char *end, const char *key);

/* The header of the object at p, without reading past end: *hlen header
 * bytes, then *payload bytes (str, bin, ext) or *children objects (an
 * array's n, a map's 2n; *container says which kind).  0, MOOR_EAGAIN
 * (the header is cut at end) or MOOR_EPROTO (0xc1).  Lets a reader judge
 * what an object announces before its bytes arrive. */
int moor_mp_header(const char *p, const char *end, size_t *hlen, uint64_t *payload,
                   uint64_t *children, int *container);

int moor_mp_read_nil(const char **p, const char *end);
int moor_mp_read_bool(const char **p, const char *end, int *v);
/* Any integer that fits; MOOR_EINVAL for a negative one into uint64. */
int moor_mp_read_uint(const char **p, const char *end, uint64_t *v);
int moor_mp_read_int(const char **p, const char *end, int64_t *v);
/* float32, float64, or an integer (converted). */
int moor_mp_read_double(const char **p, const char *end, double *v);
/* Borrowed pointers into the input. */
int moor_mp_read_str(const char **p, const char *end, const char **s, uint32_t *n);
int moor_mp_read_bin(const char **p, const char *end, const char **s, uint32_t *n);
int moor_mp_read_strbin(const char **p, const char *end, const char **s, uint32_t *n);
/* The header only (*p then points at the first element).  MOOR_EAGAIN if
 * the count is larger than the bytes left, so *n can size an allocation. */
int moor_mp_read_array(const char **p, const char *end, uint32_t *n);
int moor_mp_read_map(const char **p, const char *end, uint32_t *n);

/* msgpack-c packer that appends to b: msgpack_packer_init(pk, b, moor_mp_buf_write).
 * Returns -1 only when the buffer cannot grow (then b keeps what it had). */
int moor_mp_buf_write(void *b, const char *data, size_t len);

static inline void moor_mp_packer_init(msgpack_packer *pk, moor_buf_t *b)
{
    msgpack_packer_init(pk, b, moor_mp_buf_write);
}

/* Appends already-encoded MessagePack bytes (a value span) as they are. */
static inline int moor_mp_pack_raw(moor_buf_t *b, const char *mp, size_t n)
{
    return moor_buf_append(b, mp, n);
}

#endif
