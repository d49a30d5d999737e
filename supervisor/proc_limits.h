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
	/* Kept free beside the pods: the CNI connections' cap
	 * (cni_server.h), the state directory, netlink, the zygote link and
	 * the ADDs the thread pool builds at once. */
	PROC_LIMITS_FD_RESERVE = 64,
};

/* At start, before anything is read: PR_SET_DUMPABLE 0 (no core, no
 * ptrace by other uids, /proc/<pid> owned by root), RLIMIT_CORE 0, and the
 * RLIMIT_NOFILE soft limit raised to the hard limit. Logs how many pods fit
 * beside reserve descriptors; returns 0 or the negative errno of the first
 * step that failed. */
int proc_limits_apply(unsigned long reserve);

/* Whether need more descriptors fit: open + need + reserve <= limit. */
bool proc_limits_fd_room(unsigned long open, unsigned long limit, unsigned long need,
			 unsigned long reserve);

/* The same for this process now (counting /proc/self/fd): 0 when one more
 * pod fits beside reserve more descriptors, else -EMFILE with *open and
 * *limit set for the caller's message. */
int proc_limits_pod_fits(unsigned long reserve, unsigned long *open, unsigned long *limit);

#endif
