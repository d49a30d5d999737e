/* Network map snapshots and the application of MapResponse deltas. */
#include "netmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "filter_rules.h"
#include "mapjson.h"
#include "mem.h"

/* ---- Reference counts ---------------------------------------------------- */

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

struct netmap_node *netmap_node_new(void)
{
	struct netmap_node *n = xcalloc(1, sizeof(*n));

	atomic_init(&n->refs, 1);
	n->stable_id = xstrdup("");
	n->name = xstrdup("");
	n->hostname = xstrdup("");
	return n;
}

struct netmap_node *netmap_node_get(struct netmap_node *n)
{
	if (n)
		atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
	return n;
}

void netmap_node_put(struct netmap_node *n)
{
	if (!n || atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(n->stable_id);
	free(n->name);
	free(n->hostname);
	free(n->addresses);
	free(n->allowed_ips);
	free(n->primary_routes);
	free(n->endpoints);
	free_strings(n->tags, n->n_tags);
	free_strings(n->caps, n->n_caps);
	free(n);
}

static void *dup_array(const void *src, size_t n, size_t size)
{
	void *p;

	if (!n)
		return NULL;
	p = xcalloc(n, size);
	memcpy(p, src, n * size);
	return p;
}

static char **dup_strv(char *const *v, size_t n)
{
	char **out;

	if (!n)
		return NULL;
	out = xcalloc(n, sizeof(*out));
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i]);
	return out;
}

/* A private deep copy (refs 1) to patch. */
static struct netmap_node *node_clone(const struct netmap_node *src)
{
	struct netmap_node *n = xmalloc(sizeof(*n));

	memcpy(n, src, sizeof(*n));
	atomic_init(&n->refs, 1);
	n->stable_id = xstrdup(src->stable_id);
	n->name = xstrdup(src->name);
	n->hostname = xstrdup(src->hostname);
	n->addresses = dup_array(src->addresses, src->n_addresses, sizeof(*src->addresses));
	n->allowed_ips = dup_array(src->allowed_ips, src->n_allowed_ips, sizeof(*src->allowed_ips));
	n->primary_routes =
		dup_array(src->primary_routes, src->n_primary_routes, sizeof(*src->primary_routes));
	n->endpoints = dup_array(src->endpoints, src->n_endpoints, sizeof(*src->endpoints));
	n->tags = dup_strv(src->tags, src->n_tags);
	n->caps = dup_strv(src->caps, src->n_caps);
	return n;
}

struct netmap_derpmap *netmap_derpmap_new(void)
{
	struct netmap_derpmap *d = xcalloc(1, sizeof(*d));

	atomic_init(&d->refs, 1);
	return d;
}

struct netmap_derpmap *netmap_derpmap_get(struct netmap_derpmap *d)
{
	if (d)
		atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
	return d;
}

static void free_regions(struct netmap_derp_region *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < r[i].n_nodes; j++) {
			struct netmap_derp_node *dn = &r[i].nodes[j];

			free(dn->name);
			free(dn->host_name);
			free(dn->ipv4);
			free(dn->ipv6);
			free(dn->stun_test_ip);
		}
		free(r[i].nodes);
		free(r[i].region_code);
		free(r[i].region_name);
	}
	free(r);
}

void netmap_derpmap_put(struct netmap_derpmap *d)
{
	if (!d || atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) != 1)
		return;
	free_regions(d->regions, d->n_regions);
	free(d->scores);
	free(d);
}

static struct netmap_derp_region *dup_regions(const struct netmap_derp_region *src, size_t n)
{
	struct netmap_derp_region *r;

	if (!n)
		return NULL;
	r = xcalloc(n, sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		r[i] = src[i];
		r[i].region_code = xstrdup(src[i].region_code);
		r[i].region_name = xstrdup(src[i].region_name);
		r[i].nodes = dup_array(src[i].nodes, src[i].n_nodes, sizeof(*src[i].nodes));
		for (size_t j = 0; j < src[i].n_nodes; j++) {
			struct netmap_derp_node *dn = &r[i].nodes[j];

			dn->name = xstrdup(dn->name);
			dn->host_name = xstrdup(dn->host_name);
			dn->ipv4 = xstrdup(dn->ipv4);
			dn->ipv6 = xstrdup(dn->ipv6);
			dn->stun_test_ip = xstrdup(dn->stun_test_ip);
		}
	}
	return r;
}

struct netmap_dns *netmap_dns_new(void)
{
	struct netmap_dns *d = xcalloc(1, sizeof(*d));

	atomic_init(&d->refs, 1);
	return d;
}

struct netmap_dns *netmap_dns_get(struct netmap_dns *d)
{
	if (d)
		atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
	return d;
}

void netmap_dns_put(struct netmap_dns *d)
{
	if (!d || atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) != 1)
		return;
	free_strings(d->resolvers, d->n_resolvers);
	free_strings(d->fallback_resolvers, d->n_fallback_resolvers);
	for (size_t i = 0; i < d->n_routes; i++) {
		free(d->routes[i].suffix);
		free_strings(d->routes[i].resolvers, d->routes[i].n_resolvers);
	}
	free(d->routes);
	free_strings(d->domains, d->n_domains);
	free_strings(d->cert_domains, d->n_cert_domains);
	for (size_t i = 0; i < d->n_extra_records; i++) {
		free(d->extra_records[i].name);
		free(d->extra_records[i].type);
		free(d->extra_records[i].value);
	}
	free(d->extra_records);
	free(d);
}

struct netmap_filters *netmap_filters_get(struct netmap_filters *f)
{
	if (f)
		atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	return f;
}

void netmap_filters_put(struct netmap_filters *f)
{
	if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < f->n_named; i++) {
		free(f->named[i].name);
		netmap_rules_put(f->named[i].rules);
	}
	free(f->named);
	free(f);
}

struct netmap_rules *netmap_rules_new(void)
{
	struct netmap_rules *r = xcalloc(1, sizeof(*r));

	atomic_init(&r->refs, 1);
	return r;
}

struct netmap_rules *netmap_rules_get(struct netmap_rules *r)
{
	if (r)
		atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
	return r;
}

void netmap_rules_put(struct netmap_rules *r)
{
	if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
		return;
	filter_rules_free(r->rules);
	free(r);
}

struct netmap *netmap_get(struct netmap *nm)
{
	if (nm)
		atomic_fetch_add_explicit(&nm->refs, 1, memory_order_relaxed);
	return nm;
}

void netmap_put(struct netmap *nm)
{
	if (!nm || atomic_fetch_sub_explicit(&nm->refs, 1, memory_order_acq_rel) != 1)
		return;
	netmap_node_put(nm->self);
	for (size_t i = 0; i < nm->n_peers; i++)
		netmap_node_put(nm->peers[i]);
	free(nm->peers);
	free(nm->by_key);
	netmap_derpmap_put(nm->derpmap);
	netmap_dns_put(nm->dns);
	netmap_filters_put(nm->filters);
	free(nm->domain);
	free(nm);
}

/* ---- Packet filters ------------------------------------------------------ */

static int cmp_filter(const void *a, const void *b)
{
	return strcmp(((const struct netmap_filter *)a)->name,
		      ((const struct netmap_filter *)b)->name);
}

static struct netmap_filter *find_filter(struct netmap_filter *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

/* Sorts the names (the effective filter is their lists in name order). */
static struct netmap_filters *filters_finish(struct netmap_filter *named, size_t n)
{
	struct netmap_filters *f = xcalloc(1, sizeof(*f));

	atomic_init(&f->refs, 1);
	if (n) /* qsort(NULL, 0) is undefined */
		qsort(named, n, sizeof(*named), cmp_filter);
	f->named = named;
	f->n_named = n;
	for (size_t i = 0; i < n; i++)
		f->n_rules += named[i].rules->n_sent;
	return f;
}

/* Sets name's list in v (n entries, room for one more) to rules, adding
 * the name when it is new. */
static void filter_set(struct netmap_filter *v, size_t *n, const char *name,
		       struct netmap_rules *rules)
{
	struct netmap_filter *f = find_filter(v, *n, name);

	if (!f) {
		f = &v[(*n)++];
		f->name = xstrdup(name);
	} else {
		netmap_rules_put(f->rules);
	}
	f->rules = netmap_rules_get(rules);
}

static void filters_clear(struct netmap_filter *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		netmap_rules_put(v[i].rules);
	}
}

/* Upstream's order: PacketFilter sets "base"; then PacketFilters, where
 * "*": null first clears every name, and each other name is set or, with
 * null, deleted. */
static int apply_filters(const struct netmap_filters *old, const struct mapjson_map_response *r,
			 struct netmap_filters **out, const char **why)
{
	size_t cap = (old ? old->n_named : 0) + 1 + r->n_filters, n = 0;
	struct netmap_filter *v = xcalloc(cap, sizeof(*v)), *f;

	for (size_t i = 0; old && i < old->n_named; i++) {
		v[n].name = xstrdup(old->named[i].name);
		v[n++].rules = netmap_rules_get(old->named[i].rules);
	}
	if (r->packet_filter)
		filter_set(v, &n, "base", r->packet_filter);
	if (r->has_packet_filters && r->filters_clear_all) {
		filters_clear(v, n);
		n = 0;
	}
	for (size_t i = 0; r->has_packet_filters && i < r->n_filters; i++) {
		const struct mapjson_named_filter *nf = &r->filters[i];

		if (nf->rules) {
			filter_set(v, &n, nf->name, nf->rules);
			continue;
		}
		f = find_filter(v, n, nf->name);
		if (f) {
			free(f->name);
			netmap_rules_put(f->rules);
			*f = v[--n];
		}
	}
	if (n > NETMAP_MAX_FILTER_NAMES) {
		/* Each message is bounded, but names could pile up. */
		filters_clear(v, n);
		free(v);
		*why = "too many named packet filters";
		return -EBADMSG;
	}
	if (!n) {
		free(v);
		v = NULL;
	}
	*out = filters_finish(v, n);
	return 0;
}

/* ---- DERP map merge ------------------------------------------------------ */

/* Upstream's rules: absent Regions keep the old regions (and
 * OmitDefaultRegions); absent HomeParams keep the old; HomeParams without
 * RegionScore keep the old scores. */
static struct netmap_derpmap *merge_derpmap(const struct netmap_derpmap *old,
					    const struct netmap_derpmap *delta)
{
	struct netmap_derpmap *d = netmap_derpmap_new();
	const struct netmap_derpmap *regions = delta->has_regions || !old ? delta : old;
	const struct netmap_derpmap *scores = delta;

	d->has_regions = regions->has_regions;
	d->regions = dup_regions(regions->regions, regions->n_regions);
	d->n_regions = regions->n_regions;
	d->omit_default_regions = regions->omit_default_regions;
	if (old && (!delta->has_home_params || !delta->has_region_score))
		scores = old;
	d->has_home_params = delta->has_home_params || (old && old->has_home_params);
	d->has_region_score = scores->has_region_score;
	d->scores = dup_array(scores->scores, scores->n_scores, sizeof(*scores->scores));
	d->n_scores = scores->n_scores;
	return d;
}

/* ---- Peers --------------------------------------------------------------- */

struct peer_slot {
	struct netmap_node *node;
	size_t seq; /* arrival order: the later of two equal IDs wins */
};

static int cmp_slot(const void *a, const void *b)
{
	const struct peer_slot *x = a, *y = b;

	if (x->node->id != y->node->id)
		return x->node->id < y->node->id ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static int cmp_id(const void *a, const void *b)
{
	const int64_t *x = a, *y = b;

	return (*x > *y) - (*x < *y);
}

static int cmp_by_key(const void *a, const void *b)
{
	const struct netmap_node *const *x = a, *const *y = b;

	return memcmp((*x)->key, (*y)->key, KEY_LEN);
}

/* Sorts by ID and keeps the last node of each ID; fills nm->peers. */
static void set_peers(struct netmap *nm, struct peer_slot *slots, size_t n)
{
	size_t out = 0;

	if (n) /* qsort(NULL, 0) is undefined */
		qsort(slots, n, sizeof(*slots), cmp_slot);
	nm->peers = n ? xcalloc(n, sizeof(*nm->peers)) : NULL;
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && slots[i + 1].node->id == slots[i].node->id) {
			netmap_node_put(slots[i].node);
			continue;
		}
		nm->peers[out++] = slots[i].node;
	}
	nm->n_peers = out;
}

static struct netmap_node **find_peer_slot(struct netmap *nm, int64_t id)
{
	size_t lo = 0, hi = nm->n_peers;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (nm->peers[mid]->id == id)
			return &nm->peers[mid];
		if (nm->peers[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Makes *slot private to this snapshot before it is patched. */
static struct netmap_node *writable(struct netmap_node **slot)
{
	struct netmap_node *n = *slot;

	if (atomic_load_explicit(&n->refs, memory_order_acquire) == 1)
		return n;
	*slot = node_clone(n);
	netmap_node_put(n);
	return *slot;
}

static void apply_patch(struct netmap_node *n, const struct mapjson_peer_change *pc)
{
	if (pc->fields & MAPJSON_PATCH_DERP)
		n->home_derp = pc->derp_region;
	if (pc->fields & MAPJSON_PATCH_CAP)
		n->cap = pc->cap;
	if (pc->fields & MAPJSON_PATCH_ENDPOINTS) {
		free(n->endpoints);
		n->endpoints = dup_array(pc->endpoints, pc->n_endpoints, sizeof(*pc->endpoints));
		n->n_endpoints = pc->n_endpoints;
	}
	if (pc->fields & MAPJSON_PATCH_KEY) {
		memcpy(n->key, pc->key, KEY_LEN);
		n->has_key = true;
	}
	if (pc->fields & MAPJSON_PATCH_DISCO) {
		memcpy(n->disco, pc->disco, KEY_LEN);
		n->has_disco = true;
	}
	if (pc->fields & MAPJSON_PATCH_ONLINE) {
		n->has_online = true;
		n->online = pc->online;
	}
	if (pc->fields & MAPJSON_PATCH_LAST_SEEN) {
		n->has_last_seen = true;
		n->last_seen = pc->last_seen;
	}
	if (pc->fields & MAPJSON_PATCH_KEY_EXPIRY) {
		n->has_key_expiry = pc->has_key_expiry;
		n->key_expiry = pc->key_expiry;
	}
	if (pc->fields & MAPJSON_PATCH_CAPMAP) {
		free_strings(n->caps, n->n_caps);
		n->caps = dup_strv(pc->caps, pc->n_caps);
		n->n_caps = pc->n_caps;
	}
}

/* Upstream's updatePeersStateFromResponse: a non-empty Peers replaces
 * everything and precludes the deltas; otherwise PeersRemoved, PeersChanged
 * (whole nodes), PeerSeenChange, OnlineChange, PeersChangedPatch, in that
 * order. */
static int apply_peers(struct netmap *nm, const struct netmap *prev,
		       const struct mapjson_map_response *r, int64_t now, const char **why)
{
	size_t n = 0, cap;
	struct peer_slot *slots;
	int64_t *removed;

	if (r->n_peers) {
		slots = xcalloc(r->n_peers, sizeof(*slots));
		for (size_t i = 0; i < r->n_peers; i++)
			slots[n++] =
				(struct peer_slot){.node = netmap_node_get(r->peers[i]), .seq = i};
		set_peers(nm, slots, n);
		free(slots);
		return 0;
	}
	cap = (prev ? prev->n_peers : 0) + r->n_peers_changed;
	if (cap > NETMAP_MAX_PEERS) {
		*why = "netmap would exceed the peer limit";
		return -EBADMSG;
	}
	slots = cap ? xcalloc(cap, sizeof(*slots)) : NULL;
	/* Sorted removals, so that each peer costs one binary search. */
	removed = dup_array(r->peers_removed, r->n_peers_removed, sizeof(*removed));
	if (r->n_peers_removed) /* qsort(NULL, 0) is undefined */
		qsort(removed, r->n_peers_removed, sizeof(*removed), cmp_id);
	for (size_t i = 0; prev && i < prev->n_peers; i++) {
		if (!r->n_peers_removed || !bsearch(&prev->peers[i]->id, removed,
						    r->n_peers_removed, sizeof(*removed), cmp_id)) {
			slots[n].node = netmap_node_get(prev->peers[i]);
			slots[n].seq = n;
			n++;
		}
	}
	for (size_t i = 0; i < r->n_peers_changed; i++) {
		slots[n].node = netmap_node_get(r->peers_changed[i]);
		slots[n].seq = n;
		n++;
	}
	set_peers(nm, slots, n);
	free(slots);
	free(removed);

	for (size_t i = 0; i < r->n_seen_change; i++) {
		struct netmap_node **slot = find_peer_slot(nm, r->seen_change[i].id), *p;

		if (!slot)
			continue;
		p = writable(slot);
		p->has_last_seen = r->seen_change[i].value;
		p->last_seen = r->seen_change[i].value ? now : 0;
	}
	for (size_t i = 0; i < r->n_online_change; i++) {
		struct netmap_node **slot = find_peer_slot(nm, r->online_change[i].id), *p;

		if (!slot)
			continue;
		p = writable(slot);
		p->has_online = true;
		p->online = r->online_change[i].value;
	}
	for (size_t i = 0; i < r->n_patches; i++) {
		struct netmap_node **slot = find_peer_slot(nm, r->patches[i].node_id);

		if (slot)
			apply_patch(writable(slot), &r->patches[i]);
	}
	return 0;
}

static void index_by_key(struct netmap *nm)
{
	nm->by_key = nm->n_peers ? xcalloc(nm->n_peers, sizeof(*nm->by_key)) : NULL;
	for (size_t i = 0; i < nm->n_peers; i++)
		if (nm->peers[i]->has_key)
			nm->by_key[nm->n_by_key++] = nm->peers[i];
	if (nm->n_by_key) /* qsort(NULL, 0) is undefined */
		qsort(nm->by_key, nm->n_by_key, sizeof(*nm->by_key), cmp_by_key);
}

/* ---- Apply --------------------------------------------------------------- */

int netmap_apply(const struct netmap *prev, const struct mapjson_map_response *r, int64_t now,
		 struct netmap **out, const char **why)
{
	struct netmap *nm;
	int ret;

	*out = NULL;
	/* Keep-alives carry no state: only ControlTime is looked at. */
	if (r->keep_alive) {
		if (!prev)
			return 0;
		if (!r->has_control_time) {
			*out = netmap_get((struct netmap *)prev);
			return 0;
		}
	} else if (!prev && !r->node) {
		*why = "first map response of the stream has no Node";
		return -EBADMSG;
	}

	nm = xcalloc(1, sizeof(*nm));
	atomic_init(&nm->refs, 1);
	nm->self = netmap_node_get(r->node && !r->keep_alive ? r->node : prev->self);
	if (prev) {
		nm->domain = xstrdup(prev->domain);
		nm->has_control_time = prev->has_control_time;
		nm->control_time = prev->control_time;
		nm->clock_skew = prev->clock_skew;
		nm->collect_services = prev->collect_services;
		nm->tka_enabled = prev->tka_enabled;
	}
	if (r->has_control_time) {
		nm->has_control_time = true;
		nm->control_time = r->control_time;
		nm->clock_skew = r->control_time - now;
	}
	if (r->keep_alive) {
		nm->derpmap = netmap_derpmap_get(prev->derpmap);
		nm->dns = netmap_dns_get(prev->dns);
		nm->filters = netmap_filters_get(prev->filters);
		for (size_t i = 0; i < prev->n_peers; i++)
			netmap_node_get(prev->peers[i]);
		nm->peers = dup_array(prev->peers, prev->n_peers, sizeof(*prev->peers));
		nm->n_peers = prev->n_peers;
		index_by_key(nm);
		*out = nm;
		return 0;
	}

	ret = apply_peers(nm, prev, r, now, why);
	if (ret < 0) {
		netmap_put(nm);
		return ret;
	}
	index_by_key(nm);

	if (r->derpmap)
		nm->derpmap = merge_derpmap(prev ? prev->derpmap : NULL, r->derpmap);
	else
		nm->derpmap = prev ? netmap_derpmap_get(prev->derpmap) : netmap_derpmap_new();
	if (r->packet_filter || r->has_packet_filters || !prev) {
		ret = apply_filters(prev ? prev->filters : NULL, r, &nm->filters, why);
		if (ret < 0) {
			netmap_put(nm);
			return ret;
		}
	} else {
		nm->filters = netmap_filters_get(prev->filters);
	}
	if (r->dns)
		nm->dns = netmap_dns_get(r->dns);
	else
		nm->dns = prev ? netmap_dns_get(prev->dns) : netmap_dns_new();
	if (r->domain) {
		free(nm->domain);
		nm->domain = xstrdup(r->domain);
	} else if (!nm->domain) {
		nm->domain = xstrdup("");
	}
	if (r->has_collect_services)
		nm->collect_services = r->collect_services;
	if (r->has_tka)
		nm->tka_enabled = r->tka_enabled;
	*out = nm;
	return 0;
}

/* ---- Lookups ------------------------------------------------------------- */

const struct netmap_node *netmap_peer_by_id(const struct netmap *nm, int64_t id)
{
	struct netmap_node **slot = find_peer_slot((struct netmap *)nm, id);

	return slot ? *slot : NULL;
}

const struct netmap_node *netmap_peer_by_key(const struct netmap *nm,
					     const uint8_t key[static KEY_LEN])
{
	size_t lo = 0, hi = nm->n_by_key;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(nm->by_key[mid]->key, key, KEY_LEN);

		if (c == 0)
			return nm->by_key[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool netmap_node_expired(const struct netmap *nm, const struct netmap_node *n, int64_t now)
{
	if (n->expired)
		return true;
	return n->has_key_expiry && n->key_expiry <= now + nm->clock_skew;
}

bool netmap_derp_region_may_be_home(const struct netmap_derp_region *r)
{
	bool relays = false;

	for (size_t i = 0; i < r->n_nodes && !relays; i++)
		relays = !r->nodes[i].stun_only;
	return relays && !r->avoid && !r->no_measure_no_home && r->region_id > 0 &&
	       r->region_id <= UINT16_MAX;
}
