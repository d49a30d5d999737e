/* The supervisor's side of the workers: the lifecycle of one pod's worker
 * (death, backoff, respawn, stop, free), its process handles and the custody
 * of its fds. See workers.h for the contract and workers_internal.h for the
 * objects and how the other workers_*.c files share this work.
 */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kfeat.h"
#include "log.h"
#include "mem.h"
#include "secret_slab.h"
#include "state.h"
#include "validate.h"
#include "workers_internal.h"

static void worker_timer(uv_timer_t *t);

int workers__pidfd_kill(int pidfd)
{
	if (pidfd < 0)
		return -EBADF;
	return syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
}

void workers__close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void workers__free_wiped(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

void workers__emit(struct worker *w, enum worker_event ev, const struct worker_report *r)
{
	if (w->cb)
		w->cb(w, ev, r, w->arg);
}

/* ---- worker processes -------------------------------------------------- */

static void proc_close_cb(uv_handle_t *h)
{
	struct wproc *p = h->data;

	if (--p->handles_open > 0)
		return;
	workers__close_fd(&p->sock);
	workers__close_fd(&p->pidfd);
	free(p);
}

static void proc_close(struct wproc *p)
{
	p->w = NULL;
	p->sock_open = false;
	uv_close((uv_handle_t *)&p->sock_poll, proc_close_cb);
	uv_close((uv_handle_t *)&p->pid_poll, proc_close_cb);
}

static void emit_gone(struct worker *w, const char *why)
{
	/* Never from inside a caller's own call: a timer of 0 ms. */
	w->gone_pending = true;
	w->gone_why = why;
	uv_timer_stop(&w->timer);
	if (w->ws)
		uv_timer_start(&w->timer, worker_timer, 0, 0);
}

void workers__schedule(struct worker *w, unsigned int ms)
{
	uv_timer_start(&w->timer, worker_timer, ms, 0);
}

/* Does the custody TUN fd still have a device behind it? When the pod's netns
 * is deleted the fd polls POLLERR (docs/machine-notes.md). events = 0: we must not
 * steal the pod's packets. */
static bool tun_alive(const struct worker *w)
{
	struct pollfd pfd = {.fd = w->fds[0], .events = 0};

	if (poll(&pfd, 1, 0) < 0)
		return true;
	return !(pfd.revents & (POLLERR | POLLHUP | POLLNVAL));
}

void workers__died(struct worker *w, pid_t pid, int code, int status)
{
	unsigned long long lived = now_ms() - w->started_ms;
	struct worker_report r = {.pid = pid, .code = code, .status = status};

	w->state = WS_DEAD;
	workers__outq_clear(w);
	w->stats_asked_ms = 0;
	if (code == CLD_KILLED || code == CLD_DUMPED)
		log_warn("pod %s: worker %d killed by signal %d%s", w->pod_uid, (int)pid, status,
			 status == SIGSYS ? " (seccomp)" : "");
	else if (code == CLD_EXITED)
		log_info("pod %s: worker %d exited with %d", w->pod_uid, (int)pid, status);
	else
		log_info("pod %s: worker %d gone", w->pod_uid, (int)pid);
	if (w->stopping) {
		workers__emit(w, WORKER_EV_EXIT, &r);
		emit_gone(w, w->tun_gone ? "the pod's network namespace is gone" : "stopped");
		return;
	}
	if (w->tun_gone || !tun_alive(w)) {
		workers__emit(w, WORKER_EV_EXIT, &r);
		emit_gone(w, "the pod's network namespace is gone");
		return;
	}
	if (lived >= WORKERS_STABLE_MS || w->backoff_ms == 0)
		w->backoff_ms = WORKERS_RESPAWN_MIN_MS;
	else
		w->backoff_ms = w->backoff_ms * 2 > WORKERS_RESPAWN_MAX_MS ? WORKERS_RESPAWN_MAX_MS
									   : w->backoff_ms * 2;
	r.respawn_ms = w->backoff_ms;
	workers__emit(w, WORKER_EV_EXIT, &r);
	if (!w->stopping && !w->gone_pending)
		workers__schedule(w, w->backoff_ms);
}

static void on_pidfd(uv_poll_t *h, int status, int events)
{
	struct wproc *p = h->data;
	struct worker *w = p->w;
	siginfo_t si = {0};
	int code = 0, st = 0;
	pid_t pid = p->pid;

	(void)status;
	(void)events;
	/* Reap it when it is ours (CLONE_PARENT); an adopted one is not. */
	if (p->clone_parent &&
	    waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) == 0) {
		if (si.si_pid == 0)
			return; /* spurious: still running */
		code = si.si_code;
		st = si.si_status;
	}
	/* Anything left (a thread stuck in the kernel) goes too. */
	workers__pidfd_kill(p->pidfd);
	proc_close(p);
	if (!w)
		return;
	w->proc = NULL;
	workers__died(w, pid, code, st);
}

void workers__fail(struct worker *w, int ret, const char *why)
{
	log_err_r(ret, "pod %s: worker %d: %s: killing it", w->pod_uid, (int)workers_pid(w), why);
	w->state = WS_DEAD;
	if (w->proc) {
		w->proc->sock_open = false;
		uv_poll_stop(&w->proc->sock_poll);
		workers__pidfd_kill(w->proc->pidfd);
	}
}

/* /proc/PID/stat field 22, the start time in clock ticks after boot: with
 * the boot id, what tells this process from a later one with the same pid. */
int workers__proc_start_time(pid_t pid, uint64_t *out)
{
	char path[32], buf[1024], *p;
	ssize_t n;
	int fd;

	*out = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: count from the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	for (int field = 2; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
	}
	errno = 0;
	*out = strtoull(p + 1, NULL, 10);
	return errno ? -errno : 0;
}

/* A worker process attached to w: our end of its socket (made non-blocking)
 * and its pidfd, both now owned by the new struct wproc. */
struct wproc *workers__proc_attach(struct worker *w, int sock, int pidfd, pid_t pid,
				   bool clone_parent)
{
	struct wproc *p = xcalloc(1, sizeof(*p));
	struct workers *ws = w->ws;

	fcntl(sock, F_SETFL, O_NONBLOCK);
	p->w = w;
	p->sock = sock;
	p->pidfd = pidfd;
	p->pid = pid;
	p->clone_parent = clone_parent;
	uv_poll_init(ws->loop, &p->sock_poll, p->sock);
	uv_poll_init(ws->loop, &p->pid_poll, p->pidfd);
	p->sock_poll.data = p->pid_poll.data = p;
	p->handles_open = 2;
	p->sock_open = true;
	uv_poll_start(&p->pid_poll, UV_READABLE, on_pidfd);
	workers__poll_update(p);
	w->proc = p;
	/* A new process numbers its requests afresh: no part of an older
	 * one's RouteSet may join its own. */
	free(w->rs);
	w->rs = NULL;
	w->rs_n = 0;
	w->stats_asked_ms = 0;
	/* What the last process said of control is not this one's. */
	memset(&w->control, 0, sizeof(w->control));
	w->started_ms = now_ms();
	w->tokens = (unsigned long long)WORKERS_RATE_BURST * 1000;
	w->tokens_ms = w->started_ms;
	w->id.pid = pid;
	workers__proc_start_time(pid, &w->id.start_time);
	memcpy(w->id.boot_id, ws->boot_id, sizeof(w->id.boot_id));
	return p;
}

static void worker_close_cb(uv_handle_t *h)
{
	struct worker *w = h->data;

	free(w);
}

void workers__free(struct worker *w)
{
	struct workers *ws = w->ws;

	if (w->prev)
		w->prev->next = w->next;
	else if (ws && ws->head == w)
		ws->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	if (w->proc)
		proc_close(w->proc);
	w->proc = NULL;
	workers__outq_clear(w);
	secret_slab_put(w->keys); /* wipes them */
	w->keys = NULL;
	workers__free_wiped(w->auth_key);
	free(w->hostname);
	free(w->tags);
	w->tags = NULL;
	free(w->control_url);
	free(w->peers);
	w->peers = NULL;
	w->n_peers = 0;
	free(w->rs);
	w->rs = NULL;
	w->rs_n = 0;
	if (w->has_rdv && w->unlink_rdv && ws) {
		struct sockaddr_un sun;

		if (workers__rdv_path(ws, w->pod_uid, &sun) == 0)
			unlink(sun.sun_path);
	}
	for (size_t i = 0; i < w->nfds; i++)
		workers__close_fd(&w->fds[i]);
	workers__close_fd(&w->child_sock);
	w->freed = true;
	if (ws)
		uv_close((uv_handle_t *)&w->timer, worker_close_cb);
	else
		free(w);
}

static void worker_timer(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (w->gone_pending) {
		struct worker_report r = {.why = w->gone_why};

		log_info("pod %s: worker gone: %s", w->pod_uid, w->gone_why);
		w->unlink_rdv = true;
		workers__emit(w, WORKER_EV_GONE, &r);
		workers__free(w);
		return;
	}
	if (w->proc && w->stopping) {
		log_warn("pod %s: worker %d did not stop in time: SIGKILL", w->pod_uid,
			 (int)w->proc->pid);
		workers__pidfd_kill(w->proc->pidfd);
		return;
	}
	if (w->proc && (w->state & (WS_HELLO | WS_STARTING))) {
		workers__fail(w, -ETIMEDOUT, "no Ready in time");
		return;
	}
	if (!w->proc && w->state == WS_DEAD && !w->stopping) {
		w->respawns++;
		log_info("pod %s: respawning worker (respawn %u)", w->pod_uid, w->respawns);
		workers__request_spawn(w);
	}
}

bool workers__spec_ok(const struct workers *ws, const struct worker_spec *spec)
{
	return spec->pod_uid && valid_name(spec->pod_uid, POD_FIELD_MAX_LEN) &&
	       spec->n_addresses <= PREFIX_MAX && spec->n_extra_fds <= WORKERS_EXTRA_FDS_MAX &&
	       spec->n_extra_fds_optional <= spec->n_extra_fds && spec->slot < ws->uid_count &&
	       (!spec->n_extra_fds || spec->extra_fds) && (!spec->n_addresses || spec->addresses) &&
	       (!spec->hostname || strlen(spec->hostname) <= HOST_MAX_LEN) &&
	       (!spec->tags || spec->tags->n <= POD_TAGS_MAX) &&
	       (!spec->auth_key || strlen(spec->auth_key) <= AUTHKEY_MAX_LEN) &&
	       (!spec->control_url || strlen(spec->control_url) <= URL_MAX_LEN);
}

/* A new struct worker from spec, with no fds and not yet on the list. */
struct worker *workers__alloc(struct workers *ws, const struct worker_spec *spec,
			      worker_event_fn *cb, void *arg)
{
	struct worker *w = xcalloc(1, sizeof(*w));

	w->ws = ws;
	w->child_sock = -1;
	for (size_t i = 0; i < WORKERS_CUSTODY_MAX; i++)
		w->fds[i] = -1;
	strscpy(w->pod_uid, spec->pod_uid, sizeof(w->pod_uid));
	w->hostname = spec->hostname ? xstrdup(spec->hostname) : NULL;
	if (spec->tags && spec->tags->n) {
		w->tags = xmalloc(sizeof(*w->tags));
		*w->tags = *spec->tags;
	}
	w->auth_key = spec->auth_key ? xstrdup(spec->auth_key) : NULL;
	w->control_url = spec->control_url ? xstrdup(spec->control_url) : NULL;
	/* Locked, not dumped, wiped when freed: 64 bytes of a shared page. */
	if (!(w->keys = secret_slab_get())) {
		log_err("out of memory for a worker's keys");
		abort();
	}
	memcpy(w->keys->machine_private, spec->machine_private, WORKERS_KEY_LEN);
	memcpy(w->keys->node_private, spec->node_private, WORKERS_KEY_LEN);
	w->has_old_node = spec->old_node_public != NULL;
	if (spec->old_node_public)
		memcpy(w->old_node_public, spec->old_node_public, WORKERS_KEY_LEN);
	if (spec->n_addresses)
		memcpy(w->addresses, spec->addresses, spec->n_addresses * sizeof(*w->addresses));
	w->n_addresses = spec->n_addresses;
	w->uid = ws->uid_base + spec->slot;
	w->mtu = spec->mtu;
	w->debug_seccomp = spec->debug_seccomp;
	w->test_requests = spec->test_requests;
	w->cb = cb;
	w->arg = arg;
	return w;
}

void workers__link(struct worker *w)
{
	struct workers *ws = w->ws;

	uv_timer_init(ws->loop, &w->timer);
	w->timer.data = w;
	w->next = ws->head;
	if (ws->head)
		ws->head->prev = w;
	ws->head = w;
}

bool workers_is_ready(const struct worker *w)
{
	return w->proc && w->state == WS_READY;
}

int workers_identity(const struct worker *w, struct worker_identity *out)
{
	memset(out, 0, sizeof(*out));
	if (!w->proc)
		return -ENOTCONN;
	*out = w->id;
	return 0;
}

void workers_stop(struct worker *w, bool logout)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Stop s = TSCNI__STOP__INIT;

	if (w->stopping || w->gone_pending)
		return;
	w->stopping = true;
	uv_timer_stop(&w->timer);
	if (!w->proc) {
		/* Not running (respawn pending, or the zygote still forking:
		 * a late child is killed when its reply arrives). */
		w->cookie = 0;
		emit_gone(w, "stopped");
		return;
	}
	s.logout = logout;
	if (logout && w->ws && w->ws->auth_key)
		s.auth_key = (char *)w->ws->auth_key;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_STOP;
	m.stop = &s;
	if (workers__send(w, &m) < 0)
		workers__pidfd_kill(w->proc->pidfd);
	workers__schedule(w, WORKERS_STOP_GRACE_MS);
}

void workers_set_auth_key(struct workers *ws, const char *auth_key)
{
	ws->auth_key = auth_key;
}

int workers_rekey(struct worker *w, const uint8_t node_private[WORKERS_KEY_LEN],
		  const uint8_t old_node_public[WORKERS_KEY_LEN], const char *auth_key)
{
	if (!w->proc || w->stopping || w->gone_pending)
		return -ENOTCONN;
	memcpy(w->keys->node_private, node_private, WORKERS_KEY_LEN);
	memcpy(w->old_node_public, old_node_public, WORKERS_KEY_LEN);
	w->has_old_node = true;
	workers__free_wiped(w->auth_key);
	w->auth_key = auth_key && *auth_key ? xstrdup(auth_key) : NULL;
	w->auth_retried = true; /* it has its key: no respawn to present one */
	return workers_roll(w);
}

int workers_roll(struct worker *w)
{
	if (!w->proc || w->stopping || w->gone_pending)
		return -ENOTCONN;
	/* Dies now, respawned after the shortest backoff (workers__died). */
	w->backoff_ms = 0;
	w->started_ms = 0;
	return workers__pidfd_kill(w->proc->pidfd);
}

void workers_get_stats(const struct worker *w, struct worker_stats *out)
{
	*out = w->stats;
}

void workers_get_control(const struct worker *w, struct worker_control *out)
{
	*out = w->control;
}

const char *workers_hostname(const struct worker *w)
{
	return w->hostname;
}

const struct tag_set *workers_tags(const struct worker *w)
{
	return w->tags;
}

const struct worker_peer *workers_get_peers(const struct worker *w, size_t *n, uint32_t *left_off)
{
	*n = w->n_peers;
	*left_off = w->peers_left_off;
	return w->peers;
}

pid_t workers_pid(const struct worker *w)
{
	return w->proc ? w->proc->pid : 0;
}

int workers_pidfd(const struct worker *w)
{
	return w->proc ? w->proc->pidfd : -1;
}

const char *workers_pod_uid(const struct worker *w)
{
	return w->pod_uid;
}

unsigned int workers_respawns(const struct worker *w)
{
	return w->respawns;
}

int workers_tun_fd(const struct worker *w)
{
	return w->fds[0];
}

size_t workers_custody_count(const struct worker *w)
{
	return w->nfds;
}

int workers_custody_add(struct worker *w, int fd)
{
	int dup;

	if (w->nfds >= WORKERS_CUSTODY_MAX)
		return -ENOSPC;
	dup = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup < 0)
		return -errno;
	w->fds[w->nfds++] = dup;
	return 0;
}

int workers_check_host_pidns(const char **why)
{
	/* PROC_PID_INIT_INO: the inode of the initial pid namespace, fixed by
	 * the kernel (include/linux/proc_ns.h). */
	enum { PID_NS_INIT_INO = 0xEFFFFFFCU };
	struct stat st;

	if (stat("/proc/self/ns/pid", &st) < 0) {
		*why = "cannot stat /proc/self/ns/pid";
		return -errno;
	}
	if (st.st_ino != PID_NS_INIT_INO) {
		*why = "running in a private pid namespace (hostPID: true is required): "
		       "workers would die with the supervisor";
		return -EPERM;
	}
	return 0;
}

static void ws_close_cb(uv_handle_t *h)
{
	struct workers *ws = h->data;

	if (--ws->handles_open == 0)
		free(ws);
}

/* The cgroup namespace file beside a mount namespace file given as
 * ".../ns/mnt" (with hostPID, /proc/1/ns/cgroup: the host's), open, or -1.
 * A container of its own cgroup namespace (what runtimes give unprivileged
 * containers on cgroup v2) sees its own cgroup as the root, and cgroup2
 * mounted with nsdelegate (systemd's default) refuses to move a process to
 * a cgroup outside the mover's namespace (ENOENT): a zygote left there could
 * not leave the container's cgroup, and its workers would die with the
 * container. Entering the host's cgroup namespace too lets it. */
static int open_cgroupns_beside(const char *mntns)
{
	static const char mnt[] = "/ns/mnt";
	size_t len = strlen(mntns), base;
	char path[PATH_MAX_LEN + 1];
	int fd;

	if (len < sizeof(mnt) - 1 || strcmp(mntns + len - (sizeof(mnt) - 1), mnt)) {
		log_info("%s does not end in %s: the zygote keeps our cgroup namespace", mntns,
			 mnt);
		return -1;
	}
	base = len - strlen("mnt");
	if (base + strlen("cgroup") >= sizeof(path))
		return -1;
	memcpy(path, mntns, base);
	memcpy(path + base, "cgroup", sizeof("cgroup"));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		log_warn_r(-errno, "open the host cgroup namespace %s: the zygote keeps ours",
			   path);
	return fd;
}

int workers_new(uv_loop_t *loop, const struct workers_config *cfg, struct workers **out)
{
	struct workers *ws;
	const char *sb = cfg->sandbox ? cfg->sandbox : "seccomp";
	int ret;

	*out = NULL;
	if (!cfg->worker_path || !valid_abs_path(cfg->worker_path))
		return -EINVAL;
	if (cfg->run_dir && (!valid_abs_path(cfg->run_dir) || strlen(cfg->run_dir) > 64))
		return -EINVAL;
	if (strcmp(sb, "seccomp") && strcmp(sb, "none"))
		return -EINVAL;
	if (cfg->cgroup_parent && cfg->cgroup_parent[0] &&
	    !valid_name(cfg->cgroup_parent, NAME_MAX_LEN))
		return -EINVAL;
	if (cfg->host_mntns && !valid_abs_path(cfg->host_mntns))
		return -EINVAL;
	ws = xcalloc(1, sizeof(*ws));
	ws->loop = loop;
	ws->mntns_fd = -1;
	ws->cgroupns_fd = -1;
	if (cfg->host_mntns) {
		/* Opened here, while we are still sure of what the path names;
		 * the fd keeps that namespace for every zygote restart. */
		ws->mntns_fd = open(cfg->host_mntns, O_RDONLY | O_CLOEXEC);
		if (ws->mntns_fd < 0) {
			ret = -errno;
			log_err_r(ret, "open the host mount namespace %s", cfg->host_mntns);
			free(ws);
			return ret;
		}
		ws->host_mntns = xstrdup(cfg->host_mntns);
		ws->cgroupns_fd = open_cgroupns_beside(cfg->host_mntns);
	}
	ws->worker_path = xstrdup(cfg->worker_path);
	ws->cgroup_parent = xstrdup(cfg->cgroup_parent ? cfg->cgroup_parent : "tailscale-cni");
	ws->sandbox = xstrdup(sb);
	ws->max_forks = cfg->zygote_max_forks ? cfg->zygote_max_forks : WORKERS_ZYGOTE_MAX_FORKS;
	ws->uid_base = cfg->uid_base ? cfg->uid_base : WORKERS_UID_BASE;
	ws->uid_count = cfg->uid_count ? cfg->uid_count : WORKERS_UID_COUNT;
	ws->policy = cfg->policy;
	/* TSCNI_FORCE_FALLBACK (kfeat.h) reaches the zygote as --force-fallbacks:
	 * fork + pidfd_open instead of clone3, /proc/self/fd instead of
	 * close_range. */
	ws->force_fallbacks = cfg->force_fallbacks || kfeat_fallback_forced("clone3") ||
			      kfeat_fallback_forced("close_range");
	ws->run_dir = cfg->run_dir ? xstrdup(cfg->run_dir) : NULL;
	ws->proto_min = cfg->proto_min ? cfg->proto_min : WORKERS_PROTO_MIN;
	ws->proto_max = cfg->proto_max ? cfg->proto_max : WORKERS_PROTO_MAX;
	if (cfg->boot_id) {
		if (strscpy(ws->boot_id, cfg->boot_id, sizeof(ws->boot_id)) < 0)
			ws->boot_id[0] = '\0';
	} else {
		ret = state_boot_id(ws->boot_id, sizeof(ws->boot_id));
		if (ret < 0)
			log_warn_r(ret, "read the boot id: re-adoption records will not match");
	}
	if (ws->run_dir) {
		char dir[PATH_MAX_LEN + 1];

		snprintf(dir, sizeof(dir), "%s/workers", ws->run_dir);
		mkdir(ws->run_dir, 0755);
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			log_warn_r(-errno, "mkdir %s", dir);
		chmod(dir, 0700); /* only root may reach a worker's rendezvous */
	}
	ws->netop = cfg->netop;
	ws->netop_arg = cfg->netop_arg;
	ws->routes = cfg->routes;
	ws->resolve = cfg->resolve;
	ws->resolve_arg = cfg->resolve_arg;
	ws->derpmap = cfg->derpmap;
	ws->derpmap_arg = cfg->derpmap_arg;
	ws->ca_pem = cfg->ca_pem;
	ws->ca_pem_len = cfg->ca_pem_len;
	ws->control_test_flags = cfg->control_test_flags;
	ws->endpoint_deny = cfg->endpoint_deny;
	ws->n_endpoint_deny = cfg->n_endpoint_deny;
	memcpy(ws->wg_timers_ms, cfg->wg_timers_ms, sizeof(ws->wg_timers_ms));
	uv_timer_init(loop, &ws->zyg_timer);
	ws->zyg_timer.data = ws;
	ret = workers__zygote_start(ws);
	if (ret < 0) {
		ws->closing = true;
		ws->handles_open = 1;
		free(ws->worker_path);
		free(ws->cgroup_parent);
		free(ws->sandbox);
		free(ws->run_dir);
		free(ws->host_mntns);
		if (ws->mntns_fd >= 0)
			close(ws->mntns_fd);
		if (ws->cgroupns_fd >= 0)
			close(ws->cgroupns_fd);
		ws->mntns_fd = ws->cgroupns_fd = -1;
		ws->worker_path = ws->cgroup_parent = ws->sandbox = ws->run_dir = NULL;
		ws->host_mntns = NULL;
		uv_close((uv_handle_t *)&ws->zyg_timer, ws_close_cb);
		return ret;
	}
	*out = ws;
	return 0;
}

void workers_close(struct workers *ws)
{
	if (!ws)
		return;
	ws->closing = true;
	ws->handles_open = 1; /* the zygote timer */
	while (ws->head) {
		struct worker *w = ws->head;

		/* Detach: the process keeps running, no callback runs. */
		w->cb = NULL;
		if (w->proc) {
			w->proc->w = NULL;
			proc_close(w->proc);
			w->proc = NULL;
		}
		uv_timer_stop(&w->timer);
		workers__free(w);
	}
	workers__zygote_close(ws);
	free(ws->worker_path);
	free(ws->cgroup_parent);
	free(ws->sandbox);
	free(ws->run_dir);
	free(ws->host_mntns);
	if (ws->mntns_fd >= 0)
		close(ws->mntns_fd);
	if (ws->cgroupns_fd >= 0)
		close(ws->cgroupns_fd);
	ws->mntns_fd = ws->cgroupns_fd = -1;
	uv_close((uv_handle_t *)&ws->zyg_timer, ws_close_cb);
}

/* ---- tests and fuzzing ------------------------------------------------- */

struct worker *workers__test_new(unsigned int state, bool test_requests)
{
	struct worker *w = xcalloc(1, sizeof(*w));

	w->child_sock = -1;
	for (size_t i = 0; i < WORKERS_CUSTODY_MAX; i++)
		w->fds[i] = -1;
	strscpy(w->pod_uid, "test-pod", sizeof(w->pod_uid));
	w->state = state;
	w->test_requests = test_requests;
	return w;
}

unsigned int workers__test_state(const struct worker *w)
{
	return w->state;
}

void workers__test_free(struct worker *w)
{
	workers__free(w);
}
