/*
 * test_err.c -- the error table and the diagnostics slot: every code in
 * MOOR_ERR_MAP has its own value, name and message; unknown codes are
 * "UNKNOWN"; other -errno codes get the C library's text; moor_diag()
 * records code, file, line and message and returns the code; each thread
 * has its own slot.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>

#include "util/err.h"
#include "testutil.h"

typedef struct entry {
    const char *name;
    int code;
    const char *msg;
} entry_t;

/* The table as the test sees it, built from the same X-macro. */
static const entry_t entries[] = {
#define ENTRY_(name, val, msg) {#name, (val), msg},
    MOOR_ERR_MAP(ENTRY_)
#undef ENTRY_
};
#define NENTRIES (sizeof(entries) / sizeof(entries[0]))

static void test_every_code_named(void **state)
{
    (void)state;
    assert_true(NENTRIES >= 19);
    for (size_t i = 0; i < NENTRIES; i++) {
        const char *name = moor_err_name(entries[i].code);
        const char *msg = moor_strerror(entries[i].code);
        assert_non_null(name);
        assert_non_null(msg);
        assert_string_equal(name, entries[i].name);
        assert_string_equal(msg, entries[i].msg);
        assert_true(strlen(msg) > 0);
        assert_string_not_equal(name, "UNKNOWN");
        /* 0 is success; everything else is negative (the -errno rule). */
        if (i == 0)
            assert_int_equal(entries[i].code, MOOR_EOK);
        else
            assert_true(entries[i].code < 0);
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(entries[i].code, entries[j].code);
            assert_string_not_equal(moor_err_name(entries[j].code), name);
            assert_string_not_equal(moor_strerror(entries[j].code), msg);
        }
    }
    /* Codes with an errno twin really are -errno. */
    assert_int_equal(MOOR_ENOENT, -ENOENT);
    assert_int_equal(MOOR_ENOMEM, -ENOMEM);
    assert_int_equal(MOOR_EBUSY, -EBUSY);
    assert_string_equal(moor_err_name(-EIO), "IO");
}

static void test_unknown_codes(void **state)
{
    static const int unknown[] = {1, 42, -1000, -1099, -1999, -100000, INT32_MIN, INT32_MAX};

    (void)state;
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        const char *msg = moor_strerror(unknown[i]);
        assert_string_equal(moor_err_name(unknown[i]), "UNKNOWN");
        assert_non_null(msg);
        assert_true(strlen(msg) > 0);
    }
}

/* A syscall failure we have no name for still reads as the C library
 * says it: the engine returns -errno straight from the syscall. */
static void test_other_errno_text(void **state)
{
    static const int errs[] = {EPIPE, ECONNREFUSED, EISDIR, ENOTDIR, EMFILE, EXDEV};

    (void)state;
    for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
        char want[256];
        /* Copy first: strerror's buffer may be reused by the next call. */
        snprintf(want, sizeof(want), "%s", strerror(errs[i]));
        assert_string_equal(moor_err_name(-errs[i]), "UNKNOWN");
        assert_string_equal(moor_strerror(-errs[i]), want);
    }
}

static void test_diag_set(void **state)
{
    const moor_diag_t *d;
    int line, rc;

    (void)state;
    moor_diag_clear();
    d = moor_diag_last();
    assert_non_null(d);
    assert_int_equal(d->code, 0);
    assert_string_equal(d->msg, "");

    line = __LINE__, rc = moor_diag(MOOR_ECORRUPT, "table %d at offset %llu", 7, 4096ull);
    assert_int_equal(rc, MOOR_ECORRUPT);
    d = moor_diag_last();
    assert_int_equal(d->code, MOOR_ECORRUPT);
    assert_string_equal(d->file, __FILE__);
    assert_int_equal(d->line, line);
    assert_string_equal(d->msg, "table 7 at offset 4096");
    assert_ptr_equal(moor_diag_last(), d); /* one slot per thread, stable */

    /* diag_msg gives the detail only for the matching code. */
    assert_string_equal(moor_diag_msg(MOOR_ECORRUPT), "table 7 at offset 4096");
    assert_string_equal(moor_diag_msg(MOOR_EIO), moor_strerror(MOOR_EIO));
    assert_string_equal(moor_diag_msg(0), moor_strerror(0));

    /* A later diagnostic replaces the earlier one. */
    assert_int_equal(moor_diag(MOOR_ENOSPC, "disk full"), MOOR_ENOSPC);
    assert_int_equal(d->code, MOOR_ENOSPC);
    assert_string_equal(d->msg, "disk full");
    assert_string_equal(moor_diag_msg(MOOR_ECORRUPT), moor_strerror(MOOR_ECORRUPT));

    moor_diag_clear();
    assert_int_equal(d->code, 0);
    assert_null(d->file);
    assert_int_equal(d->line, 0);
    assert_string_equal(d->msg, "");
    assert_string_equal(moor_diag_msg(MOOR_ENOSPC), moor_strerror(MOOR_ENOSPC));
}

/* A diagnostic made from the slot's own message (a layer adding context
 * to the one below) says each part once: formatting the slot into itself
 * used to give "ctx: ctx: ctx: ctx: ...". */
static void test_diag_from_itself(void **state)
{
    const moor_diag_t *d = moor_diag_last();

    (void)state;
    moor_diag(MOOR_EPROTO, "truncated clock");
    moor_diag(MOOR_EBADCTX, "ctx: %s", d->msg);
    assert_string_equal(d->msg, "ctx: truncated clock");

    /* wrap: context in front, the new code, whatever the old one was */
    moor_diag(MOOR_EPROTO, "truncated clock");
    assert_int_equal(moor_diag_wrap(MOOR_EBADCTX, MOOR_EPROTO, "ctx of '%s'", "k"), MOOR_EBADCTX);
    assert_int_equal(d->code, MOOR_EBADCTX);
    assert_string_equal(d->msg, "ctx of 'k': truncated clock");
    assert_int_equal(moor_diag_wrap(MOOR_EBADCTX, MOOR_EBADCTX, "put"), MOOR_EBADCTX);
    assert_string_equal(d->msg, "put: ctx of 'k': truncated clock");

    /* nothing below (or another code): the code's own message stands in */
    moor_diag_clear();
    moor_diag_wrap(MOOR_EIO, MOOR_ENOSPC, "flush");
    assert_int_equal(d->code, MOOR_EIO);
    assert_string_equal(d->msg, "flush: no space left on device");

    /* a long message keeps its context and is cut at the end */
    char big[600];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    moor_diag(MOOR_EIO, "%s", big);
    moor_diag_wrap(MOOR_EIO, MOOR_EIO, "ctx");
    assert_int_equal(strncmp(d->msg, "ctx: zzz", 8), 0);
    assert_int_equal(strlen(d->msg), sizeof(d->msg) - 1);
}

/* A message longer than the slot is cut, still NUL-terminated. */
static void test_diag_truncates(void **state)
{
    char big[2000];
    const moor_diag_t *d = moor_diag_last();

    (void)state;
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(moor_diag(MOOR_EINVAL, "%s", big), MOOR_EINVAL);
    assert_int_equal(strlen(d->msg), sizeof(d->msg) - 1);
    assert_memory_equal(d->msg, big, sizeof(d->msg) - 1);
    moor_diag_clear();
}

/* Two threads set different diagnostics, meet at a barrier, then each
 * checks that it still sees its own and the main thread's slot is
 * untouched. */
typedef struct tharg {
    pthread_barrier_t *bar;
    int code;
    int start_code; /* what the slot held when the thread began */
    int ok;
    char msg[64];
} tharg_t;

static void *diag_thread(void *p)
{
    tharg_t *t = p;
    const moor_diag_t *d = moor_diag_last();

    t->start_code = d->code;
    t->ok = 1;
    /* Keeps going after a mismatch so the other thread never waits at a
     * barrier alone. */
    for (int round = 0; round < 1000; round++) {
        moor_diag(t->code, "thread %d round %d", t->code, round);
        pthread_barrier_wait(t->bar);
        snprintf(t->msg, sizeof(t->msg), "thread %d round %d", t->code, round);
        if (d->code != t->code || strcmp(d->msg, t->msg) != 0 || moor_diag_last() != d)
            t->ok = 0;
        pthread_barrier_wait(t->bar);
    }
    return NULL;
}

static void test_diag_per_thread(void **state)
{
    pthread_barrier_t bar;
    pthread_t th[2];
    tharg_t args[2];

    (void)state;
    moor_diag(MOOR_EBUSY, "main thread");
    assert_int_equal(pthread_barrier_init(&bar, NULL, 2), 0);
    memset(args, 0, sizeof(args));
    args[0].code = MOOR_ECORRUPT;
    args[1].code = MOOR_EIO;
    for (int i = 0; i < 2; i++) {
        args[i].bar = &bar;
        args[i].start_code = -1;
        assert_int_equal(pthread_create(&th[i], NULL, diag_thread, &args[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(args[i].start_code, 0); /* a new thread starts clean */
        if (!args[i].ok)
            print_error("thread %d saw another thread's diagnostic\n", i);
        assert_int_equal(args[i].ok, 1);
    }
    assert_int_equal(moor_diag_last()->code, MOOR_EBUSY);
    assert_string_equal(moor_diag_last()->msg, "main thread");
    moor_diag_clear();
}

/* The wire names: one table both ways.  Every code named goes out by its
 * name and comes back as the first code of that name; every name maps
 * back to a code that gives the same name; unknown names are MOOR_EPEER;
 * codes not listed fall back to IO_ERROR (-errno) or INTERNAL. */
static void test_wire_names(void **state)
{
    static const struct {
        int code;
        const char *name;
    } wire[] = {
#define WIRE_(c, n) {(c), n},
        MOOR_ERR_WIRE_MAP(WIRE_)
#undef WIRE_
    };
    (void)state;
    for (size_t i = 0; i < sizeof(wire) / sizeof(wire[0]); i++) {
        int back = moor_err_from_wire(wire[i].name, strlen(wire[i].name));
        assert_string_equal(moor_err_wire(wire[i].code), wire[i].name);
        assert_string_equal(moor_err_wire(back), wire[i].name);
    }
    assert_int_equal(moor_err_from_wire("QUORUM_FAILED", 13), MOOR_EQUORUM);
    assert_int_equal(moor_err_from_wire("UNAVAILABLE", 11), MOOR_EUNAVAIL);
    assert_int_equal(moor_err_from_wire("TIMEOUT", 7), MOOR_ETIMEDOUT);
    assert_int_equal(moor_err_from_wire("SHUTTING_DOWN", 13), MOOR_ECLOSED);
    assert_int_equal(moor_err_from_wire("BAD_REQUEST", 11), MOOR_EINVAL);
    assert_int_equal(moor_err_from_wire("BAD_CTX", 7), MOOR_EBADCTX);
    assert_int_equal(moor_err_from_wire("QUORUM_FAILEDX", 14), MOOR_EPEER);
    assert_int_equal(moor_err_from_wire("QUORUM", 6), MOOR_EPEER);
    assert_int_equal(moor_err_from_wire("", 0), MOOR_EPEER);
    assert_string_equal(moor_err_wire(-ECONNRESET), "IO_ERROR");
    assert_string_equal(moor_err_wire(MOOR_ENOTFOUND), "INTERNAL");
    assert_string_equal(moor_err_wire(-99999), "INTERNAL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_named), cmocka_unit_test(test_wire_names),
        cmocka_unit_test(test_unknown_codes),    cmocka_unit_test(test_other_errno_text),
        cmocka_unit_test(test_diag_set),         cmocka_unit_test(test_diag_from_itself),
        cmocka_unit_test(test_diag_truncates),   cmocka_unit_test(test_diag_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
