/* netns_open: what it accepts, and that nothing at the path can make it
 * wait (a FIFO in place of a namespace would block a plain open for ever). */
#include "common/netns.c"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

static char dir[] = "/tmp/tscni-netns-XXXXXX";

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "netns_open blocked\n";

	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(1);
}

static void expect_refused(const char *path, int want)
{
	int fd = 42;
	dev_t dev;
	ino_t ino;

	alarm(5);
	assert_int_equal(netns_open(path, &fd, &dev, &ino), want);
	alarm(0);
	assert_int_equal(fd, -1);
}

static void test_own_netns(void **state)
{
	dev_t dev;
	ino_t ino;
	int fd;

	(void)state;
	assert_int_equal(netns_open("/proc/self/ns/net", &fd, &dev, &ino), 0);
	assert_true(fd >= 0);
	assert_true(netns_is_self(dev, ino));
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

static void test_fifo(void **state)
{
	char path[64];

	(void)state;
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	expect_refused(path, -ENOTNAM);
	unlink(path);
}

static void test_not_a_namespace(void **state)
{
	char path[64];
	int fd;

	(void)state;
	snprintf(path, sizeof(path), "%s/placeholder", dir);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	expect_refused(path, -ENOTNAM);
	unlink(path);
	expect_refused(dir, -ENOTNAM);
	expect_refused("/dev/null", -ENOTNAM);
	expect_refused(path, -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_netns),
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_not_a_namespace),
	};
	int ret;

	signal(SIGALRM, on_alarm);
	if (!mkdtemp(dir))
		return 1;
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(dir);
	return ret;
}
