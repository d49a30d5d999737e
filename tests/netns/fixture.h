/* Helpers shared by the C tests in tests/netns/ (each test is its own
 * binary, so these are static). */
#ifndef TSCNI_TESTS_NETNS_FIXTURE_H
#define TSCNI_TESTS_NETNS_FIXTURE_H

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

/* Runs a shell command line made like printf; returns its exit status, or
 * -1 when it could not run, died of a signal or did not fit the buffer. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int n, st;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd)) {
		fprintf(stderr, "sh: command longer than %zu bytes\n", sizeof(cmd) - 1);
		return -1;
	}
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void sleep_ms(unsigned int ms) __attribute__((unused));
static void sleep_ms(unsigned int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* An fd of the named netns (ip netns add's /run/netns/NAME), or -1. */
static int open_ns(const char *name) __attribute__((unused));
static int open_ns(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	return open(path, O_RDONLY | O_CLOEXEC);
}

/* Moves this (child) process into the named netns, or exits 90. */
static void enter_netns(const char *name) __attribute__((unused));
static void enter_netns(const char *name)
{
	int fd = open_ns(name);

	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		_exit(90);
	close(fd);
}

/* Accepts one connection on listener ls (30 s at most) and reads it to the
 * end, hashing it with BLAKE2b-256 into out and counting *total. Returns 0,
 * or the exit status a child reports: 96 no connection came, 97 accept
 * failed, 98 a read failed. */
static int accept_and_hash(int ls, uint8_t out[32], uint64_t *total) __attribute__((unused));
static int accept_and_hash(int ls, uint8_t out[32], uint64_t *total)
{
	static uint8_t buf[65536];
	struct pollfd pfd = {.fd = ls, .events = POLLIN};
	crypto_generichash_state h;
	ssize_t r;
	int c;

	*total = 0;
	if (poll(&pfd, 1, 30000) != 1)
		return 96;
	c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return 97;
	crypto_generichash_init(&h, NULL, 0, 32);
	while ((r = read(c, buf, sizeof(buf))) > 0) {
		crypto_generichash_update(&h, buf, (size_t)r);
		*total += (uint64_t)r;
	}
	crypto_generichash_final(&h, out, 32);
	close(c);
	return r == 0 ? 0 : 98;
}

#endif
