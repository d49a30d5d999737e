/* The supervisor's side of the workers. See workers.h for the contract.
 *
 * Objects and their owners:
 *   struct workers  one per supervisor; owns the zygote and every worker.
 *   struct zyg      one zygote incarnation: its socket, pidfd and two polls.
 *                   Freed in the polls' close callback; a dead zygote is
 *                   replaced by a new struct zyg.
 *   struct worker   one pod's worker across respawns: the custody fds (TUN,
 *                   extra sockets), keys, the callback, the respawn timer.
 *   struct wproc    one worker process: its socket, pidfd and two polls.
 *                   Freed in the close callback, so a dying process never
 *                   leaves a half-closed handle behind the next one.
 */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "frame.h"
#include "kfeat.h"
#include "log.h"
#include "mem.h"
#include "netops.h"
#include "state.h"
#include "validate.h"
#include "worker.pb-c.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

enum workers_proto {
	WORKERS_PROTO_MIN = 1, /* the supervisor <-> worker versions we speak */
	WORKERS_PROTO_MAX = 1,
	WORKERS_RECV_BATCH = 32, /* messages per poll wake-up: one worker cannot starve others */
	WORKERS_ZYGOTE_RESTART_MS = 100,
	WORKERS_ZYGOTE_REPLY_MAX = 128,
	WORKERS_ESCAPED = 4 * MSG_MAX_LEN + 4,
	/* Custody per worker: TUN, rendezvous listener, extra sockets. */
	WORKERS_CUSTODY_MAX = 2 + WORKERS_EXTRA_FDS_MAX,
	/* In the worker: fd 3 its link, fd 4 the TUN, fd 5 the rendezvous. */
	WORKERS_WORKER_RDV_FD = 5,
};
_Static_assert(1 + WORKERS_CUSTODY_MAX <= WMSG_MAX_FDS, "a spawn request carries every fd");

/* States of a worker process, as bits for the dispatch table (workers.h
 * names the same bits for tests). */
enum worker_state {
	WS_SPAWNING = WORKERS_TS_SPAWNING, /* asked the zygote; no process yet */
	WS_HELLO = WORKERS_TS_HELLO,	   /* process up, Hello + Start sent; its Hello expected */
	WS_STARTING = WORKERS_TS_STARTING, /* Hello received; Ready expected */
	WS_READY = WORKERS_TS_READY,	   /* Ready received (once) */
	WS_DEAD = WORKERS_TS_DEAD, /* no process (respawn pending), or failed: nothing accepted */
};

struct zyg {
	struct workers *ws;
	uv_poll_t sock_poll;
	uv_poll_t pid_poll;
	int sock;
	int pidfd;
	pid_t pid;
	int handles_open;
};

struct wproc {
	struct worker *w; /* NULL once the process is dead or detached */
	uv_poll_t sock_poll;
	uv_poll_t pid_poll;
	int sock;
	int pidfd;
	pid_t pid;
	bool clone_parent; /* our child: waitid(P_PIDFD) tells how it died */
	bool sock_open;	   /* sock_poll started and not at EOF */
	int handles_open;
};

struct outmsg {
	uint8_t *buf;
	size_t len;
};

struct worker {
	struct workers *ws;
	struct worker *prev, *next;
	char pod_uid[POD_FIELD_MAX_LEN + 1];
	char *hostname, *auth_key, *control_url;
	uint8_t machine_private[WORKERS_KEY_LEN];
	uint8_t node_private[WORKERS_KEY_LEN];
	struct ip_prefix addresses[PREFIX_MAX];
	size_t n_addresses;
	int fds[WORKERS_CUSTODY_MAX]; /* custody: TUN, rendezvous (if any), extras */
	size_t nfds;
	bool has_rdv;	 /* fds[1] is the rendezvous listener */
	bool unlink_rdv; /* GONE: the worker is dead for good, its path goes */
	struct worker_identity id;
	uint32_t uid;
	unsigned int mtu;
	bool debug_seccomp, test_requests;
	worker_event_fn *cb;
	void *arg;

	unsigned int state;
	struct wproc *proc;
	uint64_t cookie;  /* of the spawn request in flight, 0 if none */
	int child_sock;	  /* our end of the socketpair while SPAWNING */
	uv_timer_t timer; /* respawn, Ready deadline, stop grace, deferred GONE */
	bool stopping, tun_gone, gone_pending, freed;
	const char *gone_why;
	unsigned int respawns;
	unsigned int backoff_ms;
	unsigned long long started_ms;

	unsigned long long tokens; /* rate limit, in thousandths of a message */
	unsigned long long tokens_ms;
	struct outmsg outq[WORKERS_OUTQ_MAX];
	size_t outq_head, outq_len;
	struct worker_stats stats;
};

struct workers {
	uv_loop_t *loop;
	char *worker_path, *cgroup_parent, *sandbox, *run_dir, *host_mntns;
	int mntns_fd; /* host_mntns, open for every zygote start; -1: ours */
	char boot_id[WORKERS_BOOT_ID_LEN + 1];
	uint32_t proto_min, proto_max;
	bool force_fallbacks;
	unsigned int max_forks;
	uint32_t uid_base, uid_count;
	const struct netops_policy *policy;
	worker_netop_fn *netop;
	void *netop_arg;
	worker_resolve_fn *resolve;
	void *resolve_arg;
	const char *ca_pem; /* borrowed (workers_config) */
	size_t ca_pem_len;
	const char *auth_key; /* borrowed (workers_set_auth_key), sent with logouts */
	unsigned int control_test_flags;
	uint32_t wg_timers_ms[6];

	struct zyg *zyg;
	uv_timer_t zyg_timer;
	unsigned int zyg_restarts;
	bool closing;
	int handles_open;
	uint64_t next_cookie;
	struct worker *head;
	uint8_t rbuf[WMSG_MAX_LEN];
};

static void worker_fail(struct worker *w, int ret, const char *why);
static int rdv_path(const struct workers *ws, const char *pod_uid, struct sockaddr_un *sun);
static void worker_timer(uv_timer_t *t);
static void request_spawn(struct worker *w);
static int zygote_start(struct workers *ws);

static int pidfd_kill(int pidfd)
{
	if (pidfd < 0)
		return -EBADF;
	return syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void free_wiped(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

static void emit(struct worker *w, enum worker_event ev, const struct worker_report *r)
{
	if (w->cb)
		w->cb(w, ev, r, w->arg);
}

/* ---- outgoing messages ------------------------------------------------- */

static void outq_clear(struct worker *w)
{
	while (w->outq_len) {
		struct outmsg *o = &w->outq[w->outq_head];

		explicit_bzero(o->buf, o->len); /* Start carries keys */
		free(o->buf);
		o->buf = NULL;
		w->outq_head = (w->outq_head + 1) % WORKERS_OUTQ_MAX;
		w->outq_len--;
	}
	w->outq_head = 0;
}

static void sock_poll_update(struct wproc *p);

static int send_msg(struct worker *w, const Tscni__SupervisorMsg *m)
{
	struct wproc *p = w->proc;
	size_t len = tscni__supervisor_msg__get_packed_size(m);
	uint8_t *buf;
	int ret = 0;

	if (!p || !p->sock_open)
		return -ENOTCONN;
	if (len == 0 || len > WMSG_MAX_LEN)
		return -EMSGSIZE;
	buf = xmalloc(len);
	tscni__supervisor_msg__pack(m, buf);
	if (w->outq_len == 0) {
		ret = seqpacket_send(p->sock, buf, len, NULL, 0);
		if (ret != -EAGAIN) {
			explicit_bzero(buf, len);
			free(buf);
			return ret;
		}
	}
	if (w->outq_len == WORKERS_OUTQ_MAX) {
		explicit_bzero(buf, len);
		free(buf);
		/* It does not read what we send: it is stuck or hostile. */
		worker_fail(w, -ENOBUFS, "outgoing queue full");
		return -ENOBUFS;
	}
	w->outq[(w->outq_head + w->outq_len) % WORKERS_OUTQ_MAX] =
		(struct outmsg){.buf = buf, .len = len};
	w->outq_len++;
	sock_poll_update(p);
	return 0;
}

static void outq_flush(struct worker *w)
{
	while (w->outq_len && w->proc) {
		struct outmsg *o = &w->outq[w->outq_head];
		int ret = seqpacket_send(w->proc->sock, o->buf, o->len, NULL, 0);

		if (ret == -EAGAIN)
			break;
		explicit_bzero(o->buf, o->len);
		free(o->buf);
		o->buf = NULL;
		w->outq_head = (w->outq_head + 1) % WORKERS_OUTQ_MAX;
		w->outq_len--;
		if (ret < 0) {
			worker_fail(w, ret, "send");
			return;
		}
	}
	if (w->proc)
		sock_poll_update(w->proc);
}

static int send_hello_start(struct worker *w)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Hello h = TSCNI__HELLO__INIT;
	Tscni__Start s = TSCNI__START__INIT;
	Tscni__WgTimers timers = TSCNI__WG_TIMERS__INIT;
	Tscni__IpPrefix pb[PREFIX_MAX], *pbp[PREFIX_MAX];
	int ret;

	h.min_version = w->ws->proto_min;
	h.max_version = w->ws->proto_max;
	h.pod_uid = w->pod_uid;
	h.pid = getpid();
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_HELLO;
	m.hello = &h;
	ret = send_msg(w, &m);
	if (ret < 0)
		return ret;

	s.pod_uid = w->pod_uid;
	s.hostname = w->hostname ? w->hostname : (char *)"";
	s.machine_private.data = w->machine_private;
	s.machine_private.len = WORKERS_KEY_LEN;
	s.node_private.data = w->node_private;
	s.node_private.len = WORKERS_KEY_LEN;
	s.auth_key = w->auth_key ? w->auth_key : (char *)"";
	s.control_url = w->control_url ? w->control_url : (char *)"";
	if (w->ws && w->control_url && w->ws->ca_pem) {
		s.ca_bundle.data = (uint8_t *)w->ws->ca_pem;
		s.ca_bundle.len = w->ws->ca_pem_len;
	}
	if (w->ws)
		s.control_test_flags = w->ws->control_test_flags;
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
	return send_msg(w, &m);
}

/* ---- the dispatch table ------------------------------------------------ */

typedef int handler_fn(struct worker *w, const Tscni__WorkerMsg *m, const char **why);

static int on_hello(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	const Tscni__Hello *h = m->hello;

	/* A test worker (workers__test_new) has no ws: our own range. */
	uint32_t lo = w->ws ? w->ws->proto_min : WORKERS_PROTO_MIN;
	uint32_t hi = w->ws ? w->ws->proto_max : WORKERS_PROTO_MAX;

	if (h->max_version < lo || h->min_version > hi) {
		*why = "hello: no common protocol version";
		return -EPROTONOSUPPORT;
	}
	w->id.version = h->max_version < hi ? h->max_version : hi;
	if (h->pod_uid[0] && strcmp(h->pod_uid, w->pod_uid)) {
		*why = "hello: pod_uid is not this worker's";
		return -EPERM;
	}
	if (h->pid && w->proc && h->pid != w->proc->pid) {
		*why = "hello: pid is not this worker's";
		return -EPERM;
	}
	w->state = WS_STARTING;
	return 0;
}

static int on_ready(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	struct worker_report r = {.pid = workers_pid(w)};
	char node[WORKERS_ESCAPED];
	struct ip_prefix addrs[PREFIX_MAX];
	size_t n = 0;

	for (size_t i = 0; i < m->ready->n_addresses && n < PREFIX_MAX; i++) {
		const char *no = NULL;

		if (ip_prefix_from_pb(m->ready->addresses[i], &addrs[n]) < 0 ||
		    netops_validate_addr(&addrs[n], &no) < 0) {
			*why = "ready.addresses: not a /32 or /128 of the tailnet";
			return -EBADMSG;
		}
		n++;
	}
	r.addresses = addrs;
	r.n_addresses = n;
	/* Ready is accepted once: WS_READY is not in its row of the table. */
	w->state = WS_READY;
	uv_timer_stop(&w->timer);
	/* The one-use auth key has done its job. */
	free_wiped(w->auth_key);
	w->auth_key = NULL;
	w->backoff_ms = 0;
	log_escape(node, sizeof(node), m->ready->stable_node_id, strlen(m->ready->stable_node_id));
	r.stable_node_id = node;
	log_info("pod %s: worker %d ready", w->pod_uid, (int)r.pid);
	emit(w, WORKER_EV_READY, &r);
	return 0;
}

static int on_stats(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	struct worker_report r = {.pid = workers_pid(w)};
	const Tscni__Stats *s = m->stats;

	(void)why;
	w->stats = (struct worker_stats){
		.tun_rx_packets = s->tun_rx_packets,
		.tun_tx_packets = s->tun_tx_packets,
		.udp_rx_packets = s->udp_rx_packets,
		.udp_tx_packets = s->udp_tx_packets,
		.drops = s->drops,
		.handshakes = s->handshakes,
		.filter_drops = s->filter_drops,
		.peers = s->peers,
		.configured = s->configured,
	};
	r.stats = w->stats;
	emit(w, WORKER_EV_STATS, &r);
	return 0;
}

static int on_event(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	struct worker_report r = {.pid = workers_pid(w), .event_kind = (int)m->event->kind};
	char detail[WORKERS_ESCAPED];

	(void)why;
	log_escape(detail, sizeof(detail), m->event->detail, strlen(m->event->detail));
	r.detail = detail;
	if (m->event->kind == TSCNI__EVENT_KIND__EVENT_TUN_GONE) {
		/* The pod's netns is gone: this worker is not respawned. */
		w->tun_gone = true;
		log_info("pod %s: worker %d: TUN gone (%s)", w->pod_uid, (int)r.pid, detail);
	} else if (m->event->kind == TSCNI__EVENT_KIND__EVENT_SECCOMP_TRAP) {
		log_warn("pod %s: worker %d: seccomp trapped %s", w->pod_uid, (int)r.pid, detail);
	} else {
		log_info("pod %s: worker %d: event %d %s", w->pod_uid, (int)r.pid, r.event_kind,
			 detail);
	}
	emit(w, WORKER_EV_EVENT, &r);
	return 0;
}

static int on_log(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	char line[WORKERS_ESCAPED];

	(void)why;
	log_escape(line, sizeof(line), m->log->msg, strlen(m->log->msg));
	log_emit((enum log_level)m->log->level, "worker", 0, "pod %s pid %d: %s", w->pod_uid,
		 (int)workers_pid(w), line);
	return 0;
}

static int on_resolve(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	Tscni__SupervisorMsg out = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__ResolveReply rep = TSCNI__RESOLVE_REPLY__INIT;

	(void)why;
	if (w->ws && w->ws->resolve) {
		w->ws->resolve(w, m->resolve_request->id, m->resolve_request->host,
			       w->ws->resolve_arg);
		return 0;
	}
	rep.id = m->resolve_request->id;
	rep.error = (char *)"no resolver configured";
	out.body_case = TSCNI__SUPERVISOR_MSG__BODY_RESOLVE_REPLY;
	out.resolve_reply = &rep;
	send_msg(w, &out);
	return 0;
}

static int on_netop(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	const Tscni__NetopRequest *q = m->netop_request;
	static const struct netops_policy no_policy;
	struct workers *ws = w->ws;
	const char *no = NULL;
	struct ip_prefix p;
	int ret;

	if (ip_prefix_from_pb(q->prefix, &p) < 0) {
		*why = "netop_request.prefix invalid";
		return -EBADMSG;
	}
	if (q->kind == TSCNI__NETOP_KIND__NETOP_ADDR_ADD ||
	    q->kind == TSCNI__NETOP_KIND__NETOP_ADDR_DEL)
		ret = netops_validate_addr(&p, &no);
	else
		ret = netops_validate_route(&p, ws && ws->policy ? ws->policy : &no_policy, &no);
	if (ret < 0) {
		char text[IP_PREFIX_STRLEN];

		/* Refused, not fatal: a netmap can name routes we do not allow. */
		log_warn("pod %s: worker %d: netop %d %s refused: %s", w->pod_uid,
			 (int)workers_pid(w), (int)q->kind,
			 ip_prefix_format(&p, text, sizeof(text)), no ? no : "");
		workers_netop_reply(w, q->id, ret, no);
		return 0;
	}
	if (!ws || !ws->netop) {
		workers_netop_reply(w, q->id, -EOPNOTSUPP, "no network operations configured");
		return 0;
	}
	ws->netop(w, q->id, (enum worker_netop)q->kind, &p, ws->netop_arg);
	return 0;
}

static int on_test_reply(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	struct worker_report r = {.pid = workers_pid(w)};
	char detail[WORKERS_ESCAPED];

	if (!w->test_requests) {
		*why = "test_reply from a worker not in test mode";
		return -EPROTO;
	}
	log_escape(detail, sizeof(detail), m->test_reply->detail, strlen(m->test_reply->detail));
	r.test_id = m->test_reply->id;
	r.err = m->test_reply->err;
	r.detail = detail;
	emit(w, WORKER_EV_TEST_REPLY, &r);
	return 0;
}

/* Which message a worker may send in which state (ssh monitor.c's
 * mon_dispatch table). Anything not listed ends the worker. */
static const struct dispatch {
	Tscni__WorkerMsg__BodyCase body;
	unsigned int states;
	handler_fn *handler;
} dispatch_table[] = {
	{TSCNI__WORKER_MSG__BODY_HELLO, WS_HELLO, on_hello},
	{TSCNI__WORKER_MSG__BODY_READY, WS_STARTING, on_ready},
	{TSCNI__WORKER_MSG__BODY_STATS, WS_STARTING | WS_READY, on_stats},
	{TSCNI__WORKER_MSG__BODY_EVENT, WS_STARTING | WS_READY, on_event},
	{TSCNI__WORKER_MSG__BODY_LOG, WS_HELLO | WS_STARTING | WS_READY, on_log},
	{TSCNI__WORKER_MSG__BODY_RESOLVE_REQUEST, WS_STARTING | WS_READY, on_resolve},
	{TSCNI__WORKER_MSG__BODY_NETOP_REQUEST, WS_STARTING | WS_READY, on_netop},
	{TSCNI__WORKER_MSG__BODY_TEST_REPLY, WS_STARTING | WS_READY, on_test_reply},
};

/* Unpacks, validates and dispatches one message from w. 0, or a negative
 * errno with *why set: the caller then ends the worker. */
int workers__dispatch(struct worker *w, const uint8_t *buf, size_t len, const char **why)
{
	Tscni__WorkerMsg *m;
	int ret;

	m = tscni__worker_msg__unpack(NULL, len, buf);
	if (!m) {
		*why = "undecodable WorkerMsg";
		return -EBADMSG;
	}
	ret = validate_worker_msg(m, why);
	if (ret < 0)
		goto out;
	ret = -EPROTO;
	*why = "message not allowed in this state";
	for (size_t i = 0; i < sizeof(dispatch_table) / sizeof(dispatch_table[0]); i++) {
		const struct dispatch *d = &dispatch_table[i];

		if (d->body != m->body_case)
			continue;
		if (d->states & w->state)
			ret = d->handler(w, m, why);
		break;
	}
out:
	tscni__worker_msg__free_unpacked(m, NULL);
	return ret;
}

/* A token bucket per worker: WORKERS_RATE_PER_S after a burst. */
static bool rate_ok(struct worker *w)
{
	unsigned long long now = now_ms(), cap = (unsigned long long)WORKERS_RATE_BURST * 1000;

	w->tokens += (now - w->tokens_ms) * WORKERS_RATE_PER_S;
	if (w->tokens > cap)
		w->tokens = cap;
	w->tokens_ms = now;
	if (w->tokens < 1000)
		return false;
	w->tokens -= 1000;
	return true;
}

/* ---- worker processes -------------------------------------------------- */

static void proc_close_cb(uv_handle_t *h)
{
	struct wproc *p = h->data;

	if (--p->handles_open > 0)
		return;
	close_fd(&p->sock);
	close_fd(&p->pidfd);
	free(p);
}

static void proc_close(struct wproc *p)
{
	p->w = NULL;
	p->sock_open = false;
	uv_close((uv_handle_t *)&p->sock_poll, proc_close_cb);
	uv_close((uv_handle_t *)&p->pid_poll, proc_close_cb);
}

static void on_sock(uv_poll_t *h, int status, int events);

static void sock_poll_update(struct wproc *p)
{
	int ev = UV_READABLE;

	if (!p->sock_open)
		return;
	if (p->w && p->w->outq_len)
		ev |= UV_WRITABLE;
	uv_poll_start(&p->sock_poll, ev, on_sock);
}

static void on_sock(uv_poll_t *h, int status, int events)
{
	struct wproc *p = h->data;
	struct worker *w = p->w;

	if (!w)
		return;
	if (status < 0) {
		worker_fail(w, status, "socket poll");
		return;
	}
	if (events & UV_WRITABLE)
		outq_flush(w);
	for (int i = 0; i < WORKERS_RECV_BATCH && p->w && p->sock_open; i++) {
		const char *why = "";
		ssize_t n;
		int ret;

		/* fds == NULL: no control buffer, a worker cannot pass us fds. */
		n = seqpacket_recv(p->sock, w->ws->rbuf, sizeof(w->ws->rbuf), NULL, NULL, 0, &why);
		if (n == -EAGAIN)
			break;
		if (n == 0 || n == -ECONNRESET) {
			/* The worker's end closed: it is dying. Its pidfd says
			 * when it is gone. */
			p->sock_open = false;
			uv_poll_stop(&p->sock_poll);
			break;
		}
		if (n < 0) {
			worker_fail(w, (int)n, why);
			break;
		}
		if (!rate_ok(w)) {
			worker_fail(w, -EBUSY, "message rate exceeded");
			break;
		}
		ret = workers__dispatch(w, w->ws->rbuf, (size_t)n, &why);
		if (ret < 0) {
			worker_fail(w, ret, why);
			break;
		}
	}
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

static void schedule(struct worker *w, unsigned int ms)
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

static void worker_died(struct worker *w, pid_t pid, int code, int status)
{
	unsigned long long lived = now_ms() - w->started_ms;
	struct worker_report r = {.pid = pid, .code = code, .status = status};

	w->state = WS_DEAD;
	outq_clear(w);
	if (code == CLD_KILLED || code == CLD_DUMPED)
		log_warn("pod %s: worker %d killed by signal %d%s", w->pod_uid, (int)pid, status,
			 status == SIGSYS ? " (seccomp)" : "");
	else if (code == CLD_EXITED)
		log_info("pod %s: worker %d exited with %d", w->pod_uid, (int)pid, status);
	else
		log_info("pod %s: worker %d gone", w->pod_uid, (int)pid);
	if (w->stopping) {
		emit(w, WORKER_EV_EXIT, &r);
		emit_gone(w, "stopped");
		return;
	}
	if (w->tun_gone || !tun_alive(w)) {
		emit(w, WORKER_EV_EXIT, &r);
		emit_gone(w, "the pod's network namespace is gone");
		return;
	}
	if (lived >= WORKERS_STABLE_MS || w->backoff_ms == 0)
		w->backoff_ms = WORKERS_RESPAWN_MIN_MS;
	else
		w->backoff_ms = w->backoff_ms * 2 > WORKERS_RESPAWN_MAX_MS ? WORKERS_RESPAWN_MAX_MS
									   : w->backoff_ms * 2;
	r.respawn_ms = w->backoff_ms;
	emit(w, WORKER_EV_EXIT, &r);
	if (!w->stopping && !w->gone_pending)
		schedule(w, w->backoff_ms);
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
	pidfd_kill(p->pidfd);
	proc_close(p);
	if (!w)
		return;
	w->proc = NULL;
	worker_died(w, pid, code, st);
}

static void worker_fail(struct worker *w, int ret, const char *why)
{
	log_err_r(ret, "pod %s: worker %d: %s: killing it", w->pod_uid, (int)workers_pid(w), why);
	w->state = WS_DEAD;
	if (w->proc) {
		w->proc->sock_open = false;
		uv_poll_stop(&w->proc->sock_poll);
		pidfd_kill(w->proc->pidfd);
	}
}

/* ---- the zygote -------------------------------------------------------- */

static void zyg_close_cb(uv_handle_t *h)
{
	struct zyg *z = h->data;
	struct workers *ws = z->ws;

	if (--z->handles_open > 0)
		return;
	close_fd(&z->sock);
	close_fd(&z->pidfd);
	free(z);
	if (ws->closing && --ws->handles_open == 0)
		free(ws);
}

static void zyg_close(struct workers *ws)
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

/* /proc/PID/stat field 22, the start time in clock ticks after boot: with
 * the boot id, what tells this process from a later one with the same pid. */
static int proc_start_time(pid_t pid, uint64_t *out)
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
static struct wproc *proc_attach(struct worker *w, int sock, int pidfd, pid_t pid,
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
	sock_poll_update(p);
	w->proc = p;
	w->started_ms = now_ms();
	w->tokens = (unsigned long long)WORKERS_RATE_BURST * 1000;
	w->tokens_ms = w->started_ms;
	w->id.pid = pid;
	proc_start_time(pid, &w->id.start_time);
	memcpy(w->id.boot_id, ws->boot_id, sizeof(w->id.boot_id));
	return p;
}

static struct worker *find_cookie(struct workers *ws, uint64_t cookie)
{
	for (struct worker *w = ws->head; w; w = w->next)
		if (w->cookie == cookie && w->state == WS_SPAWNING)
			return w;
	return NULL;
}

static void zyg_reply(struct workers *ws, const uint8_t *buf, size_t len, int *fds, size_t nfds)
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
			pidfd_kill(pidfd);
			close(pidfd);
		}
		goto out;
	}
	w->cookie = 0;
	if (r->err < 0) {
		log_err_r(r->err, "pod %s: zygote could not fork a worker", w->pod_uid);
		close_fd(&w->child_sock);
		/* A failed fork is a quick death: the backoff grows (without
		 * this, the previous process's start time, or none, made every
		 * retry look stable and the zygote was asked every 10 ms). */
		w->started_ms = now_ms();
		worker_died(w, 0, 0, 0);
		goto out;
	}
	p = proc_attach(w, w->child_sock, pidfd, r->pid, r->clone_parent);
	w->child_sock = -1;
	w->state = WS_HELLO;
	log_info("pod %s: worker %d spawned (uid %u)", w->pod_uid, (int)p->pid, w->uid);
	if (send_hello_start(w) < 0)
		worker_fail(w, -EPIPE, "cannot send Start");
	else if (!w->stopping)
		schedule(w, WORKERS_READY_TIMEOUT_MS);
out:
	tscni__zygote_reply__free_unpacked(r, NULL);
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
			pidfd_kill(z->pidfd);
			return;
		}
		zyg_reply(ws, buf, (size_t)n, fds, nfds);
	}
}

static void zyg_restart(uv_timer_t *t)
{
	struct workers *ws = t->data;
	int ret = zygote_start(ws);

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
	zyg_close(ws);
	ws->zyg_restarts++;
	/* Requests in flight died with it: ask the next one. */
	for (struct worker *w = ws->head; w; w = w->next) {
		if (w->state == WS_SPAWNING && w->cookie) {
			w->cookie = 0;
			close_fd(&w->child_sock);
		}
	}
	uv_timer_start(&ws->zyg_timer, zyg_restart, WORKERS_ZYGOTE_RESTART_MS, 0);
}

/* What the child reports through the CLOEXEC pipe when it cannot exec. */
enum zygote_stage {
	ZYGOTE_STAGE_FD3 = 1,
	ZYGOTE_STAGE_SETNS,
	ZYGOTE_STAGE_EXEC,
};

/* fork + exec of the worker binary as the zygote, with its end of a fresh
 * socketpair on fd 3. With host_mntns, the child first enters that mount
 * namespace (setns; after fork it is single-threaded with its own fs_struct,
 * as setns(CLONE_NEWNS) requires), so worker_path is resolved on the host.
 * Between fork and exec only async-signal-safe calls; a failure comes back
 * through a CLOEXEC pipe as {stage, errno} (libuv's discipline). */
static int zygote_start(struct workers *ws)
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
			ws->force_fallbacks ? (char *)"--force-fallbacks" : NULL,
			NULL};
	sigset_t all, old;
	int sv[2], ep[2], pidfd, ret;
	int fail[2] = {0, 0}; /* enum zygote_stage, errno */
	struct zyg *z;
	ssize_t n;
	pid_t pid;

	snprintf(forks, sizeof(forks), "%u", ws->max_forks);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	if (pipe2(ep, O_CLOEXEC) < 0) {
		ret = -errno;
		close(sv[0]);
		close(sv[1]);
		return ret;
	}
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
		fail[0] = ZYGOTE_STAGE_SETNS;
		if (ws->mntns_fd >= 0 && setns(ws->mntns_fd, CLONE_NEWNS) < 0)
			goto child_fail;
		sigprocmask(SIG_SETMASK, &old, NULL);
		fail[0] = ZYGOTE_STAGE_EXEC;
		execv(argv[0], argv);
	child_fail:
		fail[1] = errno;
		n = write(ep[1], fail, sizeof(fail));
		(void)n;
		_exit(127);
	}
	ret = pid < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
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
		ret = fail[1] > 0 ? -fail[1] : -EIO;
		if (fail[0] == ZYGOTE_STAGE_SETNS)
			log_err_r(ret, "zygote: enter the mount namespace %s", ws->host_mntns);
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
		else
			log_err_r(ret, "zygote: fd 3 for its socket");
		return ret;
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
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	z = xcalloc(1, sizeof(*z));
	z->ws = ws;
	z->sock = sv[0];
	z->pidfd = pidfd;
	z->pid = pid;
	uv_poll_init(ws->loop, &z->sock_poll, z->sock);
	uv_poll_init(ws->loop, &z->pid_poll, z->pidfd);
	z->sock_poll.data = z->pid_poll.data = z;
	z->handles_open = 2;
	uv_poll_start(&z->sock_poll, UV_READABLE, on_zyg_sock);
	uv_poll_start(&z->pid_poll, UV_READABLE, on_zyg_pidfd);
	ws->zyg = z;
	log_info("zygote %d started from %s%s%s", (int)pid, ws->worker_path,
		 ws->host_mntns ? " in the mount namespace " : "",
		 ws->host_mntns ? ws->host_mntns : "");
	for (struct worker *w = ws->head; w; w = w->next)
		if (w->state == WS_SPAWNING && !w->cookie && !w->stopping)
			request_spawn(w);
	return 0;
}

/* ---- spawning ---------------------------------------------------------- */

/* Sends one spawn request: our end of a new socketpair stays in
 * w->child_sock until the zygote answers. Without a zygote (restarting) the
 * request waits for the next one (zygote_start sends it). */
static void request_spawn(struct worker *w)
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
	close_fd(&w->child_sock);
	w->child_sock = sv[0];
	w->cookie = q.cookie;
	return;
fail:
	log_err_r(ret, "pod %s: spawn request to the zygote", w->pod_uid);
	w->started_ms = now_ms(); /* a quick death: the backoff grows */
	worker_died(w, 0, 0, 0);
}

static void worker_close_cb(uv_handle_t *h)
{
	struct worker *w = h->data;

	free(w);
}

static void worker_free(struct worker *w)
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
	outq_clear(w);
	explicit_bzero(w->machine_private, sizeof(w->machine_private));
	explicit_bzero(w->node_private, sizeof(w->node_private));
	free_wiped(w->auth_key);
	free(w->hostname);
	free(w->control_url);
	if (w->has_rdv && w->unlink_rdv && ws) {
		struct sockaddr_un sun;

		if (rdv_path(ws, w->pod_uid, &sun) == 0)
			unlink(sun.sun_path);
	}
	for (size_t i = 0; i < w->nfds; i++)
		close_fd(&w->fds[i]);
	close_fd(&w->child_sock);
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
		emit(w, WORKER_EV_GONE, &r);
		worker_free(w);
		return;
	}
	if (w->proc && w->stopping) {
		log_warn("pod %s: worker %d did not stop in time: SIGKILL", w->pod_uid,
			 (int)w->proc->pid);
		pidfd_kill(w->proc->pidfd);
		return;
	}
	if (w->proc && (w->state & (WS_HELLO | WS_STARTING))) {
		worker_fail(w, -ETIMEDOUT, "no Ready in time");
		return;
	}
	if (!w->proc && w->state == WS_DEAD && !w->stopping) {
		w->respawns++;
		log_info("pod %s: respawning worker (respawn %u)", w->pod_uid, w->respawns);
		request_spawn(w);
	}
}

static bool spec_ok(const struct workers *ws, const struct worker_spec *spec)
{
	return spec->pod_uid && valid_name(spec->pod_uid, POD_FIELD_MAX_LEN) &&
	       spec->n_addresses <= PREFIX_MAX && spec->n_extra_fds <= WORKERS_EXTRA_FDS_MAX &&
	       spec->slot < ws->uid_count && (!spec->n_extra_fds || spec->extra_fds) &&
	       (!spec->n_addresses || spec->addresses) &&
	       (!spec->hostname || strlen(spec->hostname) <= HOST_MAX_LEN) &&
	       (!spec->auth_key || strlen(spec->auth_key) <= AUTHKEY_MAX_LEN) &&
	       (!spec->control_url || strlen(spec->control_url) <= URL_MAX_LEN);
}

/* A new struct worker from spec, with no fds and not yet on the list. */
static struct worker *worker_alloc(struct workers *ws, const struct worker_spec *spec,
				   worker_event_fn *cb, void *arg)
{
	struct worker *w = xcalloc(1, sizeof(*w));

	w->ws = ws;
	w->child_sock = -1;
	for (size_t i = 0; i < WORKERS_CUSTODY_MAX; i++)
		w->fds[i] = -1;
	strscpy(w->pod_uid, spec->pod_uid, sizeof(w->pod_uid));
	w->hostname = spec->hostname ? xstrdup(spec->hostname) : NULL;
	w->auth_key = spec->auth_key ? xstrdup(spec->auth_key) : NULL;
	w->control_url = spec->control_url ? xstrdup(spec->control_url) : NULL;
	memcpy(w->machine_private, spec->machine_private, WORKERS_KEY_LEN);
	memcpy(w->node_private, spec->node_private, WORKERS_KEY_LEN);
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

static void worker_link(struct worker *w)
{
	struct workers *ws = w->ws;

	uv_timer_init(ws->loop, &w->timer);
	w->timer.data = w;
	w->next = ws->head;
	if (ws->head)
		ws->head->prev = w;
	ws->head = w;
}

/* <run_dir>/workers/<pod uid>.sock, or, for a uid too long for a socket
 * path (a pod UID may have 253 bytes, a container id 64),
 * <run_dir>/workers/=<BLAKE2b-96 of the uid, hex>.sock: '=' is never in a
 * valid_name, so the two forms cannot collide. run_dir has at most 64 bytes
 * (workers_new), so the second form always fits. */
static int rdv_path(const struct workers *ws, const char *pod_uid, struct sockaddr_un *sun)
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
	ret = rdv_path(ws, pod_uid, &sun);
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
	if (!spec_ok(ws, spec) || spec->tun_fd < 0)
		return -EINVAL;
	w = worker_alloc(ws, spec, cb, arg);
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
	worker_link(w);
	request_spawn(w);
	*out = w;
	return 0;
fail:
	w->cb = NULL;
	w->ws = NULL;
	worker_free(w);
	return ret;
}

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
			   uint32_t *version, int *fds, size_t *nfds, const char **why)
{
	unsigned long long deadline = now_ms() + WORKERS_ADOPT_TIMEOUT_MS;
	Tscni__SupervisorMsg sm = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Hello ours = TSCNI__HELLO__INIT;
	Tscni__WorkerMsg *m = NULL;
	size_t want = 2 + spec->n_extra_fds, len;
	uint8_t *buf = ws->rbuf;
	ssize_t n;
	int ret;

	*nfds = 0;
	n = adopt_recv(fd, buf, sizeof(ws->rbuf), NULL, NULL, deadline, why);
	if (n < 0)
		return (int)n;
	m = tscni__worker_msg__unpack(NULL, (size_t)n, buf);
	if (!m) {
		*why = "undecodable Hello";
		return -EBADMSG;
	}
	ret = validate_worker_msg(m, why);
	if (ret < 0)
		goto out;
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
	    m->custody->fd_count != *nfds || *nfds != want || !is_tun(fds[0]) ||
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
	struct worker *w;
	size_t nfds = 0;
	pid_t pid = 0;

	*out = NULL;
	if (!spec_ok(ws, spec) || !ws->run_dir)
		return -EINVAL;
	if (strcmp(id->boot_id, ws->boot_id)) {
		why = "the record is from another boot";
		ret = -ESTALE;
		goto fail;
	}
	ret = rdv_path(ws, spec->pod_uid, &sun);
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
	if (pid != id->pid || proc_start_time(pid, &start) < 0 || start != id->start_time)
		goto fail;
	pfd = (struct pollfd){.fd = pidfd, .events = POLLIN};
	if (poll(&pfd, 1, 0) != 0)
		goto fail;
	ret = adopt_handshake(ws, spec, fd, pid, &version, fds, &nfds, &why);
	if (ret < 0)
		goto fail;
	w = worker_alloc(ws, spec, cb, arg);
	memcpy(w->fds, fds, nfds * sizeof(int));
	w->nfds = nfds;
	w->has_rdv = true;
	worker_link(w);
	/* Not our child: how it dies will not be known (waitid needs a child). */
	proc_attach(w, fd, pidfd, pid, false);
	w->id.version = version;
	w->state = WS_READY;
	log_info("pod %s: worker %d adopted (identified by %s)", w->pod_uid, (int)pid,
		 peerpidfd ? "SO_PEERPIDFD" : "SO_PEERCRED + pidfd_open + start time");
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
	if (send_msg(w, &m) < 0)
		pidfd_kill(w->proc->pidfd);
	schedule(w, WORKERS_STOP_GRACE_MS);
}

void workers_set_auth_key(struct workers *ws, const char *auth_key)
{
	ws->auth_key = auth_key;
}

int workers_roll(struct worker *w)
{
	if (!w->proc || w->stopping || w->gone_pending)
		return -ENOTCONN;
	/* Dies now, respawned after the shortest backoff (worker_died). */
	w->backoff_ms = 0;
	w->started_ms = 0;
	return pidfd_kill(w->proc->pidfd);
}

int workers_zygote_reexec(struct workers *ws)
{
	if (!ws->zyg)
		return -ENOTCONN;
	return pidfd_kill(ws->zyg->pidfd);
}

int workers_request_stats(struct worker *w)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__StatsRequest s = TSCNI__STATS_REQUEST__INIT;

	if (!w->proc || !(w->state & (WS_STARTING | WS_READY)))
		return -ENOTCONN;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_STATS_REQUEST;
	m.stats_request = &s;
	return send_msg(w, &m);
}

int workers_test_request(struct worker *w, uint32_t id, const char *action, const char *arg)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__TestRequest t = TSCNI__TEST_REQUEST__INIT;

	if (!w->test_requests)
		return -EPERM;
	if (!w->proc || !(w->state & (WS_STARTING | WS_READY)))
		return -ENOTCONN;
	t.id = id;
	t.action = (char *)action;
	t.arg = (char *)(arg ? arg : "");
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_TEST_REQUEST;
	m.test_request = &t;
	return send_msg(w, &m);
}

int workers_netop_reply(struct worker *w, uint32_t id, int err, const char *why)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__NetopReply r = TSCNI__NETOP_REPLY__INIT;

	if (err > 0 || err < -4095)
		return -EINVAL;
	r.id = id;
	r.err = err;
	r.why = (char *)(why ? why : "");
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_NETOP_REPLY;
	m.netop_reply = &r;
	return send_msg(w, &m);
}

int workers_resolve_reply(struct worker *w, uint32_t id, const struct sockaddr_storage *addrs,
			  size_t n, const char *error)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__ResolveReply r = TSCNI__RESOLVE_REPLY__INIT;
	ProtobufCBinaryData bin[PREFIX_MAX];
	size_t k = 0;

	for (size_t i = 0; i < n && k < PREFIX_MAX; i++) {
		if (addrs[i].ss_family == AF_INET) {
			bin[k].data = (uint8_t *)&((struct sockaddr_in *)&addrs[i])->sin_addr;
			bin[k++].len = 4;
		} else if (addrs[i].ss_family == AF_INET6) {
			bin[k].data = (uint8_t *)&((struct sockaddr_in6 *)&addrs[i])->sin6_addr;
			bin[k++].len = 16;
		}
	}
	r.id = id;
	r.addrs = bin;
	r.n_addrs = k;
	r.error = (char *)(k ? "" : error ? error : "no address");
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_RESOLVE_REPLY;
	m.resolve_reply = &r;
	return send_msg(w, &m);
}

void workers_get_stats(const struct worker *w, struct worker_stats *out)
{
	*out = w->stats;
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

pid_t workers_zygote_pid(const struct workers *ws)
{
	return ws->zyg ? ws->zyg->pid : 0;
}

unsigned int workers_zygote_restarts(const struct workers *ws)
{
	return ws->zyg_restarts;
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
	ws->resolve = cfg->resolve;
	ws->resolve_arg = cfg->resolve_arg;
	ws->ca_pem = cfg->ca_pem;
	ws->ca_pem_len = cfg->ca_pem_len;
	ws->control_test_flags = cfg->control_test_flags;
	memcpy(ws->wg_timers_ms, cfg->wg_timers_ms, sizeof(ws->wg_timers_ms));
	uv_timer_init(loop, &ws->zyg_timer);
	ws->zyg_timer.data = ws;
	ret = zygote_start(ws);
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
		ws->mntns_fd = -1;
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
		worker_free(w);
	}
	zyg_close(ws);
	free(ws->worker_path);
	free(ws->cgroup_parent);
	free(ws->sandbox);
	free(ws->run_dir);
	free(ws->host_mntns);
	if (ws->mntns_fd >= 0)
		close(ws->mntns_fd);
	ws->mntns_fd = -1;
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
	worker_free(w);
}
