/* The supervisor's dispatcher for worker messages, without processes: a
 * numbered table of (state, message) -> verdict, Ready accepted once, the
 * DerpMapReport's bounds, the rate limit and the bounded outgoing path. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Every file of the module, so that none of their objects is linked too. */
#include "supervisor/workers.c"
#include "supervisor/workers_adopt.c"
#include "supervisor/workers_dispatch.c"
#include "supervisor/workers_spawn.c"
#include "supervisor/workers_zygote.c"

enum msg_kind {
	M_HELLO,
	M_HELLO_BADRANGE,
	M_HELLO_FUTURE,
	M_HELLO_OTHER_POD,
	M_READY,
	M_STATS,
	M_STATS_PEERS,	    /* two peers, one left off */
	M_STATS_BAD_PEER,   /* a host name control's text left uncleaned */
	M_STATS_MANY_PEERS, /* PEER_STATUS_MAX + 1 */
	M_LOG,
	M_LOG_BADLEVEL,
	M_EVENT_TUN_GONE,
	M_EVENT_BADKIND,
	M_EVENT_AUTH_FAILED,
	M_NETOP_OUTSIDE,
	M_NETOP_BADLEN,
	M_RESOLVE,
	M_TEST_REPLY,
	M_EMPTY,
	M_GARBAGE,
	M_CUSTODY,
	M_DERPMAP,	   /* two regions, IPv4 and IPv6 targets */
	M_DERPMAP_MANY,	   /* 65 regions */
	M_DERPMAP_MULTI,   /* a multicast target */
	M_DERPMAP_ORDER,   /* region ids not increasing */
	M_DERPMAP_TARGETS, /* 5 targets in a region */
	M_DERPMAP_NOPORT,  /* port 0 */
};

/* A DerpMapReport of the given kind into m (static storage). */
static void make_derpmap(enum msg_kind k, Tscni__WorkerMsg *m)
{
	static Tscni__DerpMapReport rep;
	static Tscni__DerpRegionTargets regs[NETCHECK_REGIONS_MAX + 1],
		*rp[NETCHECK_REGIONS_MAX + 1];
	static Tscni__StunTarget t[NETCHECK_TARGETS_MAX + 1], *tp[NETCHECK_TARGETS_MAX + 1];
	static uint8_t v4[4] = {127, 0, 0, 1}, mc[4] = {224, 0, 0, 1};
	static uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	size_t n = k == M_DERPMAP_MANY ? NETCHECK_REGIONS_MAX + 1 : 2;

	tscni__derp_map_report__init(&rep);
	for (size_t i = 0; i <= NETCHECK_TARGETS_MAX; i++) {
		tscni__stun_target__init(&t[i]);
		t[i].ip = (ProtobufCBinaryData){.len = i % 2 ? 16 : 4, .data = i % 2 ? v6 : v4};
		t[i].port = k == M_DERPMAP_NOPORT ? 0 : 3478;
		tp[i] = &t[i];
	}
	if (k == M_DERPMAP_MULTI)
		t[0].ip.data = mc;
	for (size_t i = 0; i < n; i++) {
		tscni__derp_region_targets__init(&regs[i]);
		regs[i].region_id = (uint32_t)(900 + i);
		regs[i].targets = tp;
		regs[i].n_targets = k == M_DERPMAP_TARGETS ? NETCHECK_TARGETS_MAX + 1 : 2;
		rp[i] = &regs[i];
	}
	if (k == M_DERPMAP_ORDER)
		regs[1].region_id = 900;
	rep.regions = rp;
	rep.n_regions = n;
	m->body_case = TSCNI__WORKER_MSG__BODY_DERP_MAP_REPORT;
	m->derp_map_report = &rep;
}

/* Packs one message of the given kind into buf; returns its length. */
static size_t make(enum msg_kind k, uint8_t *buf, size_t cap)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Hello h = TSCNI__HELLO__INIT;
	Tscni__Ready r = TSCNI__READY__INIT;
	Tscni__Stats s = TSCNI__STATS__INIT;
	Tscni__Log l = TSCNI__LOG__INIT;
	Tscni__Event e = TSCNI__EVENT__INIT;
	Tscni__NetopRequest n = TSCNI__NETOP_REQUEST__INIT;
	Tscni__IpPrefix p = TSCNI__IP_PREFIX__INIT;
	Tscni__ResolveRequest q = TSCNI__RESOLVE_REQUEST__INIT;
	Tscni__TestReply t = TSCNI__TEST_REPLY__INIT;
	static uint8_t outside[4] = {10, 0, 0, 0};

	h.min_version = 1;
	h.max_version = 1;
	switch (k) {
	case M_HELLO_BADRANGE:
		h.min_version = 0;
		/* fall through */
	case M_HELLO:
		m.body_case = TSCNI__WORKER_MSG__BODY_HELLO;
		m.hello = &h;
		break;
	case M_HELLO_FUTURE:
		h.min_version = 5;
		h.max_version = 9;
		m.body_case = TSCNI__WORKER_MSG__BODY_HELLO;
		m.hello = &h;
		break;
	case M_HELLO_OTHER_POD:
		h.pod_uid = (char *)"another-pod";
		m.body_case = TSCNI__WORKER_MSG__BODY_HELLO;
		m.hello = &h;
		break;
	case M_READY:
		r.stable_node_id = (char *)"nStable1";
		m.body_case = TSCNI__WORKER_MSG__BODY_READY;
		m.ready = &r;
		break;
	case M_STATS:
		s.tun_rx_packets = 42;
		m.body_case = TSCNI__WORKER_MSG__BODY_STATS;
		m.stats = &s;
		break;
	case M_STATS_PEERS:
	case M_STATS_BAD_PEER:
	case M_STATS_MANY_PEERS: {
		static uint8_t ip4[4] = {100, 64, 0, 2}, ep[4] = {198, 51, 100, 2};
		static Tscni__PeerStatus a = TSCNI__PEER_STATUS__INIT, b = TSCNI__PEER_STATUS__INIT;
		static Tscni__PeerStatus *v[PEER_STATUS_MAX + 1];

		a.node_key = (char *)"[IiIiI]";
		a.host_name = (char *)(k == M_STATS_BAD_PEER ? "Bob's phone" : "web-1");
		a.tailnet_ipv4 = (ProtobufCBinaryData){4, ip4};
		a.path = TSCNI__PEER_PATH__PEER_PATH_DIRECT;
		a.direct_ip = (ProtobufCBinaryData){4, ep};
		a.direct_port = 41641;
		a.last_handshake_unix = 1700000000;
		a.rx_bytes = 1234;
		a.tx_bytes = 5678;
		b.node_key = (char *)"[MzMzM]";
		b.host_name = (char *)"";
		b.path = TSCNI__PEER_PATH__PEER_PATH_DERP;
		b.derp_region = 900;
		for (size_t i = 0; i < PEER_STATUS_MAX + 1; i++)
			v[i] = i % 2 ? &b : &a;
		s.peer = v;
		s.n_peer = k == M_STATS_MANY_PEERS ? PEER_STATUS_MAX + 1 : 2;
		s.peers_left_off = 1;
		m.body_case = TSCNI__WORKER_MSG__BODY_STATS;
		m.stats = &s;
		break;
	}
	case M_LOG_BADLEVEL:
		l.level = 9;
		/* fall through */
	case M_LOG:
		l.msg = (char *)"hello \x1b[31m terminal";
		m.body_case = TSCNI__WORKER_MSG__BODY_LOG;
		m.log = &l;
		break;
	case M_EVENT_BADKIND:
		e.kind = 99;
		m.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
		m.event = &e;
		break;
	case M_EVENT_TUN_GONE:
		e.kind = TSCNI__EVENT_KIND__EVENT_TUN_GONE;
		e.detail = (char *)"EBADFD";
		m.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
		m.event = &e;
		break;
	case M_EVENT_AUTH_FAILED:
		e.kind = TSCNI__EVENT_KIND__EVENT_AUTH_FAILED;
		e.detail = (char *)"control refused registration: invalid authkey";
		m.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
		m.event = &e;
		break;
	case M_NETOP_BADLEN:
	case M_NETOP_OUTSIDE:
		p.addr.data = outside;
		p.addr.len = k == M_NETOP_BADLEN ? 3 : 4;
		p.prefix_len = 8;
		n.kind = TSCNI__NETOP_KIND__NETOP_ROUTE_ADD;
		n.prefix = &p;
		m.body_case = TSCNI__WORKER_MSG__BODY_NETOP_REQUEST;
		m.netop_request = &n;
		break;
	case M_RESOLVE:
		q.host = (char *)"controlplane.tailscale.com";
		m.body_case = TSCNI__WORKER_MSG__BODY_RESOLVE_REQUEST;
		m.resolve_request = &q;
		break;
	case M_TEST_REPLY:
		t.detail = (char *)"x";
		m.body_case = TSCNI__WORKER_MSG__BODY_TEST_REPLY;
		m.test_reply = &t;
		break;
	case M_EMPTY:
		break;
	case M_CUSTODY: {
		static Tscni__Custody c = TSCNI__CUSTODY__INIT;

		c.fd_count = 2;
		m.body_case = TSCNI__WORKER_MSG__BODY_CUSTODY;
		m.custody = &c;
		break;
	}
	case M_GARBAGE:
		memset(buf, 0xff, 8);
		return 8;
	case M_DERPMAP:
	case M_DERPMAP_MANY:
	case M_DERPMAP_MULTI:
	case M_DERPMAP_ORDER:
	case M_DERPMAP_TARGETS:
	case M_DERPMAP_NOPORT:
		make_derpmap(k, &m);
		break;
	}
	assert_true(tscni__worker_msg__get_packed_size(&m) <= cap);
	return tscni__worker_msg__pack(&m, buf);
}

struct vec {
	unsigned int state;
	enum msg_kind msg;
	int want;		  /* 0 or the negative errno */
	unsigned int state_after; /* 0: unchanged */
};

#define SP WORKERS_TS_SPAWNING
#define HE WORKERS_TS_HELLO
#define ST WORKERS_TS_STARTING
#define RD WORKERS_TS_READY
#define DD WORKERS_TS_DEAD

static const struct vec vecs[] = {
	/* 1 */ {HE, M_HELLO, 0, ST},
	/* 2 */ {ST, M_HELLO, -EPROTO, 0},
	/* 3 */ {RD, M_HELLO, -EPROTO, 0},
	/* 4 */ {HE, M_HELLO_BADRANGE, -EBADMSG, 0},
	/* 5 */ {HE, M_HELLO_FUTURE, -EPROTONOSUPPORT, 0},
	/* 6 */ {HE, M_HELLO_OTHER_POD, -EPERM, 0},
	/* 7 */ {ST, M_READY, 0, RD},
	/* 8 */ {RD, M_READY, -EPROTO, 0}, /* Ready is accepted once */
	/* 9 */ {HE, M_READY, -EPROTO, 0},
	/* 10 */ {RD, M_STATS, 0, 0},
	/* 11 */ {HE, M_STATS, -EPROTO, 0},
	/* 12 */ {HE, M_LOG, 0, 0},
	/* 13 */ {RD, M_LOG_BADLEVEL, -EBADMSG, 0},
	/* 14 */ {RD, M_EVENT_TUN_GONE, 0, 0},
	/* 15 */ {RD, M_EVENT_BADKIND, -EBADMSG, 0},
	/* 16 */ {RD, M_NETOP_OUTSIDE, 0, 0}, /* refused with a reply, not fatal */
	/* 17 */ {RD, M_NETOP_BADLEN, -EBADMSG, 0},
	/* 18 */ {HE, M_NETOP_OUTSIDE, -EPROTO, 0},
	/* 19 */ {RD, M_RESOLVE, 0, 0},
	/* 20 */ {ST, M_RESOLVE, 0, 0},		 /* the control server's name, before Ready */
	/* 21 */ {RD, M_TEST_REPLY, -EPROTO, 0}, /* not in test mode */
	/* 22 */ {RD, M_EMPTY, -EBADMSG, 0},
	/* 23 */ {RD, M_GARBAGE, -EBADMSG, 0},
	/* 24 */ {SP, M_LOG, -EPROTO, 0},
	/* 25 */ {DD, M_LOG, -EPROTO, 0},
	/* 26 */ {DD, M_STATS, -EPROTO, 0},
	/* 27 */ {RD, M_CUSTODY, -EBADMSG, 0}, /* only on an adoption connection */
	/* 28 */ {HE, M_RESOLVE, -EPROTO, 0},
	/* 29 */ {RD, M_STATS_PEERS, 0, 0},
	/* 30 */ {RD, M_STATS_BAD_PEER, -EBADMSG, 0},
	/* 31 */ {RD, M_STATS_MANY_PEERS, -EBADMSG, 0},
	/* 32 */ {RD, M_DERPMAP, 0, 0}, /* no netcheck configured: ignored */
	/* 33 */ {ST, M_DERPMAP, 0, 0}, /* the map comes before Ready */
	/* 34 */ {HE, M_DERPMAP, -EPROTO, 0},
	/* 35 */ {RD, M_DERPMAP_MANY, -EBADMSG, 0},
	/* 36 */ {RD, M_DERPMAP_MULTI, -EBADMSG, 0},
	/* 37 */ {RD, M_DERPMAP_ORDER, -EBADMSG, 0},
	/* 38 */ {RD, M_DERPMAP_TARGETS, -EBADMSG, 0},
	/* 39 */ {RD, M_DERPMAP_NOPORT, -EBADMSG, 0},
};

static void test_dispatch_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		const struct vec *v = &vecs[i];
		struct worker *w = workers__test_new(v->state, false);
		const char *why = "";
		static uint8_t buf[WMSG_MAX_LEN];
		size_t len = make(v->msg, buf, sizeof(buf));
		int ret = workers__dispatch(w, buf, len, &why);

		if (ret != v->want)
			fail_msg("vector %zu: got %d (%s), want %d", i + 1, ret, why, v->want);
		if (ret < 0 && (!why || !why[0]))
			fail_msg("vector %zu: no reason given", i + 1);
		if (workers__test_state(w) != (v->state_after ? v->state_after : v->state))
			fail_msg("vector %zu: state %u", i + 1, workers__test_state(w));
		workers__test_free(w);
	}
}

static void test_ready_once_then_stats(void **state)
{
	struct worker *w = workers__test_new(WORKERS_TS_HELLO, false);
	const char *why = "";
	uint8_t buf[256];
	size_t len;

	(void)state;
	len = make(M_HELLO, buf, sizeof(buf));
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	len = make(M_READY, buf, sizeof(buf));
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_int_equal(workers__dispatch(w, buf, len, &why), -EPROTO);
	len = make(M_STATS, buf, sizeof(buf));
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_int_equal(w->stats.tun_rx_packets, 42);
	len = make(M_EVENT_TUN_GONE, buf, sizeof(buf));
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_true(w->tun_gone);
	workers__test_free(w);
}

static unsigned int auth_failed_seen;

static void count_auth_failed(struct worker *w, enum worker_event ev, const struct worker_report *r,
			      void *arg)
{
	(void)w;
	(void)arg;
	if (ev == WORKER_EV_EVENT && r->event_kind == TSCNI__EVENT_KIND__EVENT_AUTH_FAILED)
		auth_failed_seen++;
}

/* A worker that resumed a registered node without the auth key and was
 * refused: once, it is given the key (for its next process) and the
 * refusal is not reported; refused again with the key, it is reported.
 * Without a key to give, the first refusal is reported. */
static void test_auth_refused_retry_with_key(void **state)
{
	struct workers ws = {.auth_key = "tskey-auth-test"};
	struct worker *w = workers__test_new(WORKERS_TS_STARTING, false);
	const char *why = "";
	uint8_t buf[256];
	size_t len = make(M_EVENT_AUTH_FAILED, buf, sizeof(buf));

	(void)state;
	auth_failed_seen = 0;
	w->ws = &ws;
	w->cb = count_auth_failed;
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_int_equal(auth_failed_seen, 0);
	assert_non_null(w->auth_key);
	assert_string_equal(w->auth_key, "tskey-auth-test");
	assert_true(w->auth_retried);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_int_equal(auth_failed_seen, 1);
	w->ws = NULL; /* a test worker has no handles to close */
	workers__test_free(w);

	w = workers__test_new(WORKERS_TS_STARTING, false);
	ws.auth_key = NULL;
	w->ws = &ws;
	w->cb = count_auth_failed;
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_int_equal(auth_failed_seen, 2);
	assert_null(w->auth_key);
	w->ws = NULL; /* a test worker has no handles to close */
	workers__test_free(w);
}

/* One WorkerMsg packed into buf: a control Event of kind (with c, or
 * without a ControlStatus as an older worker sends it), or Stats with c. */
static size_t make_control(uint8_t *buf, bool stats, Tscni__EventKind kind, const char *detail,
			   Tscni__ControlStatus *c)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Event e = TSCNI__EVENT__INIT;
	Tscni__Stats s = TSCNI__STATS__INIT;

	if (stats) {
		s.control = c;
		s.pss_bytes = 3 << 20;
		m.body_case = TSCNI__WORKER_MSG__BODY_STATS;
		m.stats = &s;
	} else {
		e.kind = kind;
		e.detail = (char *)detail;
		e.control = c;
		m.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
		m.event = &e;
	}
	return tscni__worker_msg__pack(&m, buf);
}

/* The control state a worker reports is kept per worker: from its Events
 * and Stats when they carry a ControlStatus; from an older worker's Event
 * kind and detail (made printable) when they do not; a Stats without one
 * leaves it as it was. */
static void test_control_state_kept(void **state)
{
	struct worker *w = workers__test_new(WORKERS_TS_STARTING, false);
	Tscni__ControlStatus c = TSCNI__CONTROL_STATUS__INIT;
	struct worker_control wc;
	struct worker_stats st;
	const char *why = "";
	uint8_t buf[512];
	size_t len;

	(void)state;
	workers_get_control(w, &wc);
	assert_int_equal(wc.state, TSCNI__CONTROL_STATE__CONTROL_UNKNOWN);
	/* A new worker: the Event carries the state. */
	c.state = TSCNI__CONTROL_STATE__CONTROL_RETRYING;
	c.reason = (char *)"GET /key: connect to 127.0.0.1 port 1 failed";
	c.since_unix = 1796640000;
	c.retry_unix = 1796640008;
	len = make_control(buf, false, TSCNI__EVENT_KIND__EVENT_CONTROL_DOWN, c.reason, &c);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	workers_get_control(w, &wc);
	assert_int_equal(wc.state, TSCNI__CONTROL_STATE__CONTROL_RETRYING);
	assert_string_equal(wc.reason, "GET /key: connect to 127.0.0.1 port 1 failed");
	assert_int_equal(wc.since_unix, 1796640000);
	assert_int_equal(wc.retry_unix, 1796640008);
	/* Stats with one replace it; Stats without one (older) keep it. */
	c.state = TSCNI__CONTROL_STATE__CONTROL_CONNECTED;
	c.reason = (char *)"";
	c.retry_unix = 0;
	len = make_control(buf, true, 0, NULL, &c);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	workers_get_control(w, &wc);
	assert_int_equal(wc.state, TSCNI__CONTROL_STATE__CONTROL_CONNECTED);
	assert_string_equal(wc.reason, "");
	workers_get_stats(w, &st);
	assert_int_equal(st.pss_bytes, 3 << 20);
	len = make_control(buf, true, 0, NULL, NULL);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	workers_get_control(w, &wc);
	assert_int_equal(wc.state, TSCNI__CONTROL_STATE__CONTROL_CONNECTED);
	/* An older worker's Events: the kind says the state, the detail
	 * (any bytes: Event.detail is free text) the reason, made printable. */
	len = make_control(buf, false, TSCNI__EVENT_KIND__EVENT_CONTROL_DOWN,
			   "map stream lost \x1b[2J\xc3\xa9", NULL);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	workers_get_control(w, &wc);
	assert_int_equal(wc.state, TSCNI__CONTROL_STATE__CONTROL_RETRYING);
	assert_string_equal(wc.reason, "not connected: map stream lost ?[2J??");
	assert_true(wc.since_unix > 0);
	assert_int_equal(wc.retry_unix, 0);
	len = make_control(buf, false, TSCNI__EVENT_KIND__EVENT_CONTROL_UP, "tls", NULL);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	workers_get_control(w, &wc);
	assert_int_equal(wc.state, TSCNI__CONTROL_STATE__CONTROL_CONNECTED);
	assert_string_equal(wc.reason, "");
	/* A ControlStatus that fails its checks ends the worker. */
	c.state = TSCNI__CONTROL_STATE__CONTROL_FAILED;
	c.reason = (char *)"bell\a";
	len = make_control(buf, true, 0, NULL, &c);
	assert_int_equal(workers__dispatch(w, buf, len, &why), -EBADMSG);
	workers__test_free(w);
}

/* Stats.peer is copied into the worker's own array, replaced by the next
 * Stats (none: no peers). */
static void test_stats_peers_copied(void **state)
{
	struct worker *w = workers__test_new(WORKERS_TS_READY, false);
	const struct worker_peer *p;
	const char *why = "";
	uint8_t buf[1024];
	uint32_t left_off;
	size_t len, n;

	(void)state;
	p = workers_get_peers(w, &n, &left_off);
	assert_null(p);
	assert_int_equal(n, 0);
	len = make(M_STATS_PEERS, buf, sizeof(buf));
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	p = workers_get_peers(w, &n, &left_off);
	assert_int_equal(n, 2);
	assert_int_equal(left_off, 1);
	assert_string_equal(p[0].node_key, "[IiIiI]");
	assert_string_equal(p[0].host_name, "web-1");
	assert_true(p[0].has_ipv4);
	assert_memory_equal(p[0].ipv4, "\x64\x40\x00\x02", 4);
	assert_int_equal(p[0].path, TSCNI__PEER_PATH__PEER_PATH_DIRECT);
	assert_int_equal(p[0].direct_ip_len, 4);
	assert_memory_equal(p[0].direct_ip, "\xc6\x33\x64\x02", 4);
	assert_int_equal(p[0].direct_port, 41641);
	assert_int_equal(p[0].last_handshake_unix, 1700000000);
	assert_int_equal(p[0].rx_bytes, 1234);
	assert_int_equal(p[0].tx_bytes, 5678);
	assert_string_equal(p[1].host_name, "");
	assert_false(p[1].has_ipv4);
	assert_int_equal(p[1].path, TSCNI__PEER_PATH__PEER_PATH_DERP);
	assert_int_equal(p[1].derp_region, 900);
	assert_int_equal(p[1].direct_ip_len, 0);
	len = make(M_STATS, buf, sizeof(buf));
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_null(workers_get_peers(w, &n, &left_off));
	assert_int_equal(n, 0);
	assert_int_equal(left_off, 0);
	workers__test_free(w);
}

static void test_test_reply_in_test_mode(void **state)
{
	struct worker *w = workers__test_new(WORKERS_TS_READY, true);
	const char *why = "";
	uint8_t buf[256];
	size_t len = make(M_TEST_REPLY, buf, sizeof(buf));

	(void)state;
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	workers__test_free(w);
}

static void test_rate_limit(void **state)
{
	struct worker *w = workers__test_new(WORKERS_TS_READY, false);
	int allowed = 0;

	(void)state;
	w->tokens = (unsigned long long)WORKERS_RATE_BURST * 1000;
	w->tokens_ms = now_ms();
	for (int i = 0; i < 3 * WORKERS_RATE_BURST; i++)
		allowed += rate_ok(w);
	/* The burst, plus what refilled during the loop (well under a second). */
	assert_true(allowed >= WORKERS_RATE_BURST);
	assert_true(allowed < WORKERS_RATE_BURST + WORKERS_RATE_PER_S);
	workers__test_free(w);
}

static void test_no_process_no_send(void **state)
{
	struct worker *w = workers__test_new(WORKERS_TS_READY, true);

	(void)state;
	assert_int_equal(workers_request_stats(w), -ENOTCONN);
	assert_int_equal(workers_test_request(w, 1, "open_read", "/x"), -ENOTCONN);
	assert_int_equal(workers_netop_reply(w, 1, 5, NULL), -EINVAL);
	assert_int_equal(workers_netop_reply(w, 1, 0, NULL), -ENOTCONN);
	assert_int_equal(
		workers_netcheck_report(w, &(Tscni__NetcheckReport)TSCNI__NETCHECK_REPORT__INIT),
		-ENOTCONN);
	workers__test_free(w);
}

/* A process stand-in for w: one end of a SOCK_SEQPACKET pair (the worker's
 * end returned in *peer), on loop. */
static struct wproc *fake_proc(uv_loop_t *loop, struct worker *w, int *peer)
{
	struct wproc *p = xcalloc(1, sizeof(*p));
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
	p->sock = sv[0];
	p->pidfd = -1;
	p->sock_open = true;
	p->w = w;
	p->sock_poll.data = p;
	assert_int_equal(uv_poll_init(loop, &p->sock_poll, p->sock), 0);
	w->proc = p;
	*peer = sv[1];
	return p;
}

/* Datagrams waiting at the worker's end, drained. */
static unsigned int drain(int fd)
{
	uint8_t buf[WMSG_MAX_LEN];
	unsigned int n = 0;

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		n++;
	return n;
}

/* However often STATUS asks (3000 pipelined verbose STATUS), one
 * StatsRequest is in flight per worker, and none joins a queue that has not
 * drained: asking never ends a worker. The answer allows the next one. */
static void test_stats_requests_coalesced(void **state)
{
	struct worker *w = workers__test_new(WORKERS_TS_READY, false);
	const char *why = "";
	uv_loop_t loop;
	struct wproc *p;
	uint8_t buf[256];
	size_t len = make(M_STATS, buf, sizeof(buf));
	unsigned int filled = 0;
	int peer;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	p = fake_proc(&loop, w, &peer);
	for (int i = 0; i < 3000; i++)
		assert_int_equal(workers_request_stats(w), 0);
	assert_int_equal(drain(peer), 1);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	assert_int_equal(workers_request_stats(w), 0);
	assert_int_equal(drain(peer), 1);

	/* The worker reads nothing: its socket fills, one request waits in
	 * the queue, and asking again adds nothing. */
	while (seqpacket_send(p->sock, buf, len, NULL, 0) == 0)
		filled++;
	assert_true(filled > 0);
	assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	for (int i = 0; i < 3000; i++) {
		assert_int_equal(workers_request_stats(w), 0);
		/* Answered meanwhile, as by a slow worker. */
		if (i % 100 == 0)
			assert_int_equal(workers__dispatch(w, buf, len, &why), 0);
	}
	assert_int_equal(w->outq_len, 1);
	assert_int_equal(w->state, WS_READY);

	workers__outq_clear(w);
	w->proc = NULL;
	uv_close((uv_handle_t *)&p->sock_poll, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	close(p->sock);
	close(peer);
	free(p);
	assert_int_equal(uv_loop_close(&loop), 0);
	workers__test_free(w);
}

static void test_spawn_spec_checked(void **state)
{
	struct workers ws = {.uid_base = WORKERS_UID_BASE, .uid_count = 10};
	struct worker_spec spec = {.pod_uid = "pod-1", .tun_fd = 0, .slot = 10};
	struct worker *w = (struct worker *)&ws;

	(void)state;
	/* slot beyond the uid range, bad pod uid, no TUN: refused before
	 * anything is allocated or any callback could run. */
	assert_int_equal(workers_spawn(&ws, &spec, NULL, NULL, &w), -EINVAL);
	assert_null(w);
	spec.slot = 1;
	spec.pod_uid = "../etc";
	assert_int_equal(workers_spawn(&ws, &spec, NULL, NULL, &w), -EINVAL);
	spec.pod_uid = "pod-1";
	spec.tun_fd = -1;
	assert_int_equal(workers_spawn(&ws, &spec, NULL, NULL, &w), -EINVAL);
}

/* The rendezvous socket's name: <run_dir>/workers/<pod uid>.sock while it
 * fits in sun_path (108 bytes), else =<BLAKE2b-96 of the uid, hex>.sock.
 * The hashes below come from Python's hashlib.blake2b(digest_size=12). */
static void test_rdv_long_uid(void **state)
{
	struct workers ws = {.run_dir = "/run/tailscale-cni"}; /* 18 bytes */
	struct sockaddr_un a, b;
	char *fits = xmalloc(76), *over = xmalloc(77), *l1 = xmalloc(201), *l2 = xmalloc(201);
	char want[sizeof(a.sun_path)];

	(void)state;
	/* A Kubernetes uid: the plain name. */
	assert_int_equal(workers__rdv_path(&ws, "3f2a6c1e-1d2b-4c3a-9e8f-0123456789ab", &a), 0);
	assert_string_equal(a.sun_path,
			    "/run/tailscale-cni/workers/3f2a6c1e-1d2b-4c3a-9e8f-0123456789ab.sock");
	/* 18 + "/workers/" 9 + uid + ".sock" 5 + NUL: 75 bytes of uid fit, 76 not. */
	memset(fits, 'u', 75);
	fits[75] = '\0';
	memset(over, 'u', 76);
	over[76] = '\0';
	assert_int_equal(workers__rdv_path(&ws, fits, &a), 0);
	snprintf(want, sizeof(want), "/run/tailscale-cni/workers/%s.sock", fits);
	assert_string_equal(a.sun_path, want);
	assert_int_equal(strlen(a.sun_path), sizeof(a.sun_path) - 1);
	assert_int_equal(workers__rdv_path(&ws, over, &a), 0);
	assert_string_equal(a.sun_path,
			    "/run/tailscale-cni/workers/=f208110dbb8246b3b2d96f44.sock");
	/* Two long uids differing in their last byte never share a name. */
	memset(l1, 'a', 200);
	l1[200] = '\0';
	memcpy(l2, l1, 201);
	l2[199] = 'b';
	assert_int_equal(workers__rdv_path(&ws, l1, &a), 0);
	assert_int_equal(workers__rdv_path(&ws, l2, &b), 0);
	assert_string_equal(a.sun_path,
			    "/run/tailscale-cni/workers/=29407089a94aa1a1b7a88be3.sock");
	assert_string_equal(b.sun_path,
			    "/run/tailscale-cni/workers/=29916197910e8a62e55c81ce.sock");
	assert_string_not_equal(a.sun_path, b.sun_path);
	/* The same uid, the same name (a restarted supervisor finds it). */
	assert_int_equal(workers__rdv_path(&ws, l1, &b), 0);
	assert_string_equal(a.sun_path, b.sun_path);
	/* '=' cannot start a valid uid's plain name: no clash with a hash. */
	assert_false(valid_name("=29407089a94aa1a1b7a88be3", POD_FIELD_MAX_LEN));
	/* The longest run_dir workers_new accepts (64) still fits a hashed name. */
	ws.run_dir = "/run/01234567890123456789012345678901234567890123456789012345678";
	assert_int_equal(strlen(ws.run_dir), 64);
	assert_int_equal(workers__rdv_path(&ws, l1, &a), 0);
	assert_non_null(strstr(a.sun_path, "/workers/=29407089a94aa1a1b7a88be3.sock"));
	free(fits);
	free(over);
	free(l1);
	free(l2);
}

static void test_new_checks_config(void **state)
{
	struct workers_config wc = {.worker_path = "relative/worker"};
	struct workers *ws = (struct workers *)&wc;
	uv_loop_t loop;

	(void)state;
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(workers_new(&loop, &wc, &ws), -EINVAL);
	assert_null(ws);
	wc.worker_path = "/usr/bin/true";
	wc.sandbox = "chroot";
	assert_int_equal(workers_new(&loop, &wc, &ws), -EINVAL);
	wc.sandbox = NULL;
	wc.cgroup_parent = "a/b";
	assert_int_equal(workers_new(&loop, &wc, &ws), -EINVAL);
	wc.cgroup_parent = NULL;
	wc.run_dir = "run/relative";
	assert_int_equal(workers_new(&loop, &wc, &ws), -EINVAL);
	wc.run_dir = NULL;
	wc.host_mntns = "proc/1/ns/mnt";
	assert_int_equal(workers_new(&loop, &wc, &ws), -EINVAL);
	/* Opened before any fork: a missing namespace file fails at once. */
	wc.host_mntns = "/nonexistent/ns/mnt";
	assert_int_equal(workers_new(&loop, &wc, &ws), -ENOENT);
	assert_null(ws);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_table),
		cmocka_unit_test(test_ready_once_then_stats),
		cmocka_unit_test(test_stats_peers_copied),
		cmocka_unit_test(test_control_state_kept),
		cmocka_unit_test(test_test_reply_in_test_mode),
		cmocka_unit_test(test_auth_refused_retry_with_key),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_no_process_no_send),
		cmocka_unit_test(test_stats_requests_coalesced),
		cmocka_unit_test(test_spawn_spec_checked),
		cmocka_unit_test(test_new_checks_config),
		cmocka_unit_test(test_rdv_long_uid),
	};

	log_init("unit", LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
