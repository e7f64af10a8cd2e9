/*
 * args.c -- KEY, VALUE and CTX words of the moor command line (args.h).
 *
 * The forms are chosen so that what the CLI prints can be given back
 * unchanged: a ctx is printed as {"$bin": "<base64>"} and read in that
 * form, a binary key the same way, so nothing a person copies from one
 * command needs rewriting for the next.  Stateless; thread-safe.
 */
#include "cli/args.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "cli/json.h"
#include "util/err.h"
#include "util/mp.h"

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int moor_cli_hex_decode(const char *s, size_t n, moor_buf_t *out)
{
    size_t old = out->len;

    if (n % 2)
        return moor_diag(MOOR_EINVAL, "hex: an odd number of digits (%zu)", n);
    for (size_t i = 0; i < n; i += 2) {
        int hi = hex_digit(s[i]), lo = hex_digit(s[i + 1]);
        uint8_t b;
        if (hi < 0 || lo < 0) {
            out->len = old;
            return moor_diag(MOOR_EINVAL, "hex: not a hex digit at byte %zu", hi < 0 ? i : i + 1);
        }
        b = (uint8_t)(hi << 4 | lo);
        if (moor_buf_append(out, &b, 1)) {
            out->len = old;
            return MOOR_ENOMEM;
        }
    }
    return 0;
}

/* The bin body of the JSON text {"$bin": "..."} into out (bytes only). */
static int bin_object(const char *text, moor_buf_t *out)
{
    moor_buf_t mp = MOOR_BUF_INIT;
    const char *p, *body;
    uint32_t n;
    int rc = moor_json_to_mp(text, strlen(text), &mp, NULL);

    if (rc) {
        moor_buf_free(&mp); /* the parser keeps the length, not the memory */
        return rc;
    }
    p = mp.data;
    if (moor_mp_read_bin(&p, mp.data + mp.len, &body, &n) || p != mp.data + mp.len)
        rc = moor_diag(MOOR_EINVAL, "expected {\"$bin\": \"<base64>\"}");
    else
        rc = moor_buf_append(out, body, n);
    moor_buf_free(&mp);
    return rc;
}

int moor_cli_key_parse(const char *key, const char *key_hex, moor_buf_t *out)
{
    moor_buf_t bytes = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    if (key_hex && !*key_hex)
        return moor_diag(MOOR_EINVAL, "--key-hex: an empty key (a key has 1 byte or more)");
    if (key_hex) {
        if ((rc = moor_cli_hex_decode(key_hex, strlen(key_hex), &bytes)))
            rc = moor_diag_wrap(rc, rc, "--key-hex");
    } else if (strncmp(key, "{\"$bin\"", 7) == 0) {
        if ((rc = bin_object(key, &bytes)))
            rc = moor_diag_wrap(rc, rc, "KEY");
    } else {
        return msgpack_pack_str_with_body(&pk, key, strlen(key)) ? MOOR_ENOMEM : 0;
    }
    if (rc == 0 && msgpack_pack_bin_with_body(&pk, bytes.data ? bytes.data : "", bytes.len))
        rc = MOOR_ENOMEM;
    moor_buf_free(&bytes);
    return rc;
}

int moor_cli_read_fd(int fd, const char *name, size_t max, moor_buf_t *out)
{
    size_t old = out->len;

    for (;;) {
        ssize_t got;
        if (moor_buf_reserve(out, 65536)) {
            out->len = old;
            return MOOR_ENOMEM;
        }
        got = read(fd, out->data + out->len, out->cap - out->len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            out->len = old;
            return moor_diag(-e, "%s: cannot read: %s", name, strerror(e));
        }
        if (got == 0)
            return 0;
        out->len += (size_t)got;
        if (out->len - old > max) {
            out->len = old;
            return moor_diag(MOOR_EVALTOOBIG,
                             "%s: more than %zu bytes, more than any node takes as a value "
                             "(limits.value_max_mb)",
                             name, max);
        }
    }
}

/* The bytes VALUE stands for (see moor_cli_value_read) into out. */
static int value_bytes(const char *arg, moor_buf_t *out)
{
    int fd, rc;

    if (strcmp(arg, "-") == 0)
        return moor_cli_read_fd(0, "VALUE from stdin", MOOR_CLI_VALUE_MAX, out);
    if (arg[0] != '@' || arg[1] == '@')
        return moor_buf_append(out, arg + (arg[0] == '@'), strlen(arg + (arg[0] == '@')));
    if ((fd = open(arg + 1, O_RDONLY | O_CLOEXEC)) < 0) {
        int e = errno;
        return moor_diag(-e, "VALUE %s: cannot open: %s", arg, strerror(e));
    }
    {
        char name[80];
        snprintf(name, sizeof(name), "VALUE %.70s", arg);
        rc = moor_cli_read_fd(fd, name, MOOR_CLI_VALUE_MAX, out);
    }
    close(fd);
    return rc;
}

int moor_cli_value_read(const char *arg, moor_cli_value_mode_t mode, moor_buf_t *out)
{
    moor_buf_t bytes = MOOR_BUF_INIT;
    size_t old = out->len;
    msgpack_packer pk;
    int rc = value_bytes(arg, &bytes);

    if (rc == 0 && mode == MOOR_CLI_VALUE_JSON) {
        rc = moor_json_to_mp(bytes.data ? bytes.data : "", bytes.len, out, NULL);
        if (rc)
            rc = moor_diag_wrap(rc, rc, "VALUE");
    } else if (rc == 0) {
        const char *d = bytes.data ? bytes.data : "";
        moor_mp_packer_init(&pk, out);
        if (mode == MOOR_CLI_VALUE_BIN ? msgpack_pack_bin_with_body(&pk, d, bytes.len)
                                       : msgpack_pack_str_with_body(&pk, d, bytes.len)) {
            out->len = old;
            rc = MOOR_ENOMEM;
        }
    }
    moor_buf_free(&bytes);
    return rc;
}

int moor_cli_ctx_parse(const char *text, moor_buf_t *out)
{
    int rc;

    if (text[0] == '{')
        rc = bin_object(text, out);
    else
        rc = moor_json_b64_decode(text, strlen(text), out);
    if (rc == 0 && out->len == 0)
        rc = moor_diag(MOOR_EINVAL, "an empty ctx");
    return rc ? moor_diag_wrap(rc, rc, "--ctx") : 0;
}

int moor_cli_shell_quote(const char *s, moor_buf_t *out)
{
    static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                               "_./:=@%+,-";
    size_t old = out->len;
    int rc = 0;

    if (*s && strspn(s, safe) == strlen(s)) {
        rc = moor_buf_append(out, s, strlen(s));
    } else {
        rc = moor_buf_append(out, "'", 1);
        for (; rc == 0 && *s; s++)
            rc = *s == '\'' ? moor_buf_append(out, "'\\''", 4) : moor_buf_append(out, s, 1);
        if (rc == 0)
            rc = moor_buf_append(out, "'", 1);
    }
    if (rc == 0 && (rc = moor_buf_reserve(out, 1)) == 0)
        out->data[out->len] = '\0';
    if (rc)
        out->len = old;
    return rc ? MOOR_ENOMEM : 0;
}
