/* HTTP requests through libcurl's multi interface, driven by a libuv loop
 * (curl_multi_socket_action from uv_poll and uv_timer callbacks): nothing
 * blocks the loop. One struct http per loop; each request is one transfer,
 * its answer collected up to a size bound. Private to supervisor/authkeys. */
#ifndef TSCNI_AUTHKEYS_HTTP_H
#define TSCNI_AUTHKEYS_HTTP_H

#include <stddef.h>

#include <uv.h>

struct http;
struct http_xfer;

/* What a finished transfer brought: curl_err 0 and an HTTP status, or a
 * transport failure (curl_err a CURLcode, why its text). body is the answer
 * (NUL-terminated, wiped and freed after the callback returns). */
struct http_result {
	int curl_err;
	const char *why;
	long status;
	unsigned int retry_after_s; /* Retry-After in seconds, 0 when absent */
	const char *body;
	size_t len;
	int truncated; /* the answer was longer than max_answer */
};

typedef void http_done_fn(void *arg, const struct http_result *r);

struct http_request {
	const char *method; /* "GET", "POST", "DELETE" */
	const char *url;
	const char *bearer;	  /* NULL or the token; copied into a header, wiped */
	const char *content_type; /* with body */
	const char *body;	  /* NULL or the request body; copied, wiped */
	size_t max_answer;
	unsigned int timeout_ms;
};

int http_new(uv_loop_t *loop, struct http **out);
/* https verifies against pem (len bytes, borrowed: alive while transfers
 * start; each transfer takes its own copy) instead of libcurl's default
 * bundle. pem NULL: the default again. */
void http_set_ca(struct http *h, const char *pem, size_t len);
/* Aborts every transfer (no callbacks) and closes the handles; the loop
 * frees the rest when it runs. NULL-safe. */
void http_close(struct http *h);
/* Starts a transfer: 0, or a negative errno (nothing started). cb runs on the
 * loop, never from within http_start. */
int http_start(struct http *h, const struct http_request *req, http_done_fn *cb, void *arg,
	       struct http_xfer **out);
/* Aborts one transfer: its callback never runs. */
void http_abort(struct http_xfer *x);

#endif
