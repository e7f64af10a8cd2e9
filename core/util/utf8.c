/*
 * utf8.c -- UTF-8 validation (RFC 3629).  The ASCII run is skipped eight
 * bytes at a time, since keys and values are mostly ASCII.
 */
#include "utf8.h"

#include <string.h>

size_t moor_utf8_seq(const unsigned char *s, const unsigned char *end, uint32_t *cp_out)
{
    unsigned char b = s[0];
    size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    uint32_t cp;

    if (len == 0 || (size_t)(end - s) < len)
        return 0;
    cp = len == 1 ? b : (uint32_t)(b & (0x7f >> len));
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (cp_out)
        *cp_out = cp;
    return len;
}

int moor_utf8_valid(const void *s, size_t n)
{
    const unsigned char *p = s, *end = p + n;

    while (p < end) {
        uint64_t w;
        size_t k;

        if ((size_t)(end - p) >= 8) {
            memcpy(&w, p, 8);
            if (!(w & 0x8080808080808080ull)) {
                p += 8;
                continue;
            }
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        if (!(k = moor_utf8_seq(p, end, NULL)))
            return 0;
        p += k;
    }
    return 1;
}
