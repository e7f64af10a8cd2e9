/*
 * args.h -- the words of a moor command line that every key- and
 * value-taking command reads the same way: KEY (text, {"$bin": base64} or
 * --key-hex HEX), VALUE (JSON, a file, standard input, raw bytes) and CTX
 * ({"$bin": base64}, or a bare base64 string as older versions printed).
 *
 * One helper per form, so that get, put, del, where and any later command
 * that takes a key agree on what a key is.  Everything but the file and
 * stdin readers is pure; errors are MOOR_E* codes with a diagnostic that
 * names the word at fault (util/err.h), and nothing here prints or exits.
 */
#ifndef MOOR_CLI_ARGS_H
#define MOOR_CLI_ARGS_H

#include <stddef.h>

#include "util/buf.h"
#include "util/limits.h"

/* The most bytes a VALUE read from a file or stdin may have: no node
 * takes more (limits.value_max_mb is refused at start past what a client
 * reads back), so anything larger is refused before it is sent. */
#define MOOR_CLI_VALUE_MAX (MOOR_LIMIT_MAX_ANSWER - 65536)

/* How VALUE's bytes become the MessagePack value that put sends. */
typedef enum moor_cli_value_mode {
    MOOR_CLI_VALUE_JSON = 0, /* parsed as JSON (json.h) */
    MOOR_CLI_VALUE_RAW,      /* sent as they are, a MessagePack str (--raw) */
    MOOR_CLI_VALUE_BIN       /* sent as they are, a MessagePack bin (--bin) */
} moor_cli_value_mode_t;

/* ===== API ===== */

/* Appends the key as one MessagePack object to out.  With key_hex (not
 * NULL; key is then ignored) the key is those bytes as a bin: an even
 * number of hex digits, either case, at least one byte.  Otherwise key is
 * a text key sent as a str, unless it begins with {"$bin" -- then it must
 * be exactly the JSON object {"$bin": "<base64>"} and the key is that bin.
 * 0, or MOOR_EINVAL with a diagnostic ("--key-hex: ...", "KEY: ...");
 * MOOR_ENOMEM.  On failure out keeps what it had. */
int moor_cli_key_parse(const char *key, const char *key_hex, moor_buf_t *out);

/* Decodes n hex digits at s (an even number, 0-9a-fA-F) appending the
 * bytes to out.  0, MOOR_EINVAL naming the bad offset, or MOOR_ENOMEM;
 * on failure out keeps what it had. */
int moor_cli_hex_decode(const char *s, size_t n, moor_buf_t *out);

/* Appends VALUE as one MessagePack object to out.  arg is
 *   "-"       the bytes of standard input,
 *   "@PATH"   the bytes of the file PATH,
 *   "@@TEXT"  the literal text "@TEXT" (a value that starts with '@'),
 *   anything else: the literal text itself;
 * mode says how those bytes become the value (JSON text, str or bin).
 * At most MOOR_CLI_VALUE_MAX bytes are read.  0; MOOR_EINVAL (bad JSON,
 * the diagnostic naming the byte); MOOR_EVALTOOBIG (more than
 * MOOR_CLI_VALUE_MAX bytes); -errno (the file cannot be opened or read,
 * the diagnostic naming it); MOOR_ENOMEM.  On failure out keeps what it
 * had. */
int moor_cli_value_read(const char *arg, moor_cli_value_mode_t mode, moor_buf_t *out);

/* Reads every byte of fd (up to max) appending them to out; name is for
 * the diagnostic.  0, MOOR_EVALTOOBIG (more than max bytes), -errno or
 * MOOR_ENOMEM; on failure out keeps what it had. */
int moor_cli_read_fd(int fd, const char *name, size_t max, moor_buf_t *out);

/* The ctx bytes of a --ctx argument appended to out: the JSON object
 * {"$bin": "<base64>"} that get, put and receipts print, or (as older
 * versions printed it) the bare base64 string.  0, MOOR_EINVAL with a
 * diagnostic ("--ctx: ..."), or MOOR_ENOMEM; out keeps what it had on
 * failure. */
int moor_cli_ctx_parse(const char *text, moor_buf_t *out);

/* Appends s quoted for a POSIX shell, so that a printed command line can
 * be pasted back: as it is when it has only [A-Za-z0-9_./:=@%+,-] and is
 * not empty, else in single quotes ('\'' for a quote).  NUL-terminated
 * (out->len excludes the NUL).  0 or MOOR_ENOMEM. */
int moor_cli_shell_quote(const char *s, moor_buf_t *out);

#endif
