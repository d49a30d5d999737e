/* The control client's cycle and its public functions (client.h; the
 * files and the shape of the cycle are drawn in client_internal.h).
 * client__settle() is the one place where the cycle moves on: it frees dead
 * connections, starts the next step, or tears everything down and schedules
 * a reconnect with jittered exponential backoff. */
#include "client_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include <sodium.h>

#include "capver.h"
#include "log.h"
#include "mapjson.h"
#include "nlkey.h"

enum { N_TIMERS = 6 }; /* curl, fallback, deadline, watchdog, backoff, lite */

int client_capver(void)
{
	return capver_claim();
}

void client__fail(struct client *c, bool fatal, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->failure.pending && (c->failure.fatal || !fatal))
		return;
	c->failure.pending = true;
	c->failure.fatal = fatal;
	c->failure.err = err;
	c->failure.phase = (int)c->phase;
	va_start(ap, fmt);
	vsnprintf(c->failure.msg, sizeof(c->failure.msg), fmt, ap);
	va_end(ap);
}

void client__set_status(struct client *c, enum client_status st, int err, const char *msg)
{
	if (c->status_sent && c->status == st && st == CLIENT_UP)
		return;
	c->status = st;
	c->status_sent = true;
	if (c->cfg.on_state)
		c->cfg.on_state(c->cfg.cb_arg, st, err, msg);
}

void client__on_deadline(uv_timer_t *t)
{
	struct client *c = t->data;

	if (c->phase == PH_RESOLVE || c->phase == PH_KEY || c->phase == PH_DIAL) {
		const char *what = "control did not answer";
		struct conn *n = c->dial.key_conn ? c->dial.key_conn
						  : (c->dial.tls ? c->dial.tls : c->dial.plain);

		if (c->phase == PH_RESOLVE)
			what = "name resolution did not answer";
		else if (n && n->stage == ST_CONNECT)
			what = "could not connect to control";
		else if (n && n->stage == ST_HTTP)
			what = n->kind == CONN_KEY ? "control did not answer GET /key"
						   : "control did not answer the ts2021 upgrade";
		else if (n && n->stage == ST_HANDSHAKE)
			what = "control did not answer the Noise handshake (wrong server key "
			       "from /key?)";
		client__fail(c, false, -ETIMEDOUT, "%s within %u ms", what, c->cfg.dial_timeout_ms);
		if (n && n->stage == ST_HANDSHAKE)
			c->failure.refetch_key = true;
	} else if (c->phase == PH_REGISTER) {
		client__fail(c, false, -ETIMEDOUT, "%s within %u ms", c->deadline_what,
			     c->cfg.request_timeout_ms);
	}
	client__settle(c);
}

static void on_fallback(uv_timer_t *t)
{
	struct client *c = t->data;

	if (c->phase == PH_DIAL && !c->dial.tls && !c->dial.tls_failed && c->srv.tls_port) {
		log_debug("port %u has not answered within %d ms: trying TLS on port %u",
			  c->srv.plain_port, CLIENT_FALLBACK_MS, c->srv.tls_port);
		c->dial.tls = client__conn_new(c, CONN_NOISE, true, c->srv.tls_port);
	}
	client__settle(c);
}

static void start_dial(struct client *c)
{
	c->phase = PH_DIAL;
	c->dial.plain_failed = c->dial.tls_failed = false;
	c->dial.race_rank = -1;
	if (c->srv.plain_port) {
		c->dial.plain = client__conn_new(c, CONN_NOISE, false, c->srv.plain_port);
		if (c->srv.tls_port)
			uv_timer_start(&c->dial.fallback_timer, on_fallback, CLIENT_FALLBACK_MS, 0);
	} else {
		c->dial.tls = client__conn_new(c, CONN_NOISE, true, c->srv.tls_port);
	}
}

static void after_resolve(struct client *c)
{
	if (client__resolve_check(c) < 0)
		return;
	if (c->srv.have_server_key) {
		start_dial(c);
		return;
	}
	c->phase = PH_KEY;
	c->dial.key_conn = client__conn_new(c, CONN_KEY, c->srv.https, c->srv.url_port);
}

static void start_cycle(struct client *c)
{
	c->phase = PH_RESOLVE;
	c->failure.refetch_key = false;
	uv_timer_start(&c->deadline_timer, client__on_deadline, c->cfg.dial_timeout_ms, 0);
	if (!c->status_sent)
		client__set_status(c, CLIENT_DOWN, 0, NULL);
	client__resolve_start(c);
	client__settle(c);
}

static void on_backoff(uv_timer_t *t)
{
	struct client *c = t->data;

	start_cycle(c);
}

static void teardown(struct client *c)
{
	client__conn_free(c->dial.key_conn);
	client__conn_free(c->dial.plain);
	client__conn_free(c->dial.tls);
	client__conn_free(c->dial.noise);
	c->dial.key_conn = c->dial.plain = c->dial.tls = c->dial.noise = NULL;
	c->map.stream = c->lite.req = NULL;
	uv_timer_stop(&c->dial.fallback_timer);
	uv_timer_stop(&c->deadline_timer);
	uv_timer_stop(&c->map.watchdog_timer);
	uv_timer_stop(&c->lite.timer);
	mapstream_destroy(&c->map.ms);
	c->lite.ok = false;
	c->lite.dirty = false;
	c->lite.hold_until = 0;
}

/* Drops a dead attempt of the race and remembers the most telling error:
 * the attempt that got furthest (connect < HTTP < handshake), the later one
 * on a tie. One that died in the handshake may have used a stale server
 * key: the next cycle fetches it again. */
static void race_drop(struct client *c, struct conn **np, bool *failed)
{
	struct conn *n = *np;
	int rank = (int)n->stage;

	if (rank >= c->dial.race_rank) {
		c->dial.race_rank = rank;
		c->dial.race_err = n->err;
		strscpy(c->dial.race_msg, n->msg, sizeof(c->dial.race_msg));
	}
	if (n->stage == ST_HANDSHAKE)
		c->failure.refetch_key = true;
	client__conn_free(n);
	*np = NULL;
	*failed = true;
}

/* The dial race: drops dead attempts (starting TLS when plain failed
 * first), and registers on the first to open its Noise connection. */
static void settle_dial(struct client *c)
{
	struct conn *won = NULL;

	if (c->dial.plain && c->dial.plain->dead) {
		race_drop(c, &c->dial.plain, &c->dial.plain_failed);
		uv_timer_stop(&c->dial.fallback_timer);
		if (!c->dial.tls && c->srv.tls_port && !c->dial.tls_failed) {
			log_debug("port %u failed: trying TLS on port %u", c->srv.plain_port,
				  c->srv.tls_port);
			c->dial.tls = client__conn_new(c, CONN_NOISE, true, c->srv.tls_port);
		}
	}
	if (c->dial.tls && c->dial.tls->dead)
		race_drop(c, &c->dial.tls, &c->dial.tls_failed);
	if (c->dial.plain && c->dial.plain->stage == ST_OPEN)
		won = c->dial.plain;
	else if (c->dial.tls && c->dial.tls->stage == ST_OPEN)
		won = c->dial.tls;
	if (won) {
		uv_timer_stop(&c->dial.fallback_timer);
		if (won == c->dial.plain) {
			client__conn_free(c->dial.tls);
		} else {
			client__conn_free(c->dial.plain);
		}
		c->dial.plain = c->dial.tls = NULL;
		c->dial.noise = won;
		log_info("connected to control %s port %u (%s)", c->srv.host, won->port,
			 won->tls ? "TLS" : "plain");
		client__send_register(c);
	} else if (!c->dial.plain && !c->dial.tls) {
		client__fail(c, false, c->dial.race_err, "%s", c->dial.race_msg);
	}
}

/* A failure was recorded: tears the cycle down, then stops for good
 * (fatal) or retries after a jittered exponential backoff (or a 429's
 * Retry-After). */
static void settle_failure(struct client *c)
{
	uint64_t d;

	c->failure.pending = false;
	teardown(c);
	if (c->failure.refetch_key)
		c->srv.have_server_key = false;
	if (c->failure.fatal) {
		c->phase = PH_FATAL;
		log_err("%s", c->failure.msg);
		client__set_status(c, CLIENT_ERROR, c->failure.err, c->failure.msg);
		return;
	}
	if (c->retry_after_ms) {
		d = c->retry_after_ms;
		c->retry_after_ms = 0;
	} else {
		c->attempts++;
		d = (uint64_t)c->attempts * c->attempts * 10;
		if (d > c->cfg.backoff_max_ms)
			d = c->cfg.backoff_max_ms;
		d = d / 2 + randombytes_uniform((uint32_t)d + 1);
	}
	c->phase = PH_BACKOFF;
	log_warn("%s; reconnecting in %" PRIu64 " ms", c->failure.msg, d);
	/* Armed first: on_state may ask client_retry_in_ms. */
	uv_timer_start(&c->backoff_timer, on_backoff, d, 0);
	client__set_status(c, CLIENT_DOWN, c->failure.err, c->failure.msg);
}

const char *client_failure_kind(const struct client *c)
{
	if (!c->status_sent || c->status == CLIENT_UP)
		return NULL;
	if (c->failure.fatal)
		return "refused";
	switch (c->failure.phase) {
	case PH_RESOLVE:
	case PH_KEY:
	case PH_DIAL:
		return "unreachable";
	case PH_REGISTER:
		return "registration failed";
	case PH_RUNNING:
		return "connection lost";
	default:
		return "not connected";
	}
}

uint64_t client_retry_in_ms(const struct client *c)
{
	uint64_t due;

	if (c->phase != PH_BACKOFF || !uv_is_active((const uv_handle_t *)&c->backoff_timer))
		return 0;
	due = uv_timer_get_due_in(&c->backoff_timer);
	return due ? due : 1;
}

void client__settle(struct client *c)
{
	if (c->closing)
		return;
	if (c->phase == PH_RESOLVE && !c->failure.pending && !c->names.resolving[0] &&
	    !c->names.resolving[1])
		after_resolve(c);
	if (c->dial.key_conn) {
		if (c->dial.key_conn->dead) {
			client__fail(c, false, c->dial.key_conn->err, "%s", c->dial.key_conn->msg);
		} else if (c->dial.key_conn->stage == ST_DONE) {
			client__conn_free(c->dial.key_conn);
			c->dial.key_conn = NULL;
			start_dial(c);
		}
	}
	if (c->phase == PH_DIAL && !c->failure.pending)
		settle_dial(c);
	if (c->dial.noise && c->dial.noise->dead)
		client__fail(c, false, c->dial.noise->err, "%s", c->dial.noise->msg);
	if (c->phase == PH_LOGGED_OUT && !c->failure.pending) {
		teardown(c);
		client__set_status(c, CLIENT_LOGGED_OUT, 0, "logged out");
		return;
	}
	if (c->failure.pending)
		settle_failure(c);
}

static char *xstrdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

int client_global_init(void)
{
	if (sodium_init() < 0)
		return -EIO;
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

/* The checks client_new makes before allocating. */
static int check_config(const struct client_config *cfg, bool *https, char host[static HOST_MAX],
			uint16_t *port, const char **why)
{
	if (!cfg->loop || !cfg->control_url || !cfg->hostname || !cfg->on_state) {
		*why = "loop, control_url, hostname and on_state are required";
		return -EINVAL;
	}
	if (client__parse_url(cfg->control_url, https, host, port, false, false) < 0) {
		*why = "control_url is not http(s)://host[:port]";
		return -EINVAL;
	}
	if (*https && (!cfg->ca_pem || !cfg->ca_pem_len)) {
		*why = "an https control URL needs CA certificates";
		return -EINVAL;
	}
	if (cfg->n_tags > CLIENT_MAX_TAGS) {
		*why = "too many tags";
		return -EINVAL;
	}
	if ((cfg->https_proxy && !strncasecmp(cfg->https_proxy, "https://", 8)) ||
	    (cfg->http_proxy && !strncasecmp(cfg->http_proxy, "https://", 8))) {
		*why = "https:// proxies are not supported (use an http:// proxy URL)";
		return -EINVAL;
	}
	return 0;
}

/* Copies what the config says of this node. 0 or -EINVAL (bad node key,
 * nothing allocated yet). */
static int node_init(struct client_node *node, const struct client_config *cfg)
{
	uint8_t digest[HASH_LEN];
	size_t i;

	memcpy(node->machine_priv, cfg->machine_priv, KEY_LEN);
	memcpy(node->node_priv, cfg->node_priv, KEY_LEN);
	if (sodium_is_zero(cfg->nl_pub, KEY_LEN))
		nlkey_derive(node->node_priv, node->nl_pub);
	else
		memcpy(node->nl_pub, cfg->nl_pub, KEY_LEN);
	memcpy(node->disco_pub, cfg->disco_pub, KEY_LEN);
	memcpy(node->old_node_pub, cfg->old_node_pub, KEY_LEN);
	if (keys_public(node->node_pub, node->node_priv) < 0)
		return -EINVAL;
	node->auth_key = xstrdup_or_null(cfg->auth_key && cfg->auth_key[0] ? cfg->auth_key : NULL);
	node->hostname = xstrdup(cfg->hostname);
	node->n_tags = cfg->n_tags;
	node->tags = cfg->n_tags ? xcalloc(cfg->n_tags, sizeof(char *)) : NULL;
	for (i = 0; i < cfg->n_tags; i++)
		node->tags[i] = xstrdup(cfg->tags[i]);
	node->ephemeral = cfg->ephemeral;
	if (cfg->backend_log_id) {
		strscpy(node->log_id, cfg->backend_log_id, sizeof(node->log_id));
	} else {
		/* Stable per node key, reveals nothing about it. */
		hash_blake2s(digest, (const uint8_t *)"tscni-backend-log-id", 20, node->node_pub,
			     KEY_LEN);
		for (i = 0; i < HASH_LEN; i++)
			snprintf(node->log_id + 2 * i, 3, "%02x", digest[i]);
	}
	node->os_version = xstrdup(cfg->os_version ? cfg->os_version : "");
	node->preferred_derp = 0;
	return 0;
}

static void settings_init(struct client_settings *s, const struct client_config *cfg)
{
	s->resolve = cfg->resolve;
	s->resolve_arg = cfg->resolve_arg;
	s->on_netmap = cfg->on_netmap;
	s->on_self_addresses = cfg->on_self_addresses;
	s->on_state = cfg->on_state;
	s->cb_arg = cfg->cb_arg;
	s->dial_timeout_ms = cfg->dial_timeout_ms ? cfg->dial_timeout_ms : CLIENT_DIAL_TIMEOUT_MS;
	s->request_timeout_ms =
		cfg->request_timeout_ms ? cfg->request_timeout_ms : CLIENT_REQUEST_TIMEOUT_MS;
	s->watchdog_ms = cfg->watchdog_ms ? cfg->watchdog_ms : CLIENT_WATCHDOG_MS;
	s->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : CLIENT_BACKOFF_MAX_MS;
	s->test_flags = cfg->test_flags;
}

/* Every timer of the client, for client_new and client_close. */
static void timers_of(struct client *c, uv_timer_t *t[static N_TIMERS])
{
	t[0] = &c->curl.timer;
	t[1] = &c->dial.fallback_timer;
	t[2] = &c->deadline_timer;
	t[3] = &c->map.watchdog_timer;
	t[4] = &c->backoff_timer;
	t[5] = &c->lite.timer;
}

int client_new(const struct client_config *cfg, struct client **out, const char **why)
{
	struct client *c;
	size_t i;
	bool https = false;
	char host[HOST_MAX];
	uint16_t port = 0;
	uv_timer_t *timers[N_TIMERS];
	int ret;

	*out = NULL;
	ret = check_config(cfg, &https, host, &port, why);
	if (ret < 0)
		return ret;
	c = xcalloc(1, sizeof(*c));
	if (node_init(&c->node, cfg) < 0) {
		sodium_memzero(c, sizeof(*c));
		free(c);
		*why = "invalid node key";
		return -EINVAL;
	}
	c->loop = cfg->loop;
	c->srv.https = https;
	strscpy(c->srv.host, host, sizeof(c->srv.host));
	c->srv.url_port = port ? port : (https ? 443 : 80);
	client__server_ports(&c->srv, port, cfg);
	c->srv.ca_pem = cfg->ca_pem; /* borrowed */
	c->srv.ca_pem_len = cfg->ca_pem ? cfg->ca_pem_len : 0;
	c->srv.http_proxy = xstrdup_or_null(cfg->http_proxy);
	c->srv.https_proxy = xstrdup_or_null(cfg->https_proxy);
	c->srv.no_proxy = xstrdup_or_null(cfg->no_proxy);
	settings_init(&c->cfg, cfg);
	c->registered = cfg->node_registered;
	c->capver = capver_claim();
	strscpy(c->names.cache[SLOT_CONTROL].host, host, sizeof(c->names.cache[SLOT_CONTROL].host));
	c->names.cache[SLOT_CONTROL].literal = client__is_literal(host);

	client__curl_init(c);
	timers_of(c, timers);
	for (i = 0; i < N_TIMERS; i++) {
		uv_timer_init(c->loop, timers[i]);
		timers[i]->data = c;
		c->handles_open++;
	}
	*out = c;
	return 0;
}

int client_start(struct client *c)
{
	if (c->started)
		return -EALREADY;
	c->started = true;
	{
		size_t gaps[8], n = capver_gaps(gaps, 8), i, tn;
		const struct capver_row *t = capver_table(&tn);

		for (i = 0; i < n && i < 8; i++)
			log_warn("capability version %d: obligation of %d not met: %s (%s)",
				 c->capver, t[gaps[i]].version, t[gaps[i]].promise, t[gaps[i]].how);
	}
	start_cycle(c);
	return 0;
}

static void lite_changed(struct client *c)
{
	if (c->phase == PH_RUNNING) {
		client__send_lite(c);
		client__settle(c);
	}
}

int client_set_endpoints(struct client *c, const struct netmap_endpoint *eps, const int *types,
			 size_t n)
{
	if (n > CLIENT_MAX_ENDPOINTS)
		return -EINVAL;
	if (n == c->node.n_eps && !memcmp(c->node.eps, eps, n * sizeof(*eps)) &&
	    !memcmp(c->node.ep_types, types, n * sizeof(*types)))
		return 0;
	memcpy(c->node.eps, eps, n * sizeof(*eps));
	memcpy(c->node.ep_types, types, n * sizeof(*types));
	c->node.n_eps = n;
	lite_changed(c);
	return 0;
}

void client_set_disco_key(struct client *c, const uint8_t disco_pub[static KEY_LEN])
{
	if (!memcmp(c->node.disco_pub, disco_pub, KEY_LEN))
		return;
	memcpy(c->node.disco_pub, disco_pub, KEY_LEN);
	lite_changed(c);
}

void client_set_preferred_derp(struct client *c, int region)
{
	if (region == c->node.preferred_derp)
		return;
	c->node.preferred_derp = region;
	lite_changed(c);
}

void client_set_derp_latency(struct client *c, const int *regions, const double *secs, size_t n)
{
	bool first = c->node.n_derp_lat == 0 && n > 0;

	if (n > CLIENT_MAX_DERP_LATENCY)
		n = CLIENT_MAX_DERP_LATENCY;
	memcpy(c->node.derp_lat_regions, regions, n * sizeof(regions[0]));
	memcpy(c->node.derp_lat_secs, secs, n * sizeof(secs[0]));
	c->node.n_derp_lat = n;
	if (first)
		lite_changed(c);
}

int client_set_hostname(struct client *c, const char *hostname)
{
	if (!hostname || !hostname[0] || strlen(hostname) > 255)
		return -EINVAL;
	if (!strcmp(hostname, c->node.hostname))
		return 0;
	free(c->node.hostname);
	c->node.hostname = xstrdup(hostname);
	lite_changed(c);
	return 0;
}

static void free_secret(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

void client_logout(struct client *c, const char *auth_key)
{
	if (auth_key && auth_key[0]) {
		free_secret(c->node.auth_key);
		c->node.auth_key = xstrdup(auth_key);
	}
	c->logout_wanted = true;
	if (c->phase == PH_RUNNING) {
		client__send_register(c);
		client__settle(c);
	} else if (c->phase == PH_BACKOFF || c->phase == PH_IDLE || c->phase == PH_FATAL) {
		uv_timer_stop(&c->backoff_timer);
		c->started = true;
		start_cycle(c);
	}
	/* Otherwise the cycle under way sends the logout once connected
	 * (client__send_register looks at logout_wanted), or a register in
	 * flight is followed by it: register_done (request.c) starts the
	 * stream only without it. */
}

struct netmap *client_netmap(const struct client *c)
{
	return c->map.nm;
}

const char *client_transport(const struct client *c)
{
	if (!c->dial.noise || c->dial.noise->dead)
		return NULL;
	return c->dial.noise->tls ? "tls" : "plain";
}

bool client_lite_accepted(const struct client *c)
{
	return c->lite.ok;
}

uint64_t client_registered_ns(const struct client *c)
{
	return c->registered_ns;
}

static void client_free(struct client *c)
{
	size_t i;
	client_closed_fn *cb = c->closed_cb;
	void *arg = c->closed_arg;

	netmap_put(c->map.nm);
	mapjson_peer_cache_free(c->map.peers);
	free_secret(c->node.auth_key);
	free(c->node.hostname);
	for (i = 0; i < c->node.n_tags; i++)
		free(c->node.tags[i]);
	free(c->node.tags);
	free(c->node.os_version);
	free(c->srv.http_proxy);
	free(c->srv.https_proxy);
	free(c->srv.no_proxy);
	sodium_memzero(c, sizeof(*c));
	free(c);
	if (cb)
		cb(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct client *c = h->data;

	if (--c->handles_open == 0)
		client_free(c);
}

void client_close(struct client *c, client_closed_fn *cb, void *arg)
{
	size_t i;
	uv_timer_t *timers[N_TIMERS];

	c->closing = true;
	c->closed_cb = cb;
	c->closed_arg = arg;
	for (i = 0; i < N_SLOTS; i++)
		if (c->names.resolving[i])
			c->names.resolving[i]->c = NULL; /* freed by client_resolve_done */
	teardown(c);
	client__curl_close(c);
	timers_of(c, timers);
	for (i = 0; i < N_TIMERS; i++) {
		uv_timer_stop(timers[i]);
		uv_close((uv_handle_t *)timers[i], on_timer_closed);
	}
}
