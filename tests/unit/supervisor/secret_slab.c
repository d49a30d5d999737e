/* secret_slab: many secrets share one locked page; slots are distinct,
 * zeroed, wiped when given back, and a page goes once it is empty. */
#include "supervisor/secret_slab.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

enum { N = 2 * SECRET_SLAB_SLOTS + 10 }; /* three pages */

static bool all_zero(const uint8_t *p)
{
	for (size_t i = 0; i < SECRET_SLAB_SLOT; i++)
		if (p[i])
			return false;
	return true;
}

static void test_pages(void **state)
{
	static uint8_t *slot[N];

	(void)state;
	assert_int_equal(secret_slab_pages(), 0);
	for (int i = 0; i < N; i++) {
		slot[i] = secret_slab_get();
		assert_non_null(slot[i]);
		assert_true(all_zero(slot[i]));
		memset(slot[i], 0xA0 + (i & 15), SECRET_SLAB_SLOT);
	}
	assert_int_equal(secret_slab_pages(), 3);
	/* Distinct slots: each still holds what was written into it. */
	for (int i = 0; i < N; i++)
		for (size_t k = 0; k < SECRET_SLAB_SLOT; k++)
			assert_int_equal(slot[i][k], 0xA0 + (i & 15));
	/* A slot given back is wiped (its page is still held); the next one
	 * handed out is zeroed, and no page is added while one has room. */
	secret_slab_put(slot[5]);
	assert_true(all_zero(slot[5]));
	slot[5] = secret_slab_get();
	assert_non_null(slot[5]);
	assert_true(all_zero(slot[5]));
	assert_int_equal(secret_slab_pages(), 3);
	/* The first page's slots all back (slot 5 may now be on another
	 * page): two pages stay at most, one at least. */
	for (int i = 0; i < SECRET_SLAB_SLOTS; i++)
		secret_slab_put(slot[i]);
	assert_true(secret_slab_pages() >= 1 && secret_slab_pages() <= 2);
	for (int i = SECRET_SLAB_SLOTS; i < N; i++)
		secret_slab_put(slot[i]);
	assert_int_equal(secret_slab_pages(), 0);
	secret_slab_put(NULL);
	assert_int_equal(secret_slab_pages(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pages),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
