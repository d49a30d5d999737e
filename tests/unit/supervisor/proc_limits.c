/* The supervisor's process limits: the fd arithmetic, and what
 * proc_limits_apply leaves on this process (undumpable, no core, the soft
 * open-file limit at the hard one). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "supervisor/proc_limits.c"

static void test_fd_room(void **state)
{
	(void)state;
	assert_true(proc_limits_fd_room(20, 1024, 8, 192));
	assert_true(proc_limits_fd_room(824, 1024, 8, 192));  /* exactly at the limit */
	assert_false(proc_limits_fd_room(825, 1024, 8, 192)); /* one over */
	assert_false(proc_limits_fd_room(25, 150, 8, 192));
	assert_false(proc_limits_fd_room(2000, 1024, 8, 0)); /* already over */
	/* No sum wraps. */
	assert_false(proc_limits_fd_room(10, 100, (unsigned long)-1, 0));
	assert_false(proc_limits_fd_room(10, 100, 8, (unsigned long)-5));
	assert_true(proc_limits_fd_room(10, (unsigned long)-1, 8, 192));
}

static void test_apply(void **state)
{
	struct rlimit core, nofile;
	unsigned long open = 0, limit = 0;

	(void)state;
	assert_int_equal(proc_limits_apply(192), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	assert_int_equal(getrlimit(RLIMIT_CORE, &core), 0);
	assert_true(core.rlim_cur == 0 && core.rlim_max == 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &nofile), 0);
	assert_true(nofile.rlim_cur == nofile.rlim_max);
	/* A pod fits beside a small reserve, never beside the whole limit. */
	assert_int_equal(proc_limits_pod_fits(16, &open, &limit), 0);
	assert_true(open >= 3 && limit == nofile.rlim_cur);
	assert_int_equal(proc_limits_pod_fits(limit, &open, &limit), -EMFILE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_room),
		cmocka_unit_test(test_apply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
