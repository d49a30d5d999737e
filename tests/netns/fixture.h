/* Helpers shared by the C tests in tests/netns/ (each test is its own
 * binary, so these are static). */
#ifndef TSCNI_TESTS_NETNS_FIXTURE_H
#define TSCNI_TESTS_NETNS_FIXTURE_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

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

#endif
