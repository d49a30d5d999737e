/* chan.c: order, bounds, drops and wakes of the DERP packet rings, and the
 * two rings under a producer and a consumer thread at once. */
#include "worker/magicsock/chan.c"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static int wakes;

static void count_wake(void *arg)
{
	(*(int *)arg)++;
}

static void test_order_and_bounds(void **state)
{
	struct chan *c = chan_new();
	uint8_t key[CHAN_KEY_LEN] = {7}, big[CHAN_PKT_MAX + 1] = {0};
	struct chan_stats st;
	const struct chan_pkt *p;

	wakes = 0;
	chan_set_wake_control(c, count_wake, &wakes);
	assert_null(chan_send_peek(c));
	for (int i = 0; i < CHAN_SLOTS; i++) {
		uint8_t b = (uint8_t)i;

		assert_int_equal(chan_send_push(c, key, (uint16_t)(900 + i), &b, 1), 0);
	}
	/* Full: the next one is dropped, not queued; too big likewise. */
	assert_int_equal(chan_send_push(c, key, 900, big, 1), -ENOBUFS);
	assert_int_equal(chan_send_push(c, key, 900, big, sizeof(big)), -EMSGSIZE);
	assert_int_equal(wakes, CHAN_SLOTS);
	for (int i = 0; i < CHAN_SLOTS; i++) {
		p = chan_send_peek(c);
		assert_non_null(p);
		assert_int_equal(p->len, 1);
		assert_int_equal(p->data[0], i);
		assert_int_equal(p->region, 900 + i);
		assert_memory_equal(p->key, key, CHAN_KEY_LEN);
		chan_send_done(c);
	}
	assert_null(chan_send_peek(c));
	/* The other direction is independent and wakes the engine's side. */
	assert_null(chan_recv_peek(c));
	assert_int_equal(chan_recv_push(c, key, 901, big, CHAN_PKT_MAX), 0);
	assert_int_equal(chan_recv_peek(c)->len, CHAN_PKT_MAX);
	chan_recv_done(c);
	chan_stats(c, &st);
	assert_int_equal(st.to_derp, CHAN_SLOTS);
	assert_int_equal(st.to_derp_dropped, 2);
	assert_int_equal(st.from_derp, 1);
	assert_int_equal(st.from_derp_dropped, 0);
	chan_free(c);
}

enum { STRESS_N = 200000 };

static void *producer(void *arg)
{
	struct chan *c = arg;
	uint8_t key[CHAN_KEY_LEN] = {0};

	for (uint32_t i = 0; i < STRESS_N; i++)
		(void)chan_send_push(c, key, 1, (const uint8_t *)&i, sizeof(i));
	return NULL;
}

/* Whatever arrives arrives whole and in order; what does not was counted
 * as dropped. */
static void test_two_threads(void **state)
{
	struct chan *c = chan_new();
	pthread_t t;
	uint32_t last = 0, got = 0;
	bool first = true;
	struct chan_stats st;

	assert_int_equal(pthread_create(&t, NULL, producer, c), 0);
	for (;;) {
		const struct chan_pkt *p = chan_send_peek(c);
		uint32_t v;

		if (!p) {
			chan_stats(c, &st);
			if (st.to_derp + st.to_derp_dropped == STRESS_N && !chan_send_peek(c))
				break;
			continue;
		}
		assert_int_equal(p->len, sizeof(v));
		memcpy(&v, p->data, sizeof(v));
		assert_true(first || v > last);
		first = false;
		last = v;
		got++;
		chan_send_done(c);
	}
	pthread_join(t, NULL);
	chan_stats(c, &st);
	assert_int_equal(got, st.to_derp);
	assert_int_equal(st.to_derp + st.to_derp_dropped, STRESS_N);
	chan_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_bounds),
		cmocka_unit_test(test_two_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
