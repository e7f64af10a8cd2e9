/*
 * buf.h -- a growable byte buffer, and the integer encodings of every Moor
 * format: little-endian fixed32/fixed64, big-endian fixed64 (ring tokens,
 * so byte order is numeric order), and LEB128 varints.
 *
 * Decoders take a cursor and an end and never read past the end: they
 * return 0 on success and MOOR_ECORRUPT when the input is short or a varint
 * is overlong, which is what makes them safe on untrusted bytes.
 */
#ifndef MOOR_UTIL_BUF_H
#define MOOR_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct moor_buf {
    char *data; /* NULL until the first append; owned by the buffer */
    size_t len; /* bytes in use */
    size_t cap; /* bytes allocated */
} moor_buf_t;

/* ===== API ===== */

#define MOOR_BUF_INIT {NULL, 0, 0}

static inline void moor_buf_init(moor_buf_t *b) { b->data = NULL, b->len = 0, b->cap = 0; }
void moor_buf_free(moor_buf_t *b); /* releases memory; b is empty and reusable */
static inline void moor_buf_reset(moor_buf_t *b) { b->len = 0; }

/* Ensures room for n more bytes.  0 or MOOR_ENOMEM (buffer unaltered). */
int moor_buf_reserve(moor_buf_t *b, size_t n);

/* Appends; 0 or MOOR_ENOMEM (buffer unaltered). */
int moor_buf_append(moor_buf_t *b, const void *p, size_t n);
int moor_buf_put_u8(moor_buf_t *b, uint8_t v);
int moor_buf_put_fixed32(moor_buf_t *b, uint32_t v);
int moor_buf_put_fixed64(moor_buf_t *b, uint64_t v);
int moor_buf_put_be64(moor_buf_t *b, uint64_t v);
int moor_buf_put_varint(moor_buf_t *b, uint64_t v);
/* varint length followed by the bytes */
int moor_buf_put_lenbytes(moor_buf_t *b, const void *p, size_t n);

/* Takes the bytes out: *out owns them (caller frees with free()); b is empty. */
char *moor_buf_steal(moor_buf_t *b, size_t *len);

/* Raw encoders into memory the caller sized. */
static inline void moor_enc_fixed32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void moor_enc_fixed64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t moor_dec_fixed32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t moor_dec_fixed64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
void moor_enc_be64(char *p, uint64_t v);
uint64_t moor_dec_be64(const char *p);

/* Writes v as a varint at p (room for 10 bytes); returns bytes written. */
size_t moor_enc_varint(char *p, uint64_t v);
size_t moor_varint_len(uint64_t v);

/* Cursor decoders: advance *p on success; MOOR_ECORRUPT if short/overlong. */
int moor_get_varint_slow(const char **p, const char *end, uint64_t *v);
static inline int moor_get_varint(const char **p, const char *end, uint64_t *v)
{
    /* One-byte varints (< 128) are the common case in every format. */
    if (*p < end && !(**p & 0x80)) {
        *v = (unsigned char)**p;
        (*p)++;
        return 0;
    }
    return moor_get_varint_slow(p, end, v);
}
int moor_get_fixed32(const char **p, const char *end, uint32_t *v);
int moor_get_fixed64(const char **p, const char *end, uint64_t *v);
/* varint length then bytes; *data points into the input (borrowed). */
int moor_get_lenbytes(const char **p, const char *end, const char **data, size_t *n);

#endif
