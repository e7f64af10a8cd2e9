/*
 * test_scan.c -- how `moor scan` prints a page (core/cli/scan.c): a key
 * per line, str keys as they are and bin keys as {"$bin":...}; with
 * values a tab and the value as `moor get` prints it (siblings with their
 * clock); JSON lines; the key limit; answers that are not a scan page
 * refused.
 *
 * The CLI sources are compiled into this test (core/cli is an executable,
 * not a library).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "cli/json.c" /* TEST: core/cli is an executable, not a library */
#include "cli/show.c" /* TEST: likewise */
#include "cli/scan.c" /* TEST: likewise */
#include "util/mp.h"
#include "util/err.h"
#include "testutil.h"

/* {keys = ["a", bin ff 00], values = [{values = [1], ctx = bin "c"},
 * {values = ["x"], ctx = ...}], cursor = nil} */
static void page(moor_buf_t *out, int values)
{
    msgpack_packer pk;

    moor_mp_packer_init(&pk, out);
    msgpack_pack_map(&pk, values ? 3 : 2);
    msgpack_pack_str_with_body(&pk, "keys", 4);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_bin_with_body(&pk, "\xff\x00", 2);
    if (values) {
        msgpack_pack_str_with_body(&pk, "values", 6);
        msgpack_pack_array(&pk, 2);
        for (int i = 0; i < 2; i++) {
            msgpack_pack_map(&pk, 2);
            msgpack_pack_str_with_body(&pk, "values", 6);
            msgpack_pack_array(&pk, 1);
            if (i == 0)
                msgpack_pack_int(&pk, 1);
            else
                msgpack_pack_str_with_body(&pk, "x", 1);
            msgpack_pack_str_with_body(&pk, "ctx", 3);
            msgpack_pack_bin_with_body(&pk, "c", 1);
        }
    }
    msgpack_pack_str_with_body(&pk, "cursor", 6);
    msgpack_pack_nil(&pk);
}

static void expect(const char *res, size_t rlen, int flags, size_t max, const char *want,
                   size_t nwant)
{
    moor_buf_t out = MOOR_BUF_INIT;
    size_t n;

    assert_int_equal(moor_scan_print_page(res, rlen, flags, max, &out, &n), 0);
    assert_int_equal(n, nwant);
    if (out.len != strlen(want) || memcmp(out.data, want, out.len))
        fail_msg("printed \"%.*s\", want \"%s\"", (int)out.len, out.data, want);
    moor_buf_free(&out);
}

static void test_print_page(void **state)
{
    moor_buf_t keys = MOOR_BUF_INIT, vals = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    size_t n;

    (void)state;
    page(&keys, 0);
    page(&vals, 1);
    expect(keys.data, keys.len, 0, 0, "a\n{\"$bin\":\"/wA=\"}\n", 2);
    expect(keys.data, keys.len, 0, 1, "a\n", 1);
    expect(vals.data, vals.len, MOOR_SCAN_CLI_VALUES, 0,
           "a\t{\"values\":[1],\"ctx\":{\"$bin\":\"Yw==\"}}\n{\"$bin\":\"/wA=\"}\t{\"values\":[\"x\"],"
           "\"ctx\":{\"$bin\":\"Yw==\"}}\n",
           2);
    expect(keys.data, keys.len, MOOR_SCAN_CLI_JSON, 0,
           "{\"key\": \"a\"}\n{\"key\": {\"$bin\":\"/wA=\"}}\n", 2);
    expect(vals.data, vals.len, MOOR_SCAN_CLI_JSON | MOOR_SCAN_CLI_VALUES, 1,
           "{\"key\": \"a\", \"value\": {\"values\":[1],\"ctx\":{\"$bin\":\"Yw==\"}}}\n", 1);
    /* not a page: a bare array, a map without keys, every truncation */
    assert_int_equal(moor_scan_print_page("\x90", 1, 0, 0, &out, &n), MOOR_EPROTO);
    assert_int_equal(moor_scan_print_page("\x81\xa6"
                                          "cursor\xc0",
                                          9, 0, 0, &out, &n),
                     MOOR_EPROTO);
    for (size_t cut = 0; cut < vals.len; cut++) {
        out.len = 0;
        assert_int_not_equal(
            moor_scan_print_page(vals.data, cut, MOOR_SCAN_CLI_VALUES, 0, &out, &n), 0);
    }
    moor_buf_free(&keys);
    moor_buf_free(&vals);
    moor_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_print_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
