/* The home region after a netcheck (upstream's stickiness): a numbered
 * table of (current home, its latency, heard from lately, best region, its
 * latency) -> the region chosen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/magicsock/home.c"

static const struct vec {
	struct home_choice c;
	uint16_t want;
} vecs[] = {
	/* 1 */ {{.cur = 0, .best = 901, .best_ms = 40}, 901}, /* first report */
	/* 2 */ {{.cur = 900, .cur_ms = 0, .best = 0}, 900},   /* nothing answered */
	/* 3 */ {{.cur = 0, .best = 0}, 0},
	/* 4 */ {{.cur = 900, .cur_ms = 20, .best = 900, .best_ms = 20}, 900},
	/* 5 */ {{.cur = 900, .cur_ms = 0, .best = 901, .best_ms = 3}, 901}, /* unreachable */
	/* 6 */ {{.cur = 900, .cur_ms = 0, .cur_heard = true, .best = 901, .best_ms = 3}, 900},
	/* 7 */ {{.cur = 900, .cur_ms = 15, .best = 901, .best_ms = 6}, 900},	/* < 10 ms */
	/* 8 */ {{.cur = 900, .cur_ms = 100, .best = 901, .best_ms = 80}, 900}, /* > 2/3 */
	/* 9 */ {{.cur = 900, .cur_ms = 100, .best = 901, .best_ms = 66}, 901},
	/* 10 */ {{.cur = 900, .cur_ms = 100, .best = 901, .best_ms = 67}, 900},
	/* 11 */ {{.cur = 900, .cur_ms = 30, .best = 901, .best_ms = 20}, 901}, /* 10 ms, 2/3 */
	/* 12 */ {{.cur = 900, .cur_ms = 29, .best = 901, .best_ms = 20}, 900},
	/* 13 */ {{.cur = 900, .cur_ms = 300, .best = 901, .best_ms = 250}, 900},
	/* 14 */ {{.cur = 900, .cur_ms = 0, .cur_heard = false, .best = 901, .best_ms = 900}, 901},
};

static void test_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++) {
		uint16_t got = home_pick(&vecs[i].c);

		if (got != vecs[i].want)
			fail_msg("vector %zu: got %u, want %u", i + 1, got, vecs[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
