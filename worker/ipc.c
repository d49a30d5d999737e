/* The worker's end of fd 3: one packed protobuf message per SOCK_SEQPACKET
 * datagram. The worker trusts its supervisor, but still bounds and validates
 * what it unpacks (validate_supervisor_msg). */
#include "worker.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"
#include "validate.h"

int ipc_send(int fd, const Tscni__WorkerMsg *m)
{
	size_t len = tscni__worker_msg__get_packed_size(m);
	uint8_t *buf;
	int ret;

	if (len == 0 || len > WMSG_MAX_LEN)
		return -EMSGSIZE;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	tscni__worker_msg__pack(m, buf);
	ret = seqpacket_send(fd, buf, len, NULL, 0);
	free(buf);
	return ret;
}

int ipc_recv(int fd, Tscni__SupervisorMsg **out, const char **why)
{
	uint8_t *buf;
	ssize_t n;
	int ret;

	*out = NULL;
	buf = malloc(WMSG_MAX_LEN);
	if (!buf)
		return -ENOMEM;
	n = seqpacket_recv(fd, buf, WMSG_MAX_LEN, NULL, NULL, 0, why);
	if (n <= 0) {
		ret = (int)n;
		goto out;
	}
	*out = tscni__supervisor_msg__unpack(NULL, (size_t)n, buf);
	if (!*out) {
		*why = "undecodable SupervisorMsg";
		ret = -EBADMSG;
		goto out;
	}
	ret = validate_supervisor_msg(*out, why);
	if (ret < 0) {
		tscni__supervisor_msg__free_unpacked(*out, NULL);
		*out = NULL;
		goto out;
	}
	ret = 1;
out:
	/* Start carries keys: never leave them in freed memory. */
	if (n > 0)
		explicit_bzero(buf, (size_t)n);
	free(buf);
	return ret;
}

int ipc_send_hello(int fd, const char *pod_uid, uint32_t ready_state)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Hello h = TSCNI__HELLO__INIT;

	h.min_version = WORKER_PROTO_MIN;
	h.max_version = WORKER_PROTO_MAX;
	h.pod_uid = (char *)pod_uid;
	h.pid = getpid();
	h.ready_state = ready_state;
	m.body_case = TSCNI__WORKER_MSG__BODY_HELLO;
	m.hello = &h;
	return ipc_send(fd, &m);
}

int ipc_send_event_control(int fd, Tscni__EventKind kind, const char *detail,
			   Tscni__ControlStatus *control)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Event ev = TSCNI__EVENT__INIT;

	ev.kind = kind;
	ev.detail = (char *)detail;
	ev.control = control;
	m.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
	m.event = &ev;
	return ipc_send(fd, &m);
}

int ipc_send_event(int fd, Tscni__EventKind kind, const char *detail)
{
	return ipc_send_event_control(fd, kind, detail, NULL);
}

int ipc_send_custody(int fd, const int *fds, size_t nfds)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Custody c = TSCNI__CUSTODY__INIT;
	uint8_t buf[32];
	size_t len;

	c.fd_count = (uint32_t)nfds;
	m.body_case = TSCNI__WORKER_MSG__BODY_CUSTODY;
	m.custody = &c;
	len = tscni__worker_msg__pack(&m, buf);
	return seqpacket_send(fd, buf, len, fds, nfds);
}

void ipc_log_sink(void *arg, enum log_level level, const char *line)
{
	struct worker_ctx *ctx = arg;
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Log l = TSCNI__LOG__INIT;
	char msg[MSG_MAX_LEN + 1];

	/* While the supervisor is away the line has nowhere to go. */
	if (!ctx->ctl_open)
		return;
	snprintf(msg, sizeof(msg), "%s", line);
	l.level = (uint32_t)level;
	l.msg = msg;
	m.body_case = TSCNI__WORKER_MSG__BODY_LOG;
	m.log = &l;
	ipc_send(WORKER_FD_CTL, &m);
}
