/* Key minting and device deletion against the Tailscale API or Headscale
 * (authkeys.h). Each request is a short chain of HTTP steps:
 *
 *   mint     POST /api/v2/tailnet/{tailnet}/keys | POST /api/v1/preauthkey
 *   device   [GET the device list → the id of our node key]
 *            GET the device → its node key must be ours → DELETE it
 *
 * A step that fails for a transient cause (no connection, timeout, 5xx,
 * 429, an answer that does not parse) is retried after a backoff (500 ms,
 * doubling; 429's Retry-After when longer), AUTHKEYS_ATTEMPTS times; a
 * refusal (401 after one token refresh, 403, 400, 404 of a user) fails at
 * once. The Tailscale API's steps wait for the one shared OAuth token,
 * fetched when missing or within AUTHKEYS_TOKEN_MARGIN_S of its end. At most
 * AUTHKEYS_INFLIGHT_MAX transfers run; the rest wait their turn in order. */
#include "authkeys.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "authkeys_internal.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "mem.h"

enum step { ST_MINT, ST_FIND, ST_GET, ST_DELETE };
enum rstate { RS_READY, RS_TOKEN, RS_RUNNING, RS_BACKOFF };
/* Why the last attempt failed, for the error once attempts run out. */
enum fail_class { FC_DOWN, FC_RATE };
/* What a device request does with the device it finds: deletes it
 * (authkeys_device_delete) or reports its key expiry (authkeys_device_check). */
enum device_mode { DM_DELETE, DM_CHECK };

struct authkeys_req {
	struct authkeys_req *next;
	struct authkeys *ak;
	bool device;
	enum step step;
	enum rstate state;
	uint64_t due_ms, deadline_ms;
	unsigned int attempt;
	bool token_retried;
	struct http_xfer *x;
	enum fail_class fc;
	char detail[256];
	char tag[64];
	uint64_t pod_hash; /* a mint's pod (the per-pod bound) */
	json_t *tags;	   /* a mint's tags; NULL: --key-tags */
	char nodekey[80];  /* "nodekey:<hex>" */
	char id[130];	   /* the device's id once known */
	authkeys_mint_fn *mint_cb;
	authkeys_device_fn *dev_cb;
	/* A check (authkeys_device_check): GET only, the expiry reported. */
	bool check;
	int64_t expiry;
	authkeys_check_fn *chk_cb;
	void *arg;
};

struct pod_rate {
	uint64_t hash;
	uint64_t window_start_s;
	unsigned int count;
};

struct authkeys {
	uv_loop_t *loop;
	enum authkeys_kind kind;
	struct http *http;
	uv_timer_t timer; /* backoffs */
	char *secret;	  /* the client secret or Headscale API key */
	char *client_id;
	char *base; /* the API's URL, no trailing '/' */
	char *tailnet;
	char *hs_user;
	char tags[AUTHKEYS_TAGS_MAX][AUTHKEYS_TAG_MAX + 1];
	size_t ntags;
	bool ephemeral;
	unsigned int expiry_s;
	/* The OAuth token, shared by every request. */
	char *token;
	uint64_t token_end_ms;
	struct http_xfer *token_x;
	unsigned int token_attempt;
	uint64_t token_due_ms; /* a retry of the token is scheduled */
	uint64_t tokens_fetched;
	uint64_t api_errors[AUTHKEYS_API_ERRORS];
	struct authkeys_req *reqs; /* in arrival order */
	size_t nreqs;
	unsigned int inflight;
	struct pod_rate rate[AUTHKEYS_POD_TABLE];
	bool pumping, pump_again; /* pump is not re-entered from a callback */
};

static void pump(struct authkeys *ak);
static struct pod_rate *pod_rate_get(struct authkeys *ak, uint64_t h);

static void secret_free(char **p)
{
	if (*p)
		sodium_free(*p);
	*p = NULL;
}

void authkeys_key_free(char *key)
{
	if (key)
		sodium_free(key);
}

enum authkeys_kind authkeys_kind(const struct authkeys *ak)
{
	return ak ? ak->kind : AUTHKEYS_STATIC;
}

uint64_t authkeys_tokens_fetched(const struct authkeys *ak)
{
	return ak ? ak->tokens_fetched : 0;
}

uint64_t authkeys_api_errors(const struct authkeys *ak, enum authkeys_api_error kind)
{
	return ak && kind < AUTHKEYS_API_ERRORS ? ak->api_errors[kind] : 0;
}

/* Counts one failed exchange: its transport error or HTTP status (a 2xx
 * status: its answer did not parse). */
static void api_error(struct authkeys *ak, int curl_err, long status)
{
	enum authkeys_api_error k = AUTHKEYS_API_UNAVAILABLE;

	if (!curl_err && status == 429)
		k = AUTHKEYS_API_RATE_LIMITED;
	else if (!curl_err && status >= 200 && status < 300)
		k = AUTHKEYS_API_MALFORMED;
	else if (!curl_err && status >= 400 && status < 500)
		k = AUTHKEYS_API_REFUSED;
	ak->api_errors[k]++;
}

static char *base_url(const char *u)
{
	char *b = xstrdup(u);
	size_t n = strlen(b);

	if (n && b[n - 1] == '/')
		b[n - 1] = '\0';
	return b;
}

int authkeys_new(uv_loop_t *loop, const struct authkeys_config *c, char *secret,
		 struct authkeys **out)
{
	struct authkeys *ak = xcalloc(1, sizeof(*ak));
	const char *why = "";
	int ret;

	*out = NULL;
	ak->loop = loop;
	ak->kind = authkeys_config_kind(c);
	ak->secret = secret;
	if (authkeys__parse_tags(c->key_tags, ak->tags, &ak->ntags, &why) < 0 ||
	    authkeys__parse_bool(c->key_ephemeral, true, &ak->ephemeral) < 0 ||
	    authkeys__parse_expiry(c->key_expiry, &ak->expiry_s) < 0) {
		ret = -EINVAL;
		goto err;
	}
	if (ak->kind == AUTHKEYS_OAUTH) {
		ak->client_id = xstrdup(c->oauth_client_id);
		ak->base = base_url(c->api_url ? c->api_url : "https://api.tailscale.com");
		ak->tailnet = xstrdup(c->tailnet ? c->tailnet : "-");
	} else {
		ak->base = base_url(c->hs_url);
		ak->hs_user = xstrdup(c->hs_user);
	}
	ret = http_new(loop, &ak->http);
	if (ret < 0)
		goto err;
	ret = uv_timer_init(loop, &ak->timer);
	if (ret < 0) {
		http_close(ak->http);
		goto err;
	}
	ak->timer.data = ak;
	*out = ak;
	return 0;
err:
	free(ak->client_id);
	free(ak->base);
	free(ak->tailnet);
	free(ak->hs_user);
	free(ak);
	return ret;
}

static void req_unlink(struct authkeys_req *r)
{
	struct authkeys *ak = r->ak;

	for (struct authkeys_req **pp = &ak->reqs; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			ak->nreqs--;
			break;
		}
	}
	if (r->x) {
		http_abort(r->x);
		r->x = NULL;
		ak->inflight--;
	}
	json_decref(r->tags);
	r->tags = NULL;
}

void authkeys_cancel(struct authkeys_req *r)
{
	if (!r)
		return;
	req_unlink(r);
	free(r);
}

void authkeys_set_secret(struct authkeys *ak, char *secret)
{
	secret_free(&ak->secret);
	ak->secret = secret;
	/* A token fetched with the old secret may outlive the client's
	 * rotation at the API: a new one, with the new secret. */
	secret_free(&ak->token);
	log_info("the key source's secret changed: used from now on");
}

void authkeys_set_ca(struct authkeys *ak, const char *pem, size_t len)
{
	http_set_ca(ak->http, pem, len);
}

static void ak_closed(uv_handle_t *h)
{
	free(h->data);
}

void authkeys_close(struct authkeys *ak)
{
	if (!ak)
		return;
	while (ak->reqs)
		authkeys_cancel(ak->reqs);
	if (ak->token_x) {
		http_abort(ak->token_x);
		ak->token_x = NULL;
	}
	http_close(ak->http);
	secret_free(&ak->secret);
	secret_free(&ak->token);
	free(ak->client_id);
	free(ak->base);
	free(ak->tailnet);
	free(ak->hs_user);
	uv_timer_stop(&ak->timer);
	uv_close((uv_handle_t *)&ak->timer, ak_closed);
}

/* ------------------------------------------------------------ the outcome */

static void mint_fail(struct authkeys_req *r, uint32_t code, const char *msg)
{
	struct authkeys_error e = {.code = code, .msg = msg};

	snprintf(e.detail, sizeof(e.detail), "%s", r->detail);
	req_unlink(r);
	log_warn("%s: no auth key: %s: %s", r->tag, msg, r->detail);
	r->mint_cb(r->arg, NULL, &e);
	free(r);
}

static void device_end(struct authkeys_req *r, enum authkeys_device res, const char *why)
{
	req_unlink(r);
	if (r->check)
		r->chk_cb(r->arg, res, r->expiry, why);
	else
		r->dev_cb(r->arg, res, why);
	free(r);
}

/* A refusal: the operator must act (code 104). */
static void refuse(struct authkeys_req *r, const char *msg)
{
	if (r->device)
		device_end(r, AUTHKEYS_DEVICE_RETRY, r->detail);
	else
		mint_fail(r, AUTHKEYS_CNI_REFUSED, msg);
}

/* Attempts ran out, or the budget did: rate limited or unavailable (105). */
static void give_up(struct authkeys_req *r)
{
	if (r->device)
		device_end(r, AUTHKEYS_DEVICE_RETRY, r->detail);
	else
		mint_fail(r, AUTHKEYS_CNI_UNAVAILABLE,
			  r->fc == FC_RATE ? "the key source is rate limiting the supervisor"
					   : "the key source's API is unavailable");
}

static uint64_t backoff_ms(unsigned int attempt, unsigned int retry_after_s)
{
	uint64_t ms = (uint64_t)AUTHKEYS_BACKOFF_MS << (attempt > 6 ? 6 : attempt - 1);

	if ((uint64_t)retry_after_s * 1000 > ms)
		ms = (uint64_t)retry_after_s * 1000;
	return ms;
}

/* A transient failure: again after a backoff, or the end. */
static void transient(struct authkeys_req *r, enum fail_class fc, unsigned int retry_after_s)
{
	struct authkeys *ak = r->ak;
	uint64_t now = uv_now(ak->loop), ms;

	r->fc = fc;
	r->attempt++;
	if (r->attempt >= AUTHKEYS_ATTEMPTS ||
	    (!r->device && retry_after_s > AUTHKEYS_RETRY_AFTER_MAX_S)) {
		give_up(r);
		return;
	}
	ms = backoff_ms(r->attempt, retry_after_s);
	if (r->deadline_ms && now + ms > r->deadline_ms) {
		give_up(r);
		return;
	}
	log_info("%s: %s; again in %" PRIu64 " ms", r->tag, r->detail, ms);
	r->state = RS_BACKOFF;
	r->due_ms = now + ms;
}

/* ------------------------------------------------------------ the token */

static bool token_valid(const struct authkeys *ak)
{
	return ak->kind != AUTHKEYS_OAUTH ||
	       (ak->token &&
		uv_now(ak->loop) + (uint64_t)AUTHKEYS_TOKEN_MARGIN_S * 1000 < ak->token_end_ms);
}

/* Every request waiting for the token fails with the token's error. */
static void token_waiters_fail(struct authkeys *ak, bool refused, const char *detail)
{
	struct authkeys_req *r, *next;

	for (r = ak->reqs; r; r = next) {
		next = r->next;
		if (r->state != RS_TOKEN)
			continue;
		snprintf(r->detail, sizeof(r->detail), "%s", detail);
		if (refused)
			refuse(r, "the Tailscale API refused the OAuth client's credentials");
		else
			give_up(r);
	}
}

static void token_done(void *arg, const struct http_result *res)
{
	struct authkeys *ak = arg;
	char text[160], detail[200];
	const char *why = "";
	unsigned int life = 0;
	char *tok = NULL;

	ak->token_x = NULL;
	ak->inflight--;
	if (!res->curl_err && res->status == 200 &&
	    apijson_token(res->body, res->len, &tok, &life, &why) == 0) {
		secret_free(&ak->token);
		ak->token = tok;
		ak->token_end_ms = uv_now(ak->loop) + (uint64_t)life * 1000;
		/* A token shorter than twice the margin is used for half its
		 * life. */
		if (life < 2 * AUTHKEYS_TOKEN_MARGIN_S)
			ak->token_end_ms = uv_now(ak->loop) +
					   (uint64_t)AUTHKEYS_TOKEN_MARGIN_S * 1000 +
					   (uint64_t)life * 500;
		ak->token_attempt = 0;
		ak->tokens_fetched++;
		log_info("OAuth token fetched (lasts %u s; %" PRIu64 " fetched so far)", life,
			 ak->tokens_fetched);
		for (struct authkeys_req *r = ak->reqs; r; r = r->next)
			if (r->state == RS_TOKEN)
				r->state = RS_READY;
		pump(ak);
		return;
	}
	api_error(ak, res->curl_err, res->status);
	apijson_error_text(res->body, res->len, text, sizeof(text));
	if (res->curl_err)
		snprintf(detail, sizeof(detail), "POST /api/v2/oauth/token: %s", res->why);
	else if (res->status == 200)
		snprintf(detail, sizeof(detail), "POST /api/v2/oauth/token: answer malformed: %s",
			 why);
	else
		snprintf(detail, sizeof(detail), "POST /api/v2/oauth/token: %ld %s", res->status,
			 text);
	if (!res->curl_err && (res->status == 400 || res->status == 401 || res->status == 403)) {
		log_warn("the Tailscale API refused the OAuth client: %s", detail);
		token_waiters_fail(ak, true, detail);
		pump(ak);
		return;
	}
	ak->token_attempt++;
	if (ak->token_attempt >= AUTHKEYS_ATTEMPTS ||
	    res->retry_after_s > AUTHKEYS_RETRY_AFTER_MAX_S) {
		ak->token_attempt = 0;
		for (struct authkeys_req *r = ak->reqs; r; r = r->next)
			if (r->state == RS_TOKEN)
				r->fc = res->status == 429 ? FC_RATE : FC_DOWN;
		token_waiters_fail(ak, false, detail);
	} else {
		uint64_t ms = backoff_ms(ak->token_attempt, res->retry_after_s);

		log_info("%s; the token again in %" PRIu64 " ms", detail, ms);
		ak->token_due_ms = uv_now(ak->loop) + ms;
		for (struct authkeys_req *r = ak->reqs; r; r = r->next)
			if (r->state == RS_TOKEN)
				r->fc = res->status == 429 ? FC_RATE : FC_DOWN;
	}
	pump(ak);
}

/* x-www-form-urlencoded client credentials (RFC 6749 4.4, 2.3.1). */
static int token_start(struct authkeys *ak)
{
	char *url = xasprintf("%s/api/v2/oauth/token", ak->base), *body;
	char *id = curl_easy_escape(NULL, ak->client_id, 0);
	char *sec = curl_easy_escape(NULL, ak->secret, 0);
	struct http_request req = {
		.method = "POST",
		.url = url,
		.content_type = "application/x-www-form-urlencoded",
		.max_answer = AUTHKEYS_ANSWER_MAX,
		.timeout_ms = AUTHKEYS_TIMEOUT_MS,
	};
	int ret = -ENOMEM;

	if (id && sec) {
		body = xasprintf("grant_type=client_credentials&client_id=%s&client_secret=%s", id,
				 sec);
		req.body = body;
		ret = http_start(ak->http, &req, token_done, ak, &ak->token_x);
		sodium_memzero(body, strlen(body));
		free(body);
	}
	if (sec) {
		sodium_memzero(sec, strlen(sec));
		curl_free(sec);
	}
	curl_free(id);
	free(url);
	if (ret == 0)
		ak->inflight++;
	return ret;
}

/* ------------------------------------------------------------ the steps */

static bool status_ok(long s)
{
	return s >= 200 && s < 300;
}

static void step_ok(struct authkeys_req *r, const struct http_result *res)
{
	struct authkeys *ak = r->ak;
	bool hs = ak->kind == AUTHKEYS_HEADSCALE;
	const char *why = "";
	char nk[96];
	char *key = NULL;
	int ret;

	switch (r->step) {
	case ST_MINT:
		if (apijson_key(res->body, res->len, hs, &key, &why) < 0) {
			snprintf(r->detail, sizeof(r->detail), "the key's answer is malformed: %s",
				 why);
			api_error(r->ak, 0, 200);
			transient(r, FC_DOWN, 0);
			return;
		}
		req_unlink(r);
		pod_rate_get(ak, r->pod_hash)->count++;
		log_info("%s: auth key minted (%s)", r->tag, hs ? "Headscale" : "Tailscale API");
		r->mint_cb(r->arg, key, NULL);
		free(r);
		return;
	case ST_FIND:
		ret = apijson_find_device(res->body, res->len, hs, r->nodekey, r->id, sizeof(r->id),
					  &why);
		if (ret < 0) {
			snprintf(r->detail, sizeof(r->detail), "the device list is malformed: %s",
				 why);
			api_error(r->ak, 0, 200);
			transient(r, FC_DOWN, 0);
			return;
		}
		if (ret == 0) {
			device_end(r, AUTHKEYS_DEVICE_ABSENT, "no device has the node key");
			return;
		}
		r->step = ST_GET;
		break;
	case ST_GET:
		if (apijson_device_nodekey(res->body, res->len, hs, nk, sizeof(nk), &why) < 0) {
			snprintf(r->detail, sizeof(r->detail), "device %s: answer malformed: %s",
				 r->id, why);
			api_error(r->ak, 0, 200);
			transient(r, FC_DOWN, 0);
			return;
		}
		if (strcmp(nk, r->nodekey) != 0) {
			snprintf(r->detail, sizeof(r->detail),
				 "device %.64s has node key %.24s…, the record's is %.24s…", r->id,
				 nk, r->nodekey);
			device_end(r, AUTHKEYS_DEVICE_MISMATCH, r->detail);
			return;
		}
		if (r->check) {
			if (apijson_device_expiry(res->body, res->len, hs, &r->expiry, &why) < 0) {
				snprintf(r->detail, sizeof(r->detail),
					 "device %s: answer malformed: %s", r->id, why);
				transient(r, FC_DOWN, 0);
				return;
			}
			device_end(r, AUTHKEYS_DEVICE_FOUND, "found");
			return;
		}
		r->step = ST_DELETE;
		break;
	case ST_DELETE:
		device_end(r, AUTHKEYS_DEVICE_DELETED, "deleted");
		return;
	}
	r->attempt = 0;
	r->state = RS_READY;
}

static void step_done(void *arg, const struct http_result *res)
{
	struct authkeys_req *r = arg;
	struct authkeys *ak = r->ak;
	char text[160];
	const char *what = r->step == ST_MINT	? "mint a key"
			   : r->step == ST_FIND ? "list the devices"
			   : r->step == ST_GET	? "read the device"
						: "delete the device";

	r->x = NULL;
	ak->inflight--;
	r->state = RS_READY;
	if (res->curl_err || res->truncated) {
		snprintf(r->detail, sizeof(r->detail), "%s: %s", what,
			 res->truncated ? "the answer is over its size bound" : res->why);
		api_error(ak, 1, 0);
		transient(r, FC_DOWN, 0);
		goto out;
	}
	if (status_ok(res->status)) {
		step_ok(r, res);
		goto out;
	}
	apijson_error_text(res->body, res->len, text, sizeof(text));
	snprintf(r->detail, sizeof(r->detail), "%s: %ld %s", what, res->status, text);
	if (!(res->status == 404 && r->device))
		api_error(ak, 0, res->status);
	if (res->status == 429) {
		transient(r, FC_RATE, res->retry_after_s);
	} else if (res->status >= 500) {
		transient(r, FC_DOWN, 0);
	} else if (res->status == 404 && r->device) {
		device_end(r, AUTHKEYS_DEVICE_ABSENT, "404");
	} else if (res->status == 401 && ak->kind == AUTHKEYS_OAUTH && !r->token_retried) {
		/* The token ended early (revoked, or the server's clock):
		 * once more with a fresh one. */
		log_info("%s: %s: fetching a new token", r->tag, r->detail);
		r->token_retried = true;
		secret_free(&ak->token);
	} else if (res->status == 401) {
		refuse(r, ak->kind == AUTHKEYS_OAUTH
				  ? "the Tailscale API refused the supervisor's token"
				  : "Headscale refused the API key");
	} else if (res->status == 403) {
		refuse(r, "the OAuth client lacks a scope the supervisor needs (auth_keys, "
			  "devices:core)");
	} else if (res->status == 400 && r->step == ST_MINT && strstr(text, "tags")) {
		refuse(r, "the key source does not permit the key's tags");
	} else if (res->status == 404 && ak->kind == AUTHKEYS_HEADSCALE) {
		refuse(r, "Headscale has no such user");
	} else if (res->status == 404) {
		refuse(r, "the Tailscale API has no such tailnet");
	} else {
		refuse(r, "the key source refused the request");
	}
out:
	pump(ak);
}

/* The mint's own tags, or --key-tags. */
static json_t *mint_tags(const struct authkeys_req *r)
{
	const struct authkeys *ak = r->ak;
	json_t *arr;

	if (r->tags)
		return json_incref(r->tags);
	arr = json_array();
	for (size_t i = 0; i < ak->ntags; i++)
		json_array_append_new(arr, json_string(ak->tags[i]));
	return arr;
}

static char *mint_body(const struct authkeys_req *r)
{
	const struct authkeys *ak = r->ak;
	json_t *tags = mint_tags(r), *j;
	char *s;

	if (ak->kind == AUTHKEYS_OAUTH) {
		j = json_pack("{s:{s:{s:{s:b,s:b,s:b,s:o}}},s:I,s:s}", "capabilities", "devices",
			      "create", "reusable", 0, "ephemeral", ak->ephemeral, "preauthorized",
			      1, "tags", tags, "expirySeconds", (json_int_t)ak->expiry_s,
			      "description", "tailscale-cni pod");
	} else {
		char when[32];
		time_t t = time(NULL) + ak->expiry_s;
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		j = json_pack("{s:s,s:b,s:b,s:s,s:o}", "user", ak->hs_user, "reusable", 0,
			      "ephemeral", ak->ephemeral, "expiration", when, "aclTags", tags);
	}
	if (!j)
		return NULL;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s) {
		/* json_dumps' buffer is jansson's to free (its allocator may be
		 * authkeys_json_wipe_init's): a copy of ours. */
		json_malloc_t m;
		json_free_t f;
		char *copy = xstrdup(s);

		json_get_alloc_funcs(&m, &f);
		f(s);
		s = copy;
	}
	return s;
}

static int issue(struct authkeys_req *r)
{
	struct authkeys *ak = r->ak;
	bool hs = ak->kind == AUTHKEYS_HEADSCALE;
	struct http_request req = {
		.method = "GET",
		.bearer = hs ? ak->secret : ak->token,
		.max_answer = AUTHKEYS_ANSWER_MAX,
		.timeout_ms = AUTHKEYS_TIMEOUT_MS,
	};
	char *url, *body = NULL;
	int ret;

	switch (r->step) {
	case ST_MINT:
		url = hs ? xasprintf("%s/api/v1/preauthkey", ak->base)
			 : xasprintf("%s/api/v2/tailnet/%s/keys", ak->base, ak->tailnet);
		body = mint_body(r);
		if (!body) {
			free(url);
			return -ENOMEM;
		}
		req.method = "POST";
		req.content_type = "application/json";
		req.body = body;
		break;
	case ST_FIND:
		url = hs ? xasprintf("%s/api/v1/node", ak->base)
			 : xasprintf("%s/api/v2/tailnet/%s/devices", ak->base, ak->tailnet);
		req.max_answer = AUTHKEYS_LIST_MAX;
		break;
	default:
		url = hs ? xasprintf("%s/api/v1/node/%s", ak->base, r->id)
			 : xasprintf("%s/api/v2/device/%s", ak->base, r->id);
		if (r->step == ST_DELETE)
			req.method = "DELETE";
		break;
	}
	req.url = url;
	ret = http_start(ak->http, &req, step_done, r, &r->x);
	free(url);
	free(body);
	if (ret == 0) {
		ak->inflight++;
		r->state = RS_RUNNING;
	}
	return ret;
}

static void on_timer(uv_timer_t *t)
{
	pump(t->data);
}

/* Starts what may start, in order, within the bound on transfers; arms the
 * timer for the next backoff. */
static void pump_once(struct authkeys *ak);

static void pump(struct authkeys *ak)
{
	if (ak->pumping) {
		ak->pump_again = true;
		return;
	}
	ak->pumping = true;
	do {
		ak->pump_again = false;
		pump_once(ak);
	} while (ak->pump_again);
	ak->pumping = false;
}

static void pump_once(struct authkeys *ak)
{
	uint64_t now = uv_now(ak->loop), next = 0;
	struct authkeys_req *r, *rn;

	if (ak->token_due_ms && ak->token_due_ms <= now)
		ak->token_due_ms = 0;
	for (r = ak->reqs; r; r = rn) {
		rn = r->next;
		if (r->state == RS_BACKOFF && r->due_ms <= now)
			r->state = RS_READY;
		if (r->state == RS_BACKOFF) {
			next = next && next < r->due_ms ? next : r->due_ms;
			continue;
		}
		if (r->state == RS_TOKEN && token_valid(ak))
			r->state = RS_READY;
		if (r->state == RS_READY && !token_valid(ak))
			r->state = RS_TOKEN;
		if (r->state == RS_TOKEN) {
			if (!ak->token_x && !ak->token_due_ms &&
			    ak->inflight < AUTHKEYS_INFLIGHT_MAX && token_start(ak) < 0) {
				snprintf(r->detail, sizeof(r->detail), "cannot start a request");
				token_waiters_fail(ak, false, r->detail);
				rn = ak->reqs; /* the list changed */
			}
			continue;
		}
		if (r->state != RS_READY || ak->inflight >= AUTHKEYS_INFLIGHT_MAX)
			continue;
		if (r->deadline_ms && now > r->deadline_ms) {
			give_up(r);
			rn = ak->reqs;
			continue;
		}
		if (issue(r) < 0) {
			snprintf(r->detail, sizeof(r->detail), "cannot start a request");
			transient(r, FC_DOWN, 0);
			rn = ak->reqs;
		}
	}
	if (ak->token_due_ms)
		next = next && next < ak->token_due_ms ? next : ak->token_due_ms;
	if (next)
		uv_timer_start(&ak->timer, on_timer, next > now ? next - now : 0, 0);
	else
		uv_timer_stop(&ak->timer);
}

/* ------------------------------------------------------------ the API */

static uint64_t pod_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ULL;
	return h | 1; /* never 0, the empty slot */
}

/* The pod's entry (a new one replaces the oldest), its window current. */
static struct pod_rate *pod_rate_get(struct authkeys *ak, uint64_t h)
{
	uint64_t now = uv_now(ak->loop) / 1000 + 1;
	struct pod_rate *slot = NULL, *oldest = &ak->rate[0];

	for (size_t i = 0; i < AUTHKEYS_POD_TABLE; i++) {
		struct pod_rate *e = &ak->rate[i];

		if (e->hash == h) {
			slot = e;
			break;
		}
		if (e->window_start_s < oldest->window_start_s)
			oldest = e;
	}
	if (!slot) {
		slot = oldest;
		*slot = (struct pod_rate){.hash = h, .window_start_s = now};
	}
	if (now - slot->window_start_s >= AUTHKEYS_POD_WINDOW_S) {
		slot->window_start_s = now;
		slot->count = 0;
	}
	return slot;
}

static struct authkeys_req *req_new(struct authkeys *ak, const char *tag)
{
	struct authkeys_req *r = xcalloc(1, sizeof(*r)), **pp;

	r->ak = ak;
	snprintf(r->tag, sizeof(r->tag), "%s", tag);
	for (pp = &ak->reqs; *pp; pp = &(*pp)->next)
		;
	*pp = r;
	ak->nreqs++;
	return r;
}

int authkeys_mint(struct authkeys *ak, const char *pod_uid, const char *tag,
		  const char *const *tags, size_t ntags, authkeys_mint_fn *cb, void *arg,
		  struct authkeys_req **out, struct authkeys_error *err)
{
	struct authkeys_req *r;

	*out = NULL;
	memset(err, 0, sizeof(*err));
	err->code = AUTHKEYS_CNI_UNAVAILABLE;
	if (ak->kind == AUTHKEYS_STATIC) {
		err->code = AUTHKEYS_CNI_REFUSED;
		err->msg = "no key source configured";
		return -ENOTSUP;
	}
	if (ak->nreqs >= AUTHKEYS_PENDING_MAX) {
		err->msg = "too many auth key requests waiting";
		snprintf(err->detail, sizeof(err->detail), "%d requests to the key source wait",
			 AUTHKEYS_PENDING_MAX);
		return -EAGAIN;
	}
	/* Keys minted count, failed attempts do not: a pod whose ADDs failed
	 * through an outage gets its key once the API is back. */
	if (pod_rate_get(ak, pod_hash(pod_uid))->count >= AUTHKEYS_POD_MINTS) {
		err->msg = "too many auth keys minted for this pod";
		snprintf(err->detail, sizeof(err->detail), "at most %d keys per pod in %d s",
			 AUTHKEYS_POD_MINTS, AUTHKEYS_POD_WINDOW_S);
		return -EAGAIN;
	}
	if (ntags > AUTHKEYS_TAGS_MAX) {
		err->code = AUTHKEYS_CNI_REFUSED;
		err->msg = "too many tags for one auth key";
		snprintf(err->detail, sizeof(err->detail),
			 "the pod asks for %zu tags; a key carries at most %d", ntags,
			 AUTHKEYS_TAGS_MAX);
		return -EINVAL;
	}
	r = req_new(ak, tag);
	r->pod_hash = pod_hash(pod_uid);
	if (ntags) {
		r->tags = json_array();
		for (size_t i = 0; i < ntags; i++)
			json_array_append_new(r->tags, json_string(tags[i]));
	}
	r->step = ST_MINT;
	r->mint_cb = cb;
	r->arg = arg;
	r->deadline_ms = uv_now(ak->loop) + AUTHKEYS_MINT_BUDGET_MS;
	*out = r;
	pump(ak);
	return 0;
}

static struct authkeys_req *device_req(struct authkeys *ak, const uint8_t node_public[32],
				       const char *stable_id, const char *tag);

/* Queues a device request of either mode and starts what may start: 0 with
 * *out set, or -ENOTSUP (no key source) or -EAGAIN (too many waiting), and
 * then no callback runs. The callback is dev_cb for DM_DELETE, chk_cb for
 * DM_CHECK; it is set before the pump, which may already call it. A check
 * has the budget of a mint. */
static int device_start(struct authkeys *ak, enum device_mode mode, const uint8_t node_public[32],
			const char *stable_id, const char *tag, authkeys_device_fn *dev_cb,
			authkeys_check_fn *chk_cb, void *arg, struct authkeys_req **out)
{
	struct authkeys_req *r;

	*out = NULL;
	if (ak->kind == AUTHKEYS_STATIC)
		return -ENOTSUP;
	if (ak->nreqs >= AUTHKEYS_PENDING_MAX)
		return -EAGAIN;
	r = device_req(ak, node_public, stable_id, tag);
	r->check = mode == DM_CHECK;
	r->dev_cb = dev_cb;
	r->chk_cb = chk_cb;
	r->arg = arg;
	if (r->check)
		r->deadline_ms = uv_now(ak->loop) + AUTHKEYS_MINT_BUDGET_MS;
	*out = r;
	pump(ak);
	return 0;
}

int authkeys_device_delete(struct authkeys *ak, const uint8_t node_public[32],
			   const char *stable_id, authkeys_device_fn *cb, void *arg,
			   struct authkeys_req **out)
{
	return device_start(ak, DM_DELETE, node_public, stable_id, "device cleanup", cb, NULL, arg,
			    out);
}

int authkeys_device_check(struct authkeys *ak, const uint8_t node_public[32], const char *stable_id,
			  const char *tag, authkeys_check_fn *cb, void *arg,
			  struct authkeys_req **out)
{
	return device_start(ak, DM_CHECK, node_public, stable_id, tag, NULL, cb, arg, out);
}

/* A device request (delete or check), queued, its callback not yet set. */
static struct authkeys_req *device_req(struct authkeys *ak, const uint8_t node_public[32],
				       const char *stable_id, const char *tag)
{
	struct authkeys_req *r;
	bool by_id = ak->kind == AUTHKEYS_OAUTH && stable_id && *stable_id;

	/* The id goes into a URL path: letters, digits, '-' and '_' only;
	 * another is looked up in the list. */
	for (const char *c = by_id ? stable_id : ""; *c && by_id; c++)
		by_id = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
			(*c >= '0' && *c <= '9') || *c == '-' || *c == '_';
	if (by_id && strlen(stable_id) >= sizeof(r->id))
		by_id = false;
	r = req_new(ak, tag);
	r->device = true;
	keys_to_text("nodekey", node_public, r->nodekey, sizeof(r->nodekey));
	r->step = by_id ? ST_GET : ST_FIND;
	if (by_id)
		snprintf(r->id, sizeof(r->id), "%s", stable_id);
	return r;
}
