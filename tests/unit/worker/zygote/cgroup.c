/* Cgroup placement without root: a fake mountinfo whose "cgroup" mounts are
 * plain directories made here, so the layout detection, the path building,
 * the cpuset inheritance and the "impossible" paths all run. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "worker/zygote/cgroup.c"

static char tmp[64];

static void put(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write_all(fd, s, strlen(s)), 0);
	close(fd);
}

static void get(const char *path, char *buf, size_t n)
{
	assert_true(read_small(path, buf, n) >= 0);
}

static int setup(void **state)
{
	(void)state;
	size_t len;

	/* mkdtemp's template: six trailing 'X's. */
	snprintf(tmp, sizeof(tmp), "/tmp/tscni-cgroup-%d-", (int)getpid());
	len = strlen(tmp);
	memset(tmp + len, 'X', 6);
	tmp[len + 6] = '\0';
	return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

/* Makes <tmp>/<name>/<parent>/<leaf>/cgroup.procs as a cgroup filesystem
 * would have it (the kernel creates it on mkdir; here we do). */
static void precreate(const char *name, const char *parent, const char *leaf)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", tmp, name);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/%s/%s", tmp, name, parent);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/%s/%s/%s", tmp, name, parent, leaf);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/%s/%s/%s/cgroup.procs", tmp, name, parent, leaf);
	put(p, "");
}

static void test_hybrid_layout(void **state)
{
	char mi[256], line[2048], p[512], buf[64];
	int fd;

	(void)state;
	snprintf(mi, sizeof(mi), "%s/mountinfo", tmp);
	fd = open(mi, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	/* 1: cgroup2 (unified), 2: v1 cpu, 3: v1 cpuset needing cpus/mems,
	 * 4: v1 memory with no cgroup.procs (a plain directory: impossible),
	 * 5: not a cgroup at all, 6: malformed. */
	snprintf(line, sizeof(line),
		 "30 25 0:26 / %s/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
		 "31 25 0:27 / %s/cpu rw,nosuid - cgroup cgroup rw,cpu\n"
		 "32 25 0:28 / %s/cpuset rw,nosuid - cgroup cgroup rw,cpuset\n"
		 "33 25 0:29 / %s/memory rw,nosuid - cgroup cgroup rw,memory\n"
		 "34 25 0:30 / /run rw - tmpfs tmpfs rw\n"
		 "garbage line\n",
		 tmp, tmp, tmp, tmp);
	assert_int_equal(write_all(fd, line, strlen(line)), 0);
	close(fd);
	precreate("unified", "tscni", "zygote");
	precreate("cpu", "tscni", "zygote");
	precreate("cpuset", "tscni", "zygote");
	snprintf(p, sizeof(p), "%s/cpuset/cpuset.cpus", tmp);
	put(p, "0-1\n");
	snprintf(p, sizeof(p), "%s/cpuset/cpuset.mems", tmp);
	put(p, "0\n");
	snprintf(p, sizeof(p), "%s/cpuset/tscni/cpuset.cpus", tmp);
	put(p, "");
	snprintf(p, sizeof(p), "%s/cpuset/tscni/cpuset.mems", tmp);
	put(p, "");
	snprintf(p, sizeof(p), "%s/cpuset/tscni/zygote/cpuset.cpus", tmp);
	put(p, "");
	snprintf(p, sizeof(p), "%s/cpuset/tscni/zygote/cpuset.mems", tmp);
	put(p, "");
	mkdir(strcat(strcpy(p, tmp), "/memory"), 0755);

	assert_int_equal(cgroup_place_self(mi, "tscni", "zygote"), 3);
	snprintf(p, sizeof(p), "%s/unified/tscni/zygote/cgroup.procs", tmp);
	get(p, buf, sizeof(buf));
	assert_int_equal(strtol(buf, NULL, 10), getpid());
	snprintf(p, sizeof(p), "%s/cpuset/tscni/zygote/cpuset.cpus", tmp);
	get(p, buf, sizeof(buf));
	assert_string_equal(buf, "0-1\n");
	snprintf(p, sizeof(p), "%s/cpuset/tscni/zygote/cpuset.mems", tmp);
	get(p, buf, sizeof(buf));
	assert_string_equal(buf, "0\n");
}

static void test_no_mountinfo(void **state)
{
	(void)state;
	assert_int_equal(cgroup_place_self("/nonexistent/mountinfo", "tscni", "zygote"), -ENOENT);
}

static void test_split_mountinfo(void **state)
{
	char l1[] = "31 25 0:27 / /sys/fs/cgroup/cpu rw,nosuid shared:9 - cgroup cgroup rw,cpu\n";
	char l2[] = "31 25 0:27 / /x rw\n";
	char *root, *mnt, *fs, *super;

	(void)state;
	assert_true(split_mountinfo(l1, &root, &mnt, &fs, &super));
	assert_string_equal(root, "/");
	assert_string_equal(mnt, "/sys/fs/cgroup/cpu");
	assert_string_equal(fs, "cgroup");
	assert_string_equal(super, "rw,cpu");
	assert_false(split_mountinfo(l2, &root, &mnt, &fs, &super));
}

static void test_path_too_long(void **state)
{
	char longname[1100];
	const char *why = "";

	(void)state;
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(place(tmp, longname, "zygote", false, &why), -ENAMETOOLONG);
	assert_string_equal(why, "path too long");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hybrid_layout, setup, teardown),
		cmocka_unit_test(test_no_mountinfo),
		cmocka_unit_test(test_split_mountinfo),
		cmocka_unit_test_setup_teardown(test_path_too_long, setup, teardown),
	};

	log_init("unit", LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
