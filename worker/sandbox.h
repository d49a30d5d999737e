/* The worker's sandbox, two steps around the start of its threads (ssh
 * ssh-sandbox.h has the same shape):
 *   enter        in the child right after clone, single-threaded: setsid,
 *                stdio on /dev/null, signals, an empty mount namespace, the
 *                worker's own uid, no capabilities, no_new_privs, not dumpable.
 *                fds are already arranged (worker.c closes the rest).
 *   load_filter  after both threads exist: the seccomp allow-list on every
 *                thread (TSYNC).
 * Two variants: sandbox_seccomp (the real one, needs root in the zygote) and
 * sandbox_none (unit tests: setsid and stdio only, no privilege needed). */
#ifndef TSCNI_WORKER_SANDBOX_H
#define TSCNI_WORKER_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>

struct sandbox_ops {
	const char *name;
	/* 0 or -errno with *why naming the step that failed. */
	int (*enter)(uint32_t uid, const char **why);
	/* debug: trap instead of kill and report each trapped syscall as an
	 * EVENT_SECCOMP_TRAP Event on ctl_fd. 0 or -errno with *why. */
	int (*load_filter)(bool debug, int ctl_fd, const char **why);
};

extern const struct sandbox_ops sandbox_seccomp;
extern const struct sandbox_ops sandbox_none;

/* Shared by both variants (sandbox_none.c): setsid, stdin/stdout/stderr on
 * /dev/null, SIGPIPE ignored, every other signal default and unblocked, no
 * PDEATHSIG. */
int sandbox__basic(const char **why);

#endif
