/* The tailnet's packet-filter rules: a JSON array of tailcfg.FilterRule
 * (MapResponse.PacketFilter, or one PacketFilters entry) parsed into plain
 * structures with upstream's MatchesFromFilterRules semantics
 * (docs/tailscale-protocol.md §5). The control client parses each list once,
 * when the map message arrives, and the netmap keeps the result; the data
 * plane compiles the rules of a snapshot into a struct filter (filter.h).
 *
 * This is its own small library (tscni_filter_rules) because both the
 * control client and the data plane link it.
 *
 * struct filter_rules is immutable once parsed and freed with
 * filter_rules_free(). */
#ifndef TSCNI_WORKER_DATAPLANE_FILTER_RULES_H
#define TSCNI_WORKER_DATAPLANE_FILTER_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ip.h"

enum filter_rules_limits {
	FILTER_MAX_RULES = 65536,      /* rules in one list */
	FILTER_MAX_RULE_ITEMS = 16384, /* SrcIPs, DstPorts, IPProto or CapGrant of one rule */
	FILTER_MAX_STR = 1024,	       /* one SrcIPs / DstPorts.IP string */
};

/* One DstPorts entry: a prefix and an inclusive port range. */
struct filter_dst {
	struct ip_prefix net;
	uint16_t first, last;
};

/* One FilterRule after upstream's MatchesFromFilterRules. */
struct filter_rule {
	uint32_t protos[8]; /* bitmap of IP protocol numbers (default TCP, UDP, ICMPv4/v6) */
	struct ip_prefix *srcs;
	size_t n_srcs;
	char **src_caps; /* "cap:<name>" sources, without the prefix */
	size_t n_src_caps;
	struct filter_dst *dsts;
	size_t n_dsts;
	size_t n_cap_grants; /* CapGrant entries (WhoIs only; not used for packets) */
};

struct filter_rules {
	struct filter_rule *rules;
	size_t n_rules;
	/* A rule with SrcBits or a DstPorts entry with Bits: upstream refuses
	 * the whole filter, so n_rules is 0, and a filter that concatenates
	 * this list with others keeps no rule at all either. */
	bool rejected;
};

/* Parses a JSON array of tailcfg.FilterRule with upstream's rules for bad
 * entries:
 *  - a bad SrcIPs or DstPorts entry (bad address, host bits set in a CIDR,
 *    an inverted range, `cap:` in DstPorts) is skipped and the rest of the
 *    rule kept; *warn names the first such entry (upstream logs it);
 *  - a rule with SrcBits or a DstPorts entry with Bits rejects the whole
 *    list: the result is empty (deny all), `rejected` is set and *warn says
 *    why;
 *  - IPProto values outside 0..255 are ignored.
 * Returns 0 with *out set (caller frees it with filter_rules_free) and *warn
 * NULL or a static string; or -EBADMSG with *out NULL and *why set when the
 * JSON is not shaped like []FilterRule (Go's decoder would refuse it) or a
 * list exceeds enum filter_rules_limits. */
int filter_rules_from_json(const json_t *rules, struct filter_rules **out, const char **warn,
			   const char **why);
void filter_rules_free(struct filter_rules *r);

/* True when some rule has the source "cap:<cap>": only such capabilities
 * need struct filter_cap_holder entries. */
bool filter_rules_uses_cap(const struct filter_rules *r, const char *cap);

#endif
