/* Logging: levels, the error suffix, and escaping of hostile strings. */
#include "common/log.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static char last[LOG_LINE_MAX];
static int lines;

static void sink(void *arg, enum log_level level, const char *line)
{
	snprintf(last, sizeof(last), "%s", line);
	lines++;
}

static void test_levels_and_suffix(void **state)
{
	log_init("t", LOG_WARN);
	log_set_sink(sink, NULL);
	lines = 0;
	log_info("hidden");
	assert_int_equal(lines, 0);
	log_warn("shown %d", 7);
	assert_int_equal(lines, 1);
	assert_string_equal(last, "W t test_levels_and_suffix: shown 7");
	log_err_r(-ENOENT, "open %s", "x");
	assert_string_equal(last, "E t test_levels_and_suffix: open x: No such file or directory");
	log_set_sink(NULL, NULL);
}

static void test_level_parse(void **state)
{
	enum log_level l;

	assert_int_equal(log_level_parse("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_level_parse("verbose", &l), -EINVAL);
}

static void test_escape(void **state)
{
	char out[16];
	const char nul[] = {'a', '\0', 'b'};

	assert_string_equal(log_escape(out, sizeof(out), "pod-1", 5), "pod-1");
	assert_string_equal(log_escape(out, sizeof(out), "a\nb", 3), "a\\x0ab");
	assert_string_equal(log_escape(out, sizeof(out), nul, 3), "a\\x00b");
	assert_string_equal(log_escape(out, sizeof(out), "\x1b[31m", 5), "\\x1b[31m");
	/* Too long: cut, marked, terminated within the buffer. */
	assert_string_equal(log_escape(out, sizeof(out), "0123456789abcdefghij", 20),
			    "0123456789ab...");
	assert_string_equal(log_escape(out, 4, "\n\n", 2), "...");
}

/* A burst is one line; the next line, a window later, counts what the
 * window swallowed. */
static void test_ratelimit(void **state)
{
	struct log_ratelimit rl = {0};

	assert_int_equal(log_ratelimit_hit(&rl, 0, 10000), 1); /* the first at once, even at t=0 */
	for (int i = 0; i < 5; i++)
		assert_int_equal(log_ratelimit_hit(&rl, 1000 + i, 10000), 0);
	assert_int_equal(log_ratelimit_hit(&rl, 9999, 10000), 0);
	assert_int_equal(log_ratelimit_hit(&rl, 10000, 10000), 7); /* 6 swallowed + this one */
	assert_int_equal(log_ratelimit_hit(&rl, 10001, 10000), 0);
	/* Quiet for long: the next one is logged at once, counting 2. */
	assert_int_equal(log_ratelimit_hit(&rl, 50000, 10000), 2);
	assert_int_equal(log_ratelimit_hit(&rl, 60000, 10000), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_and_suffix),
		cmocka_unit_test(test_level_parse),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_ratelimit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
