/* The sandbox without privilege: what a worker does in unit tests, where the
 * test runs unprivileged and forks the worker itself. */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <unistd.h>

int sandbox__basic(const char **why)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t all;
	int fd;

	/* Its own session: a signal to the supervisor's process group or the
	 * container's terminal never reaches the worker. */
	if (setsid() < 0 && errno != EPERM) {
		*why = "setsid";
		return -errno;
	}
	/* Logs go over fd 3; 0-2 must still be valid fds so that nothing the
	 * worker opens later lands on them. */
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		*why = "open /dev/null";
		return -errno;
	}
	for (int i = 0; i < 3; i++) {
		if (dup2(fd, i) < 0) {
			*why = "dup2 /dev/null";
			close(fd);
			return -errno;
		}
	}
	if (fd > 2)
		close(fd);
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		sigaction(sig, &sa, NULL); /* fails harmlessly for glibc-reserved ones */
	}
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0) {
		*why = "ignore SIGPIPE";
		return -errno;
	}
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	/* No PDEATHSIG: a worker outlives its supervisor and its zygote. */
	if (prctl(PR_SET_PDEATHSIG, 0) < 0) {
		*why = "PR_SET_PDEATHSIG";
		return -errno;
	}
	return 0;
}

static int none_enter(uint32_t uid, const char **why)
{
	(void)uid;
	return sandbox__basic(why);
}

static int none_load_filter(bool debug, int ctl_fd, const char **why)
{
	(void)debug;
	(void)ctl_fd;
	(void)why;
	return 0;
}

const struct sandbox_ops sandbox_none = {
	.name = "none",
	.enter = none_enter,
	.load_filter = none_load_filter,
};
