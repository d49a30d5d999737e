/* Cgroup placement of the zygote (and so of every worker it forks): outside
 * the supervisor's container, so that a container kill leaves workers running
 * (docs/machine-notes.md: a process left in the container's cgroups died with it,
 * one moved to a sibling cgroup in every hierarchy lived). Layouts seen:
 * pure cgroup2 at /sys/fs/cgroup (most Kubernetes nodes today); hybrid, v1
 * controllers under /sys/fs/cgroup/<ctrl> plus a controller-less cgroup2 at
 * /sys/fs/cgroup/unified (this machine); legacy v1 only. */
#include "zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

enum cgroup_limits {
	CGROUP_LINE_MAX = 4096,
	CGROUP_PATH_MAX = 1024,
	CGROUP_VALUE_MAX = 256,
};

static int read_small(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return -errno;
	r = read(fd, buf, n - 1);
	close(fd);
	if (r < 0)
		return -errno;
	buf[r] = '\0';
	return (int)r;
}

static int write_small(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = write_all(fd, s, strlen(s));
	close(fd);
	return ret;
}

/* A v1 cpuset cgroup refuses tasks until cpuset.cpus and cpuset.mems are
 * set: copy them down from the level above when empty. */
static int cpuset_inherit(const char *dir, const char *up)
{
	static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};

	for (size_t i = 0; i < 2; i++) {
		char path[CGROUP_PATH_MAX], val[CGROUP_VALUE_MAX];
		int ret;

		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		ret = read_small(path, val, sizeof(val));
		if (ret < 0)
			return ret;
		if (ret > 0 && val[0] != '\n')
			continue;
		snprintf(path, sizeof(path), "%s/%s", up, files[i]);
		ret = read_small(path, val, sizeof(val));
		if (ret < 0)
			return ret;
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		ret = write_small(path, val);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int place(const char *mnt, const char *parent, const char *leaf, bool cpuset,
		 const char **why)
{
	char dir[CGROUP_PATH_MAX], up[CGROUP_PATH_MAX], pid[24];
	const char *parts[2] = {parent, leaf};
	int ret;

	/* Every path below is dir plus at most "/cpuset.cpus" or "/cgroup.procs". */
	if (strlen(mnt) + strlen(parent) + strlen(leaf) + 32 > sizeof(dir)) {
		*why = "path too long";
		return -ENAMETOOLONG;
	}
	if ((size_t)snprintf(dir, sizeof(dir), "%s", mnt) >= sizeof(dir)) {
		*why = "path too long";
		return -ENAMETOOLONG;
	}
	for (size_t i = 0; i < 2; i++) {
		size_t len = strlen(dir);

		memcpy(up, dir, len + 1);
		if ((size_t)snprintf(dir + len, sizeof(dir) - len, "/%s", parts[i]) >=
		    sizeof(dir) - len) {
			*why = "path too long";
			return -ENAMETOOLONG;
		}
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			*why = "mkdir";
			return -errno;
		}
		if (cpuset) {
			ret = cpuset_inherit(dir, up);
			if (ret < 0) {
				*why = "cpuset.cpus/mems";
				return ret;
			}
		}
	}
	snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if ((size_t)snprintf(up, sizeof(up), "%.1000s/cgroup.procs", dir) >= sizeof(up)) {
		*why = "path too long";
		return -ENAMETOOLONG;
	}
	ret = write_small(up, pid);
	if (ret < 0) {
		/* ENOENT here means mkdir made a plain directory: the mount is
		 * not (or no longer) a cgroup filesystem. */
		*why = "write cgroup.procs";
		return ret;
	}
	return 0;
}

/* Splits a mountinfo line (proc(5)) into mount root, mount point, fs type and
 * super options. Returns false for lines that do not parse. */
static bool split_mountinfo(char *line, char **root, char **mnt, char **fstype, char **super)
{
	char *f[6], *save = NULL, *sep;
	int n = 0;

	sep = strstr(line, " - ");
	if (!sep)
		return false;
	*sep = '\0';
	for (char *t = strtok_r(line, " ", &save); t && n < 6; t = strtok_r(NULL, " ", &save))
		f[n++] = t;
	if (n < 5)
		return false;
	*root = f[3];
	*mnt = f[4];
	save = NULL;
	*fstype = strtok_r(sep + 3, " ", &save);
	if (!*fstype || !strtok_r(NULL, " ", &save)) /* source */
		return false;
	*super = strtok_r(NULL, " \n", &save);
	return *super != NULL;
}

int cgroup_place_self(const char *mountinfo, const char *parent, const char *leaf)
{
	char line[CGROUP_LINE_MAX];
	int v1 = 0, v2 = 0, placed = 0;
	FILE *f;

	f = fopen(mountinfo, "re");
	if (!f) {
		int ret = -errno;

		log_err_r(ret, "cgroup placement impossible: read %s", mountinfo);
		return ret;
	}
	while (fgets(line, sizeof(line), f)) {
		char *root, *mnt, *fstype, *super;
		const char *why = "";
		bool unified;
		int ret;

		if (!split_mountinfo(line, &root, &mnt, &fstype, &super))
			continue;
		unified = !strcmp(fstype, "cgroup2");
		if (!unified && strcmp(fstype, "cgroup"))
			continue;
		unified ? v2++ : v1++;
		if (strchr(mnt, '\\')) {
			log_warn("cgroup placement impossible in %s hierarchy at an escaped mount "
				 "point",
				 unified ? "cgroup2" : super);
			continue;
		}
		if (strcmp(root, "/"))
			log_warn("cgroup %s at %s shows only %s (a cgroup namespace?): placing "
				 "below it",
				 unified ? "cgroup2" : super, mnt, root);
		ret = place(mnt, parent, leaf, !unified && strstr(super, "cpuset"), &why);
		if (ret < 0) {
			log_warn_r(ret, "cgroup placement impossible in %s at %s: %s",
				   unified ? "cgroup2" : super, mnt, why);
			continue;
		}
		placed++;
		log_info("cgroup: placed in %s/%s/%s (%s)", mnt, parent, leaf,
			 unified ? "cgroup2" : super);
	}
	fclose(f);
	log_info("cgroup layout: %s (%d v1 hierarchies, %d cgroup2); placed in %d",
		 v1 && v2 ? "hybrid"
		 : v2	  ? "unified"
		 : v1	  ? "legacy v1"
			  : "none",
		 v1, v2, placed);
	if (!v1 && !v2)
		log_warn("cgroup placement impossible: no cgroup filesystem mounted");
	return placed;
}
