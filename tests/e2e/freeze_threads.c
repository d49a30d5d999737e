/* freeze_threads PID: stops every thread of process PID but its main one
 * (ptrace PTRACE_SEIZE + PTRACE_INTERRUPT, which stop one thread, not the
 * process), prints "frozen N" and keeps them stopped until its stdin
 * closes, then lets them go (PTRACE_DETACH). For the supervisor that is
 * its libuv threadpool: a pool whose every thread is stuck, as a blocking
 * filesystem or netns path would leave it, while its loop runs on.
 * Exits 0, or 1 after a line naming what failed (threads already frozen
 * are let go). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_THREADS = 256 };

static pid_t frozen[MAX_THREADS];
static size_t n_frozen;

static void thaw(void)
{
	for (size_t i = 0; i < n_frozen; i++)
		if (ptrace(PTRACE_DETACH, frozen[i], NULL, NULL) < 0)
			fprintf(stderr, "freeze_threads: detach %d: %s\n", (int)frozen[i],
				strerror(errno));
	n_frozen = 0;
}

static int freeze(pid_t tid)
{
	int st;

	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0) {
		fprintf(stderr, "freeze_threads: seize %d: %s\n", (int)tid, strerror(errno));
		return -1;
	}
	frozen[n_frozen++] = tid;
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0 || waitpid(tid, &st, __WALL) < 0) {
		fprintf(stderr, "freeze_threads: stop %d: %s\n", (int)tid, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	char path[64], buf[64];
	struct dirent *de;
	long pid;
	DIR *d;

	if (argc != 2 || (pid = strtol(argv[1], NULL, 10)) <= 0) {
		fprintf(stderr, "usage: freeze_threads PID\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/%ld/task", pid);
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "freeze_threads: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		long tid = strtol(de->d_name, NULL, 10);

		if (tid <= 0 || tid == pid)
			continue;
		if (n_frozen == MAX_THREADS || freeze((pid_t)tid) < 0) {
			closedir(d);
			thaw();
			return 1;
		}
	}
	closedir(d);
	printf("frozen %zu\n", n_frozen);
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	thaw();
	return 0;
}
