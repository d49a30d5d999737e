/* ts0's routes: exactly what the netmap reaches through the tunnel (each
 * peer's addresses, its subnet routes, quad-100), sent whole to the
 * supervisor as a RouteSet (protocol 2), which applies its route policy
 * (--route-all, --accept-routes, --route-deny, the pod's own networks) and
 * makes the kernel's routes match. One set in flight at a time; a set that
 * changed meanwhile follows the reply. While no supervisor is there the
 * routes on ts0 stay as they are and the newest set goes to the next one.
 *
 * A supervisor of protocol 1 knows no RouteSet: it gets the two wide
 * routes, one NetopRequest each, as before. */
#include "routes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ip.h"
#include "log.h"
#include "mem.h"
#include "netmap.h"
#include "validate.h"
#include "worker.h"

static uint32_t new_id(struct worker_ctx *ctx)
{
	if (++ctx->next_id == 0)
		ctx->next_id = 1;
	return ctx->next_id;
}

/* Sends the parts of the current set from routes_cursor on, as many as the
 * socket takes now; the rest follows from routes_tick. */
static void send_parts(struct worker_ctx *ctx)
{
	Tscni__IpPrefix *pb = NULL, **pbp = NULL;

	while (ctx->routes_sending) {
		Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
		Tscni__RouteSet q = TSCNI__ROUTE_SET__INIT;
		size_t left = ctx->n_routes_want - ctx->routes_cursor;
		size_t n = left < ROUTES_PART ? left : ROUTES_PART;
		int ret;

		if (!pb) {
			/* The first part is the largest; each entry is
			 * initialised below. */
			pb = xmalloc((n ? n : 1) * sizeof(*pb));
			pbp = xmalloc((n ? n : 1) * sizeof(*pbp));
		}
		for (size_t i = 0; i < n; i++) {
			tscni__ip_prefix__init(&pb[i]);
			ip_prefix_to_pb(&ctx->routes_want[ctx->routes_cursor + i], &pb[i]);
			pbp[i] = &pb[i];
		}
		q.id = ctx->routes_id;
		q.routes = pbp;
		q.n_routes = n;
		q.more = n < left;
		m.body_case = TSCNI__WORKER_MSG__BODY_ROUTE_SET;
		m.route_set = &q;
		ret = ipc_send(WORKER_FD_CTL, &m);
		if (ret == -EAGAIN)
			break; /* the supervisor is behind: routes_tick goes on */
		if (ret < 0) {
			log_err_r(ret, "pod %s: send ts0's routes to the supervisor", ctx->pod_uid);
			ctx->routes_sending = false;
			ctx->routes_id = 0;
			ctx->routes_dirty = true;
			ctx->routes_retry_at = uv_now(&ctx->loop) + ROUTES_RETRY_MS;
			break;
		}
		ctx->routes_cursor += n;
		if (!q.more)
			ctx->routes_sending = false; /* now the reply */
	}
	free(pb);
	free(pbp);
}

static void push(struct worker_ctx *ctx)
{
	if (!ctx->ctl_open || ctx->adopting || ctx->sup_version < 2 || !ctx->routes_known)
		return;
	if (ctx->routes_id && !ctx->routes_sending)
		return; /* a set awaits its reply; this one follows it */
	if (ctx->routes_retry_at && uv_now(&ctx->loop) < ctx->routes_retry_at)
		return;
	ctx->routes_retry_at = 0;
	/* A set half sent is dropped: the supervisor forgets a partial set
	 * when another id begins. */
	ctx->routes_id = new_id(ctx);
	ctx->routes_cursor = 0;
	ctx->routes_sending = true;
	ctx->routes_dirty = false;
	send_parts(ctx);
}

void routes_update(struct worker_ctx *ctx, const struct netmap *nm)
{
	struct ip_prefix *want;
	size_t n = 2, k = 0;

	for (size_t i = 0; i < nm->n_peers; i++)
		n += nm->peers[i]->n_addresses + nm->peers[i]->n_primary_routes;
	if (n > ROUTE_SET_TOTAL_MAX) {
		log_warn("pod %s: the netmap reaches %zu prefixes; ts0 gets the first %d",
			 ctx->pod_uid, n, ROUTE_SET_TOTAL_MAX);
		n = ROUTE_SET_TOTAL_MAX;
	}
	want = xcalloc(n, sizeof(*want));
	want[k++] = ip_quad100_v4;
	want[k++] = ip_quad100_v6;
	for (size_t i = 0; i < nm->n_peers; i++) {
		const struct netmap_node *p = nm->peers[i];

		for (size_t j = 0; j < p->n_addresses && k < n; j++)
			want[k++] = p->addresses[j];
		for (size_t j = 0; j < p->n_primary_routes && k < n; j++)
			want[k++] = p->primary_routes[j];
	}
	for (size_t i = 0; i < k; i++)
		ip_prefix_mask(&want[i]); /* as the supervisor compares them */
	qsort(want, k, sizeof(*want), ip_prefix_cmp);
	{
		size_t u = 0;

		for (size_t i = 0; i < k; i++)
			if (!u || ip_prefix_cmp(&want[u - 1], &want[i]) != 0)
				want[u++] = want[i];
		k = u;
	}
	if (ctx->routes_known && k == ctx->n_routes_want &&
	    memcmp(want, ctx->routes_want, k * sizeof(*want)) == 0) {
		free(want);
		return;
	}
	free(ctx->routes_want);
	ctx->routes_want = want;
	ctx->n_routes_want = k;
	ctx->routes_known = true;
	ctx->routes_dirty = true;
	if (ctx->routes_sending)
		ctx->routes_id = 0; /* restart with the new set below */
	push(ctx);
	if (ctx->routes_sending || ctx->routes_dirty)
		worker_tick_busy(ctx); /* routes_tick goes on with it */
}

bool routes_reply(struct worker_ctx *ctx, const Tscni__NetopReply *r)
{
	if (!ctx->routes_id || r->id != ctx->routes_id)
		return false;
	ctx->routes_id = 0;
	if (r->err < 0) {
		/* Busy with a set of an earlier process of ours, starting,
		 * netlink trouble: the same set again in a moment. */
		log_warn_r(r->err, "pod %s: the supervisor did not set ts0's routes: %s",
			   ctx->pod_uid, r->why[0] ? r->why : "");
		ctx->routes_dirty = true;
		ctx->routes_retry_at = uv_now(&ctx->loop) + ROUTES_RETRY_MS;
		worker_tick_busy(ctx);
		return true;
	}
	if (r->refused != ctx->routes_refused || r->not_accepted != ctx->routes_not_accepted ||
	    !ctx->routes_applied)
		log_info("pod %s: ts0: %u routes; refused by the supervisor's policy: %u; subnet "
			 "routes not accepted: %u",
			 ctx->pod_uid, r->routes, r->refused, r->not_accepted);
	ctx->routes_refused = r->refused;
	ctx->routes_not_accepted = r->not_accepted;
	ctx->routes_applied = true;
	if (ctx->routes_dirty)
		push(ctx);
	worker_maybe_ready(ctx);
	return true;
}

void routes_tick(struct worker_ctx *ctx)
{
	if (ctx->routes_sending)
		send_parts(ctx);
	else if (ctx->routes_dirty)
		push(ctx);
}

void routes_supervisor_gone(struct worker_ctx *ctx)
{
	/* The set in flight died with it: the next supervisor gets the
	 * newest. Routes on ts0 stay as they are meanwhile. */
	if (ctx->routes_id) {
		ctx->routes_id = 0;
		ctx->routes_sending = false;
	}
	ctx->routes_dirty = ctx->routes_known;
	ctx->routes_retry_at = 0;
}

void routes_adopted(struct worker_ctx *ctx)
{
	/* The new supervisor may have another policy, and the netmap moved
	 * on while nobody could apply it. */
	ctx->routes_dirty = ctx->routes_known;
	push(ctx);
}

bool routes_ready(const struct worker_ctx *ctx)
{
	return ctx->sup_version < 2 || ctx->routes_applied;
}
