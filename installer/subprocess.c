/* A bounded run of a helper program (subprocess.h). */
#include "subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

/* Reads the child's stdout until EOF, the byte bound or the deadline. */
static int drain(int fd, char *buf, size_t *got, int64_t deadline)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int64_t left = deadline - (int64_t)now_ms();
		ssize_t n;

		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		n = read(fd, buf + *got, SUBPROCESS_MAX_OUT + 1 - *got);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		*got += (size_t)n;
		if (*got > SUBPROCESS_MAX_OUT)
			return -EMSGSIZE;
	}
}

/* Waits for pid until the deadline, then kills it. The exit status. */
static int reap(pid_t pid, int64_t deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);

		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if ((int64_t)now_ms() >= deadline) {
			kill(pid, SIGKILL);
			while (waitpid(pid, status, 0) < 0 && errno == EINTR)
				;
			return -ETIMEDOUT;
		}
		struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
}

int subprocess_capture(char *const argv[], char *const envp[], const char *in, char **out,
		       size_t *len)
{
	static char *const no_env[] = {NULL};
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, def;
	int to_child[2] = {-1, -1}, from_child[2] = {-1, -1}, ret, status = 0;
	int64_t deadline = (int64_t)now_ms() + SUBPROCESS_TIMEOUT_MS;
	char *buf = NULL;
	size_t got = 0;
	pid_t pid;

	*out = NULL;
	*len = 0;
	if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0) {
		ret = -errno;
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
	/* The installer blocks SIGTERM and SIGINT (it reads them from a
	 * signalfd) and ignores SIGPIPE: the child gets neither. */
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	sigaddset(&def, SIGTERM);
	sigaddset(&def, SIGINT);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	ret = -posix_spawn(&pid, argv[0], &fa, &attr, argv, envp ? envp : no_env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	if (ret < 0)
		goto out;
	close(to_child[0]);
	close(from_child[1]);
	to_child[0] = from_child[1] = -1;
	/* The input is small (a few bytes of JSON), far below a pipe's
	 * buffer: this write cannot block on a child that does not read. */
	if (in) {
		signal(SIGPIPE, SIG_IGN);
		(void)!write(to_child[1], in, strlen(in));
	}
	close(to_child[1]);
	to_child[1] = -1;
	buf = xmalloc(SUBPROCESS_MAX_OUT + 2);
	ret = drain(from_child[0], buf, &got, deadline);
	if (ret < 0)
		kill(pid, SIGKILL);
	{
		int r = reap(pid, deadline, &status);

		if (ret == 0)
			ret = r;
	}
	if (ret == 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		ret = -ECHILD;
	if (ret == 0) {
		buf[got] = '\0';
		*out = buf;
		*len = got;
		buf = NULL;
	}
out:
	free(buf);
	for (int i = 0; i < 2; i++) {
		if (to_child[i] >= 0)
			close(to_child[i]);
		if (from_child[i] >= 0)
			close(from_child[i]);
	}
	return ret;
}
