/* The DERP connection's reconnect delays: a server that accepts us and then
 * sends a bad frame is retried with a backoff that grows with each such
 * connection in a row, where an ordinary drop after ServerInfo starts over
 * at BACKOFF_MIN_MS. (Connections themselves are tested in
 * tests/netns/derp_interop.c and tests/e2e/badpeers.sh.) */
#include "worker/magicsock/derp_conn.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* [min, min * 1.5]: the delay for shift k with its jitter. */
static void assert_step(unsigned int ms, unsigned int base)
{
	assert_in_range(ms, base, base + base / 2);
}

/* A connection that reached ServerInfo at `at`, as deliver() leaves it. */
static void reached_server_info(struct derp_conn *c, uint64_t at)
{
	c->up = true;
	c->up_at = at;
	c->failures = 0;
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

static void test_bad_frames_back_off(void **state)
{
	struct derp_conn c = {0};
	uint64_t now = 1000;
	unsigned int want = BACKOFF_MIN_MS;

	(void)state;
	/* Each connection is accepted, then ends on a 2 GiB frame header. */
	for (int i = 0; i < 9; i++) {
		reached_server_info(&c, now);
		now += 100;
		assert_step(retry_ms(&c, -EMSGSIZE, now), want);
		want = want * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : want * 2;
	}
	assert_int_equal(want, BACKOFF_MAX_MS);
	/* A connection that then lasted BAD_STREAK_RESET_MS has proved the
	 * server sane again: its bad frame starts over. */
	reached_server_info(&c, now);
	now += BAD_STREAK_RESET_MS;
	assert_step(retry_ms(&c, -EBADMSG, now), BACKOFF_MIN_MS);
	reached_server_info(&c, now);
	assert_step(retry_ms(&c, -EPROTO, now + 1), 2 * BACKOFF_MIN_MS);
}

static void test_ordinary_drops_start_over(void **state)
{
	struct derp_conn c = {0};
	uint64_t now = 1000;

	(void)state;
	for (int i = 0; i < 4; i++) {
		reached_server_info(&c, now);
		now += 100;
		assert_step(retry_ms(&c, -ECONNRESET, now), BACKOFF_MIN_MS);
	}
	/* Dials that fail grow it as before. */
	c.up = false;
	assert_step(retry_ms(&c, -ECONNREFUSED, now), 2 * BACKOFF_MIN_MS);
	assert_step(retry_ms(&c, -ECONNREFUSED, now), 4 * BACKOFF_MIN_MS);
	/* A server that says when to come back is believed, and its word
	 * costs no step of the backoff. */
	c.restart_ms = 1234;
	assert_int_equal(retry_ms(&c, -ECONNRESET, now), 1234);
	assert_step(retry_ms(&c, -ECONNREFUSED, now), 8 * BACKOFF_MIN_MS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_server_errors),
		cmocka_unit_test(test_bad_frames_back_off),
		cmocka_unit_test(test_ordinary_drops_start_over),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
