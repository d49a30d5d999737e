/* What the client asks of control over the Noise connection, and what it
 * does with the answers: POST /machine/register (and the logout, a register
 * with Expiry in the past), the map stream (POST /machine/map with Stream,
 * KeepAlive and zstd, each message applied by netmap_apply), lite updates
 * (Stream false, OmitPeers true) and PingRequests. */
#include "client_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <time.h>

#include <sodium.h>

#include "log.h"
#include "mapjson.h"

static const char c2n_not_found[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";

static void on_lite_timer(uv_timer_t *t);

static void fill_hostinfo(struct client *c, struct mapjson_hostinfo *hi)
{
	*hi = (struct mapjson_hostinfo){
		.ipn_version = "1.90.0-tscni",
		.backend_log_id = c->node.log_id,
		.os = "linux",
		.os_version = c->node.os_version,
		.hostname = c->node.hostname,
		.app = "tailscale-cni",
		.container = true,
		.request_tags = (const char *const *)c->node.tags,
		.n_request_tags = c->node.n_tags,
		.has_netinfo = c->node.preferred_derp > 0,
		.preferred_derp = c->node.preferred_derp,
		.working_udp = c->node.n_eps > 0,
		.derp_latency_regions = c->node.derp_lat_regions,
		.derp_latency_v4 = c->node.derp_lat_secs,
		.n_derp_latency = c->node.n_derp_lat,
	};
}

void client__send_register(struct client *c)
{
	struct mapjson_hostinfo hi;
	bool logout = c->logout_wanted;
	struct mapjson_register_request rr;
	const char *why = NULL;
	char *json = NULL;
	int ret;

	fill_hostinfo(c, &hi);
	c->sent_auth = !logout && !c->registered && c->node.auth_key;
	rr = (struct mapjson_register_request){
		.version = c->capver,
		.node_key = c->node.node_pub,
		.nl_key = c->node.nl_pub,
		/* The logout too: control may check the key on every register
		 * request, as genuine tailscale's logout presents it again. */
		.auth_key = c->sent_auth || logout ? c->node.auth_key : NULL,
		/* A rotation: the old key goes with the auth key, never alone
		 * (control would take it as a rotation of a valid key). */
		.old_node_key = c->sent_auth && !sodium_is_zero(c->node.old_node_pub, KEY_LEN)
					? c->node.old_node_pub
					: NULL,
		.expiry = logout ? LOGOUT_EXPIRY : 0,
		.hostinfo = &hi,
		.ephemeral = c->node.ephemeral,
	};
	ret = mapjson_build_register_request(&rr, &json, &why);
	if (ret < 0) {
		client__fail(c, true, ret, "cannot build the register request: %s", why);
		return;
	}
	c->phase = PH_REGISTER;
	c->deadline_what = logout ? "control did not answer the logout"
				  : "control did not answer /machine/register";
	uv_timer_start(&c->deadline_timer, client__on_deadline, c->cfg.request_timeout_ms, 0);
	if (!client__h2_submit(c, logout ? REQ_LOGOUT : REQ_REGISTER, "POST", "/machine/register",
			       json, strlen(json)))
		client__fail(c, false, -EIO, "cannot send the register request");
}

static char *map_request_json(struct client *c, bool stream)
{
	struct mapjson_hostinfo hi;
	struct mapjson_map_request mr;
	const char *why = NULL;
	char *json = NULL;

	fill_hostinfo(c, &hi);
	mr = (struct mapjson_map_request){
		.version = c->capver,
		.compress = true,
		.keep_alive = stream,
		.node_key = c->node.node_pub,
		.disco_key = sodium_is_zero(c->node.disco_pub, KEY_LEN) ? NULL : c->node.disco_pub,
		.stream = stream,
		.omit_peers = !stream,
		.hostinfo = &hi,
		.endpoints = c->node.eps,
		.endpoint_types = c->node.ep_types,
		.n_endpoints = c->node.n_eps,
	};
	if (mapjson_build_map_request(&mr, &json, &why) < 0) {
		client__fail(c, true, -EINVAL, "cannot build the map request: %s", why);
		return NULL;
	}
	return json;
}

static void on_watchdog(uv_timer_t *t)
{
	struct client *c = t->data;

	client__fail(c, false, -ETIMEDOUT, "no map message from control for %u ms (watchdog)",
		     c->cfg.watchdog_ms);
	client__settle(c);
}

void client__send_lite(struct client *c)
{
	char *json;

	if (c->phase != PH_RUNNING)
		return;
	if (c->cfg.test_flags & CLIENT_TEST_NO_LITE) {
		log_info("lite update suppressed (test switch)");
		c->lite.ok = true;
		return;
	}
	if (c->lite.req) {
		c->lite.dirty = true; /* resent when this one is answered */
		return;
	}
	if (c->map.stream_fresh && uv_now(c->loop) < c->lite.hold_until) {
		c->lite.dirty = true; /* sent with the stream's first map */
		return;
	}
	c->lite.dirty = false;
	json = map_request_json(c, false);
	if (!json)
		return;
	c->lite.req = client__h2_submit(c, REQ_LITE, "POST", "/machine/map", json, strlen(json));
	if (c->lite.req)
		uv_timer_start(&c->lite.timer, on_lite_timer, c->cfg.request_timeout_ms, 0);
}

static void start_stream(struct client *c)
{
	char *json = map_request_json(c, true);
	const char *why = NULL;
	int ret;

	if (!json)
		return;
	mapstream_destroy(&c->map.ms);
	ret = mapstream_init(&c->map.ms, true, 0, 0);
	if (ret < 0) {
		free(json);
		client__fail(c, true, ret, "map stream: %s",
			     why ? why : "cannot set up the reader");
		return;
	}
	c->map.stream_fresh = true;
	c->map.stream =
		client__h2_submit(c, REQ_STREAM, "POST", "/machine/map", json, strlen(json));
	if (!c->map.stream) {
		client__fail(c, false, -EIO, "cannot send the map request");
		return;
	}
	uv_timer_start(&c->map.watchdog_timer, on_watchdog, c->cfg.watchdog_ms, 0);
}

static void maybe_up(struct client *c)
{
	if (c->phase == PH_RUNNING && c->map.nm && !c->map.stream_fresh && c->lite.ok &&
	    !c->failure.pending)
		client__set_status(c, CLIENT_UP, 0, NULL);
}

/* Escapes control's text for a message. */
static const char *esc(char *buf, size_t n, const char *s)
{
	return log_escape(buf, n, s, strlen(s));
}

static void register_done(struct client *c, struct h2req *r, uint32_t error_code)
{
	struct mapjson_register_response *rr = NULL;
	const char *why = NULL;
	char e[160];
	bool logout = r->kind == REQ_LOGOUT;

	if (error_code || r->status == 0) {
		client__fail(c, false, -ECONNRESET,
			     "register stream reset by control (HTTP/2 error %u)", error_code);
		return;
	}
	if (r->status == 429) {
		/* Retry-After: seconds; without a usable value, 5-10 s. */
		long s = r->retry_after;

		if (s < 0 || s > RETRY_AFTER_MAX_S)
			s = 5 + (long)randombytes_uniform(6);
		client__fail(c, false, -EAGAIN,
			     "control is rate limiting registration (429), retry in %ld s", s);
		c->retry_after_ms = (uint64_t)s * 1000;
		return;
	}
	if (r->status != 200) {
		sbuf_add(&r->resp, "", 1);
		client__fail(c, false, -EPROTO, "register: HTTP status %d: %s", r->status,
			     esc(e, sizeof(e), (const char *)r->resp.p));
		return;
	}
	if (mapjson_parse_register_response((const char *)r->resp.p, r->resp.len, &rr, &why) < 0) {
		client__fail(c, false, -EBADMSG, "register answer: %s", why);
		return;
	}
	if (rr->error && rr->error[0]) {
		client__fail(c, true, -EPERM, "control refused %s: %s",
			     logout ? "the logout" : "registration", esc(e, sizeof(e), rr->error));
	} else if (logout) {
		c->phase = PH_LOGGED_OUT;
	} else if (rr->has_node_key_signature) {
		client__fail(
			c, true, -EPERM,
			"tailnet lock (TKA) is enabled on this tailnet: not supported, disable it "
			"or sign the node");
	} else if (rr->node_key_expired) {
		client__fail(c, true, -EKEYEXPIRED,
			     "node key expired: re-register with a new node key and auth key");
	} else if (rr->auth_url && rr->auth_url[0]) {
		if (!c->sent_auth && c->node.auth_key) {
			/* A node control no longer knows: present the auth key. */
			log_info("control does not know this node key: presenting the auth key");
			mapjson_register_response_free(rr);
			c->registered = false;
			client__send_register(c);
			return;
		}
		client__fail(
			c, true, -EACCES,
			"control server wants interactive login: use a pre-authorized auth key");
	} else if (!rr->machine_authorized) {
		client__fail(
			c, true, -EACCES,
			"node is registered but not authorized by control (awaiting approval): use "
			"a pre-authorized auth key");
	} else if (c->logout_wanted) {
		/* client_logout() while this register was in flight. */
		c->registered = true;
		client__send_register(c);
	} else {
		c->registered = true;
		if (!c->registered_ns)
			c->registered_ns = uv_hrtime();
		c->phase = PH_RUNNING;
		uv_timer_stop(&c->deadline_timer);
		log_info("registered with control as %s", c->node.hostname);
		start_stream(c);
		/* The first lite goes with the stream's first map (struct
		 * client_lite), or when the hold ends without one. */
		c->lite.hold_until = uv_now(c->loop) + CLIENT_LITE_HOLD_MS;
		c->lite.dirty = true;
		if (!c->lite.req)
			uv_timer_start(&c->lite.timer, on_lite_timer, CLIENT_LITE_HOLD_MS, 0);
	}
	mapjson_register_response_free(rr);
}

static void on_lite_timer(uv_timer_t *t)
{
	struct client *c = t->data;

	if (c->lite.req) {
		client__fail(c, false, -ETIMEDOUT,
			     "control did not answer a lite update within %u ms",
			     c->cfg.request_timeout_ms);
	} else if (c->phase == PH_RUNNING) {
		client__send_lite(c);
	}
	client__settle(c);
}

static void lite_done(struct client *c, struct h2req *r, uint32_t error_code)
{
	c->lite.req = NULL;
	uv_timer_stop(&c->lite.timer);
	if (error_code == 0 && r->status == 200) {
		c->lite.ok = true;
		c->lite.attempts = 0;
		log_debug("lite update accepted");
		if (c->lite.dirty)
			client__send_lite(c);
		maybe_up(c);
		return;
	}
	/* Retried before the map poll is restarted (capver 58). */
	c->lite.attempts++;
	{
		uint64_t d = (uint64_t)c->lite.attempts * c->lite.attempts * 10;

		if (d > c->cfg.backoff_max_ms)
			d = c->cfg.backoff_max_ms;
		log_warn("lite update refused (HTTP status %d, stream error %u); retry in %" PRIu64
			 " ms",
			 r->status, error_code, d);
		uv_timer_start(&c->lite.timer, on_lite_timer, d, 0);
	}
}

void client__req_done(struct client *c, struct h2req *r, uint32_t error_code)
{
	char e[160];

	switch (r->kind) {
	case REQ_REGISTER:
	case REQ_LOGOUT:
		register_done(c, r, error_code);
		break;
	case REQ_LITE:
		lite_done(c, r, error_code);
		break;
	case REQ_STREAM:
		c->map.stream = NULL;
		if (c->phase != PH_RUNNING)
			break;
		if (r->status != 200) {
			sbuf_add(&r->resp, "", 1);
			client__fail(c, false, -EPROTO, "map poll: HTTP status %d: %s", r->status,
				     esc(e, sizeof(e), (const char *)r->resp.p));
		} else if (!mapstream_idle(&c->map.ms)) {
			client__fail(c, false, -EBADMSG,
				     "map stream ended inside a message (truncated message)");
		} else {
			client__fail(c, false, -ECONNRESET,
				     "map stream ended by control (HTTP/2 error %u)", error_code);
		}
		break;
	case REQ_PING:
		log_debug("ping answer: HTTP status %d", r->status);
		break;
	}
}

/* PingRequest: as upstream's clients without the fancier types: a HEAD to
 * the URL for the plain liveness probe; c2n requests get 404; disco, TSMP,
 * ICMP and peerapi pings are not answered (logged). Deduplicated by URL. */
static void answer_ping(struct client *c, const struct mapjson_ping *p)
{
	const char *path;

	if (!p->url || !p->url[0] || !strcmp(p->url, c->map.last_ping_url))
		return;
	strscpy(c->map.last_ping_url, p->url, sizeof(c->map.last_ping_url));
	path = client__url_path(p->url);
	if (!p->url_is_noise || !path) {
		log_info("PingRequest over plain HTTPS not answered (types \"%s\")",
			 p->types ? p->types : "");
		return;
	}
	if (!p->types || !p->types[0]) {
		client__h2_submit(c, REQ_PING, "HEAD", path, NULL, 0);
	} else if (!strcmp(p->types, "c2n")) {
		client__h2_submit(c, REQ_PING, "POST", path, xstrdup(c2n_not_found),
				  strlen(c2n_not_found));
	} else {
		log_info("PingRequest of types \"%s\" not answered", p->types);
	}
}

static bool same_addrs(const struct client *c, const struct netmap_node *self)
{
	size_t i;

	if (!c->map.have_self_addrs || c->map.n_self_addrs != self->n_addresses)
		return false;
	for (i = 0; i < self->n_addresses; i++)
		if (!ip_prefix_equal(&c->map.self_addrs[i], &self->addresses[i]))
			return false;
	return true;
}

void client__map_message(struct client *c, const char *json, size_t len)
{
	struct mapjson_map_response *resp = NULL;
	struct netmap *next = NULL;
	const char *why = NULL;
	bool first = false;
	int ret;

	uv_timer_start(&c->map.watchdog_timer, on_watchdog, c->cfg.watchdog_ms, 0);
	if (!c->map.peers)
		c->map.peers = mapjson_peer_cache_new();
	ret = mapjson_parse_map_response_cached(json, len, c->map.peers, &resp, &why);
	if (ret < 0) {
		client__fail(c, false, ret, "map message: %s", why);
		return;
	}
	if (resp->ping)
		answer_ping(c, resp->ping);
	if (resp->has_tka && resp->tka_enabled) {
		client__fail(c, true, -EPERM,
			     "tailnet lock (TKA) is enabled on this tailnet: not supported, "
			     "disable it or "
			     "sign the node");
		goto out;
	}
	ret = netmap_apply(c->map.stream_fresh ? NULL : c->map.nm, resp, (int64_t)time(NULL), &next,
			   &why);
	if (ret < 0) {
		client__fail(c, false, ret, "map message: %s", why);
		goto out;
	}
	if (!next)
		goto out; /* a keep-alive before any map */
	if (!c->map.stream_fresh && next == c->map.nm) {
		netmap_put(next); /* keep-alive: nothing changed */
		goto out;
	}
	netmap_put(c->map.nm);
	c->map.nm = next;
	if (c->map.stream_fresh) {
		c->map.stream_fresh = false;
		c->attempts = 0;
		first = true;
	}
	if (next->self && next->self->expired) {
		client__fail(c, true, -EKEYEXPIRED,
			     "node key expired by control: re-register with a new node key and "
			     "auth key");
		goto out;
	}
	if (c->cfg.on_netmap)
		c->cfg.on_netmap(c->cfg.cb_arg, next);
	if (next->self && !same_addrs(c, next->self)) {
		size_t n = next->self->n_addresses;

		if (n > NETMAP_MAX_ADDRESSES)
			n = NETMAP_MAX_ADDRESSES;
		memcpy(c->map.self_addrs, next->self->addresses, n * sizeof(c->map.self_addrs[0]));
		c->map.n_self_addrs = n;
		c->map.have_self_addrs = true;
		if (c->cfg.on_self_addresses)
			c->cfg.on_self_addresses(c->cfg.cb_arg, c->map.self_addrs, n);
	}
	/* The held lite, unless on_netmap sent it (a new home region). */
	if (first && c->lite.dirty && !c->lite.req)
		client__send_lite(c);
	maybe_up(c);
out:
	mapjson_map_response_free(resp);
	mapjson_peer_cache_trim(c->map.peers);
}
