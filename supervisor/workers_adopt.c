/* Re-adoption: after a supervisor restart, a worker that kept running is
 * taken back through its rendezvous socket, once the peer is proven to be
 * the recorded process of this boot and has handed back its custody fds.
 * See workers_adopt in workers.h for the checks.
 */
#include "workers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "kfeat.h"
#include "log.h"
#include "mem.h"
#include "workers_internal.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* The peer of a connected unix socket as a pidfd: SO_PEERPIDFD (Linux 6.5)
 * is race-free; before it, SO_PEERCRED's pid + pidfd_open, which the
 * caller's start-time check backs up. */
static int peer_pidfd(int fd, pid_t *pid, bool *via_peerpidfd)
{
	struct ucred cred;
	socklen_t len = sizeof(int);
	char path[64], buf[1024], *p;
	int pidfd = -1;
	ssize_t n;
	int f;

	*pid = 0;
	*via_peerpidfd = !kfeat_fallback_forced("so_peerpidfd") &&
			 getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0;
	if (*via_peerpidfd) {
		/* The pid behind the pidfd: the "Pid:" line of its fdinfo. */
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
		f = open(path, O_RDONLY | O_CLOEXEC);
		n = f < 0 ? -1 : read(f, buf, sizeof(buf) - 1);
		if (f >= 0)
			close(f);
		if (n > 0) {
			buf[n] = '\0';
			p = strstr(buf, "\nPid:");
			if (p)
				*pid = (pid_t)strtol(p + 5, NULL, 10);
		}
		if (*pid <= 0) {
			close(pidfd);
			return -ESRCH;
		}
		return pidfd;
	}
	len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	*pid = cred.pid;
	pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	return pidfd < 0 ? -errno : pidfd;
}

/* One datagram from the adoption socket within the deadline. fds may be
 * NULL (no control buffer); only Custody is received with one. */
static ssize_t adopt_recv(int fd, uint8_t *buf, size_t cap, int *fds, size_t *nfds,
			  unsigned long long deadline, const char **why)
{
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		unsigned long long now = now_ms();
		ssize_t n;

		if (now >= deadline) {
			*why = "no answer in time";
			return -ETIMEDOUT;
		}
		if (poll(&pfd, 1, (int)(deadline - now)) < 0 && errno != EINTR) {
			*why = "poll";
			return -errno;
		}
		n = seqpacket_recv(fd, buf, cap, fds, nfds, fds ? WORKERS_CUSTODY_MAX : 0, why);
		if (n == -EAGAIN)
			continue;
		if (n == 0) {
			*why = "closed the connection";
			return -ECONNRESET;
		}
		return n;
	}
}

static bool is_tun(int fd)
{
	struct stat st;

	/* /dev/net/tun: the misc character device 10:200. */
	return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 &&
	       minor(st.st_rdev) == 200;
}

static bool is_unix_listener(int fd)
{
	int v = 0, d = 0;
	socklen_t l1 = sizeof(v), l2 = sizeof(d);

	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l1) == 0 && v == 1 &&
	       getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &d, &l2) == 0 && d == AF_UNIX;
}

/* The handshake of workers_adopt on a connected socket. On success the
 * custody fds are in fds[0..*nfds) and 0 is returned. */
static int adopt_handshake(struct workers *ws, const struct worker_spec *spec, int fd, pid_t pid,
			   uint32_t *version, bool *ready, int *fds, size_t *nfds, const char **why)
{
	unsigned long long deadline = now_ms() + WORKERS_ADOPT_TIMEOUT_MS;
	Tscni__SupervisorMsg sm = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Hello ours = TSCNI__HELLO__INIT;
	Tscni__WorkerMsg *m = NULL;
	size_t want = 2 + spec->n_extra_fds, len;
	size_t least = want - spec->n_extra_fds_optional;
	uint8_t *buf = ws->rbuf;
	ssize_t n;
	int ret;

	*nfds = 0;
	n = adopt_recv(fd, buf, sizeof(ws->rbuf), NULL, NULL, deadline, why);
	if (n < 0)
		return (int)n;
	ret = workers__unpack(buf, (size_t)n, "undecodable Hello", &m, why);
	if (ret < 0)
		return ret;
	ret = -EPROTO;
	*why = "expected Hello";
	if (m->body_case != TSCNI__WORKER_MSG__BODY_HELLO)
		goto out;
	if (m->hello->max_version < ws->proto_min || m->hello->min_version > ws->proto_max) {
		*why = "hello: no common protocol version";
		ret = -EPROTONOSUPPORT;
		goto out;
	}
	*version = m->hello->max_version < ws->proto_max ? m->hello->max_version : ws->proto_max;
	/* Not said (a worker from before Hello.ready_state): it was Ready. */
	*ready = m->hello->ready_state != 2;
	if (strcmp(m->hello->pod_uid, spec->pod_uid) || m->hello->pid != pid) {
		*why = "hello: another pod's or another process's worker";
		ret = -EPERM;
		goto out;
	}
	tscni__worker_msg__free_unpacked(m, NULL);
	m = NULL;

	ours.min_version = ws->proto_min;
	ours.max_version = ws->proto_max;
	ours.pod_uid = (char *)spec->pod_uid;
	ours.boot_id = ws->boot_id;
	ours.pid = getpid();
	sm.body_case = TSCNI__SUPERVISOR_MSG__BODY_HELLO;
	sm.hello = &ours;
	len = tscni__supervisor_msg__pack(&sm, buf);
	ret = seqpacket_send(fd, buf, len, NULL, 0);
	if (ret < 0) {
		*why = "send Hello";
		return ret;
	}

	/* The one message a worker may send fds with, on its own rendezvous. */
	n = adopt_recv(fd, buf, sizeof(ws->rbuf), fds, nfds, deadline, why);
	if (n < 0)
		return (int)n;
	m = tscni__worker_msg__unpack(NULL, (size_t)n, buf);
	ret = -EBADMSG;
	*why = "expected Custody with the TUN, the rendezvous and the extra fds";
	if (!m || m->body_case != TSCNI__WORKER_MSG__BODY_CUSTODY || !m->custody ||
	    m->custody->fd_count != *nfds || *nfds < least || *nfds > want || !is_tun(fds[0]) ||
	    !is_unix_listener(fds[1]))
		goto out;
	ret = 0;
out:
	if (ret < 0) {
		for (size_t i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
	}
	tscni__worker_msg__free_unpacked(m, NULL);
	return ret;
}

int workers_adopt(struct workers *ws, const struct worker_spec *spec,
		  const struct worker_identity *id, worker_event_fn *cb, void *arg,
		  struct worker **out)
{
	int fds[WORKERS_CUSTODY_MAX], fd = -1, pidfd = -1, ret;
	struct sockaddr_un sun;
	const char *why = "";
	struct pollfd pfd;
	bool peerpidfd = false;
	uint64_t start = 0;
	uint32_t version = 0;
	bool ready = true;
	struct worker *w;
	size_t nfds = 0;
	pid_t pid = 0;

	*out = NULL;
	if (!workers__spec_ok(ws, spec) || !ws->run_dir)
		return -EINVAL;
	if (strcmp(id->boot_id, ws->boot_id)) {
		why = "the record is from another boot";
		ret = -ESTALE;
		goto fail;
	}
	ret = workers__rdv_path(ws, spec->pod_uid, &sun);
	if (ret < 0) {
		why = "rendezvous path too long";
		goto fail;
	}
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		why = "socket";
		goto fail;
	}
	/* EAGAIN: its backlog is full of attempts it has not accepted yet. */
	for (unsigned long long end = now_ms() + WORKERS_ADOPT_TIMEOUT_MS;;) {
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
			break;
		ret = -errno;
		if (ret != -EAGAIN || now_ms() >= end) {
			why = "connect to the rendezvous socket";
			goto fail;
		}
		poll(NULL, 0, 10);
	}
	pidfd = peer_pidfd(fd, &pid, &peerpidfd);
	if (pidfd < 0) {
		ret = pidfd;
		why = "identify the peer";
		goto fail;
	}
	/* Never a bare pid: the recorded pid, started at the recorded time,
	 * still alive after we read that time through /proc. */
	ret = -ESRCH;
	why = "the rendezvous peer is not the recorded process";
	if (pid != id->pid || workers__proc_start_time(pid, &start) < 0 || start != id->start_time)
		goto fail;
	pfd = (struct pollfd){.fd = pidfd, .events = POLLIN};
	if (poll(&pfd, 1, 0) != 0)
		goto fail;
	ret = adopt_handshake(ws, spec, fd, pid, &version, &ready, fds, &nfds, &why);
	if (ret < 0)
		goto fail;
	w = workers__alloc(ws, spec, cb, arg);
	memcpy(w->fds, fds, nfds * sizeof(int));
	w->nfds = nfds;
	w->has_rdv = true;
	workers__link(w);
	/* Not our child: how it dies will not be known (waitid needs a child). */
	workers__proc_attach(w, fd, pidfd, pid, false);
	w->id.version = version;
	/* A worker that never reached control (or never got its addresses)
	 * is adopted all the same; its Ready follows on this connection. */
	w->state = ready ? WS_READY : WS_STARTING;
	if (!ready)
		workers__schedule(w, WORKERS_READY_TIMEOUT_MS);
	log_info("pod %s: worker %d adopted (identified by %s%s)", w->pod_uid, (int)pid,
		 peerpidfd ? "SO_PEERPIDFD" : "SO_PEERCRED + pidfd_open + start time",
		 ready ? "" : "; not Ready yet");
	*out = w;
	return 0;
fail:
	log_warn_r(ret, "pod %s: not adopting the worker recorded as pid %d: %s", spec->pod_uid,
		   (int)id->pid, why);
	if (fd >= 0)
		close(fd);
	if (pidfd >= 0)
		close(pidfd);
	return ret;
}

/* Is path the rendezvous socket of one of ws's workers? */
static bool rdv_known(const struct workers *ws, const char *path)
{
	struct sockaddr_un sun;

	for (const struct worker *w = ws->head; w; w = w->next) {
		if (workers__rdv_path(ws, w->pod_uid, &sun) == 0 && strcmp(sun.sun_path, path) == 0)
			return true;
	}
	return false;
}

/* The orphan listening on path: killed when it is one of our workers. */
static bool sweep_one(struct workers *ws, const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct ucred cred;
	socklen_t len = sizeof(cred);
	bool via_pidfd, killed = false;
	struct pollfd pfd;
	pid_t pid = 0;
	int fd, pidfd;

	strscpy(sun.sun_path, path, sizeof(sun.sun_path));
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ECONNREFUSED || errno == ENOENT) {
			log_info("workers: %s: nobody listens: removed", path);
			unlink(path);
		}
		close(fd);
		return false;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid < ws->uid_base ||
	    cred.uid - ws->uid_base >= ws->uid_count) {
		log_warn("workers: %s: the listener is not one of our workers: left alone", path);
		close(fd);
		return false;
	}
	pidfd = peer_pidfd(fd, &pid, &via_pidfd);
	if (pidfd >= 0 && workers__pidfd_kill(pidfd) == 0) {
		log_warn("workers: orphan worker %d (uid %u) at %s: no record names it (damaged, "
			 "missing or refused): killed",
			 (int)pid, (unsigned int)cred.uid, path);
		pfd = (struct pollfd){.fd = pidfd, .events = POLLIN};
		if (poll(&pfd, 1, WORKERS_ADOPT_TIMEOUT_MS) != 1)
			log_err("workers: orphan worker %d did not die within %u ms", (int)pid,
				WORKERS_ADOPT_TIMEOUT_MS);
		killed = true;
		unlink(path);
	}
	if (pidfd >= 0)
		close(pidfd);
	close(fd);
	return killed;
}

unsigned int workers_sweep_orphans(struct workers *ws)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)], path[sizeof(dir)];
	unsigned int killed = 0;
	struct dirent *e;
	DIR *d;

	if (!ws->run_dir)
		return 0;
	snprintf(dir, sizeof(dir), "%s/workers", ws->run_dir);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);

		if (n < 6 || strcmp(e->d_name + n - 5, ".sock") ||
		    (size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path) ||
		    rdv_known(ws, path))
			continue;
		killed += sweep_one(ws, path);
	}
	closedir(d);
	return killed;
}
