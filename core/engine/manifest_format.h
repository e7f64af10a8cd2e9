/*
 * manifest_format.h -- the byte layout of the MANIFEST file: the complete
 * list of live tables, rewritten whole on every change (write MANIFEST.tmp,
 * fdatasync, rename over MANIFEST, fsync the directory), so a crash leaves
 * either the old or the new list, never a mix.
 *
 *   magic u64 | version u32 | body_len u32 | masked crc32c u32 of body |
 *   body[body_len]
 *
 * body (varints unless said):
 *   next_file | last_seq | log_number | nfiles |
 *   nfiles * ( level | number | size | entries |
 *              smallest (varint len + bytes, an internal key) |
 *              largest  (varint len + bytes, an internal key) )
 *
 * log_number: the oldest commit log segment still needed; older segments'
 *   data is all in tables.  level < MOOR_MAX_LEVELS; keys >= 8 bytes.
 */
#ifndef MOOR_ENGINE_MANIFEST_FORMAT_H
#define MOOR_ENGINE_MANIFEST_FORMAT_H

#define MOOR_MANIFEST_MAGIC UINT64_C(0x54534e4d524f4f4d) /* "MOORMNST" little-endian */
#define MOOR_MANIFEST_VERSION 1
#define MOOR_MANIFEST_HEADER 20
#define MOOR_MAX_LEVELS 7

#endif
