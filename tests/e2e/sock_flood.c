/* sock_flood: a misbehaving client of the supervisor's CNI socket, for the
 * bounds tests (tests/e2e/sup_bounds.sh).
 *
 *   sock_flood idle SOCK N HOLD_S      opens N connections, sends nothing,
 *                                      holds them HOLD_S seconds
 *   sock_flood noread SOCK N HOLD_S    one connection, N verbose STATUS
 *                                      requests, never reads a reply
 *   sock_flood pipeline SOCK N         one connection, N verbose STATUS
 *                                      requests written at once, then every
 *                                      reply read and checked
 *   sock_flood partial SOCK N HOLD_S   N connections, each sending the first
 *                                      half of a 1 MiB frame, then nothing
 *
 * One report line on stdout: "opened=N" (idle, partial), "sent=N" (noread), or
 * "sent=N replies=N" (pipeline: replies counts StatusReply frames; an error
 * reply or EOF ends the count). Exit status 0 when the report was written,
 * 2 on a usage or system error. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cni.pb-c.h"
#include "frame.h"
#include "mem.h"

static int connect_to(const char *path, int flags)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/* A connection, waiting out a full backlog (up to 10 s): the server accepts
 * as fast as it can. */
static int connect_retry(const char *path)
{
	unsigned long long deadline = now_ms() + 10000;
	int fd;

	while ((fd = connect_to(path, SOCK_NONBLOCK)) == -EAGAIN && now_ms() < deadline)
		poll(NULL, 0, 5);
	return fd;
}

/* One verbose STATUS request, framed, into *out (malloc'd). */
static size_t status_frame(uint8_t **out)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__StatusRequest st = TSCNI__STATUS_REQUEST__INIT;
	size_t len;

	st.verbose = true;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_STATUS;
	req.status = &st;
	len = tscni__cni_request__get_packed_size(&req);
	*out = xmalloc(FRAME_HDR_LEN + len);
	frame_put_header(*out, len);
	tscni__cni_request__pack(&req, *out + FRAME_HDR_LEN);
	return FRAME_HDR_LEN + len;
}

static void hold(unsigned int seconds)
{
	struct timespec ts = {.tv_sec = seconds};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* With half: each connection sends half of a frame whose header promises
 * FRAME_MAX_BODY bytes. */
static int run_idle(const char *path, unsigned long n, unsigned int hold_s, bool half)
{
	int *fds = xcalloc(n, sizeof(*fds));
	unsigned long opened = 0;
	size_t half_len = FRAME_HDR_LEN + FRAME_MAX_BODY / 2;
	uint8_t *frame = half ? xcalloc(1, half_len) : NULL;

	if (half)
		frame_put_header(frame, FRAME_MAX_BODY);
	for (unsigned long i = 0; i < n; i++) {
		int fd = connect_retry(path);
		size_t off = 0;

		while (fd >= 0 && half && off < half_len) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			ssize_t w;

			if (poll(&p, 1, 5000) <= 0)
				break;
			w = send(fd, frame + off, half_len - off, MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN)
				break;
			if (w > 0)
				off += (size_t)w;
		}
		if (fd < 0) {
			fprintf(stderr, "sock_flood: connection %lu: %s\n", i, strerror(-fd));
			break;
		}
		fds[opened++] = fd;
	}
	printf("opened=%lu\n", opened);
	fflush(stdout);
	hold(hold_s);
	for (unsigned long i = 0; i < opened; i++)
		close(fds[i]);
	free(fds);
	free(frame);
	return 0;
}

/* Writes up to n requests without reading; stops when the socket stays full
 * for 2 s (the server stopped reading). */
static int run_noread(const char *path, unsigned long n, unsigned int hold_s)
{
	uint8_t *frame;
	size_t len = status_frame(&frame), off = 0;
	unsigned long sent = 0;
	int fd = connect_retry(path);

	if (fd < 0) {
		fprintf(stderr, "sock_flood: connect %s: %s\n", path, strerror(-fd));
		free(frame);
		return 2;
	}
	while (sent < n) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		ssize_t w;

		if (poll(&p, 1, 2000) <= 0)
			break;
		w = send(fd, frame + off, len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN)
			continue;
		if (w < 0)
			break;
		off += (size_t)w;
		if (off == len) {
			off = 0;
			sent++;
		}
	}
	printf("sent=%lu\n", sent);
	fflush(stdout);
	hold(hold_s);
	close(fd);
	free(frame);
	return 0;
}

/* Counts whole StatusReply frames in buf[0..*len), consuming them. -1 when a
 * frame is not a StatusReply. */
static int take_replies(uint8_t *buf, size_t *len, unsigned long *replies)
{
	const uint8_t *body;
	size_t body_len;
	const char *why = NULL;
	ssize_t n;

	while ((n = frame_decode(buf, *len, &body, &body_len, &why)) > 0) {
		Tscni__CniReply *rep = tscni__cni_reply__unpack(NULL, body_len, body);
		int ok = rep && rep->body_case == TSCNI__CNI_REPLY__BODY_STATUS;

		if (rep)
			tscni__cni_reply__free_unpacked(rep, NULL);
		if (!ok)
			return -1;
		(*replies)++;
		memmove(buf, buf + n, *len - (size_t)n);
		*len -= (size_t)n;
	}
	return n < 0 ? -1 : 0;
}

/* Writes n requests as fast as the socket takes them while reading every
 * reply (the server may stop reading until we do). */
static int run_pipeline(const char *path, unsigned long n)
{
	enum { RBUF = FRAME_HDR_LEN + FRAME_MAX_BODY + 65536 };
	uint8_t *frame, *rbuf = xmalloc(RBUF);
	size_t len = status_frame(&frame), off = 0, rlen = 0;
	unsigned long sent = 0, replies = 0;
	unsigned long long deadline = now_ms() + 120000;
	int fd = connect_retry(path), ret = 0;

	if (fd < 0) {
		fprintf(stderr, "sock_flood: connect %s: %s\n", path, strerror(-fd));
		ret = 2;
		goto out;
	}
	while (replies < n && now_ms() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < n ? POLLOUT : 0)};
		ssize_t r;

		if (poll(&p, 1, 10000) <= 0)
			break;
		if (p.revents & POLLOUT) {
			r = send(fd, frame + off, len - off, MSG_NOSIGNAL);
			if (r > 0 && (off += (size_t)r) == len) {
				off = 0;
				sent++;
			}
		}
		if (!(p.revents & (POLLIN | POLLHUP)))
			continue;
		r = recv(fd, rbuf + rlen, RBUF - rlen, 0);
		if (r <= 0 && !(r < 0 && errno == EAGAIN))
			break;
		if (r > 0)
			rlen += (size_t)r;
		if (take_replies(rbuf, &rlen, &replies) < 0)
			break;
	}
	printf("sent=%lu replies=%lu\n", sent, replies);
	close(fd);
out:
	free(frame);
	free(rbuf);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned long n;
	char *end;

	if (argc < 4)
		goto usage;
	errno = 0;
	n = strtoul(argv[3], &end, 10);
	if (errno || *end || n == 0 || n > 1000000)
		goto usage;
	if (!strcmp(argv[1], "idle") && argc == 5)
		return run_idle(argv[2], n, (unsigned int)atoi(argv[4]), false);
	if (!strcmp(argv[1], "partial") && argc == 5)
		return run_idle(argv[2], n, (unsigned int)atoi(argv[4]), true);
	if (!strcmp(argv[1], "noread") && argc == 5)
		return run_noread(argv[2], n, (unsigned int)atoi(argv[4]));
	if (!strcmp(argv[1], "pipeline") && argc == 4)
		return run_pipeline(argv[2], n);
usage:
	fprintf(stderr, "usage: sock_flood idle|noread|partial SOCK N HOLD_S | pipeline SOCK N\n");
	return 2;
}
