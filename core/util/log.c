/*
 * log.c -- level-filtered, single-write(2) log lines.
 * Level and sink are atomics so any thread may log without a lock.
 */
#include "log.h"

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
    int n;

    if (level < moor_log_get_level() || level >= MOOR_LOG_OFF)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    base = strrchr(file, '/');
    base = base ? base + 1 : file;
    n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] %s:%d: ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, tags[level],
                 log_node[0] ? log_node : "-", base, line);
    if (n < 0)
        return;
    va_start(ap, fmt);
    if ((size_t)n < sizeof(buf))
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    if ((size_t)n >= sizeof(buf) - 1)
        n = (int)sizeof(buf) - 2;
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
