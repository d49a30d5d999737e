/* derp_conn.c's reconnection backoff (the dial itself is exercised against
 * real DERP servers by netns.derp_interop and e2e.derp/e2e.twonode/
 * e2e.badpeers): the first retry at once, then min(n² · 10 ms, 5 s) with
 * ±50 % jitter, so a region back from a restart is dialled again within
 * about a second; a server that sends bad frames climbs the same curve
 * until a connection lasts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/magicsock/derp_conn.c"

/* The n-th failure (from 1) waits n² · 10 ms, capped at 5 s, times a factor
 * in [0.5, 1.5) drawn from rnd (below 1000). */
static void test_backoff_bounds(void **state)
{
	(void)state;
	assert_int_equal(backoff_ms(0, 0), 5);
	assert_int_equal(backoff_ms(0, 500), 10);
	assert_int_equal(backoff_ms(0, 999), 14);
	assert_int_equal(backoff_ms(1, 500), 40);
	assert_int_equal(backoff_ms(2, 500), 90);
	assert_int_equal(backoff_ms(9, 500), 1000);
	for (unsigned int f = 0; f < 200; f++) {
		unsigned int n = f + 1, base = n * n * 10 < 5000 ? n * n * 10 : 5000;

		assert_int_equal(backoff_ms(f, 0), base / 2);
		assert_true(backoff_ms(f, 999) < base * 3 / 2);
		assert_true(backoff_ms(f, 999) >= backoff_ms(f, 0));
		if (f)
			assert_true(backoff_ms(f, 500) >= backoff_ms(f - 1, 500));
	}
	/* The cap: never more than 7.5 s, however long the region is down. */
	assert_int_equal(backoff_ms(22, 500), 5000);
	assert_int_equal(backoff_ms(4000000000u, 999), 7495);
	/* rnd is taken modulo 1000. */
	assert_int_equal(backoff_ms(0, 1000), backoff_ms(0, 0));
}

/* Dials from a drop at 0 until one comes after a region back at up_ms: how
 * long after up_ms that dial comes, with every jitter at rnd. */
static unsigned int redial_after(unsigned int up_ms, uint32_t rnd)
{
	unsigned int t = 0;

	for (unsigned int f = 0; t < up_ms; f++)
		t += backoff_ms(f, rnd);
	return t - up_ms;
}

/* A region restarted in 1 s or 4 s is dialled again within 1.5 s of its
 * return with the jitter at either end (with 500 ms doubling to 30 s, a
 * 4 s restart could wait 5.5 s more); a long outage within 7.5 s. */
static void test_backoff_restart(void **state)
{
	(void)state;
	for (uint32_t rnd = 0; rnd < 1000; rnd += 999) {
		assert_true(redial_after(1000, rnd) <= 1500);
		assert_true(redial_after(4000, rnd) <= 1500);
		assert_true(redial_after(60000, rnd) <= 7500);
	}
	/* The first retry after a drop comes within 15 ms. */
	assert_true(redial_after(1, 999) < 15);
}

/* A connection that reached ServerInfo at `at`, as deliver() leaves it. */
static void reached_server_info(struct derp_conn *c, uint64_t at)
{
	c->up = true;
	c->up_at = at;
}

/* ms is a delay backoff_ms gives for n, whatever the jitter. */
static void assert_retry(unsigned int ms, unsigned int n)
{
	assert_in_range(ms, backoff_ms(n, 0), backoff_ms(n, 999));
}

static void test_bad_server_errors(void **state)
{
	(void)state;
	assert_true(derp_conn_err_is_bad_server(-EMSGSIZE));
	assert_true(derp_conn_err_is_bad_server(-EPROTO));
	assert_true(derp_conn_err_is_bad_server(-EBADMSG));
	assert_false(derp_conn_err_is_bad_server(-ECONNRESET));
	assert_false(derp_conn_err_is_bad_server(-ETIMEDOUT));
	assert_false(derp_conn_err_is_bad_server(-ENOBUFS));
	assert_false(derp_conn_err_is_bad_server(-ECONNREFUSED));
}

/* A server that accepts us and then sends a bad frame is retried with a
 * backoff that grows with each such connection in a row, up to the cap;
 * a connection that then lasted BAD_STREAK_RESET_MS starts it over. */
static void test_bad_frames_back_off(void **state)
{
	struct derp_conn c = {0};
	uint64_t now = 1000;

	(void)state;
	for (unsigned int i = 1; i <= 30; i++) {
		reached_server_info(&c, now);
		now += 100;
		assert_retry(retry_ms(&c, -EMSGSIZE, now), i < BACKOFF_N_MAX ? i : BACKOFF_N_MAX);
	}
	assert_int_equal(backoff_ms(c.bad_streak, 500), BACKOFF_MAX_MS);
	reached_server_info(&c, now);
	now += BAD_STREAK_RESET_MS;
	assert_retry(retry_ms(&c, -EBADMSG, now), 1);
	reached_server_info(&c, now);
	assert_retry(retry_ms(&c, -EPROTO, now + 1), 2);
}

/* A connection that lasted BACKOFF_STABLE_MS and dropped is redialled at
 * once; failed dials then grow the wait; a server's own "come back in"
 * is believed and costs no step. */
static void test_ordinary_drops_start_over(void **state)
{
	struct derp_conn c = {0};
	uint64_t now = 1000;

	(void)state;
	for (int i = 0; i < 4; i++) {
		reached_server_info(&c, now);
		now += BACKOFF_STABLE_MS;
		assert_retry(retry_ms(&c, -ECONNRESET, now), 0);
	}
	c.up = false;
	assert_retry(retry_ms(&c, -ECONNREFUSED, now), 1);
	assert_retry(retry_ms(&c, -ECONNREFUSED, now), 2);
	c.restart_ms = 1234;
	assert_int_equal(retry_ms(&c, -ECONNRESET, now), 1234);
	assert_retry(retry_ms(&c, -ECONNREFUSED, now), 3);
	/* A connection the server drops as soon as it is up does not start
	 * over: redialling every 10 ms would hammer it. */
	reached_server_info(&c, now);
	assert_retry(retry_ms(&c, -ECONNRESET, now + 100), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_bounds),
		cmocka_unit_test(test_backoff_restart),
		cmocka_unit_test(test_bad_server_errors),
		cmocka_unit_test(test_bad_frames_back_off),
		cmocka_unit_test(test_ordinary_drops_start_over),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
