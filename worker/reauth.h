/* Key expiry seen from the worker (docs/design.md "Key expiry"): when its
 * node key expires within REAUTH_MARGIN_S, or control says it has, the
 * worker asks the supervisor for re-authentication (a ReauthRequest, which
 * carries no key and is only a hint: the supervisor confirms the expiry
 * itself). A node whose key does not expire (zero KeyExpiry: tagged nodes,
 * expiry disabled) never asks. */
#ifndef TSCNI_WORKER_REAUTH_H
#define TSCNI_WORKER_REAUTH_H

#include <stdbool.h>
#include <stdint.h>

struct worker_ctx;
struct netmap;

enum reauth_need {
	REAUTH_NONE,	/* no expiry, or one further off than the margin */
	REAUTH_SOON,	/* expires within REAUTH_MARGIN_S */
	REAUTH_EXPIRED, /* control said so, or KeyExpiry has passed */
};

enum reauth_limits {
	REAUTH_RESEND_MS = 20000, /* a request unanswered is sent again after */
	/* News from control (another KeyExpiry, Expired) is sent this long
	 * after the previous request at the soonest: just over the
	 * supervisor's PODS_REAUTH_ASK_S, which drops what comes sooner. */
	REAUTH_NEWS_GAP_MS = 11000,
};

/* The need of a self node with this KeyExpiry (has_expiry false: none),
 * control's Expired flag and control's clock now (local + skew). */
enum reauth_need reauth_need(bool has_expiry, int64_t key_expiry, bool expired,
			     int64_t now_control);

/* Should a request go out now? Never twice within REAUTH_RESEND_MS of the
 * last (last_ms 0: none sent yet), or, after news from control (news),
 * REAUTH_NEWS_GAP_MS. */
bool reauth_send_due(enum reauth_need need, uint64_t now_ms, uint64_t last_ms, bool news);

/* A netmap arrived: its self node's expiry is what the timer checks. */
void reauth_netmap(struct worker_ctx *ctx, const struct netmap *nm);
/* Control refused the node key as expired (NodeKeyExpired, Expired). */
void reauth_expired(struct worker_ctx *ctx);
/* The control thread's housekeeping tick: sends when due. */
void reauth_tick(struct worker_ctx *ctx);

#endif
