/* Framing. The CNI socket is a stream: each message is a 4-byte big-endian
 * length followed by that many bytes of packed protobuf, the length bounded by
 * FRAME_MAX_BODY. Worker sockets are SOCK_SEQPACKET: one message per datagram,
 * at most WMSG_MAX_LEN bytes; truncation is a protocol error. */
#ifndef TSCNI_COMMON_FRAME_H
#define TSCNI_COMMON_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum frame_limits {
	FRAME_HDR_LEN = 4,
	FRAME_MAX_BODY = 1 << 20,
	WMSG_MAX_LEN = 65536,
	WMSG_MAX_FDS = 8,
};

/* Bumped when the CNI to supervisor protocol changes incompatibly. */
enum { CNI_PROTOCOL_VERSION = 1 };

/* Decodes one frame from src.
 * > 0: bytes consumed, *body and *body_len point into src;
 *   0: need more bytes (only ever when the header promises a valid length);
 * < 0: -EMSGSIZE or -EBADMSG, *why set to a static string. */
ssize_t frame_decode(const uint8_t *src, size_t len, const uint8_t **body, size_t *body_len,
		     const char **why);

/* Writes the 4-byte header for a body of body_len (<= FRAME_MAX_BODY). */
void frame_put_header(uint8_t hdr[static FRAME_HDR_LEN], size_t body_len);

/* Blocking helpers for one request/reply over a stream fd (the CNI plugin,
 * the status subcommand, tests). Every wait uses poll() against deadline_ms
 * (CLOCK_MONOTONIC milliseconds, see now_ms()). Return 0 or a negative errno:
 * -ETIMEDOUT at the deadline, -ECONNRESET on EOF before a whole frame,
 * -EMSGSIZE/-EBADMSG for a bad header (*why set). */
int frame_write_fd(int fd, const uint8_t *body, size_t len, unsigned long long deadline_ms);
/* On success *body is malloc'd (caller frees) and *len set. */
int frame_read_fd(int fd, uint8_t **body, size_t *len, unsigned long long deadline_ms,
		  const char **why);

/* Receives one datagram from a SOCK_SEQPACKET fd into buf (cap bytes).
 * fds == NULL: no control buffer at all, so a peer cannot pass descriptors;
 * otherwise up to max_fds received fds (MSG_CMSG_CLOEXEC) are stored in fds
 * and counted in *nfds. Returns the length (> 0), 0 on EOF, -EAGAIN, or
 * -EMSGSIZE when MSG_TRUNC or MSG_CTRUNC was set (any fds received are closed
 * first) with *why set. */
ssize_t seqpacket_recv(int fd, uint8_t *buf, size_t cap, int *fds, size_t *nfds, size_t max_fds,
		       const char **why);
/* Sends one datagram with optional fds (SCM_RIGHTS). MSG_NOSIGNAL. Returns 0
 * or a negative errno. */
int seqpacket_send(int fd, const uint8_t *buf, size_t len, const int *fds, size_t nfds);

#endif
