/* The plugin's side of the CNI socket. */
#include "client.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "mem.h"
#include "validate.h"

static int remaining_ms(unsigned long long deadline_ms)
{
	unsigned long long now = now_ms();

	if (now >= deadline_ms)
		return 0;
	return deadline_ms - now > 60000 ? 60000 : (int)(deadline_ms - now);
}

/* Waits for events on fd until deadline_ms. Returns 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, unsigned long long deadline_ms)
{
	struct pollfd pfd = {.fd = fd, .events = events};

	for (;;) {
		int left = remaining_ms(deadline_ms), n;

		if (left == 0)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* The supervisor runs as root: a socket file, or a listener behind it, that
 * belongs to anyone else could be a local user's stand-in collecting pod
 * metadata and answering with addresses of its choosing. The plugin's own
 * user is accepted too, so that tests and a supervisor run by the same
 * unprivileged user still meet. */
static bool trusted_uid(uid_t uid)
{
	return uid == 0 || uid == geteuid();
}

static int check_socket_file(const char *path, const char **why)
{
	struct stat sb;

	if (lstat(path, &sb) < 0)
		return -errno;
	if (!S_ISSOCK(sb.st_mode)) {
		*why = "refusing to connect: the path is not a socket";
		return -EPERM;
	}
	if (!trusted_uid(sb.st_uid)) {
		*why = "refusing to connect: the socket is not owned by root";
		return -EPERM;
	}
	return 0;
}

static int check_peer(int fd, const char **why)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	if (!trusted_uid(cred.uid)) {
		*why = "refusing to talk: the process behind the socket does not run as root";
		return -EPERM;
	}
	return 0;
}

static int connect_path(const char *path, unsigned long long deadline_ms, int *fd_out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t sl = sizeof(sa);
	int fd, ret, soerr = 0;

	*fd_out = -1;
	if (strscpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		ret = -errno;
		if (ret == -EINTR)
			continue;
		if (ret == -EAGAIN) {
			/* A unix listener with a full backlog: try again
			 * shortly, within the connect budget. */
			struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};

			if (remaining_ms(deadline_ms) == 0) {
				ret = -ETIMEDOUT;
				goto err;
			}
			nanosleep(&ts, NULL);
			continue;
		}
		if (ret != -EINPROGRESS)
			goto err; /* ENOENT, ECONNREFUSED, EACCES: at once */
		ret = wait_fd(fd, POLLOUT, deadline_ms);
		if (ret < 0)
			goto err;
		sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
			ret = -errno;
			goto err;
		}
		if (soerr) {
			ret = -soerr;
			goto err;
		}
		break;
	}
	*fd_out = fd;
	return 0;
err:
	close(fd);
	return ret;
}

int client_call(const char *path, const Tscni__CniRequest *req, unsigned long long deadline_ms,
		Tscni__CniReply **reply, const char **why)
{
	unsigned long long connect_deadline = now_ms() + CLIENT_CONNECT_MAX_MS;
	uint8_t *out = NULL, *in = NULL;
	Tscni__CniReply *r = NULL;
	size_t out_len, in_len = 0;
	const char *fwhy = NULL;
	int fd = -1, ret;
	char peek;
	ssize_t n;

	*reply = NULL;
	/* Never send what the supervisor must refuse: that would look like an
	 * unavailable supervisor and be retried for ever. */
	if (validate_cni_request(req, why) < 0)
		return -EINVAL;
	*why = "connect";
	if (connect_deadline > deadline_ms)
		connect_deadline = deadline_ms;
	ret = check_socket_file(path, why);
	if (ret < 0)
		goto out;
	ret = connect_path(path, connect_deadline, &fd);
	if (ret < 0)
		goto out;
	ret = check_peer(fd, why);
	if (ret < 0)
		goto out;

	out_len = tscni__cni_request__get_packed_size(req);
	if (out_len == 0 || out_len > FRAME_MAX_BODY) {
		*why = "request too large";
		ret = -EMSGSIZE;
		goto out;
	}
	out = xmalloc(out_len);
	tscni__cni_request__pack(req, out);
	*why = "send";
	ret = frame_write_fd(fd, out, out_len, deadline_ms);
	if (ret < 0)
		goto out;

	/* A supervisor that closes without sending a byte is gone (killed,
	 * restarting): that is "unavailable", not a protocol error. Only a
	 * reply that started and then broke off counts as truncated. */
	*why = "receive";
	ret = wait_fd(fd, POLLIN, deadline_ms);
	if (ret < 0)
		goto out;
	do {
		n = recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n == 0) {
		ret = -ECONNRESET;
		goto out;
	}
	if (n < 0 && errno != EAGAIN) {
		ret = -errno;
		goto out;
	}
	ret = frame_read_fd(fd, &in, &in_len, deadline_ms, &fwhy);
	if (ret == -ECONNRESET) {
		*why = "reply truncated";
		ret = -EPROTO;
		goto out;
	}
	if (ret == -EMSGSIZE || ret == -EBADMSG) {
		*why = fwhy ? fwhy : "bad reply frame";
		ret = -EPROTO;
		goto out;
	}
	if (ret < 0)
		goto out;

	r = tscni__cni_reply__unpack(NULL, in_len, in);
	if (!r) {
		*why = "reply does not decode";
		ret = -EPROTO;
		goto out;
	}
	if (r->protocol_version != CNI_PROTOCOL_VERSION) {
		*why = "reply from another protocol version";
		ret = -EPROTO;
		goto out;
	}
	if (validate_cni_reply(r, &fwhy) < 0) {
		*why = fwhy ? fwhy : "invalid reply";
		ret = -EPROTO;
		goto out;
	}
	*reply = r;
	r = NULL;
	*why = NULL;
	ret = 0;
out:
	if (r)
		tscni__cni_reply__free_unpacked(r, NULL);
	free(in);
	free(out);
	if (fd >= 0)
		close(fd);
	return ret;
}
