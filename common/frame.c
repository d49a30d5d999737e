/* Length-prefixed frames on the CNI stream socket; datagrams on worker
 * SOCK_SEQPACKET sockets. */
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mem.h"

static uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

ssize_t frame_decode(const uint8_t *src, size_t len, const uint8_t **body, size_t *body_len,
		     const char **why)
{
	uint32_t n;

	*body = NULL;
	*body_len = 0;
	if (len < FRAME_HDR_LEN)
		return 0;
	n = load_be32(src);
	if (n == 0 || n > FRAME_MAX_BODY) {
		/* Decided from the header alone: never wait for bytes that may
		 * never come. */
		*why = n == 0 ? "empty frame" : "frame length over the maximum";
		return -EMSGSIZE;
	}
	if (len - FRAME_HDR_LEN < n) /* cannot wrap: len >= FRAME_HDR_LEN */
		return 0;
	*body = src + FRAME_HDR_LEN;
	*body_len = n;
	return (ssize_t)(FRAME_HDR_LEN + n);
}

void frame_put_header(uint8_t hdr[static FRAME_HDR_LEN], size_t body_len)
{
	hdr[0] = (uint8_t)(body_len >> 24);
	hdr[1] = (uint8_t)(body_len >> 16);
	hdr[2] = (uint8_t)(body_len >> 8);
	hdr[3] = (uint8_t)body_len;
}

/* Waits until fd is ready for events or the deadline passes. */
static int wait_fd(int fd, short events, unsigned long long deadline_ms)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = events};
		unsigned long long now = now_ms();
		int r;

		if (now >= deadline_ms)
			return -ETIMEDOUT;
		r = poll(&pfd, 1, (int)(deadline_ms - now > 60000 ? 60000 : deadline_ms - now));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r > 0)
			return 0;
	}
}

static int write_deadline(int fd, const uint8_t *p, size_t len, unsigned long long deadline_ms)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		int ret;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOTSOCK)
				n = write(fd, p, len);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			ret = wait_fd(fd, POLLOUT, deadline_ms);
			if (ret < 0)
				return ret;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int frame_write_fd(int fd, const uint8_t *body, size_t len, unsigned long long deadline_ms)
{
	uint8_t hdr[FRAME_HDR_LEN];
	int ret;

	if (len == 0 || len > FRAME_MAX_BODY)
		return -EMSGSIZE;
	frame_put_header(hdr, len);
	ret = write_deadline(fd, hdr, sizeof(hdr), deadline_ms);
	if (ret < 0)
		return ret;
	return write_deadline(fd, body, len, deadline_ms);
}

static int read_deadline(int fd, uint8_t *p, size_t len, unsigned long long deadline_ms)
{
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		int ret;

		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			ret = wait_fd(fd, POLLIN, deadline_ms);
			if (ret < 0)
				return ret;
			continue;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int frame_read_fd(int fd, uint8_t **body, size_t *len, unsigned long long deadline_ms,
		  const char **why)
{
	uint8_t hdr[FRAME_HDR_LEN];
	const uint8_t *b;
	size_t blen;
	ssize_t r;
	uint32_t n;
	uint8_t *buf;
	int ret;

	*body = NULL;
	*len = 0;
	ret = read_deadline(fd, hdr, sizeof(hdr), deadline_ms);
	if (ret < 0)
		return ret;
	r = frame_decode(hdr, sizeof(hdr), &b, &blen, why);
	if (r < 0)
		return (int)r;
	n = load_be32(hdr);
	buf = xmalloc(n);
	ret = read_deadline(fd, buf, n, deadline_ms);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	*body = buf;
	*len = n;
	return 0;
}

ssize_t seqpacket_recv(int fd, uint8_t *buf, size_t cap, int *fds, size_t *nfds, size_t max_fds,
		       const char **why)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * WMSG_MAX_FDS)];
	} cbuf;
	struct iovec iov = {.iov_base = buf, .iov_len = cap};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	size_t got = 0;
	bool extra = false;
	ssize_t n;

	if (nfds)
		*nfds = 0;
	if (fds) {
		if (max_fds > WMSG_MAX_FDS)
			max_fds = WMSG_MAX_FDS;
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * max_fds);
	}
	do {
		n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	/* Take every descriptor first, so none leaks on the error paths. */
	for (struct cmsghdr *c = fds ? CMSG_FIRSTHDR(&msg) : NULL; c; c = CMSG_NXTHDR(&msg, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int f;

			memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (got < max_fds) {
				fds[got++] = f;
			} else {
				close(f);
				extra = true;
			}
		}
	}
	if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || extra) {
		for (size_t i = 0; i < got; i++)
			close(fds[i]);
		*why = (msg.msg_flags & MSG_TRUNC)    ? "message truncated"
		       : (msg.msg_flags & MSG_CTRUNC) ? "control data truncated"
						      : "too many descriptors";
		return -EMSGSIZE;
	}
	if (nfds)
		*nfds = got;
	else
		for (size_t i = 0; i < got; i++)
			close(fds[i]);
	return n;
}

int seqpacket_send(int fd, const uint8_t *buf, size_t len, const int *fds, size_t nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * WMSG_MAX_FDS)];
	} cbuf;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	if (len == 0 || len > WMSG_MAX_LEN || nfds > WMSG_MAX_FDS)
		return -EMSGSIZE;
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	do {
		n = sendmsg(fd, &msg, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EMSGSIZE;
}
