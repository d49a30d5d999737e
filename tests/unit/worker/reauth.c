/* Unit tests of the worker's key-expiry decisions (worker/reauth.c): when a
 * node asks the supervisor for re-authentication, from its self node's
 * KeyExpiry, control's Expired flag and control's clock; and how often it
 * asks again while it waits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/reauth.c"

enum { NOW = 1700000000 };

static void need(void **state)
{
	static const struct {
		bool has_expiry;
		int64_t key_expiry;
		bool expired;
		int64_t now;
		enum reauth_need want;
	} v[] = {
		/* 0: zero KeyExpiry (tagged, expiry disabled): left alone */
		{false, 0, false, NOW, REAUTH_NONE},
		/* 1: far off */
		{true, NOW + 180 * 86400, false, NOW, REAUTH_NONE},
		/* 2: just outside the margin */
		{true, NOW + REAUTH_MARGIN_S + 1, false, NOW, REAUTH_NONE},
		/* 3: at the margin */
		{true, NOW + REAUTH_MARGIN_S, false, NOW, REAUTH_SOON},
		/* 4: a second left */
		{true, NOW + 1, false, NOW, REAUTH_SOON},
		/* 5: now */
		{true, NOW, false, NOW, REAUTH_EXPIRED},
		/* 6: passed */
		{true, NOW - 3600, false, NOW, REAUTH_EXPIRED},
		/* 7: control says Expired, whatever the time */
		{true, NOW + 86400, true, NOW, REAUTH_EXPIRED},
		/* 8: Expired without a KeyExpiry */
		{false, 0, true, NOW, REAUTH_EXPIRED},
		/* 9: control's clock (now + skew) is what counts: 2 h ahead */
		{true, NOW + 7200, false, NOW + 7200 - 60, REAUTH_SOON},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enum reauth_need got =
			reauth_need(v[i].has_expiry, v[i].key_expiry, v[i].expired, v[i].now);

		if (got != v[i].want)
			fail_msg("vector %zu: need %d, want %d", i, (int)got, (int)v[i].want);
	}
}

static void send_due(void **state)
{
	(void)state;
	assert_false(reauth_send_due(REAUTH_NONE, 100000, 0, false));
	assert_true(reauth_send_due(REAUTH_SOON, 100000, 0, false));
	assert_true(reauth_send_due(REAUTH_EXPIRED, 5, 0, true));
	/* Not again before REAUTH_RESEND_MS. */
	assert_false(reauth_send_due(REAUTH_EXPIRED, 100000 + REAUTH_RESEND_MS - 1, 100000, false));
	assert_true(reauth_send_due(REAUTH_EXPIRED, 100000 + REAUTH_RESEND_MS, 100000, false));
	assert_false(reauth_send_due(REAUTH_NONE, 100000 + REAUTH_RESEND_MS, 100000, false));
	/* News from control: sooner, but not before REAUTH_NEWS_GAP_MS, past
	 * the supervisor's PODS_REAUTH_ASK_S. */
	assert_true(REAUTH_NEWS_GAP_MS > 10 * 1000 && REAUTH_NEWS_GAP_MS < REAUTH_RESEND_MS);
	assert_false(reauth_send_due(REAUTH_SOON, 100000 + REAUTH_NEWS_GAP_MS - 1, 100000, true));
	assert_true(reauth_send_due(REAUTH_SOON, 100000 + REAUTH_NEWS_GAP_MS, 100000, true));
	assert_false(reauth_send_due(REAUTH_NONE, 100000 + REAUTH_NEWS_GAP_MS, 100000, true));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(need),
		cmocka_unit_test(send_due),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
