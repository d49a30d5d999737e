/* Runs a program of ours (the dynamic loader's --list, the plugin's
 * VERSION) and captures its standard output, with a bound on time and
 * bytes: the installer must never hang on a binary it copies. */
#ifndef TSCNI_INSTALLER_SUBPROCESS_H
#define TSCNI_INSTALLER_SUBPROCESS_H

#include <stddef.h>

enum subprocess_limits {
	SUBPROCESS_MAX_OUT = 64 << 10, /* bytes of stdout kept */
	SUBPROCESS_TIMEOUT_MS = 10000,
};

/* Runs argv (argv[0] an absolute path) with envp (NULL: none), writing
 * in (NULL: nothing) to its stdin; its stderr is ours. 0 when it exited 0
 * within SUBPROCESS_TIMEOUT_MS having written at most SUBPROCESS_MAX_OUT bytes, with
 * *out a NUL-terminated buffer the caller free()s and *len its length;
 * otherwise -ETIMEDOUT (it was killed), -EMSGSIZE, -ECHILD (it exited
 * non-zero or by a signal), or the errno of the spawn, *out NULL. */
int subprocess_capture(char *const argv[], char *const envp[], const char *in, char **out,
		       size_t *len);

#endif
