/* The transport counter's sliding window (RFC 6479): numbered cases in the
 * manner of wireguard-linux's selftest/counter.c, plus a comparison with a
 * plain reference model on a long pseudo-random sequence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "worker/wg/wg_replay.c"

static const uint64_t W = WG_REPLAY_WINDOW_SIZE;

struct step {
	uint64_t counter;
	bool accept;
};

static void run(const struct step *steps, size_t n)
{
	struct wg_replay r;

	wg_replay_init(&r);
	for (size_t i = 0; i < n; i++) {
		bool check = wg_replay_check(&r, steps[i].counter);

		if (check != steps[i].accept || wg_replay_update(&r, steps[i].counter) != check)
			fail_msg("step %zu: counter %llu: want %s", i + 1,
				 (unsigned long long)steps[i].counter,
				 steps[i].accept ? "accept" : "reject");
	}
}

static void test_basics(void **state)
{
	static const struct step steps[] = {
		{0, true},	/* 1: counter 0 is valid on a fresh window */
		{0, false},	/* 2: and only once */
		{1, true},	/* 3 */
		{1, false},	/* 4 */
		{9, true},	/* 5: a gap */
		{8, true},	/* 6: fill it out of order */
		{7, true},	/* 7 */
		{7, false},	/* 8 */
		{W + 9, true},	/* 9: 9 + W: counter 9 is now exactly W behind */
		{9, false},	/* 10: but seen */
		{10, true},	/* 11: last - W + 1, unseen: inside */
		{8, false},	/* 12: last - W - 1: outside */
		{2, false},	/* 13 */
		{W + 10, true}, /* 14 */
		{W + 9, false}, /* 15 */
		{10, false},	/* 16: now W behind and seen */
		{11, true},	/* 17: W - 1 behind, unseen */
	};

	run(steps, sizeof(steps) / sizeof(steps[0]));
}

/* Exactly at the window's edge, one inside and one outside. */
static void test_window_edge(void **state)
{
	const uint64_t top = 3 * W + 77;
	const struct step steps[] = {
		{top, true},	     {top - W - 1, false}, /* 1: one past the edge */
		{top - W, true},			   /* 2: the edge itself */
		{top - W, false},			   /* 3: once */
		{top - W + 1, true},			   /* 4: one inside */
		{top - 1, true},			   /* 5 */
		{top + 1, true},     /* 6: sliding by one drops the old edge */
		{top - W, false},    /* 7: now one past the edge */
		{top - W + 2, true}, /* 8: one inside the new edge */
	};

	run(steps, sizeof(steps) / sizeof(steps[0]));
}

static void test_far_jump(void **state)
{
	const uint64_t far = UINT64_C(1) << 40;
	const struct step steps[] = {
		{0, true},	     {5, true}, {far, true}, /* 1: a jump past the whole ring */
		{5, false},	     /* 2: everything before the window is gone */
		{far - W, true},     /* 3: the edge is empty after the jump */
		{far - 1, true},     /* 4 */
		{far - 1, false},    /* 5 */
		{far + 64, true},    /* 6: one block on */
		{far + 63, true},    /* 7: the block that was cleared */
		{far, false},	     /* 8: still marked */
		{far + 2 * W, true}, /* 9: a jump of two windows */
		{far + 64, false},   /* 10 */
		{far + W, true},     /* 11: the new edge */
	};

	run(steps, sizeof(steps) / sizeof(steps[0]));
}

static void test_reject_after_messages(void **state)
{
	const struct step steps[] = {
		{REJECT_AFTER_MESSAGES - 1, true},  /* 1: the last valid counter */
		{REJECT_AFTER_MESSAGES, false},	    /* 2: the limit itself */
		{REJECT_AFTER_MESSAGES + 1, false}, /* 3 */
		{UINT64_MAX, false},		    /* 4: no wrap */
		{REJECT_AFTER_MESSAGES - 2, true},  /* 5: the window still works */
		{REJECT_AFTER_MESSAGES - 1, false}, /* 6 */
		{0, false},			    /* 7: far behind */
	};

	run(steps, sizeof(steps) / sizeof(steps[0]));
}

/* A rejected counter changes nothing, and check never changes anything. */
static void test_check_is_pure(void **state)
{
	struct wg_replay r, before;

	wg_replay_init(&r);
	assert_true(wg_replay_update(&r, 20000));
	assert_true(wg_replay_update(&r, 19999));
	before = r;
	assert_false(wg_replay_update(&r, 19999));
	assert_false(wg_replay_update(&r, REJECT_AFTER_MESSAGES));
	assert_false(wg_replay_update(&r, 20000 - W - 1));
	assert_true(wg_replay_check(&r, 30000));
	assert_true(wg_replay_check(&r, 20000 - W));
	assert_memory_equal(&r, &before, sizeof(r));
}

/* Against the obvious model: a counter is accepted iff it was not seen before
 * and is not more than W below the highest accepted. */
static void test_random_against_model(void **state)
{
	enum { N = 300000, SPAN = 1 << 20 };
	static uint8_t seen[SPAN];
	struct wg_replay r;
	uint64_t last = 0, x = 88172645463325252ULL;
	unsigned int accepted = 0, rejected = 0;

	wg_replay_init(&r);
	for (int i = 0; i < N; i++) {
		uint64_t c, d;
		bool want;

		/* xorshift64: mostly stragglers behind the top, some new tops,
		 * some beyond the window. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		d = x % (W + 400);
		c = last + 128 >= d ? last + 128 - d : d % 64;
		if (c >= SPAN)
			break;
		want = !seen[c] && !(last > c && last - c > W);
		if (wg_replay_update(&r, c) != want)
			fail_msg("step %d: counter %llu (top %llu): want %s", i,
				 (unsigned long long)c, (unsigned long long)last,
				 want ? "accept" : "reject");
		if (want) {
			seen[c] = 1;
			accepted++;
			if (c > last)
				last = c;
		} else {
			rejected++;
		}
	}
	assert_true(accepted > 10000);
	assert_true(rejected > 10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basics),	      cmocka_unit_test(test_window_edge),
		cmocka_unit_test(test_far_jump),      cmocka_unit_test(test_reject_after_messages),
		cmocka_unit_test(test_check_is_pure), cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
