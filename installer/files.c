/* Atomic file operations for the installer (files.h). */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

int files_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/* The directory part of path, into buf. */
static const char *dir_of(const char *path, char *buf, size_t n)
{
	if (strscpy(buf, path, n) < 0)
		return ".";
	return dirname(buf);
}

int files_read(const char *path, size_t max, char **out, size_t *len, mode_t *mode, uid_t *uid,
	       gid_t *gid)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0, cap;
	ssize_t n;
	int fd, ret = 0;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		ret = -EFBIG;
		goto out;
	}
	/* Read to EOF, not to st_size: a non-atomic writer (Calico's) may
	 * still be appending. The buffer grows up to one byte past max,
	 * which is enough to tell the file grew too large. */
	cap = (size_t)st.st_size + 1;
	buf = xmalloc(cap + 1);
	for (;;) {
		if (got == cap) {
			if (cap > max) {
				ret = -EFBIG;
				goto out;
			}
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				abort();
		}
		n = read(fd, buf + got, cap - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got > max) {
		ret = -EFBIG;
		goto out;
	}
	buf[got] = '\0';
	if (mode)
		*mode = st.st_mode & 07777;
	if (uid)
		*uid = st.st_uid;
	if (gid)
		*gid = st.st_gid;
	*out = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

bool files_same(const char *path, const char *buf, size_t len, mode_t mode)
{
	char *old = NULL;
	size_t old_len;
	mode_t old_mode;
	bool same;

	if (files_read(path, len, &old, &old_len, &old_mode, NULL, NULL) < 0)
		return false;
	same = old_len == len && old_mode == mode && memcmp(old, buf, len) == 0;
	free(old);
	return same;
}

/* A temporary name beside path: "<dir>/.<base>.tmp.<pid>". */
static int tmp_name(const char *path, char *out, size_t n)
{
	char d[PATH_MAX], b[PATH_MAX];
	int len;

	if (strscpy(d, path, sizeof(d)) < 0 || strscpy(b, path, sizeof(b)) < 0)
		return -ENAMETOOLONG;
	len = snprintf(out, n, "%s/.%s.tmp.%d", dirname(d), basename(b), (int)getpid());
	return len < 0 || (size_t)len >= n ? -ENAMETOOLONG : 0;
}

/* Writes buf to a fresh temporary file beside path, then renames it over
 * path: the sequence of §12.4 (mode before the rename, fsyncs). */
static int replace(const char *path, const char *buf, size_t len, mode_t mode, uid_t uid, gid_t gid)
{
	char tmp[PATH_MAX], d[PATH_MAX];
	int fd, ret;

	ret = tmp_name(path, tmp, sizeof(tmp));
	if (ret < 0)
		return ret;
	(void)unlink(tmp); /* a leftover of a killed run with our pid */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	ret = write_all(fd, buf, len);
	if (ret == 0 && (uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)
		ret = -errno;
	/* The final mode before the rename: never a moment where the
	 * binary is in place but not executable (Calico's installer's bug). */
	if (ret == 0 && fchmod(fd, mode) < 0)
		ret = -errno;
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0) {
		(void)unlink(tmp);
		return ret;
	}
	return files_sync_dir(dir_of(path, d, sizeof(d)));
}

int files_write(const char *path, const char *buf, size_t len, mode_t mode, uid_t uid, gid_t gid,
		bool *written)
{
	int ret;

	if (written)
		*written = false;
	if (files_same(path, buf, len, mode))
		return 0;
	ret = replace(path, buf, len, mode, uid, gid);
	if (ret < 0) {
		log_err_r(ret, "write %s", path);
		return ret;
	}
	if (written)
		*written = true;
	return 0;
}

int files_copy(const char *src, const char *dst, mode_t mode, bool *written)
{
	char *buf;
	size_t len;
	int ret;

	ret = files_read(src, FILES_MAX_COPY, &buf, &len, NULL, NULL, NULL);
	if (ret < 0) {
		log_err_r(ret, "read %s", src);
		return ret;
	}
	ret = files_write(dst, buf, len, mode, (uid_t)-1, (gid_t)-1, written);
	free(buf);
	return ret;
}

int files_remove(const char *path)
{
	char d[PATH_MAX];

	if (unlink(path) < 0) {
		int ret = -errno;

		if (ret == -ENOENT)
			return 0;
		log_err_r(ret, "remove %s", path);
		return ret;
	}
	return files_sync_dir(dir_of(path, d, sizeof(d)));
}

int files_path(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(out, n, fmt, ap);
	va_end(ap);
	if (len < 0 || (size_t)len >= n) {
		if (n)
			out[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}
