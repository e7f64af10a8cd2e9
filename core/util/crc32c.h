/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of every Moor record,
 * block and footer.  Uses the SSE4.2 crc32 instruction when the CPU has it
 * (checked once at run time), a slicing-by-8 table otherwise.  Both paths
 * give identical results; the unit tests check both against known vectors.
 */
#ifndef MOOR_UTIL_CRC32C_H
#define MOOR_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* ===== API ===== */

/* CRC of data appended to a region whose CRC was crc (start with 0). */
uint32_t moor_crc32c_extend(uint32_t crc, const void *data, size_t n);

static inline uint32_t moor_crc32c(const void *data, size_t n)
{
    return moor_crc32c_extend(0, data, n);
}

/* The portable path, exposed so tests can compare it to the fast one. */
uint32_t moor_crc32c_extend_sw(uint32_t crc, const void *data, size_t n);

/* 1 if the hardware path is in use. */
int moor_crc32c_hw(void);

/* Masked CRCs are what we store: a CRC of bytes that contain CRCs is
 * otherwise weak (LevelDB's reasoning).  unmask(mask(x)) == x. */
static inline uint32_t moor_crc32c_mask(uint32_t crc)
{
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static inline uint32_t moor_crc32c_unmask(uint32_t masked)
{
    uint32_t rot = masked - 0xa282ead8u;
    return (rot >> 17) | (rot << 15);
}

#endif
