/* Packet-filter rule parsing: tailcfg.FilterRule JSON into struct
 * filter_rules with upstream's MatchesFromFilterRules semantics (see
 * filter_rules.h); our own implementation of them. */
#include "filter_rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mem.h"
#include "packet.h"

/* Prefixes one address range can expand to: at most two per bit. */
enum { RANGE_MAX_PREFIXES = 2 * 128 };

static size_t addr_bytes(int family)
{
	return family == AF_INET ? 4 : 16;
}

static unsigned __int128 load_addr(int family, const uint8_t *a)
{
	unsigned __int128 v = 0;

	for (size_t i = 0; i < addr_bytes(family); i++)
		v = (v << 8) | a[i];
	return v;
}

static void store_addr(int family, unsigned __int128 v, uint8_t *a)
{
	memset(a, 0, 16);
	for (size_t i = addr_bytes(family); i-- > 0;) {
		a[i] = (uint8_t)v;
		v >>= 8;
	}
}

static unsigned int ctz128(unsigned __int128 v)
{
	uint64_t lo = (uint64_t)v, hi = (uint64_t)(v >> 64);

	if (lo)
		return (unsigned int)__builtin_ctzll(lo);
	if (hi)
		return 64 + (unsigned int)__builtin_ctzll(hi);
	return 128;
}

/* The smallest list of prefixes covering [lo, hi] (netipx IPRange.Prefixes).
 * lo <= hi, same family. Returns the count (<= RANGE_MAX_PREFIXES). */
static size_t range_prefixes(int family, const uint8_t *a, const uint8_t *b,
			     struct ip_prefix out[static RANGE_MAX_PREFIXES])
{
	unsigned int bits = family == AF_INET ? 32 : 128;
	unsigned __int128 lo = load_addr(family, a), hi = load_addr(family, b);
	size_t n = 0;

	for (;;) {
		unsigned int k = ctz128(lo);

		if (k > bits)
			k = bits;
		/* Shrink the block until it ends at or before hi. */
		while (k > 0 && !(k == 128 ? hi - lo == ~(unsigned __int128)0
					   : hi - lo >= ((unsigned __int128)1 << k) - 1))
			k--;
		out[n].family = family;
		out[n].len = (uint8_t)(bits - k);
		store_addr(family, lo, out[n].addr);
		n++;
		if (k == 128)
			break;
		if (hi - lo == ((unsigned __int128)1 << k) - 1)
			break; /* this block ended exactly at hi (also avoids overflow) */
		lo += (unsigned __int128)1 << k;
	}
	return n;
}

/* An address without zone or surrounding junk, as netip.ParseAddr. */
static int parse_addr(const char *s, int *family, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, s, addr) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, addr) == 1) {
		*family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

static bool host_bits_clear(const struct ip_prefix *p)
{
	size_t nb = addr_bytes(p->family);

	for (size_t i = 0; i < nb; i++) {
		unsigned int first = (unsigned int)i * 8;
		uint8_t keep;

		if (first + 8 <= p->len)
			continue;
		keep = first >= p->len ? 0 : (uint8_t)(0xff << (8 - (p->len - first)));
		if (p->addr[i] & (uint8_t)~keep)
			return false;
	}
	return true;
}

/* Upstream parseIPSet: "*", "cap:<name>", CIDR, "a-b" range, or one address.
 * Fills out[] (n_out) or *cap; returns 0 or -EINVAL with *why. */
static int parse_ip_set(const char *s, struct ip_prefix out[static RANGE_MAX_PREFIXES],
			size_t *n_out, const char **cap, const char **why)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *dash, *slash;
	size_t len = strlen(s), dashes = 0;

	*n_out = 0;
	*cap = NULL;
	if (!strcmp(s, "*")) {
		out[0] = (struct ip_prefix){.family = AF_INET};
		out[1] = (struct ip_prefix){.family = AF_INET6};
		*n_out = 2;
		return 0;
	}
	if (!strncmp(s, "cap:", 4)) {
		*cap = s + 4;
		return 0;
	}
	slash = strchr(s, '/');
	if (slash) {
		/* netip.ParsePrefix: decimal bits without leading zeros. */
		if (slash[1] == '0' && slash[2] != '\0') {
			*why = "invalid CIDR prefix length";
			return -EINVAL;
		}
		if (ip_prefix_parse(s, false, &out[0]) < 0) {
			*why = "invalid CIDR";
			return -EINVAL;
		}
		if (!host_bits_clear(&out[0])) {
			*why = "CIDR contains non-network bits set";
			return -EINVAL;
		}
		*n_out = 1;
		return 0;
	}
	for (const char *c = s; *c; c++)
		dashes += *c == '-';
	if (dashes == 1) {
		uint8_t a[16], b[16];
		int fa, fb;

		dash = strchr(s, '-');
		if ((size_t)(dash - s) >= sizeof(buf)) {
			*why = "invalid IP range";
			return -EINVAL;
		}
		memcpy(buf, s, (size_t)(dash - s));
		buf[dash - s] = '\0';
		if (parse_addr(buf, &fa, a) < 0 || parse_addr(dash + 1, &fb, b) < 0) {
			*why = "invalid IP range address";
			return -EINVAL;
		}
		if (fa != fb || memcmp(a, b, addr_bytes(fa)) > 0) {
			*why = "invalid IP range";
			return -EINVAL;
		}
		*n_out = range_prefixes(fa, a, b, out);
		return 0;
	}
	if (len >= sizeof(buf) || parse_addr(s, &out[0].family, out[0].addr) < 0) {
		*why = "invalid IP address";
		return -EINVAL;
	}
	out[0].len = out[0].family == AF_INET ? 32 : 128;
	*n_out = 1;
	return 0;
}

static void warn_once(const char **warn, const char *msg)
{
	if (!*warn)
		*warn = msg;
}

/* Appends n prefixes to a growing array, bounded by FILTER_MAX_RULE_ITEMS. */
static int push_prefixes(struct ip_prefix **arr, size_t *n, size_t *cap,
			 const struct ip_prefix *add, size_t n_add)
{
	if (*n + n_add > FILTER_MAX_RULE_ITEMS)
		return -EBADMSG;
	if (*n + n_add > *cap) {
		*cap = *cap ? *cap * 2 : 8;
		while (*cap < *n + n_add)
			*cap *= 2;
		*arr = xrealloc(*arr, *cap * sizeof(**arr));
	}
	memcpy(*arr + *n, add, n_add * sizeof(*add));
	*n += n_add;
	return 0;
}

static void rule_destroy(struct filter_rule *r)
{
	free(r->srcs);
	for (size_t i = 0; i < r->n_src_caps; i++)
		free(r->src_caps[i]);
	free(r->src_caps);
	free(r->dsts);
	memset(r, 0, sizeof(*r));
}

void filter_rules_free(struct filter_rules *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_rules; i++)
		rule_destroy(&r->rules[i]);
	free(r->rules);
	free(r);
}

/* An optional JSON array field: absent and null are empty; anything else
 * than an array within the item bound is a decode error. */
static int opt_array(const json_t *o, const char *key, const json_t **out, const char **why)
{
	const json_t *v = json_object_get(o, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_array(v) || json_array_size(v) > FILTER_MAX_RULE_ITEMS) {
		*why = "FilterRule field is not an array of allowed size";
		return -EBADMSG;
	}
	*out = v;
	return 0;
}

/* A JSON string element, or null (Go leaves ""), bounded. NULL: bad type. */
static const char *string_elem(const json_t *v)
{
	if (json_is_null(v))
		return "";
	if (!json_is_string(v) || json_string_length(v) > FILTER_MAX_STR ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return NULL;
	return json_string_value(v);
}

/* IPProto: absent or empty means TCP, UDP, ICMPv4 and ICMPv6. */
static int parse_protos(const json_t *protos, struct filter_rule *r, const char **why)
{
	const json_t *v;
	size_t i;

	if (!protos || json_array_size(protos) == 0) {
		r->protos[PACKET_PROTO_TCP / 32] |= 1U << (PACKET_PROTO_TCP % 32);
		r->protos[PACKET_PROTO_UDP / 32] |= 1U << (PACKET_PROTO_UDP % 32);
		r->protos[PACKET_PROTO_ICMP4 / 32] |= 1U << (PACKET_PROTO_ICMP4 % 32);
		r->protos[PACKET_PROTO_ICMP6 / 32] |= 1U << (PACKET_PROTO_ICMP6 % 32);
		return 0;
	}
	json_array_foreach(protos, i, v)
	{
		json_int_t p;

		if (!json_is_integer(v) && !json_is_null(v)) {
			*why = "IPProto entry is not an integer";
			return -EBADMSG;
		}
		p = json_integer_value(v); /* null: Go leaves 0 */
		if (p >= 0 && p <= 255)
			r->protos[p / 32] |= 1U << (p % 32);
	}
	return 0;
}

static int parse_srcs(const json_t *src_ips, struct filter_rule *r, const char **warn,
		      const char **why)
{
	struct ip_prefix tmp[RANGE_MAX_PREFIXES];
	size_t i, n, cap_srcs = 0;
	const char *cap, *ewhy;
	const json_t *v;

	json_array_foreach(src_ips, i, v)
	{
		const char *s = string_elem(v);

		if (!s) {
			*why = "SrcIPs entry is not a string";
			return -EBADMSG;
		}
		if (parse_ip_set(s, tmp, &n, &cap, &ewhy) < 0) {
			warn_once(warn, ewhy);
			continue;
		}
		if (cap) {
			if (*cap == '\0')
				continue;
			if (r->n_src_caps >= FILTER_MAX_RULE_ITEMS) {
				*why = "too many cap: sources";
				return -EBADMSG;
			}
			r->src_caps = xrealloc(r->src_caps, (r->n_src_caps + 1) * sizeof(char *));
			r->src_caps[r->n_src_caps++] = xstrdup(cap);
			continue;
		}
		if (push_prefixes(&r->srcs, &r->n_srcs, &cap_srcs, tmp, n) < 0) {
			*why = "too many source prefixes in one rule";
			return -EBADMSG;
		}
	}
	return 0;
}

/* One Ports.First or Ports.Last: absent and null are 0. */
static int parse_port(const json_t *v, json_int_t *port, const char *bad, const char **why)
{
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535) {
		*why = bad;
		return -EBADMSG;
	}
	*port = json_integer_value(v);
	return 0;
}

/* One DstPorts entry, appended to r->dsts (capacity *cap_dsts). 1: the whole
 * list must be rejected (Bits); 0 ok; < 0 decode error. */
static int parse_dst(const json_t *v, struct filter_rule *r, size_t *cap_dsts, const char **warn,
		     const char **why)
{
	struct ip_prefix tmp[RANGE_MAX_PREFIXES];
	const json_t *bits, *ports;
	json_int_t f = 0, l = 0;
	const char *s, *cap, *ewhy;
	size_t n;
	int ret;

	if (!json_is_object(v)) {
		*why = "DstPorts entry is not an object";
		return -EBADMSG;
	}
	bits = json_object_get(v, "Bits");
	if (bits && !json_is_null(bits)) {
		warn_once(warn, "unexpected DstBits; the whole filter is rejected");
		return 1;
	}
	s = json_object_get(v, "IP") ? string_elem(json_object_get(v, "IP")) : "";
	ports = json_object_get(v, "Ports");
	if (!s || (ports && !json_is_null(ports) && !json_is_object(ports))) {
		*why = "DstPorts entry has a bad IP or Ports";
		return -EBADMSG;
	}
	if ((ret = parse_port(ports ? json_object_get(ports, "First") : NULL, &f,
			      "Ports.First is not a port number", why)) < 0 ||
	    (ret = parse_port(ports ? json_object_get(ports, "Last") : NULL, &l,
			      "Ports.Last is not a port number", why)) < 0)
		return ret;
	if (parse_ip_set(s, tmp, &n, &cap, &ewhy) < 0) {
		warn_once(warn, ewhy);
		return 0;
	}
	if (cap) {
		warn_once(warn, "unexpected capability in DstPorts");
		return 0;
	}
	if (r->n_dsts + n > FILTER_MAX_RULE_ITEMS) {
		*why = "too many destination prefixes in one rule";
		return -EBADMSG;
	}
	if (r->n_dsts + n > *cap_dsts) {
		*cap_dsts = *cap_dsts ? *cap_dsts * 2 : 8;
		while (*cap_dsts < r->n_dsts + n)
			*cap_dsts *= 2;
		r->dsts = xrealloc(r->dsts, *cap_dsts * sizeof(*r->dsts));
	}
	for (size_t k = 0; k < n; k++)
		r->dsts[r->n_dsts++] = (struct filter_dst){
			.net = tmp[k],
			.first = (uint16_t)f,
			.last = (uint16_t)l,
		};
	return 0;
}

/* 1: the whole list must be rejected (SrcBits/Bits); 0 ok; < 0 decode error. */
static int parse_rule(const json_t *o, struct filter_rule *r, const char **warn, const char **why)
{
	const json_t *src_ips, *src_bits, *dst_ports, *protos, *grants, *v;
	size_t i, cap_dsts = 0;
	int ret;

	if (!json_is_object(o)) {
		*why = "FilterRule is not an object";
		return -EBADMSG;
	}
	if ((ret = opt_array(o, "SrcIPs", &src_ips, why)) < 0 ||
	    (ret = opt_array(o, "SrcBits", &src_bits, why)) < 0 ||
	    (ret = opt_array(o, "DstPorts", &dst_ports, why)) < 0 ||
	    (ret = opt_array(o, "IPProto", &protos, why)) < 0 ||
	    (ret = opt_array(o, "CapGrant", &grants, why)) < 0)
		return ret;
	if (src_bits && json_array_size(src_bits) > 0) {
		warn_once(warn, "unexpected SrcBits; the whole filter is rejected");
		return 1;
	}
	if ((ret = parse_protos(protos, r, why)) < 0 ||
	    (ret = parse_srcs(src_ips, r, warn, why)) < 0)
		return ret;
	json_array_foreach(dst_ports, i, v)
	{
		ret = parse_dst(v, r, &cap_dsts, warn, why);
		if (ret != 0)
			return ret;
	}
	json_array_foreach(grants, i, v)
	{
		if (!json_is_object(v)) {
			*why = "CapGrant entry is not an object";
			return -EBADMSG;
		}
	}
	r->n_cap_grants = grants ? json_array_size(grants) : 0;
	return 0;
}

int filter_rules_from_json(const json_t *rules, struct filter_rules **out, const char **warn,
			   const char **why)
{
	struct filter_rules *r;
	size_t n;
	int ret = 0;

	*out = NULL;
	*warn = NULL;
	*why = NULL;
	if (!json_is_array(rules) || json_array_size(rules) > FILTER_MAX_RULES) {
		*why = "packet filter is not an array of at most 65536 rules";
		return -EBADMSG;
	}
	n = json_array_size(rules);
	r = xcalloc(1, sizeof(*r));
	if (n)
		r->rules = xcalloc(n, sizeof(*r->rules));
	for (size_t i = 0; i < n; i++) {
		ret = parse_rule(json_array_get(rules, i), &r->rules[i], warn, why);
		r->n_rules = i + 1;
		if (ret != 0)
			break;
	}
	if (ret < 0) {
		filter_rules_free(r);
		return ret;
	}
	if (ret == 1) {
		/* Upstream returns no matches at all: deny every new flow. */
		for (size_t i = 0; i < r->n_rules; i++)
			rule_destroy(&r->rules[i]);
		r->n_rules = 0;
		r->rejected = true;
	}
	*out = r;
	return 0;
}

bool filter_rules_uses_cap(const struct filter_rules *r, const char *cap)
{
	for (size_t i = 0; r && i < r->n_rules; i++)
		for (size_t k = 0; k < r->rules[i].n_src_caps; k++)
			if (!strcmp(r->rules[i].src_caps[k], cap))
				return true;
	return false;
}
