/* Name resolution for workers (ResolveRequest on fd 3). A worker's sandbox
 * has no resolv.conf and no sockets of its own to a DNS server; the control
 * client asks the supervisor instead, which answers with uv_getaddrinfo on
 * the libuv threadpool, never blocking its loop.
 *
 * resolver_request is a worker_resolve_fn (workers.h): set it as
 * workers_config.resolve with the resolver as resolve_arg. A worker that is
 * reported GONE must be forgotten (resolver_forget) before it is freed, so
 * that no answer is sent to it. Everything runs on the supervisor's loop. */
#ifndef TSCNI_SUPERVISOR_RESOLVER_H
#define TSCNI_SUPERVISOR_RESOLVER_H

#include <stdint.h>
#include <uv.h>

struct resolver;
struct worker;

enum resolver_limits {
	RESOLVER_MAX_PENDING = 256, /* look-ups in flight, all workers together */
	RESOLVER_MAX_ADDRS = 8,	    /* addresses in one answer */
};

/* 0 with *out set, or -ENOMEM. */
int resolver_new(uv_loop_t *loop, struct resolver **out);
/* Forgets every pending look-up (their answers are dropped) and frees the
 * resolver once the last of them finished: run the loop afterwards. */
void resolver_free(struct resolver *r);

void resolver_request(struct worker *w, uint32_t id, const char *host, void *arg);
/* w is going away: its pending look-ups finish unanswered. */
void resolver_forget(struct resolver *r, const struct worker *w);

#endif
