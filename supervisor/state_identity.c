/* pods/<uid>/identity.pb, the pod's keys, hostname and addresses (state.h),
 * and the pod's directory around it: read during state_load's walk, read
 * and written one at a time, and removed with the directory once the pod's
 * last attachment record is gone. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "mem.h"
#include "record.h"
#include "state_internal.h"
#include "validate.h"

static const char identity_name[] = "identity.pb";
static const char worker_sock_name[] = "worker.sock";

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

void state__load_identity(struct state_load_ctx *c, int pod_fd, const char *uid)
{
	char *rel = xasprintf("pods/%s/%s", uid, identity_name);
	const char *why = "";
	int err;
	Tscni__Identity *id = record_read_identity(pod_fd, identity_name, &err, &why);

	if (!id) {
		if (err == -EBADMSG)
			state__aside(c, false, pod_fd, identity_name, rel, why);
		else if (err != -ENOENT)
			state__read_failed(err, rel, why);
	} else if (strcmp(id->pod_uid, uid)) {
		state__aside(c, false, pod_fd, identity_name, rel,
			     "pod_uid differs from its directory");
	} else if (state__is_foreign(c->st, id->machine_id, id->node_name)) {
		state__aside(c, true, pod_fd, identity_name, rel,
			     "written on another machine or node name");
	} else if (c->cb->identity) {
		c->cb->identity(c->cb->arg, id);
	}
	identity_free(id);
	free(rel);
}

Tscni__Identity *state_identity_get(struct state *st, const char *pod_uid, int *err)
{
	const char *why = "";
	char *rel;
	Tscni__Identity *id;
	int pod_fd, ret;

	ret = state__open_pod(st, pod_uid, false, &pod_fd, NULL);
	if (ret < 0) {
		*err = ret;
		return NULL;
	}
	id = record_read_identity(pod_fd, identity_name, err, &why);
	if (!id && *err != -EBADMSG)
		goto out;
	rel = xasprintf("pods/%s/%s", pod_uid, identity_name);
	if (!id) {
		state__move_aside(st, false, pod_fd, identity_name, rel, why);
		*err = -ENOENT;
	} else if (strcmp(id->pod_uid, pod_uid)) {
		state__move_aside(st, false, pod_fd, identity_name, rel,
				  "pod_uid differs from its directory");
		*err = -ENOENT;
	} else if (state__is_foreign(st, id->machine_id, id->node_name)) {
		state__move_aside(st, true, pod_fd, identity_name, rel,
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

	if (validate_identity(id, &why) < 0 || state__is_foreign(st, id->machine_id, id->node_name))
		return -EINVAL;
	/* attachments/ too, made durable by the fsync of pods/<uid> that
	 * follows the identity's rename: a new pod's first ADD then pays one
	 * fsync of that directory, not two. */
	ret = state__open_pod_sync(st, id->pod_uid, true, &pod_fd, &att_fd, true);
	if (ret < 0)
		return ret;
	close(att_fd);
	ret = record_write_identity(pod_fd, identity_name, id);
	close(pod_fd);
	return ret;
}

/* Unlinks the temp files in a directory (a remove must not trip on them). */
static void remove_temps(int dirfd)
{
	char **names;
	size_t n;

	if (state__list_dir(dirfd, &names, &n) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		if (state__is_temp_name(names[i]))
			unlinkat(dirfd, names[i], 0);
	state__free_names(names, n);
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

	ret = state__open_pod(st, pod_uid, false, &pod_fd, NULL);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	ret = state__open_subdir(pod_fd, STATE_ATTACHMENTS_NAME, false, &att_fd, NULL);
	if (ret == 0) {
		ret = state__count_records(att_fd);
		if (ret > 0)
			ret = -ENOTEMPTY;
		if (ret < 0)
			goto out;
		remove_temps(att_fd);
		if (unlinkat(pod_fd, STATE_ATTACHMENTS_NAME, AT_REMOVEDIR) < 0) {
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
	state__close_fd(&att_fd);
	close(pod_fd);
	return ret;
}
