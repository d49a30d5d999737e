/* The supervisor's process limits (docs/design.md §2): it holds every pod's
 * keys, so it is never dumpable and writes no core; it holds about
 * PROC_LIMITS_POD_FDS descriptors per pod, so its open-file limit is raised to the
 * hard limit at start and an ADD that would not fit is refused up front. */
#ifndef TSCNI_SUPERVISOR_PROC_LIMITS_H
#define TSCNI_SUPERVISOR_PROC_LIMITS_H

#include <stdbool.h>

enum proc_limits_fds {
	/* What one pod costs the supervisor while it lives and while its
	 * worker is spawned: TUN, rendezvous listener, socketpair, pidfd,
	 * netns, with room for a respawn in flight. */
	PROC_LIMITS_POD_FDS = 8,
	/* Kept free beside the pods and the CNI connections: the state
	 * directory, netlink, the zygote link and the ADDs the thread pool
	 * builds at once. */
	PROC_LIMITS_FD_RESERVE = 64,
	/* The CNI connections' cap: a quarter of the open-file limit, within
	 * these bounds (proc_limits_conn_max). */
	PROC_LIMITS_CONN_MIN = 128,
	PROC_LIMITS_CONN_MAX = 1024,
};

/* At start, before anything is read: PR_SET_DUMPABLE 0 (no core, no
 * ptrace by other uids, /proc/<pid> owned by root), RLIMIT_CORE 0, and the
 * RLIMIT_NOFILE soft limit raised to the hard limit. Logs how many pods fit
 * beside the reserve; returns 0 or the negative errno of the first step
 * that failed. */
int proc_limits_apply(void);

/* The capabilities the supervisor cannot run without, in its effective
 * set: CAP_NET_ADMIN (TUN devices, addresses, routes), CAP_SYS_ADMIN
 * (entering pods' network namespaces), CAP_SETUID and CAP_SETGID (the
 * workers' own uids), CAP_KILL (stopping workers of other uids). 0, or
 * -EPERM after one line naming those missing. */
int proc_caps_check(void);

/* The soft RLIMIT_NOFILE now; ULONG_MAX for no limit. */
unsigned long proc_limits_nofile(void);

/* How many CNI connections may be open at once under an open-file limit of
 * nofile: nofile / 4 within [PROC_LIMITS_CONN_MIN, PROC_LIMITS_CONN_MAX]. */
unsigned long proc_limits_conn_max(unsigned long nofile);

/* The descriptors kept free beside the pods under that limit: the
 * connections' cap and PROC_LIMITS_FD_RESERVE. */
unsigned long proc_limits_reserve(unsigned long nofile);

/* Whether need more descriptors fit: open + need + reserve <= limit. */
bool proc_limits_fd_room(unsigned long open, unsigned long limit, unsigned long need,
			 unsigned long reserve);

/* The same for this process now (counting /proc/self/fd): 0 when one more
 * pod fits beside proc_limits_reserve, else -EMFILE with *open, *limit and
 * *reserve set for the caller's message. */
int proc_limits_pod_fits(unsigned long *open, unsigned long *limit, unsigned long *reserve);

#endif
