/*
 * log.c -- level-filtered, single-write(2) log lines.
 * Level and sink are atomics so any thread may log without a lock; the
 * ring of recent warnings (for the status page) has a mutex of its own,
 * taken only for warnings and errors.
 */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = -1; /* -1: not yet read from the environment */
static atomic_int log_fd = 2;
static char log_node[64];

static pthread_mutex_t recent_mu = PTHREAD_MUTEX_INITIALIZER;
static moor_log_recent_t recent[MOOR_LOG_RECENT];
static size_t recent_next, recent_n; /* next slot to write; slots in use */

static void keep_recent(int level, const struct timespec *ts, const char *text, size_t n)
{
    moor_log_recent_t *r;

    pthread_mutex_lock(&recent_mu);
    r = &recent[recent_next];
    recent_next = (recent_next + 1) % MOOR_LOG_RECENT;
    if (recent_n < MOOR_LOG_RECENT)
        recent_n++;
    r->unix_ms = (uint64_t)ts->tv_sec * 1000 + (uint64_t)ts->tv_nsec / 1000000;
    r->level = level;
    if (n >= sizeof(r->text))
        n = sizeof(r->text) - 1;
    memcpy(r->text, text, n);
    r->text[n] = 0;
    pthread_mutex_unlock(&recent_mu);
}

size_t moor_log_recent(moor_log_recent_t *out, size_t max)
{
    size_t n, first;

    pthread_mutex_lock(&recent_mu);
    n = recent_n < max ? recent_n : max;
    first = (recent_next + MOOR_LOG_RECENT - n) % MOOR_LOG_RECENT;
    for (size_t i = 0; i < n; i++)
        out[i] = recent[(first + i) % MOOR_LOG_RECENT];
    pthread_mutex_unlock(&recent_mu);
    return n;
}
static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int moor_log_level_parse(const char *name)
{
    for (int i = 0; i < 5; i++)
        if (name && strcasecmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

const char *moor_log_level_name(int level)
{
    return level >= 0 && level < 5 ? level_names[level] : "?";
}

int moor_log_get_level(void)
{
    int lv = atomic_load(&log_level);

    if (lv < 0) {
        lv = moor_log_level_parse(getenv("MOOR_LOG_LEVEL"));
        if (lv < 0)
            lv = MOOR_LOG_INFO;
        atomic_store(&log_level, lv);
    }
    return lv;
}

void moor_log_set_level(int level) { atomic_store(&log_level, level); }
void moor_log_set_fd(int fd) { atomic_store(&log_fd, fd); }

void moor_log_set_node(const char *node_id)
{
    snprintf(log_node, sizeof(log_node), "%s", node_id ? node_id : "");
}

void moor_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char buf[2048];
    struct timespec ts;
    struct tm tm;
    const char *base;
    va_list ap;
    int n, keep = level >= MOOR_LOG_WARN && level < MOOR_LOG_OFF, start;

    if ((level < moor_log_get_level() && !keep) || level >= MOOR_LOG_OFF)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    base = strrchr(file, '/');
    base = base ? base + 1 : file;
    start = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%.63s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, tags[level],
                     log_node[0] ? log_node : "-");
    if (start < 0)
        return;
    /* From start on: "file.c:line: message", what the recent ring keeps. */
    n = start + snprintf(buf + start, sizeof(buf) - (size_t)start, "%.200s:%d: ", base, line);
    va_start(ap, fmt);
    if ((size_t)n < sizeof(buf))
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    if ((size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
    if (keep)
        keep_recent(level, &ts, buf + start, (size_t)(n - start));
    if (level < moor_log_get_level())
        return;
    buf[n++] = '\n';
    /* One write per line; a short write to a log is not worth a retry loop. */
    if (write(atomic_load(&log_fd), buf, (size_t)n) < 0)
        return;
}

char *moor_log_escape(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int plain = ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 4 > cap) { /* room for "..." and the NUL */
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (plain) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = 0;
    return out;
}
