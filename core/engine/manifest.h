/*
 * manifest.h -- reading and atomically replacing the MANIFEST
 * (manifest_format.h).  Pure data plus file I/O; the engine owns the
 * decisions about what the list holds.
 */
#ifndef MOOR_ENGINE_MANIFEST_H
#define MOOR_ENGINE_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct moor_file_meta {
    int level;
    uint64_t number;     /* table file is <dir>/<number, 16 digits>.sst */
    uint64_t size;       /* bytes */
    uint64_t entries;
    char *smallest;      /* internal key, malloc'ed, owned by the meta */
    size_t smallest_len;
    char *largest;       /* internal key, malloc'ed, owned by the meta */
    size_t largest_len;
} moor_file_meta_t;

typedef struct moor_manifest {
    uint64_t next_file;
    uint64_t last_seq;
    uint64_t log_number;
    size_t nfiles;
    moor_file_meta_t *files; /* malloc'ed array, owned */
} moor_manifest_t;

/* ===== API ===== */

void moor_manifest_init(moor_manifest_t *m);
void moor_manifest_clear(moor_manifest_t *m); /* frees files and their keys */

/* Appends a copy of f (keys copied).  0 or MOOR_ENOMEM. */
int moor_manifest_add(moor_manifest_t *m, const moor_file_meta_t *f);

int moor_manifest_encode(const moor_manifest_t *m, moor_buf_t *out);

/* Decodes a whole MANIFEST image into m (initialised by the callee; on
 * error m is left empty).  0, MOOR_ECORRUPT, MOOR_EVERSION or MOOR_ENOMEM,
 * with a diagnostic saying what is wrong and at which offset.  Never reads
 * outside buf. */
int moor_manifest_decode(const char *buf, size_t len, moor_manifest_t *m);

/* Atomic replace of <dir>/MANIFEST.  0 or -errno with a diagnostic. */
int moor_manifest_write(const char *dir, const moor_manifest_t *m);

/* Reads <dir>/MANIFEST.  MOOR_ENOENT if there is none (a new database). */
int moor_manifest_read(const char *dir, moor_manifest_t *m);

#endif
