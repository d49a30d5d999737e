/* Process limits of the supervisor: see proc_limits.h. */
#include "proc_limits.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cap-ng.h>

#include "log.h"

unsigned long proc_limits_nofile(void)
{
	struct rlimit nofile;

	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0 || nofile.rlim_cur == RLIM_INFINITY ||
	    nofile.rlim_cur > ULONG_MAX)
		return ULONG_MAX;
	return (unsigned long)nofile.rlim_cur;
}

unsigned long proc_limits_conn_max(unsigned long nofile)
{
	unsigned long n = nofile / 4;

	if (n < PROC_LIMITS_CONN_MIN)
		return PROC_LIMITS_CONN_MIN;
	return n > PROC_LIMITS_CONN_MAX ? PROC_LIMITS_CONN_MAX : n;
}

unsigned long proc_limits_reserve(unsigned long nofile)
{
	return PROC_LIMITS_FD_RESERVE + proc_limits_conn_max(nofile);
}

int proc_limits_apply(void)
{
	struct rlimit core = {0, 0}, nofile;
	unsigned long limit, reserve;
	int ret;

	/* The pods' private keys are in our memory: no core file, and no
	 * process of another uid may attach or read /proc/<pid>/mem. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		ret = -errno;
		log_err_r(ret, "PR_SET_DUMPABLE 0");
		return ret;
	}
	if (setrlimit(RLIMIT_CORE, &core) < 0) {
		ret = -errno;
		log_err_r(ret, "RLIMIT_CORE 0");
		return ret;
	}
	if (getrlimit(RLIMIT_NOFILE, &nofile) < 0) {
		ret = -errno;
		log_err_r(ret, "RLIMIT_NOFILE");
		return ret;
	}
	if (nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &nofile) < 0) {
			ret = -errno;
			log_err_r(ret, "raise RLIMIT_NOFILE to %llu",
				  (unsigned long long)nofile.rlim_max);
			return ret;
		}
	}
	limit = proc_limits_nofile();
	reserve = proc_limits_reserve(limit);
	if (limit > reserve + PROC_LIMITS_POD_FDS)
		log_info("open files: limit %lu, room for about %lu pods beside %lu connections",
			 limit, (limit - reserve) / PROC_LIMITS_POD_FDS,
			 proc_limits_conn_max(limit));
	else
		log_warn("open files: the limit %lu leaves no room for a pod beside %lu in "
			 "reserve: every ADD will fail",
			 limit, reserve);
	return 0;
}

bool proc_limits_fd_room(unsigned long open, unsigned long limit, unsigned long need,
			 unsigned long reserve)
{
	/* In this order so that no sum wraps. */
	if (open > limit || need > limit - open)
		return false;
	return reserve <= limit - open - need;
}

/* Descriptors open now, the one that reads the directory left out. */
static int count_open_fds(unsigned long *out)
{
	unsigned long n = 0;
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");

	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	*out = n ? n - 1 : 0;
	return 0;
}

int proc_limits_pod_fits(unsigned long *open, unsigned long *limit, unsigned long *reserve)
{
	int ret = count_open_fds(open);

	if (ret < 0)
		return ret;
	*limit = proc_limits_nofile();
	*reserve = proc_limits_reserve(*limit);
	return proc_limits_fd_room(*open, *limit, PROC_LIMITS_POD_FDS, *reserve) ? 0 : -EMFILE;
}

int proc_caps_check(void)
{
	static const struct {
		int cap;
		const char *name;
	} need[] = {
		{CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
		{CAP_SETUID, "CAP_SETUID"},	  {CAP_SETGID, "CAP_SETGID"},
		{CAP_KILL, "CAP_KILL"},
	};
	char missing[128] = "";
	size_t off = 0;

	if (capng_get_caps_process() < 0) {
		log_err("refusing to start: cannot read this process's capabilities");
		return -EPERM;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (capng_have_capability(CAPNG_EFFECTIVE, (unsigned int)need[i].cap))
			continue;
		off += (size_t)snprintf(missing + off, sizeof(missing) - off, "%s%s",
					off ? ", " : "", need[i].name);
	}
	if (!off)
		return 0;
	log_err("refusing to start: missing %s (CAP_NET_ADMIN for TUN devices, addresses and "
		"routes, CAP_SYS_ADMIN to enter pods' network namespaces, CAP_SETUID and "
		"CAP_SETGID for the workers' own uids, CAP_KILL to stop them): run it as root",
		missing);
	return -EPERM;
}
