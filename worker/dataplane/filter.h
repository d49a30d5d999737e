/* The tailnet packet filter: the netmap's PacketFilter rules applied to every
 * packet a peer delivers (inbound) and every packet the pod sends (outbound),
 * with upstream's semantics (tailscale wgengine/filter: RunIn, RunOut, pre,
 * match, matchIPsOnly, matchProtoAndIPsOnlyIfAllPorts; tailcfg.go
 * MatchesFromFilterRules). Summary (docs/tailscale-protocol.md §5):
 *
 *  pre-checks, both directions: an empty packet (WireGuard keepalive) is
 *  accepted; < 20 bytes, unknown protocol, multicast destination and
 *  link-local unicast destination (except 169.254.169.254) are dropped; a
 *  later fragment is accepted.
 *  inbound: the destination must be one of ours (local prefixes); TCP that is
 *  not a bare SYN is accepted; a SYN, UDP and SCTP need a rule (UDP/SCTP also
 *  pass when the reverse flow went out recently); ICMP echo replies and
 *  errors pass, other ICMP needs a rule by addresses alone (or a `cap:`
 *  source the sender holds); TSMP passes; other protocols need a rule that
 *  names the protocol with the full port range.
 *  outbound: everything past the pre-checks passes; UDP/SCTP flows are
 *  recorded so that their replies come back in.
 *
 * Objects:
 *  struct filter_rules  the parsed rule list (filter_rules.h).
 *  struct filter_state  the flow cache and the counters: one per worker,
 *                       shared by every filter built for it, so a policy
 *                       change keeps the UDP flows (upstream's
 *                       shareStateWith). Its flow cache has its own mutex,
 *                       because the inbound and the outbound path may run on
 *                       different threads; counters are relaxed atomics.
 *  struct filter        built once per netmap snapshot from rules, our own
 *                       prefixes and who holds which capability; immutable
 *                       afterwards. The caller publishes it by swapping one
 *                       pointer and frees the old one only when no packet
 *                       thread can still be using it.
 *
 * Nothing on the per-packet path (filter_run_in, filter_run_out) allocates. */
#ifndef TSCNI_WORKER_DATAPLANE_FILTER_H
#define TSCNI_WORKER_DATAPLANE_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "filter_rules.h"
#include "ip.h"
#include "packet.h"

enum filter_limits {
	FILTER_FLOW_MAX = 512, /* upstream lruMax */
};

enum filter_verdict {
	FILTER_DROP = 0,
	FILTER_ACCEPT = 1,
};

/* Why a packet was dropped; names as upstream's usermetric drop reasons
 * where it has one. */
enum filter_reason {
	FILTER_REASON_NONE = 0,
	FILTER_REASON_TOO_SHORT,	/* "too_short" */
	FILTER_REASON_UNKNOWN_PROTOCOL, /* "unknown_protocol" */
	FILTER_REASON_MULTICAST,	/* "multicast" */
	FILTER_REASON_LINK_LOCAL,	/* "link_local_unicast" */
	FILTER_REASON_NOT_LOCAL,	/* "destination_not_local": inbound only */
	FILTER_REASON_ACL,		/* "acl": no rule allows it, inbound only */
	FILTER_REASON_COUNT,
};

/* Which peer address holds which peer capability (Node.CapMap keys and
 * Capabilities of the peer that owns the address), for `cap:` sources.
 * Leave out peers with UnsignedPeerAPIOnly, as upstream does. */
struct filter_cap_holder {
	const char *cap;
	struct ip_prefix addr; /* a /32 or /128 of Node.Addresses */
};

struct filter_config {
	const struct filter_rules *rules; /* NULL: no rules */
	const struct ip_prefix *local;	  /* our addresses, advertised routes, service IPs */
	size_t n_local;
	const struct filter_cap_holder *caps;
	size_t n_caps;
	bool shields_up; /* ignore the rules: no new inbound flows at all */
};

struct filter_state;
struct filter;

/* The flow cache and counters. _new aborts on OOM; _free(NULL) is a no-op. */
struct filter_state *filter_state_new(void);
void filter_state_free(struct filter_state *s);

/* Builds a filter. An empty config (no rules, no local prefixes) is
 * upstream's NewAllowNone: use it before the first netmap. `state` (not
 * NULL) must outlive the filter. cfg and what it points to are copied; the
 * caller keeps them. Returns 0 with *out set, or -EINVAL with *why set (no
 * state, a prefix of an unknown family or length); *out is NULL on failure. */
int filter_new(const struct filter_config *cfg, struct filter_state *state, struct filter **out,
	       const char **why);
void filter_free(struct filter *f);

/* The verdict for a packet parsed by packet_parse() (whatever it returned):
 * inbound = decrypted from a peer, outbound = read from our TUN. *reason is
 * FILTER_REASON_NONE on accept. Counts every verdict in f's state. */
enum filter_verdict filter_run_in(const struct filter *f, const struct packet *p,
				  enum filter_reason *reason);
enum filter_verdict filter_run_out(const struct filter *f, const struct packet *p,
				   enum filter_reason *reason);

/* Forgets every recorded flow (tests; a worker never needs it). */
void filter_state_flush(struct filter_state *s);

struct filter_stats {
	uint64_t in_accept, out_accept;
	uint64_t in_drop[FILTER_REASON_COUNT];
	uint64_t out_drop[FILTER_REASON_COUNT];
	uint64_t flows; /* entries in the flow cache now */
};
void filter_state_stats(struct filter_state *s, struct filter_stats *out);

/* "too_short", "acl", ...; "none" for FILTER_REASON_NONE. */
const char *filter_reason_name(enum filter_reason r);

#endif
