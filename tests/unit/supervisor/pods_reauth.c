/* Unit tests of the supervisor's decisions on a worker's ReauthRequest
 * (supervisor/pods_reauth.c): a request is admitted only when none of the
 * pod's is under way, not within PODS_REAUTH_ASK_S of the last and not
 * within PODS_REAUTH_INTERVAL_S of the pod's last rotation; an expiry is
 * confirmed only by the key source's device with our node key and a key
 * expiry within the margin; a static key confirms nothing and passes on
 * the limits alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "supervisor/pods_reauth.c"

enum { T = 100000, NOW = 1700000000 };

static void admit(void **state)
{
	static const struct {
		struct pod_reauth_limits l;
		uint64_t now;
		enum pods_reauth_verdict want;
	} v[] = {
		/* 0: the first request */
		{{0, 0, false}, T, PODS_REAUTH_OK},
		/* 1: one under way */
		{{0, 0, true}, T, PODS_REAUTH_BUSY},
		/* 2: asked a second ago */
		{{T - 1, 0, false}, T, PODS_REAUTH_TOO_OFTEN},
		/* 3: asked PODS_REAUTH_ASK_S ago, never rotated */
		{{T - PODS_REAUTH_ASK_S, 0, false}, T, PODS_REAUTH_OK},
		/* 4: rotated 30 s ago */
		{{T - 30, T - 30, false}, T, PODS_REAUTH_RATE_LIMITED},
		/* 5: rotated just under the interval ago */
		{{T - 30, T - PODS_REAUTH_INTERVAL_S + 1, false}, T, PODS_REAUTH_RATE_LIMITED},
		/* 6: rotated the interval ago */
		{{T - 30, T - PODS_REAUTH_INTERVAL_S, false}, T, PODS_REAUTH_OK},
		/* 7: busy wins over everything */
		{{T - 1, T - 1, true}, T, PODS_REAUTH_BUSY},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enum pods_reauth_verdict got = pods_reauth_admit(&v[i].l, v[i].now);

		if (got != v[i].want)
			fail_msg("vector %zu: %s, want %s", i, pods_reauth_why(got),
				 pods_reauth_why(v[i].want));
	}
}

static void confirm(void **state)
{
	static const struct {
		enum authkeys_kind kind;
		enum authkeys_device res;
		int64_t expiry;
		enum pods_reauth_verdict want;
	} v[] = {
		/* 0: expired a minute ago */
		{AUTHKEYS_OAUTH, AUTHKEYS_DEVICE_FOUND, NOW - 60, PODS_REAUTH_OK},
		/* 1: expires within the margin */
		{AUTHKEYS_OAUTH, AUTHKEYS_DEVICE_FOUND, NOW + REAUTH_MARGIN_S, PODS_REAUTH_OK},
		/* 2: the margin plus the clocks' slack */
		{AUTHKEYS_HEADSCALE, AUTHKEYS_DEVICE_FOUND, NOW + REAUTH_MARGIN_S + REAUTH_SLACK_S,
		 PODS_REAUTH_OK},
		/* 3: later than that: not due */
		{AUTHKEYS_OAUTH, AUTHKEYS_DEVICE_FOUND, NOW + REAUTH_MARGIN_S + REAUTH_SLACK_S + 1,
		 PODS_REAUTH_NOT_DUE},
		/* 4: the key does not expire (tagged, expiry disabled) */
		{AUTHKEYS_OAUTH, AUTHKEYS_DEVICE_FOUND, 0, PODS_REAUTH_NO_EXPIRY},
		/* 5: the device has another node key */
		{AUTHKEYS_OAUTH, AUTHKEYS_DEVICE_MISMATCH, NOW - 60, PODS_REAUTH_MISMATCH},
		/* 6: no device */
		{AUTHKEYS_HEADSCALE, AUTHKEYS_DEVICE_ABSENT, 0, PODS_REAUTH_NO_DEVICE},
		/* 7: the API failed */
		{AUTHKEYS_OAUTH, AUTHKEYS_DEVICE_RETRY, 0, PODS_REAUTH_API_DOWN},
		/* 8: a static key: nothing to ask, the limits decide */
		{AUTHKEYS_STATIC, AUTHKEYS_DEVICE_FOUND, 0, PODS_REAUTH_OK},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enum pods_reauth_verdict got =
			pods_reauth_confirm(v[i].kind, v[i].res, v[i].expiry, NOW);

		if (got != v[i].want)
			fail_msg("vector %zu: %s, want %s", i, pods_reauth_why(got),
				 pods_reauth_why(v[i].want));
	}
}

static void words(void **state)
{
	(void)state;
	for (int v = PODS_REAUTH_OK; v <= PODS_REAUTH_NO_KEY; v++)
		assert_string_not_equal(pods_reauth_why((enum pods_reauth_verdict)v), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(admit),
		cmocka_unit_test(confirm),
		cmocka_unit_test(words),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
