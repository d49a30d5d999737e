/* One request/reply exchange with the supervisor on its unix socket. */
#ifndef TSCNI_CNI_CLIENT_H
#define TSCNI_CNI_CLIENT_H

#include "cni.pb-c.h"

enum client_limits {
	CLIENT_CONNECT_MAX_MS = 1000, /* connect never waits longer (contract 8) */
};

/* Connects to path (non-blocking connect, then poll; ENOENT and ECONNREFUSED
 * fail at once; at most CLIENT_CONNECT_MAX_MS), sends req framed, and waits
 * for one framed reply, every step bounded by deadline_ms (now_ms() clock).
 * The reply is unpacked, checked with validate_cni_reply() and its
 * protocol_version compared with CNI_PROTOCOL_VERSION.
 *
 * Returns 0 with *reply set (free with tscni__cni_reply__free_unpacked(r,
 * NULL)); -EINVAL when req fails validate_cni_request() (nothing is sent,
 * *why names the field); -EPROTO when the supervisor answered with something malformed,
 * truncated or of another protocol version (*why says what); any other
 * negative errno when the supervisor could not be reached or did not answer
 * in time (-ENOENT, -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, ...), *why then
 * naming the step ("connect", "send", "receive"). -EPERM, with *why saying
 * which, when path is not a socket, or the socket or the process listening
 * on it belongs to neither root nor the caller's own user: nothing is sent.
 * *reply is NULL on failure. */
int client_call(const char *path, const Tscni__CniRequest *req, unsigned long long deadline_ms,
		Tscni__CniReply **reply, const char **why);

#endif
