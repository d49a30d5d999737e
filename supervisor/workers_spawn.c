/* Spawning a worker: the custody fds of a new worker (its TUN dup, its
 * rendezvous socket, extra sockets), the spawn request to the zygote, and
 * what the zygote's reply makes of it: a process that gets Hello + Start and
 * a deadline for Ready. See workers.h for the contract.
 */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "mem.h"
#include "workers_internal.h"

/* Sends one spawn request: our end of a new socketpair stays in
 * w->child_sock until the zygote answers. Without a zygote (restarting) the
 * request waits for the next one (workers__zygote_start sends it). */
void workers__request_spawn(struct worker *w)
{
	struct workers *ws = w->ws;
	Tscni__ZygoteRequest q = TSCNI__ZYGOTE_REQUEST__INIT;
	int fds[1 + WORKERS_CUSTODY_MAX], sv[2], ret;
	uint8_t buf[64];
	size_t len;

	w->state = WS_SPAWNING;
	w->cookie = 0;
	if (!ws->zyg)
		return;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		goto fail;
	}
	fds[0] = sv[1];
	for (size_t i = 0; i < w->nfds; i++)
		fds[1 + i] = w->fds[i];
	q.cookie = ++ws->next_cookie;
	q.uid = w->uid;
	q.fd_count = (uint32_t)(1 + w->nfds);
	len = tscni__zygote_request__pack(&q, buf);
	ret = seqpacket_send(ws->zyg->sock, buf, len, fds, 1 + w->nfds);
	close(sv[1]);
	if (ret < 0) {
		close(sv[0]);
		goto fail;
	}
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	workers__close_fd(&w->child_sock);
	w->child_sock = sv[0];
	w->cookie = q.cookie;
	return;
fail:
	log_err_r(ret, "pod %s: spawn request to the zygote", w->pod_uid);
	w->started_ms = now_ms(); /* a quick death: the backoff grows */
	workers__died(w, 0, 0, 0);
}

static int send_hello_start(struct worker *w)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Hello h = TSCNI__HELLO__INIT;
	Tscni__Start s = TSCNI__START__INIT;
	Tscni__WgTimers timers = TSCNI__WG_TIMERS__INIT;
	Tscni__IpPrefix pb[PREFIX_MAX], *pbp[PREFIX_MAX];
	char *tagp[POD_TAGS_MAX];
	int ret;

	h.min_version = w->ws->proto_min;
	h.max_version = w->ws->proto_max;
	h.pod_uid = w->pod_uid;
	h.pid = getpid();
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_HELLO;
	m.hello = &h;
	ret = workers__send(w, &m);
	if (ret < 0)
		return ret;
	/* The CA bundle in pieces: a full one is larger than a message. */
	if (w->ws && w->control_url && w->ws->ca_pem) {
		for (size_t off = 0; off < w->ws->ca_pem_len; off += CA_CHUNK_MAX_LEN) {
			Tscni__CaChunk c = TSCNI__CA_CHUNK__INIT;
			size_t n = w->ws->ca_pem_len - off;

			c.data.data = (uint8_t *)w->ws->ca_pem + off;
			c.data.len = n < CA_CHUNK_MAX_LEN ? n : CA_CHUNK_MAX_LEN;
			m.body_case = TSCNI__SUPERVISOR_MSG__BODY_CA_CHUNK;
			m.ca_chunk = &c;
			ret = workers__send(w, &m);
			if (ret < 0)
				return ret;
		}
		s.ca_bundle_len = (uint32_t)w->ws->ca_pem_len;
	}

	s.pod_uid = w->pod_uid;
	s.hostname = w->hostname ? w->hostname : (char *)"";
	if (w->tags) {
		for (size_t i = 0; i < w->tags->n; i++)
			tagp[i] = w->tags->v[i];
		s.tags = tagp;
		s.n_tags = w->tags->n;
	}
	s.machine_private.data = w->keys->machine_private;
	s.machine_private.len = WORKERS_KEY_LEN;
	s.node_private.data = w->keys->node_private;
	s.node_private.len = WORKERS_KEY_LEN;
	if (w->has_old_node) {
		s.old_node_public.data = w->old_node_public;
		s.old_node_public.len = WORKERS_KEY_LEN;
	}
	s.auth_key = w->auth_key ? w->auth_key : (char *)"";
	s.control_url = w->control_url ? w->control_url : (char *)"";
	if (w->ws) {
		s.control_test_flags = w->ws->control_test_flags;
		s.endpoint_deny_iface = (char **)w->ws->endpoint_deny;
		s.n_endpoint_deny_iface = w->ws->n_endpoint_deny;
	}
	if (w->ws && w->ws->wg_timers_ms[0]) {
		const uint32_t *t = w->ws->wg_timers_ms;

		timers.rekey_after_ms = t[0];
		timers.reject_after_ms = t[1];
		timers.rekey_attempt_ms = t[2];
		timers.rekey_timeout_ms = t[3];
		timers.keepalive_ms = t[4];
		timers.jitter_max_ms = t[5];
		s.wg_timers = &timers;
	}
	for (size_t i = 0; i < w->n_addresses; i++) {
		tscni__ip_prefix__init(&pb[i]);
		ip_prefix_to_pb(&w->addresses[i], &pb[i]);
		pbp[i] = &pb[i];
	}
	s.addresses = pbp;
	s.n_addresses = w->n_addresses;
	s.fd_count = (uint32_t)w->nfds;
	s.debug_seccomp = w->debug_seccomp;
	s.mtu = w->mtu;
	s.test_requests = w->test_requests;
	s.rendezvous_fd = w->has_rdv ? WORKERS_WORKER_RDV_FD : 0;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_START;
	m.start = &s;
	return workers__send(w, &m);
}

static struct worker *find_cookie(struct workers *ws, uint64_t cookie)
{
	for (struct worker *w = ws->head; w; w = w->next)
		if (w->cookie == cookie && w->state == WS_SPAWNING)
			return w;
	return NULL;
}

void workers__spawn_reply(struct workers *ws, const uint8_t *buf, size_t len, int *fds, size_t nfds)
{
	Tscni__ZygoteReply *r = tscni__zygote_reply__unpack(NULL, len, buf);
	int pidfd = nfds == 1 ? fds[0] : -1;
	struct worker *w;
	struct wproc *p;

	if (!r || r->err > 0 || r->err < -4095 || (r->err == 0) != (nfds == 1) ||
	    (r->err == 0 && r->pid <= 0) || nfds > 1) {
		log_err("zygote: malformed reply dropped");
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		goto out;
	}
	w = find_cookie(ws, r->cookie);
	if (!w) {
		/* Stopped while it was being forked: the orphan goes. */
		if (pidfd >= 0) {
			workers__pidfd_kill(pidfd);
			close(pidfd);
		}
		goto out;
	}
	w->cookie = 0;
	if (r->err < 0) {
		log_err_r(r->err, "pod %s: zygote could not fork a worker", w->pod_uid);
		workers__close_fd(&w->child_sock);
		/* A failed fork is a quick death: the backoff grows (without
		 * this, the previous process's start time, or none, made every
		 * retry look stable and the zygote was asked every 10 ms). */
		w->started_ms = now_ms();
		workers__died(w, 0, 0, 0);
		goto out;
	}
	p = workers__proc_attach(w, w->child_sock, pidfd, r->pid, r->clone_parent);
	w->child_sock = -1;
	w->state = WS_HELLO;
	log_info("pod %s: worker %d spawned (uid %u)", w->pod_uid, (int)p->pid, w->uid);
	if (send_hello_start(w) < 0)
		workers__fail(w, -EPIPE, "cannot send Start");
	else if (!w->stopping)
		workers__schedule(w, WORKERS_READY_TIMEOUT_MS);
out:
	tscni__zygote_reply__free_unpacked(r, NULL);
}

/* <run_dir>/workers/<pod uid>.sock, or, for a uid too long for a socket
 * path (a pod UID may have 253 bytes, a container id 64),
 * <run_dir>/workers/=<BLAKE2b-96 of the uid, hex>.sock: '=' is never in a
 * valid_name, so the two forms cannot collide. run_dir has at most 64 bytes
 * (workers_new), so the second form always fits. */
int workers__rdv_path(const struct workers *ws, const char *pod_uid, struct sockaddr_un *sun)
{
	enum { RDV_HASH_LEN = 12 };
	uint8_t h[RDV_HASH_LEN];
	char hex[2 * RDV_HASH_LEN + 1];

	*sun = (struct sockaddr_un){.sun_family = AF_UNIX};
	if ((size_t)snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/workers/%s.sock",
			     ws->run_dir, pod_uid) < sizeof(sun->sun_path))
		return 0;
	crypto_generichash(h, sizeof(h), (const uint8_t *)pod_uid, strlen(pod_uid), NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	if ((size_t)snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/workers/=%s.sock",
			     ws->run_dir, hex) >= sizeof(sun->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

/* The worker's rendezvous: a SOCK_SEQPACKET socket the next supervisor
 * connects to. Made and bound here (the worker may not create AF_UNIX
 * sockets) and kept in custody; the worker itself calls listen(2), because
 * the kernel records the listening process as every client's peer: that is
 * how SO_PEERPIDFD / SO_PEERCRED name the worker, not us. */
static int rdv_listen(const struct workers *ws, const char *pod_uid, int *out)
{
	struct sockaddr_un sun;
	int fd, ret;

	*out = -1;
	ret = workers__rdv_path(ws, pod_uid, &sun);
	if (ret < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	unlink(sun.sun_path); /* a stale one from a dead worker of this pod */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

int workers_spawn(struct workers *ws, const struct worker_spec *spec, worker_event_fn *cb,
		  void *arg, struct worker **out)
{
	struct worker *w;
	int ret;

	*out = NULL;
	if (!workers__spec_ok(ws, spec) || spec->tun_fd < 0)
		return -EINVAL;
	w = workers__alloc(ws, spec, cb, arg);
	/* Custody: our own dups, handed to this worker and every respawn. */
	w->fds[0] = fcntl(spec->tun_fd, F_DUPFD_CLOEXEC, 3);
	if (w->fds[0] < 0) {
		ret = -errno;
		goto fail;
	}
	w->nfds = 1;
	if (ws->run_dir) {
		ret = rdv_listen(ws, w->pod_uid, &w->fds[1]);
		if (ret < 0) {
			log_err_r(ret, "pod %s: rendezvous socket", w->pod_uid);
			goto fail;
		}
		w->has_rdv = true;
		w->nfds = 2;
	}
	for (size_t i = 0; i < spec->n_extra_fds; i++) {
		w->fds[w->nfds] = fcntl(spec->extra_fds[i], F_DUPFD_CLOEXEC, 3);
		if (w->fds[w->nfds] < 0) {
			ret = -errno;
			goto fail;
		}
		w->nfds++;
	}
	workers__link(w);
	workers__request_spawn(w);
	*out = w;
	return 0;
fail:
	w->cb = NULL;
	w->ws = NULL;
	workers__free(w);
	return ret;
}
