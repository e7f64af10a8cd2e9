/*
 * file.h -- the file operations every layer needs the same way: writing a
 * whole buffer, making a directory entry durable, and replacing a file
 * atomically.  One implementation each, so that none of them forgets the
 * short-write loop or the directory fsync.
 *
 * Atomic replacement (moor_file_replace): write <path>.tmp in the same
 * directory (looping over short writes and EINTR), fdatasync it, close it,
 * rename it over <path>, fsync the directory.  A crash at any point leaves
 * either the old content or the new one under <path>, never a mix; a stale
 * <path>.tmp may be left by a crash (never by a failure this call saw) and
 * is truncated by the next replacement.
 *
 * Errors: 0 or a negative code (-errno), with a diagnostic that names the
 * file, the operation and the system's reason.  No shared state: every
 * function is thread-safe; callers serialise replacements of one path.
 */
#ifndef MOOR_UTIL_FILE_H
#define MOOR_UTIL_FILE_H

#include <stddef.h>
#include <stdint.h>

/* ===== API ===== */

/* Writes all n bytes to fd at its file offset, retrying short writes and
 * EINTR.  0, or -errno (MOOR_EIO if write(2) returns 0) with a diagnostic
 * "write of N bytes failed after M: reason"; callers wrap it with the
 * file's name.  On failure part of the data may have been written. */
int moor_file_write_all(int fd, const void *p, size_t n);

/* As moor_file_write_all, at offset off (pwrite), for files written at
 * known places.  The diagnostic gives the offset. */
int moor_file_pwrite_all(int fd, const void *p, size_t n, uint64_t off);

/* fsyncs the directory dir, so that entries created, renamed or removed in
 * it survive a power loss.  0 or -errno with a diagnostic naming dir. */
int moor_file_sync_dir(const char *dir);

/* Replaces the file at path with the len bytes at data, atomically and
 * durably (see above).  On an error before the rename the old file is
 * untouched and the temporary file is removed; an error after it (the
 * directory fsync) means the new content is in place but may not survive
 * a power loss.  0 or -errno with a diagnostic. */
int moor_file_replace(const char *path, const void *data, size_t len);

#endif
