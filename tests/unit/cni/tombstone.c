/* Unit tests for cni/tombstone.c: DEL tombstones in a temporary state dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cni/tombstone.c"
#include "fake_supervisor.h"

#include <stdio.h>

static void test_write_and_read_back(void **state)
{
	char dir[64], path[256], name[RECORD_KEYNAME_LEN];
	const char *why = NULL;
	Tscni__Tombstone *t;
	struct stat st;
	int dfd, err = 0;

	fake_tmpdir(dir, sizeof(dir), "/tmp/tscni-tomb.");
	snprintf(path, sizeof(path), "%s/a/b", dir);
	assert_int_equal(
		tombstone_write(path, "net1", "0123abcd", "eth0", "/var/run/netns/x", "ts0"), 0);
	/* Missing directories were made 0700, the file is 0600. */
	snprintf(path, sizeof(path), "%s/a/b/tombstones", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/a", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/a/b/tombstones/net1_0123abcd_eth0", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	snprintf(path, sizeof(path), "%s/a/b/tombstones", dir);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	record_key_filename("net1", "0123abcd", "eth0", name, sizeof(name));
	t = record_read_tombstone(dfd, name, &err, &why);
	assert_non_null(t);
	assert_string_equal(t->key->network, "net1");
	assert_string_equal(t->key->container_id, "0123abcd");
	assert_string_equal(t->key->ifname, "eth0");
	assert_string_equal(t->netns_path, "/var/run/netns/x");
	assert_string_equal(t->interface_name, "ts0");
	tscni__tombstone__free_unpacked(t, NULL);

	/* No netns path: stored as empty. Then clean up. */
	snprintf(path, sizeof(path), "%s/a/b", dir);
	assert_int_equal(tombstone_write(path, "net1", "0123abcd", "eth0", NULL, "ts0"), 0);
	t = record_read_tombstone(dfd, name, &err, &why);
	assert_non_null(t);
	assert_string_equal(t->netns_path, "");
	tscni__tombstone__free_unpacked(t, NULL);
	assert_int_equal(unlinkat(dfd, name, 0), 0);
	close(dfd);
	snprintf(path, sizeof(path), "%s/a/b/tombstones", dir);
	assert_int_equal(rmdir(path), 0);
	snprintf(path, sizeof(path), "%s/a/b", dir);
	assert_int_equal(rmdir(path), 0);
	snprintf(path, sizeof(path), "%s/a", dir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void test_unwritable(void **state)
{
	/* A regular file where a directory must go. */
	char dir[64], path[256];
	int fd;

	fake_tmpdir(dir, sizeof(dir), "/tmp/tscni-tomb.");
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_true(tombstone_write(path, "n", "c", "eth0", NULL, "ts0") < 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_and_read_back),
		cmocka_unit_test(test_unwritable),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
