/* Key expiry seen from the worker: when to ask the supervisor for
 * re-authentication (reauth.h). The answer, if the supervisor confirms the
 * expiry, is a new process of this worker with a new node key, the old one
 * as OldNodeKey and a fresh auth key (worker.proto's Start.old_node_public). */
#include "reauth.h"

#include <time.h>

#include "log.h"
#include "netmap.h"
#include "validate.h"
#include "worker.h"

enum reauth_need reauth_need(bool has_expiry, int64_t key_expiry, bool expired, int64_t now_control)
{
	if (expired)
		return REAUTH_EXPIRED;
	/* Zero KeyExpiry: the key never expires (tagged nodes, expiry
	 * disabled): left alone. */
	if (!has_expiry)
		return REAUTH_NONE;
	if (key_expiry <= now_control)
		return REAUTH_EXPIRED;
	if (key_expiry - now_control <= REAUTH_MARGIN_S)
		return REAUTH_SOON;
	return REAUTH_NONE;
}

bool reauth_send_due(enum reauth_need need, uint64_t now_ms, uint64_t last_ms, bool news)
{
	if (need == REAUTH_NONE)
		return false;
	return last_ms == 0 || now_ms - last_ms >= (news ? REAUTH_NEWS_GAP_MS : REAUTH_RESEND_MS);
}

static enum reauth_need current(const struct worker_ctx *ctx)
{
	return reauth_need(ctx->reauth.has_expiry, ctx->reauth.key_expiry, ctx->reauth.expired,
			   (int64_t)time(NULL) + ctx->reauth.skew);
}

void reauth_tick(struct worker_ctx *ctx)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__ReauthRequest q = TSCNI__REAUTH_REQUEST__INIT;
	enum reauth_need need = current(ctx);
	uint64_t now = uv_now(&ctx->loop);

	/* Protocol 3 and up only: an older supervisor ends a worker that
	 * sends a message it does not know. */
	if (!ctx->ctl_open || ctx->adopting || ctx->sup_version < 3 || ctx->logging_out ||
	    !reauth_send_due(need, now, ctx->reauth.last_ms, ctx->reauth.news))
		return;
	ctx->reauth.last_ms = now ? now : 1;
	ctx->reauth.news = false;
	q.expired = need == REAUTH_EXPIRED;
	q.key_expiry_unix = ctx->reauth.has_expiry && ctx->reauth.key_expiry > 0
				    ? (uint64_t)ctx->reauth.key_expiry
				    : 0;
	m.body_case = TSCNI__WORKER_MSG__BODY_REAUTH_REQUEST;
	m.reauth_request = &q;
	log_info("pod %s: node key %s: asking the supervisor for re-authentication", ctx->pod_uid,
		 q.expired ? "expired" : "expires soon");
	ipc_send(WORKER_FD_CTL, &m);
}

void reauth_netmap(struct worker_ctx *ctx, const struct netmap *nm)
{
	if (!nm->self)
		return;
	/* Something new from control: say so now, not at the next resend. */
	if (nm->self->has_key_expiry != ctx->reauth.has_expiry ||
	    nm->self->key_expiry != ctx->reauth.key_expiry ||
	    nm->self->expired != ctx->reauth.expired)
		ctx->reauth.news = true;
	ctx->reauth.has_expiry = nm->self->has_key_expiry;
	ctx->reauth.key_expiry = nm->self->key_expiry;
	ctx->reauth.skew = nm->clock_skew;
	ctx->reauth.expired = nm->self->expired;
	reauth_tick(ctx);
}

void reauth_expired(struct worker_ctx *ctx)
{
	ctx->reauth.expired = true;
	reauth_tick(ctx);
}
