/* The supervisor's link to a hostile worker (OpenSSH's monitor is the
 * model): every message is received without a control buffer, validated,
 * counted against a per-worker token bucket and allowed only in the states
 * the dispatch table lists for it; anything else ends the worker
 * (workers__fail). Messages to the worker go through a bounded queue: one
 * that stops reading is ended too. See workers.h for the contract.
 */
#include "workers.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "netops.h"
#include "workers_internal.h"

/* ---- outgoing messages ------------------------------------------------- */

void workers__outq_clear(struct worker *w)
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

int workers__send(struct worker *w, const Tscni__SupervisorMsg *m)
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
		workers__fail(w, -ENOBUFS, "outgoing queue full");
		return -ENOBUFS;
	}
	w->outq[(w->outq_head + w->outq_len) % WORKERS_OUTQ_MAX] =
		(struct outmsg){.buf = buf, .len = len};
	w->outq_len++;
	workers__poll_update(p);
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
			workers__fail(w, ret, "send");
			return;
		}
	}
	if (w->proc)
		workers__poll_update(w->proc);
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
	workers__emit(w, WORKER_EV_STARTED, &(struct worker_report){.pid = workers_pid(w)});
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
	r.registered_ns = m->ready->registered_ns;
	r.netmap_ns = m->ready->netmap_ns;
	/* Ready is accepted once: WS_READY is not in its row of the table. */
	w->state = WS_READY;
	uv_timer_stop(&w->timer);
	/* The one-use auth key has done its job. */
	workers__free_wiped(w->auth_key);
	w->auth_key = NULL;
	w->auth_retried = false;
	/* A rotation is done: the node is registered with the new key. */
	if (w->keys)
		w->has_old_node = false;
	w->backoff_ms = 0;
	log_escape(node, sizeof(node), m->ready->stable_node_id, strlen(m->ready->stable_node_id));
	r.stable_node_id = node;
	log_info("pod %s: worker %d ready", w->pod_uid, (int)r.pid);
	workers__emit(w, WORKER_EV_READY, &r);
	return 0;
}

/* Copies one PeerStatus that validate_worker_msg accepted: lengths within
 * the fixed fields are checked there, and bounded again by the copies. */
static void peer_copy(struct worker_peer *d, const Tscni__PeerStatus *s)
{
	size_t klen = strnlen(s->node_key, PEER_KEY_SHORT_LEN);
	size_t hlen = strnlen(s->host_name, PEER_HOST_MAX_LEN);

	memset(d, 0, sizeof(*d));
	memcpy(d->node_key, s->node_key, klen);
	memcpy(d->host_name, s->host_name, hlen);
	d->has_ipv4 = s->tailnet_ipv4.len == sizeof(d->ipv4);
	if (d->has_ipv4)
		memcpy(d->ipv4, s->tailnet_ipv4.data, sizeof(d->ipv4));
	d->path = (int)s->path;
	if (s->direct_ip.len == 4 || s->direct_ip.len == 16) {
		d->direct_ip_len = (uint8_t)s->direct_ip.len;
		memcpy(d->direct_ip, s->direct_ip.data, s->direct_ip.len);
	}
	d->direct_port = (uint16_t)s->direct_port;
	d->derp_region = (uint16_t)s->derp_region;
	d->last_handshake_unix = s->last_handshake_unix;
	d->rx_bytes = s->rx_bytes;
	d->tx_bytes = s->tx_bytes;
}

/* Stats.peer replaces the last one: exactly as many entries as arrived
 * (the count is bounded by PEER_STATUS_MAX in validate_worker_msg). */
static void peers_copy(struct worker *w, const Tscni__Stats *s)
{
	size_t n = s->n_peer < PEER_STATUS_MAX ? s->n_peer : PEER_STATUS_MAX;

	free(w->peers);
	w->peers = n ? xcalloc(n, sizeof(*w->peers)) : NULL;
	for (size_t i = 0; i < n; i++)
		peer_copy(&w->peers[i], s->peer[i]);
	w->n_peers = n;
	w->peers_left_off = s->peers_left_off;
}

/* A ControlStatus the worker sent (validate_worker_msg checked it). */
static void control_copy(struct worker *w, const Tscni__ControlStatus *c)
{
	w->control.state = (int)c->state;
	strscpy(w->control.reason, c->reason, sizeof(w->control.reason));
	w->control.since_unix = c->since_unix;
	w->control.retry_unix = c->retry_unix;
}

/* A control Event from a worker that sends no ControlStatus (older than
 * it): the kind says the state, the detail the reason (made printable). */
static void control_from_kind(struct worker *w, const Tscni__Event *e)
{
	int state = w->control.state;

	if (e->kind == TSCNI__EVENT_KIND__EVENT_CONTROL_UP)
		state = TSCNI__CONTROL_STATE__CONTROL_CONNECTED;
	else if (e->kind == TSCNI__EVENT_KIND__EVENT_CONTROL_DOWN)
		state = TSCNI__CONTROL_STATE__CONTROL_RETRYING;
	else if (e->kind == TSCNI__EVENT_KIND__EVENT_AUTH_FAILED)
		state = TSCNI__CONTROL_STATE__CONTROL_FAILED;
	else
		return;
	if (state != w->control.state)
		w->control.since_unix = (uint64_t)time(NULL);
	w->control.state = state;
	w->control.retry_unix = 0;
	if (state == TSCNI__CONTROL_STATE__CONTROL_CONNECTED) {
		w->control.reason[0] = '\0';
	} else {
		char text[2 * CONTROL_REASON_MAX_LEN];

		/* As a newer worker words it: what failed, then the detail. */
		snprintf(text, sizeof(text), "%s: %s",
			 state == TSCNI__CONTROL_STATE__CONTROL_FAILED ? "refused"
								       : "not connected",
			 e->detail);
		printable_copy(w->control.reason, sizeof(w->control.reason), text);
	}
}

static int on_stats(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	struct worker_report r = {.pid = workers_pid(w)};
	const Tscni__Stats *s = m->stats;

	(void)why;
	w->stats_asked_ms = 0;
	w->stats = (struct worker_stats){
		.tun_rx_packets = s->tun_rx_packets,
		.tun_tx_packets = s->tun_tx_packets,
		.udp_rx_packets = s->udp_rx_packets,
		.udp_tx_packets = s->udp_tx_packets,
		.drops = s->drops,
		.tun_rx_bytes = s->tun_rx_bytes,
		.tun_tx_bytes = s->tun_tx_bytes,
		.handshakes = s->handshakes,
		.filter_drops = s->filter_drops,
		.peers = s->peers,
		.configured = s->configured,
		.disco_unknown_sender = s->disco_unknown_sender,
		.disco_bad_box = s->disco_bad_box,
		.stun_bad_txid = s->stun_bad_txid,
		.stun_malformed = s->stun_malformed,
		.derp_bad_frames = s->derp_bad_frames,
		.dns_queries = s->dns_queries,
		.dns_answers = s->dns_answers,
		.dns_forwarded = s->dns_forwarded,
		.pss_bytes = s->pss_bytes,
	};
	/* An older worker's Stats say nothing of control: keep what its
	 * Events said. */
	if (s->control)
		control_copy(w, s->control);
	peers_copy(w, s);
	r.stats = w->stats;
	workers__emit(w, WORKER_EV_STATS, &r);
	return 0;
}

static int on_event(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	struct worker_report r = {.pid = workers_pid(w), .event_kind = (int)m->event->kind};
	char detail[WORKERS_ESCAPED];

	(void)why;
	log_escape(detail, sizeof(detail), m->event->detail, strlen(m->event->detail));
	r.detail = detail;
	if (m->event->control)
		control_copy(w, m->event->control);
	else
		control_from_kind(w, m->event);
	if (m->event->kind == TSCNI__EVENT_KIND__EVENT_TUN_GONE) {
		/* The pod's netns is gone: this worker is not respawned, and
		 * its node logs out (with the auth key, as on DEL) before it
		 * exits, within WORKERS_STOP_GRACE_MS. */
		w->tun_gone = true;
		log_info("pod %s: worker %d: TUN gone (%s): logging the node out", w->pod_uid,
			 (int)r.pid, detail);
		workers_stop(w, true);
	} else if (m->event->kind == TSCNI__EVENT_KIND__EVENT_AUTH_FAILED && !w->auth_key &&
		   !w->auth_retried && w->ws && w->ws->auth_key && w->state != WS_READY) {
		/* A node that registered before resumes without its auth key
		 * (docs/design.md §4), which real control servers accept; some
		 * (upstream's testcontrol) want the key on every registration.
		 * One more process, given the key, presents it; a second refusal
		 * is reported as such. */
		log_info("pod %s: worker %d: control refused the node without its auth key (%s): "
			 "respawning it with the key",
			 w->pod_uid, (int)r.pid, detail);
		w->auth_key = xstrdup(w->ws->auth_key);
		w->auth_retried = true;
		(void)workers_roll(w);
		return 0;
	} else if (m->event->kind == TSCNI__EVENT_KIND__EVENT_SECCOMP_TRAP) {
		log_warn("pod %s: worker %d: seccomp trapped %s", w->pod_uid, (int)r.pid, detail);
	} else {
		log_info("pod %s: worker %d: event %d %s", w->pod_uid, (int)r.pid, r.event_kind,
			 detail);
	}
	workers__emit(w, WORKER_EV_EVENT, &r);
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
	workers__send(w, &out);
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

/* A part of a RouteSet: gathered until the last, then handed over whole. A
 * worker gets one set at a time; a part of another id restarts the set. */
static int on_route_set(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	const Tscni__RouteSet *q = m->route_set;
	struct workers *ws = w->ws;
	struct ip_prefix *all;
	size_t n;

	(void)why;
	if (w->rs_busy) {
		workers_netop_reply(w, q->id, -EBUSY,
				    "the previous route set is still being applied");
		return 0;
	}
	if (w->rs && w->rs_id != q->id) {
		free(w->rs);
		w->rs = NULL;
		w->rs_n = 0;
	}
	if (w->rs_n + q->n_routes > ROUTE_SET_TOTAL_MAX) {
		free(w->rs);
		w->rs = NULL;
		w->rs_n = 0;
		workers_netop_reply(w, q->id, -E2BIG, "more routes than a route set may hold");
		return 0;
	}
	if (q->n_routes) {
		w->rs = xrealloc(w->rs, (w->rs_n + q->n_routes) * sizeof(*w->rs));
		for (size_t i = 0; i < q->n_routes; i++)
			if (ip_prefix_from_pb(q->routes[i], &w->rs[w->rs_n + i]) < 0) {
				*why = "route_set.routes: not a prefix";
				return -EBADMSG;
			}
	}
	w->rs_n += q->n_routes;
	w->rs_id = q->id;
	if (q->more)
		return 0;
	all = w->rs;
	n = w->rs_n;
	w->rs = NULL;
	w->rs_n = 0;
	if (!ws || !ws->routes) {
		free(all);
		workers_netop_reply(w, q->id, -EOPNOTSUPP, "no network operations configured");
		return 0;
	}
	w->rs_busy = true;
	ws->routes(w, q->id, all, n, ws->netop_arg);
	return 0;
}

/* The worker's DERP map changed: the netcheck measures its targets (or
 * nothing happens without one; the worker then keeps its own choice). */
static int on_derp_map_report(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	(void)why;
	if (w->ws && w->ws->derpmap)
		w->ws->derpmap(w, m->derp_map_report, w->ws->derpmap_arg);
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
	workers__emit(w, WORKER_EV_TEST_REPLY, &r);
	return 0;
}

/* A ReauthRequest: only a hint, handed to the pods (pods_reauth.c), which
 * check the expiry themselves before anything is minted. */
static int on_reauth(struct worker *w, const Tscni__WorkerMsg *m, const char **why)
{
	struct worker_report r = {
		.pid = workers_pid(w),
		.reauth_expired = m->reauth_request->expired,
		.key_expiry_unix = m->reauth_request->key_expiry_unix,
	};

	(void)why;
	workers__emit(w, WORKER_EV_REAUTH, &r);
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
	{TSCNI__WORKER_MSG__BODY_ROUTE_SET, WS_STARTING | WS_READY, on_route_set},
	{TSCNI__WORKER_MSG__BODY_TEST_REPLY, WS_STARTING | WS_READY, on_test_reply},
	{TSCNI__WORKER_MSG__BODY_DERP_MAP_REPORT, WS_STARTING | WS_READY, on_derp_map_report},
	{TSCNI__WORKER_MSG__BODY_REAUTH_REQUEST, WS_STARTING | WS_READY, on_reauth},
};

int workers__unpack(const uint8_t *buf, size_t len, const char *undecodable, Tscni__WorkerMsg **out,
		    const char **why)
{
	Tscni__WorkerMsg *m = tscni__worker_msg__unpack(NULL, len, buf);
	int ret;

	*out = NULL;
	if (!m) {
		*why = undecodable;
		return -EBADMSG;
	}
	ret = validate_worker_msg(m, why);
	if (ret < 0) {
		tscni__worker_msg__free_unpacked(m, NULL);
		return ret;
	}
	*out = m;
	return 0;
}

/* Unpacks, validates and dispatches one message from w. 0, or a negative
 * errno with *why set: the caller then ends the worker. */
int workers__dispatch(struct worker *w, const uint8_t *buf, size_t len, const char **why)
{
	Tscni__WorkerMsg *m;
	int ret;

	ret = workers__unpack(buf, len, "undecodable WorkerMsg", &m, why);
	if (ret < 0)
		return ret;
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

static void on_sock(uv_poll_t *h, int status, int events);

void workers__poll_update(struct wproc *p)
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
		workers__fail(w, status, "socket poll");
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
			workers__fail(w, (int)n, why);
			break;
		}
		if (!rate_ok(w)) {
			workers__fail(w, -EBUSY, "message rate exceeded");
			break;
		}
		ret = workers__dispatch(w, w->ws->rbuf, (size_t)n, &why);
		if (ret < 0) {
			workers__fail(w, ret, why);
			break;
		}
	}
}

int workers_request_stats(struct worker *w)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__StatsRequest s = TSCNI__STATS_REQUEST__INIT;
	unsigned long long now = now_ms();
	int ret;

	if (!w->proc || !(w->state & (WS_STARTING | WS_READY)))
		return -ENOTCONN;
	if (w->outq_len || (w->stats_asked_ms && now - w->stats_asked_ms < WORKERS_STATS_RETRY_MS))
		return 0;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_STATS_REQUEST;
	m.stats_request = &s;
	ret = workers__send(w, &m);
	if (ret == 0)
		w->stats_asked_ms = now;
	return ret;
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
	return workers__send(w, &m);
}

int workers_netcheck_report(struct worker *w, const struct Tscni__NetcheckReport *r)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;

	if (!w->proc || !(w->state & (WS_STARTING | WS_READY)))
		return -ENOTCONN;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_NETCHECK_REPORT;
	m.netcheck_report = (Tscni__NetcheckReport *)r;
	return workers__send(w, &m);
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
	return workers__send(w, &m);
}

int workers_routes_reply(struct worker *w, uint32_t id, int err, const char *why, uint32_t routes,
			 uint32_t refused, uint32_t not_accepted)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__NetopReply r = TSCNI__NETOP_REPLY__INIT;

	w->rs_busy = false;
	if (err > 0 || err < -4095)
		return -EINVAL;
	r.id = id;
	r.err = err;
	r.why = (char *)(why ? why : "");
	r.routes = routes;
	r.refused = refused;
	r.not_accepted = not_accepted;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_NETOP_REPLY;
	m.netop_reply = &r;
	return workers__send(w, &m);
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
	return workers__send(w, &m);
}
