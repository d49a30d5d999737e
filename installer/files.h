/* The installer's file operations on the host's directories, each one
 * atomic as docs/cni-contract.md §12.4 asks: content goes to a temporary
 * file in the target's own directory (a name the runtime ignores: it starts
 * with '.' and ends in .tmp.<pid>), which is fsync'ed and given its final
 * mode before rename(2) puts it in place, and the directory is fsync'ed
 * after. A reader sees the old file or the new one, never a half-written
 * one, and a binary is never missing or not executable in between. All
 * return 0 or a negative errno after a log line naming the path. */
#ifndef TSCNI_INSTALLER_FILES_H
#define TSCNI_INSTALLER_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Reads the whole regular file at path, at most max bytes, into a new
 * NUL-terminated buffer the caller free()s; *len is its length. -ENOENT
 * quietly when it does not exist, -EFBIG when larger than max, -EINVAL
 * when not a regular file. st_mode/uid/gid of the file in *mode, *uid,
 * *gid when not NULL. */
int files_read(const char *path, size_t max, char **out, size_t *len, mode_t *mode, uid_t *uid,
	       gid_t *gid);

/* Whether the file at path holds exactly len bytes equal to buf and has
 * permission bits mode. */
bool files_same(const char *path, const char *buf, size_t len, mode_t mode);

/* Puts buf at path atomically with permission bits mode and owner uid:gid
 * (-1 keeps ours). Skipped (0, *written false) when path already holds
 * exactly that with that mode. written may be NULL. */
int files_write(const char *path, const char *buf, size_t len, mode_t mode, uid_t uid, gid_t gid,
		bool *written);

/* Copies the regular file src to dst atomically with mode (0755 for a
 * binary), unless dst already has the same bytes and mode. At most
 * FILES_MAX_COPY bytes. */
enum { FILES_MAX_COPY = 256 << 20 };
int files_copy(const char *src, const char *dst, mode_t mode, bool *written);

/* unlink(path), then fsync of its directory. 0 when it did not exist. */
int files_remove(const char *path);

/* snprintf into a path buffer: 0, or -ENAMETOOLONG when it did not fit
 * (out then holds "" so that nothing is done to a truncated path). */
int files_path(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* fsync of the directory holding path (or of path when it is one). */
int files_sync_dir(const char *dir);

#endif
