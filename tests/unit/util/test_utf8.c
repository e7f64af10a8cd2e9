/*
 * test_utf8.c -- the one UTF-8 validator: RFC 3629's edges (overlongs,
 * surrogates, U+10FFFF, truncation) one by one, the ASCII fast path at
 * every alignment, and agreement with a byte-at-a-time reference on random
 * inputs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/utf8.h"

static void test_edges(void **state)
{
    static const struct {
        const char *s;
        size_t n;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"plain ascii", 11, 1},
        {"\xc3\xa9", 2, 1},         /* é */
        {"\xe2\x82\xac", 3, 1},     /* € */
        {"\xf0\x9f\x98\x80", 4, 1}, /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, 1}, /* U+10FFFF, the last */
        {"\xf4\x90\x80\x80", 4, 0}, /* U+110000 */
        {"\xc0\x80", 2, 0},         /* overlong NUL */
        {"\xc1\xbf", 2, 0},         /* overlong */
        {"\xe0\x80\xaf", 3, 0},     /* overlong '/' */
        {"\xf0\x80\x80\xaf", 4, 0}, /* overlong '/' */
        {"\xed\xa0\x80", 3, 0},     /* U+D800 surrogate */
        {"\xed\xbf\xbf", 3, 0},     /* U+DFFF surrogate */
        {"\xed\x9f\xbf", 3, 1},     /* U+D7FF */
        {"\xc3", 1, 0},             /* truncated */
        {"\xe2\x82", 2, 0},         /* truncated */
        {"\x80", 1, 0},             /* lone continuation */
        {"\xff", 1, 0},
        {"abcdefgh\xc3\xa9ijklmnop", 18, 1},
        {"abcdefghijklmno\xc3", 16, 0}, /* truncated after a fast run */
        {"a\0b", 3, 1},                 /* NUL is a character */
    };
    uint32_t cp = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (moor_utf8_valid(cases[i].s, cases[i].n) != cases[i].ok)
            fail_msg("case %zu: valid=%d, want %d", i, !cases[i].ok, cases[i].ok);
    assert_int_equal(moor_utf8_seq((const unsigned char *)"\xe2\x82\xac",
                                   (const unsigned char *)"\xe2\x82\xac" + 3, &cp),
                     3);
    assert_int_equal(cp, 0x20ac);
}

/* Reference: one sequence at a time, no fast path. */
static int slow_valid(const unsigned char *s, size_t n)
{
    const unsigned char *p = s, *end = s + n;

    while (p < end) {
        size_t k = moor_utf8_seq(p, end, NULL);
        if (!k)
            return 0;
        p += k;
    }
    return 1;
}

static void test_random_agree(void **state)
{
    unsigned char buf[64];
    unsigned seed = 12345;

    (void)state;
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = (size_t)(rand_r(&seed) % sizeof(buf));
        for (size_t i = 0; i < n; i++) {
            int r = rand_r(&seed) % 10;
            /* mostly ASCII, so the fast path and the slow path both run */
            buf[i] = (unsigned char)(r < 7 ? 0x20 + rand_r(&seed) % 0x5f : rand_r(&seed) & 0xff);
        }
        if (moor_utf8_valid(buf, n) != slow_valid(buf, n))
            fail_msg("disagree at iteration %d (n=%zu)", iter, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_random_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
