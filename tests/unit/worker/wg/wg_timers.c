/* The hashed timer wheel: timers fire at or after their expiry (never
 * before, at most one tick late), cancel and re-arm are O(1) and exact,
 * callbacks may re-arm, long pauses and far-future timers (several turns of
 * the wheel) work, and a random schedule matches a plain reference model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "worker/wg/wg_timers.c"

enum { MS = 1000000, N_RANDOM = 2000 };

struct probe {
	struct wg_timer t;
	uint64_t due; /* when it was armed to fire (reference model) */
	uint64_t fired_at;
	int fired;
	int rearm; /* re-arm this many more times, 7 ms later each */
};

static uint64_t clock_now;

static void on_fire(struct wg_timer *t, void *ctx)
{
	struct probe *p = (struct probe *)t;
	struct wg_timer_wheel *w = ctx;

	p->fired++;
	p->fired_at = clock_now;
	if (p->rearm > 0) {
		p->rearm--;
		p->due = clock_now + 7 * MS;
		wg_timers_mod(w, t, p->due);
	}
}

static void run_to(struct wg_timer_wheel *w, uint64_t until, uint64_t step)
{
	while (clock_now < until) {
		clock_now += step;
		wg_timers_run(w, clock_now, w);
	}
}

static void test_fires_on_time(void **state)
{
	struct wg_timer_wheel w;
	struct probe p = {0};

	(void)state;
	clock_now = 1000 * MS;
	wg_timers_init(&w, MS, clock_now);
	wg_timers_setup(&p.t, on_fire);
	wg_timers_mod(&w, &p.t, clock_now + 50 * MS);
	assert_true(wg_timers_pending(&p.t));
	run_to(&w, clock_now + 49 * MS, MS);
	assert_int_equal(p.fired, 0);
	run_to(&w, clock_now + 1 * MS, MS);
	assert_int_equal(p.fired, 1);
	assert_int_equal(p.fired_at, 1050 * MS);
	assert_false(wg_timers_pending(&p.t));
	assert_int_equal(w.pending, 0);
	run_to(&w, clock_now + 100 * MS, MS);
	assert_int_equal(p.fired, 1);
}

static void test_cancel_and_move(void **state)
{
	struct wg_timer_wheel w;
	struct probe a = {0}, b = {0};

	(void)state;
	clock_now = 0;
	wg_timers_init(&w, MS, 0);
	wg_timers_setup(&a.t, on_fire);
	wg_timers_setup(&b.t, on_fire);
	wg_timers_mod(&w, &a.t, 10 * MS);
	wg_timers_mod(&w, &b.t, 10 * MS); /* same slot */
	wg_timers_del(&w, &a.t);
	wg_timers_del(&w, &a.t); /* twice is harmless */
	assert_false(wg_timers_pending(&a.t));
	assert_true(wg_timers_pending(&b.t));
	wg_timers_mod(&w, &b.t, 30 * MS); /* move later */
	run_to(&w, 29 * MS, MS);
	assert_int_equal(a.fired + b.fired, 0);
	run_to(&w, 30 * MS, MS);
	assert_int_equal(b.fired, 1);
	assert_int_equal(a.fired, 0);
	/* A time in the past fires at the next run, not never. */
	wg_timers_mod(&w, &a.t, 1 * MS);
	assert_int_equal(wg_timers_run(&w, clock_now, &w), 0);
	clock_now += MS;
	assert_int_equal(wg_timers_run(&w, clock_now, &w), 1);
	assert_int_equal(a.fired, 1);
}

static void test_rearm_from_callback(void **state)
{
	struct wg_timer_wheel w;
	struct probe p = {.rearm = 3};

	(void)state;
	clock_now = 0;
	wg_timers_init(&w, MS, 0);
	wg_timers_setup(&p.t, on_fire);
	wg_timers_mod(&w, &p.t, 5 * MS);
	run_to(&w, 100 * MS, MS);
	assert_int_equal(p.fired, 4);
	assert_int_equal(p.fired_at, 26 * MS); /* 5 + 3 * 7 */
}

static void test_far_future_and_long_pause(void **state)
{
	struct wg_timer_wheel w;
	struct probe far = {0}, near = {0};

	(void)state;
	clock_now = 0;
	wg_timers_init(&w, MS, 0);
	wg_timers_setup(&far.t, on_fire);
	wg_timers_setup(&near.t, on_fire);
	/* 3.5 turns of the wheel ahead: it shares a slot with earlier ticks. */
	wg_timers_mod(&w, &far.t, (3 * WG_TIMERS_SLOTS + 512) * (uint64_t)MS);
	wg_timers_mod(&w, &near.t, 512 * (uint64_t)MS);
	run_to(&w, 600 * MS, 3 * MS);
	assert_int_equal(near.fired, 1);
	assert_int_equal(far.fired, 0);
	run_to(&w, (3 * WG_TIMERS_SLOTS + 511) * (uint64_t)MS, MS);
	assert_int_equal(far.fired, 0);
	/* A pause of many turns: both re-armed timers fire at once. */
	wg_timers_mod(&w, &near.t, clock_now + 5 * MS);
	clock_now += 10 * WG_TIMERS_SLOTS * (uint64_t)MS;
	assert_int_equal(wg_timers_run(&w, clock_now, &w), 2);
	assert_int_equal(far.fired, 1);
	assert_int_equal(near.fired, 2);
	assert_int_equal(w.pending, 0);
}

/* Random arms, moves and cancels against the obvious model: each pending
 * timer fires exactly once, at the first run at or after its due time. */
static void test_random_against_model(void **state)
{
	static struct probe p[N_RANDOM];
	struct wg_timer_wheel w;
	uint64_t end = 5000 * (uint64_t)MS;
	unsigned seed = 12345;

	(void)state;
	clock_now = 0;
	wg_timers_init(&w, MS, 0);
	for (size_t i = 0; i < N_RANDOM; i++) {
		memset(&p[i], 0, sizeof(p[i]));
		wg_timers_setup(&p[i].t, on_fire);
	}
	while (clock_now < end) {
		for (int k = 0; k < 8; k++) {
			struct probe *q = &p[rand_r(&seed) % N_RANDOM];

			if (q->fired)
				continue;
			if (rand_r(&seed) % 4 == 0) {
				wg_timers_del(&w, &q->t);
				q->due = 0;
			} else {
				q->due = clock_now +
					 (uint64_t)(rand_r(&seed) % 3000) * 1000 * 1000 +
					 rand_r(&seed) % MS;
				wg_timers_mod(&w, &q->t, q->due);
			}
		}
		clock_now += (uint64_t)(1 + rand_r(&seed) % 5) * MS;
		wg_timers_run(&w, clock_now, &w);
	}
	clock_now += 4000 * (uint64_t)MS;
	wg_timers_run(&w, clock_now, &w);
	for (size_t i = 0; i < N_RANDOM; i++) {
		if (p[i].due == 0) {
			if (p[i].fired)
				fail_msg("timer %zu fired after cancel", i);
			continue;
		}
		if (p[i].fired != 1)
			fail_msg("timer %zu fired %d times", i, p[i].fired);
		if (p[i].fired_at < p[i].due)
			fail_msg("timer %zu fired early", i);
		if (p[i].fired_at < clock_now && p[i].fired_at > p[i].due + 6 * MS)
			fail_msg("timer %zu fired late", i);
	}
	assert_int_equal(w.pending, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fires_on_time),
		cmocka_unit_test(test_cancel_and_move),
		cmocka_unit_test(test_rearm_from_callback),
		cmocka_unit_test(test_far_future_and_long_pause),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
