/* The control plane proper: /machine/register and /machine/map, the node
 * table, the map streams and the deltas pushed to them, and the packet
 * filter built from the policy.
 *
 * Deltas: every map stream remembers what it last sent for each peer, split
 * into the fields PeersChangedPatch can carry (endpoints, home DERP, disco
 * key, online) and the rest. After any change (control_push, run once per
 * loop turn) each stream compares the current picture with that memory and
 * sends one MapResponse holding only the differences: PeersChanged for a new
 * peer or one whose other fields changed (whole node, as upstream replaces
 * by ID), PeersChangedPatch when only patchable fields did, PeersRemoved for
 * peers gone, Node and PacketFilter when they changed. */
#include "tc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <zstd.h>

#include "keys.h"
#include "log.h"
#include "mem.h"
#include "validate.h"

static const char zero_time[] = "0001-01-01T00:00:00Z";

static void cache_clear(struct tc_node *n);

/* ---- nodes ---- */

struct tc_node *control_find_key(struct tc_server *s, const uint8_t key[static 32])
{
	for (struct tc_node *n = s->nodes; n; n = n->next)
		if (sodium_memcmp(n->node_key, key, 32) == 0)
			return n;
	return NULL;
}

struct tc_node *control_find_id(struct tc_server *s, long long id)
{
	for (struct tc_node *n = s->nodes; n; n = n->next)
		if (n->id == id)
			return n;
	return NULL;
}

void control_node_free(struct tc_node *n)
{
	if (!n)
		return;
	cache_clear(n);
	json_decref(n->tags);
	json_decref(n->endpoints);
	json_decref(n->hostinfo);
	json_decref(n->addresses);
	json_decref(n->routes);
	free(n);
}

void control_node_insert(struct tc_server *s, struct tc_node *n)
{
	struct tc_node **pp = &s->nodes;

	while (*pp && (*pp)->id < n->id)
		pp = &(*pp)->next;
	n->next = *pp;
	*pp = n;
}

void control_node_remove(struct tc_server *s, struct tc_node *n)
{
	for (struct tc_node **pp = &s->nodes; *pp; pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	}
	control_node_free(n);
	s->dirty = true;
}

json_t *control_addresses(const struct tc_node *n)
{
	char v4[24], v6[64];
	uint32_t a = (100u << 24 | 64u << 16) + n->index;

	if (n->addresses)
		return json_incref(n->addresses);
	/* As upstream's tsaddr.Tailscale4To6: the IPv4 address in the low 32
	 * bits of fd7a:115c:a1e0:ab12:4843:cd96::/96. */
	snprintf(v4, sizeof(v4), "%u.%u.%u.%u/32", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff,
		 a & 0xff);
	snprintf(v6, sizeof(v6), "fd7a:115c:a1e0:ab12:4843:cd96:%x:%x/128", a >> 16, a & 0xffff);
	return json_pack("[s, s]", v4, v6);
}

const char *control_stable_id(const struct tc_node *n, char *out, size_t size)
{
	snprintf(out, size, "TESTCTRL%08llx", n->id);
	return out;
}

static bool node_visible(const struct tc_node *n)
{
	return n->authorized && !n->logged_out;
}

/* The node as a recipient of capability version `version` sees it. */
static json_t *node_json(struct tc_server *s, const struct tc_node *n, int version)
{
	char key[80], when[40], *name;
	json_t *o, *addrs = control_addresses(n);

	name = xasprintf("%s.%s.", n->hostname, s->domain);
	o = json_pack("{s:I, s:s, s:s, s:I}", "ID", (json_int_t)n->id, "StableID", "", "Name", name,
		      "User", (json_int_t)1);
	free(name);
	json_object_set_new(o, "StableID", json_string(control_stable_id(n, key, sizeof(key))));
	if (json_array_size(n->tags))
		json_object_set(o, "Tags", n->tags);
	json_object_set_new(o, "Key",
			    json_string(keys_to_text("nodekey", n->node_key, key, sizeof(key))));
	if (n->key_expiry) {
		tc_time_format(when, n->key_expiry);
		json_object_set_new(o, "KeyExpiry", json_string(when));
		if (n->key_expiry <= tc_now())
			json_object_set_new(o, "Expired", json_true());
	}
	if (n->has_machine)
		json_object_set_new(
			o, "Machine",
			json_string(keys_to_text("mkey", n->machine, key, sizeof(key))));
	if (n->has_disco)
		json_object_set_new(
			o, "DiscoKey",
			json_string(keys_to_text("discokey", n->disco, key, sizeof(key))));
	json_object_set(o, "Addresses", addrs);
	if (json_array_size(n->routes)) {
		/* A subnet router: its routes are allowed and primary. */
		json_t *allowed = json_deep_copy(addrs);

		json_array_extend(allowed, n->routes);
		json_object_set_new(o, "AllowedIPs", allowed);
		json_object_set(o, "PrimaryRoutes", n->routes);
	} else if (version < TC_CAP_ALLOWEDIPS) {
		/* From capability 112 on, absent AllowedIPs means Addresses. */
		json_object_set(o, "AllowedIPs", addrs);
	}
	if (json_array_size(n->endpoints))
		json_object_set(o, "Endpoints", n->endpoints);
	if (n->home_derp > 0) {
		if (version >= TC_CAP_HOMEDERP) {
			json_object_set_new(o, "HomeDERP", json_integer(n->home_derp));
		} else {
			snprintf(key, sizeof(key), "127.3.3.40:%d", n->home_derp);
			json_object_set_new(o, "DERP", json_string(key));
		}
	}
	if (n->hostinfo)
		json_object_set(o, "Hostinfo", n->hostinfo);
	else
		json_object_set_new(o, "Hostinfo", json_pack("{s:s}", "Hostname", n->hostname));
	tc_time_format(when, n->created);
	json_object_set_new(o, "Created", json_string(when));
	if (n->cap)
		json_object_set_new(o, "Cap", json_integer(n->cap));
	json_object_set_new(o, "Online", json_boolean(n->online > 0 || n->external));
	json_object_set_new(o, "MachineAuthorized", json_boolean(n->authorized));
	if (n->wg_only)
		json_object_set_new(o, "IsWireGuardOnly", json_true());
	json_decref(addrs);
	return o;
}

/* ---- policy and packet filter ---- */

/* Does selector sel ("*", "tag:x", a hostname, an address) pick node n? */
static bool selects(const char *sel, const struct tc_node *n)
{
	json_t *v, *addrs;
	size_t i;
	bool hit = false;

	if (strcmp(sel, "*") == 0)
		return true;
	if (strncmp(sel, "tag:", 4) == 0) {
		json_array_foreach(n->tags, i, v)
		{
			if (json_is_string(v) && strcmp(json_string_value(v), sel) == 0)
				return true;
		}
		return false;
	}
	if (strcmp(sel, n->hostname) == 0)
		return true;
	addrs = control_addresses(n);
	json_array_foreach(addrs, i, v)
	{
		const char *a = json_string_value(v);
		size_t len = strcspn(a, "/");

		if (strcmp(sel, a) == 0 || (strlen(sel) == len && strncmp(sel, a, len) == 0))
			hit = true;
	}
	json_decref(addrs);
	return hit;
}

static int parse_ports(const char *p, unsigned *first, unsigned *last)
{
	char *end;
	unsigned long a, b;

	if (strcmp(p, "*") == 0) {
		*first = 0;
		*last = 65535;
		return 0;
	}
	errno = 0;
	a = strtoul(p, &end, 10);
	if (errno || end == p || a > 65535)
		return -EINVAL;
	b = a;
	if (*end == '-') {
		const char *q = end + 1;

		b = strtoul(q, &end, 10);
		if (errno || end == q || b > 65535 || b < a)
			return -EINVAL;
	}
	if (*end)
		return -EINVAL;
	*first = (unsigned)a;
	*last = (unsigned)b;
	return 0;
}

/* Splits "sel:ports" at the last colon. */
static int split_dst(const char *d, char *sel, size_t n, unsigned *first, unsigned *last)
{
	const char *colon = strrchr(d, ':');

	if (!colon || (size_t)(colon - d) >= n || colon == d)
		return -EINVAL;
	memcpy(sel, d, (size_t)(colon - d));
	sel[colon - d] = '\0';
	return parse_ports(colon + 1, first, last);
}

int control_policy_load(struct tc_server *s, json_t *policy, const char **why)
{
	json_t *acls = json_is_object(policy) ? json_object_get(policy, "acls") : policy;
	json_t *acl, *v;
	size_t i, j;

	if (!json_is_array(acls)) {
		*why = "policy is neither a list nor {\"acls\": [...]}";
		return -EINVAL;
	}
	json_array_foreach(acls, i, acl)
	{
		json_t *src = json_object_get(acl, "src"), *dst = json_object_get(acl, "dst");

		if (!json_is_array(src) || !json_is_array(dst)) {
			*why = "every rule needs a \"src\" list and a \"dst\" list";
			return -EINVAL;
		}
		json_array_foreach(src, j, v)
		{
			if (!json_is_string(v)) {
				*why = "a src entry is not a string";
				return -EINVAL;
			}
		}
		json_array_foreach(dst, j, v)
		{
			char sel[128];
			unsigned a, b;

			if (!json_is_string(v) ||
			    split_dst(json_string_value(v), sel, sizeof(sel), &a, &b) < 0) {
				*why = "a dst entry is not \"<selector>:<port|first-last|*>\"";
				return -EINVAL;
			}
		}
	}
	json_decref(s->policy);
	s->policy = json_incref(acls);
	s->dirty = true;
	return 0;
}

static json_t *port_range(unsigned first, unsigned last)
{
	return json_pack("{s:i, s:i}", "First", first, "Last", last);
}

/* The PacketFilter for recipient me: rules whose destination includes me,
 * with the destinations narrowed to my addresses (or "*"). */
static json_t *packet_filter(struct tc_server *s, const struct tc_node *me)
{
	json_t *rules = json_array(), *acl, *v;
	size_t i, j;

	if (!s->policy) {
		json_array_append_new(rules, json_pack("{s:[s], s:[{s:s, s:o}]}", "SrcIPs", "*",
						       "DstPorts", "IP", "*", "Ports",
						       port_range(0, 65535)));
		return rules;
	}
	json_array_foreach(s->policy, i, acl)
	{
		json_t *srcs = json_array(), *dsts = json_array(), *mine = control_addresses(me);
		bool any_src = false;

		json_array_foreach(json_object_get(acl, "src"), j, v)
		{
			const char *sel = json_string_value(v);

			if (strcmp(sel, "*") == 0) {
				any_src = true;
				continue;
			}
			for (struct tc_node *n = s->nodes; n; n = n->next) {
				json_t *a, *addrs;
				size_t k;

				if (!node_visible(n) || !selects(sel, n))
					continue;
				addrs = control_addresses(n);
				json_array_foreach(addrs, k, a) json_array_append(srcs, a);
				json_decref(addrs);
			}
		}
		if (any_src) {
			json_array_clear(srcs);
			json_array_append_new(srcs, json_string("*"));
		}
		json_array_foreach(json_object_get(acl, "dst"), j, v)
		{
			char sel[128];
			unsigned a, b;
			json_t *ip;
			size_t k;

			if (split_dst(json_string_value(v), sel, sizeof(sel), &a, &b) < 0)
				continue;
			if (strcmp(sel, "*") == 0) {
				json_array_append_new(dsts, json_pack("{s:s, s:o}", "IP", "*",
								      "Ports", port_range(a, b)));
			} else if (selects(sel, me)) {
				json_array_foreach(mine, k, ip) json_array_append_new(
					dsts, json_pack("{s:O, s:o}", "IP", ip, "Ports",
							port_range(a, b)));
			}
		}
		if (json_array_size(srcs) && json_array_size(dsts))
			json_array_append_new(
				rules, json_pack("{s:o, s:o}", "SrcIPs", srcs, "DstPorts", dsts));
		else {
			json_decref(srcs);
			json_decref(dsts);
		}
		json_decref(mine);
	}
	return rules;
}

/* ---- map messages ---- */

static json_t *user_profiles(void)
{
	return json_pack("[{s:i, s:s, s:s, s:s}]", "ID", 1, "LoginName",
			 "user-1@fake-control.example.net", "DisplayName", "User 1",
			 "ProfilePicURL", "");
}

static void add_control_time(json_t *o)
{
	char when[40];

	tc_time_format(when, tc_now());
	json_object_set_new(o, "ControlTime", json_string(when));
}

/* Encodes one message of a map response body: u32 little-endian length,
 * then the JSON, zstd-compressed when asked for. */
static void map_frame(struct tc_buf *out, const char *json, bool zstd)
{
	size_t n = strlen(json), clen;
	uint8_t hdr[4];
	void *z = NULL;
	const void *body = json;

	if (zstd) {
		z = xmalloc(ZSTD_compressBound(n));
		clen = ZSTD_compress(z, ZSTD_compressBound(n), json, n, 1);
		if (ZSTD_isError(clen))
			abort(); /* only for a too small buffer, which compressBound rules out */
		n = clen;
		body = z;
	}
	hdr[0] = (uint8_t)n;
	hdr[1] = (uint8_t)(n >> 8);
	hdr[2] = (uint8_t)(n >> 16);
	hdr[3] = (uint8_t)(n >> 24);
	tc_buf_add(out, hdr, 4);
	tc_buf_add(out, body, n);
	free(z);
}

static char *dump(json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static const char *const patch_fields[] = {"Endpoints", "HomeDERP", "DERP", "DiscoKey", "Online"};

/* Moves the patchable fields of a peer object into a new object. */
static json_t *split_patch(json_t *peer)
{
	json_t *patch = json_object();

	for (size_t i = 0; i < sizeof(patch_fields) / sizeof(patch_fields[0]); i++) {
		json_t *v = json_object_get(peer, patch_fields[i]);

		if (v) {
			json_object_set(patch, patch_fields[i], v);
			json_object_del(peer, patch_fields[i]);
		}
	}
	return patch;
}

/* The PeerChange for the difference old -> new of two patch objects, or
 * NULL when nothing changed. */
static json_t *peer_change(long long id, json_t *old, json_t *cur)
{
	json_t *pc = json_pack("{s:I}", "NodeID", (json_int_t)id);
	bool any = false;

	for (size_t i = 0; i < sizeof(patch_fields) / sizeof(patch_fields[0]); i++) {
		const char *f = patch_fields[i];
		json_t *a = json_object_get(old, f), *b = json_object_get(cur, f);

		if (json_equal(a, b) || (!a && !b))
			continue;
		any = true;
		if (strcmp(f, "Endpoints") == 0) {
			json_object_set_new(pc, "Endpoints", b ? json_incref(b) : json_array());
		} else if (strcmp(f, "HomeDERP") == 0 || strcmp(f, "DERP") == 0) {
			int region = 0;

			if (json_is_integer(b))
				region = (int)json_integer_value(b);
			else if (json_is_string(b))
				region = (int)strtol(strrchr(json_string_value(b), ':') + 1, NULL,
						     10);
			json_object_set_new(pc, "DERPRegion", json_integer(region));
		} else if (b) {
			json_object_set(pc, f, b);
		}
	}
	if (!any) {
		json_decref(pc);
		return NULL;
	}
	return pc;
}

static void map_send(struct tc_server *s, struct tc_map *m, json_t *msg)
{
	char *json = dump(msg);
	struct tc_buf frame = {0};

	map_frame(&frame, json, m->zstd);
	if (s->sw.truncate) {
		s->sw.truncate = false;
		log_info("switch truncate: node %lld gets half a message, then the end",
			 m->node_id);
		net_h2_append(m->req, frame.p, 4 + (frame.len - 4) / 2, true);
	} else if (s->sw.oversize) {
		static const uint8_t big[4] = {0x00, 0x00, 0x00, 0x80}; /* 2 GiB */

		s->sw.oversize = false;
		log_info("switch oversize: node %lld gets a 2 GiB length", m->node_id);
		net_h2_append(m->req, big, 4, false);
		net_h2_append(m->req, frame.p + 4, frame.len - 4, false);
	} else {
		net_h2_append(m->req, frame.p, frame.len, false);
	}
	m->last_send_ms = now_ms();
	tc_buf_free(&frame);
	free(json);
}

/* The DNSConfig every node gets (a new reference). */
static json_t *dns_config(struct tc_server *s)
{
	if (s->dns)
		return json_incref(s->dns);
	return json_pack("{s:b, s:[s]}", "Proxied", 1, "Domains", s->domain);
}

/* Builds the full MapResponse for node me, and, when m is set, records
 * what it sent as that stream's baseline. */
static json_t *full_map(struct tc_server *s, const struct tc_node *me, int version,
			struct tc_map *m, bool omit_peers)
{
	json_t *msg = json_object(), *peers = json_array(), *self, *filter, *dns;

	self = node_json(s, me, version);
	filter = packet_filter(s, me);
	if (node_visible(me) && !omit_peers) {
		for (struct tc_node *n = s->nodes; n; n = n->next) {
			json_t *p;

			if (n == me || !node_visible(n))
				continue;
			p = node_json(s, n, version);
			json_array_append(peers, p);
			if (m) {
				json_t *rest = json_deep_copy(p), *patch = split_patch(rest);
				char id[24], *text = dump(rest);

				snprintf(id, sizeof(id), "%lld", n->id);
				json_object_set_new(
					m->sent, id,
					json_pack("{s:s, s:o}", "rest", text, "patch", patch));
				free(text);
				json_decref(rest);
			}
			json_decref(p);
		}
	}
	dns = dns_config(s);
	if (m) {
		m->last_self = dump(self);
		m->last_filter = dump(filter);
		m->last_dns = dump(dns);
	}
	json_object_set_new(msg, "DNSConfig", dns);
	json_object_set_new(msg, "Node", self);
	json_object_set_new(msg, "DERPMap", derp_map(s));
	if (json_array_size(peers))
		json_object_set(msg, "Peers", peers);
	json_decref(peers);
	json_object_set_new(msg, "Domain", json_string(s->domain));
	json_object_set_new(msg, "CollectServices", json_false());
	json_object_set_new(msg, "PacketFilter", filter);
	json_object_set_new(msg, "UserProfiles", user_profiles());
	add_control_time(msg);
	return msg;
}

/* A node's JSON depends on the recipient's capability only through the
 * HomeDERP (111) and AllowedIPs (112) thresholds: three forms. */
static int version_class(int version)
{
	if (version < TC_CAP_HOMEDERP)
		return 0;
	return version < TC_CAP_ALLOWEDIPS ? 1 : 2;
}

/* The peer form of n for a recipient at version, computed once per push
 * (cleared by cache_clear at the start and end of control_push, so it never
 * outlives a change). Borrowed from n. */
static struct tc_node_cache *peer_cached(struct tc_server *s, struct tc_node *n, int version)
{
	struct tc_node_cache *c = &n->cache[version_class(version)];
	json_t *rest;

	if (!c->full) {
		c->full = node_json(s, n, version);
		rest = json_deep_copy(c->full);
		c->patch = split_patch(rest);
		c->rest = dump(rest);
		json_decref(rest);
	}
	return c;
}

static void cache_clear(struct tc_node *n)
{
	for (int i = 0; i < 3; i++) {
		json_decref(n->cache[i].full);
		json_decref(n->cache[i].patch);
		free(n->cache[i].rest);
		memset(&n->cache[i], 0, sizeof(n->cache[i]));
	}
}

/* Sends stream m what changed since its last message; nothing if nothing. */
static void map_delta(struct tc_server *s, struct tc_map *m, const struct tc_node *me)
{
	json_t *msg = json_object(), *changed = json_array(), *removed = json_array();
	json_t *patches = json_array(), *self, *filter, *dns, *seen = json_object(), *v;
	const char *id;
	void *tmp;
	char *text;

	self = node_json(s, me, m->version);
	text = dump(self);
	if (strcmp(text, m->last_self) != 0) {
		json_object_set(msg, "Node", self);
		free(m->last_self);
		m->last_self = text;
	} else {
		free(text);
	}
	filter = packet_filter(s, me);
	text = dump(filter);
	if (strcmp(text, m->last_filter) != 0) {
		json_object_set(msg, "PacketFilter", filter);
		free(m->last_filter);
		m->last_filter = text;
	} else {
		free(text);
	}
	dns = dns_config(s);
	text = dump(dns);
	if (strcmp(text, m->last_dns) != 0) {
		json_object_set(msg, "DNSConfig", dns);
		free(m->last_dns);
		m->last_dns = text;
	} else {
		free(text);
	}
	json_decref(dns);
	for (struct tc_node *n = s->nodes; node_visible(me) && n; n = n->next) {
		struct tc_node_cache *pc;
		json_t *old;
		char key[24];

		if (n == me || !node_visible(n))
			continue;
		snprintf(key, sizeof(key), "%lld", n->id);
		json_object_set_new(seen, key, json_true());
		pc = peer_cached(s, n, m->version);
		old = json_object_get(m->sent, key);
		if (old && strcmp(json_string_value(json_object_get(old, "rest")), pc->rest) == 0 &&
		    json_equal(json_object_get(old, "patch"), pc->patch))
			continue;
		if (!old ||
		    strcmp(json_string_value(json_object_get(old, "rest")), pc->rest) != 0) {
			json_array_append(changed, pc->full);
		} else if (m->version < TC_CAP_PATCH) {
			/* Before capability 33 there is no PeersChangedPatch. */
			json_array_append(changed, pc->full);
		} else {
			json_array_append_new(
				patches,
				peer_change(n->id, json_object_get(old, "patch"), pc->patch));
		}
		json_object_set_new(m->sent, key,
				    json_pack("{s:s, s:O}", "rest", pc->rest, "patch", pc->patch));
	}
	json_object_foreach_safe(m->sent, tmp, id, v)
	{
		if (!json_object_get(seen, id)) {
			json_array_append_new(removed, json_integer(strtoll(id, NULL, 10)));
			json_object_del(m->sent, id);
		}
	}
	if (json_array_size(changed))
		json_object_set(msg, "PeersChanged", changed);
	if (json_array_size(removed))
		json_object_set(msg, "PeersRemoved", removed);
	if (json_array_size(patches))
		json_object_set(msg, "PeersChangedPatch", patches);
	if (json_object_size(msg)) {
		add_control_time(msg);
		map_send(s, m, msg);
	}
	json_decref(self);
	json_decref(filter);
	json_decref(seen);
	json_decref(changed);
	json_decref(removed);
	json_decref(patches);
	json_decref(msg);
}

static void map_free(struct tc_map *m)
{
	json_decref(m->sent);
	free(m->last_self);
	free(m->last_filter);
	free(m->last_dns);
	free(m);
}

/* Ends a map stream from our side (node gone or replaced). */
static void map_end(struct tc_server *s, struct tc_map *m)
{
	struct tc_node *n = control_find_id(s, m->node_id);

	if (m->req) {
		m->req->map = NULL;
		net_h2_append(m->req, NULL, 0, true);
		m->req = NULL;
	}
	if (n && n->online > 0) {
		n->online--;
		s->dirty = true;
	}
}

void control_push(struct tc_server *s)
{
	s->dirty = false;
	for (struct tc_node *n = s->nodes; n; n = n->next)
		cache_clear(n);
	for (struct tc_map **pp = &s->maps; *pp;) {
		struct tc_map *m = *pp;
		struct tc_node *me = m->req ? control_find_id(s, m->node_id) : NULL;

		if (!me || me->logged_out) {
			if (m->req)
				map_end(s, m);
			*pp = m->next;
			map_free(m);
			continue;
		}
		map_delta(s, m, me);
		pp = &m->next;
	}
	for (struct tc_node *n = s->nodes; n; n = n->next)
		cache_clear(n);
	/* Ending streams may have taken nodes offline: one more round. */
	if (s->dirty)
		control_push(s);
}

void control_destroy(struct tc_server *s)
{
	while (s->maps) {
		struct tc_map *m = s->maps;

		s->maps = m->next;
		map_free(m);
	}
}

void control_keepalive(struct tc_server *s, unsigned long long now)
{
	for (struct tc_map *m = s->maps; m; m = m->next) {
		if (!m->req || now - m->last_send_ms < (unsigned long long)s->keepalive_ms)
			continue;
		json_t *ka = json_pack("{s:b}", "KeepAlive", 1);

		map_send(s, m, ka);
		json_decref(ka);
	}
}

void control_h2_closed(struct tc_h2req *r)
{
	struct tc_map *m = r->map;
	struct tc_server *s = r->conn->srv;
	struct tc_node *n;

	if (!m)
		return;
	r->map = NULL;
	m->req = NULL;
	n = control_find_id(s, m->node_id);
	if (n && n->online > 0) {
		n->online--;
		if (n->online == 0)
			log_info("node %lld (%s) offline", n->id, n->hostname);
	}
	s->dirty = true;
}

/* ---- requests ---- */

static void reply_text(struct tc_h2req *r, int status, const char *text)
{
	net_h2_respond(r, status, "text/plain; charset=utf-8", text, strlen(text), true);
}

static void reply_json(struct tc_h2req *r, json_t *o)
{
	char *text = json_dumps(o, JSON_COMPACT);

	net_h2_respond(r, 200, "application/json", text, strlen(text), true);
	free(text);
}

/* Parses an RFC 3339 time (seconds precision); 0 for Go's zero time
 * (year 1). tailscaled logs out with Unix 123, 1970-01-01T00:02:03Z. */
static int parse_time(const char *t, long long *out)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec;

	*out = 0;
	if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
		return -EINVAL;
	if (y < 1970)
		return 0;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*out = (long long)timegm(&tm);
	return 0;
}

static json_t *register_response(bool authorized, bool expired, const char *auth_url,
				 const char *error)
{
	return json_pack("{s:{s:i, s:s, s:s, s:[i], s:s}, s:{s:i, s:s, s:s, s:s, s:s}, s:b, s:b, "
			 "s:s, s:n, s:s}",
			 "User", "ID", 1, "DisplayName", "User 1", "ProfilePicURL", "", "Logins", 1,
			 "Created", zero_time, "Login", "ID", 1, "Provider", "testcontrol",
			 "LoginName", "user-1@fake-control.example.net", "DisplayName", "User 1",
			 "ProfilePicURL", "", "NodeKeyExpired", expired, "MachineAuthorized",
			 authorized, "AuthURL", auth_url, "NodeKeySignature", "Error", error);
}

static void register_error(struct tc_h2req *r, const char *error)
{
	json_t *o = json_pack("{s:s}", "Error", error);

	log_info("register refused: %s", error);
	reply_json(r, o);
	json_decref(o);
}

/* Hostinfo.RequestTags checked as upstream's Hostinfo.CheckRequestTags:
 * NULL when absent or all valid tags, else a register error naming the
 * first bad one (written into buf). */
static const char *request_tags_error(json_t *hostinfo, char *buf, size_t len)
{
	json_t *rt = json_is_object(hostinfo) ? json_object_get(hostinfo, "RequestTags") : NULL;
	const char *why = NULL;
	json_t *v;
	size_t i;

	if (!rt || json_is_null(rt))
		return NULL;
	if (!json_is_array(rt))
		return "RequestTags is not a list";
	json_array_foreach(rt, i, v)
	{
		if (!json_is_string(v) || !valid_tag(json_string_value(v), &why)) {
			snprintf(buf, len, "tag(\"%.80s\"): %s",
				 json_is_string(v) ? json_string_value(v) : "?",
				 why ? why : "not a string");
			return buf;
		}
	}
	return NULL;
}

static struct tc_key *find_auth_key(struct tc_server *s, const char *text)
{
	size_t n = strlen(text);

	for (struct tc_key *k = s->keys; k; k = k->next)
		if (strlen(k->key) == n && sodium_memcmp(k->key, text, n) == 0)
			return k;
	return NULL;
}

static void hostname_from(struct tc_node *n, json_t *hostinfo)
{
	const char *h = json_string_value(json_object_get(hostinfo, "Hostname"));
	size_t j = 0;

	/* A DNS label: lower case, [a-z0-9-]. */
	for (size_t i = 0; h && h[i] && j < sizeof(n->hostname) - 1; i++) {
		char ch = h[i];

		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')
			n->hostname[j++] = ch;
	}
	n->hostname[j] = '\0';
	if (!j)
		snprintf(n->hostname, sizeof(n->hostname), "node-%lld", n->id);
}

static void do_register(struct tc_conn *c, struct tc_h2req *r, json_t *req)
{
	struct tc_server *s = c->srv;
	const char *nk_text = json_string_value(json_object_get(req, "NodeKey"));
	const char *old_text = json_string_value(json_object_get(req, "OldNodeKey"));
	const char *exp_text = json_string_value(json_object_get(req, "Expiry"));
	const char *auth =
		json_string_value(json_object_get(json_object_get(req, "Auth"), "AuthKey"));
	json_t *hostinfo = json_object_get(req, "Hostinfo"), *resp;
	uint8_t nk[32], old[32] = {0}, zero[32] = {0};
	struct tc_node *n, *byold = NULL;
	struct tc_key *k = NULL;
	long long expiry = 0;

	if (!nk_text || keys_from_text("nodekey", nk_text, nk) < 0 ||
	    sodium_is_zero(nk, sizeof(nk))) {
		reply_text(r, 400, "RegisterRequest: missing or invalid NodeKey\n");
		return;
	}
	if (old_text && keys_from_text("nodekey", old_text, old) < 0) {
		reply_text(r, 400, "RegisterRequest: invalid OldNodeKey\n");
		return;
	}
	if (exp_text && parse_time(exp_text, &expiry) < 0) {
		reply_text(r, 400, "RegisterRequest: invalid Expiry\n");
		return;
	}
	n = control_find_key(s, nk);
	if (n && n->has_machine && sodium_memcmp(n->machine, c->noise.peer, 32) != 0) {
		reply_text(r, 400, "node doesn't match machine key\n");
		return;
	}
	/* Expiry in the past with the current key: logout. */
	if (expiry && expiry <= tc_now()) {
		if (n) {
			log_info("node %lld (%s) logged out%s", n->id, n->hostname,
				 n->ephemeral ? ", ephemeral: removed" : "");
			if (n->ephemeral) {
				control_node_remove(s, n);
			} else {
				n->logged_out = true;
				s->dirty = true;
			}
			store_save(s);
		}
		resp = register_response(false, true, "", "");
		reply_json(r, resp);
		json_decref(resp);
		return;
	}
	if (!n && sodium_memcmp(old, zero, 32) != 0) {
		byold = control_find_key(s, old);
		if (byold && byold->has_machine &&
		    sodium_memcmp(byold->machine, c->noise.peer, 32) != 0)
			byold = NULL;
	}
	/* Rotation of a valid key (as upstream testcontrol, without an auth
	 * key): the node keeps its identity and addresses. With an auth key
	 * it is a new login of the node (below): a new expiry too. */
	if (byold && (!auth || !auth[0]) && !byold->logged_out &&
	    !(byold->key_expiry && byold->key_expiry <= tc_now())) {
		log_info("node %lld (%s) rotated its node key", byold->id, byold->hostname);
		memcpy(byold->node_key, nk, 32);
		n = byold;
		byold = NULL;
		store_save(s);
	}
	/* A known, valid node key needs no auth key (tailscaled re-registers
	 * on every start). */
	if (n && !n->logged_out && !(n->key_expiry && n->key_expiry <= tc_now())) {
		if (json_is_object(hostinfo)) {
			json_decref(n->hostinfo);
			n->hostinfo = json_incref(hostinfo);
		}
		resp = register_response(n->authorized, false, "", "");
		reply_json(r, resp);
		json_decref(resp);
		s->dirty = true;
		return;
	}
	if (!auth || !auth[0]) {
		char url[160], rnd[20], hex[41];

		if (n && n->key_expiry && n->key_expiry <= tc_now()) {
			resp = register_response(false, true, "", "");
			reply_json(r, resp);
			json_decref(resp);
			return;
		}
		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(hex, sizeof(hex), (const uint8_t *)rnd, sizeof(rnd));
		snprintf(url, sizeof(url), "http://%s/auth/%s", s->addr[TC_CONN_HTTP], hex);
		resp = register_response(false, false, url, "");
		reply_json(r, resp);
		json_decref(resp);
		log_info("register without an auth key: answered an AuthURL");
		return;
	}
	k = find_auth_key(s, auth);
	if (!k) {
		register_error(r, "invalid authkey");
		return;
	}
	if (k->expires && k->expires <= tc_now()) {
		register_error(r, "authkey expired");
		return;
	}
	if (k->used && !k->reusable) {
		register_error(r, "authkey already used");
		return;
	}
	{
		char buf[256];
		const char *bad = request_tags_error(hostinfo, buf, sizeof(buf));

		if (bad) {
			register_error(r, bad);
			return;
		}
	}
	k->used = true;
	if (!n && byold) {
		/* Key rotation: the node keeps its identity and addresses. */
		n = byold;
		memcpy(n->node_key, nk, 32);
		log_info("node %lld (%s) rotated its node key with an auth key", n->id,
			 n->hostname);
	}
	if (!n) {
		n = xcalloc(1, sizeof(*n));
		n->id = s->next_id++;
		n->index = s->next_index++;
		memcpy(n->node_key, nk, 32);
		n->created = tc_now();
		n->endpoints = json_array();
		n->tags = json_array();
		control_node_insert(s, n);
	}
	memcpy(n->machine, c->noise.peer, 32);
	n->has_machine = true;
	n->logged_out = false;
	n->key_expiry = 0;
	n->api_hides_expiry = false;
	n->ephemeral = k->ephemeral || json_is_true(json_object_get(req, "Ephemeral"));
	n->authorized = k->preauthorized;
	n->user_id = k->user_id;
	n->last_seen = tc_now();
	n->cap = (int)json_integer_value(json_object_get(req, "Version"));
	/* Tags: the node's Hostinfo.RequestTags when it asks for any, else
	 * the auth key's own. testcontrol has no tagOwners: every key may
	 * grant every well-formed tag (the supervisor's --allowed-tags is
	 * what limits a pod). Set only by a registration with an auth key;
	 * a re-registration of a known node key keeps them, as upstream. */
	json_decref(n->tags);
	{
		json_t *rt =
			json_is_object(hostinfo) ? json_object_get(hostinfo, "RequestTags") : NULL;

		n->tags = json_array_size(rt) ? json_deep_copy(rt) : json_deep_copy(k->tags);
	}
	if (json_is_object(hostinfo)) {
		json_decref(n->hostinfo);
		n->hostinfo = json_incref(hostinfo);
	}
	hostname_from(n, hostinfo);
	log_info("node %lld (%s) registered%s%s", n->id, n->hostname,
		 n->ephemeral ? ", ephemeral" : "", n->authorized ? "" : ", awaiting approval");
	store_save(s);
	s->dirty = true;
	resp = register_response(n->authorized, false, "", "");
	reply_json(r, resp);
	json_decref(resp);
}

/* Takes Endpoints, DiscoKey, Hostinfo and its NetInfo.PreferredDERP from a
 * MapRequest. */
static void record_endpoints(struct tc_server *s, struct tc_node *n, json_t *req)
{
	json_t *eps = json_object_get(req, "Endpoints"), *hi = json_object_get(req, "Hostinfo");
	const char *dk = json_string_value(json_object_get(req, "DiscoKey"));
	json_t *v;
	size_t i;

	if (json_is_array(eps)) {
		json_t *clean = json_array();

		json_array_foreach(eps, i, v)
		{
			/* As upstream: no zones, no IPv6 link-local. */
			if (json_is_string(v) && !strchr(json_string_value(v), '%') &&
			    strncasecmp(json_string_value(v), "[fe80:", 6) != 0)
				json_array_append(clean, v);
		}
		json_decref(n->endpoints);
		n->endpoints = clean;
	}
	if (dk) {
		n->has_disco = keys_from_text("discokey", dk, n->disco) == 0 &&
			       !sodium_is_zero(n->disco, 32);
	}
	if (json_is_object(hi)) {
		json_t *pd = json_object_get(json_object_get(hi, "NetInfo"), "PreferredDERP");

		json_decref(n->hostinfo);
		n->hostinfo = json_incref(hi);
		if (json_is_integer(pd) && json_integer_value(pd) > 0)
			n->home_derp = (int)json_integer_value(pd);
	}
	s->dirty = true;
}

static void do_map(struct tc_conn *c, struct tc_h2req *r, json_t *req)
{
	struct tc_server *s = c->srv;
	const char *nk_text = json_string_value(json_object_get(req, "NodeKey"));
	bool stream = json_is_true(json_object_get(req, "Stream"));
	bool omit = json_is_true(json_object_get(req, "OmitPeers"));
	int version = (int)json_integer_value(json_object_get(req, "Version"));
	const char *compress = json_string_value(json_object_get(req, "Compress"));
	struct tc_node *n;
	struct tc_map *m;
	uint8_t nk[32];
	json_t *msg;

	if (!nk_text || keys_from_text("nodekey", nk_text, nk) < 0) {
		reply_text(r, 400, "MapRequest: missing or invalid NodeKey\n");
		return;
	}
	n = control_find_key(s, nk);
	if (!n || n->logged_out) {
		reply_text(r, 400, "node not found\n");
		return;
	}
	if (!n->has_machine || sodium_memcmp(n->machine, c->noise.peer, 32) != 0) {
		reply_text(r, 400, "node doesn't match machine key\n");
		return;
	}
	n->last_seen = tc_now();
	if (compress && compress[0] && strcmp(compress, "zstd") != 0) {
		reply_text(r, 400, "unsupported Compress\n");
		return;
	}
	if (version > 0)
		n->cap = version;
	/* From capability 68 on, a streaming request is read-only: its
	 * Endpoints, DiscoKey and Hostinfo are ignored, as production does.
	 * They arrive in the lite updates (Stream false, OmitPeers true). */
	if (!stream || version < TC_CAP_READONLY)
		record_endpoints(s, n, req);
	if (!stream) {
		struct tc_buf body = {0};
		char *json;

		msg = full_map(s, n, version, NULL, omit);
		json = dump(msg);
		map_frame(&body, json, compress && compress[0]);
		net_h2_respond(r, 200, "application/octet-stream", body.p, body.len, true);
		tc_buf_free(&body);
		free(json);
		json_decref(msg);
		if (omit) {
			n->lite_updates++;
			log_debug("lite update from node %lld", n->id);
		}
		store_save(s);
		return;
	}
	/* A new stream from the same node replaces the old one. */
	for (m = s->maps; m; m = m->next)
		if (m->node_id == n->id && m->req)
			map_end(s, m);
	m = xcalloc(1, sizeof(*m));
	m->req = r;
	m->node_id = n->id;
	m->version = version;
	m->zstd = compress && compress[0];
	m->sent = json_object();
	r->map = m;
	m->next = s->maps;
	s->maps = m;
	n->online++;
	s->dirty = true;
	net_h2_respond(r, 200, "application/octet-stream", NULL, 0, false);
	msg = full_map(s, n, version, m, false);
	map_send(s, m, msg);
	json_decref(msg);
	log_info("node %lld (%s) map stream open (capver %d%s)", n->id, n->hostname, version,
		 m->zstd ? ", zstd" : "");
}

void control_handle(struct tc_conn *c, struct tc_h2req *r)
{
	json_error_t jerr;
	json_t *req;

	if (c->srv->sw.hang) {
		log_info("switch hang: %s left unanswered", r->path);
		return;
	}
	if (strcmp(r->method, "POST") != 0 ||
	    (strcmp(r->path, "/machine/register") != 0 && strcmp(r->path, "/machine/map") != 0)) {
		reply_text(r, 404, "not found\n");
		return;
	}
	req = json_loadb((const char *)r->body.p, r->body.len, 0, &jerr);
	if (!json_is_object(req)) {
		char text[200];

		snprintf(text, sizeof(text), "invalid JSON: %s\n", jerr.text);
		reply_text(r, 400, text);
		json_decref(req);
		return;
	}
	if (strcmp(r->path, "/machine/register") == 0)
		do_register(c, r, req);
	else
		do_map(c, r, req);
	json_decref(req);
}
