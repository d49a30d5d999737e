/* The zygote: `tailscale-cni-worker --zygote`, fork+exec'd by the supervisor
 * before it reads any secret. Single-threaded. It reads ZygoteRequests on fd
 * 3 (worker.proto), forks one worker per request with clone3(CLONE_PIDFD |
 * CLONE_PARENT) (the worker is the supervisor's child, so the supervisor can
 * waitid its pidfd) and answers with the pidfd in SCM_RIGHTS. After max_forks
 * spawns it re-execs itself, so workers do not all share one address-space
 * layout forever. EOF on fd 3 (supervisor gone) ends it; workers live on. */
#ifndef TSCNI_WORKER_ZYGOTE_ZYGOTE_H
#define TSCNI_WORKER_ZYGOTE_ZYGOTE_H

#include <stdbool.h>
#include <stddef.h>

struct sandbox_ops;

enum zygote_defaults {
	ZYGOTE_FD = 3,
	ZYGOTE_MAX_FORKS = 1000,
	ZYGOTE_REQ_MAX = 256, /* a ZygoteRequest is a few bytes */
};

struct zygote_config {
	const char *self_path;	   /* exec'd again after max_forks */
	char *const *argv;	   /* argv for that exec */
	const char *cgroup_parent; /* NULL or "": no cgroup placement */
	unsigned int max_forks;
	const struct sandbox_ops *sandbox;
	/* The CA bundle the supervisor sends its workers (a memfd), parsed
	 * here once for all of them (worker/tls/tls_store.h); -1: none. */
	int ca_fd;
	/* Tests: fork + pidfd_open instead of clone3, and no close_range in the
	 * child, as on kernels without them. */
	bool force_fallbacks;
};

/* Serves spawn requests until EOF on fd 3. Returns the exit status. */
int zygote_run(const struct zygote_config *cfg);

/* cgroup.c: places the calling process in <mount>/<parent>/<leaf> in every
 * cgroup hierarchy listed in mountinfo (normally /proc/self/mountinfo): the
 * unified cgroup2 tree and each v1 hierarchy. Logs each placement, and each
 * hierarchy where placement is impossible with the reason. Returns the number
 * of hierarchies the process now sits in (>= 0) or a negative errno when
 * mountinfo cannot be read. */
int cgroup_place_self(const char *mountinfo, const char *parent, const char *leaf);

#endif
