/*
 * err.h -- Moor's error codes and the per-thread diagnostics slot.
 *
 * Every fallible function returns int: 0 on success or a negative MOOR_E*
 * code.  Codes that have an errno twin are equal to -errno, so a failed
 * syscall can be returned as -errno directly.  Names and messages come from
 * the one X-macro table below (the libuv way).
 *
 * Details that a code alone cannot carry (which file, which offset) go into
 * the diagnostics slot of the calling thread (the Tarantool way): the code
 * that detects an error calls moor_diag_set(), whoever reports it reads
 * moor_diag_last().  Library code never prints or exits.
 */
#ifndef MOOR_UTIL_ERR_H
#define MOOR_UTIL_ERR_H

#include <errno.h>
#include <stddef.h>

/* X(name, value, message) */
#define MOOR_ERR_MAP(X)                                             \
    X(OK, 0, "success")                                             \
    X(NOENT, -ENOENT, "no such file or directory")                  \
    X(IO, -EIO, "input/output error")                               \
    X(NOMEM, -ENOMEM, "out of memory")                              \
    X(ACCES, -EACCES, "permission denied")                          \
    X(EXIST, -EEXIST, "already exists")                             \
    X(INVAL, -EINVAL, "invalid argument")                           \
    X(NOSPC, -ENOSPC, "no space left on device")                    \
    X(AGAIN, -EAGAIN, "resource temporarily unavailable")           \
    X(BUSY, -EBUSY, "resource busy or locked")                      \
    X(ROFS, -EROFS, "read-only file system")                        \
    X(TIMEDOUT, -ETIMEDOUT, "timed out")                            \
    X(CORRUPT, -1001, "data corruption detected")                   \
    X(NOTFOUND, -1002, "key not found")                             \
    X(KEYTOOBIG, -1003, "key too large")                            \
    X(VALTOOBIG, -1004, "value too large")                          \
    X(CLOSED, -1005, "engine is closed")                            \
    X(VERSION, -1006, "unsupported format version")                 \
    X(FAILED, -1007, "background work failed; engine is read-only") \
    X(PROTO, -1008, "malformed message")                            \
    X(NOAUTH, -1009, "authentication required")                     \
    X(NOMETHOD, -1010, "unknown method")                            \
    X(TOOLARGE, -1011, "message too large")                         \
    X(HANDLER, -1012, "handler error")                              \
    X(HTIMEOUT, -1013, "handler over its budget")                   \
    X(NOHANDLER, -1014, "no such handler")                          \
    X(BADCTX, -1015, "malformed context")                           \
    X(PEER, -1016, "peer answered an error")                        \
    X(QUORUM, -1017, "quorum not reached")                          \
    X(UNAVAIL, -1018, "not enough replicas on the ring")            \
    X(INTERNAL, -1019, "internal error")                           \
    X(TOOMANYSIBS, -1020, "too many siblings")

/* The wire's error names: X(code, "NAME").  The ONE table between a code
 * and the name an error answer carries ([code, message] on the wire,
 * README "Errors").  Several codes may share a name; the first row that
 * carries a name is the code that name maps back to (moor_err_from_wire),
 * so a name read off the wire becomes a code once and nothing downstream
 * parses message text.  A code not listed is "IO_ERROR" when it is an
 * -errno, "INTERNAL" otherwise; a name not listed maps back to MOOR_EPEER. */
#define MOOR_ERR_WIRE_MAP(X)                \
    X(MOOR_EINVAL, "BAD_REQUEST")           \
    X(MOOR_EPROTO, "BAD_REQUEST")           \
    X(MOOR_EBADCTX, "BAD_CTX")              \
    X(MOOR_EKEYTOOBIG, "KEY_TOO_LARGE")     \
    X(MOOR_EVALTOOBIG, "VALUE_TOO_LARGE")   \
    X(MOOR_ETOOLARGE, "TOO_LARGE")          \
    X(MOOR_ENOAUTH, "NOAUTH")               \
    X(MOOR_ENOMETHOD, "UNKNOWN_METHOD")     \
    X(MOOR_EHANDLER, "HANDLER_ERROR")       \
    X(MOOR_EHTIMEOUT, "HANDLER_TIMEOUT")    \
    X(MOOR_ENOHANDLER, "NO_HANDLER")        \
    X(MOOR_ECORRUPT, "CORRUPT")             \
    X(MOOR_EFAILED, "READ_ONLY")            \
    X(MOOR_ECLOSED, "SHUTTING_DOWN")        \
    X(MOOR_ETIMEDOUT, "TIMEOUT")            \
    X(MOOR_ENOMEM, "OUT_OF_MEMORY")         \
    X(MOOR_ENOSPC, "NO_SPACE")              \
    X(MOOR_EQUORUM, "QUORUM_FAILED")        \
    X(MOOR_EUNAVAIL, "UNAVAILABLE")         \
    X(MOOR_EVERSION, "UNSUPPORTED_VERSION") \
    X(MOOR_EIO, "IO_ERROR")                 \
    X(MOOR_EINTERNAL, "INTERNAL")           \
    X(MOOR_ETOOMANYSIBS, "TOO_MANY_SIBLINGS") \
    X(MOOR_EBUSY, "BUSY")

enum {
#define MOOR_ERR_ENUM_(name, val, msg) MOOR_E##name = (val),
    MOOR_ERR_MAP(MOOR_ERR_ENUM_)
#undef MOOR_ERR_ENUM_
};

/* Diagnostics: the last error detail set by this thread. */
typedef struct moor_diag {
    int code;         /* MOOR_E* of the last moor_diag_set(), 0 if none */
    const char *file; /* source file that set it (static string) */
    int line;         /* source line that set it */
    char msg[512];    /* human message, NUL-terminated, maybe truncated */
} moor_diag_t;

/* ===== API ===== */

/* Name ("CORRUPT") and message of a code.  Unknown codes get "UNKNOWN" and
 * a generic message, or strerror() text for any other -errno.  Never NULL. */
const char *moor_err_name(int code);
const char *moor_strerror(int code);

/* The wire name of a code (MOOR_ERR_WIRE_MAP); never NULL. */
const char *moor_err_wire(int code);

/* The code of a wire name (n bytes): the first row of MOOR_ERR_WIRE_MAP
 * that carries it, MOOR_EPEER for a name not in the table. */
int moor_err_from_wire(const char *name, size_t n);

/* Records code and a printf-style message in this thread's slot and returns
 * code, so that callers can write `return moor_diag(MOOR_ECORRUPT, ...)`.
 * The arguments may point into the slot itself (moor_diag_last()->msg):
 * the message is formatted aside first, then copied in. */
int moor_diag_set(const char *file, int line, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define moor_diag(code, ...) moor_diag_set(__FILE__, __LINE__, (code), __VA_ARGS__)

/* Adds context in front of the message already in the slot: the slot then
 * says "<context>: <what it said>" with the given code.  When the slot is
 * empty or holds another code than `prev`, the text of `prev` stands for
 * what it said (moor_diag_msg(prev)).  Returns code.  This is the one way
 * to wrap a lower layer's diagnostic; never pass moor_diag_msg() to
 * moor_diag() to do it by hand. */
int moor_diag_wrap_set(const char *file, int line, int code, int prev, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define moor_diag_wrap(code, prev, ...) \
    moor_diag_wrap_set(__FILE__, __LINE__, (code), (prev), __VA_ARGS__)

/* The calling thread's slot; valid until the thread exits.  Never NULL. */
const moor_diag_t *moor_diag_last(void);

/* Message of the last diagnostic if it matches code, else moor_strerror(code). */
const char *moor_diag_msg(int code);

void moor_diag_clear(void);

#endif
