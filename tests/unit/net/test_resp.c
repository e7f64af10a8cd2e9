/*
 * test_resp.c -- RESP2 command cutting and reply encoding: a multibulk
 * command at every cut point (0 = need more, fresh and resumed), commands
 * back to back with their arguments split, inline commands (spaces, tabs,
 * \r\n or \n, empty lines), each limit (argument count, bulk length,
 * max_frame, inline line) refused as soon as a header announces it, each
 * malformed header refused (EPROTO), and the encoders byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "net/resp.h"
#include "util/err.h"
#include "testutil.h"

static const moor_resp_limits_t LIM = {1 << 20, 1 << 16, 1024, 1000};

static long scan_once(const char *s, size_t n, uint32_t *argc)
{
    moor_resp_scan_t sc;

    moor_resp_scan_init(&sc);
    return moor_resp_scan(&sc, s, n, &LIM, argc);
}

#define CMD "*3\r\n$3\r\nSET\r\n$5\r\nkey\r\n\r\n$0\r\n\r\n"

static void test_every_cut(void **state)
{
    const char *cmd = CMD;
    size_t len = strlen(cmd);
    moor_resp_scan_t inc;
    uint32_t argc = 99;
    long got = 0;

    (void)state;
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(scan_once(cmd, cut, &argc), 0);
    assert_int_equal(scan_once(cmd, len, &argc), (long)len);
    assert_int_equal(argc, 3);
    /* Resumed one byte at a time: the same end, found once. */
    moor_resp_scan_init(&inc);
    for (size_t n = 0; n <= len && got == 0; n++)
        got = moor_resp_scan(&inc, cmd, n, &LIM, &argc);
    assert_int_equal(got, (long)len);
}

static void test_split(void **state)
{
    const char *two = CMD "*2\r\n$4\r\nECHO\r\n$2\r\n\r\n\r\n";
    moor_resp_arg_t a[4];
    uint32_t argc;
    long n1, n2;

    (void)state;
    n1 = scan_once(two, strlen(two), &argc);
    assert_int_equal(n1, (long)strlen(CMD));
    assert_int_equal(moor_resp_split(two, (size_t)n1, argc, a, 4), 0);
    assert_int_equal(a[0].len, 3);
    assert_memory_equal(a[0].p, "SET", 3);
    assert_int_equal(a[1].len, 5);
    assert_memory_equal(a[1].p, "key\r\n", 5); /* binary-safe */
    assert_int_equal(a[2].len, 0);
    n2 = scan_once(two + n1, strlen(two) - (size_t)n1, &argc);
    assert_int_equal(n1 + n2, (long)strlen(two));
    assert_int_equal(argc, 2);
    assert_int_equal(moor_resp_split(two + n1, (size_t)n2, argc, a, 1), 0);
    assert_int_equal(a[0].len, 4); /* only max arguments split */
}

static void test_inline(void **state)
{
    const char *s = "  SET\tk  v \r\nPING\n\r\n\nGET";
    moor_resp_arg_t a[4];
    uint32_t argc;
    long n;

    (void)state;
    n = scan_once(s, strlen(s), &argc);
    assert_int_equal(n, 13);
    assert_int_equal(argc, 3);
    assert_int_equal(moor_resp_split(s, (size_t)n, argc, a, 4), 0);
    assert_int_equal(a[0].len, 3);
    assert_memory_equal(a[0].p, "SET", 3);
    assert_memory_equal(a[1].p, "k", 1);
    assert_int_equal(a[2].len, 1);
    s += n;
    n = scan_once(s, strlen(s), &argc);
    assert_int_equal(n, 5);
    assert_int_equal(argc, 1);
    s += n;
    assert_int_equal(scan_once(s, strlen(s), &argc), 2); /* "\r\n": nothing */
    assert_int_equal(argc, 0);
    s += 2;
    assert_int_equal(scan_once(s, strlen(s), &argc), 1);
    assert_int_equal(argc, 0);
    s += 1;
    assert_int_equal(scan_once(s, strlen(s), &argc), 0); /* "GET": no newline yet */
}

static void test_empty_multibulk(void **state)
{
    uint32_t argc = 7;

    (void)state;
    assert_int_equal(scan_once("*0\r\n", 4, &argc), 4);
    assert_int_equal(argc, 0);
    assert_int_equal(scan_once("*-1\r\n", 5, &argc), 5);
    assert_int_equal(argc, 0);
}

static void expect(const char *s, int code)
{
    uint32_t argc;
    long rc = scan_once(s, strlen(s), &argc);

    if (rc != code)
        fail_msg("'%s': got %ld, want %d", s, rc, code);
}

static void test_limits(void **state)
{
    char line[2048];

    (void)state;
    expect("*1001\r\n", MOOR_ETOOLARGE);                       /* over max_args */
    expect("*1\r\n$65537\r\n", MOOR_ETOOLARGE);               /* over max_bulk */
    expect("*1\r\n$99999999999999\r\n", MOOR_ETOOLARGE);     /* huge */
    expect("*1\r\n$999999999999999999999\r\n", MOOR_EPROTO); /* no int64 */
    {
        /* Many bulks each within max_bulk, together past max_frame. */
        moor_resp_limits_t small = {100, 1 << 16, 1024, 1000};
        moor_resp_scan_t sc;
        uint32_t argc;
        moor_resp_scan_init(&sc);
        assert_int_equal(moor_resp_scan(&sc, "*2\r\n$90\r\n", 9, &small, &argc), MOOR_ETOOLARGE);
        moor_resp_scan_init(&sc);
        assert_int_equal(moor_resp_scan(&sc, "*20\r\n", 5, &small, &argc), MOOR_ETOOLARGE);
    }
    memset(line, 'a', sizeof(line));
    line[sizeof(line) - 1] = 0;
    expect(line, MOOR_ETOOLARGE); /* an inline line over max_inline */
    line[1000] = '\n';
    expect(line, 1001); /* under it: fine */
}

static void test_malformed(void **state)
{
    (void)state;
    expect("*x\r\n", MOOR_EPROTO);
    expect("*1\n", MOOR_EPROTO);
    expect("*1\r\n:1\r\n", MOOR_EPROTO);
    expect("*1\r\n$-2\r\n", MOOR_EPROTO);
    expect("*1\r\n$a\r\n", MOOR_EPROTO);
    expect("*1\r\n$\r\n", MOOR_EPROTO);
    expect("*1\r\n$3\r\nabcd\r\n", MOOR_EPROTO);
    expect("*1\r\n$3\r\nabc\n\n", MOOR_EPROTO);
    expect("*1\r\n$1111111111111111111111111111111111", MOOR_EPROTO); /* no CRLF in 32 */
    expect("*1\r\n$3\r", 0);                                           /* may still end */
    expect("*", 0);
}

static void test_encode(void **state)
{
    moor_buf_t b = MOOR_BUF_INIT;
    const char *want = "+OK\r\n-ERR a b\r\n:-42\r\n$3\r\na\0b\r\n$-1\r\n*2\r\n*-1\r\n-ERR x 7\r\n";

    (void)state;
    assert_int_equal(moor_resp_status(&b, "OK"), 0);
    assert_int_equal(moor_resp_error(&b, "ERR a\nb"), 0);
    assert_int_equal(moor_resp_int(&b, -42), 0);
    assert_int_equal(moor_resp_bulk(&b, "a\0b", 3), 0);
    assert_int_equal(moor_resp_null(&b), 0);
    assert_int_equal(moor_resp_array(&b, 2), 0);
    assert_int_equal(moor_resp_array(&b, -1), 0);
    assert_int_equal(moor_resp_errorf(&b, "ERR %s %d", "x", 7), 0);
    assert_int_equal(b.len, 5 + 10 + 6 + 9 + 5 + 4 + 5 + 10);
    assert_memory_equal(b.data, want, b.len);
    moor_buf_free(&b);
}

/* Random bytes never crash the scanner, and whatever it cuts splits. */
static void test_random(void **state)
{
    unsigned seed = (unsigned)testutil_seed("test_resp");
    char buf[256];
    moor_resp_arg_t args[64];

    (void)state;
    srand(seed);
    for (int round = 0; round < 20000; round++) {
        size_t n = (size_t)(rand() % (int)sizeof(buf));
        const char alpha[] = "*$\r\n0123-9 aX";
        uint32_t argc;
        long a;
        for (size_t i = 0; i < n; i++)
            buf[i] = rand() % 3 ? alpha[rand() % (int)(sizeof(alpha) - 1)] : (char)rand();
        a = scan_once(buf, n, &argc);
        assert_true(a <= (long)n);
        if (a > 0 && argc <= 64) {
            assert_int_equal(moor_resp_split(buf, (size_t)a, argc, args, argc), 0);
            for (uint32_t i = 0; i < argc; i++)
                assert_true(args[i].p >= buf && args[i].p + args[i].len <= buf + a);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_cut),   cmocka_unit_test(test_split),
        cmocka_unit_test(test_inline),      cmocka_unit_test(test_empty_multibulk),
        cmocka_unit_test(test_limits),      cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_encode),      cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
