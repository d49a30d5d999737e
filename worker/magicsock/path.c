/* A peer's paths, decided as upstream's magicsock endpoint decides them:
 * the same constants, the same order of checks, the same quirks (a
 * CallMeMaybe drops the previous one's endpoints even if the netmap lists
 * them; a Pong through DERP proves nothing). What upstream does only for
 * path-MTU probing, UDP lifetime probing, "tailscale ping" and
 * WireGuard-only peers is left out: all are off for a plain peer. */
#include "path.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mem.h"

static uint64_t since(uint64_t now, uint64_t then)
{
	return now > then ? now - then : 0;
}

/* ---- Chunked tables ------------------------------------------------- */

/* Each table is the slots of its allocated chunks, in order; a slot past
 * them is unused (the same as a free one in a table of the full bound),
 * which is why only trailing chunks with nothing in use are ever freed.
 * Slot i of a table for i below *_slots(). */

static size_t ep_slots(const struct path *p)
{
	return (size_t)p->n_eps * PATH_EP_CHUNK;
}

static struct path_endpoint *ep_at(const struct path *p, size_t i)
{
	return &p->eps[i / PATH_EP_CHUNK][i % PATH_EP_CHUNK];
}

static size_t ping_slots(const struct path *p)
{
	return (size_t)p->n_pings * PATH_PING_CHUNK;
}

static struct path_ping *ping_at(const struct path *p, size_t i)
{
	return &p->pings[i / PATH_PING_CHUNK][i % PATH_PING_CHUNK];
}

static size_t confirmed_slots(const struct path *p)
{
	return (size_t)p->n_confirmed * PATH_CONFIRMED_CHUNK;
}

static struct path_confirmed *confirmed_at(const struct path *p, size_t i)
{
	return &p->confirmed[i / PATH_CONFIRMED_CHUNK][i % PATH_CONFIRMED_CHUNK];
}

/* The first slot of a new zeroed chunk, or NULL at the table's bound. */
static struct path_endpoint *ep_grow(struct path *p)
{
	if (p->n_eps == PATH_EP_CHUNKS)
		return NULL;
	p->eps[p->n_eps] = xcalloc(PATH_EP_CHUNK, sizeof(struct path_endpoint));
	return p->eps[p->n_eps++];
}

static struct path_ping *ping_grow(struct path *p)
{
	if (p->n_pings == PATH_PING_CHUNKS)
		return NULL;
	p->pings[p->n_pings] = xcalloc(PATH_PING_CHUNK, sizeof(struct path_ping));
	return p->pings[p->n_pings++];
}

static struct path_confirmed *confirmed_grow(struct path *p)
{
	if (p->n_confirmed == PATH_CONFIRMED_CHUNKS)
		return NULL;
	p->confirmed[p->n_confirmed] = xcalloc(PATH_CONFIRMED_CHUNK, sizeof(struct path_confirmed));
	return p->confirmed[p->n_confirmed++];
}

static bool ep_chunk_unused(const struct path_endpoint *c)
{
	for (size_t i = 0; i < PATH_EP_CHUNK; i++)
		if (c[i].used)
			return false;
	return true;
}

static bool ping_chunk_unused(const struct path_ping *c)
{
	for (size_t i = 0; i < PATH_PING_CHUNK; i++)
		if (c[i].used)
			return false;
	return true;
}

static bool confirmed_chunk_unused(const struct path_confirmed *c)
{
	for (size_t i = 0; i < PATH_CONFIRMED_CHUNK; i++)
		if (c[i].at)
			return false;
	return true;
}

/* Frees the trailing chunks with no slot in use. Only at the end of an
 * event: no pointer into a table outlives the call that took it. */
static void trim(struct path *p)
{
	while (p->n_eps > 0 && ep_chunk_unused(p->eps[p->n_eps - 1])) {
		free(p->eps[--p->n_eps]);
		p->eps[p->n_eps] = NULL;
	}
	while (p->n_pings > 0 && ping_chunk_unused(p->pings[p->n_pings - 1])) {
		free(p->pings[--p->n_pings]);
		p->pings[p->n_pings] = NULL;
	}
	while (p->n_confirmed > 0 && confirmed_chunk_unused(p->confirmed[p->n_confirmed - 1])) {
		free(p->confirmed[--p->n_confirmed]);
		p->confirmed[p->n_confirmed] = NULL;
	}
}

/* ---- Endpoints ------------------------------------------------------ */

static struct path_endpoint *ep_find(struct path *p, const struct disco_addr *a)
{
	for (size_t i = 0; i < ep_slots(p); i++) {
		struct path_endpoint *ep = ep_at(p, i);

		if (ep->used && disco_addr_equal(&ep->addr, a))
			return ep;
	}
	return NULL;
}

/* Whether ep has outlived every reason to keep it: a CallMeMaybe keeps it
 * until the next one, the netmap while it lists it, the peer's pings for
 * PATH_SESSION_ACTIVE_TIMEOUT_MS after the last. */
static bool ep_should_delete(const struct path_endpoint *ep, uint64_t now)
{
	if (ep->call_me_maybe_time)
		return false;
	if (!ep->last_got_ping)
		return !ep->from_netmap;
	return since(now, ep->last_got_ping) > PATH_SESSION_ACTIVE_TIMEOUT_MS;
}

static void ep_delete(struct path *p, struct path_endpoint *ep)
{
	/* Only the address: trust_best_until no longer matters without it. */
	if (disco_addr_equal(&p->best, &ep->addr)) {
		memset(&p->best, 0, sizeof(p->best));
		p->best_latency_ms = 0;
	}
	memset(ep, 0, sizeof(*ep));
}

/* Forgets what pinging ep taught us, not why we know it. */
static void ep_clear(struct path_endpoint *ep)
{
	ep->last_ping = 0;
	ep->call_me_maybe_time = 0;
	memset(ep->last_got_ping_txid, 0, sizeof(ep->last_got_ping_txid));
	ep->has_latency = false;
	ep->latency_ms = 0;
}

/* A new endpoint for a, or NULL when the table stays full after the
 * endpoints that should go have gone. A free slot, else a new chunk (the
 * free slots of a table of the full bound), and only at the bound are the
 * endpoints that should go deleted. */
static struct path_endpoint *ep_add(struct path *p, const struct disco_addr *a, uint64_t now)
{
	struct path_endpoint *free_slot = NULL;

	for (int pass = 0; pass < 2 && !free_slot; pass++) {
		for (size_t i = 0; i < ep_slots(p); i++) {
			struct path_endpoint *ep = ep_at(p, i);

			if (pass == 1 && ep->used && ep_should_delete(ep, now))
				ep_delete(p, ep);
			if (!ep->used) {
				free_slot = ep;
				break;
			}
		}
		if (pass == 0 && !free_slot)
			free_slot = ep_grow(p);
	}
	if (!free_slot) {
		p->endpoints_dropped++;
		return NULL;
	}
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->used = true;
	free_slot->addr = *a;
	return free_slot;
}

static void clear_best(struct path *p)
{
	memset(&p->best, 0, sizeof(p->best));
	p->best_latency_ms = 0;
	p->best_at = 0;
	p->trust_best_until = 0;
}

/* ---- Pings in flight ------------------------------------------------- */

static struct path_ping *ping_find(struct path *p, const uint8_t txid[DISCO_TXID_LEN])
{
	for (size_t i = 0; i < ping_slots(p); i++) {
		struct path_ping *sp = ping_at(p, i);

		if (sp->used && memcmp(sp->txid, txid, DISCO_TXID_LEN) == 0)
			return sp;
	}
	return NULL;
}

/* A free slot (a new chunk's included), or at the bound the oldest
 * ping's: it is the nearest to timing out. */
static struct path_ping *ping_slot(struct path *p)
{
	struct path_ping *oldest = NULL, *sp;

	for (size_t i = 0; i < ping_slots(p); i++) {
		sp = ping_at(p, i);
		if (!sp->used)
			return sp;
		if (!oldest || sp->at < oldest->at)
			oldest = sp;
	}
	sp = ping_grow(p);
	return sp ? sp : oldest;
}

static struct path_action *push(struct path_out *out, enum path_action_type type,
				const struct disco_addr *to)
{
	struct path_action *a;

	/* PATH_MAX_ACTIONS covers the most one event asks for. */
	if (out->n >= PATH_MAX_ACTIONS)
		return NULL;
	a = &out->actions[out->n++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	a->to = *to;
	return a;
}

static void start_ping(struct path *p, uint64_t now, const struct disco_addr *to,
		       enum path_purpose purpose, struct path_out *out)
{
	struct path_endpoint *ep = ep_find(p, to);
	struct path_ping *sp;
	struct path_action *a;

	/* Never ping an address that is not (or no longer) a candidate. */
	if (!ep)
		return;
	a = push(out, PATH_SEND_PING, to);
	if (!a)
		return;
	ep->last_ping = now;
	sp = ping_slot(p);
	sp->used = true;
	sp->purpose = purpose;
	sp->to = *to;
	sp->at = now;
	randombytes_buf(sp->txid, sizeof(sp->txid));
	a->purpose = purpose;
	memcpy(a->txid, sp->txid, DISCO_TXID_LEN);
}

/* One round of discovery: every endpoint not pinged in the last
 * PATH_DISCO_PING_INTERVAL_MS, and, when any was and send_cmm, a
 * CallMeMaybe through DERP so the peer pings back through the holes our
 * pings just opened in our firewall. */
static void send_pings(struct path *p, uint64_t now, bool send_cmm, struct path_out *out)
{
	bool sent_any = false;

	p->last_full_ping = now;
	for (size_t i = 0; i < ep_slots(p); i++) {
		struct path_endpoint *ep = ep_at(p, i);

		if (!ep->used)
			continue;
		if (ep_should_delete(ep, now)) {
			ep_delete(p, ep);
			continue;
		}
		if (ep->last_ping && since(now, ep->last_ping) < PATH_DISCO_PING_INTERVAL_MS)
			continue;
		sent_any = true;
		start_ping(p, now, &ep->addr, PATH_PING_DISCOVERY, out);
	}
	if (sent_any && send_cmm && p->has_derp) {
		struct disco_addr derp;

		disco_addr_derp(p->derp_region, &derp);
		push(out, PATH_SEND_CALL_ME_MAYBE, &derp);
	}
}

/* ---- Confirmed sources ------------------------------------------------ */

static void confirm(struct path *p, const struct disco_addr *src, uint64_t now)
{
	struct path_confirmed *slot = NULL;

	for (size_t i = 0; i < confirmed_slots(p); i++) {
		struct path_confirmed *c = confirmed_at(p, i);

		if (c->at && disco_addr_equal(&c->addr, src)) {
			c->at = now;
			return;
		}
		/* A free slot, else the oldest (at 0 sorts first). */
		if (!slot || c->at < slot->at)
			slot = c;
	}
	/* None free: a new chunk's first slot, or at the bound the oldest. */
	if (!slot || slot->at) {
		struct path_confirmed *fresh = confirmed_grow(p);

		if (fresh)
			slot = fresh;
	}
	slot->addr = *src;
	slot->at = now;
}

bool path_accepts_wg(const struct path *p, const struct disco_addr *src)
{
	for (size_t i = 0; i < confirmed_slots(p); i++) {
		const struct path_confirmed *c = confirmed_at(p, i);

		if (c->at && disco_addr_equal(&c->addr, src))
			return true;
	}
	return false;
}

void path_unconfirm(struct path *p, const struct disco_addr *src)
{
	for (size_t i = 0; i < confirmed_slots(p); i++) {
		struct path_confirmed *c = confirmed_at(p, i);

		if (c->at && disco_addr_equal(&c->addr, src))
			memset(c, 0, sizeof(*c));
	}
}

/* ---- Which address is better ------------------------------------------ */

static bool is_loopback(const struct disco_addr *a)
{
	static const uint8_t v6[16] = {[15] = 1};

	if (disco_addr_is4(a))
		return a->ip[12] == 127;
	return memcmp(a->ip, v6, 16) == 0;
}

static bool is_link_local(const struct disco_addr *a)
{
	if (disco_addr_is4(a))
		return a->ip[12] == 169 && a->ip[13] == 254;
	return a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80;
}

static bool is_private(const struct disco_addr *a)
{
	const uint8_t *v4 = a->ip + 12;

	if (disco_addr_is4(a))
		return v4[0] == 10 || (v4[0] == 172 && (v4[1] & 0xf0) == 16) ||
		       (v4[0] == 192 && v4[1] == 168);
	return (a->ip[0] & 0xfe) == 0xfc;
}

/* Points for being a nearer kind of address, all else equal. */
static int kind_points(const struct disco_addr *a)
{
	int points = 0;

	if (is_loopback(a))
		points += 50;
	else if (is_link_local(a))
		points += 30;
	else if (is_private(a))
		points += 20;
	/* IPv6 is a little more robust (no NAT). */
	if (!disco_addr_is4(a))
		points += 10;
	return points;
}

/* Whether a (with latency la) beats b (lb). Each starts with the
 * percentage by which it is faster than the slower of the two, then gains
 * kind_points(); a needs more than 1 point of its own to unseat a b that
 * has none, so two equal paths do not flap. */
static bool better_addr(const struct disco_addr *a, uint64_t la, const struct disco_addr *b,
			uint64_t lb)
{
	int64_t pa = 0, pb = 0;

	/* No path-MTU probing: the same address is never better. */
	if (disco_addr_equal(a, b))
		return false;
	if (!disco_addr_is_valid(b))
		return true;
	if (!disco_addr_is_valid(a))
		return false;
	if (la > lb && la > 0)
		pb = 100 - (int64_t)(lb * 100 / la);
	else if (lb > 0)
		pa = 100 - (int64_t)(la * 100 / lb);
	pa += kind_points(a);
	pb += kind_points(b);
	if (pa <= 1 && pb == 0)
		return false;
	return pa > pb;
}

/* ---- Events ------------------------------------------------------------ */

void path_init(struct path *p)
{
	memset(p, 0, sizeof(*p));
}

void path_destroy(struct path *p)
{
	for (size_t i = 0; i < p->n_eps; i++)
		free(p->eps[i]);
	for (size_t i = 0; i < p->n_pings; i++)
		free(p->pings[i]);
	for (size_t i = 0; i < p->n_confirmed; i++)
		free(p->confirmed[i]);
	memset(p, 0, sizeof(*p));
}

void path_set_derp(struct path *p, uint16_t region)
{
	p->has_derp = region != 0;
	p->derp_region = region;
}

void path_set_endpoints(struct path *p, uint64_t now, const struct disco_addr *eps, size_t n)
{
	struct path_endpoint *ep;

	for (size_t i = 0; i < ep_slots(p); i++)
		ep_at(p, i)->from_netmap = false;
	/* Mark the known ones before adding, so that making room for a new
	 * one never evicts a listed one not yet marked. */
	for (size_t i = 0; i < n; i++)
		if ((ep = ep_find(p, &eps[i])))
			ep->from_netmap = true;
	for (size_t i = 0; i < n; i++) {
		if (!disco_addr_is_valid(&eps[i]) || ep_find(p, &eps[i]))
			continue;
		if ((ep = ep_add(p, &eps[i], now)))
			ep->from_netmap = true;
	}
	for (size_t i = 0; i < ep_slots(p); i++) {
		ep = ep_at(p, i);
		if (ep->used && ep_should_delete(ep, now))
			ep_delete(p, ep);
	}
	trim(p);
}

void path_reset(struct path *p)
{
	/* The heartbeat stays scheduled and stops itself: no send since. */
	p->last_send_ext = 0;
	p->last_full_ping = 0;
	clear_best(p);
	for (size_t i = 0; i < ep_slots(p); i++)
		ep_at(p, i)->last_ping = 0;
	for (size_t i = 0; i < ping_slots(p); i++)
		memset(ping_at(p, i), 0, sizeof(struct path_ping));
	trim(p);
}

void path_note_connectivity_change(struct path *p)
{
	clear_best(p);
	for (size_t i = 0; i < ep_slots(p); i++)
		if (ep_at(p, i)->used)
			ep_clear(ep_at(p, i));
}

void path_note_bad_endpoint(struct path *p, const struct disco_addr *addr)
{
	struct path_endpoint *ep = ep_find(p, addr);

	clear_best(p);
	if (ep)
		ep_clear(ep);
}

bool path_proven(const struct path *p, uint64_t now)
{
	return disco_addr_is_valid(&p->best) && now <= p->trust_best_until;
}

void path_route(const struct path *p, uint64_t now, struct path_route *r)
{
	memset(r, 0, sizeof(*r));
	if (disco_addr_is_valid(&p->best)) {
		r->has_udp = true;
		r->udp = p->best;
		if (now <= p->trust_best_until)
			return;
	}
	/* Not trusted (or none): DERP too, and the stale address as well in
	 * case it still works. */
	r->has_derp = p->has_derp;
	r->derp_region = p->derp_region;
}

int path_on_send(struct path *p, uint64_t now, struct path_out *out)
{
	out->n = 0;
	path_route(p, now, &out->route);
	if (!out->route.has_udp || now > p->trust_best_until)
		send_pings(p, now, true, out);
	p->last_send_ext = now;
	if (!p->heartbeat_at)
		p->heartbeat_at = now + PATH_HEARTBEAT_INTERVAL_MS;
	if (!out->route.has_udp && !out->route.has_derp)
		return -ENETUNREACH;
	return 0;
}

bool path_on_pong(struct path *p, uint64_t now, const uint8_t txid[static DISCO_TXID_LEN],
		  const struct disco_addr *src)
{
	struct path_ping *sp = ping_find(p, txid);
	struct path_endpoint *ep;
	struct disco_addr to;
	uint64_t latency;

	if (!sp)
		return false;
	latency = since(now, sp->at);
	to = sp->to;
	memset(sp, 0, sizeof(*sp));
	/* Its timeout has passed even if path_tick() has not run yet. */
	if (latency >= PATH_PING_TIMEOUT_MS)
		return false;
	/* Through DERP a Pong says the peer is there, nothing about a path. */
	if (disco_addr_is_derp(src))
		return true;
	ep = ep_find(p, &to);
	if (!ep)
		return true;
	confirm(p, src, now);
	ep->has_latency = true;
	ep->latency_ms = latency;
	if (better_addr(&to, latency, &p->best, p->best_latency_ms)) {
		p->best = to;
		p->best_latency_ms = latency;
	}
	if (disco_addr_equal(&p->best, &to)) {
		p->best_latency_ms = latency;
		p->best_at = now;
		p->trust_best_until = now + PATH_TRUST_UDP_ADDR_MS;
	}
	return true;
}

/* Records src as a place the peer pings from; true for a repeat of the
 * last ping from there (upstream sees some pings twice on Linux). */
static bool add_candidate(struct path *p, uint64_t now, const struct disco_addr *src,
			  const uint8_t txid[DISCO_TXID_LEN])
{
	struct path_endpoint *ep = ep_find(p, src);
	bool dup;

	if (ep) {
		dup = memcmp(ep->last_got_ping_txid, txid, DISCO_TXID_LEN) == 0;
		if (!dup)
			memcpy(ep->last_got_ping_txid, txid, DISCO_TXID_LEN);
		/* A netmap or CallMeMaybe endpoint does not become learned. */
		if (ep->last_got_ping)
			ep->last_got_ping = now;
		return dup;
	}
	ep = ep_add(p, src, now);
	if (ep) {
		ep->last_got_ping = now;
		memcpy(ep->last_got_ping_txid, txid, DISCO_TXID_LEN);
	}
	return false;
}

int path_on_ping(struct path *p, uint64_t now, const struct disco_addr *src,
		 const uint8_t txid[static DISCO_TXID_LEN], bool confirm_src, struct path_out *out)
{
	struct path_action *a;

	out->n = 0;
	memset(&out->route, 0, sizeof(out->route));
	if (confirm_src && !disco_addr_is_derp(src))
		confirm(p, src, now);
	if (add_candidate(p, now, src, txid))
		return -EALREADY;
	a = push(out, PATH_SEND_PONG, src);
	if (a)
		memcpy(a->txid, txid, DISCO_TXID_LEN);
	return 0;
}

void path_on_call_me_maybe(struct path *p, uint64_t now, const struct disco_addr *eps, size_t n,
			   struct path_out *out)
{
	/* By slot: slots of chunks added below were free before. */
	bool was_cmm[PATH_MAX_ENDPOINTS] = {false};
	struct path_endpoint *ep;

	out->n = 0;
	memset(&out->route, 0, sizeof(out->route));
	for (size_t i = 0; i < ep_slots(p); i++) {
		ep = ep_at(p, i);
		was_cmm[i] = ep->used && ep->is_call_me_maybe;
		ep->is_call_me_maybe = false;
	}
	for (size_t i = 0; i < n; i++) {
		/* Link-local IPv6 needs a zone to ping; upstream skips it. */
		if (!disco_addr_is_valid(&eps[i]) ||
		    (!disco_addr_is4(&eps[i]) && is_link_local(&eps[i])))
			continue;
		ep = ep_find(p, &eps[i]);
		if (!ep)
			ep = ep_add(p, &eps[i], now);
		if (!ep)
			continue;
		ep->is_call_me_maybe = true;
		ep->call_me_maybe_time = now;
	}
	/* The previous CallMeMaybe's endpoints this one left out go. */
	for (size_t i = 0; i < ep_slots(p); i++) {
		ep = ep_at(p, i);
		if (was_cmm[i] && ep->used && !ep->is_call_me_maybe)
			ep_delete(p, ep);
	}
	/* The peer is punching holes now: ping everything at once. */
	for (size_t i = 0; i < ep_slots(p); i++)
		ep_at(p, i)->last_ping = 0;
	send_pings(p, now, false, out);
}

void path_ping_failed(struct path *p, const uint8_t txid[static DISCO_TXID_LEN])
{
	struct path_ping *sp = ping_find(p, txid);

	if (sp)
		memset(sp, 0, sizeof(*sp));
}

static bool want_full_ping(const struct path *p, uint64_t now)
{
	if (!disco_addr_is_valid(&p->best) || !p->last_full_ping)
		return true;
	if (now > p->trust_best_until)
		return true;
	if (p->best_latency_ms <= PATH_GOOD_ENOUGH_LATENCY_MS)
		return false;
	return since(now, p->last_full_ping) >= PATH_UPGRADE_INTERVAL_MS;
}

/* Keeps the best path alive while WireGuard flows, and looks for a better
 * one when it is untrusted or slow; stops after a quiet session. */
static void heartbeat(struct path *p, uint64_t now, struct path_out *out)
{
	struct path_route r;

	p->heartbeat_at = 0;
	if (!p->last_send_ext || since(now, p->last_send_ext) > PATH_SESSION_ACTIVE_TIMEOUT_MS)
		return;
	path_route(p, now, &r);
	if (r.has_udp)
		start_ping(p, now, &r.udp, PATH_PING_HEARTBEAT, out);
	if (want_full_ping(p, now))
		send_pings(p, now, true, out);
	p->heartbeat_at = now + PATH_HEARTBEAT_INTERVAL_MS;
}

void path_tick(struct path *p, uint64_t now, struct path_out *out)
{
	out->n = 0;
	memset(&out->route, 0, sizeof(out->route));
	for (size_t i = 0; i < ping_slots(p); i++) {
		struct path_ping *sp = ping_at(p, i);

		if (sp->used && since(now, sp->at) >= PATH_PING_TIMEOUT_MS)
			memset(sp, 0, sizeof(*sp));
	}
	if (p->heartbeat_at && now >= p->heartbeat_at)
		heartbeat(p, now, out);
	trim(p);
}

uint64_t path_next_deadline(const struct path *p)
{
	uint64_t next = p->heartbeat_at ? p->heartbeat_at : UINT64_MAX;

	for (size_t i = 0; i < ping_slots(p); i++) {
		const struct path_ping *sp = ping_at(p, i);

		if (sp->used && sp->at + PATH_PING_TIMEOUT_MS < next)
			next = sp->at + PATH_PING_TIMEOUT_MS;
	}
	return next;
}
