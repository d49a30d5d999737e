/* One peer's paths over scripted timelines, each step an event at a time
 * in ms and what must come out: with no path WireGuard goes through DERP
 * while every endpoint is pinged and a CallMeMaybe sent; a Pong makes its
 * address the only path; silence for the trust duration brings DERP back;
 * a better Pong switches; unknown, late and DERP Pongs change nothing;
 * heartbeats run while WireGuard flows and stop after 45 s idle; the
 * peer's pings add candidates and confirm sources; a CallMeMaybe replaces
 * the previous one's endpoints and pings all at once; and the choice of
 * the better address, point by point, as upstream's betterAddr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/magicsock/path.c"
#include "tests/unit/worker/magicsock/disco_text.h"

enum { T0 = 100000, REGION = 7 };

static struct disco_addr addr(const char *s)
{
	struct disco_addr a;

	test_addr(s, &a);
	return a;
}

/* The action in out of type to `to`, or NULL. */
static const struct path_action *find_action(const struct path_out *out, enum path_action_type type,
					     const char *to)
{
	struct disco_addr a = addr(to);

	for (size_t i = 0; i < out->n; i++)
		if (out->actions[i].type == type && disco_addr_equal(&out->actions[i].to, &a))
			return &out->actions[i];
	return NULL;
}

static size_t count(const struct path_out *out, enum path_action_type type)
{
	size_t n = 0;

	for (size_t i = 0; i < out->n; i++)
		n += out->actions[i].type == type;
	return n;
}

/* The TxID of the ping in out to `to` (the test fails without one). */
static const uint8_t *ping_to(const struct path_out *out, const char *to)
{
	const struct path_action *a = find_action(out, PATH_SEND_PING, to);

	if (!a)
		fail_msg("no ping to %s", to);
	return a->txid;
}

static void assert_route(const struct path *p, uint64_t now, const char *udp, bool derp)
{
	struct path_route r;
	struct disco_addr a;

	path_route(p, now, &r);
	assert_int_equal(r.has_udp, udp != NULL);
	if (udp) {
		a = addr(udp);
		assert_true(disco_addr_equal(&r.udp, &a));
	}
	assert_int_equal(r.has_derp, derp);
	if (derp)
		assert_int_equal(r.derp_region, REGION);
}

/* A peer with a home DERP region and two netmap endpoints. */
static void peer(struct path *p)
{
	struct disco_addr eps[] = {addr("198.51.100.7:41641"), addr("[2001:db8::7]:41641")};

	path_init(p);
	path_set_derp(p, REGION);
	path_set_endpoints(p, T0, eps, 2);
}

/* The first packet finds no path: DERP, and discovery. */
static void test_first_send_goes_through_derp(void **state)
{
	struct path p;
	struct path_out out;

	(void)state;
	peer(&p);
	assert_route(&p, T0, NULL, true);
	assert_int_equal(path_on_send(&p, T0, &out), 0);
	assert_false(out.route.has_udp);
	assert_true(out.route.has_derp);
	assert_int_equal(out.route.derp_region, REGION);
	assert_int_equal(count(&out, PATH_SEND_PING), 2);
	assert_non_null(find_action(&out, PATH_SEND_PING, "198.51.100.7:41641"));
	assert_non_null(find_action(&out, PATH_SEND_PING, "[2001:db8::7]:41641"));
	assert_int_equal(find_action(&out, PATH_SEND_PING, "198.51.100.7:41641")->purpose,
			 PATH_PING_DISCOVERY);
	assert_non_null(find_action(&out, PATH_SEND_CALL_ME_MAYBE, "127.3.3.40:7"));
	/* Two TxIDs, distinct. */
	assert_memory_not_equal(out.actions[0].txid, out.actions[1].txid, DISCO_TXID_LEN);
	/* A second packet 1 s later pings nothing again (5 s interval). */
	assert_int_equal(path_on_send(&p, T0 + 1000, &out), 0);
	assert_int_equal(out.n, 0);
	/* Heartbeat 3 s after the first send; pings time out at 5 s. */
	assert_int_equal(path_next_deadline(&p), T0 + PATH_HEARTBEAT_INTERVAL_MS);
	/* With neither DERP nor a path, nowhere to send. */
	path_set_derp(&p, 0);
	assert_int_equal(path_on_send(&p, T0 + 2000, &out), -ENETUNREACH);
	path_destroy(&p);
}

/* A Pong proves its address: direct only, and WireGuard from there is
 * accepted; silence for the trust duration brings DERP back. */
static void test_pong_makes_direct_and_silence_returns_to_derp(void **state)
{
	struct path p;
	struct path_out out, sent;
	struct disco_addr v4 = addr("198.51.100.7:41641");
	const uint64_t pong_at = T0 + 30;

	(void)state;
	peer(&p);
	assert_int_equal(path_on_send(&p, T0, &sent), 0);
	assert_false(path_accepts_wg(&p, &v4));
	assert_true(path_on_pong(&p, pong_at, ping_to(&sent, "198.51.100.7:41641"), &v4));
	assert_int_equal(p.best_latency_ms, 30);
	assert_true(path_accepts_wg(&p, &v4));
	assert_route(&p, pong_at, "198.51.100.7:41641", false);
	assert_route(&p, pong_at + PATH_TRUST_UDP_ADDR_MS, "198.51.100.7:41641", false);
	/* The same TxID again is no longer in flight. */
	assert_false(path_on_pong(&p, pong_at + 1, ping_to(&sent, "198.51.100.7:41641"), &v4));
	/* A packet while trusted: direct, no discovery. */
	assert_int_equal(path_on_send(&p, pong_at + 100, &out), 0);
	assert_true(out.route.has_udp);
	assert_false(out.route.has_derp);
	assert_int_equal(out.n, 0);
	/* One ms past trust, nothing heard: DERP as well, and the old path. */
	assert_route(&p, pong_at + PATH_TRUST_UDP_ADDR_MS + 1, "198.51.100.7:41641", true);
	/* A packet then starts discovery again. */
	assert_int_equal(path_on_send(&p, pong_at + PATH_TRUST_UDP_ADDR_MS + 1, &out), 0);
	assert_true(out.route.has_udp);
	assert_true(out.route.has_derp);
	assert_int_equal(count(&out, PATH_SEND_PING), 2);
	assert_int_equal(count(&out, PATH_SEND_CALL_ME_MAYBE), 1);
	/* Its Pong makes it direct again. */
	assert_true(path_on_pong(&p, pong_at + PATH_TRUST_UDP_ADDR_MS + 20,
				 ping_to(&out, "198.51.100.7:41641"), &v4));
	assert_route(&p, pong_at + PATH_TRUST_UDP_ADDR_MS + 21, "198.51.100.7:41641", false);
	path_destroy(&p);
}

/* Heartbeats every 3 s keep the path trusted while Pongs come back, and
 * the path falls back to DERP when they stop; after 45 s without
 * WireGuard the heartbeats stop. */
static void test_heartbeat_timeline(void **state)
{
	struct path p;
	struct path_out out;
	struct disco_addr v4 = addr("198.51.100.7:41641");
	uint64_t now = T0;

	(void)state;
	peer(&p);
	assert_int_equal(path_on_send(&p, now, &out), 0);
	assert_true(path_on_pong(&p, now + 10, ping_to(&out, "198.51.100.7:41641"), &v4));
	/* Heartbeats answered for 30 s: always direct. */
	for (int i = 0; i < 10; i++) {
		/* The first ping to IPv6 times out on the way. */
		while (path_next_deadline(&p) < p.heartbeat_at) {
			path_tick(&p, path_next_deadline(&p), &out);
			assert_int_equal(out.n, 0);
		}
		now = path_next_deadline(&p);
		path_tick(&p, now, &out);
		assert_int_equal(find_action(&out, PATH_SEND_PING, "198.51.100.7:41641")->purpose,
				 PATH_PING_HEARTBEAT);
		assert_true(path_on_pong(&p, now + 10, ping_to(&out, "198.51.100.7:41641"), &v4));
		assert_route(&p, now + 10, "198.51.100.7:41641", false);
	}
	/* Latency 10 ms > good enough: a full round every 60 s. After
	 * 30 s none yet beyond the first. */
	assert_int_equal(p.last_full_ping, T0);
	/* The peer goes away: heartbeats go unanswered. */
	uint64_t last_pong = now + 10;
	while ((now = path_next_deadline(&p)) <= last_pong + PATH_TRUST_UDP_ADDR_MS) {
		path_tick(&p, now, &out);
		assert_route(&p, now, "198.51.100.7:41641", false);
	}
	assert_route(&p, last_pong + PATH_TRUST_UDP_ADDR_MS + 1, "198.51.100.7:41641", true);
	/* The next heartbeat sees the untrusted path: full discovery. */
	now = p.heartbeat_at;
	path_tick(&p, now, &out);
	assert_non_null(find_action(&out, PATH_SEND_CALL_ME_MAYBE, "127.3.3.40:7"));
	assert_non_null(find_action(&out, PATH_SEND_PING, "[2001:db8::7]:41641"));
	/* No WireGuard since T0 + 0: heartbeats stop 45 s after it. */
	while (p.heartbeat_at) {
		now = p.heartbeat_at;
		path_tick(&p, now, &out);
	}
	assert_true(now > T0 + PATH_SESSION_ACTIVE_TIMEOUT_MS);
	assert_true(now <= T0 + PATH_SESSION_ACTIVE_TIMEOUT_MS + PATH_HEARTBEAT_INTERVAL_MS);
	assert_int_equal(out.n, 0);
	/* All pings have timed out by their deadline; then nothing is due. */
	path_tick(&p, now + PATH_PING_TIMEOUT_MS, &out);
	assert_int_equal(path_next_deadline(&p), UINT64_MAX);
	path_destroy(&p);
}

/* A faster Pong from another endpoint switches; a close one does not. */
static void test_better_pong_switches(void **state)
{
	struct path p;
	struct path_out out;
	struct disco_addr v4 = addr("198.51.100.7:41641"), v6 = addr("[2001:db8::7]:41641");

	(void)state;
	peer(&p);
	assert_int_equal(path_on_send(&p, T0, &out), 0);
	/* IPv4 answers in 40 ms; IPv6 not at all. */
	assert_true(path_on_pong(&p, T0 + 40, ping_to(&out, "198.51.100.7:41641"), &v4));
	assert_route(&p, T0 + 40, "198.51.100.7:41641", false);
	/* A CallMeMaybe pings both again at once: IPv6 in 10 ms wins. */
	path_on_call_me_maybe(&p, T0 + 1000, NULL, 0, &out);
	assert_int_equal(count(&out, PATH_SEND_PING), 2);
	assert_true(path_on_pong(&p, T0 + 1010, ping_to(&out, "[2001:db8::7]:41641"), &v6));
	assert_true(disco_addr_equal(&p.best, &v6));
	assert_int_equal(p.best_latency_ms, 10);
	assert_route(&p, T0 + 1010, "[2001:db8::7]:41641", false);
	/* IPv4 in 11 ms is faster than it was, but not better than IPv6. */
	assert_true(path_on_pong(&p, T0 + 1011, ping_to(&out, "198.51.100.7:41641"), &v4));
	assert_true(disco_addr_equal(&p.best, &v6));
	assert_int_equal(ep_find(&p, &v4)->latency_ms, 11);
	/* Both confirmed: either may carry WireGuard. */
	assert_true(path_accepts_wg(&p, &v4));
	assert_true(path_accepts_wg(&p, &v6));
	path_destroy(&p);
}

static void test_unknown_late_and_derp_pongs(void **state)
{
	struct path p;
	struct path_out out;
	struct disco_addr v4 = addr("198.51.100.7:41641"), v6 = addr("[2001:db8::7]:41641"), derp;
	uint8_t unknown[DISCO_TXID_LEN] = {1, 2, 3};

	(void)state;
	disco_addr_derp(REGION, &derp);
	peer(&p);
	assert_int_equal(path_on_send(&p, T0, &out), 0);
	/* Not ours. */
	assert_false(path_on_pong(&p, T0 + 10, unknown, &v4));
	/* Late: at the timeout, even before path_tick() ran. */
	assert_false(path_on_pong(&p, T0 + PATH_PING_TIMEOUT_MS,
				  ping_to(&out, "198.51.100.7:41641"), &v4));
	/* Through DERP: ours, but no path and no confirmation. */
	assert_true(path_on_pong(&p, T0 + 10, ping_to(&out, "[2001:db8::7]:41641"), &derp));
	assert_false(disco_addr_is_valid(&p.best));
	assert_false(path_accepts_wg(&p, &v4));
	assert_false(path_accepts_wg(&p, &derp));
	assert_route(&p, T0 + 10, NULL, true);
	/* A ping that could not be sent is forgotten. */
	assert_int_equal(path_on_send(&p, T0 + PATH_DISCO_PING_INTERVAL_MS, &out), 0);
	path_ping_failed(&p, ping_to(&out, "198.51.100.7:41641"));
	assert_false(path_on_pong(&p, T0 + PATH_DISCO_PING_INTERVAL_MS + 5,
				  ping_to(&out, "198.51.100.7:41641"), &v4));
	/* After path_reset (the peer's disco key changed) nothing in flight
	 * counts and the path is gone. */
	assert_true(path_on_pong(&p, T0 + PATH_DISCO_PING_INTERVAL_MS + 5,
				 ping_to(&out, "[2001:db8::7]:41641"), &v6));
	assert_true(disco_addr_is_valid(&p.best));
	assert_int_equal(path_on_send(&p, T0 + 3 * PATH_DISCO_PING_INTERVAL_MS, &out), 0);
	path_reset(&p);
	assert_false(disco_addr_is_valid(&p.best));
	assert_false(path_on_pong(&p, T0 + 3 * PATH_DISCO_PING_INTERVAL_MS + 5,
				  ping_to(&out, "[2001:db8::7]:41641"), &v4));
	assert_route(&p, T0 + 3 * PATH_DISCO_PING_INTERVAL_MS + 5, NULL, true);
	path_destroy(&p);
}

/* The peer's pings: a Pong back, a new candidate that we ping in turn,
 * duplicates dropped, sources confirmed only when the caller is sure. */
static void test_incoming_pings(void **state)
{
	struct path p;
	struct path_out out;
	struct disco_addr nat = addr("203.0.113.9:60000"), lan = addr("10.0.3.12:41641"), derp;
	uint8_t tx1[DISCO_TXID_LEN] = {1}, tx2[DISCO_TXID_LEN] = {2};

	(void)state;
	disco_addr_derp(REGION, &derp);
	peer(&p);
	assert_int_equal(path_on_ping(&p, T0, &nat, tx1, true, &out), 0);
	assert_int_equal(out.n, 1);
	assert_int_equal(out.actions[0].type, PATH_SEND_PONG);
	assert_true(disco_addr_equal(&out.actions[0].to, &nat));
	assert_memory_equal(out.actions[0].txid, tx1, DISCO_TXID_LEN);
	assert_true(path_accepts_wg(&p, &nat));
	/* The same ping again (seen twice): no Pong. */
	assert_int_equal(path_on_ping(&p, T0 + 1, &nat, tx1, true, &out), -EALREADY);
	assert_int_equal(out.n, 0);
	assert_int_equal(path_on_ping(&p, T0 + 2, &nat, tx2, true, &out), 0);
	/* Ambiguous sender: a Pong, a candidate, but not WireGuard's. */
	assert_int_equal(path_on_ping(&p, T0, &lan, tx1, false, &out), 0);
	assert_false(path_accepts_wg(&p, &lan));
	/* Through DERP: a Pong through DERP, never a WireGuard source. */
	assert_int_equal(path_on_ping(&p, T0, &derp, tx1, true, &out), 0);
	assert_non_null(find_action(&out, PATH_SEND_PONG, "127.3.3.40:7"));
	assert_false(path_accepts_wg(&p, &derp));
	/* Our next discovery pings the learned candidates too. */
	assert_int_equal(path_on_send(&p, T0 + 10, &out), 0);
	assert_non_null(find_action(&out, PATH_SEND_PING, "203.0.113.9:60000"));
	assert_non_null(find_action(&out, PATH_SEND_PING, "10.0.3.12:41641"));
	assert_int_equal(count(&out, PATH_SEND_PING), 5);
	/* Another peer confirmed the NAT address: no longer this one's. */
	path_unconfirm(&p, &nat);
	assert_false(path_accepts_wg(&p, &nat));
	/* Learned candidates go 45 s after the peer's last ping from them;
	 * netmap ones stay. */
	assert_int_equal(path_on_ping(&p, T0 + 40000, &lan, tx2, false, &out), 0);
	assert_int_equal(path_on_send(&p, T0 + 2 + PATH_SESSION_ACTIVE_TIMEOUT_MS + 1, &out), 0);
	assert_null(find_action(&out, PATH_SEND_PING, "203.0.113.9:60000"));
	assert_non_null(find_action(&out, PATH_SEND_PING, "10.0.3.12:41641"));
	assert_non_null(find_action(&out, PATH_SEND_PING, "198.51.100.7:41641"));
	assert_null(ep_find(&p, &nat));
	/* A netmap endpoint the peer pings from stays a netmap endpoint: it
	 * does not expire 45 s later. */
	struct disco_addr v4 = addr("198.51.100.7:41641");
	assert_int_equal(path_on_ping(&p, T0 + 50000, &v4, tx1, true, &out), 0);
	assert_int_equal(path_on_send(&p, T0 + 100000, &out), 0);
	assert_non_null(find_action(&out, PATH_SEND_PING, "198.51.100.7:41641"));
	assert_null(find_action(&out, PATH_SEND_PING, "10.0.3.12:41641"));
	path_destroy(&p);
}

/* A CallMeMaybe: its endpoints join, all are pinged at once even if
 * pinged a moment ago, no CallMeMaybe goes back; the next one drops
 * the endpoints it left out; link-local IPv6 is passed over. */
static void test_call_me_maybe(void **state)
{
	struct path p;
	struct path_out out;
	struct disco_addr first[] = {addr("192.0.2.50:1234"), addr("198.51.100.7:41641"),
				     addr("[fe80::1]:41641")};
	struct disco_addr second[] = {addr("192.0.2.51:1234")};

	(void)state;
	peer(&p);
	assert_int_equal(path_on_send(&p, T0, &out), 0);
	path_on_call_me_maybe(&p, T0 + 100, first, 3, &out);
	assert_int_equal(count(&out, PATH_SEND_PING), 3);
	assert_non_null(find_action(&out, PATH_SEND_PING, "192.0.2.50:1234"));
	assert_non_null(find_action(&out, PATH_SEND_PING, "198.51.100.7:41641"));
	assert_null(find_action(&out, PATH_SEND_PING, "[fe80::1]:41641"));
	assert_int_equal(count(&out, PATH_SEND_CALL_ME_MAYBE), 0);
	/* Not a netmap endpoint, but kept while the CallMeMaybe stands. */
	path_set_endpoints(&p, T0 + 200, NULL, 0);
	assert_non_null(ep_find(&p, &first[0]));
	assert_non_null(ep_find(&p, &first[1]));
	/* The next CallMeMaybe replaces it (a netmap endpoint it named goes
	 * too, as upstream's does). */
	path_on_call_me_maybe(&p, T0 + 300, second, 1, &out);
	assert_int_equal(count(&out, PATH_SEND_PING), 1);
	assert_null(ep_find(&p, &first[0]));
	assert_null(ep_find(&p, &first[1]));
	assert_non_null(ep_find(&p, &second[0]));
	/* A CallMeMaybe endpoint that became the best path: when the next
	 * CallMeMaybe leaves it out, the best path goes with it. */
	assert_true(path_on_pong(&p, T0 + 310, ping_to(&out, "192.0.2.51:1234"), &second[0]));
	assert_true(disco_addr_equal(&p.best, &second[0]));
	path_on_call_me_maybe(&p, T0 + 400, NULL, 0, &out);
	assert_false(disco_addr_is_valid(&p.best));
	assert_route(&p, T0 + 400, NULL, true);
	path_destroy(&p);
}

/* The netmap endpoints: new ones join, dropped ones go (and the best path
 * with them); a bad endpoint or a network change forgets the best path. */
static void test_netmap_and_bad_endpoints(void **state)
{
	struct path p;
	struct path_out out;
	struct disco_addr v4 = addr("198.51.100.7:41641"), other = addr("192.0.2.9:9"), bad = {0};

	(void)state;
	peer(&p);
	assert_int_equal(path_on_send(&p, T0, &out), 0);
	assert_true(path_on_pong(&p, T0 + 5, ping_to(&out, "198.51.100.7:41641"), &v4));
	path_note_bad_endpoint(&p, &v4);
	assert_route(&p, T0 + 6, NULL, true);
	assert_true(path_accepts_wg(&p, &v4)); /* still the peer's source */
	assert_int_equal(path_on_send(&p, T0 + 7, &out), 0);
	/* Its ping history is gone: pinged again at once. */
	assert_non_null(find_action(&out, PATH_SEND_PING, "198.51.100.7:41641"));
	assert_true(path_on_pong(&p, T0 + 9, ping_to(&out, "198.51.100.7:41641"), &v4));
	path_note_connectivity_change(&p);
	assert_route(&p, T0 + 10, NULL, true);
	assert_int_equal(path_on_send(&p, T0 + 11, &out), 0);
	assert_true(path_on_pong(&p, T0 + 12, ping_to(&out, "198.51.100.7:41641"), &v4));
	/* Dropped from the netmap (an invalid entry is passed over). */
	struct disco_addr eps[] = {other, bad};
	path_set_endpoints(&p, T0 + 20, eps, 2);
	assert_null(ep_find(&p, &v4));
	assert_non_null(ep_find(&p, &other));
	assert_null(ep_find(&p, &bad));
	assert_false(disco_addr_is_valid(&p.best));
	path_destroy(&p);
}

/* The table of endpoints is bounded: beyond it, candidates are counted
 * and refused; expired learned ones make room. */
static void test_endpoint_bound(void **state)
{
	struct path p;
	struct path_out out;
	uint8_t tx[DISCO_TXID_LEN] = {9};
	uint8_t ip[4] = {192, 0, 2, 0};
	struct disco_addr a;

	(void)state;
	peer(&p);
	for (int i = 0; i < PATH_MAX_ENDPOINTS; i++) {
		ip[3] = (uint8_t)i;
		disco_addr_from4(ip, 1000, &a);
		assert_int_equal(path_on_ping(&p, T0, &a, tx, false, &out), 0);
	}
	assert_int_equal(p.endpoints_dropped, 2);
	/* Discovery never asks for more actions than there is room for. */
	assert_int_equal(path_on_send(&p, T0 + 1, &out), 0);
	assert_int_equal(count(&out, PATH_SEND_PING), PATH_MAX_ENDPOINTS);
	assert_int_equal(count(&out, PATH_SEND_CALL_ME_MAYBE), 1);
	/* 45 s on, the learned ones expire and a new one fits. */
	ip[3] = 200;
	disco_addr_from4(ip, 1000, &a);
	assert_int_equal(
		path_on_ping(&p, T0 + PATH_SESSION_ACTIVE_TIMEOUT_MS + 1, &a, tx, false, &out), 0);
	assert_non_null(ep_find(&p, &a));
	assert_int_equal(p.endpoints_dropped, 2);
	/* Confirmed sources are bounded too: the oldest goes. */
	for (int i = 0; i <= PATH_MAX_CONFIRMED; i++) {
		ip[3] = (uint8_t)i;
		disco_addr_from4(ip, 2000, &a);
		confirm(&p, &a, T0 + (uint64_t)i + 1);
	}
	ip[3] = 0;
	disco_addr_from4(ip, 2000, &a);
	assert_false(path_accepts_wg(&p, &a));
	ip[3] = PATH_MAX_CONFIRMED;
	disco_addr_from4(ip, 2000, &a);
	assert_true(path_accepts_wg(&p, &a));
	path_destroy(&p);
}

/* A slow best path is challenged every upgrade interval; a fast one is
 * left alone while trusted. */
static void test_upgrade_interval(void **state)
{
	struct path p;

	(void)state;
	peer(&p);
	p.best = addr("198.51.100.7:41641");
	p.last_full_ping = T0;
	p.trust_best_until = T0 + 100000;
	p.best_latency_ms = PATH_GOOD_ENOUGH_LATENCY_MS;
	assert_false(want_full_ping(&p, T0 + PATH_UPGRADE_INTERVAL_MS));
	p.best_latency_ms = PATH_GOOD_ENOUGH_LATENCY_MS + 1;
	assert_false(want_full_ping(&p, T0 + PATH_UPGRADE_INTERVAL_MS - 1));
	assert_true(want_full_ping(&p, T0 + PATH_UPGRADE_INTERVAL_MS));
	p.best_latency_ms = 1;
	assert_true(want_full_ping(&p, T0 + 100001)); /* untrusted */
	p.last_full_ping = 0;
	assert_true(want_full_ping(&p, T0));
	path_destroy(&p);
}

/* betterAddr, case by case. */
static void test_better_addr(void **state)
{
	struct disco_addr pub4 = addr("198.51.100.7:1"), pub4b = addr("198.51.100.8:1"),
			  pub6 = addr("[2001:db8::7]:1"), lan = addr("10.0.0.2:1"),
			  lan172 = addr("172.31.0.2:1"), lan192 = addr("192.168.1.2:1"),
			  ula = addr("[fd7a::1]:1"), ll4 = addr("169.254.1.1:1"),
			  ll6 = addr("[fe80::1]:1"), lo = addr("127.0.0.1:1"),
			  lo6 = addr("[::1]:1"), none = {0};

	(void)state;
	/* Anything beats nothing; nothing beats nothing or anything. */
	assert_true(better_addr(&pub4, 100, &none, 0));
	assert_false(better_addr(&none, 0, &pub4, 100));
	assert_false(better_addr(&pub4, 1, &pub4, 100)); /* same address */
	/* Lower latency wins by more than 1 %. */
	assert_true(better_addr(&pub4, 10, &pub4b, 20));
	assert_false(better_addr(&pub4, 20, &pub4b, 10));
	assert_false(better_addr(&pub4, 99, &pub4b, 100)); /* 1 point: sticky */
	assert_true(better_addr(&pub4, 98, &pub4b, 100));  /* 2 points */
	assert_false(better_addr(&pub4, 10, &pub4b, 10));
	/* IPv6 preferred when close (+10), not when much slower. */
	assert_true(better_addr(&pub6, 10, &pub4, 10));
	assert_true(better_addr(&pub6, 101, &pub4, 100));
	assert_false(better_addr(&pub6, 11, &pub4, 10)); /* 10 points each */
	assert_false(better_addr(&pub4, 10, &pub6, 10));
	assert_false(better_addr(&pub6, 20, &pub4, 10));
	/* Private +20, link-local +30, loopback +50. */
	assert_true(better_addr(&lan, 10, &pub6, 10));
	assert_true(better_addr(&lan172, 10, &pub4, 10));
	assert_true(better_addr(&lan192, 10, &pub4, 10));
	assert_true(better_addr(&ula, 10, &lan, 10)); /* 20 + 10 */
	assert_true(better_addr(&ll4, 10, &lan, 10));
	assert_true(better_addr(&ll6, 10, &ula, 10)); /* 30 + 10 > 20 + 10 */
	assert_true(better_addr(&lo, 10, &ll6, 10));
	assert_true(better_addr(&lo6, 10, &lo, 10));
	/* 172.32/12 is not private. */
	struct disco_addr not_private = addr("172.32.0.1:1");
	assert_false(better_addr(&not_private, 10, &pub4, 10));
	/* Zero latencies: only the kind decides. */
	assert_false(better_addr(&pub4, 0, &pub4b, 0));
	assert_true(better_addr(&lan, 0, &pub4, 0));
}

/* The tables grow by chunks as they fill: an idle peer with two netmap
 * endpoints holds one chunk of endpoints and nothing else; pings take a
 * chunk while in flight, and the chunks nothing uses any more go once the
 * session is quiet. */
static void test_chunks_follow_use(void **state)
{
	struct path p;
	struct path_out out;
	uint64_t t, last = T0;

	(void)state;
	peer(&p);
	assert_int_equal(p.n_eps, 1);
	assert_int_equal(p.n_pings, 0);
	assert_int_equal(p.n_confirmed, 0);
	assert_int_equal(path_on_send(&p, T0, &out), 0);
	assert_int_equal(count(&out, PATH_SEND_PING), 2);
	assert_int_equal(p.n_pings, 1);
	assert_true(path_on_pong(&p, T0 + 10, out.actions[0].txid, &out.actions[0].to));
	assert_int_equal(p.n_confirmed, 1);
	assert_true(path_accepts_wg(&p, &out.actions[0].to));
	/* Ticks until the heartbeat stops after the quiet session: the
	 * pings time out and their chunk goes; endpoints and the confirmed
	 * source stay (still in use). */
	for (t = path_next_deadline(&p); t != UINT64_MAX; t = path_next_deadline(&p)) {
		path_tick(&p, t, &out);
		last = t;
	}
	assert_true(last > T0 + PATH_SESSION_ACTIVE_TIMEOUT_MS);
	assert_int_equal(p.n_pings, 0);
	assert_null(p.pings[0]);
	assert_int_equal(p.n_eps, 1);
	assert_int_equal(p.n_confirmed, 1);
	/* A netmap without endpoints lets the endpoint chunk go too. */
	path_set_endpoints(&p, last, NULL, 0);
	assert_int_equal(p.n_eps, 0);
	path_unconfirm(&p, &out.actions[0].to);
	path_reset(&p);
	assert_int_equal(p.n_confirmed, 0);
	path_destroy(&p);
}

/* Growing a table never moves what is in it: a pointer taken before
 * other slots were added (as ep_find's and ping_slot's callers hold them
 * within an event) still points at the same entry; and the bounds are
 * today's: 64 endpoints, the 65th refused; 80 pings, the 81st replaces
 * the oldest. */
static void test_growth_keeps_pointers_and_bounds(void **state)
{
	struct path p;
	struct path_out out;
	uint8_t tx[DISCO_TXID_LEN] = {7};
	uint8_t ip[4] = {192, 0, 2, 0};
	struct disco_addr a, first;
	struct path_endpoint *ep;
	struct path_ping *sp, *oldest;
	uint8_t oldest_txid[DISCO_TXID_LEN];

	(void)state;
	path_init(&p);
	disco_addr_from4(ip, 1000, &first);
	assert_int_equal(path_on_ping(&p, T0, &first, tx, false, &out), 0);
	ep = ep_find(&p, &first);
	assert_non_null(ep);
	for (int i = 1; i < PATH_MAX_ENDPOINTS; i++) {
		ip[3] = (uint8_t)i;
		disco_addr_from4(ip, 1000, &a);
		tx[0] = (uint8_t)i;
		assert_int_equal(path_on_ping(&p, T0, &a, tx, false, &out), 0);
	}
	assert_int_equal(p.n_eps, PATH_EP_CHUNKS);
	assert_int_equal(p.endpoints_dropped, 0);
	assert_ptr_equal(ep_find(&p, &first), ep);
	assert_true(ep->used && disco_addr_equal(&ep->addr, &first));
	/* The 65th: refused and counted, nothing allocated. */
	ip[3] = 200;
	disco_addr_from4(ip, 1000, &a);
	assert_int_equal(path_on_ping(&p, T0, &a, tx, false, &out), 0);
	assert_null(ep_find(&p, &a));
	assert_int_equal(p.endpoints_dropped, 1);
	assert_int_equal(p.n_eps, PATH_EP_CHUNKS);

	/* Pings: the first slot keeps its place while 79 more are added. */
	sp = ping_slot(&p);
	sp->used = true;
	sp->at = T0;
	memset(sp->txid, 0xaa, DISCO_TXID_LEN);
	memcpy(oldest_txid, sp->txid, DISCO_TXID_LEN);
	oldest = sp;
	for (int i = 1; i < PATH_MAX_PINGS; i++) {
		struct path_ping *q = ping_slot(&p);

		assert_false(q->used);
		q->used = true;
		q->at = T0 + (uint64_t)i;
		memset(q->txid, i, DISCO_TXID_LEN);
	}
	assert_int_equal(p.n_pings, PATH_PING_CHUNKS);
	assert_ptr_equal(ping_find(&p, oldest_txid), oldest);
	/* The 81st takes the oldest's slot. */
	assert_ptr_equal(ping_slot(&p), oldest);
	assert_int_equal(p.n_pings, PATH_PING_CHUNKS);
	path_destroy(&p);
	assert_int_equal(p.n_eps + p.n_pings + p.n_confirmed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_send_goes_through_derp),
		cmocka_unit_test(test_pong_makes_direct_and_silence_returns_to_derp),
		cmocka_unit_test(test_heartbeat_timeline),
		cmocka_unit_test(test_better_pong_switches),
		cmocka_unit_test(test_unknown_late_and_derp_pongs),
		cmocka_unit_test(test_incoming_pings),
		cmocka_unit_test(test_call_me_maybe),
		cmocka_unit_test(test_netmap_and_bad_endpoints),
		cmocka_unit_test(test_endpoint_bound),
		cmocka_unit_test(test_upgrade_interval),
		cmocka_unit_test(test_better_addr),
		cmocka_unit_test(test_chunks_follow_use),
		cmocka_unit_test(test_growth_keeps_pointers_and_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
