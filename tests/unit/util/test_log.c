/*
 * test_log.c -- the logger, written to a pipe: level filtering, one line
 * per call with timestamp, node id, level tag, file:line and message;
 * long messages cut to one line; set_fd / set_level / set_node /
 * level_parse; MOOR_LOG_LEVEL read from the environment (checked in a
 * fresh child process, since it is read once); lines from two threads
 * never interleave.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>

#include "util/log.h"
#include "testutil.h"

static int pipefd[2];

static int pipe_setup(void **state)
{
    (void)state;
    if (pipe(pipefd) != 0)
        return -1;
    if (fcntl(pipefd[0], F_SETFL, O_NONBLOCK) != 0)
        return -1;
    moor_log_set_fd(pipefd[1]);
    moor_log_set_node(NULL);
    return 0;
}

static int pipe_teardown(void **state)
{
    (void)state;
    moor_log_set_fd(2);
    moor_log_set_level(MOOR_LOG_ERROR);
    moor_log_set_node(NULL);
    close(pipefd[0]);
    close(pipefd[1]);
    return 0;
}

/* Everything written so far (the pipe is never near full in these tests). */
static size_t drain(char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;

    while (len + 1 < cap && (n = read(pipefd[0], buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    return len;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Checks one line: "YYYY-MM-DDTHH:MM:SS.mmmZ <TAG> [<node>] test_log.c:<line>: <msg>\n". */
static void check_line(const char *s, const char *node, const char *tag, int line, const char *msg)
{
    int y, mo, d, h, mi, sec, ms, used = 0;
    char want[512];

    assert_int_equal(
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %n", &y, &mo, &d, &h, &mi, &sec, &ms, &used), 7);
    assert_true(used > 0);
    assert_in_range(y, 2020, 9999);
    assert_in_range(mo, 1, 12);
    assert_in_range(d, 1, 31);
    assert_in_range(ms, 0, 999);
    snprintf(want, sizeof(want), "%s [%s] test_log.c:%d: %s\n", tag, node, line, msg);
    assert_string_equal(s + used, want);
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(moor_log_level_parse("debug"), MOOR_LOG_DEBUG);
    assert_int_equal(moor_log_level_parse("info"), MOOR_LOG_INFO);
    assert_int_equal(moor_log_level_parse("warn"), MOOR_LOG_WARN);
    assert_int_equal(moor_log_level_parse("error"), MOOR_LOG_ERROR);
    assert_int_equal(moor_log_level_parse("off"), MOOR_LOG_OFF);
    assert_int_equal(moor_log_level_parse("WARN"), MOOR_LOG_WARN);
    assert_int_equal(moor_log_level_parse("Debug"), MOOR_LOG_DEBUG);
    assert_int_equal(moor_log_level_parse("warning"), -1);
    assert_int_equal(moor_log_level_parse(""), -1);
    assert_int_equal(moor_log_level_parse("inf"), -1);
    assert_int_equal(moor_log_level_parse(NULL), -1);
}

static void test_one_line_per_call(void **state)
{
    char buf[8192];
    int l1, l2;

    (void)state;
    moor_log_set_level(MOOR_LOG_DEBUG);
    assert_int_equal(moor_log_get_level(), MOOR_LOG_DEBUG);
    moor_log_set_node("node-7");

    l1 = __LINE__, moor_log_warn("disk %s at %d%%", "sdb", 93);
    drain(buf, sizeof(buf));
    assert_int_equal(count_lines(buf), 1);
    check_line(buf, "node-7", "WARN", l1, "disk sdb at 93%");

    l2 = __LINE__, moor_log_debug("x");
    drain(buf, sizeof(buf));
    check_line(buf, "node-7", "DEBUG", l2, "x");

    l1 = __LINE__, moor_log_info("i");
    drain(buf, sizeof(buf));
    check_line(buf, "node-7", "INFO", l1, "i");

    /* Without a node id the field is "-"; an empty message is still a line. */
    moor_log_set_node(NULL);
    l1 = __LINE__, moor_log_error("%s", "");
    drain(buf, sizeof(buf));
    check_line(buf, "-", "ERROR", l1, "");
}

static void test_level_filtering(void **state)
{
    static const int levels[] = {MOOR_LOG_DEBUG, MOOR_LOG_INFO, MOOR_LOG_WARN, MOOR_LOG_ERROR,
                                 MOOR_LOG_OFF};
    char buf[8192];

    (void)state;
    for (size_t i = 0; i < 5; i++) {
        int min = levels[i];
        moor_log_set_level(min);
        assert_int_equal(moor_log_get_level(), min);
        moor_log_debug("d");
        moor_log_info("i");
        moor_log_warn("w");
        moor_log_error("e");
        moor_log(MOOR_LOG_OFF, "never: OFF is not a level to write at");
        drain(buf, sizeof(buf));
        /* Exactly the levels >= min, in call order. */
        assert_int_equal(count_lines(buf), MOOR_LOG_OFF - min);
        assert_int_equal(strstr(buf, "Z DEBUG [") != NULL, min <= MOOR_LOG_DEBUG);
        assert_int_equal(strstr(buf, "Z INFO [") != NULL, min <= MOOR_LOG_INFO);
        assert_int_equal(strstr(buf, "Z WARN [") != NULL, min <= MOOR_LOG_WARN);
        assert_int_equal(strstr(buf, "Z ERROR [") != NULL, min <= MOOR_LOG_ERROR);
        assert_null(strstr(buf, "never"));
    }
}

static void test_set_fd(void **state)
{
    char buf[4096];
    int other[2];

    (void)state;
    moor_log_set_level(MOOR_LOG_INFO);
    assert_int_equal(pipe(other), 0);
    assert_int_equal(fcntl(other[0], F_SETFL, O_NONBLOCK), 0);
    moor_log_set_fd(other[1]);
    moor_log_info("to the other pipe");
    moor_log_set_fd(pipefd[1]);
    moor_log_info("back to the first");

    drain(buf, sizeof(buf));
    assert_int_equal(count_lines(buf), 1);
    assert_non_null(strstr(buf, "back to the first"));
    ssize_t n = read(other[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_int_equal(count_lines(buf), 1);
    assert_non_null(strstr(buf, "to the other pipe"));
    close(other[0]);
    close(other[1]);
}

/* A message past the line buffer is cut, and the line still ends in one
 * newline; a node id past 63 bytes is cut to 63. */
static void test_long_message_and_node(void **state)
{
    char *big = malloc(10000), buf[16384], node[100];

    (void)state;
    assert_non_null(big);
    memset(big, 'm', 9999);
    big[9999] = '\0';
    memset(node, 'n', 99);
    node[99] = '\0';
    moor_log_set_level(MOOR_LOG_INFO);
    moor_log_set_node(node);
    moor_log_info("%s", big);
    size_t len = drain(buf, sizeof(buf));
    assert_int_equal(count_lines(buf), 1);
    assert_int_equal(buf[len - 1], '\n');
    assert_true(len <= 2048);
    assert_true(len > 1000);
    char *lb = strstr(buf, "Z INFO [");
    assert_non_null(lb);
    lb += strlen("Z INFO [");
    char *rb = strchr(lb, ']');
    assert_non_null(rb);
    assert_int_equal(rb - lb, 63);
    free(big);
}

/* Two threads log 500 lines each to one file: every line is whole. */
typedef struct logger_arg {
    int id;
} logger_arg_t;

static void *logger_thread(void *p)
{
    logger_arg_t *a = p;
    for (int i = 0; i < 500; i++)
        moor_log_info("thread %d line %d %s", a->id, i,
                      "padding-padding-padding-padding-padding-padding-padding");
    return NULL;
}

static void test_threads_do_not_interleave(void **state)
{
    char *dir = testutil_tmpdir("moor-test-log"), path[4200];
    pthread_t th[2];
    logger_arg_t args[2] = {{0}, {1}};
    int seen[2] = {0, 0};

    (void)state;
    snprintf(path, sizeof(path), "%s/log", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_APPEND | O_TRUNC, 0644);
    assert_true(fd >= 0);
    moor_log_set_level(MOOR_LOG_INFO);
    moor_log_set_node("n1");
    moor_log_set_fd(fd);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, logger_thread, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    moor_log_set_fd(pipefd[1]);
    close(fd);

    FILE *f = fopen(path, "r");
    char line[512];
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        int id, n;
        char *m = strstr(line, "test_log.c:");
        assert_non_null(m);
        assert_int_equal(sscanf(strstr(m, ": ") + 2, "thread %d line %d", &id, &n), 2);
        assert_in_range(id, 0, 1);
        assert_int_equal(n, seen[id]); /* in order per thread, none lost */
        seen[id]++;
        assert_non_null(strstr(line, "padding-padding-padding-padding-padding-padding-padding\n"));
    }
    fclose(f);
    assert_int_equal(seen[0], 500);
    assert_int_equal(seen[1], 500);
    testutil_rmrf(dir);
    free(dir);
}

/* MOOR_LOG_LEVEL is read once, on first use, so each case runs in a fresh
 * process: this binary re-executed with --print-level. */
static int level_in_child(const char *env)
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        if (env)
            setenv("MOOR_LOG_LEVEL", env, 1);
        else
            unsetenv("MOOR_LOG_LEVEL");
        execl("/proc/self/exe", "test_log", "--print-level", (char *)NULL);
        _exit(100);
    }
    assert_true(pid > 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_env_level(void **state)
{
    (void)state;
    assert_int_equal(level_in_child("debug"), MOOR_LOG_DEBUG);
    assert_int_equal(level_in_child("WARN"), MOOR_LOG_WARN);
    assert_int_equal(level_in_child("off"), MOOR_LOG_OFF);
    assert_int_equal(level_in_child("bogus"), MOOR_LOG_INFO);
    assert_int_equal(level_in_child(NULL), MOOR_LOG_INFO);
}

/* The ring of recent warnings: warn and error lines only, whatever the
 * level filter, the last MOOR_LOG_RECENT kept oldest first, text from the
 * source location on. */
static void test_recent_ring(void **state)
{
    moor_log_recent_t r[MOOR_LOG_RECENT + 4];
    char buf[16384];
    size_t n;

    (void)state;
    moor_log_set_level(MOOR_LOG_OFF); /* written nowhere, still kept */
    for (int i = 0; i < MOOR_LOG_RECENT + 5; i++) {
        moor_log_info("info %d", i);
        if (i % 2)
            moor_log_error("recent %d", i);
        else
            moor_log_warn("recent %d", i);
    }
    drain(buf, sizeof(buf));
    assert_int_equal(count_lines(buf), 0);
    n = moor_log_recent(r, MOOR_LOG_RECENT + 4);
    assert_int_equal(n, MOOR_LOG_RECENT);
    for (size_t i = 0; i < n; i++) {
        char want[32];
        int k = 5 + (int)i;
        snprintf(want, sizeof(want), ": recent %d", k);
        assert_non_null(strstr(r[i].text, "test_log.c:"));
        assert_non_null(strstr(r[i].text, want));
        assert_int_equal(r[i].level, k % 2 ? MOOR_LOG_ERROR : MOOR_LOG_WARN);
        assert_true(r[i].unix_ms > 1600000000000ull);
    }
    assert_int_equal(moor_log_recent(r, 3), 3); /* the newest three, oldest first */
    assert_non_null(strstr(r[0].text, ": recent 22"));
    assert_non_null(strstr(r[2].text, ": recent 24"));
    moor_log_set_level(MOOR_LOG_INFO);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test_setup_teardown(test_one_line_per_call, pipe_setup, pipe_teardown),
        cmocka_unit_test_setup_teardown(test_level_filtering, pipe_setup, pipe_teardown),
        cmocka_unit_test_setup_teardown(test_set_fd, pipe_setup, pipe_teardown),
        cmocka_unit_test_setup_teardown(test_long_message_and_node, pipe_setup, pipe_teardown),
        cmocka_unit_test_setup_teardown(test_threads_do_not_interleave, pipe_setup, pipe_teardown),
        cmocka_unit_test(test_env_level),
        cmocka_unit_test_setup_teardown(test_recent_ring, pipe_setup, pipe_teardown),
    };

    if (argc > 1 && strcmp(argv[1], "--print-level") == 0)
        return moor_log_get_level();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
