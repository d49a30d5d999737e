/* The requests we send: RegisterRequest (login and logout), MapRequest
 * (stream and lite update) and their Hostinfo, with the field names
 * tailscaled uses. */
#include "mapjson_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mem.h"

/* Sets o[k] = v when v is not NULL; jansson refuses invalid UTF-8 (then
 * json_string() returns NULL), which is counted in *bad. */
static void set_str(json_t *o, const char *k, const char *v, int *bad)
{
	json_t *s;

	if (!v)
		return;
	s = json_string(v);
	if (!s || json_object_set_new(o, k, s) < 0)
		(*bad)++;
}

static json_t *key_json(const char *prefix, const uint8_t *key)
{
	char buf[32 + KEY_HEX_LEN + 2];

	return json_string(keys_to_text(prefix, key, buf, sizeof(buf)));
}

static int hostinfo_json(const struct mapjson_hostinfo *hi, json_t **out, const char **why)
{
	json_t *o = json_object();
	int bad = 0;

	*out = NULL;
	set_str(o, "IPNVersion", hi->ipn_version, &bad);
	set_str(o, "BackendLogID", hi->backend_log_id, &bad);
	set_str(o, "OS", hi->os, &bad);
	set_str(o, "OSVersion", hi->os_version, &bad);
	if (hi->container)
		json_object_set_new(o, "Container", json_true());
	set_str(o, "Hostname", hi->hostname, &bad);
	set_str(o, "App", hi->app, &bad);
	if (hi->n_request_tags) {
		json_t *tags = json_array();

		for (size_t i = 0; i < hi->n_request_tags; i++) {
			json_t *t = json_string(hi->request_tags[i]);

			if (!t || json_array_append_new(tags, t) < 0)
				bad++;
		}
		json_object_set_new(o, "RequestTags", tags);
	}
	if (hi->has_netinfo) {
		json_t *ni = json_object(), *lat = json_object();

		json_object_set_new(ni, "WorkingIPv6", json_boolean(hi->working_ipv6));
		json_object_set_new(ni, "WorkingUDP", json_boolean(hi->working_udp));
		json_object_set_new(ni, "PreferredDERP", json_integer(hi->preferred_derp));
		for (size_t i = 0; i < hi->n_derp_latency; i++) {
			char k[32];

			snprintf(k, sizeof(k), "%d-v4", hi->derp_latency_regions[i]);
			json_object_set_new(lat, k, json_real(hi->derp_latency_v4[i]));
		}
		if (json_object_size(lat))
			json_object_set_new(ni, "DERPLatency", lat);
		else
			json_decref(lat);
		json_object_set_new(o, "NetInfo", ni);
	}
	if (bad) {
		json_decref(o);
		*why = "a Hostinfo string is not valid UTF-8";
		return -EINVAL;
	}
	*out = o;
	return 0;
}

/* Serialises o (and frees it) straight into our own buffer: json_dumpb
 * writes no intermediate copy, so after the caller wipes this buffer no
 * stray copy of an auth key is left in freed heap by the serialiser. */
static char *dump(json_t *o)
{
	size_t n = json_dumpb(o, NULL, 0, JSON_COMPACT);
	char *buf;

	if (n == 0)
		abort(); /* an object always serialises to at least "{}" */
	buf = xmalloc(n + 1);
	if (json_dumpb(o, buf, n, JSON_COMPACT) != n)
		abort();
	buf[n] = '\0';
	json_decref(o);
	return buf;
}

int mapjson_build_register_request(const struct mapjson_register_request *req, char **out,
				   const char **why)
{
	static const uint8_t zero[KEY_LEN];
	char when[40];
	json_t *o, *hi = NULL, *auth = NULL, *ak;
	int ret;

	*out = NULL;
	if (!req->node_key || !req->nl_key || !req->hostinfo) {
		*why = "register request needs node key, NL key and Hostinfo";
		return -EINVAL;
	}
	ret = hostinfo_json(req->hostinfo, &hi, why);
	if (ret < 0)
		return ret;
	o = json_object();
	json_object_set_new(o, "Version", json_integer(req->version));
	json_object_set_new(o, "NodeKey", key_json("nodekey", req->node_key));
	json_object_set_new(o, "OldNodeKey",
			    key_json("nodekey", req->old_node_key ? req->old_node_key : zero));
	json_object_set_new(o, "NLKey", key_json("nlpub", req->nl_key));
	if (req->auth_key) {
		ak = json_string(req->auth_key);
		if (!ak) {
			json_decref(hi);
			json_decref(o);
			*why = "auth key is not valid UTF-8";
			return -EINVAL;
		}
		auth = json_object();
		json_object_set_new(auth, "AuthKey", ak);
		json_object_set(o, "Auth", auth);
	}
	mapjson__format_time(req->expiry ? req->expiry : GO_ZERO_TIME, when, sizeof(when));
	json_object_set_new(o, "Expiry", json_string(when));
	json_object_set_new(o, "Followup", json_string(req->followup ? req->followup : ""));
	json_object_set_new(o, "Hostinfo", hi);
	if (req->ephemeral)
		json_object_set_new(o, "Ephemeral", json_true());
	json_object_set_new(o, "NodeKeySignature", json_null());
	if (auth) {
		/* Wipe jansson's copy of the auth key before it is freed. */
		char *secret = (char *)json_string_value(json_object_get(auth, "AuthKey"));

		*out = dump(o);
		sodium_memzero(secret, strlen(secret));
		json_decref(auth);
	} else {
		*out = dump(o);
	}
	return 0;
}

int mapjson_build_map_request(const struct mapjson_map_request *req, char **out, const char **why)
{
	json_t *o, *hi = NULL;
	int ret;

	*out = NULL;
	if (!req->node_key || !req->hostinfo) {
		*why = "map request needs the node key and Hostinfo";
		return -EINVAL;
	}
	if (req->n_endpoints > NETMAP_MAX_ENDPOINTS) {
		*why = "too many endpoints for a map request";
		return -EINVAL;
	}
	ret = hostinfo_json(req->hostinfo, &hi, why);
	if (ret < 0)
		return ret;
	o = json_object();
	json_object_set_new(o, "Version", json_integer(req->version));
	if (req->compress)
		json_object_set_new(o, "Compress", json_string("zstd"));
	json_object_set_new(o, "KeepAlive", json_boolean(req->keep_alive));
	json_object_set_new(o, "NodeKey", key_json("nodekey", req->node_key));
	if (req->disco_key)
		json_object_set_new(o, "DiscoKey", key_json("discokey", req->disco_key));
	json_object_set_new(o, "Stream", json_boolean(req->stream));
	json_object_set_new(o, "Hostinfo", hi);
	if (req->n_endpoints) {
		json_t *eps = json_array(), *types = json_array();

		for (size_t i = 0; i < req->n_endpoints; i++) {
			char buf[64];

			json_array_append_new(eps, json_string(mapjson_format_endpoint(
							   &req->endpoints[i], buf, sizeof(buf))));
			json_array_append_new(
				types,
				json_integer(req->endpoint_types ? req->endpoint_types[i] : 0));
		}
		json_object_set_new(o, "Endpoints", eps);
		json_object_set_new(o, "EndpointTypes", types);
	}
	if (req->omit_peers)
		json_object_set_new(o, "OmitPeers", json_true());
	*out = dump(o);
	return 0;
}
