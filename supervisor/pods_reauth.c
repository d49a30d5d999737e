/* Key expiry while a pod runs (docs/design.md "Key expiry"). A worker whose
 * node key expires soon, or has expired by control's word, sends a
 * ReauthRequest. It carries no key and is never trusted: the supervisor
 *
 *   1. admits at most one request per pod at a time, none within
 *      PODS_REAUTH_ASK_S of the previous one, and no rotation within
 *      PODS_REAUTH_INTERVAL_S of the pod's last (a worker cannot collect
 *      keys by asking, nor make the supervisor hammer the API);
 *   2. confirms the expiry itself: with the Tailscale API or Headscale it
 *      reads the device of the node key it generated (the identity's) and
 *      needs a key expiry within REAUTH_MARGIN_S (+ REAUTH_SLACK_S); a
 *      device whose key does not expire (tagged, expiry disabled), another
 *      node key, or no device, is a refusal. With a static key nothing can
 *      be confirmed: the static key is handed again, under the same limits;
 *   3. makes a new node key as for a new identity (keys_generate), mints an
 *      auth key (authkeys_mint: its per-pod bound applies too) or takes the
 *      static one, and records the rotation in the pod's identity: the new
 *      node key, the old public key (old_node_public), not registered. The
 *      device cleanup and a restarted supervisor then know the right key;
 *   4. replaces the worker's process (workers_rekey): it registers with
 *      NodeKey = new, OldNodeKey = old and the auth key, and control keeps
 *      the node and its addresses. Its Ready marks the identity registered
 *      again and clears old_node_public (pods__identity_record).
 *
 * Every refusal is logged (rate-limited) with the pod's UID and the reason;
 * never a key. */
#include "pods.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "mem.h"
#include "pods_internal.h"
#include "pods_reauth.h"
#include "validate.h"
#include "state.h"
#include "supervisor.h"
#include "workers.h"

struct pod_reauth {
	struct pod_reauth_limits lim;
	struct attachment *a;
	struct authkeys_req *req; /* the device check or the mint */
	bool expired;		  /* what the worker claimed (for the log) */
	uint8_t new_private[KEY_LEN];
	uint8_t old_public[KEY_LEN];
	struct log_ratelimit rl;
};

/* ------------------------------------------------------ the decisions */

enum pods_reauth_verdict pods_reauth_admit(const struct pod_reauth_limits *l, uint64_t now_s)
{
	if (l->busy)
		return PODS_REAUTH_BUSY;
	if (l->last_ask_s && now_s - l->last_ask_s < PODS_REAUTH_ASK_S)
		return PODS_REAUTH_TOO_OFTEN;
	if (l->last_rotation_s && now_s - l->last_rotation_s < PODS_REAUTH_INTERVAL_S)
		return PODS_REAUTH_RATE_LIMITED;
	return PODS_REAUTH_OK;
}

enum pods_reauth_verdict pods_reauth_confirm(enum authkeys_kind kind, enum authkeys_device res,
					     int64_t expiry_unix, int64_t now_unix)
{
	if (kind == AUTHKEYS_STATIC)
		return PODS_REAUTH_OK; /* nothing to ask: rate limits only */
	switch (res) {
	case AUTHKEYS_DEVICE_FOUND:
		break;
	case AUTHKEYS_DEVICE_MISMATCH:
		return PODS_REAUTH_MISMATCH;
	case AUTHKEYS_DEVICE_ABSENT:
		return PODS_REAUTH_NO_DEVICE;
	default:
		return PODS_REAUTH_API_DOWN;
	}
	if (expiry_unix == 0)
		return PODS_REAUTH_NO_EXPIRY; /* tagged, or expiry disabled: left alone */
	if (expiry_unix > now_unix + REAUTH_MARGIN_S + REAUTH_SLACK_S)
		return PODS_REAUTH_NOT_DUE;
	return PODS_REAUTH_OK;
}

const char *pods_reauth_why(enum pods_reauth_verdict v)
{
	switch (v) {
	case PODS_REAUTH_OK:
		return "confirmed";
	case PODS_REAUTH_BUSY:
		return "a re-authentication of this pod is under way";
	case PODS_REAUTH_TOO_OFTEN:
		return "asked again too soon";
	case PODS_REAUTH_RATE_LIMITED:
		return "rate limited: the pod's node key was rotated less than 60 s ago";
	case PODS_REAUTH_NO_EXPIRY:
		return "the key source says the node key does not expire";
	case PODS_REAUTH_NOT_DUE:
		return "the key source says the node key is not about to expire";
	case PODS_REAUTH_MISMATCH:
		return "the key source's device has another node key";
	case PODS_REAUTH_NO_DEVICE:
		return "the key source has no device with the pod's node key";
	case PODS_REAUTH_API_DOWN:
		return "the key source could not be asked";
	case PODS_REAUTH_UNREGISTERED:
		return "the pod's node is not registered (its ADD presents a key)";
	case PODS_REAUTH_NO_KEY:
		return "no auth key to hand out";
	}
	return "?";
}

/* ------------------------------------------------------ the flow */

static uint64_t now_s(const struct pods *p)
{
	return uv_now(&p->sup->loop) / 1000 + 1;
}

/* A refusal, logged (rate-limited). */
static void refusal_log(struct pod_reauth *ra, enum pods_reauth_verdict v, const char *detail)
{
	uint64_t n = log_ratelimit_hit(&ra->rl, uv_now(&ra->a->pods->sup->loop), 10000);

	if (n)
		log_warn("%s: re-authentication refused (%s%s%s)%s", ra->a->tag, pods_reauth_why(v),
			 detail && *detail ? ": " : "", detail ? detail : "",
			 n > 1 ? " (and earlier ones not logged)" : "");
}

/* The request under way ends refused. */
static void refused(struct pod_reauth *ra, enum pods_reauth_verdict v, const char *detail)
{
	ra->lim.busy = false;
	sodium_memzero(ra->new_private, sizeof(ra->new_private));
	refusal_log(ra, v, detail);
}

struct op_rekey {
	struct op op;
	uint64_t att_id;
	uint8_t new_private[KEY_LEN];
	uint8_t old_public[KEY_LEN];
	char *auth_key; /* sodium_malloc'ed, or NULL */
	bool key_owned;
	int err;
};

/* Threadpool: the rotation into the identity, only while the identity's
 * node key is still the one the check confirmed. */
static void rekey_work(struct op *op)
{
	struct op_rekey *rk = (struct op_rekey *)op;
	struct pods *p = op->pods;
	ProtobufCBinaryData old_np, old_op;
	uint8_t pub[KEY_LEN];
	Tscni__Identity *id;
	int err = 0;

	if (!op->cur || op->cur->id != rk->att_id) {
		rk->err = -ESTALE;
		return;
	}
	uv_mutex_lock(&p->identity_lock);
	id = state_identity_get(p->st, op->cur->pod_uid, &err);
	if (!id) {
		rk->err = err < 0 ? err : -ENOENT;
		goto out;
	}
	if (id->node_private.len != KEY_LEN || keys_public(pub, id->node_private.data) < 0 ||
	    sodium_memcmp(pub, rk->old_public, KEY_LEN) != 0) {
		rk->err = -ESTALE;
		pods__identity_wipe_free(id);
		goto out;
	}
	old_np = id->node_private;
	old_op = id->old_node_public;
	id->node_private.data = rk->new_private;
	id->node_private.len = KEY_LEN;
	id->old_node_public.data = rk->old_public;
	id->old_node_public.len = KEY_LEN;
	id->registered = false;
	rk->err = state_identity_put(p->st, id);
	id->node_private = old_np;
	id->old_node_public = old_op;
	pods__identity_wipe_free(id);
out:
	uv_mutex_unlock(&p->identity_lock);
}

static void rekey_done(struct op *op)
{
	struct op_rekey *rk = (struct op_rekey *)op;
	struct attachment *a = op->cur;
	struct pod_reauth *ra = a && a->id == rk->att_id ? a->reauth : NULL;
	int ret = rk->err;

	if (ret == 0 && (!a || !a->worker))
		ret = -ENOTCONN;
	if (ret == 0)
		ret = workers_rekey(a->worker, rk->new_private, rk->old_public, rk->auth_key);
	if (ret < 0) {
		log_warn_r(ret, "%s: node key rotation not applied", op->tag);
	} else {
		log_info("%s: node key rotated: the worker re-registers with the new key, the old "
			 "one as OldNodeKey and a fresh auth key",
			 op->tag);
		if (ra)
			ra->lim.last_rotation_s = now_s(op->pods);
	}
	if (ra)
		ra->lim.busy = false;
	pods__op_finish(op);
}

static void rekey_destroy(struct op *op)
{
	struct op_rekey *rk = (struct op_rekey *)op;

	sodium_memzero(rk->new_private, sizeof(rk->new_private));
	if (rk->key_owned)
		authkeys_key_free(rk->auth_key);
	rk->auth_key = NULL;
}

static const struct op_type rekey_type = {
	.size = sizeof(struct op_rekey),
	.work = rekey_work,
	.done = rekey_done,
	.destroy = rekey_destroy,
};

/* The key is there (sodium_malloc'ed; owned: freed by the op): record and
 * apply. */
static void rotate(struct pod_reauth *ra, char *key, bool owned)
{
	struct attachment *a = ra->a;
	struct op_rekey *rk;

	if (a->pods->stopping) {
		if (owned)
			authkeys_key_free(key);
		ra->lim.busy = false;
		return;
	}
	rk = (struct op_rekey *)pods__op_new_for(a->pods, &rekey_type, a);
	rk->att_id = a->id;
	memcpy(rk->new_private, ra->new_private, KEY_LEN);
	memcpy(rk->old_public, ra->old_public, KEY_LEN);
	sodium_memzero(ra->new_private, sizeof(ra->new_private));
	rk->auth_key = key;
	rk->key_owned = owned;
	pods__op_enqueue(&rk->op);
}

static void minted(void *arg, char *key, const struct authkeys_error *err)
{
	struct pod_reauth *ra = arg;

	ra->req = NULL;
	if (!key) {
		refused(ra, PODS_REAUTH_NO_KEY, err ? err->msg : "");
		return;
	}
	rotate(ra, key, true);
}

/* The expiry is confirmed: a new node key, then the auth key. */
static void confirmed(struct pod_reauth *ra)
{
	struct pods *p = ra->a->pods;
	struct authkeys *ak = p->sup->authkeys;
	struct authkeys_error err;
	int ret;

	keys_generate(ra->new_private);
	log_info("%s: node key %s, confirmed%s: rotating it", ra->a->tag,
		 ra->expired ? "expired" : "expires soon",
		 authkeys_kind(ak) == AUTHKEYS_STATIC
			 ? " by nothing (a static key: rate limits only)"
			 : " by the key source");
	if (authkeys_kind(ak) == AUTHKEYS_STATIC) {
		if (!p->sup->auth_key || !*p->sup->auth_key) {
			refused(ra, PODS_REAUTH_NO_KEY, "no --auth-key-file or --auth-key-env");
			return;
		}
		{
			/* A copy: a rotated key file replaces sup->auth_key
			 * while the op waits its turn. */
			size_t n = strlen(p->sup->auth_key) + 1;
			char *copy = sodium_malloc(n);

			if (!copy) {
				refused(ra, PODS_REAUTH_NO_KEY, "out of memory");
				return;
			}
			memcpy(copy, p->sup->auth_key, n);
			rotate(ra, copy, true);
		}
		return;
	}
	{
		/* The fresh key carries the tags the pod's key carried: its
		 * own (the identity's, as its worker was started with), else
		 * --key-tags. */
		const struct tag_set *ts = ra->a->worker ? workers_tags(ra->a->worker) : NULL;
		const char *tagp[POD_TAGS_MAX];
		size_t n = ts ? ts->n : 0;

		for (size_t i = 0; i < n; i++)
			tagp[i] = ts->v[i];
		ret = authkeys_mint(ak, ra->a->pod_uid, ra->a->tag, tagp, n, minted, ra, &ra->req,
				    &err);
	}
	if (ret < 0)
		refused(ra, PODS_REAUTH_NO_KEY, err.msg);
}

static void checked(void *arg, enum authkeys_device res, int64_t expiry, const char *why)
{
	struct pod_reauth *ra = arg;
	struct pods *p = ra->a->pods;
	enum pods_reauth_verdict v;
	char detail[200];

	ra->req = NULL;
	v = pods_reauth_confirm(authkeys_kind(p->sup->authkeys), res, expiry, (int64_t)time(NULL));
	if (v != PODS_REAUTH_OK) {
		snprintf(detail, sizeof(detail), "worker said %s; key source: %s%s",
			 ra->expired ? "expired" : "expires soon", why ? why : "",
			 expiry ? ", expiry " : "");
		if (expiry)
			snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail),
				 "%" PRId64 " (in %" PRId64 " s)", expiry,
				 expiry - (int64_t)time(NULL));
		refused(ra, v, detail);
		return;
	}
	confirmed(ra);
}

void pods__reauth_request(struct pods *p, struct attachment *a, const struct worker_report *r)
{
	struct pod_reauth *ra = a->reauth;
	struct authkeys *ak = p->sup->authkeys;
	enum pods_reauth_verdict v;
	Tscni__Identity *id;
	uint64_t now = now_s(p);
	int err = 0, ret;

	if (p->stopping)
		return;
	if (!ra) {
		ra = a->reauth = xcalloc(1, sizeof(*ra));
		ra->a = a;
	}
	v = pods_reauth_admit(&ra->lim, now);
	if (v != PODS_REAUTH_OK) {
		/* TOO_OFTEN and BUSY: a worker repeating itself. */
		if (v == PODS_REAUTH_RATE_LIMITED)
			ra->lim.last_ask_s = now;
		/* Not refused(): a request under way (BUSY) goes on. */
		refusal_log(ra, v, NULL);
		return;
	}
	ra->lim.last_ask_s = now;
	ra->lim.busy = true;
	ra->expired = r->reauth_expired;
	/* The node key the supervisor generated, from the identity: never
	 * from anything the worker said. */
	uv_mutex_lock(&p->identity_lock);
	id = state_identity_get(p->st, a->pod_uid, &err);
	uv_mutex_unlock(&p->identity_lock);
	if (!id) {
		refused(ra, PODS_REAUTH_NO_DEVICE, "the pod's identity is unreadable");
		return;
	}
	if (!id->registered || id->node_private.len != KEY_LEN ||
	    keys_public(ra->old_public, id->node_private.data) < 0) {
		pods__identity_wipe_free(id);
		refused(ra, PODS_REAUTH_UNREGISTERED, NULL);
		return;
	}
	if (authkeys_kind(ak) == AUTHKEYS_STATIC) {
		pods__identity_wipe_free(id);
		checked(ra, AUTHKEYS_DEVICE_FOUND, 0, "");
		return;
	}
	ret = authkeys_device_check(ak, ra->old_public,
				    id->stable_node_id ? id->stable_node_id : "", a->tag, checked,
				    ra, &ra->req);
	pods__identity_wipe_free(id);
	if (ret < 0)
		refused(ra, PODS_REAUTH_API_DOWN, "too many requests to the key source wait");
}

void pods__reauth_free(struct attachment *a)
{
	struct pod_reauth *ra = a->reauth;

	if (!ra)
		return;
	authkeys_cancel(ra->req);
	sodium_memzero(ra, sizeof(*ra));
	free(ra);
	a->reauth = NULL;
}
