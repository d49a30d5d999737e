/* Secrets handed over as files or environment variables (secret_file.h). */
#include "secret_file.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "mem.h"

enum { SECRET_READ_MAX = 4096 };

/* One directory on the way: root's, and not writable by others unless
 * sticky. 0, or a negative errno with *why. */
static int dir_safe(const char *p, const char **why)
{
	struct stat st;

	if (lstat(p, &st) < 0) {
		*why = "cannot be examined";
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		*why = "is not a directory";
		return -ENOTDIR;
	}
	if (st.st_uid != 0) {
		*why = "is a directory not owned by root";
		return -EPERM;
	}
	if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
		*why = "is a directory others may write to";
		return -EPERM;
	}
	return 0;
}

/* Each directory from "/" down to dir (absolute, no trailing slash but
 * "/" itself) passes dir_safe. 0, or its error with the directory in bad. */
static int dirs_safe(const char *dir, char *bad, size_t badlen, const char **why)
{
	char p[PATH_MAX];
	size_t len = strlen(dir);
	int ret;

	if (len >= sizeof(p) || dir[0] != '/') {
		*why = "is not an absolute path";
		snprintf(bad, badlen, "%s", dir);
		return -EINVAL;
	}
	memcpy(p, dir, len + 1);
	ret = dir_safe("/", why);
	if (ret < 0) {
		snprintf(bad, badlen, "/");
		return ret;
	}
	for (size_t i = 2; i <= len; i++) {
		char c = p[i];

		if (c != '/' && c != '\0')
			continue;
		p[i] = '\0';
		ret = dir_safe(p, why);
		if (ret < 0) {
			snprintf(bad, badlen, "%s", p);
			return ret;
		}
		p[i] = c;
	}
	return 0;
}

static int dir_of_safe(const char *what, const char *path, const char *file)
{
	char copy[PATH_MAX], bad[PATH_MAX], resolved[PATH_MAX];
	const char *why = "";
	char *slash;
	int ret;

	if (snprintf(copy, sizeof(copy), "%s", file) >= (int)sizeof(copy)) {
		log_err("%s %s: the path is too long", what, path);
		return -ENAMETOOLONG;
	}
	slash = strrchr(copy, '/');
	if (!slash)
		return 0; /* relative to a directory checked as the real path's */
	if (slash == copy)
		slash[1] = '\0';
	else
		*slash = '\0';
	/* A relative path's directory is checked where it resolves to. */
	if (copy[0] != '/' && !realpath(copy, resolved)) {
		ret = -errno;
		log_err_r(ret, "%s %s: cannot resolve %s", what, path, copy);
		return ret;
	}
	ret = dirs_safe(copy[0] == '/' ? copy : resolved, bad, sizeof(bad), &why);
	if (ret < 0)
		log_err("%s %s: %s %s", what, path, bad, why);
	return ret;
}

/* The secret in buf[0..n) (trimmed) into sodium memory. */
static int secret_take(const char *what, const char *src, char *buf, size_t n, size_t max_len,
		       char **out)
{
	size_t len = n;

	while (len && isspace((unsigned char)buf[len - 1]))
		len--;
	if (len == 0 || len > max_len) {
		log_err("%s %s: the secret must be 1 to %zu bytes", what, src, max_len);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (!isgraph((unsigned char)buf[i])) {
			log_err("%s %s: the secret holds a space or control character (at byte "
				"%zu)",
				what, src, i);
			return -EINVAL;
		}
	}
	*out = sodium_malloc(len + 1);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, buf, len);
	(*out)[len] = '\0';
	return 0;
}

/* kubelet's atomic writer keeps a Secret's files in DIR/..<timestamp>/,
 * reached through DIR/..data: a file there may be 0644 (the volume's
 * defaultMode) and is still seen by this container alone. */
static bool in_secret_volume(const char *real)
{
	const char *end = strrchr(real, '/'), *start = end;

	while (start && start > real && start[-1] != '/')
		start--;
	return end && start && end - start > 2 && start[0] == '.' && start[1] == '.';
}

/* One line per process about a readable Secret file, not one per poll. */
static bool warned_readable;

int secret_file_read(const char *what, const char *path, size_t max_len, char **out)
{
	char real[PATH_MAX], buf[SECRET_READ_MAX];
	struct stat st;
	ssize_t n;
	int fd, ret;

	*out = NULL;
	if (!realpath(path, real)) {
		ret = -errno;
		log_err_r(ret, "%s %s: cannot resolve the path", what, path);
		return ret;
	}
	/* Where the links are (the Secret volume's directory) and where the
	 * file is. */
	ret = dir_of_safe(what, path, path);
	if (ret == 0)
		ret = dir_of_safe(what, path, real);
	if (ret < 0)
		return ret;
	fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		log_err_r(ret, "%s %s: cannot open %s", what, path, real);
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_err("%s %s: %s is not a regular file", what, path, real);
		ret = -EINVAL;
		goto out;
	}
	if (st.st_uid != 0 || (st.st_mode & 022)) {
		log_err("%s %s: %s is owned by uid %u with mode %04o; it must be owned by root "
			"and writable by root only",
			what, path, real, (unsigned int)st.st_uid,
			(unsigned int)(st.st_mode & 07777));
		ret = -EPERM;
		goto out;
	}
	if (st.st_mode & 044) {
		if (!in_secret_volume(real)) {
			log_err("%s %s: %s has mode %04o: others may read it; make it 0600 or "
				"0400 (a Kubernetes Secret volume's file may be 0644)",
				what, path, real, (unsigned int)(st.st_mode & 07777));
			ret = -EPERM;
			goto out;
		}
		if (!warned_readable) {
			log_info("%s %s: mode %04o in a Secret volume (readable in this container "
				 "only)",
				 what, path, (unsigned int)(st.st_mode & 07777));
			warned_readable = true;
		}
	}
	n = read(fd, buf, sizeof(buf));
	if (n < 0) {
		ret = -errno;
		log_err_r(ret, "%s %s: read", what, path);
		goto out;
	}
	ret = secret_take(what, path, buf, (size_t)n, max_len, out);
out:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return ret;
}

int secret_env_read(const char *what, const char *name, size_t max_len, char **out)
{
	char *v = getenv(name);
	int ret;

	*out = NULL;
	if (!v) {
		log_err("%s %s: the environment variable is not set", what, name);
		return -ENOENT;
	}
	ret = secret_take(what, name, v, strlen(v), max_len, out);
	/* The bytes getenv points at are the process's environment block,
	 * which /proc/<pid>/environ shows: zeroed, then the variable goes. */
	sodium_memzero(v, strlen(v));
	unsetenv(name);
	return ret;
}

struct secret_watch {
	uv_fs_poll_t poll;
	char *what, *path;
	size_t max_len;
	uint8_t hash[crypto_generichash_BYTES]; /* of the secret in use */
	secret_changed_fn *cb;
	void *arg;
};

static void hash_of(const char *s, uint8_t out[crypto_generichash_BYTES])
{
	crypto_generichash(out, crypto_generichash_BYTES, (const unsigned char *)s, strlen(s), NULL,
			   0);
}

static void on_poll(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *cur)
{
	struct secret_watch *sw = h->data;
	uint8_t hash[crypto_generichash_BYTES];
	char *secret = NULL;

	(void)prev;
	(void)cur;
	if (status < 0) {
		log_warn("%s %s: %s: the secret in use stays", sw->what, sw->path,
			 uv_strerror(status));
		return;
	}
	if (secret_file_read(sw->what, sw->path, sw->max_len, &secret) < 0) {
		log_warn("%s %s: changed, but does not read well (above): the secret in use "
			 "stays",
			 sw->what, sw->path);
		return;
	}
	hash_of(secret, hash);
	if (sodium_memcmp(hash, sw->hash, sizeof(hash)) == 0) {
		sodium_free(secret);
		return;
	}
	memcpy(sw->hash, hash, sizeof(hash));
	log_info("%s %s: the secret changed: in use from now on", sw->what, sw->path);
	sw->cb(sw->arg, secret);
}

int secret_watch_start(uv_loop_t *loop, const char *what, const char *path, size_t max_len,
		       unsigned int interval_ms, const char *current, secret_changed_fn *cb,
		       void *arg, struct secret_watch **out)
{
	struct secret_watch *sw = xcalloc(1, sizeof(*sw));
	int ret;

	sw->what = xstrdup(what);
	sw->path = xstrdup(path);
	sw->max_len = max_len;
	sw->cb = cb;
	sw->arg = arg;
	hash_of(current, sw->hash);
	ret = uv_fs_poll_init(loop, &sw->poll);
	if (ret == 0) {
		sw->poll.data = sw;
		ret = uv_fs_poll_start(&sw->poll, on_poll, path, interval_ms);
		if (ret < 0) {
			secret_watch_stop(sw);
			return ret;
		}
		*out = sw;
		return 0;
	}
	free(sw->what);
	free(sw->path);
	free(sw);
	return ret;
}

static void watch_closed(uv_handle_t *h)
{
	struct secret_watch *sw = h->data;

	free(sw->what);
	free(sw->path);
	free(sw);
}

void secret_watch_stop(struct secret_watch *sw)
{
	if (sw)
		uv_close((uv_handle_t *)&sw->poll, watch_closed);
}
