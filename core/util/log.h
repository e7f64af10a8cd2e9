/*
 * log.h -- one line per event, with a level, a timestamp and the node id.
 *
 * Lines are formatted into a local buffer and written with one write(2), so
 * lines from different threads never interleave.  The sink is a file
 * descriptor (stderr by default).  Library code logs events (a torn log tail
 * dropped, a compaction failed) but never decides to exit.
 */
#ifndef MOOR_UTIL_LOG_H
#define MOOR_UTIL_LOG_H

#include <stddef.h>
#include <stdint.h>

enum moor_log_level {
    MOOR_LOG_DEBUG = 0,
    MOOR_LOG_INFO = 1,
    MOOR_LOG_WARN = 2,
    MOOR_LOG_ERROR = 3,
    MOOR_LOG_OFF = 4
};

/* ===== API ===== */

/* Set the minimum level written; default INFO (or MOOR_LOG_LEVEL env var:
 * debug|info|warn|error|off, read on first use).  Thread-safe. */
void moor_log_set_level(int level);
int moor_log_get_level(void);

/* Parse "debug"/"info"/"warn"/"error"/"off"; returns -1 if unknown. */
int moor_log_level_parse(const char *name);

/* The name of a level ("debug" ... "off"; "?" out of range).  Can't fail. */
const char *moor_log_level_name(int level);

/* Where lines go; fd stays owned by the caller.  Default 2 (stderr). */
void moor_log_set_fd(int fd);

/* Node id printed in every line (copied, up to 63 bytes). */
void moor_log_set_node(const char *node_id);

void moor_log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define moor_log(level, ...) moor_log_write((level), __FILE__, __LINE__, __VA_ARGS__)
#define moor_log_debug(...) moor_log(MOOR_LOG_DEBUG, __VA_ARGS__)
#define moor_log_info(...) moor_log(MOOR_LOG_INFO, __VA_ARGS__)
#define moor_log_warn(...) moor_log(MOOR_LOG_WARN, __VA_ARGS__)
#define moor_log_error(...) moor_log(MOOR_LOG_ERROR, __VA_ARGS__)

/* The last warnings and errors, kept for the status page whatever the
 * level filter: MOOR_LOG_RECENT lines, the oldest dropped first. */
#define MOOR_LOG_RECENT 20
typedef struct moor_log_recent {
    uint64_t unix_ms; /* when it was logged */
    int level;        /* MOOR_LOG_WARN or MOOR_LOG_ERROR */
    char text[240];   /* "file.c:line: message", cut to fit */
} moor_log_recent_t;

/* Copies the newest max (or fewer) of the kept lines into out, oldest
 * first; returns how many.  Thread-safe. */
size_t moor_log_recent(moor_log_recent_t *out, size_t max);

/* Writes bytes s[0..n) into out (cap bytes, cap >= 8) as printable text
 * for a log line: printable ASCII as is, '"' and '\\' and other bytes as
 * \xHH; cut with "..." when it does not fit.  Always NUL-terminated.
 * Returns out. */
char *moor_log_escape(const char *s, size_t n, char *out, size_t cap);

#endif
