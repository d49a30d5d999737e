/* The zygote link: the root, unsandboxed process that forks every worker
 * (worker/zygote/), started with a socketpair on its fd 3, watched through
 * its pidfd and restarted whenever it dies; running workers are not touched.
 * Spawn requests and replies on that socket are workers_spawn.c's.
 */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "workers_internal.h"

static void zyg_close_cb(uv_handle_t *h)
{
	struct zyg *z = h->data;
	struct workers *ws = z->ws;

	if (--z->handles_open > 0)
		return;
	workers__close_fd(&z->sock);
	workers__close_fd(&z->pidfd);
	free(z);
	if (ws->closing && --ws->handles_open == 0)
		free(ws);
}

void workers__zygote_close(struct workers *ws)
{
	struct zyg *z = ws->zyg;

	if (!z)
		return;
	ws->zyg = NULL;
	if (ws->closing)
		ws->handles_open++;
	uv_close((uv_handle_t *)&z->sock_poll, zyg_close_cb);
	uv_close((uv_handle_t *)&z->pid_poll, zyg_close_cb);
}

static void on_zyg_sock(uv_poll_t *h, int status, int events)
{
	struct zyg *z = h->data;
	struct workers *ws = z->ws;

	(void)events;
	for (int i = 0; i < WORKERS_RECV_BATCH && ws->zyg == z && status == 0; i++) {
		uint8_t buf[WORKERS_ZYGOTE_REPLY_MAX];
		const char *why = "";
		int fds[1];
		size_t nfds = 0;
		ssize_t n = seqpacket_recv(z->sock, buf, sizeof(buf), fds, &nfds, 1, &why);

		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			/* EOF or garbage: the zygote is dying or broken. Its
			 * pidfd drives the restart. */
			if (n < 0)
				log_err_r((int)n, "zygote: %s", why);
			uv_poll_stop(&z->sock_poll);
			workers__pidfd_kill(z->pidfd);
			return;
		}
		workers__spawn_reply(ws, buf, (size_t)n, fds, nfds);
	}
}

static void zyg_restart(uv_timer_t *t)
{
	struct workers *ws = t->data;
	int ret = workers__zygote_start(ws);

	if (ret < 0) {
		log_err_r(ret, "restart zygote; retrying");
		uv_timer_start(&ws->zyg_timer, zyg_restart, 1000, 0);
	}
}

static void on_zyg_pidfd(uv_poll_t *h, int status, int events)
{
	struct zyg *z = h->data;
	struct workers *ws = z->ws;
	siginfo_t si = {0};

	(void)status;
	(void)events;
	if (waitid((idtype_t)P_PIDFD, (id_t)z->pidfd, &si, WEXITED | WNOHANG) == 0 &&
	    si.si_pid == 0)
		return;
	log_warn("zygote %d died (code %d status %d): restarting it; workers untouched",
		 (int)z->pid, si.si_code, si.si_status);
	/* Replies it sent before dying still count: a child it forked is ours
	 * (CLONE_PARENT) and must be watched, not left a zombie. */
	on_zyg_sock(&z->sock_poll, 0, UV_READABLE);
	workers__zygote_close(ws);
	ws->zyg_restarts++;
	ws->zyg_down_ms = now_ms();
	/* Requests in flight died with it: ask the next one. */
	for (struct worker *w = ws->head; w; w = w->next) {
		if (w->state == WS_SPAWNING && w->cookie) {
			w->cookie = 0;
			workers__close_fd(&w->child_sock);
		}
	}
	uv_timer_start(&ws->zyg_timer, zyg_restart, WORKERS_ZYGOTE_RESTART_MS, 0);
}

/* What the child reports through the CLOEXEC pipe when it cannot exec. */
enum zygote_stage {
	ZYGOTE_STAGE_FD3 = 1,
	ZYGOTE_STAGE_FD4,
	ZYGOTE_STAGE_SETNS,
	ZYGOTE_STAGE_CGROUPNS,
	ZYGOTE_STAGE_EXEC,
};

/* The child's {stage, errno} from the CLOEXEC pipe, logged: the negative
 * errno. */
static int exec_failed(const struct workers *ws, const int fail[2])
{
	int ret = fail[1] > 0 ? -fail[1] : -EIO;

	if (fail[0] == ZYGOTE_STAGE_SETNS)
		log_err_r(ret, "zygote: enter the mount namespace %s", ws->host_mntns);
	else if (fail[0] == ZYGOTE_STAGE_CGROUPNS)
		log_err_r(ret, "zygote: enter the cgroup namespace beside %s", ws->host_mntns);
	else if (fail[0] == ZYGOTE_STAGE_EXEC && ws->host_mntns)
		log_err_r(ret,
			  "exec %s --zygote in the mount namespace %s (is the worker "
			  "binary installed there?)",
			  ws->worker_path, ws->host_mntns);
	else if (fail[0] == ZYGOTE_STAGE_EXEC)
		log_err_r(ret,
			  "exec %s --zygote in our own mount namespace (a binary "
			  "installed on the host needs host_mntns)",
			  ws->worker_path);
	else if (fail[0] == ZYGOTE_STAGE_FD4)
		log_err_r(ret, "zygote: fd 4 for the CA bundle");
	else
		log_err_r(ret, "zygote: fd 3 for its socket");
	return ret;
}

/* The running zygote becomes ws->zyg: its socket (made non-blocking) and
 * its pidfd are owned by the new struct zyg and watched from now on. */
static void zygote_watch(struct workers *ws, int sock, int pidfd, pid_t pid)
{
	struct zyg *z = xcalloc(1, sizeof(*z));

	fcntl(sock, F_SETFL, O_NONBLOCK);
	z->ws = ws;
	z->sock = sock;
	z->pidfd = pidfd;
	z->pid = pid;
	uv_poll_init(ws->loop, &z->sock_poll, z->sock);
	uv_poll_init(ws->loop, &z->pid_poll, z->pidfd);
	z->sock_poll.data = z->pid_poll.data = z;
	z->handles_open = 2;
	uv_poll_start(&z->sock_poll, UV_READABLE, on_zyg_sock);
	uv_poll_start(&z->pid_poll, UV_READABLE, on_zyg_pidfd);
	ws->zyg = z;
}

/* The CA bundle the workers get, in a sealed memfd for the zygote's fd 4
 * (--ca-fd 4): the zygote parses it once for every worker it forks
 * (worker/tls/tls_store.h). Returns the fd (CLOEXEC, above 4) or -1 when
 * there is no bundle or no memfd (logged: each worker then parses its own). */
static int ca_memfd(const struct workers *ws)
{
	const unsigned int seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
	int fd, hi;

	if (!ws->ca_pem || !ws->ca_pem_len)
		return -1;
	fd = memfd_create("tscni-ca", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		log_warn_r(-errno, "zygote: memfd for the CA bundle; workers parse their own");
		return -1;
	}
	for (size_t off = 0; off < ws->ca_pem_len;) {
		ssize_t n = write(fd, ws->ca_pem + off, ws->ca_pem_len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			log_warn_r(n < 0 ? -errno : -EIO,
				   "zygote: write the CA bundle's memfd; workers parse their own");
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	hi = fcntl(fd, F_DUPFD_CLOEXEC, 5);
	close(fd);
	if (hi < 0 || fcntl(hi, F_ADD_SEALS, seals) < 0) {
		log_warn_r(-errno, "zygote: seal the CA bundle's memfd; workers parse their own");
		if (hi >= 0)
			close(hi);
		return -1;
	}
	return hi;
}

/* The zygote's environment: the supervisor's, with LD_BIND_NOW=1 instead of
 * any LD_BIND_NOW there. The loader then binds every library's symbols once
 * in the zygote (Debian builds libjansson and libnghttp2 without BIND_NOW),
 * and no forked child binds them again or dirties its own copy of their GOT.
 * Built before the fork (nothing after it may allocate); the caller frees
 * the array, whose strings are environ's. */
static char **zygote_env(void)
{
	static char bind_now[] = "LD_BIND_NOW=1";
	size_t n = 0, k = 0;
	char **envp;

	while (environ[n])
		n++;
	envp = xcalloc(n + 2, sizeof(*envp));
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "LD_BIND_NOW=", 12) != 0)
			envp[k++] = environ[i];
	envp[k] = bind_now;
	return envp;
}

/* fork + exec of the worker binary as the zygote, with its end of a fresh
 * socketpair on fd 3. With host_mntns, the child first enters that mount
 * namespace (setns; after fork it is single-threaded with its own fs_struct,
 * as setns(CLONE_NEWNS) requires), so worker_path is resolved on the host,
 * and the cgroup namespace beside it (workers.c open_cgroupns_beside).
 * Between fork and exec only async-signal-safe calls; a failure comes back
 * through a CLOEXEC pipe as {stage, errno} (libuv's discipline). */
int workers__zygote_start(struct workers *ws)
{
	char forks[16];
	char *argv[] = {ws->worker_path,
			(char *)"--zygote",
			(char *)"--cgroup-parent",
			ws->cgroup_parent,
			(char *)"--max-forks",
			forks,
			(char *)"--sandbox",
			ws->sandbox,
			(char *)"--log-level",
			(char *)log_level_name(log_get_level()),
			NULL, /* --ca-fd */
			NULL, /* 4 */
			NULL, /* --force-fallbacks */
			NULL};
	size_t argc = 10;
	sigset_t all, old;
	int sv[2], ep[2], pidfd, ret, ca_fd = ca_memfd(ws);
	int fail[2] = {0, 0}; /* enum zygote_stage, errno */
	char **envp;
	ssize_t n;
	pid_t pid;

	snprintf(forks, sizeof(forks), "%u", ws->max_forks);
	if (ca_fd >= 0) {
		argv[argc++] = (char *)"--ca-fd";
		argv[argc++] = (char *)"4";
	}
	if (ws->force_fallbacks)
		argv[argc++] = (char *)"--force-fallbacks";
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		workers__close_fd(&ca_fd);
		return ret;
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		workers__close_fd(&ca_fd);
		return ret;
	}
	envp = zygote_env();
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0) {
		struct sigaction dfl = {.sa_handler = SIG_DFL};

		for (int sig = 1; sig < NSIG; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				sigaction(sig, &dfl, NULL);
		fail[0] = ZYGOTE_STAGE_FD3;
		if (sv[1] == 3)
			fcntl(3, F_SETFD, 0);
		else if (dup2(sv[1], 3) < 0)
			goto child_fail;
		/* ca_fd > 4 (ca_memfd), so fd 3 was not it. */
		fail[0] = ZYGOTE_STAGE_FD4;
		if (ca_fd >= 0 && dup2(ca_fd, 4) < 0)
			goto child_fail;
		fail[0] = ZYGOTE_STAGE_SETNS;
		if (ws->mntns_fd >= 0 && setns(ws->mntns_fd, CLONE_NEWNS) < 0)
			goto child_fail;
		fail[0] = ZYGOTE_STAGE_CGROUPNS;
		if (ws->cgroupns_fd >= 0 && setns(ws->cgroupns_fd, CLONE_NEWCGROUP) < 0)
			goto child_fail;
		sigprocmask(SIG_SETMASK, &old, NULL);
		fail[0] = ZYGOTE_STAGE_EXEC;
		execve(argv[0], argv, envp);
	child_fail:
		fail[1] = errno;
		n = write(ep[1], fail, sizeof(fail));
		(void)n;
		_exit(127);
	}
	ret = pid < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	free(envp);
	close(sv[1]);
	workers__close_fd(&ca_fd);
	close(ep[1]);
	if (ret < 0) {
		close(ep[0]);
		close(sv[0]);
		return ret;
	}
	do
		n = read(ep[0], fail, sizeof(fail));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	if (n == sizeof(fail)) {
		waitpid(pid, NULL, 0);
		close(sv[0]);
		return exec_failed(ws, fail);
	}
	/* Our child, not yet reaped: its pid cannot have been reused. */
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		ret = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(sv[0]);
		return ret;
	}
	zygote_watch(ws, sv[0], pidfd, pid);
	log_info("zygote %d started from %s%s%s", (int)pid, ws->worker_path,
		 ws->host_mntns ? " in the mount namespace " : "",
		 ws->host_mntns ? ws->host_mntns : "");
	for (struct worker *w = ws->head; w; w = w->next)
		if (w->state == WS_SPAWNING && !w->cookie && !w->stopping)
			workers__request_spawn(w);
	return 0;
}

int workers_zygote_reexec(struct workers *ws)
{
	if (!ws->zyg)
		return -ENOTCONN;
	return workers__pidfd_kill(ws->zyg->pidfd);
}

pid_t workers_zygote_pid(const struct workers *ws)
{
	return ws->zyg ? ws->zyg->pid : 0;
}

uint64_t workers_zygote_down_ms(const struct workers *ws)
{
	if (ws->zyg || !ws->zyg_down_ms)
		return 0;
	return now_ms() - ws->zyg_down_ms;
}

unsigned int workers_zygote_restarts(const struct workers *ws)
{
	return ws->zyg_restarts;
}
