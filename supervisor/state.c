/* The state directory of docs/design.md §3. Every path below the top
 * directory is opened relative to a directory fd with O_NOFOLLOW, so a
 * symlink planted in the tree is never followed; every name that comes from a
 * record (pod UID, key, job id) is checked by valid_name()/valid_ifname()
 * before it becomes a path component. */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "mem.h"
#include "record.h"
#include "state_internal.h"
#include "validate.h"

enum state_limits {
	STATE_FILE_MODE = 0600,
	STATE_DIR_MODE = 0700,
	/* A temp file in tombstones/ may belong to a CNI plugin writing it
	 * right now; only older ones are leftovers. */
	STATE_TEMP_GRACE_S = 60,
	/* Attempts at a free name in damaged/ or quarantine/. */
	STATE_ASIDE_TRIES = 100,
	/* Longest job id that still leaves room for ".pb" and the temp name. */
	STATE_JOB_ID_MAX = 200,
};

/* Reads a one-line id file ("<32 hex>\n", a UUID) into out. */
static int read_id_file(const char *path, char *out, size_t n)
{
	char buf[128];
	ssize_t len;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	if (len < 0)
		ret = -errno;
	close(fd);
	if (ret < 0)
		return ret;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (!valid_name(buf, n - 1))
		return -EINVAL;
	memcpy(out, buf, (size_t)len + 1);
	return 0;
}

int state_boot_id(char *out, size_t len)
{
	return read_id_file("/proc/sys/kernel/random/boot_id", out, len);
}

int state_origin_detect(struct state_origin *origin)
{
	static const char *const machine_id_paths[] = {"/etc/machine-id",
						       "/var/lib/dbus/machine-id"};
	const char *env;
	int ret = -ENOENT;

	for (size_t i = 0; i < sizeof(machine_id_paths) / sizeof(machine_id_paths[0]); i++) {
		ret = read_id_file(machine_id_paths[i], origin->machine_id,
				   sizeof(origin->machine_id));
		if (ret == 0)
			break;
	}
	if (ret < 0) {
		log_err_r(ret, "no usable machine id in /etc/machine-id or "
			       "/var/lib/dbus/machine-id");
		return ret;
	}
	ret = state_boot_id(origin->boot_id, sizeof(origin->boot_id));
	if (ret < 0) {
		log_err_r(ret, "cannot read /proc/sys/kernel/random/boot_id");
		return ret;
	}
	if (origin->node_name[0] == '\0') {
		env = getenv("NODE_NAME");
		if (env && env[0]) {
			if (strscpy(origin->node_name, env, sizeof(origin->node_name)) < 0)
				origin->node_name[0] = '\0';
		} else if (gethostname(origin->node_name, sizeof(origin->node_name)) < 0) {
			ret = -errno;
			log_err_r(ret, "gethostname");
			return ret;
		}
		origin->node_name[sizeof(origin->node_name) - 1] = '\0';
	}
	if (!valid_name(origin->node_name, sizeof(origin->node_name) - 1)) {
		log_err("node name is empty or not of [A-Za-z0-9_.-]: set --node-name or "
			"NODE_NAME");
		return -EINVAL;
	}
	return 0;
}

static bool valid_pod_uid(const char *uid)
{
	return valid_name(uid, POD_FIELD_MAX_LEN);
}

int state__open_subdir(int parent, const char *name, bool create, int *out, bool *created)
{
	int fd;

	*out = -1;
	if (created)
		*created = false;
	if (create) {
		if (mkdirat(parent, name, STATE_DIR_MODE) == 0) {
			if (created)
				*created = true;
		} else if (errno != EEXIST) {
			return -errno;
		}
	}
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (create && fchmod(fd, STATE_DIR_MODE) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

/* mkdir -p: missing parents are created 0700 too (they hold nothing else). */
static int mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	int ret = 0;

	for (char *s = p + 1;; s++) {
		char c = *s;

		if (c != '/' && c != '\0')
			continue;
		*s = '\0';
		if (mkdir(p, STATE_DIR_MODE) < 0 && errno != EEXIST) {
			ret = -errno;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	free(p);
	return ret;
}

void state__close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

int state_open(const char *dir, const struct state_origin *origin, struct state **out)
{
	struct state *st;
	int ret;

	*out = NULL;
	if (!dir || dir[0] != '/' || !valid_abs_path(dir))
		return -EINVAL;
	st = xcalloc(1, sizeof(*st));
	st->dir = xstrdup(dir);
	st->origin = *origin;
	st->lock_fd = st->dir_fd = st->pods_fd = st->tombstones_fd = st->jobs_fd = -1;
	st->damaged_fd = st->quarantine_fd = -1;

	ret = mkdir_p(dir);
	if (ret < 0) {
		log_err_r(ret, "create %s", dir);
		goto err;
	}
	/* The top directory may be a symlink (a hostPath); nothing below it. */
	st->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->dir_fd < 0 || fchmod(st->dir_fd, STATE_DIR_MODE) < 0) {
		ret = -errno;
		log_err_r(ret, "open %s", dir);
		goto err;
	}
	st->lock_fd = openat(st->dir_fd, "supervisor.lock",
			     O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, STATE_FILE_MODE);
	if (st->lock_fd < 0 || fchmod(st->lock_fd, STATE_FILE_MODE) < 0) {
		ret = -errno;
		log_err_r(ret, "open %s/supervisor.lock", dir);
		goto err;
	}
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		ret = -errno;
		if (ret == -EWOULDBLOCK)
			log_err("%s/supervisor.lock is held: another supervisor runs", dir);
		else
			log_err_r(ret, "flock %s/supervisor.lock", dir);
		goto err;
	}
	struct {
		const char *name;
		int *fd;
	} subdirs[] = {
		{"pods", &st->pods_fd},
		{"tombstones", &st->tombstones_fd},
		{"jobs", &st->jobs_fd},
		{"damaged", &st->damaged_fd},
		{"quarantine", &st->quarantine_fd},
	};
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		ret = state__open_subdir(st->dir_fd, subdirs[i].name, true, subdirs[i].fd, NULL);
		if (ret < 0) {
			log_err_r(ret, "open %s/%s", dir, subdirs[i].name);
			goto err;
		}
	}
	if (fsync(st->dir_fd) < 0) {
		ret = -errno;
		goto err;
	}
	*out = st;
	return 0;
err:
	state_close(st);
	return ret;
}

void state_close(struct state *st)
{
	if (!st)
		return;
	state__close_fd(&st->quarantine_fd);
	state__close_fd(&st->damaged_fd);
	state__close_fd(&st->jobs_fd);
	state__close_fd(&st->tombstones_fd);
	state__close_fd(&st->pods_fd);
	state__close_fd(&st->dir_fd);
	/* Closing the last fd of the open file description drops the flock. */
	state__close_fd(&st->lock_fd);
	free(st->dir);
	free(st);
}

const char *state_dir(const struct state *st)
{
	return st->dir;
}

const struct state_origin *state_get_origin(const struct state *st)
{
	return &st->origin;
}

/* ---- walking the directory ---- */

bool state__is_temp_name(const char *name)
{
	return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}

bool state__has_record_suffix(const char *name)
{
	size_t len = strlen(name), slen = sizeof(STATE_RECORD_SUFFIX) - 1;

	return len > slen && !strcmp(name + len - slen, STATE_RECORD_SUFFIX);
}

int state__list_dir(int dirfd, char ***names, size_t *n)
{
	DIR *d;
	struct dirent *de;
	size_t cap = 0;
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*names = NULL;
	*n = 0;
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*names = xrealloc(*names, cap * sizeof(**names));
		}
		(*names)[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	return 0;
}

void state__free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

void state__remove_temp(int dirfd, const char *name, const char *rel, bool grace)
{
	char esc[PATH_MAX];
	struct stat sb;

	if (grace && fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
	    time(NULL) - sb.st_mtime < STATE_TEMP_GRACE_S)
		return;
	log_escape(esc, sizeof(esc), rel, strlen(rel));
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		log_warn_r(-errno, "remove leftover temp file %s", esc);
	else
		log_info("removed leftover temp file %s", esc);
}

void state__move_aside(struct state *st, bool quarantine, int dirfd, const char *name,
		       const char *rel, const char *why)
{
	const char *where = quarantine ? "quarantine" : "damaged";
	int dest = quarantine ? st->quarantine_fd : st->damaged_fd;
	char base[NAME_MAX + 1], target[NAME_MAX + 1], esc[PATH_MAX], esc_target[4 * NAME_MAX + 1];
	long long now = (long long)time(NULL);
	size_t len = strlen(rel);
	int n, ret = -EEXIST;

	if (len + 24 <= NAME_MAX) {
		for (size_t i = 0; i <= len; i++)
			base[i] = rel[i] == '/' ? '%' : rel[i];
	} else {
		uint8_t digest[crypto_hash_sha256_BYTES];

		crypto_hash_sha256(digest, (const uint8_t *)rel, len);
		memcpy(base, "h_", 2);
		sodium_bin2hex(base + 2, sizeof(base) - 2, digest, sizeof(digest));
	}
	log_escape(esc, sizeof(esc), rel, len);
	for (int i = 0; i < STATE_ASIDE_TRIES && ret == -EEXIST; i++) {
		if (i == 0)
			n = snprintf(target, sizeof(target), "%s.%lld", base, now);
		else
			n = snprintf(target, sizeof(target), "%s.%lld-%d", base, now, i);
		if (n < 0 || (size_t)n >= sizeof(target))
			break;
		ret = renameat2(dirfd, name, dest, target, RENAME_NOREPLACE) < 0 ? -errno : 0;
		if (ret == -EINVAL) /* a filesystem without RENAME_NOREPLACE */
			ret = renameat(dirfd, name, dest, target) < 0 ? -errno : 0;
	}
	if (ret < 0) {
		log_err_r(ret, "%s: %s; moving it to %s/ failed", esc, why, where);
		return;
	}
	log_escape(esc_target, sizeof(esc_target), target, strlen(target));
	log_warn("%s: %s; moved to %s/%s", esc, why, where, esc_target);
}

bool state__is_foreign(const struct state *st, const char *machine_id, const char *node_name)
{
	return strcmp(machine_id, st->origin.machine_id) || strcmp(node_name, st->origin.node_name);
}

void state__aside(struct state_load_ctx *c, bool quarantine, int dirfd, const char *name,
		  const char *rel, const char *why)
{
	state__move_aside(c->st, quarantine, dirfd, name, rel, why);
	if (quarantine)
		c->quarantined++;
	else
		c->damaged++;
}

void state__read_failed(int err, const char *rel, const char *why)
{
	char esc[PATH_MAX];

	log_escape(esc, sizeof(esc), rel, strlen(rel));
	log_warn_r(err, "%s: %s; skipped", esc, why);
}

static void load_pod(struct state_load_ctx *c, const char *uid)
{
	char *rel = xasprintf("pods/%s", uid);
	char **names = NULL;
	size_t n = 0;
	int pod_fd = -1, att_fd = -1, ret;

	if (state__is_temp_name(uid)) {
		state__remove_temp(c->st->pods_fd, uid, rel, false);
		goto out;
	}
	if (!valid_pod_uid(uid)) {
		state__aside(c, false, c->st->pods_fd, uid, rel, "not a pod UID");
		goto out;
	}
	ret = state__open_subdir(c->st->pods_fd, uid, false, &pod_fd, NULL);
	if (ret == -ENOTDIR || ret == -ELOOP) {
		state__aside(c, false, c->st->pods_fd, uid, rel, "not a directory");
		goto out;
	}
	if (ret < 0) {
		state__read_failed(ret, rel, "open");
		goto out;
	}
	ret = state__list_dir(pod_fd, &names, &n);
	if (ret < 0) {
		state__read_failed(ret, rel, "list");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (state__is_temp_name(names[i])) {
			char *trel = xasprintf("%s/%s", rel, names[i]);

			state__remove_temp(pod_fd, names[i], trel, false);
			free(trel);
		}
	}
	state__load_identity(c, pod_fd, uid);
	state__free_names(names, n);
	names = NULL;
	n = 0;

	/* An attachment is passed on even when its pod has no identity: the
	 * caller must still tear down what it describes. */
	ret = state__open_subdir(pod_fd, STATE_ATTACHMENTS_NAME, false, &att_fd, NULL);
	if (ret == -ENOENT)
		goto out;
	if (ret < 0) {
		state__read_failed(ret, rel, "open attachments");
		goto out;
	}
	ret = state__list_dir(att_fd, &names, &n);
	if (ret < 0) {
		state__read_failed(ret, rel, "list attachments");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		state__load_attachment(c, att_fd, uid, names[i]);
out:
	state__free_names(names, n);
	state__close_fd(&att_fd);
	state__close_fd(&pod_fd);
	free(rel);
}

static void load_tombstone(struct state_load_ctx *c, const char *name)
{
	char *rel = xasprintf("tombstones/%s", name);
	const char *why = "";
	int err, fd = c->st->tombstones_fd;
	Tscni__Tombstone *tomb;

	if (state__is_temp_name(name)) {
		/* The plugin writes here without our lock. */
		state__remove_temp(fd, name, rel, true);
		goto out;
	}
	tomb = record_read_tombstone(fd, name, &err, &why);
	if (!tomb) {
		if (err == -EBADMSG)
			state__aside(c, false, fd, name, rel, why);
		else if (err != -ENOENT)
			state__read_failed(err, rel, why);
		goto out;
	}
	if (c->cb->tombstone)
		c->cb->tombstone(c->cb->arg, tomb, name);
	tscni__tombstone__free_unpacked(tomb, NULL);
out:
	free(rel);
}

static void load_job(struct state_load_ctx *c, const char *name)
{
	char *rel = xasprintf("jobs/%s", name);
	const char *why = "";
	int err, fd = c->st->jobs_fd;
	Tscni__Job *job;
	size_t len;

	if (state__is_temp_name(name)) {
		state__remove_temp(fd, name, rel, false);
		goto out;
	}
	if (!state__has_record_suffix(name)) {
		state__aside(c, false, fd, name, rel, "not a record file name");
		goto out;
	}
	job = record_read_job(fd, name, &err, &why);
	if (!job) {
		if (err == -EBADMSG)
			state__aside(c, false, fd, name, rel, why);
		else if (err != -ENOENT)
			state__read_failed(err, rel, why);
		goto out;
	}
	len = strlen(job->id);
	if (strncmp(name, job->id, len) || strcmp(name + len, STATE_RECORD_SUFFIX))
		state__aside(c, false, fd, name, rel, "file name does not match the job id");
	else if (c->cb->job)
		c->cb->job(c->cb->arg, job);
	tscni__job__free_unpacked(job, NULL);
out:
	free(rel);
}

int state_load(struct state *st, const struct state_load_cb *cb, unsigned int *n_damaged,
	       unsigned int *n_quarantined)
{
	static const struct state_load_cb no_cb;
	struct state_load_ctx c = {.st = st, .cb = cb ? cb : &no_cb};
	char **names;
	size_t n;
	int ret;

	ret = state__list_dir(st->pods_fd, &names, &n);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		load_pod(&c, names[i]);
	state__free_names(names, n);

	ret = state__list_dir(st->tombstones_fd, &names, &n);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		load_tombstone(&c, names[i]);
	state__free_names(names, n);

	ret = state__list_dir(st->jobs_fd, &names, &n);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		load_job(&c, names[i]);
	state__free_names(names, n);
	ret = 0;
out:
	/* What was moved aside stays moved aside after a crash. */
	if (c.damaged)
		fsync(st->damaged_fd);
	if (c.quarantined)
		fsync(st->quarantine_fd);
	if (n_damaged)
		*n_damaged = c.damaged;
	if (n_quarantined)
		*n_quarantined = c.quarantined;
	if (ret < 0)
		log_err_r(ret, "list %s", st->dir);
	return ret;
}

/* ---- single records ---- */

int state__open_pod_sync(struct state *st, const char *uid, bool create, int *pod_fd, int *att_fd,
			 bool att_later)
{
	bool created;
	int ret;

	*pod_fd = -1;
	if (att_fd)
		*att_fd = -1;
	if (!valid_pod_uid(uid))
		return -EINVAL;
	ret = state__open_subdir(st->pods_fd, uid, create, pod_fd, &created);
	if (ret < 0)
		return ret;
	if (created && fsync(st->pods_fd) < 0)
		goto err;
	if (!att_fd)
		return 0;
	ret = state__open_subdir(*pod_fd, STATE_ATTACHMENTS_NAME, create, att_fd, &created);
	if (ret < 0) {
		state__close_fd(pod_fd);
		return ret;
	}
	if (created && !att_later && fsync(*pod_fd) < 0)
		goto err;
	return 0;
err:
	ret = -errno;
	state__close_fd(pod_fd);
	if (att_fd)
		state__close_fd(att_fd);
	return ret;
}

int state__open_pod(struct state *st, const char *uid, bool create, int *pod_fd, int *att_fd)
{
	return state__open_pod_sync(st, uid, create, pod_fd, att_fd, false);
}

/* Removes dirfd/name (a single plain component) and makes that durable. */
static int remove_file(int dirfd, const char *name)
{
	if (!name || !name[0] || name[0] == '.' || strchr(name, '/') || strlen(name) > NAME_MAX)
		return -EINVAL;
	if (unlinkat(dirfd, name, 0) < 0)
		return errno == ENOENT ? 0 : -errno;
	return fsync(dirfd) < 0 ? -errno : 0;
}

int state_tombstone_remove(struct state *st, const char *filename)
{
	return remove_file(st->tombstones_fd, filename);
}

static int job_file(const char *id, char *buf, size_t n)
{
	if (!valid_name(id, STATE_JOB_ID_MAX))
		return -EINVAL;
	snprintf(buf, n, "%s%s", id, STATE_RECORD_SUFFIX);
	return 0;
}

int state_job_put(struct state *st, const Tscni__Job *job)
{
	char name[STATE_JOB_ID_MAX + sizeof(STATE_RECORD_SUFFIX)];
	int ret;

	if (!job)
		return -EINVAL;
	ret = job_file(job->id, name, sizeof(name));
	if (ret < 0)
		return ret;
	return record_write_job(st->jobs_fd, name, job);
}

int state_job_remove(struct state *st, const char *id)
{
	char name[STATE_JOB_ID_MAX + sizeof(STATE_RECORD_SUFFIX)];
	int ret = job_file(id, name, sizeof(name));

	if (ret < 0)
		return ret;
	return remove_file(st->jobs_fd, name);
}
