/* pods/<uid>/attachments/<key>.pb, one record per (network, cid, ifname)
 * (state.h): read during state_load's walk, written, removed and counted one
 * pod at a time. A record's file name is its key's (record_key_filename),
 * so a DEL finds it without reading the others. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "record.h"
#include "state_internal.h"
#include "validate.h"

void state__load_attachment(struct state_load_ctx *c, int att_fd, const char *uid, const char *name)
{
	char *rel = xasprintf("pods/%s/%s/%s", uid, STATE_ATTACHMENTS_NAME, name);
	char want[RECORD_KEYNAME_LEN + sizeof(STATE_RECORD_SUFFIX)];
	const char *why = "";
	int err;
	Tscni__Attachment *att = NULL;

	if (state__is_temp_name(name)) {
		state__remove_temp(att_fd, name, rel, false);
		goto out;
	}
	if (!state__has_record_suffix(name)) {
		state__aside(c, false, att_fd, name, rel, "not a record file name");
		goto out;
	}
	att = record_read_attachment(att_fd, name, &err, &why);
	if (!att) {
		if (err == -EBADMSG)
			state__aside(c, false, att_fd, name, rel, why);
		else if (err != -ENOENT)
			state__read_failed(err, rel, why);
		goto out;
	}
	if (strcmp(att->pod_uid, uid)) {
		state__aside(c, false, att_fd, name, rel, "pod_uid differs from its directory");
		goto out;
	}
	/* state_attachment_remove() finds a record by its key's file name. */
	if (!record_key_filename(att->key->network, att->key->container_id, att->key->ifname, want,
				 sizeof(want)) ||
	    strcmp(strcat(want, STATE_RECORD_SUFFIX), name)) {
		state__aside(c, false, att_fd, name, rel, "file name does not match its key");
		goto out;
	}
	if (state__is_foreign(c->st, att->machine_id, att->node_name)) {
		state__aside(c, true, att_fd, name, rel, "written on another machine or node name");
		goto out;
	}
	if (c->cb->attachment)
		c->cb->attachment(c->cb->arg, att);
out:
	if (att)
		tscni__attachment__free_unpacked(att, NULL);
	free(rel);
}

static int key_file(const Tscni__AttachmentKey *key, char *buf, size_t n)
{
	const char *why;

	if (validate_attachment_key(key, &why) < 0 ||
	    !record_key_filename(key->network, key->container_id, key->ifname, buf, n))
		return -EINVAL;
	strcat(buf, STATE_RECORD_SUFFIX);
	return 0;
}

static int attachment_put(struct state *st, const Tscni__Attachment *att, bool durable)
{
	char name[RECORD_KEYNAME_LEN + sizeof(STATE_RECORD_SUFFIX)];
	const char *why;
	int pod_fd, att_fd, ret;

	if (validate_attachment(att, &why) < 0 ||
	    state__is_foreign(st, att->machine_id, att->node_name))
		return -EINVAL;
	ret = key_file(att->key, name, sizeof(name));
	if (ret < 0)
		return ret;
	ret = state__open_pod(st, att->pod_uid, true, &pod_fd, &att_fd);
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
	char name[RECORD_KEYNAME_LEN + sizeof(STATE_RECORD_SUFFIX)];
	int pod_fd, att_fd, ret;

	ret = key_file(key, name, sizeof(name));
	if (ret < 0)
		return ret;
	ret = state__open_pod(st, pod_uid, false, &pod_fd, &att_fd);
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

int state__count_records(int dirfd)
{
	char **names;
	size_t n;
	int ret = state__list_dir(dirfd, &names, &n), count = 0;

	if (ret < 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (!state__is_temp_name(names[i]) && state__has_record_suffix(names[i]))
			count++;
	state__free_names(names, n);
	return count;
}

int state_attachment_count(struct state *st, const char *pod_uid)
{
	int pod_fd, att_fd, ret;

	ret = state__open_pod(st, pod_uid, false, &pod_fd, &att_fd);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0)
		return ret;
	ret = state__count_records(att_fd);
	close(att_fd);
	close(pod_fd);
	return ret;
}
