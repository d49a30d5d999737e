/* The node-wide netcheck without a socket: workers with the same target
 * set share one measurement and one probe set per round, another set is
 * measured apart, at most NETCHECK_MAPS sets, the last user's departure
 * stops a set; answers count only for a probe in flight from the address it
 * went to, the best RTT wins, the round ends early when all are answered and
 * the next one is 20-30 s later; a worker changing maps fast waits for
 * credits. Probes are counted, not sent (no socket: no network). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "supervisor/netcheck.c"

/* What the netcheck sent to whom. */
enum { SENT_MAX = 64 };
static struct sent {
	struct worker *w;
	uint32_t preferred;
	size_t n;
	uint32_t ms[NETCHECK_REGIONS_MAX];
	bool v4;
} sent[SENT_MAX];
static size_t n_sent;

static int record(struct worker *w, const Tscni__NetcheckReport *r)
{
	struct sent *s = &sent[n_sent++];

	assert_true(n_sent <= SENT_MAX);
	*s = (struct sent){.w = w,
			   .preferred = r->preferred_region,
			   .n = r->n_regions,
			   .v4 = r->global_v4.len == 4};
	for (size_t i = 0; i < r->n_regions; i++)
		s->ms[i] = r->regions[i]->latency_ms;
	return 0;
}

struct fixture {
	uv_loop_t loop;
	struct netcheck *nc;
	struct worker *w[NETCHECK_MAPS + 2];
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->nc = alloc(&f->loop, record);
	for (size_t i = 0; i < NETCHECK_MAPS + 2; i++)
		f->w[i] = workers__test_new(WORKERS_TS_READY, false);
	n_sent = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	netcheck_free(f->nc);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	for (size_t i = 0; i < NETCHECK_MAPS + 2; i++)
		workers__test_free(f->w[i]);
	free(f);
	return 0;
}

/* A report of n regions 900.. with one IPv4 target each, 127.0.0.1 at
 * port base + i. */
struct report {
	Tscni__DerpMapReport rep;
	Tscni__DerpRegionTargets regs[NETCHECK_REGIONS_MAX], *rp[NETCHECK_REGIONS_MAX];
	Tscni__StunTarget t[NETCHECK_REGIONS_MAX], *tp[NETCHECK_REGIONS_MAX];
};
static uint8_t lo4[4] = {127, 0, 0, 1};

static void report_init(struct report *r, size_t n, uint32_t base)
{
	tscni__derp_map_report__init(&r->rep);
	for (size_t i = 0; i < n; i++) {
		tscni__stun_target__init(&r->t[i]);
		r->t[i].ip = (ProtobufCBinaryData){.len = 4, .data = lo4};
		r->t[i].port = base + (uint32_t)i;
		r->tp[i] = &r->t[i];
		tscni__derp_region_targets__init(&r->regs[i]);
		r->regs[i].region_id = 900 + (uint32_t)i;
		r->regs[i].targets = &r->tp[i];
		r->regs[i].n_targets = 1;
		r->rp[i] = &r->regs[i];
	}
	r->rep.regions = r->rp;
	r->rep.n_regions = n;
}

static struct nc_map *map_of(struct netcheck *nc, struct worker *w)
{
	struct nc_user *u = user_find(nc, w);

	return u ? u->m : NULL;
}

static size_t maps_used(struct netcheck *nc)
{
	size_t n = 0;

	for (size_t i = 0; i < NETCHECK_MAPS; i++)
		n += nc->maps[i].used;
	return n;
}

/* The STUN server's answer to probe p, seen from `from`. */
static void answer(struct netcheck *nc, const struct nc_probe *p, const struct stun_addr *from,
		   uint64_t rtt_ns)
{
	struct stun_addr seen = {.port = 41641};
	uint8_t buf[STUN_RESPONSE_MAX], txid[STUN_TXID_LEN];
	uint64_t sent_ns = p->sent_ns;
	size_t len;

	memcpy(seen.ip, V4_MAPPED, sizeof(V4_MAPPED));
	memcpy(seen.ip + 12, (uint8_t[]){198, 51, 100, 7}, 4);
	memcpy(txid, p->txid, STUN_TXID_LEN);
	len = stun_response(txid, &seen, buf);
	on_answer(nc, buf, len, from, sent_ns + rtt_ns);
}

static struct nc_probe *probe_to(struct netcheck *nc, uint16_t port)
{
	for (size_t i = 0; i < NETCHECK_INFLIGHT; i++)
		if (nc->probes[i].m && nc->probes[i].to.port == port)
			return &nc->probes[i];
	return NULL;
}

static void test_shared_map(void **state)
{
	struct fixture *f = *state;
	struct report r, other;

	report_init(&r, 2, 3478);
	netcheck_request(f->w[0], &r.rep, f->nc);
	netcheck_request(f->w[1], &r.rep, f->nc);
	netcheck_request(f->w[2], &r.rep, f->nc);
	/* One set for the three, one probe per region so far. */
	assert_int_equal(maps_used(f->nc), 1);
	assert_ptr_equal(map_of(f->nc, f->w[0]), map_of(f->nc, f->w[2]));
	assert_int_equal(map_of(f->nc, f->w[0])->users, 3);
	assert_int_equal(f->nc->probes_sent, 2);
	/* The same targets through another port are another set. */
	report_init(&other, 2, 4000);
	netcheck_request(f->w[3], &other.rep, f->nc);
	assert_int_equal(maps_used(f->nc), 2);
	assert_ptr_not_equal(map_of(f->nc, f->w[3]), map_of(f->nc, f->w[0]));
	assert_int_equal(f->nc->probes_sent, 4);
}

static void test_probe_sets_and_round(void **state)
{
	struct fixture *f = *state;
	struct report r;
	struct nc_map *m;
	struct stun_addr from;
	struct nc_probe *p;

	report_init(&r, 3, 3478);
	netcheck_request(f->w[0], &r.rep, f->nc);
	netcheck_request(f->w[1], &r.rep, f->nc);
	m = map_of(f->nc, f->w[0]);
	/* The timer's next two steps send the other two probe sets. */
	on_map_timer(&m->timer);
	on_map_timer(&m->timer);
	assert_int_equal(m->phase, NETCHECK_PROBES);
	assert_int_equal(f->nc->probes_sent, 3 * NETCHECK_PROBES);
	assert_int_equal(m->pending, 3 * NETCHECK_PROBES);

	/* Region 900 answers at 30 ms and 12 ms; an answer from another
	 * address or port, or for no probe, does not count. */
	memcpy(from.ip, V4_MAPPED, sizeof(V4_MAPPED));
	memcpy(from.ip + 12, lo4, 4);
	from.port = 3479;
	p = probe_to(f->nc, 3478);
	answer(f->nc, p, &from, 1000000);
	assert_int_equal(m->pending, 3 * NETCHECK_PROBES);
	from.port = 3478;
	answer(f->nc, p, &from, 30000000);
	assert_int_equal(m->pending, 3 * NETCHECK_PROBES - 1);
	answer(f->nc, probe_to(f->nc, 3478), &from, 12000000);
	/* Region 901 at 5.2 ms; region 902 never answers. */
	from.port = 3479;
	answer(f->nc, probe_to(f->nc, 3479), &from, 5200000);
	assert_int_equal(n_sent, 0);
	/* The round's end: every user told the same. */
	on_map_timer(&m->timer);
	assert_false(m->in_round);
	assert_int_equal(m->pending, 0);
	assert_int_equal(f->nc->inflight, 0);
	assert_int_equal(n_sent, 2);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(sent[i].preferred, 901);
		assert_int_equal(sent[i].n, 3);
		assert_int_equal(sent[i].ms[0], 12);
		assert_int_equal(sent[i].ms[1], 6); /* rounded up */
		assert_int_equal(sent[i].ms[2], 0);
		assert_true(sent[i].v4);
	}
	assert_true(sent[0].w != sent[1].w);
	/* The next round in 20-30 s. */
	assert_true(uv_timer_get_due_in(&m->timer) >= NETCHECK_REFRESH_MIN_MS);
	assert_true(uv_timer_get_due_in(&m->timer) <= NETCHECK_REFRESH_MAX_MS);
	/* A worker joining later gets the last result at once. */
	netcheck_request(f->w[2], &r.rep, f->nc);
	assert_int_equal(n_sent, 3);
	assert_ptr_equal(sent[2].w, f->w[2]);
	assert_int_equal(sent[2].preferred, 901);
}

static void test_round_ends_when_all_answered(void **state)
{
	struct fixture *f = *state;
	struct report r;
	struct stun_addr from;
	struct nc_map *m;
	struct nc_probe *p;

	report_init(&r, 1, 3478);
	netcheck_request(f->w[0], &r.rep, f->nc);
	m = map_of(f->nc, f->w[0]);
	on_map_timer(&m->timer);
	on_map_timer(&m->timer);
	memcpy(from.ip, V4_MAPPED, sizeof(V4_MAPPED));
	memcpy(from.ip + 12, lo4, 4);
	from.port = 3478;
	while ((p = probe_to(f->nc, 3478)))
		answer(f->nc, p, &from, 2000000);
	assert_int_equal(n_sent, 1);
	assert_int_equal(sent[0].preferred, 900);
	assert_int_equal(sent[0].ms[0], 2);
	assert_int_equal(m->rounds, 1);
}

static void test_map_limit_and_release(void **state)
{
	struct fixture *f = *state;
	struct report r[NETCHECK_MAPS + 1];
	struct nc_map *m;

	for (size_t i = 0; i <= NETCHECK_MAPS; i++) {
		report_init(&r[i], 1, 5000 + (uint32_t)i);
		netcheck_request(f->w[i], &r[i].rep, f->nc);
	}
	/* The ninth set is not measured; its worker keeps its own choice. */
	assert_int_equal(maps_used(f->nc), NETCHECK_MAPS);
	assert_null(map_of(f->nc, f->w[NETCHECK_MAPS]));
	/* A user leaving frees its set and stops its probes... */
	m = map_of(f->nc, f->w[0]);
	netcheck_forget(f->nc, f->w[0]);
	assert_false(m->used);
	assert_false(uv_is_active((uv_handle_t *)&m->timer));
	assert_null(probe_to(f->nc, 5000));
	assert_int_equal(f->nc->inflight, NETCHECK_MAPS - 1);
	/* ...and makes room for another. */
	netcheck_request(f->w[NETCHECK_MAPS], &r[NETCHECK_MAPS].rep, f->nc);
	assert_int_equal(maps_used(f->nc), NETCHECK_MAPS);
	/* An empty report, a worker whose map changed, leaves its set. */
	report_init(&r[0], 0, 0);
	netcheck_request(f->w[1], &r[0].rep, f->nc);
	assert_null(map_of(f->nc, f->w[1]));
	assert_int_equal(maps_used(f->nc), NETCHECK_MAPS - 1);
	netcheck_forget(f->nc, f->w[1]); /* twice is fine */
}

static void test_changing_maps_waits_for_credits(void **state)
{
	struct fixture *f = *state;
	struct report r;
	struct nc_map *m;

	for (uint32_t i = 0; i < NETCHECK_START_BURST; i++) {
		report_init(&r, 64, 10000 + i * 100);
		netcheck_request(f->w[0], &r.rep, f->nc);
		assert_true(map_of(f->nc, f->w[0])->in_round);
	}
	assert_int_equal(f->nc->probes_sent, NETCHECK_START_BURST * 64);
	/* Out of credits: the next set's first round waits. */
	report_init(&r, 64, 20000);
	netcheck_request(f->w[0], &r.rep, f->nc);
	m = map_of(f->nc, f->w[0]);
	assert_false(m->in_round);
	assert_int_equal(f->nc->probes_sent, NETCHECK_START_BURST * 64);
	on_map_timer(&m->timer); /* no time passed: still no credit */
	assert_false(m->in_round);
	f->nc->start_credit_ms -= NETCHECK_START_EVERY_MS;
	on_map_timer(&m->timer);
	assert_true(m->in_round);
	/* The sets it left are gone; no probe of theirs is in flight. */
	assert_int_equal(maps_used(f->nc), 1);
	assert_int_equal(f->nc->inflight, 64);
}

static void test_to_ms(void **state)
{
	(void)state;
	assert_int_equal(to_ms(1), 1);
	assert_int_equal(to_ms(1000000), 1);
	assert_int_equal(to_ms(1000001), 2);
	assert_int_equal(to_ms(UINT64_MAX / 2), NETCHECK_LATENCY_MAX_MS);
	for (int i = 0; i < 1000; i++) {
		uint64_t d = refresh_delay();

		assert_true(d >= NETCHECK_REFRESH_MIN_MS && d <= NETCHECK_REFRESH_MAX_MS);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shared_map, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe_sets_and_round, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_ends_when_all_answered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_limit_and_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changing_maps_waits_for_credits, setup,
						teardown),
		cmocka_unit_test(test_to_ms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
