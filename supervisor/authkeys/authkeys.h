/* Auth keys for pods' nodes, one per pod, from a key source chosen on the
 * command line (docs/design.md, "Auth keys"):
 *
 *   static      --auth-key-file / --auth-key-env: one reusable key (main.c
 *               reads it; nothing here runs)
 *   Tailscale   --oauth-client-id + --oauth-client-secret-file|-env: an OAuth
 *               client-credentials token, cached and refreshed before it
 *               expires, mints per pod one single-use, preauthorized key with
 *               --key-tags, --key-ephemeral and --key-expiry
 *               (docs/tailscale-protocol.md §10)
 *   Headscale   --headscale-api-url + --headscale-api-key-file|-env +
 *               --headscale-user: one pre-auth key per pod
 *
 * and the deletion of a pod's device once its identity is released: found by
 * the node key the supervisor generated, confirmed with a GET, then deleted.
 * Every call goes through libcurl's multi interface on the supervisor's loop
 * (http.h) with timeouts, retries with backoff (429's Retry-After honoured),
 * and a bound on the requests in flight and waiting. Secrets (the client
 * secret, the API key, tokens, minted keys) live in sodium_malloc'ed or
 * wiped buffers and are never logged. Everything runs on the loop thread. */
#ifndef TSCNI_AUTHKEYS_AUTHKEYS_H
#define TSCNI_AUTHKEYS_AUTHKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

enum authkeys_kind {
	AUTHKEYS_STATIC, /* one key for all (or none): nothing minted */
	AUTHKEYS_OAUTH,
	AUTHKEYS_HEADSCALE,
};

enum authkeys_limits {
	AUTHKEYS_SECRET_MAX = 1024, /* client secret, API key: bytes */
	AUTHKEYS_TAGS_MAX = 16,
	AUTHKEYS_TAG_MAX = 128,
	AUTHKEYS_EXPIRY_DEFAULT_S = 300,
	AUTHKEYS_EXPIRY_MAX_S = 7776000, /* 90 days, the API's bound */
	AUTHKEYS_INFLIGHT_MAX = 8,	 /* HTTP transfers at once */
	AUTHKEYS_PENDING_MAX = 256,	 /* requests alive (running or waiting) */
	AUTHKEYS_ATTEMPTS = 3,		 /* per HTTP step, then the error is reported */
	AUTHKEYS_TIMEOUT_MS = 5000,	 /* one HTTP exchange */
	AUTHKEYS_BACKOFF_MS = 500,	 /* first retry; doubles */
	AUTHKEYS_MINT_BUDGET_MS = 14000, /* a mint gives up after (ADD's budget is 20 s) */
	AUTHKEYS_RETRY_AFTER_MAX_S = 10, /* a longer Retry-After fails the mint at once */
	AUTHKEYS_TOKEN_MARGIN_S = 60,	 /* a token is refreshed this long before its end */
	AUTHKEYS_POD_MINTS = 4,		 /* keys per pod ... */
	AUTHKEYS_POD_WINDOW_S = 600,	 /* ... within this window */
	AUTHKEYS_POD_TABLE = 1024,	 /* pods remembered for that */
	AUTHKEYS_ANSWER_MAX = 64 * 1024,
	AUTHKEYS_LIST_MAX = 8 * 1024 * 1024, /* a device list */
};

/* CNI error codes (docs/cni-contract.md §6.2). */
enum authkeys_cni {
	/* The key source refused the supervisor's request for good: bad
	 * credentials, a missing scope, a tag not permitted. The operator
	 * must act; retrying does not help. */
	AUTHKEYS_CNI_REFUSED = 104,
	/* The key source is rate limiting or unavailable (5xx, no connection,
	 * malformed answers, too many requests waiting): the runtime's retry
	 * may succeed. Not 11, so failurePolicy "ignore" never starts a pod
	 * without its interface for an API outage. */
	AUTHKEYS_CNI_UNAVAILABLE = 105,
};

/* The command line's options, as given (pointers into argv). */
struct authkeys_config {
	const char *oauth_client_id;
	const char *oauth_secret_file, *oauth_secret_env;
	const char *api_url; /* default https://api.tailscale.com */
	const char *tailnet; /* default "-" */
	const char *hs_url;
	const char *hs_key_file, *hs_key_env;
	const char *hs_user;
	const char *key_tags;	   /* "tag:a,tag:b" */
	const char *key_ephemeral; /* "true" | "false", default true */
	const char *key_expiry;	   /* seconds, default 300 */
};

/* The source the options choose. */
enum authkeys_kind authkeys_config_kind(const struct authkeys_config *c);

/* Checks the options together (exactly one key source; each source's
 * options complete and well-formed; static_key: --auth-key-file or -env was
 * given). 0, or -EINVAL after one line on stderr naming what is wrong. */
int authkeys_config_check(const struct authkeys_config *c, bool static_key);

/* The secret option of the chosen source: its flag name and file or
 * environment variable (one of them NULL). */
void authkeys_config_secret(const struct authkeys_config *c, const char **flag_file,
			    const char **file, const char **flag_env, const char **env);

/* Makes jansson's allocations wipe what they free (answers hold tokens and
 * keys). Call once, before any jansson use in the process. */
void authkeys_json_wipe_init(void);

struct authkeys;
struct authkeys_req;

/* secret: sodium_malloc'ed (secret_file.h), taken over; wiped and freed by
 * authkeys_close. 0 or a negative errno. */
int authkeys_new(uv_loop_t *loop, const struct authkeys_config *c, char *secret,
		 struct authkeys **out);
/* Ends every request (no callbacks) and closes the handles (the loop frees
 * them as it runs). NULL-safe. */
void authkeys_close(struct authkeys *ak);
/* A rotated client secret or API key (sodium_malloc'ed, taken over): used
 * from the next request on; the OAuth token is fetched again with it. */
void authkeys_set_secret(struct authkeys *ak, char *secret);
/* https to the key source verifies against pem (--ca-file / --ca-file-add;
 * borrowed, alive until authkeys_close) instead of libcurl's default
 * bundle. */
void authkeys_set_ca(struct authkeys *ak, const char *pem, size_t len);
enum authkeys_kind authkeys_kind(const struct authkeys *ak);
/* How many OAuth tokens were fetched since start (status, tests). */
uint64_t authkeys_tokens_fetched(const struct authkeys *ak);

/* Failed exchanges with the key source's API (each attempt counts, the
 * token's too), by what failed: for tailscale_cni_api_errors_total. */
enum authkeys_api_error {
	AUTHKEYS_API_REFUSED,	   /* 400, 401, 403, 404 of a user or tailnet */
	AUTHKEYS_API_RATE_LIMITED, /* 429 */
	AUTHKEYS_API_UNAVAILABLE,  /* no connection, a timeout, 5xx, an oversized answer */
	AUTHKEYS_API_MALFORMED,	   /* a 2xx answer that does not parse */
	AUTHKEYS_API_ERRORS,
};
uint64_t authkeys_api_errors(const struct authkeys *ak, enum authkeys_api_error kind);

/* Why a request failed, for a CNI error: a fixed message per cause and a
 * detail (the API's own words, escaped; never a secret). */
struct authkeys_error {
	uint32_t code; /* enum authkeys_cni */
	const char *msg;
	char detail[256];
};

/* key: sodium_malloc'ed, the callee's (authkeys_key_free), NULL on error. */
typedef void authkeys_mint_fn(void *arg, char *key, const struct authkeys_error *err);

/* Mints one key for the pod pod_uid (tag: for log lines), carrying the
 * ntags tags (the pod's own, from its annotation, already checked against
 * --allowed-tags; at most AUTHKEYS_TAGS_MAX) or, with ntags 0, --key-tags.
 * Called only for what the supervisor itself verified (a new identity, or
 * one whose node logged out). At most AUTHKEYS_POD_MINTS per pod per
 * window. 0 with *out set (cb runs later, on the loop), or a negative errno
 * with *err filled (cb never runs). */
int authkeys_mint(struct authkeys *ak, const char *pod_uid, const char *tag,
		  const char *const *tags, size_t ntags, authkeys_mint_fn *cb, void *arg,
		  struct authkeys_req **out, struct authkeys_error *err);
void authkeys_key_free(char *key);

/* Ends a request: its callback never runs. */
void authkeys_cancel(struct authkeys_req *r);

enum authkeys_device {
	AUTHKEYS_DEVICE_DELETED,  /* found, confirmed, deleted */
	AUTHKEYS_DEVICE_FOUND,	  /* a check: found with our node key */
	AUTHKEYS_DEVICE_ABSENT,	  /* no device with that node key (or 404) */
	AUTHKEYS_DEVICE_MISMATCH, /* the device's node key is another: left alone */
	AUTHKEYS_DEVICE_RETRY,	  /* the API failed: try again later */
};

typedef void authkeys_device_fn(void *arg, enum authkeys_device result, const char *why);

/* Deletes the device whose node key is node_public, after a GET confirms it:
 * by stable_id when known (non-empty), else found in the device list. */
int authkeys_device_delete(struct authkeys *ak, const uint8_t node_public[32],
			   const char *stable_id, authkeys_device_fn *cb, void *arg,
			   struct authkeys_req **out);

/* Key expiry (docs/design.md "Key expiry"): reads the device whose node
 * key is node_public (by stable_id when known, else found in the list) and
 * reports FOUND with its key expiry (Unix s; 0: the key does not expire),
 * ABSENT, MISMATCH (the device has another node key) or RETRY (the API
 * failed). tag: for log lines. 0 with *out set, or a negative errno (cb
 * never runs). */
typedef void authkeys_check_fn(void *arg, enum authkeys_device result, int64_t expiry_unix,
			       const char *why);
int authkeys_device_check(struct authkeys *ak, const uint8_t node_public[32], const char *stable_id,
			  const char *tag, authkeys_check_fn *cb, void *arg,
			  struct authkeys_req **out);

#endif
