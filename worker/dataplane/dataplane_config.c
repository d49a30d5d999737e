/* The data plane's configurations: peers, AllowedIPs, endpoints and the
 * packet filter, built once from a netmap snapshot on the control thread
 * and immutable afterwards (see dataplane.h for the hand-over). */
#include "dataplane.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "allowedips.h"
#include "dataplane_internal.h"
#include "log.h"
#include "mem.h"
#include "netmap.h"

void dataplane_config_free(struct dataplane_config *cfg)
{
	if (!cfg)
		return;
	filter_free(cfg->filter);
	filter_free(cfg->jailed);
	dataplane__dns_free(cfg->dns);
	if (cfg->jailed_src) {
		allowedips_destroy(cfg->jailed_src);
		free(cfg->jailed_src);
	}
	free(cfg->peers);
	free(cfg->prefixes);
	free(cfg->endpoints);
	free(cfg->disco);
	free(cfg->disco_eps);
	free(cfg);
}

size_t dataplane_config_peer_count(const struct dataplane_config *cfg)
{
	return cfg ? cfg->n_peers : 0;
}

static const char jailed_yes, jailed_no;

/* Every peer's AllowedIPs marked jailed or not, and the shields-up filter
 * (upstream's jailedFilter), when any peer is jailed. */
static int jailed_build(struct dataplane_config *cfg, const struct dataplane_peer *peers,
			size_t n_peers, const struct filter_config *fc, struct filter_state *fs,
			const char **why)
{
	struct filter_config shields = *fc;
	bool any = false;
	int ret;

	for (size_t i = 0; i < n_peers; i++)
		any |= peers[i].jailed;
	if (!any)
		return 0;
	cfg->jailed_src = xcalloc(1, sizeof(*cfg->jailed_src));
	allowedips_init(cfg->jailed_src);
	for (size_t i = 0; i < n_peers; i++) {
		for (size_t a = 0; a < peers[i].n_allowed_ips; a++) {
			ret = allowedips_insert(
				cfg->jailed_src, &peers[i].allowed_ips[a],
				(void *)(peers[i].jailed ? &jailed_yes : &jailed_no));
			if (ret < 0) {
				*why = "a peer's AllowedIPs";
				return ret;
			}
		}
	}
	shields.shields_up = true;
	return filter_new(&shields, fs, &cfg->jailed, why);
}

const struct filter *dataplane__config_filter_in(const struct dataplane_config *cfg,
						 const struct packet *p)
{
	if (cfg->jailed_src && (p->version == 4 || p->version == 6) &&
	    allowedips_lookup(cfg->jailed_src, p->version == 4 ? AF_INET : AF_INET6, p->src) ==
		    &jailed_yes)
		return cfg->jailed;
	return cfg->filter;
}

/* Peer i's endpoints (for WireGuard and, as disco addresses, for disco)
 * and its disco key, from ep_at on in the configuration's arrays. */
static void disco_peer_fill(struct dataplane_config *cfg, const struct dataplane_peer *peer,
			    size_t i, size_t ep_at)
{
	struct dataplane_disco_peer *d = &cfg->disco[i];
	struct wg_peer_config *pc = &cfg->peers[i];

	for (size_t e = 0; e < peer->n_endpoints; e++) {
		cfg->endpoints[ep_at + e] = peer->endpoints[e];
		(void)disco_addr_from_sockaddr((const struct sockaddr *)&peer->endpoints[e],
					       &cfg->disco_eps[ep_at + e]);
	}
	pc->endpoints = &cfg->endpoints[ep_at];
	pc->n_endpoints = peer->n_endpoints;
	d->ep_off = ep_at;
	d->n_eps = peer->n_endpoints;
	d->home_derp = peer->home_derp;
	d->has_disco = peer->has_disco;
	if (peer->has_disco)
		memcpy(d->disco, peer->disco, WG_KEY_LEN);
	else
		cfg->any_without_disco = true;
}

int dataplane_config_new(const struct dataplane_peer *peers, size_t n_peers,
			 const struct filter_rules *rules, const struct ip_prefix *local,
			 size_t n_local, const struct filter_cap_holder *caps, size_t n_caps,
			 struct filter_state *fs, struct dataplane_config **out, const char **why)
{
	struct filter_config fc = {
		.rules = rules, .local = local, .n_local = n_local, .caps = caps, .n_caps = n_caps};
	struct dataplane_config *cfg;
	size_t n_pfx = 0, at = 0, n_eps = 0, ep_at = 0;
	int ret;

	*out = NULL;
	if (n_peers > DP_MAX_PEERS) {
		*why = "too many peers";
		return -EINVAL;
	}
	for (size_t i = 0; i < n_peers; i++) {
		if (peers[i].n_allowed_ips > NETMAP_MAX_ALLOWED_IPS) {
			*why = "too many AllowedIPs for one peer";
			return -EINVAL;
		}
		n_pfx += peers[i].n_allowed_ips;
		if (peers[i].n_endpoints > NETMAP_MAX_ENDPOINTS) {
			*why = "too many endpoints for one peer";
			return -EINVAL;
		}
		for (size_t e = 0; e < peers[i].n_endpoints; e++) {
			if (!dataplane__sockaddr_len(&peers[i].endpoints[e])) {
				*why = "peer endpoint is neither IPv4 nor IPv6";
				return -EINVAL;
			}
		}
		n_eps += peers[i].n_endpoints;
	}
	cfg = xcalloc(1, sizeof(*cfg));
	cfg->peers = xcalloc(n_peers ? n_peers : 1, sizeof(*cfg->peers));
	cfg->prefixes = xcalloc(n_pfx ? n_pfx : 1, sizeof(*cfg->prefixes));
	cfg->endpoints = xcalloc(n_eps ? n_eps : 1, sizeof(*cfg->endpoints));
	cfg->disco = xcalloc(n_peers ? n_peers : 1, sizeof(*cfg->disco));
	cfg->disco_eps = xcalloc(n_eps ? n_eps : 1, sizeof(*cfg->disco_eps));
	for (size_t i = 0; i < n_peers; i++) {
		struct wg_peer_config *pc = &cfg->peers[i];

		memcpy(pc->public_key, peers[i].key, WG_KEY_LEN);
		if (peers[i].n_allowed_ips)
			memcpy(&cfg->prefixes[at], peers[i].allowed_ips,
			       peers[i].n_allowed_ips * sizeof(struct ip_prefix));
		pc->allowed_ips = &cfg->prefixes[at];
		pc->n_allowed_ips = peers[i].n_allowed_ips;
		at += peers[i].n_allowed_ips;
		disco_peer_fill(cfg, &peers[i], i, ep_at);
		ep_at += peers[i].n_endpoints;
	}
	cfg->n_peers = n_peers;
	ret = filter_new(&fc, fs, &cfg->filter, why);
	if (ret < 0) {
		dataplane_config_free(cfg);
		return ret;
	}
	ret = jailed_build(cfg, peers, n_peers, &fc, fs, why);
	if (ret < 0) {
		dataplane_config_free(cfg);
		return ret;
	}
	*out = cfg;
	return 0;
}

/* The effective rules of a snapshot: its named lists in name order, as
 * their concatenation parsed whole would be (upstream concatenates before
 * MatchesFromFilterRules): more than FILTER_MAX_RULES in all, or a list
 * that did not parse, refuses the filter; a rejected list (SrcBits, Bits)
 * leaves no rule at all, whatever follows it; *warn is the first warning
 * up to there. view borrows the lists' rules: free only view->rules. */
static int rules_view(const struct netmap_filters *nf, struct filter_rules *view, const char **warn,
		      const char **why)
{
	size_t total = 0;

	*view = (struct filter_rules){0};
	*warn = NULL;
	for (size_t i = 0; i < nf->n_named; i++)
		total += nf->named[i].rules->n_sent;
	if (total > FILTER_MAX_RULES) {
		*why = "packet filter is not an array of at most 65536 rules";
		return -EBADMSG;
	}
	if (total)
		view->rules = xcalloc(total, sizeof(*view->rules));
	for (size_t i = 0; i < nf->n_named; i++) {
		const struct netmap_rules *r = nf->named[i].rules;

		if (!r->n_sent)
			continue;
		if (!*warn)
			*warn = r->warn;
		if (r->bad) {
			free(view->rules);
			view->rules = NULL;
			*why = r->bad;
			return -EBADMSG;
		}
		if (r->rules->rejected) {
			view->n_rules = 0;
			break;
		}
		memcpy(&view->rules[view->n_rules], r->rules->rules,
		       r->rules->n_rules * sizeof(*view->rules));
		view->n_rules += r->rules->n_rules;
	}
	return 0;
}

static void endpoint_to_sockaddr(const struct netmap_endpoint *e, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (e->family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(e->port);
		memcpy(&a->sin_addr, e->addr, 4);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(e->port);
		memcpy(&a->sin6_addr, e->addr, 16);
	}
}

static bool peer_usable(const struct netmap *nm, const struct netmap_node *n, int64_t now)
{
	if (!n->has_key || netmap_node_expired(nm, n, now))
		return false;
	return !(nm->self->has_key && sodium_memcmp(n->key, nm->self->key, KEY_LEN) == 0);
}

/* The `cap:` holders among the peers, for the capabilities rules use. */
static struct filter_cap_holder *caps_collect(const struct netmap *nm,
					      const struct filter_rules *rules, size_t *n_out)
{
	struct filter_cap_holder *caps = NULL;
	size_t n = 0;

	*n_out = 0;
	if (!rules)
		return NULL;
	for (int pass = 0; pass < 2; pass++) {
		n = 0;
		for (size_t i = 0; i < nm->n_peers; i++) {
			const struct netmap_node *p = nm->peers[i];

			for (size_t c = 0; c < p->n_caps; c++) {
				if (!filter_rules_uses_cap(rules, p->caps[c]))
					continue;
				for (size_t a = 0; a < p->n_addresses; a++, n++) {
					if (caps)
						caps[n] = (struct filter_cap_holder){
							.cap = p->caps[c], .addr = p->addresses[a]};
				}
			}
		}
		if (pass == 0) {
			if (!n)
				return NULL;
			caps = xcalloc(n, sizeof(*caps));
		}
	}
	*n_out = n;
	return caps;
}

int dataplane_config_from_netmap(const struct netmap *nm, int64_t now, struct filter_state *fs,
				 struct dataplane_config **out, const char **why)
{
	struct filter_rules rules;
	struct filter_cap_holder *caps = NULL;
	struct dataplane_peer *peers = NULL;
	struct sockaddr_storage *eps = NULL;
	size_t n = 0, n_caps = 0, n_eps = 0, at = 0;
	const char *warn;
	int ret;

	*out = NULL;
	if (!nm || !nm->self) {
		*why = "netmap has no self node";
		return -EINVAL;
	}
	ret = rules_view(nm->filters, &rules, &warn, why);
	if (ret < 0)
		return ret;
	if (warn)
		log_warn("packet filter: %s", warn);
	caps = caps_collect(nm, &rules, &n_caps);
	peers = xcalloc(nm->n_peers ? nm->n_peers : 1, sizeof(*peers));
	for (size_t i = 0; i < nm->n_peers; i++)
		n_eps += nm->peers[i]->n_endpoints;
	eps = xcalloc(n_eps ? n_eps : 1, sizeof(*eps));
	for (size_t i = 0; i < nm->n_peers; i++) {
		const struct netmap_node *p = nm->peers[i];
		struct dataplane_peer *dp = &peers[n];

		if (!peer_usable(nm, p, now))
			continue;
		memcpy(dp->key, p->key, WG_KEY_LEN);
		dp->allowed_ips = p->allowed_ips;
		dp->n_allowed_ips = p->n_allowed_ips;
		dp->jailed = p->is_jailed;
		dp->endpoints = &eps[at];
		dp->n_endpoints = p->n_endpoints;
		for (size_t e = 0; e < p->n_endpoints; e++)
			endpoint_to_sockaddr(&p->endpoints[e], &eps[at++]);
		dp->has_disco = p->has_disco && !sodium_is_zero(p->disco, KEY_LEN);
		if (dp->has_disco)
			memcpy(dp->disco, p->disco, WG_KEY_LEN);
		if (p->home_derp > 0 && p->home_derp <= UINT16_MAX)
			dp->home_derp = (uint16_t)p->home_derp;
		n++;
	}
	ret = dataplane_config_new(peers, n, &rules, nm->self->addresses, nm->self->n_addresses,
				   caps, n_caps, fs, out, why);
	if (ret == 0) {
		ret = dataplane__dns_from_netmap(nm, &(*out)->dns, why);
		if (ret < 0) {
			dataplane_config_free(*out);
			*out = NULL;
		}
	}
	free(peers);
	free(eps);
	free(caps);
	free(rules.rules); /* the view's array only: the rules are nm's */
	return ret;
}
