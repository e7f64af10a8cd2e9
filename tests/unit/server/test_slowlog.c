/*
 * test_slowlog.c -- the slow-request ring (core/server/slowlog.h):
 * bounded at max_len (the oldest dropped), newest first, ids increasing
 * and never reused across a reset, the threshold (0 logs everything, < 0
 * nothing), keys cut to MOOR_SLOWLOG_KEY_MAX bytes with their length said
 * and unprintable bytes escaped, and the `slowlog get` answer's shape.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "server/slowlog.h"

static void add(moor_slowlog_t *l, int i)
{
    moor_slowlog_entry_t e;
    char key[32];

    memset(&e, 0, sizeof(e));
    e.time_ms = 1000 + (uint64_t)i;
    e.duration_us = 10 * (uint64_t)i;
    snprintf(e.method, sizeof(e.method), "put");
    snprintf(e.space, sizeof(e.space), "default");
    snprintf(key, sizeof(key), "k%d", i);
    moor_slowlog_set_key(&e, key, strlen(key));
    moor_slowlog_add(l, &e);
}

static void test_bounded_newest_first(void **state)
{
    moor_slowlog_t *l = moor_slowlog_new(4, 0);
    uint64_t last = 0;

    (void)state;
    assert_non_null(l);
    assert_int_equal(moor_slowlog_len(l), 0);
    assert_null(moor_slowlog_get(l, 0));
    for (int i = 1; i <= 10; i++) {
        add(l, i);
        assert_int_equal(moor_slowlog_len(l), i < 4 ? i : 4);
        assert_true(moor_slowlog_get(l, 0)->id > last); /* ids increase */
        last = moor_slowlog_get(l, 0)->id;
    }
    assert_int_equal(moor_slowlog_total(l), 10);
    for (uint32_t i = 0; i < 4; i++) { /* newest first: 10, 9, 8, 7 */
        const moor_slowlog_entry_t *e = moor_slowlog_get(l, i);
        assert_non_null(e);
        assert_int_equal(e->duration_us, 10 * (10 - i));
        assert_int_equal(e->id, 10 - i);
    }
    assert_null(moor_slowlog_get(l, 4));
    moor_slowlog_reset(l);
    assert_int_equal(moor_slowlog_len(l), 0);
    assert_null(moor_slowlog_get(l, 0));
    add(l, 11);
    assert_int_equal(moor_slowlog_get(l, 0)->id, 11); /* not reused */
    assert_int_equal(moor_slowlog_total(l), 11);
    assert_int_equal(moor_slowlog_len(l), 1);
    moor_slowlog_free(l);
}

static void test_threshold(void **state)
{
    moor_slowlog_t *all = moor_slowlog_new(2, 0), *some = moor_slowlog_new(2, 500),
                   *none = moor_slowlog_new(2, -1);

    (void)state;
    assert_true(moor_slowlog_over(all, 0));
    assert_false(moor_slowlog_over(some, 499));
    assert_true(moor_slowlog_over(some, 500));
    assert_false(moor_slowlog_over(none, UINT64_MAX));
    assert_false(moor_slowlog_over(NULL, 1));
    assert_int_equal(moor_slowlog_threshold_us(some), 500);
    assert_int_equal(moor_slowlog_max_len(some), 2);
    moor_slowlog_free(all);
    moor_slowlog_free(some);
    moor_slowlog_free(none);
}

static void test_key_truncation(void **state)
{
    moor_slowlog_entry_t e;
    char big[200], text[400];

    (void)state;
    memset(&e, 0, sizeof(e));
    memset(big, 'a', sizeof(big));
    moor_slowlog_set_key(&e, big, sizeof(big));
    assert_int_equal(e.klen, MOOR_SLOWLOG_KEY_MAX);
    assert_int_equal(e.key_total, 200);
    moor_slowlog_key_text(&e, text, sizeof(text));
    assert_int_equal(strspn(text, "a"), MOOR_SLOWLOG_KEY_MAX);
    assert_string_equal(text + MOOR_SLOWLOG_KEY_MAX, "... (136 more bytes)");

    moor_slowlog_set_key(&e, "a\x01\\b\xff", 5);
    moor_slowlog_key_text(&e, text, sizeof(text));
    assert_string_equal(text, "a\\x01\\\\b\\xff");
    moor_slowlog_key_text(&e, text, 4); /* cut to size, still terminated */
    assert_true(strlen(text) < 4);
    moor_slowlog_set_key(&e, "", 0);
    moor_slowlog_key_text(&e, text, sizeof(text));
    assert_string_equal(text, "");
}

static void test_pack(void **state)
{
    moor_slowlog_t *l = moor_slowlog_new(8, 0);
    moor_buf_t out = MOOR_BUF_INIT;
    msgpack_unpacked u;
    size_t off = 0;

    (void)state;
    for (int i = 1; i <= 5; i++)
        add(l, i);
    assert_int_equal(moor_slowlog_pack(l, 3, &out), 0);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, out.data, out.len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, out.len);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(u.data.via.array.size, 3);
    for (uint32_t i = 0; i < 3; i++) {
        msgpack_object_map *m = &u.data.via.array.ptr[i].via.map;
        int seen = 0;
        assert_int_equal(m->size, 10);
        for (uint32_t k = 0; k < m->size; k++) {
            msgpack_object *key = &m->ptr[k].key, *v = &m->ptr[k].val;
            if (key->via.str.size == 2 && !memcmp(key->via.str.ptr, "id", 2)) {
                assert_int_equal(v->via.u64, 5 - i);
                seen++;
            } else if (key->via.str.size == 3 && !memcmp(key->via.str.ptr, "key", 3)) {
                char want[8];
                snprintf(want, sizeof(want), "k%u", 5 - i);
                assert_int_equal(v->via.str.size, strlen(want));
                assert_memory_equal(v->via.str.ptr, want, strlen(want));
                seen++;
            }
        }
        assert_int_equal(seen, 2);
    }
    msgpack_unpacked_destroy(&u);
    moor_buf_reset(&out);
    assert_int_equal(moor_slowlog_pack(l, 100, &out), 0); /* more than kept: all 5 */
    assert_int_equal((unsigned char)out.data[0], 0x95);
    moor_buf_free(&out);
    moor_slowlog_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_newest_first),
        cmocka_unit_test(test_threshold),
        cmocka_unit_test(test_key_truncation),
        cmocka_unit_test(test_pack),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
