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
	unsigned long open = 0, limit = 0, reserve = 0;

	(void)state;
	assert_int_equal(proc_limits_apply(), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	assert_int_equal(getrlimit(RLIMIT_CORE, &core), 0);
	assert_true(core.rlim_cur == 0 && core.rlim_max == 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &nofile), 0);
	assert_true(nofile.rlim_cur == nofile.rlim_max);
	if (nofile.rlim_cur != RLIM_INFINITY && nofile.rlim_cur < 4096)
		return; /* too low here for a pod beside the reserve */
	assert_int_equal(proc_limits_pod_fits(&open, &limit, &reserve), 0);
	assert_true(open >= 3 && reserve > PROC_LIMITS_FD_RESERVE);
	assert_true(nofile.rlim_cur == RLIM_INFINITY || limit == nofile.rlim_cur);
}

/* A quarter of the limit for connections, within [128, 1024]. */
static void test_conn_max(void **state)
{
	(void)state;
	assert_int_equal(proc_limits_conn_max(150), PROC_LIMITS_CONN_MIN);
	assert_int_equal(proc_limits_conn_max(1024), 256);
	assert_int_equal(proc_limits_conn_max(20000), PROC_LIMITS_CONN_MAX);
	assert_int_equal(proc_limits_conn_max((unsigned long)-1), PROC_LIMITS_CONN_MAX);
	assert_int_equal(proc_limits_reserve(1024), PROC_LIMITS_FD_RESERVE + 256);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_room),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_conn_max),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
