/*
 * wal_format.h -- the byte layout of a commit log segment (wal-<n>.log,
 * n = 16 decimal digits).
 *
 *   [segment header, 16 bytes] [record]*
 *
 * Segment header: magic u64 LE (MOOR_WAL_MAGIC) | version u32 LE |
 *   masked crc32c u32 LE of the 12 bytes before it.
 *
 * Record: crc u32 | length u32 | type u8 | seqno u64 | payload[length]
 *   (MOOR_WAL_HEADER = 17 bytes before the payload, all little-endian)
 *   crc = masked crc32c of (type | seqno | payload).
 *   type 1 = batch (payload is the engine's write batch encoding, whose
 *   first entry gets seqno and the next ones seqno+1, seqno+2, ...).
 *
 * Recovery reads records until the first one that is short (torn write),
 * has a length over MOOR_WAL_MAX_RECORD, an unknown type, or a bad crc;
 * everything from there on is dropped (and truncated away on the last
 * segment), and the drop is logged with file, offset and byte count.
 */
#ifndef MOOR_ENGINE_WAL_FORMAT_H
#define MOOR_ENGINE_WAL_FORMAT_H

#define MOOR_WAL_MAGIC UINT64_C(0x314c41575230304d) /* "M00RWAL1" little-endian */
#define MOOR_WAL_VERSION 1
#define MOOR_WAL_SEGMENT_HEADER 16
#define MOOR_WAL_HEADER 17
#define MOOR_WAL_MAX_RECORD (UINT32_C(1) << 30)

enum moor_wal_rtype {
    MOOR_WAL_BATCH = 1
};

#endif
