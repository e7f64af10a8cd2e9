/*
 * test_args.c -- the KEY, VALUE and CTX words of the moor CLI
 * (core/cli/args.c): text and binary keys (--key-hex in either case, the
 * {"$bin"} form giving the same bytes, every malformed form refused with
 * out untouched), hex decoding, VALUE as JSON, --raw str and --bin bin
 * from the argument, a file and a pipe on stdin, @@ for a literal '@',
 * a missing file, bad JSON, a stream over the size bound, --ctx in the
 * {"$bin"} form and as bare base64, and shell quoting.
 *
 * The CLI sources are compiled into this test (core/cli is an executable,
 * not a library).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "cli/args.c" /* TEST: core/cli is an executable, not a library */
#include "cli/json.c" /* TEST: likewise */
#include "testutil.h"
#include "util/err.h"
#include "util/mp.h"

/* out holds exactly one MessagePack str (want_bin 0) or bin of want. */
static void expect_obj(const moor_buf_t *out, int want_bin, const char *want, size_t n)
{
    const char *p = out->data, *s;
    uint32_t sl;
    int rc = want_bin ? moor_mp_read_bin(&p, out->data + out->len, &s, &sl)
                      : moor_mp_read_str(&p, out->data + out->len, &s, &sl);

    if (rc)
        fail_msg("not a %s (first byte 0x%02x)", want_bin ? "bin" : "str",
                 out->len ? (unsigned char)out->data[0] : 0);
    assert_ptr_equal(p, out->data + out->len);
    if (sl != n || memcmp(s, want, n) != 0)
        fail_msg("got %u bytes '%.*s', want %zu bytes '%.*s'", sl, (int)sl, s, n, (int)n, want);
}

static void test_keys(void **state)
{
    moor_buf_t out = MOOR_BUF_INIT, other = MOOR_BUF_INIT;

    (void)state;
    assert_int_equal(moor_cli_key_parse("user:1", NULL, &out), 0);
    expect_obj(&out, 0, "user:1", 6);
    /* A text key that merely starts with '{' stays text. */
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_key_parse("{\"a\":1}", NULL, &out), 0);
    expect_obj(&out, 0, "{\"a\":1}", 7);
    /* --key-hex in either case and the {"$bin"} form: the same bin key. */
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_key_parse("ignored", "00fF01", &out), 0);
    expect_obj(&out, 1, "\x00\xff\x01", 3);
    assert_int_equal(moor_cli_key_parse("{\"$bin\": \"AP8B\"}", NULL, &other), 0);
    assert_int_equal(other.len, out.len);
    assert_memory_equal(other.data, out.data, out.len);

    /* Refused, out untouched. */
    static const char *const bad_hex[] = {"", "0", "0g", "zz", "0x00", "00 1"};
    for (size_t i = 0; i < sizeof(bad_hex) / sizeof(bad_hex[0]); i++) {
        moor_buf_reset(&out);
        moor_buf_append(&out, "X", 1);
        if (moor_cli_key_parse(NULL, bad_hex[i], &out) != MOOR_EINVAL)
            fail_msg("--key-hex '%s' was taken", bad_hex[i]);
        assert_int_equal(out.len, 1);
        assert_non_null(strstr(moor_diag_msg(MOOR_EINVAL), "--key-hex"));
    }
    static const char *const bad_bin[] = {"{\"$bin\": \"!!\"}", "{\"$bin\": 1}", "{\"$bin\"",
                                          "{\"$bin\": \"AA==\", \"x\": 1}"};
    for (size_t i = 0; i < sizeof(bad_bin) / sizeof(bad_bin[0]); i++) {
        moor_buf_reset(&out);
        if (moor_cli_key_parse(bad_bin[i], NULL, &out) != MOOR_EINVAL)
            fail_msg("KEY %s was taken", bad_bin[i]);
        assert_int_equal(out.len, 0);
        assert_non_null(strstr(moor_diag_msg(MOOR_EINVAL), "KEY"));
    }
    moor_buf_free(&out), moor_buf_free(&other);
}

static void test_hex(void **state)
{
    moor_buf_t out = MOOR_BUF_INIT;

    (void)state;
    assert_int_equal(moor_cli_hex_decode("0123456789abcdefABCDEF", 22, &out), 0);
    assert_int_equal(out.len, 11);
    assert_memory_equal(out.data, "\x01\x23\x45\x67\x89\xab\xcd\xef\xab\xcd\xef", 11);
    assert_int_equal(moor_cli_hex_decode("abc", 3, &out), MOOR_EINVAL);
    assert_int_equal(moor_cli_hex_decode("a-", 2, &out), MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_msg(MOOR_EINVAL), "byte 1"));
    assert_int_equal(out.len, 11);
    moor_buf_free(&out);
}

/* A file under dir holding n bytes of data; returns "@path" (malloc'ed). */
static char *write_file(const char *dir, const char *name, const void *data, size_t n)
{
    char path[512], *arg = malloc(520);
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    snprintf(arg, 520, "@%s", path);
    return arg;
}

static void test_values(void **state)
{
    moor_buf_t out = MOOR_BUF_INIT, want = MOOR_BUF_INIT;
    char *dir = testutil_tmpdir("cli_args"), *arg;
    size_t big = 200 * 1024;
    char *bytes = malloc(big);

    (void)state;
    for (size_t i = 0; i < big; i++)
        bytes[i] = (char)(i * 7 + 3); /* NULs and invalid UTF-8 included */
    /* JSON by default, str with --raw, bin with --bin. */
    assert_int_equal(moor_cli_value_read("[1, \"a\"]", MOOR_CLI_VALUE_JSON, &out), 0);
    assert_int_equal(moor_json_to_mp("[1,\"a\"]", 7, &want, NULL), 0);
    assert_int_equal(out.len, want.len);
    assert_memory_equal(out.data, want.data, want.len);
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_value_read("[1, \"a\"]", MOOR_CLI_VALUE_RAW, &out), 0);
    expect_obj(&out, 0, "[1, \"a\"]", 8);
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_value_read("xy", MOOR_CLI_VALUE_BIN, &out), 0);
    expect_obj(&out, 1, "xy", 2);
    /* @@ stands for a literal '@'. */
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_value_read("@@home", MOOR_CLI_VALUE_RAW, &out), 0);
    expect_obj(&out, 0, "@home", 5);
    /* A file: its bytes exactly, as bin; as JSON it is parsed. */
    arg = write_file(dir, "big.bin", bytes, big);
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_value_read(arg, MOOR_CLI_VALUE_BIN, &out), 0);
    expect_obj(&out, 1, bytes, big);
    free(arg);
    arg = write_file(dir, "v.json", " {\"k\": true}\n", 13);
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_value_read(arg, MOOR_CLI_VALUE_JSON, &out), 0);
    assert_int_equal(out.len, 4); /* fixmap 1, fixstr "k", true */
    assert_memory_equal(out.data, "\x81\xa1k\xc3", 4);
    free(arg);
    /* Bad JSON in a file, a missing file: refused, out untouched. */
    arg = write_file(dir, "bad.json", "{\"k\": }", 7);
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_value_read(arg, MOOR_CLI_VALUE_JSON, &out), MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_msg(MOOR_EINVAL), "VALUE"));
    assert_int_equal(out.len, 0);
    free(arg);
    assert_int_equal(moor_cli_value_read("@/nonexistent/x", MOOR_CLI_VALUE_RAW, &out), -ENOENT);
    assert_non_null(strstr(moor_diag_msg(-ENOENT), "/nonexistent/x"));
    assert_int_equal(out.len, 0);
    testutil_rmrf(dir);
    free(dir), free(bytes);
    moor_buf_free(&out), moor_buf_free(&want);
}

/* A pipe read to its end; more than the bound is refused. */
static void test_read_fd(void **state)
{
    moor_buf_t out = MOOR_BUF_INIT;
    int fds[2];

    (void)state;
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "hello world", 11), 11);
    close(fds[1]);
    assert_int_equal(moor_cli_read_fd(fds[0], "stdin", 11, &out), 0);
    assert_int_equal(out.len, 11);
    close(fds[0]);
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], "hello world", 11), 11);
    close(fds[1]);
    assert_int_equal(moor_cli_read_fd(fds[0], "stdin", 10, &out), MOOR_EVALTOOBIG);
    assert_non_null(strstr(moor_diag_msg(MOOR_EVALTOOBIG), "more than 10 bytes"));
    assert_int_equal(out.len, 11); /* what it had */
    close(fds[0]);
    moor_buf_free(&out);
}

static void test_ctx(void **state)
{
    moor_buf_t out = MOOR_BUF_INIT;

    (void)state;
    assert_int_equal(moor_cli_ctx_parse("{\"$bin\":\"kZPE\"}", &out), 0);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "\x91\x93\xc4", 3);
    moor_buf_reset(&out);
    assert_int_equal(moor_cli_ctx_parse("kZPE", &out), 0); /* bare base64, as before */
    assert_memory_equal(out.data, "\x91\x93\xc4", 3);
    static const char *const bad[] = {
        "", "{\"$bin\":\"\"}", "k!PE", "{\"$bin\":\"kZPE\"", "{\"x\":\"kZPE\"}", "\"kZPE\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        moor_buf_reset(&out);
        if (moor_cli_ctx_parse(bad[i], &out) != MOOR_EINVAL)
            fail_msg("--ctx %s was taken", bad[i]);
        assert_non_null(strstr(moor_diag_msg(MOOR_EINVAL), "--ctx"));
    }
    moor_buf_free(&out);
}

static void test_shell_quote(void **state)
{
    static const char *const cases[][2] = {{"user:1", "user:1"},
                                           {"a b", "'a b'"},
                                           {"", "''"},
                                           {"it's", "'it'\\''s'"},
                                           {"$HOME", "'$HOME'"},
                                           {"{\"$bin\":\"AA\"}", "'{\"$bin\":\"AA\"}'"},
                                           {"--key-hex", "--key-hex"}};
    moor_buf_t out = MOOR_BUF_INIT;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        moor_buf_reset(&out);
        assert_int_equal(moor_cli_shell_quote(cases[i][0], &out), 0);
        if (strcmp(out.data, cases[i][1]) != 0)
            fail_msg("%s quoted as %s, want %s", cases[i][0], out.data, cases[i][1]);
        assert_int_equal(out.len, strlen(cases[i][1]));
    }
    moor_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),   cmocka_unit_test(test_hex),
        cmocka_unit_test(test_values), cmocka_unit_test(test_read_fd),
        cmocka_unit_test(test_ctx),    cmocka_unit_test(test_shell_quote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
