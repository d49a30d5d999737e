/* A scripted supervisor for the cni unit tests: a unix listener in a fresh
 * temporary directory and a forked child that serves a fixed number of
 * connections with a callback. The child reports through its exit status
 * (0: everything it checked was right), so no cmocka call runs in it. */
#ifndef TSCNI_TEST_FAKE_SUPERVISOR_H
#define TSCNI_TEST_FAKE_SUPERVISOR_H

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cni.pb-c.h"
#include "frame.h"
#include "mem.h"

/* Serves one connection; returns 0 when all was as expected. */
typedef int fake_fn(int conn, int index, void *arg);

struct fake {
	pid_t pid;
	char dir[64];
	char path[128];
};

/* mkdtemp() of "<prefix>" followed by its six template characters, into buf
 * (n bytes). Aborts on failure: a test without its directory cannot run. */
static inline char *fake_tmpdir(char *buf, size_t n, const char *prefix)
{
	size_t len = strlen(prefix);

	if (len + 7 > n)
		abort();
	memcpy(buf, prefix, len);
	memset(buf + len, 'X', 6);
	buf[len + 6] = '\0';
	if (!mkdtemp(buf))
		abort();
	return buf;
}

static inline void fake_mkdir(struct fake *s)
{
	fake_tmpdir(s->dir, sizeof(s->dir), "/tmp/tscni-cni-test.");
	snprintf(s->path, sizeof(s->path), "%s/cni.sock", s->dir);
	s->pid = -1;
}

/* Listens on s->path and forks a child serving nconn connections. */
static inline void fake_start(struct fake *s, int nconn, fake_fn *fn, void *arg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int lfd;

	fake_mkdir(s);
	strcpy(sa.sun_path, s->path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0)
		abort();
	s->pid = fork();
	if (s->pid < 0)
		abort();
	if (s->pid == 0) {
		int status = 0;

		for (int i = 0; i < nconn; i++) {
			struct pollfd pfd = {.fd = lfd, .events = POLLIN};
			int conn, r;

			/* Never wait for ever: a client that does not come is
			 * a failure the parent sees in the exit status. */
			if (poll(&pfd, 1, 5000) != 1)
				_exit(90);
			conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (conn < 0)
				_exit(91);
			r = fn(conn, i, arg);
			close(conn);
			if (r && !status)
				status = r;
		}
		_exit(status);
	}
	close(lfd);
}

/* Waits for the child; returns its exit status (or 100 + signal). */
static inline int fake_wait(struct fake *s)
{
	int st = 0;

	if (s->pid > 0 && waitpid(s->pid, &st, 0) < 0)
		return 99;
	unlink(s->path);
	rmdir(s->dir);
	if (s->pid <= 0)
		return 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* Reads and unpacks one request (NULL on any failure). */
static inline Tscni__CniRequest *fake_read(int conn)
{
	const char *why = NULL;
	Tscni__CniRequest *req;
	uint8_t *body = NULL;
	size_t len = 0;

	if (frame_read_fd(conn, &body, &len, now_ms() + 3000, &why) < 0)
		return NULL;
	req = tscni__cni_request__unpack(NULL, len, body);
	free(body);
	return req;
}

static inline int fake_send(int conn, const Tscni__CniReply *r)
{
	size_t len = tscni__cni_reply__get_packed_size(r);
	uint8_t *buf = xmalloc(len);
	int ret;

	tscni__cni_reply__pack(r, buf);
	ret = frame_write_fd(conn, buf, len, now_ms() + 3000);
	free(buf);
	return ret;
}

/* Waits until the client hangs up (or 5 s pass). */
static inline void fake_drain(int conn)
{
	struct pollfd pfd = {.fd = conn, .events = POLLIN};
	char buf[256];

	while (poll(&pfd, 1, 5000) == 1 && read(conn, buf, sizeof(buf)) > 0)
		;
}

#endif
