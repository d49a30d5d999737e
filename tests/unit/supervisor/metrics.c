/* metrics.c's text format: label values escaped as the exposition format
 * says, and the histogram's buckets. */
#include "supervisor/metrics.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* Label values escaped as the exposition format says; one histogram
 * observation lands in its bucket and every later one (cumulative). */
static void test_text(void **state)
{
	struct metrics_text t = {0};
	struct metrics *m = metrics_new();

	metrics_sample(&t, "x", (const char *[]){"pod", "a\\b\"c\nd\001", NULL}, 7);
	metrics_sample(&t, "y", NULL, 1);
	assert_int_equal(t.len, strlen("x{pod=\"a\\\\b\\\"c\\nd?\"} 7\ny 1\n"));
	assert_memory_equal(t.buf, "x{pod=\"a\\\\b\\\"c\\nd?\"} 7\ny 1\n", t.len);
	free(t.buf);
	metrics_cni_observe(m, METRICS_ADD, true, 30000);     /* 30 ms */
	metrics_cni_observe(m, METRICS_ADD, false, 20000000); /* 20 s: only +Inf */
	metrics_cni_observe(NULL, METRICS_ADD, true, 1);
	assert_int_equal(m->dur[METRICS_ADD].count, 2);
	assert_int_equal(m->dur[METRICS_ADD].le[3], 1); /* le 0.05 */
	assert_int_equal(m->cni[METRICS_ADD][1], 1);
	assert_int_equal(m->cni[METRICS_ADD][0], 1);
	metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
