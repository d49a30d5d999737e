/* A small HTTP/1.1 server on the supervisor's loop, for the metrics and
 * health endpoints (metrics.h): GET and HEAD only, one request per
 * connection (every answer says Connection: close), no request body.
 *
 * Every resource a client can make it hold is bounded: at most
 * HTTP_CONNS_MAX connections (past that a new one is accepted and closed
 * at once), a request head of at most HTTP_HEAD_MAX bytes read into a
 * fixed buffer, HTTP_TIMEOUT_MS for the whole head and as long again for
 * the answer to be taken, and at most HTTP_LINGER_MAX bytes read and
 * dropped after the answer (a lingering close: closing with unread bytes
 * would reset the connection and lose the answer).
 *
 * The request head is parsed by http_request_parse, a pure function of
 * the bytes (fuzz/fuzz_http_request.c). */
#ifndef TSCNI_SUPERVISOR_HTTP_SERVE_H
#define TSCNI_SUPERVISOR_HTTP_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

enum http_limits {
	HTTP_HEAD_MAX = 4096,	  /* request line and headers, CRLFs included */
	HTTP_PATH_MAX = 256,	  /* the request target */
	HTTP_HEADERS_MAX = 64,	  /* header lines */
	HTTP_METHOD_MAX = 16,	  /* a method token's length */
	HTTP_CONNS_MAX = 16,	  /* connections at once */
	HTTP_TIMEOUT_MS = 5000,	  /* for the head; again for the answer */
	HTTP_LINGER_MAX = 65536,  /* bytes dropped after the answer */
	HTTP_SWEEP_MS = 250,	  /* how often deadlines are checked */
	HTTP_LISTEN_MAX_LEN = 64, /* "[v6 literal]:port" */
};

enum http_method {
	HTTP_GET = 1,
	HTTP_HEAD,
};

struct http_request {
	enum http_method method;
	char path[HTTP_PATH_MAX + 1]; /* the target up to its '?', NUL-terminated */
	unsigned int minor;	      /* HTTP/1.minor: 0 or 1 */
};

/* Parses the request head at the start of buf[0..len) (what arrived so
 * far). Returns the head's length (through its empty line) when it is
 * complete and good; 0 when more bytes are needed (len < HTTP_HEAD_MAX and
 * nothing so far is wrong); or a negative errno with *status the HTTP
 * status to answer and *why a static sentence naming the fault: 400 (not
 * HTTP/1.x, a malformed line, a missing Host in HTTP/1.1), 405 (a method
 * other than GET or HEAD), 414 (a target longer than HTTP_PATH_MAX), 431
 * (no end of head within HTTP_HEAD_MAX bytes, or more than
 * HTTP_HEADERS_MAX headers), 505 (HTTP/2 and later). Reads at most
 * HTTP_HEAD_MAX bytes of buf. Lines end in CRLF or a bare LF; obs-fold is
 * refused. req is filled on success only (zeroed otherwise). */
ssize_t http_request_parse(const uint8_t *buf, size_t len, struct http_request *req, int *status,
			   const char **why);

/* "A.B.C.D:PORT" or "[IPv6]:PORT", port 1..65535, into *out. 0, or
 * -EINVAL with *why set. */
int http_listen_parse(const char *s, struct sockaddr_storage *out, const char **why);

/* What a handler answers: status 200, 404, 503..., content_type (static),
 * body (malloc'ed, taken by the server; NULL for none). */
struct http_response {
	int status;
	const char *content_type;
	char *body;
	size_t body_len;
};

/* Called on the loop for each good request; fills resp (zeroed before).
 * For HEAD the server sends the headers of the body and drops it. */
typedef void http_handler_fn(void *arg, const struct http_request *req, struct http_response *resp);

struct http_server;

/* Listens on addr (TCP, IPv6 sockets IPv6-only) on loop. Returns 0 with
 * *out set, or a negative errno from libuv (EADDRINUSE...) with *out NULL;
 * fn never runs then. */
int http_server_open(uv_loop_t *loop, const struct sockaddr *addr, http_handler_fn *fn, void *arg,
		     struct http_server **out);

/* Connections refused at the cap since the server opened. */
uint64_t http_server_refused(const struct http_server *srv);

/* Stops listening and closes every connection; fn never runs again. The
 * memory goes in the close callbacks (run the loop). NULL does nothing. */
void http_server_close(struct http_server *srv);

#endif
