/* DEL tombstones. */
#include "tombstone.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"
#include "record.h"
#include "state.pb-c.h"

/* mkdir -p with mode 0700 for every component that is missing. */
static int mkdir_p(const char *path)
{
	char *copy = xstrdup(path);
	int ret = 0;

	for (char *p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(copy, 0700) < 0 && errno != EEXIST) {
			ret = -errno;
			break;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	free(copy);
	return ret;
}

int tombstone_write(const char *state_dir, const char *network, const char *container_id,
		    const char *ifname, const char *netns_path, const char *interface_name)
{
	Tscni__AttachmentKey key = TSCNI__ATTACHMENT_KEY__INIT;
	Tscni__Tombstone t = TSCNI__TOMBSTONE__INIT;
	char name[RECORD_KEYNAME_LEN];
	char *dir;
	int dirfd, ret;

	dir = xasprintf("%s/tombstones", state_dir);
	ret = mkdir_p(dir);
	if (ret < 0)
		goto out;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = -errno;
		goto out;
	}
	key.network = (char *)network;
	key.container_id = (char *)container_id;
	key.ifname = (char *)ifname;
	t.key = &key;
	t.netns_path = (char *)(netns_path ? netns_path : "");
	t.interface_name = (char *)interface_name;
	t.created_unix = (uint64_t)time(NULL);
	record_key_filename(network, container_id, ifname, name, sizeof(name));
	ret = record_write_tombstone(dirfd, name, &t);
	close(dirfd);
out:
	free(dir);
	return ret;
}
