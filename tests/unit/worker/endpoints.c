/* The worker's endpoint watcher without a kernel behind it: a dump (links,
 * then addresses) fed message by message becomes the local endpoints with
 * the UDP socket's port; which change notifications call for a new dump
 * (other pods' veths and link-local addresses do not); an interrupted dump
 * is done again; the STUN endpoint is added once, and not when it is one of
 * the local ones. The requests go to a real NETLINK_ROUTE socket (dump
 * requests need no privilege) whose answers are never read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/endpoints.c"

struct fx {
	struct worker_ctx ctx;
	struct endpoints *e;
};

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	strscpy(f->ctx.pod_uid, "pod-ep", sizeof(f->ctx.pod_uid));
	assert_int_equal(uv_loop_init(&f->ctx.loop), 0);
	f->e = xcalloc(1, sizeof(*f->e));
	f->e->ctx = &f->ctx;
	f->e->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	assert_true(f->e->fd >= 0);
	f->e->seq = 1000;
	f->e->port = 41641;
	f->e->v4 = f->e->v6 = true;
	assert_int_equal(ifaddr_deny_add(&f->e->deny, "blk*"), 0);
	uv_timer_init(&f->ctx.loop, &f->e->settle);
	f->e->settle.data = f->e;
	f->ctx.endpoints = f->e;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	uv_close((uv_handle_t *)&f->e->settle, NULL);
	uv_run(&f->ctx.loop, UV_RUN_NOWAIT);
	uv_loop_close(&f->ctx.loop);
	close(f->e->fd);
	free(f->e);
	free(f);
	return 0;
}

static struct ifaddr_msg link_msg(uint32_t seq, int index, unsigned int flags, const char *name)
{
	struct ifaddr_msg m = {
		.type = RTM_NEWLINK, .seq = seq, .index = index, .link_flags = flags};

	strscpy(m.name, name, sizeof(m.name));
	return m;
}

static struct ifaddr_msg addr_msg(uint32_t seq, int index, int family, const uint8_t *a)
{
	struct ifaddr_msg m = {.type = RTM_NEWADDR, .seq = seq, .index = index, .family = family};

	memcpy(m.addr, a, family == AF_INET ? 4 : 16);
	return m;
}

static const uint8_t v4_a[4] = {10, 1, 2, 3}, v4_b[4] = {10, 9, 9, 9};
static const uint8_t v6_a[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 5};
static const uint8_t ll6[16] = {0xfe, 0x80, [15] = 1};

/* One whole dump: eth0 (10.1.2.3, 2001:db8::5), cni0 and blk0 with
 * addresses of their own. */
static void dump(struct endpoints *e)
{
	struct ifaddr_msg m;

	dump_start(e);
	assert_int_equal(e->phase, DUMP_LINKS);
	m = link_msg(e->seq, 2, IFF_UP, "eth0");
	handle(e, &m);
	m = link_msg(e->seq, 3, IFF_UP, "cni0");
	handle(e, &m);
	m = link_msg(e->seq, 4, IFF_UP, "blk0");
	handle(e, &m);
	m = (struct ifaddr_msg){.type = NLMSG_DONE, .seq = e->seq};
	handle(e, &m);
	assert_int_equal(e->phase, DUMP_ADDRS);
	m = addr_msg(e->seq, 2, AF_INET, v4_a);
	handle(e, &m);
	m = addr_msg(e->seq, 2, AF_INET6, v6_a);
	handle(e, &m);
	m = addr_msg(e->seq, 2, AF_INET6, ll6);
	handle(e, &m);
	m = addr_msg(e->seq, 3, AF_INET, v4_b);
	handle(e, &m);
	m = addr_msg(e->seq, 4, AF_INET, v4_b);
	handle(e, &m);
	m = (struct ifaddr_msg){.type = NLMSG_DONE, .seq = e->seq};
	handle(e, &m);
}

static void test_dump(void **state)
{
	struct fx *f = *state;
	struct worker_ctx *ctx = &f->ctx;

	dump(f->e);
	assert_int_equal(f->e->phase, DUMP_IDLE);
	assert_int_equal(ctx->n_local_eps, 2);
	assert_int_equal(ctx->local_eps[0].family, AF_INET);
	assert_memory_equal(ctx->local_eps[0].addr, v4_a, 4);
	assert_int_equal(ctx->local_eps[0].port, 41641);
	assert_int_equal(ctx->local_eps[1].family, AF_INET6);
	assert_memory_equal(ctx->local_eps[1].addr, v6_a, 16);
	assert_int_equal(ctx->local_eps[1].port, 41641);

	/* An IPv4-only socket announces no IPv6 address. */
	f->e->v6 = false;
	dump(f->e);
	assert_int_equal(ctx->n_local_eps, 1);
	assert_int_equal(ctx->local_eps[0].family, AF_INET);
}

/* Messages of another sequence during a dump are notifications, not part
 * of it; an interrupted dump is done again. */
static void test_dump_interleaved(void **state)
{
	struct fx *f = *state;
	struct endpoints *e = f->e;
	struct ifaddr_msg m;
	uint32_t first;

	dump_start(e);
	first = e->seq;
	m = link_msg(7, 5, IFF_UP, "eth1"); /* someone else's change */
	handle(e, &m);
	assert_int_equal(e->next.n_links, 0);
	m = link_msg(first, 2, IFF_UP, "eth0");
	m.nl_flags = NLM_F_MULTI | NLM_F_DUMP_INTR;
	handle(e, &m);
	assert_int_equal(e->next.n_links, 1);
	m = (struct ifaddr_msg){.type = NLMSG_DONE, .seq = first};
	handle(e, &m);
	m = (struct ifaddr_msg){.type = NLMSG_DONE, .seq = e->seq};
	handle(e, &m);
	/* Done, and at once a new dump (the first was inconsistent). */
	assert_int_equal(e->phase, DUMP_LINKS);
	assert_true(e->seq > first + 1);
	/* A dump refused by the kernel ends it; a new one follows later. */
	m = (struct ifaddr_msg){.type = NLMSG_ERROR, .seq = e->seq, .error = -EBUSY};
	handle(e, &m);
	assert_int_equal(e->phase, DUMP_IDLE);
	assert_true(uv_is_active((uv_handle_t *)&e->settle));
}

static void test_relevant(void **state)
{
	struct fx *f = *state;
	struct endpoints *e = f->e;
	static const uint8_t tailnet4[4] = {100, 64, 0, 1};
	const struct {
		bool is_link;
		const char *name;
		int index, family;
		const uint8_t *addr;
		bool want;
	} v[] = {
		{true, "vethab12", 9, 0, NULL, false}, /* another pod's veth */
		{true, "cali1234", 9, 0, NULL, false},
		{true, "blk7", 9, 0, NULL, false}, /* --endpoint-deny-iface */
		{true, "eth1", 9, 0, NULL, true},  /* a new uplink */
		{true, "eth0", 2, 0, NULL, true},  /* a kept link changed */
		{true, "", 9, 0, NULL, true},	   /* no name: cannot tell */
		{false, NULL, 2, AF_INET, v4_b, true},
		{false, NULL, 2, AF_INET6, v6_a, true},
		{false, NULL, 2, AF_INET6, ll6, false}, /* link-local */
		{false, NULL, 3, AF_INET, v4_b, false}, /* on cni0 */
		{false, NULL, 99, AF_INET, v4_b, false},
		{false, NULL, 2, AF_INET, tailnet4, false},
	};

	dump(e);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct ifaddr_msg m = v[i].is_link
					      ? link_msg(5, v[i].index, IFF_UP, v[i].name)
					      : addr_msg(5, v[i].index, v[i].family, v[i].addr);

		if (relevant(e, &m) != v[i].want)
			fail_msg("vector %zu", i);
		m.type = v[i].is_link ? RTM_DELLINK : RTM_DELADDR;
		if (relevant(e, &m) != v[i].want)
			fail_msg("vector %zu (deleted)", i);
	}
	/* A relevant one arms the settle timer; an irrelevant one does not. */
	struct ifaddr_msg m = link_msg(5, 9, IFF_UP, "veth0");
	handle(e, &m);
	assert_false(uv_is_active((uv_handle_t *)&e->settle));
	m = link_msg(5, 9, IFF_UP, "eth1");
	handle(e, &m);
	assert_true(uv_is_active((uv_handle_t *)&e->settle));
}

/* The STUN endpoint joins the local ones once, and not at all when it is
 * one of them (no NAT). */
static void test_stun(void **state)
{
	struct fx *f = *state;
	struct worker_ctx *ctx = &f->ctx;
	struct netmap_endpoint eps[CLIENT_MAX_ENDPOINTS];
	int types[CLIENT_MAX_ENDPOINTS];
	struct netmap_endpoint s = {.family = AF_INET, .addr = {198, 51, 100, 7}, .port = 3478};

	dump(f->e);
	assert_int_equal(compose(ctx, eps, types), 2);
	assert_int_equal(types[0], EP_TYPE_LOCAL);
	assert_int_equal(types[1], EP_TYPE_LOCAL);
	ctx->stun_ep = s;
	ctx->has_stun_ep = true;
	assert_int_equal(compose(ctx, eps, types), 3);
	assert_true(same_ep(&eps[2], &s));
	assert_int_equal(types[2], EP_TYPE_STUN);
	/* No NAT: STUN saw one of our own. */
	ctx->stun_ep = ctx->local_eps[1];
	assert_int_equal(compose(ctx, eps, types), 2);
	/* The same address with another port is another endpoint. */
	ctx->stun_ep.port = 1;
	assert_int_equal(compose(ctx, eps, types), 3);
	/* Addresses gone: only the STUN one is left. */
	f->e->v4 = f->e->v6 = false;
	dump(f->e);
	assert_int_equal(ctx->n_local_eps, 0);
	assert_int_equal(compose(ctx, eps, types), 1);
	assert_int_equal(types[0], EP_TYPE_STUN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dump_interleaved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_relevant, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stun, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
