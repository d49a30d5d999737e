/* Secrets handed over as files (the pre-auth key): a root-owned file, or a
 * Kubernetes Secret volume, where kubelet writes
 *
 *   DIR/authkey -> ..data/authkey
 *   DIR/..data  -> ..2026_12_07_05_00_00.123456789
 *   DIR/..2026_12_07_05_00_00.123456789/authkey   (the file, mode as the
 *                                                  volume's defaultMode)
 *
 * and rotates the secret by writing a new timestamped directory and
 * swapping ..data. So a path may be a chain of symlinks; what is checked is
 * the file at its end and every directory on the way to it and to the path
 * given: the file is a regular file owned by root that no one else may
 * write; each directory is root's and not writable by others unless it is
 * sticky (/tmp). Modes that let others read (kubelet's default 0644) are
 * accepted inside such a tree, with a warning.
 *
 * The secret itself (trailing white space trimmed, 1 to max_len bytes, no
 * space or control character) is kept in sodium_malloc'ed memory and never
 * reaches a log line: errors name the path and the fault only. */
#ifndef TSCNI_SUPERVISOR_SECRET_FILE_H
#define TSCNI_SUPERVISOR_SECRET_FILE_H

#include <stddef.h>

#include <uv.h>

/* Reads the secret at path into *out (sodium_malloc'ed; free with
 * sodium_free). what names the source in messages ("--auth-key-file").
 * 0, or -errno after one log line naming what, the path and the fault. */
int secret_file_read(const char *what, const char *path, size_t max_len, char **out);

/* The secret from environment variable name, which is then wiped from the
 * process's environment (its bytes zeroed, the variable unset) so that it
 * is not left in /proc/<pid>/environ. Same rules and messages. */
int secret_env_read(const char *what, const char *name, size_t max_len, char **out);

/* Called on the loop with a changed secret (sodium_malloc'ed, now the
 * callee's). */
typedef void secret_changed_fn(void *arg, char *secret);

struct secret_watch;

/* Watches path (stat every interval_ms, following the links, as kubelet's
 * ..data swap changes what it resolves to) and, when it changed and reads
 * well and differs, calls cb. A rotation that does not read well is logged
 * and the secret in use stays. 0 or a negative errno. */
int secret_watch_start(uv_loop_t *loop, const char *what, const char *path, size_t max_len,
		       unsigned int interval_ms, const char *current, secret_changed_fn *cb,
		       void *arg, struct secret_watch **out);
void secret_watch_stop(struct secret_watch *sw);

#endif
