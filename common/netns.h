/* Network namespace paths as runtimes pass them (CNI_NETNS). */
#ifndef TSCNI_COMMON_NETNS_H
#define TSCNI_COMMON_NETNS_H

#include <stdbool.h>
#include <sys/types.h>

/* Opens path O_RDONLY|O_CLOEXEC|O_NONBLOCK and checks that it is a network
 * namespace (a regular file on nsfs, or procfs for /proc/PID/ns/net); never
 * blocks, whatever is at the path. Returns 0 with *fd_out, *dev and *ino set;
 * -ENOENT when it does not exist; -ENOTNAM when the file exists but is not a
 * namespace (an unmounted placeholder, a FIFO, a directory, a device);
 * another negative errno otherwise. *fd_out is -1 on failure. */
int netns_open(const char *path, int *fd_out, dev_t *dev, ino_t *ino);

/* True when (dev, ino) is the calling process's own network namespace. */
bool netns_is_self(dev_t dev, ino_t ino);

/* Runs fn(arg) with the calling thread switched into the namespace nsfd and
 * switches back. The caller must be single-threaded or do this on a thread of
 * its own. Returns fn's value, or a negative errno if a switch failed. */
int netns_run(int nsfd, int (*fn)(void *arg), void *arg);

#endif
