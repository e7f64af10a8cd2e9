/*
 * table_format.h -- the byte layout of an SSTable (.sst file).
 *
 *   [data block 0][trailer] ... [data block n-1][trailer]
 *   [filter block][trailer]
 *   [index block][trailer]
 *   [footer: MOOR_TABLE_FOOTER bytes]
 *
 * Block trailer (5 bytes): compression u8 (0 = none, 1 = zstd) |
 *   masked crc32c u32 LE of (stored block bytes + compression byte).
 *   A zstd block stores: varint raw_len | zstd frame.
 *
 * Data block (uncompressed), LevelDB-style prefix compression:
 *   entry*: varint shared | varint unshared | varint vlen |
 *           key_delta[unshared] | value[vlen]
 *   restarts: u32 LE offset * nrestarts (every MOOR_BLOCK_RESTART entries
 *           an entry with shared == 0)
 *   nrestarts u32 LE (>= 1)
 *   Keys are internal keys, strictly increasing in ikey order.
 *
 * Index block: a data block (same encoding, never compressed) whose key for
 *   block i is the LAST internal key of block i and whose value is
 *   varint offset | varint size (size without the trailer).
 *
 * Filter block: a Bloom filter (bloom.h) over every user key of the table,
 *   never compressed; size 0 when bloom bits per key is 0.
 *
 * Footer (56 bytes, all little-endian):
 *   filter_off u64 | filter_size u64 | index_off u64 | index_size u64 |
 *   entries u64 | version u32 | masked crc32c u32 of the 44 bytes before it |
 *   magic u64
 *   Sizes exclude the block trailer.  A reader checks magic, version and
 *   crc before trusting any offset, and that every handle lies inside the
 *   file before the footer.
 */
#ifndef MOOR_ENGINE_TABLE_FORMAT_H
#define MOOR_ENGINE_TABLE_FORMAT_H

#define MOOR_TABLE_MAGIC UINT64_C(0x4d4f4f5253535431) /* "MOORSST1" as a number */
#define MOOR_TABLE_VERSION 1
#define MOOR_TABLE_FOOTER 56
#define MOOR_BLOCK_TRAILER 5
#define MOOR_BLOCK_RESTART 16

enum moor_block_compression {
    MOOR_BLOCK_RAW = 0,
    MOOR_BLOCK_ZSTD = 1
};

#endif
