/* Forced fallbacks: the environment switch the CI fallback run relies on. */
#include "common/kfeat.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void test_forced(void **state)
{
	unsetenv("TSCNI_FORCE_FALLBACK");
	assert_false(kfeat_fallback_forced("close_range"));
	setenv("TSCNI_FORCE_FALLBACK", "all", 1);
	assert_true(kfeat_fallback_forced("close_range"));
	setenv("TSCNI_FORCE_FALLBACK", "so_peerpidfd,close_range", 1);
	assert_true(kfeat_fallback_forced("close_range"));
	assert_true(kfeat_fallback_forced("so_peerpidfd"));
	assert_false(kfeat_fallback_forced("close"));
	assert_false(kfeat_fallback_forced("clone_pidfd"));
	setenv("TSCNI_FORCE_FALLBACK", "", 1);
	assert_false(kfeat_fallback_forced("close_range"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_forced)};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
