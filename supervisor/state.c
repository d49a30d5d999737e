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

static const char identity_name[] = "identity.pb";
static const char attachments_name[] = "attachments";
static const char worker_sock_name[] = "worker.sock";
static const char record_suffix[] = ".pb";

struct state {
	char *dir;
	struct state_origin origin;
	int lock_fd;
	int dir_fd;
	int pods_fd;
	int tombstones_fd;
	int jobs_fd;
	int damaged_fd;
	int quarantine_fd;
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

/* Creates (0700) and opens a subdirectory; an existing one is brought back to
 * 0700. *created tells whether the parent needs an fsync. */
static int open_subdir(int parent, const char *name, bool create, int *out, bool *created)
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

static void close_fd(int *fd)
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
		ret = open_subdir(st->dir_fd, subdirs[i].name, true, subdirs[i].fd, NULL);
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
	close_fd(&st->quarantine_fd);
	close_fd(&st->damaged_fd);
	close_fd(&st->jobs_fd);
	close_fd(&st->tombstones_fd);
	close_fd(&st->pods_fd);
	close_fd(&st->dir_fd);
	/* Closing the last fd of the open file description drops the flock. */
	close_fd(&st->lock_fd);
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

static bool is_temp_name(const char *name)
{
	return name[0] == '.' && strstr(name, ".tmp.") != NULL;
}

static bool has_record_suffix(const char *name)
{
	size_t len = strlen(name), slen = sizeof(record_suffix) - 1;

	return len > slen && !strcmp(name + len - slen, record_suffix);
}

/* The names in a directory (not "." and ".."), read in full before the caller
 * renames or unlinks any of them. */
static int list_dir(int dirfd, char ***names, size_t *n)
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

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Deletes a temp file left by a write that never reached its rename. */
static void remove_temp(int dirfd, const char *name, const char *rel, bool grace)
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

/* Moves dirfd/name to damaged/ or quarantine/ as
 * "<relative path, '/' as '%'>.<unix time>", or as "h_<sha256 of the path>.<time>"
 * when that would be too long, adding "-<n>" if the name is taken. */
static void move_aside(struct state *st, bool quarantine, int dirfd, const char *name,
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

static bool is_foreign(const struct state *st, const char *machine_id, const char *node_name)
{
	return strcmp(machine_id, st->origin.machine_id) || strcmp(node_name, st->origin.node_name);
}

static void identity_free(Tscni__Identity *id)
{
	if (!id)
		return;
	if (id->machine_private.data)
		sodium_memzero(id->machine_private.data, id->machine_private.len);
	if (id->node_private.data)
		sodium_memzero(id->node_private.data, id->node_private.len);
	tscni__identity__free_unpacked(id, NULL);
}

struct load_ctx {
	struct state *st;
	const struct state_load_cb *cb;
	unsigned int damaged;
	unsigned int quarantined;
};

static void aside(struct load_ctx *c, bool quarantine, int dirfd, const char *name, const char *rel,
		  const char *why)
{
	move_aside(c->st, quarantine, dirfd, name, rel, why);
	if (quarantine)
		c->quarantined++;
	else
		c->damaged++;
}

/* A read failure that is not damage (EIO, EACCES) leaves the file alone. */
static void read_failed(int err, const char *rel, const char *why)
{
	char esc[PATH_MAX];

	log_escape(esc, sizeof(esc), rel, strlen(rel));
	log_warn_r(err, "%s: %s; skipped", esc, why);
}

static void load_identity(struct load_ctx *c, int pod_fd, const char *uid)
{
	char *rel = xasprintf("pods/%s/%s", uid, identity_name);
	const char *why = "";
	int err;
	Tscni__Identity *id = record_read_identity(pod_fd, identity_name, &err, &why);

	if (!id) {
		if (err == -EBADMSG)
			aside(c, false, pod_fd, identity_name, rel, why);
		else if (err != -ENOENT)
			read_failed(err, rel, why);
	} else if (strcmp(id->pod_uid, uid)) {
		aside(c, false, pod_fd, identity_name, rel, "pod_uid differs from its directory");
	} else if (is_foreign(c->st, id->machine_id, id->node_name)) {
		aside(c, true, pod_fd, identity_name, rel,
		      "written on another machine or node name");
	} else if (c->cb->identity) {
		c->cb->identity(c->cb->arg, id);
	}
	identity_free(id);
	free(rel);
}

static void load_attachment(struct load_ctx *c, int att_fd, const char *uid, const char *name)
{
	char *rel = xasprintf("pods/%s/%s/%s", uid, attachments_name, name);
	char want[RECORD_KEYNAME_LEN + sizeof(record_suffix)];
	const char *why = "";
	int err;
	Tscni__Attachment *att = NULL;

	if (is_temp_name(name)) {
		remove_temp(att_fd, name, rel, false);
		goto out;
	}
	if (!has_record_suffix(name)) {
		aside(c, false, att_fd, name, rel, "not a record file name");
		goto out;
	}
	att = record_read_attachment(att_fd, name, &err, &why);
	if (!att) {
		if (err == -EBADMSG)
			aside(c, false, att_fd, name, rel, why);
		else if (err != -ENOENT)
			read_failed(err, rel, why);
		goto out;
	}
	if (strcmp(att->pod_uid, uid)) {
		aside(c, false, att_fd, name, rel, "pod_uid differs from its directory");
		goto out;
	}
	/* state_attachment_remove() finds a record by its key's file name. */
	if (!record_key_filename(att->key->network, att->key->container_id, att->key->ifname, want,
				 sizeof(want)) ||
	    strcmp(strcat(want, record_suffix), name)) {
		aside(c, false, att_fd, name, rel, "file name does not match its key");
		goto out;
	}
	if (is_foreign(c->st, att->machine_id, att->node_name)) {
		aside(c, true, att_fd, name, rel, "written on another machine or node name");
		goto out;
	}
	if (c->cb->attachment)
		c->cb->attachment(c->cb->arg, att);
out:
	if (att)
		tscni__attachment__free_unpacked(att, NULL);
	free(rel);
}

static void load_pod(struct load_ctx *c, const char *uid)
{
	char *rel = xasprintf("pods/%s", uid);
	char **names = NULL;
	size_t n = 0;
	int pod_fd = -1, att_fd = -1, ret;

	if (is_temp_name(uid)) {
		remove_temp(c->st->pods_fd, uid, rel, false);
		goto out;
	}
	if (!valid_pod_uid(uid)) {
		aside(c, false, c->st->pods_fd, uid, rel, "not a pod UID");
		goto out;
	}
	ret = open_subdir(c->st->pods_fd, uid, false, &pod_fd, NULL);
	if (ret == -ENOTDIR || ret == -ELOOP) {
		aside(c, false, c->st->pods_fd, uid, rel, "not a directory");
		goto out;
	}
	if (ret < 0) {
		read_failed(ret, rel, "open");
		goto out;
	}
	ret = list_dir(pod_fd, &names, &n);
	if (ret < 0) {
		read_failed(ret, rel, "list");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (is_temp_name(names[i])) {
			char *trel = xasprintf("%s/%s", rel, names[i]);

			remove_temp(pod_fd, names[i], trel, false);
			free(trel);
		}
	}
	load_identity(c, pod_fd, uid);
	free_names(names, n);
	names = NULL;
	n = 0;

	/* An attachment is passed on even when its pod has no identity: the
	 * caller must still tear down what it describes. */
	ret = open_subdir(pod_fd, attachments_name, false, &att_fd, NULL);
	if (ret == -ENOENT)
		goto out;
	if (ret < 0) {
		read_failed(ret, rel, "open attachments");
		goto out;
	}
	ret = list_dir(att_fd, &names, &n);
	if (ret < 0) {
		read_failed(ret, rel, "list attachments");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		load_attachment(c, att_fd, uid, names[i]);
out:
	free_names(names, n);
	close_fd(&att_fd);
	close_fd(&pod_fd);
	free(rel);
}

static void load_tombstone(struct load_ctx *c, const char *name)
{
	char *rel = xasprintf("tombstones/%s", name);
	const char *why = "";
	int err, fd = c->st->tombstones_fd;
	Tscni__Tombstone *tomb;

	if (is_temp_name(name)) {
		/* The plugin writes here without our lock. */
		remove_temp(fd, name, rel, true);
		goto out;
	}
	tomb = record_read_tombstone(fd, name, &err, &why);
	if (!tomb) {
		if (err == -EBADMSG)
			aside(c, false, fd, name, rel, why);
		else if (err != -ENOENT)
			read_failed(err, rel, why);
		goto out;
	}
	if (c->cb->tombstone)
		c->cb->tombstone(c->cb->arg, tomb, name);
	tscni__tombstone__free_unpacked(tomb, NULL);
out:
	free(rel);
}

static void load_job(struct load_ctx *c, const char *name)
{
	char *rel = xasprintf("jobs/%s", name);
	const char *why = "";
	int err, fd = c->st->jobs_fd;
	Tscni__Job *job;
	size_t len;

	if (is_temp_name(name)) {
		remove_temp(fd, name, rel, false);
		goto out;
	}
	if (!has_record_suffix(name)) {
		aside(c, false, fd, name, rel, "not a record file name");
		goto out;
	}
	job = record_read_job(fd, name, &err, &why);
	if (!job) {
		if (err == -EBADMSG)
			aside(c, false, fd, name, rel, why);
		else if (err != -ENOENT)
			read_failed(err, rel, why);
		goto out;
	}
	len = strlen(job->id);
	if (strncmp(name, job->id, len) || strcmp(name + len, record_suffix))
		aside(c, false, fd, name, rel, "file name does not match the job id");
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
	struct load_ctx c = {.st = st, .cb = cb ? cb : &no_cb};
	char **names;
	size_t n;
	int ret;

	ret = list_dir(st->pods_fd, &names, &n);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		load_pod(&c, names[i]);
	free_names(names, n);

	ret = list_dir(st->tombstones_fd, &names, &n);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		load_tombstone(&c, names[i]);
	free_names(names, n);

	ret = list_dir(st->jobs_fd, &names, &n);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		load_job(&c, names[i]);
	free_names(names, n);
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

/* Opens pods/<uid> (and its attachments/ when att_fd is given), creating
 * them when asked; a created directory is made durable in its parent, but
 * attachments/ not when att_later: the caller fsyncs pods/<uid> itself. */
static int open_pod_sync(struct state *st, const char *uid, bool create, int *pod_fd, int *att_fd,
			 bool att_later)
{
	bool created;
	int ret;

	*pod_fd = -1;
	if (att_fd)
		*att_fd = -1;
	if (!valid_pod_uid(uid))
		return -EINVAL;
	ret = open_subdir(st->pods_fd, uid, create, pod_fd, &created);
	if (ret < 0)
		return ret;
	if (created && fsync(st->pods_fd) < 0)
		goto err;
	if (!att_fd)
		return 0;
	ret = open_subdir(*pod_fd, attachments_name, create, att_fd, &created);
	if (ret < 0) {
		close_fd(pod_fd);
		return ret;
	}
	if (created && !att_later && fsync(*pod_fd) < 0)
		goto err;
	return 0;
err:
	ret = -errno;
	close_fd(pod_fd);
	if (att_fd)
		close_fd(att_fd);
	return ret;
}

static int open_pod(struct state *st, const char *uid, bool create, int *pod_fd, int *att_fd)
{
	return open_pod_sync(st, uid, create, pod_fd, att_fd, false);
}

Tscni__Identity *state_identity_get(struct state *st, const char *pod_uid, int *err)
{
	const char *why = "";
	char *rel;
	Tscni__Identity *id;
	int pod_fd, ret;

	ret = open_pod(st, pod_uid, false, &pod_fd, NULL);
	if (ret < 0) {
		*err = ret;
		return NULL;
	}
	id = record_read_identity(pod_fd, identity_name, err, &why);
	if (!id && *err != -EBADMSG)
		goto out;
	rel = xasprintf("pods/%s/%s", pod_uid, identity_name);
	if (!id) {
		move_aside(st, false, pod_fd, identity_name, rel, why);
		*err = -ENOENT;
	} else if (strcmp(id->pod_uid, pod_uid)) {
		move_aside(st, false, pod_fd, identity_name, rel,
			   "pod_uid differs from its directory");
		*err = -ENOENT;
	} else if (is_foreign(st, id->machine_id, id->node_name)) {
		move_aside(st, true, pod_fd, identity_name, rel,
			   "written on another machine or node name");
		*err = -ENOENT;
	}
	if (*err < 0) {
		identity_free(id);
		id = NULL;
	}
	free(rel);
out:
	close(pod_fd);
	return id;
}

int state_identity_put(struct state *st, const Tscni__Identity *id)
{
	const char *why;
	int pod_fd, att_fd, ret;

	if (validate_identity(id, &why) < 0 || is_foreign(st, id->machine_id, id->node_name))
		return -EINVAL;
	/* attachments/ too, made durable by the fsync of pods/<uid> that
	 * follows the identity's rename: a new pod's first ADD then pays one
	 * fsync of that directory, not two. */
	ret = open_pod_sync(st, id->pod_uid, true, &pod_fd, &att_fd, true);
	if (ret < 0)
		return ret;
	close(att_fd);
	ret = record_write_identity(pod_fd, identity_name, id);
	close(pod_fd);
	return ret;
}

/* Counts the records in attachments/ (temp files excluded). */
static int count_records(int dirfd)
{
	char **names;
	size_t n;
	int ret = list_dir(dirfd, &names, &n), count = 0;

	if (ret < 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (!is_temp_name(names[i]) && has_record_suffix(names[i]))
			count++;
	free_names(names, n);
	return count;
}

/* Unlinks the temp files in a directory (a remove must not trip on them). */
static void remove_temps(int dirfd)
{
	char **names;
	size_t n;

	if (list_dir(dirfd, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (is_temp_name(names[i]))
			unlinkat(dirfd, names[i], 0);
	free_names(names, n);
}

/* Overwrites a regular file's bytes with zeros (its private keys must not
 * stay readable in freed blocks longer than needed), best effort. */
static void wipe_file(int dirfd, const char *name)
{
	static const uint8_t zero[512];
	int fd = openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat sb;

	if (fd < 0)
		return;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		for (off_t off = 0; off < sb.st_size;) {
			size_t n = (size_t)(sb.st_size - off) < sizeof(zero)
					   ? (size_t)(sb.st_size - off)
					   : sizeof(zero);
			ssize_t w = pwrite(fd, zero, n, off);

			if (w <= 0)
				break;
			off += w;
		}
		(void)fsync(fd);
	}
	close(fd);
}

int state_pod_remove(struct state *st, const char *pod_uid)
{
	int pod_fd, att_fd = -1, ret;

	ret = open_pod(st, pod_uid, false, &pod_fd, NULL);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	ret = open_subdir(pod_fd, attachments_name, false, &att_fd, NULL);
	if (ret == 0) {
		ret = count_records(att_fd);
		if (ret > 0)
			ret = -ENOTEMPTY;
		if (ret < 0)
			goto out;
		remove_temps(att_fd);
		if (unlinkat(pod_fd, attachments_name, AT_REMOVEDIR) < 0) {
			ret = -errno;
			goto out;
		}
	} else if (ret != -ENOENT) {
		goto out;
	}
	/* Only our own files: anything else makes the rmdir below fail. */
	remove_temps(pod_fd);
	wipe_file(pod_fd, identity_name);
	if ((unlinkat(pod_fd, identity_name, 0) < 0 && errno != ENOENT) ||
	    (unlinkat(pod_fd, worker_sock_name, 0) < 0 && errno != ENOENT)) {
		ret = -errno;
		goto out;
	}
	if (unlinkat(st->pods_fd, pod_uid, AT_REMOVEDIR) < 0 && errno != ENOENT) {
		ret = -errno;
		goto out;
	}
	ret = fsync(st->pods_fd) < 0 ? -errno : 0;
out:
	close_fd(&att_fd);
	close(pod_fd);
	return ret;
}

static int key_file(const Tscni__AttachmentKey *key, char *buf, size_t n)
{
	const char *why;

	if (validate_attachment_key(key, &why) < 0 ||
	    !record_key_filename(key->network, key->container_id, key->ifname, buf, n))
		return -EINVAL;
	strcat(buf, record_suffix);
	return 0;
}

static int attachment_put(struct state *st, const Tscni__Attachment *att, bool durable)
{
	char name[RECORD_KEYNAME_LEN + sizeof(record_suffix)];
	const char *why;
	int pod_fd, att_fd, ret;

	if (validate_attachment(att, &why) < 0 || is_foreign(st, att->machine_id, att->node_name))
		return -EINVAL;
	ret = key_file(att->key, name, sizeof(name));
	if (ret < 0)
		return ret;
	ret = open_pod(st, att->pod_uid, true, &pod_fd, &att_fd);
	if (ret < 0)
		return ret;
	ret = durable ? record_write_attachment(att_fd, name, att)
		      : record_write_attachment_cached(att_fd, name, att);
	close(att_fd);
	close(pod_fd);
	return ret;
}

int state_attachment_put(struct state *st, const Tscni__Attachment *att)
{
	return attachment_put(st, att, true);
}

int state_attachment_put_cached(struct state *st, const Tscni__Attachment *att)
{
	return attachment_put(st, att, false);
}

int state_attachment_remove(struct state *st, const char *pod_uid, const Tscni__AttachmentKey *key)
{
	char name[RECORD_KEYNAME_LEN + sizeof(record_suffix)];
	int pod_fd, att_fd, ret;

	ret = key_file(key, name, sizeof(name));
	if (ret < 0)
		return ret;
	ret = open_pod(st, pod_uid, false, &pod_fd, &att_fd);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	if (unlinkat(att_fd, name, 0) < 0)
		ret = errno == ENOENT ? 0 : -errno;
	else
		ret = fsync(att_fd) < 0 ? -errno : 0;
	close(att_fd);
	close(pod_fd);
	return ret;
}

int state_attachment_count(struct state *st, const char *pod_uid)
{
	int pod_fd, att_fd, ret;

	ret = open_pod(st, pod_uid, false, &pod_fd, &att_fd);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	ret = count_records(att_fd);
	close(att_fd);
	close(pod_fd);
	return ret;
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
	snprintf(buf, n, "%s%s", id, record_suffix);
	return 0;
}

int state_job_put(struct state *st, const Tscni__Job *job)
{
	char name[STATE_JOB_ID_MAX + sizeof(record_suffix)];
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
	char name[STATE_JOB_ID_MAX + sizeof(record_suffix)];
	int ret = job_file(id, name, sizeof(name));

	if (ret < 0)
		return ret;
	return remove_file(st->jobs_fd, name);
}
