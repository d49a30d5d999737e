/* plugin_run: runs a CNI plugin the way a runtime does (libcni's raw_exec) and
 * reports what a runtime would see, so the shell tests can check the process
 * hygiene rules of docs/cni-contract.md §1.
 *
 *   plugin_run --stdin FILE --stdout FILE --stderr FILE [--kill-after-ms N]
 *              [--eof-wait-ms N] -- PROGRAM [ARGS...]
 *
 * The program's stdout and stderr are pipes read until EOF, as libcni does; the
 * environment is passed through unchanged (the caller builds it with env -i).
 * One report line goes to our stdout:
 *
 *   status=exit:N|signal:N wall_ms=N eof_lag_ms=N maxrss_kb=N cpu_us=N
 *
 * eof_lag_ms is how long the pipes stayed open after the program exited: a
 * child that inherited them keeps them open, and a runtime would wait for it.
 * It is -1 when they were still open after --eof-wait-ms (default 2000).
 * cpu_us is the program's user + system CPU time (its rusage).
 * --kill-after-ms sends SIGKILL to the program after N ms, as a runtime does
 * at its deadline. Exit status: 0 when the report was written, 2 on a usage or
 * system error. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

static int open_out(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		fprintf(stderr, "plugin_run: open %s: %s\n", path, strerror(errno));
	return fd;
}

/* Copies whatever is readable on *src to dst; closes and marks *src -1 on EOF. */
static int pump(int *src, int dst)
{
	char buf[65536];
	ssize_t n = read(*src, buf, sizeof(buf));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (n == 0) {
		close(*src);
		*src = -1;
		return 0;
	}
	for (ssize_t off = 0; off < n;) {
		ssize_t w = write(dst, buf + off, (size_t)(n - off));

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += w;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: plugin_run --stdin FILE --stdout FILE --stderr FILE "
			"[--kill-after-ms N] [--eof-wait-ms N] -- PROGRAM [ARGS...]\n");
}

int main(int argc, char **argv)
{
	const char *in_path = NULL, *out_path = NULL, *err_path = NULL;
	long kill_after = -1, eof_wait = 2000;
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (i + 1 >= argc) {
			usage();
			return 2;
		}
		if (!strcmp(argv[i], "--stdin"))
			in_path = argv[++i];
		else if (!strcmp(argv[i], "--stdout"))
			out_path = argv[++i];
		else if (!strcmp(argv[i], "--stderr"))
			err_path = argv[++i];
		else if (!strcmp(argv[i], "--kill-after-ms"))
			kill_after = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--eof-wait-ms"))
			eof_wait = strtol(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "plugin_run: unknown option %s\n", argv[i]);
			usage();
			return 2;
		}
	}
	if (!in_path || !out_path || !err_path || i >= argc) {
		usage();
		return 2;
	}

	int in = open(in_path, O_RDONLY | O_CLOEXEC);
	int out = open_out(out_path), err = open_out(err_path);
	int po[2], pe[2];

	if (in < 0 || out < 0 || err < 0) {
		if (in < 0)
			fprintf(stderr, "plugin_run: open %s: %s\n", in_path, strerror(errno));
		return 2;
	}
	if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
		perror("plugin_run: pipe2");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	unsigned long long start = mono_ms();
	pid_t pid = fork();

	if (pid < 0) {
		perror("plugin_run: fork");
		return 2;
	}
	if (pid == 0) {
		/* dup2 clears FD_CLOEXEC on the new descriptors only. */
		if (dup2(in, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
			_exit(127);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[i], argv + i);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	close(in);

	int rfd[2] = {po[0], pe[0]};
	int wfd[2] = {out, err};
	bool exited = false;
	int wstatus = 0;
	struct rusage ru = {0};
	unsigned long long exit_at = 0;
	long lag = -1;

	for (;;) {
		if (!exited) {
			pid_t w = wait4(pid, &wstatus, WNOHANG, &ru);

			if (w == pid) {
				exited = true;
				exit_at = mono_ms();
			}
		}
		if (rfd[0] < 0 && rfd[1] < 0) {
			if (exited)
				break;
			/* Pipes at EOF but the program still runs: wait for it. */
			wait4(pid, &wstatus, 0, &ru);
			exited = true;
			exit_at = mono_ms();
			break;
		}
		unsigned long long now = mono_ms();

		if (exited && now - exit_at > (unsigned long long)eof_wait)
			break;
		if (!exited && kill_after >= 0 && now - start >= (unsigned long long)kill_after) {
			kill(pid, SIGKILL);
			kill_after = -1;
		}
		struct pollfd p[2];
		nfds_t n = 0;
		int map[2];

		for (int k = 0; k < 2; k++) {
			if (rfd[k] >= 0) {
				p[n] = (struct pollfd){.fd = rfd[k], .events = POLLIN};
				map[n++] = k;
			}
		}
		/* Short timeout: we also poll the child with WNOHANG. */
		int r = poll(p, n, 5);

		if (r < 0 && errno != EINTR) {
			perror("plugin_run: poll");
			return 2;
		}
		for (nfds_t k = 0; r > 0 && k < n; k++) {
			if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
				int ret = pump(&rfd[map[k]], wfd[map[k]]);

				if (ret < 0) {
					fprintf(stderr, "plugin_run: copy: %s\n", strerror(-ret));
					return 2;
				}
			}
		}
	}
	if (rfd[0] < 0 && rfd[1] < 0) {
		unsigned long long now = mono_ms();

		lag = (long)(now - exit_at);
	}
	unsigned long long wall = exit_at - start;

	if (WIFEXITED(wstatus))
		printf("status=exit:%d", WEXITSTATUS(wstatus));
	else if (WIFSIGNALED(wstatus))
		printf("status=signal:%d", WTERMSIG(wstatus));
	else
		printf("status=unknown:%d", wstatus);
	printf(" wall_ms=%llu eof_lag_ms=%ld maxrss_kb=%ld cpu_us=%lld\n", wall, lag, ru.ru_maxrss,
	       (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
		       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	fflush(stdout);
	close(out);
	close(err);
	return 0;
}
