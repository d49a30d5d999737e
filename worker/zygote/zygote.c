/* The zygote's request loop and its fork. See zygote.h. */
#include "zygote.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "client.h"
#include "frame.h"
#include "log.h"
#include "sandbox.h"
#include "tls_store.h"
#include "wg_aead.h"
#include "worker.h"
#include "worker.pb-c.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

/* struct clone_args of clone3(2), version 0 (64 bytes, Linux 5.3). Spelled
 * out here: <linux/sched.h> and <sched.h> clash on the CLONE_* macros. */
struct zclone_args {
	uint64_t flags;
	uint64_t pidfd;
	uint64_t child_tid;
	uint64_t parent_tid;
	uint64_t exit_signal;
	uint64_t stack;
	uint64_t stack_size;
	uint64_t tls;
};
_Static_assert(sizeof(struct zclone_args) == 64, "clone_args v0 is 64 bytes");

/* Forks one worker. Returns its pid in the parent with *pidfd set, or a
 * negative errno. Never returns in the child.
 *
 * clone3 with CLONE_PARENT makes the worker a sibling of the zygote, a child
 * of the supervisor: the supervisor then reaps it through waitid(P_PIDFD)
 * and learns how it died (SIGSYS from the seccomp filter, say). The child
 * runs on from the zygote's single thread, so glibc's state is consistent
 * (no lock can be held by another thread); its cached tid is stale, which
 * nothing in the worker reads. Kernels without clone3 (ENOSYS) get fork +
 * pidfd_open, race-free because the zygote has not reaped the child. */
static pid_t spawn(const struct zygote_config *cfg, const int *fds, size_t nfds, uint32_t uid,
		   int *pidfd, bool *clone_parent)
{
	struct zclone_args args = {
		.flags = CLONE_PIDFD | CLONE_PARENT,
		.pidfd = (uint64_t)(uintptr_t)pidfd,
		.exit_signal = 0, /* with CLONE_PARENT the kernel uses the zygote's */
	};
	pid_t pid;

	*pidfd = -1;
	*clone_parent = true;
	if (!cfg->force_fallbacks) {
		pid = (pid_t)syscall(SYS_clone3, &args, sizeof(args));
		if (pid == 0)
			worker_child(cfg->sandbox, fds, nfds, uid, false);
		if (pid > 0)
			return pid;
		if (errno != ENOSYS)
			return -errno;
	}
	*clone_parent = false;
	pid = fork();
	if (pid == 0)
		worker_child(cfg->sandbox, fds, nfds, uid, cfg->force_fallbacks);
	if (pid < 0)
		return -errno;
	*pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (*pidfd < 0) {
		int ret = -errno;

		kill(pid, SIGKILL);
		return ret;
	}
	return pid;
}

static int reply(uint64_t cookie, int err, pid_t pid, bool clone_parent, int pidfd)
{
	Tscni__ZygoteReply r = TSCNI__ZYGOTE_REPLY__INIT;
	uint8_t buf[64];
	size_t len;

	r.cookie = cookie;
	r.err = err;
	r.pid = pid;
	r.clone_parent = clone_parent;
	len = tscni__zygote_reply__pack(&r, buf);
	return seqpacket_send(ZYGOTE_FD, buf, len, pidfd >= 0 ? &pidfd : NULL, pidfd >= 0);
}

/* One request. Returns true when a child was forked. */
static bool serve(const struct zygote_config *cfg, const uint8_t *buf, size_t len, int *fds,
		  size_t nfds)
{
	Tscni__ZygoteRequest *req = tscni__zygote_request__unpack(NULL, len, buf);
	bool clone_parent = false;
	const char *why = NULL;
	int pidfd = -1;
	pid_t pid = 0;
	int err = 0;

	if (!req) {
		why = "undecodable ZygoteRequest";
		err = -EBADMSG;
	} else if (req->fd_count != nfds || nfds < WORKER_FD_MIN || nfds > WORKER_FD_MAX) {
		why = "fd_count does not match the fds received";
		err = -EBADMSG;
	} else if (req->uid == 0) {
		why = "worker uid 0";
		err = -EINVAL;
	}
	if (err == 0) {
		pid = spawn(cfg, fds, nfds, req->uid, &pidfd, &clone_parent);
		if (pid < 0) {
			err = pid;
			pid = 0;
			log_err_r(err, "clone3 worker (uid %u)", req->uid);
		}
	} else {
		log_err("refused spawn request: %s", why);
	}
	if (reply(req ? req->cookie : 0, err, pid, clone_parent, pidfd) < 0)
		log_err("reply to supervisor failed");
	if (pidfd >= 0)
		close(pidfd);
	tscni__zygote_request__free_unpacked(req, NULL);
	return err == 0;
}

int zygote_run(const struct zygote_config *cfg)
{
	struct sigaction sa = {.sa_handler = SIG_IGN};
	unsigned int forks = 0;

	/* The supervisor's end may vanish: EPIPE, not death. Children made by
	 * the fork fallback are reaped by the kernel (SA_NOCLDWAIT via SIG_IGN). */
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	if (cfg->cgroup_parent && cfg->cgroup_parent[0])
		cgroup_place_self("/proc/self/mountinfo", cfg->cgroup_parent, "zygote");
	/* curl and TLS read their configuration now, in the host's view, once:
	 * workers inherit it and open no file later. */
	if (client_global_init() < 0)
		log_err("control client global init failed: workers cannot reach control");
	wg_aead_init();
	if (cfg->ca_fd >= 0) {
		const char *why = "";
		int ret = tls_store_load(cfg->ca_fd, &why);

		if (ret < 0)
			log_warn("CA bundle on fd %d: %s (%s): each worker parses its own",
				 cfg->ca_fd, why, strerror(-ret));
	}
	tls_store_warm();
	log_info("zygote %d ready (sandbox %s, data AEAD %s, re-exec after %u forks%s)",
		 (int)getpid(), cfg->sandbox->name, wg_aead_backend(), cfg->max_forks,
		 cfg->force_fallbacks ? ", fallbacks forced" : "");
	for (;;) {
		struct pollfd pfd = {.fd = ZYGOTE_FD, .events = POLLIN};
		uint8_t buf[ZYGOTE_REQ_MAX];
		int fds[WMSG_MAX_FDS];
		const char *why = "";
		size_t nfds = 0;
		ssize_t n;

		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_err_r(-errno, "poll fd 3");
			return 1;
		}
		n = seqpacket_recv(ZYGOTE_FD, buf, sizeof(buf), fds, &nfds, WMSG_MAX_FDS, &why);
		if (n == 0 || n == -ECONNRESET) {
			log_info("supervisor gone: zygote exits, workers stay");
			return 0;
		}
		if (n == -EAGAIN)
			continue;
		if (n < 0) {
			log_err_r((int)n, "request: %s", why);
			if (n != -EMSGSIZE)
				return 1;
			reply(0, (int)n, 0, false, -1);
			continue;
		}
		if (serve(cfg, buf, (size_t)n, fds, nfds))
			forks++;
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		if (cfg->max_forks && forks >= cfg->max_forks) {
			log_info("%u forks: re-exec %s", forks, cfg->self_path);
			execv(cfg->self_path, cfg->argv);
			log_err_r(-errno, "re-exec %s: keep serving", cfg->self_path);
			forks = 0;
		}
	}
}
