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
 * Torn tail: a record that is short, has a length over MOOR_WAL_MAX_RECORD,
 * an unknown type or a bad crc, with no good record after it, is what a
 * crash in the middle of a write leaves.  It and everything after it are
 * dropped (truncated away on the last segment) and the drop is logged with
 * file, offset and byte count.
 *
 * Damage: a bad record with good records after it was written whole and
 * then damaged (a flipped bit, a lost sector).  Recovery resynchronises at
 * the first offset after the bad record where a record can be trusted, and
 * keeps every good record from there on.  A record found this way must be
 * whole with a good crc, of type 1, hold a batch of at least one write
 * that decodes (batch.h), and have a seqno past the last one the previous
 * good record used, leaving no more writes lost than the skipped bytes
 * could hold (MOOR_BATCH_MIN_ENTRY bytes per write at the least).  When
 * the bad record's length field points at a later trusted record, one
 * found before that lies inside the bad record's payload and is taken only
 * if good records with consecutive seqnos chain from it to the one the
 * length points at.  So bytes inside a value are taken for records only if
 * they hold whole record images whose seqnos fit exactly (a residual risk,
 * stated here rather than hidden).  The stretch skipped is reported with file, offset, bytes and
 * the seqnos lost (known when a good record comes before it in the
 * segment).  A segment header that fails its crc
 * with trusted records after it is damage in the same way; one with a good
 * crc and the wrong magic is not a segment of ours (everything dropped).
 *
 * Segments: one is fdatasync'ed whole before the next one is created, so
 * a bad tail in a segment that later ones follow is damage, not a torn
 * write; seqnos run on across segments without a gap.
 */
#ifndef MOOR_ENGINE_WAL_FORMAT_H
#define MOOR_ENGINE_WAL_FORMAT_H

#define MOOR_WAL_MAGIC UINT64_C(0x314c41575230304d) /* "M00RWAL1" little-endian */
#define MOOR_WAL_VERSION 1
#define MOOR_WAL_SEGMENT_HEADER 16
#define MOOR_WAL_HEADER 17
#define MOOR_WAL_MAX_RECORD (UINT32_C(1) << 30)

enum moor_wal_rtype { MOOR_WAL_BATCH = 1 };

#endif
