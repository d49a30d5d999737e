/* ts0's routes through the supervisor (routes.c): the netmap's peers'
 * addresses, their subnet routes and quad-100, as one RouteSet. All on the
 * control thread. */
#ifndef TSCNI_WORKER_ROUTES_H
#define TSCNI_WORKER_ROUTES_H

#include <stdbool.h>

#include "worker.pb-c.h"

struct worker_ctx;
struct netmap;

enum routes_limits {
	ROUTES_PART = 2000,	/* prefixes per RouteSet datagram (< WMSG_MAX_LEN) */
	ROUTES_RETRY_MS = 1000, /* after a refused or failed set */
};

/* A new netmap: the set it reaches, sent when it differs from the last. */
void routes_update(struct worker_ctx *ctx, const struct netmap *nm);
/* A NetopReply: true when it answers our RouteSet (consumed). */
bool routes_reply(struct worker_ctx *ctx, const Tscni__NetopReply *r);
/* The control thread's housekeeping timer: parts the socket refused, retries. */
void routes_tick(struct worker_ctx *ctx);
/* The supervisor went away / a new one adopted us (sup_version set). */
void routes_supervisor_gone(struct worker_ctx *ctx);
void routes_adopted(struct worker_ctx *ctx);
/* Whether Ready may be sent: a set was applied (or the supervisor speaks
 * protocol 1 and gets the wide routes with the addresses). */
bool routes_ready(const struct worker_ctx *ctx);

#endif
