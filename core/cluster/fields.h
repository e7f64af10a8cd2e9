/*
 * fields.h -- the one map param of a node-to-node request, read into
 * named fields.
 *
 * Peer methods (`_get`, `_put`, `_aae_*`, ...) take one MessagePack map.
 * moor_fields_read finds the span of each known field's value; unknown
 * fields are skipped (a later release may add some during a rolling
 * upgrade) and a known field given twice is refused.  The field_*
 * readers then take one value each, whole.  Requests from peers are
 * untrusted bytes: everything here is safe on any input.
 */
#ifndef MOOR_CLUSTER_FIELDS_H
#define MOOR_CLUSTER_FIELDS_H

#include <stddef.h>
#include <stdint.h>

typedef struct moor_field {
    const char *name;
    const char *v, *end; /* the value's span; v NULL: absent */
} moor_field_t;

/* ===== API ===== */

/* Reads params (nparams, plen bytes) as one map into f[0..n-1] (names set
 * by the caller, spans cleared here).  NULL, or what is wrong. */
const char *moor_fields_read(const char *params, size_t plen, uint32_t nparams, moor_field_t *f,
                             size_t n);

/* 1 if the field is absent or nil. */
int moor_field_nil(const moor_field_t *f);

/* The field as one str or bin; 0, or -1. */
int moor_field_strbin(const moor_field_t *f, const char **s, uint32_t *len);

/* The field as one unsigned integer; 0, or -1. */
int moor_field_uint(const moor_field_t *f, uint64_t *u);

/* A bool field: absent or nil gives dflt; 0, or -1 for another type. */
int moor_field_bool(const moor_field_t *f, int dflt, int *b);

#endif
