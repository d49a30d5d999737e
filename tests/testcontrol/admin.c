/* The admin API: HTTP/1.1 with JSON bodies on a loopback port, one request
 * per connection. See README.md for the routes. */
#include "tc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "mem.h"

static void reply(struct tc_conn *c, int status, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);
	char *body = xasprintf("%s\n", text);

	net_http_reply(c, status, "application/json", body);
	free(body);
	free(text);
	json_decref(o);
}

static void fail(struct tc_conn *c, int status, const char *why)
{
	reply(c, status, json_pack("{s:s}", "error", why));
}

static json_t *node_info(struct tc_server *s, const struct tc_node *n)
{
	char nk[80], dk[80];
	json_t *o = json_pack(
		"{s:I, s:s, s:s, s:o, s:O, s:O, s:b, s:b, s:b, s:b, s:i, s:i, s:I}", "id",
		(json_int_t)n->id, "node_key", keys_to_text("nodekey", n->node_key, nk, sizeof(nk)),
		"hostname", n->hostname, "addresses", control_addresses(n), "tags", n->tags,
		"endpoints", n->endpoints, "online", n->online > 0, "ephemeral", n->ephemeral,
		"authorized", n->authorized, "logged_out", n->logged_out, "home_derp", n->home_derp,
		"cap", n->cap, "lite_updates", (json_int_t)n->lite_updates);

	json_t *lat = json_object_get(json_object_get(n->hostinfo, "NetInfo"), "DERPLatency");

	json_t *rt = json_object_get(n->hostinfo, "RequestTags");

	/* As the node last sent it: the netcheck's latencies ("900-v4": s). */
	if (json_is_object(lat))
		json_object_set(o, "derp_latency", lat);
	/* As the node last sent it: the tags it asks for (tags are what it has). */
	json_object_set_new(o, "request_tags", json_is_array(rt) ? json_incref(rt) : json_array());
	if (n->has_disco)
		json_object_set_new(
			o, "disco_key",
			json_string(keys_to_text("discokey", n->disco, dk, sizeof(dk))));
	json_object_set_new(o, "expired", json_boolean(n->key_expiry && n->key_expiry <= tc_now()));
	json_object_set_new(o, "external", json_boolean(n->external));
	return o;
}

static bool tags_valid(json_t *tags)
{
	json_t *v;
	size_t i;

	if (!json_is_array(tags))
		return false;
	json_array_foreach(tags, i, v)
	{
		const char *t = json_string_value(v);

		if (!t || strncmp(t, "tag:", 4) != 0 || strlen(t) < 5 || strlen(t) > 64)
			return false;
	}
	return true;
}

static void create_key(struct tc_conn *c, json_t *req)
{
	struct tc_server *s = c->srv;
	struct tc_key *k;
	json_t *tags = json_object_get(req, "tags"), *pre = json_object_get(req, "preauthorized");
	json_t *exp = json_object_get(req, "expires_in");
	uint8_t rnd[24];
	char hex[49];

	if (tags && !tags_valid(tags)) {
		fail(c, 400, "tags must be a list of \"tag:<name>\" strings");
		return;
	}
	if (exp && !json_is_integer(exp)) {
		fail(c, 400, "expires_in must be an integer number of seconds");
		return;
	}
	if (api_count_keys(s) >= TC_KEYS_MAX) {
		fail(c, 409, "too many pre-auth keys (4096)");
		return;
	}
	k = xcalloc(1, sizeof(*k));
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
	snprintf(k->key, sizeof(k->key), "tskey-auth-%s", hex);
	sodium_memzero(hex, sizeof(hex));
	k->reusable = json_is_true(json_object_get(req, "reusable"));
	k->ephemeral = json_is_true(json_object_get(req, "ephemeral"));
	k->preauthorized = pre ? json_is_true(pre) : true;
	k->created = tc_now();
	k->tags = tags ? json_deep_copy(tags) : json_array();
	if (exp)
		k->expires = tc_now() + json_integer_value(exp);
	k->next = s->keys;
	s->keys = k;
	store_save(s);
	log_info("pre-auth key made (reusable %d, ephemeral %d, %zu tags)", k->reusable,
		 k->ephemeral, json_array_size(k->tags));
	reply(c, 200,
	      json_pack("{s:s, s:b, s:b, s:b, s:O}", "key", k->key, "reusable", k->reusable,
			"ephemeral", k->ephemeral, "preauthorized", k->preauthorized, "tags",
			k->tags));
}

/* The node named by {"node_key": "nodekey:…"} or {"id": N}; answers 400
 * or 404 itself and returns NULL when there is none. */
static struct tc_node *node_arg(struct tc_conn *c, json_t *req)
{
	const char *text = json_string_value(json_object_get(req, "node_key"));
	json_t *id = json_object_get(req, "id");
	uint8_t key[32];
	struct tc_node *n;

	if (!text && json_is_integer(id)) {
		n = control_find_id(c->srv, json_integer_value(id));
		if (!n)
			fail(c, 404, "no node with that id");
		return n;
	}
	if (!text || keys_from_text("nodekey", text, key) < 0) {
		fail(c, 400, "want {\"node_key\": \"nodekey:<64 hex>\"} or {\"id\": N}");
		return NULL;
	}
	n = control_find_key(c->srv, key);
	if (!n)
		fail(c, 404, "no node with that node_key");
	return n;
}

static void register_external(struct tc_conn *c, json_t *req)
{
	struct tc_server *s = c->srv;
	const char *nk = json_string_value(json_object_get(req, "node_key"));
	const char *host = json_string_value(json_object_get(req, "hostname"));
	const char *dk = json_string_value(json_object_get(req, "disco_key"));
	const char *mk = json_string_value(json_object_get(req, "machine_key"));
	json_t *addrs = json_object_get(req, "addresses"), *eps = json_object_get(req, "endpoints");
	json_t *tags = json_object_get(req, "tags"), *v;
	json_t *routes = json_object_get(req, "routes");
	struct tc_node *n = xcalloc(1, sizeof(*n));
	size_t i;

	if (!nk || keys_from_text("nodekey", nk, n->node_key) < 0) {
		fail(c, 400, "node_key must be \"nodekey:<64 hex>\"");
		goto bad;
	}
	if (control_find_key(s, n->node_key)) {
		fail(c, 409, "a node with that node_key exists");
		goto bad;
	}
	if (!host || strscpy(n->hostname, host, sizeof(n->hostname)) < 0 || !host[0]) {
		fail(c, 400, "hostname must be a string of 1 to 63 characters");
		goto bad;
	}
	if (dk && keys_from_text("discokey", dk, n->disco) < 0) {
		fail(c, 400, "disco_key must be \"discokey:<64 hex>\"");
		goto bad;
	}
	n->has_disco = dk != NULL;
	if (mk && keys_from_text("mkey", mk, n->machine) < 0) {
		fail(c, 400, "machine_key must be \"mkey:<64 hex>\"");
		goto bad;
	}
	n->has_machine = mk != NULL;
	if (addrs) {
		if (!json_is_array(addrs) || !json_array_size(addrs)) {
			fail(c, 400, "addresses must be a non-empty list of prefixes");
			goto bad;
		}
		json_array_foreach(addrs, i, v)
		{
			if (!json_is_string(v) || !strchr(json_string_value(v), '/')) {
				fail(c, 400, "addresses must be prefixes like \"100.64.9.9/32\"");
				goto bad;
			}
		}
		n->addresses = json_deep_copy(addrs);
	}
	if (eps && !json_is_array(eps)) {
		fail(c, 400, "endpoints must be a list of \"ip:port\"");
		goto bad;
	}
	if (routes) {
		if (!json_is_array(routes)) {
			fail(c, 400, "routes must be a list of prefixes");
			goto bad;
		}
		json_array_foreach(routes, i, v)
		{
			if (!json_is_string(v) || !strchr(json_string_value(v), '/')) {
				fail(c, 400, "routes must be prefixes like \"10.77.0.0/16\"");
				goto bad;
			}
		}
		n->routes = json_deep_copy(routes);
	}
	if (tags && !tags_valid(tags)) {
		fail(c, 400, "tags must be a list of \"tag:<name>\" strings");
		goto bad;
	}
	n->endpoints = eps ? json_deep_copy(eps) : json_array();
	n->tags = tags ? json_deep_copy(tags) : json_array();
	n->home_derp = (int)json_integer_value(json_object_get(req, "home_derp"));
	n->wg_only = json_is_true(json_object_get(req, "wireguard_only"));
	n->external = true;
	n->authorized = true;
	n->id = s->next_id++;
	n->index = s->next_index++;
	n->created = tc_now();
	control_node_insert(s, n);
	s->dirty = true;
	store_save(s);
	log_info("external node %lld (%s) registered", n->id, n->hostname);
	reply(c, 200, node_info(s, n));
	return;
bad:
	control_node_free(n);
}

static void set_switches(struct tc_conn *c, json_t *req)
{
	struct tc_switches *sw = &c->srv->sw;
	struct {
		const char *name;
		bool *flag;
	} table[] = {
		{"hang", &sw->hang},
		{"garbage", &sw->garbage},
		{"truncate", &sw->truncate},
		{"oversize", &sw->oversize},
		{"wrong_key", &sw->wrong_key},
		{"no_early", &sw->no_early},
		{"derp_garbage", &sw->derp_garbage},
		{"derp_junk", &sw->derp_junk},
	};
	const char *key;
	json_t *v, *out = json_object();

	json_object_foreach(req, key, v)
	{
		size_t i;

		for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
			if (strcmp(key, table[i].name) == 0)
				break;
		if (i == sizeof(table) / sizeof(table[0]) || !json_is_boolean(v)) {
			char why[128];

			snprintf(why, sizeof(why), "unknown switch or not a boolean: %.64s", key);
			json_decref(out);
			fail(c, 400, why);
			return;
		}
	}
	json_object_foreach(req, key, v)
	{
		for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
			if (strcmp(key, table[i].name) == 0)
				*table[i].flag = json_is_true(v);
		log_info("switch %s %s", key, json_is_true(v) ? "on" : "off");
	}
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		json_object_set_new(out, table[i].name, json_boolean(*table[i].flag));
	/* Map streams need a message to carry truncate/oversize: push now. */
	if (sw->truncate || sw->oversize) {
		for (struct tc_map *m = c->srv->maps; m; m = m->next)
			m->last_send_ms = 0;
	}
	reply(c, 200, out);
}

static void set_policy(struct tc_conn *c, json_t *req)
{
	struct tc_server *s = c->srv;
	const char *why = NULL;
	json_error_t jerr;
	json_t *policy = req;
	int ret;

	if (!req) {
		if (!s->policy_path) {
			fail(c, 400, "no --policy file to reload and no policy in the body");
			return;
		}
		policy = json_load_file(s->policy_path, 0, &jerr);
		if (!policy) {
			char text[300];

			snprintf(text, sizeof(text), "%.100s: line %d: %.150s", s->policy_path,
				 jerr.line, jerr.text);
			fail(c, 400, text);
			return;
		}
	}
	ret = control_policy_load(s, policy, &why);
	if (policy != req)
		json_decref(policy);
	if (ret < 0) {
		fail(c, 400, why);
		return;
	}
	log_info("policy set: %zu rules", json_array_size(s->policy));
	reply(c, 200, json_pack("{s:O}", "acls", s->policy));
}

/* The DERP regions, the node keys connected to each and the packets each
 * relayed. */
static json_t *derp_info(struct tc_server *s)
{
	json_t *list = json_array();

	for (int i = 0; i < s->nderp; i++) {
		const struct tc_derp_region *r = &s->derp[i];
		json_t *clients = json_array();
		char key[80];

		for (struct tc_conn *c = s->conns; c; c = c->next)
			if (c->kind == TC_CONN_DERP && c->region == i && c->derp_up &&
			    c->state == TC_ST_DERP)
				json_array_append_new(clients,
						      json_pack("{s:s, s:b}", "node_key",
								keys_to_text("nodekey", c->derp_key,
									     key, sizeof(key)),
								"preferred", c->derp_preferred));
		json_array_append_new(list, json_pack("{s:i, s:s, s:i, s:b, s:o, s:I}", "region",
						      r->id, "host", r->host, "port", r->port, "up",
						      !r->down, "clients", clients, "relayed",
						      (json_int_t)r->relayed));
	}
	return list;
}

/* POST /derp {"region": ID, "up": bool}: takes a region down (listeners
 * closed, clients cut off) or brings it back on the same port. */
static void set_derp(struct tc_conn *c, json_t *req)
{
	struct tc_server *s = c->srv;
	json_t *id = json_object_get(req, "region"), *up = json_object_get(req, "up");
	struct tc_derp_region *r = NULL;

	for (int i = 0; i < s->nderp; i++)
		if (json_is_integer(id) && json_integer_value(id) == s->derp[i].id)
			r = &s->derp[i];
	if (!r || !json_is_boolean(up)) {
		fail(c, 400, "want {\"region\": a region id, \"up\": true or false}");
		return;
	}
	if (json_is_true(up) && r->down) {
		int ret = derp_region_open(s, r);

		if (ret < 0) {
			fail(c, 500, "cannot reopen the region's listeners");
			return;
		}
	} else if (!json_is_true(up) && !r->down) {
		derp_region_close(s, r);
	}
	log_info("derp region %d %s", r->id, r->down ? "down" : "up");
	reply(c, 200, derp_info(s));
}

/* "/nodes/<id><suffix>" with a positive decimal id. */
static bool path_node_id(const char *path, const char *suffix, long long *id)
{
	const char *p = path + strlen("/nodes/");
	char *end;
	long long v;

	*id = 0;
	if (strncmp(path, "/nodes/", strlen("/nodes/")) != 0 || *p < '1' || *p > '9')
		return false;
	errno = 0;
	v = strtoll(p, &end, 10);
	if (errno || strcmp(end, suffix) != 0)
		return false;
	*id = v;
	return true;
}

void admin_handle(struct tc_conn *c, const char *method, const char *path, const uint8_t *body,
		  size_t n)
{
	struct tc_server *s = c->srv;
	bool post = strcmp(method, "POST") == 0;
	json_error_t jerr;
	json_t *req = NULL, *empty = json_object();
	struct tc_node *node;
	long long id = 0;

	if (n) {
		req = json_loadb((const char *)body, n, 0, &jerr);
		if (!json_is_object(req) && !(json_is_array(req) && strcmp(path, "/policy") == 0)) {
			char text[200];

			snprintf(text, sizeof(text), "body is not a JSON object: %s", jerr.text);
			json_decref(req);
			json_decref(empty);
			fail(c, 400, text);
			return;
		}
	}
	if (strcmp(method, "GET") == 0 && strcmp(path, "/nodes") == 0) {
		json_t *list = json_array();

		for (node = s->nodes; node; node = node->next)
			json_array_append_new(list, node_info(s, node));
		reply(c, 200, list);
	} else if (strcmp(method, "GET") == 0 && strcmp(path, "/info") == 0) {
		char pub[80];

		reply(c, 200,
		      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "http", s->addr[TC_CONN_HTTP],
				"https", s->addr[TC_CONN_HTTPS], "admin", s->addr[TC_CONN_ADMIN],
				"api", s->addr[TC_CONN_API], "ca", s->ca_path, "public_key",
				keys_to_text("mkey", s->noise_pub, pub, sizeof(pub))));
	} else if (post && strcmp(path, "/keys") == 0) {
		create_key(c, req ? req : empty);
	} else if (post &&
		   (strcmp(path, "/nodes/expire") == 0 || path_node_id(path, "/expire", &id))) {
		if (id) {
			/* The id from the path; the body may say more. */
			if (!json_is_object(req)) {
				json_decref(req);
				req = json_object();
			}
			json_object_del(req, "node_key");
			json_object_set_new(req, "id", json_integer((json_int_t)id));
		}
		json_t *in = req ? json_object_get(req, "in") : NULL;

		if (in && (!json_is_integer(in) || json_integer_value(in) < -86400 ||
			   json_integer_value(in) > 86400 * 365)) {
			fail(c, 400, "in must be an integer number of seconds (-86400..31536000)");
		} else if ((node = node_arg(c, req))) {
			/* "in": the key expires that many seconds from now
			 * (default: it has expired, a second ago). */
			node->key_expiry = tc_now() + (in ? json_integer_value(in) : -1);
			node->api_hides_expiry =
				req && json_is_true(json_object_get(req, "hide_from_api"));
			s->dirty = true;
			store_save(s);
			log_info("node %lld (%s) key %s by admin%s", node->id, node->hostname,
				 node->key_expiry <= tc_now() ? "expired" : "set to expire",
				 node->api_hides_expiry ? " (the APIs say it does not expire)"
							: "");
			reply(c, 200, node_info(s, node));
		}
	} else if (post && strcmp(path, "/nodes/approve") == 0) {
		if ((node = node_arg(c, req))) {
			node->authorized = true;
			s->dirty = true;
			store_save(s);
			reply(c, 200, node_info(s, node));
		}
	} else if (post && strcmp(path, "/nodes/delete") == 0) {
		if ((node = node_arg(c, req))) {
			log_info("node %lld (%s) deleted by admin", node->id, node->hostname);
			control_node_remove(s, node);
			store_save(s);
			reply(c, 200, json_object());
		}
	} else if (post && strcmp(path, "/dns") == 0) {
		/* The DNSConfig every node gets from now on, as given ({}: the
		 * default again). Not kept across restarts. */
		json_decref(s->dns);
		s->dns = req && json_object_size(req) ? json_incref(req) : NULL;
		s->dirty = true;
		log_info("DNSConfig replaced by admin");
		reply(c, 200, json_object());
	} else if (post && strcmp(path, "/nodes/register") == 0) {
		register_external(c, req ? req : empty);
	} else if (post && strcmp(path, "/policy") == 0) {
		set_policy(c, req);
	} else if (strcmp(method, "GET") == 0 && strcmp(path, "/derp") == 0) {
		reply(c, 200, derp_info(s));
	} else if (post && strcmp(path, "/derp") == 0) {
		set_derp(c, req ? req : empty);
	} else if (post && strcmp(path, "/switches") == 0) {
		set_switches(c, req ? req : empty);
	} else if (api_admin(c, method, path, req ? req : empty)) {
		/* answered */
	} else {
		fail(c, 404, "no such admin route");
	}
	json_decref(req);
	json_decref(empty);
}
