/* Network namespace paths (CNI_NETNS) and running code inside one. */
#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* linux/magic.h values, spelled out so the header is not needed. */
enum netns_magic {
	NETNS_NSFS_MAGIC = 0x6e736673,
	NETNS_PROC_SUPER_MAGIC = 0x9fa0,
};

int netns_open(const char *path, int *fd_out, dev_t *dev, ino_t *ino)
{
	struct statfs sfs;
	struct stat sb;
	int fd, ret;

	*fd_out = -1;
	/* A namespace file is a regular file (nsfs and /proc/PID/ns alike).
	 * Anything else is refused before it is opened: a FIFO would block
	 * the open, a device could act on it. O_NONBLOCK and the fstat below
	 * cover a path swapped between the two calls. */
	if (stat(path, &sb) < 0)
		return -errno;
	if (!S_ISREG(sb.st_mode))
		return -ENOTNAM;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstatfs(fd, &sfs) < 0 || fstat(fd, &sb) < 0) {
		ret = -errno;
		goto err;
	}
	if (!S_ISREG(sb.st_mode) ||
	    (sfs.f_type != NETNS_NSFS_MAGIC && sfs.f_type != NETNS_PROC_SUPER_MAGIC)) {
		/* Typically the runtime's empty placeholder after the bind mount
		 * went away. */
		ret = -ENOTNAM;
		goto err;
	}
	*dev = sb.st_dev;
	*ino = sb.st_ino;
	*fd_out = fd;
	return 0;
err:
	close(fd);
	return ret;
}

bool netns_is_self(dev_t dev, ino_t ino)
{
	struct stat sb;

	if (stat("/proc/self/ns/net", &sb) < 0)
		return false;
	return sb.st_dev == dev && sb.st_ino == ino;
}

int netns_run(int nsfd, int (*fn)(void *arg), void *arg)
{
	int self, ret;

	/* /proc/thread-self: setns moves only the calling thread, so the way
	 * back must be this thread's namespace, not the process's. */
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return -errno;
	if (setns(nsfd, CLONE_NEWNET) < 0) {
		ret = -errno;
		close(self);
		return ret;
	}
	ret = fn(arg);
	if (setns(self, CLONE_NEWNET) < 0) {
		/* A thread left in a pod's namespace would do the next pod's
		 * work in the wrong place: nothing sane can continue. */
		abort();
	}
	close(self);
	return ret;
}
