/* The control thread: the worker's own libuv loop (created after fork, never
 * inherited from the zygote), fd 3 and a housekeeping timer. When fd 3 reads
 * EOF (the supervisor is gone) the worker keeps running and forwarding. */
#include "worker.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "dataplane.h"
#include "disco.h"
#include "log.h"
#include "mem.h"
#include "reauth.h"
#include "routes.h"
#include "sandbox.h"
#include "tls_store.h"

/* Stats.peer from the engine's latest per-peer report. Returns what
 * s->peer points into (peer_status_free after sending). */
static struct peer_status_buf *peers_fill(struct worker_ctx *ctx, Tscni__Stats *s)
{
	struct dataplane_peer_info *v = xcalloc(DATAPLANE_PEERS_REPORTED, sizeof(*v));
	struct peer_status_buf *b;
	struct timespec mono;
	size_t n, total;

	n = dataplane_peers(ctx->dp, v, DATAPLANE_PEERS_REPORTED, &total);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	b = peer_status_fill(s, v, n, total, ctx->ctl ? client_netmap(ctx->ctl) : NULL,
			     (int64_t)time(NULL),
			     (uint64_t)mono.tv_sec * 1000000000 + (uint64_t)mono.tv_nsec);
	free(v);
	return b;
}

/* The worker's PSS in bytes from the smaps_rollup fd opened before the
 * sandbox (a stack buffer: Stats allocates nothing for it), or 0. */
static uint64_t read_pss(int fd)
{
	char buf[2048];
	const char *p;
	ssize_t n;

	if (fd < 0)
		return 0;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	p = strstr(buf, "\nPss:");
	if (!p)
		return 0;
	return strtoull(p + 5, NULL, 10) * 1024; /* "Pss:   1234 kB" */
}

/* ctx->control as worker.proto's ControlStatus; its strings point into
 * ctx, valid until the next change. */
static void control_pb(struct worker_ctx *ctx, Tscni__ControlStatus *c)
{
	tscni__control_status__init(c);
	c->state = (Tscni__ControlState)ctx->control.state;
	c->reason = ctx->control.reason;
	c->since_unix = ctx->control.since_unix;
	c->retry_unix = ctx->control.retry_unix;
}

static void send_stats(struct worker_ctx *ctx)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Stats s = TSCNI__STATS__INIT;
	Tscni__ControlStatus control;
	struct peer_status_buf *peers = NULL;

	if (ctx->dp) {
		struct dataplane_stats st;

		dataplane_stats(ctx->dp, &st);
		s.tun_rx_packets = st.tun_in_pkts;
		s.tun_tx_packets = st.tun_out_pkts;
		s.udp_rx_packets = st.udp_in_dgrams;
		s.udp_tx_packets = st.udp_out_dgrams;
		for (size_t i = 0; i < DATAPLANE_DROP_COUNT; i++)
			s.drops += st.drops[i];
		for (size_t i = 0; i < FILTER_REASON_COUNT; i++)
			s.filter_drops += st.filter_drop_in[i] + st.filter_drop_out[i];
		s.drops += s.filter_drops;
		s.tun_rx_bytes = st.tun_in_bytes;
		s.tun_tx_bytes = st.tun_out_bytes;
		s.handshakes = st.wg.handshakes_completed;
		s.peers = (uint32_t)ctx->peers;
		s.configured = ctx->configured;
		s.disco_unknown_sender = st.drops[DATAPLANE_DROP_DISCO_UNKNOWN];
		s.disco_bad_box = st.drops[DATAPLANE_DROP_DISCO_BOX];
		s.stun_bad_txid = st.drops[DATAPLANE_DROP_STUN];
		s.stun_malformed = st.drops[DATAPLANE_DROP_STUN_MALFORMED];
		s.derp_bad_frames = derp_link_bad_frames(ctx->derp);
		s.dns_queries = st.dns_queries;
		s.dns_answers = st.dns_answers;
		s.dns_forwarded = st.dns_forwarded;
		peers = peers_fill(ctx, &s);
	} else {
		s.tun_rx_packets = atomic_load(&ctx->tun_rx_packets);
		s.tun_rx_bytes = atomic_load(&ctx->tun_rx_bytes);
		s.tun_tx_packets = atomic_load(&ctx->tun_tx_packets);
		s.drops = atomic_load(&ctx->drops);
	}
	s.pss_bytes = read_pss(ctx->smaps_fd);
	control_pb(ctx, &control);
	s.control = &control;
	m.body_case = TSCNI__WORKER_MSG__BODY_STATS;
	m.stats = &s;
	ipc_send(WORKER_FD_CTL, &m);
	peer_status_free(peers);
}

/* Test-only actions (Start.test_requests): each tries something the sandbox
 * must refuse. Returns 0 when the action succeeded (a sandbox hole) or the
 * negative errno it was refused with; an action the filter kills never
 * returns. */
static int test_action(const char *action, const char *arg, char *detail, size_t dlen)
{
	long r = -1;
	int fd;

	if (!strcmp(action, "open_read")) {
		r = open(arg, O_RDONLY | O_CLOEXEC);
	} else if (!strcmp(action, "open_write")) {
		r = open(arg, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	} else if (!strcmp(action, "execve")) {
		char *const argv[] = {(char *)arg, NULL};

		r = execve(arg, argv, argv + 1);
	} else if (!strcmp(action, "socket_netlink")) {
		r = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "socket_unix")) {
		r = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "socket_packet")) {
		r = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "socket_udp")) {
		r = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "ioctl_siocaddrt") || !strcmp(action, "setsockopt_ipt")) {
		fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto out;
		if (action[0] == 'i') {
			struct rtentry rt;

			memset(&rt, 0, sizeof(rt));
			r = ioctl(fd, SIOCADDRT, &rt);
		} else {
			char blob[sizeof(struct ipt_replace)];

			memset(blob, 0, sizeof(blob));
			r = setsockopt(fd, IPPROTO_IP, IPT_SO_SET_REPLACE, blob, sizeof(blob));
		}
		int saved = errno;
		close(fd);
		errno = saved;
	} else if (!strcmp(action, "ptrace")) {
		r = ptrace(PTRACE_ATTACH, (pid_t)strtol(arg, NULL, 10), NULL, NULL);
	} else if (!strcmp(action, "proc_mem")) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%ld/mem", strtol(arg, NULL, 10));
		r = open(path, O_RDONLY | O_CLOEXEC);
	} else if (!strcmp(action, "connect_unix")) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto out;
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", arg);
		r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
		int saved = errno;
		close(fd);
		errno = saved;
	} else if (!strcmp(action, "fork")) {
		r = fork();
		if (r == 0)
			_exit(0);
	} else if (!strcmp(action, "bpf")) {
		r = syscall(SYS_bpf, 0, NULL, 0);
	} else if (!strcmp(action, "io_uring_setup")) {
		r = syscall(SYS_io_uring_setup, 1, NULL);
	} else if (!strcmp(action, "userfaultfd")) {
		r = syscall(SYS_userfaultfd, 0);
	} else if (!strcmp(action, "keyctl")) {
		r = syscall(SYS_keyctl, 0, 0, 0, 0, 0);
	} else if (!strcmp(action, "syscall")) {
		r = syscall(strtol(arg, NULL, 10), 0, 0, 0, 0, 0, 0);
	} else {
		snprintf(detail, dlen, "unknown action");
		return -EINVAL;
	}
out:
	if (r < 0) {
		int err = errno;

		snprintf(detail, dlen, "refused: %s", strerror(err));
		return -err;
	}
	snprintf(detail, dlen, "allowed (returned %ld)", r);
	/* Actions that made an fd: do not keep it. */
	if (!strncmp(action, "socket_", 7) || !strncmp(action, "open_", 5))
		close((int)r);
	return 0;
}

static void handle_test(struct worker_ctx *ctx, const Tscni__TestRequest *t)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__TestReply rep = TSCNI__TEST_REPLY__INIT;
	char detail[128];

	if (!ctx->test_requests) {
		log_warn("pod %s: TestRequest without Start.test_requests: ignored", ctx->pod_uid);
		return;
	}
	rep.id = t->id;
	if (!strcmp(t->action, "netlink_newaddr"))
		rep.err = endpoints_test_newaddr(ctx, detail, sizeof(detail));
	else
		rep.err = test_action(t->action, t->arg, detail, sizeof(detail));
	rep.detail = detail;
	m.body_case = TSCNI__WORKER_MSG__BODY_TEST_REPLY;
	m.test_reply = &rep;
	ipc_send(WORKER_FD_CTL, &m);
}

/* ------------------------------------------------------- the control plane */

static uint32_t next_id(struct worker_ctx *ctx)
{
	if (++ctx->next_id == 0)
		ctx->next_id = 1;
	return ctx->next_id;
}

/* Name resolution through the supervisor (ResolveRequest on fd 3). */
static void on_resolve(void *arg, const char *host, struct client_resolve *req)
{
	struct worker_ctx *ctx = arg;
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__ResolveRequest q = TSCNI__RESOLVE_REQUEST__INIT;
	struct worker_resolve *slot = NULL;
	int ret;

	if (!ctx->ctl_open) {
		client_resolve_done(req, -ENOTCONN, NULL, 0);
		return;
	}
	for (size_t i = 0; i < WORKER_RESOLVES_MAX && !slot; i++)
		if (!ctx->resolves[i].id)
			slot = &ctx->resolves[i];
	if (!slot || strlen(host) > HOST_MAX_LEN) {
		client_resolve_done(req, slot ? -EINVAL : -EAGAIN, NULL, 0);
		return;
	}
	q.id = next_id(ctx);
	q.host = (char *)host;
	m.body_case = TSCNI__WORKER_MSG__BODY_RESOLVE_REQUEST;
	m.resolve_request = &q;
	ret = ipc_send(WORKER_FD_CTL, &m);
	if (ret < 0) {
		client_resolve_done(req, ret, NULL, 0);
		return;
	}
	slot->id = q.id;
	slot->req = req;
}

static void resolve_reply(struct worker_ctx *ctx, const Tscni__ResolveReply *r)
{
	struct sockaddr_storage ss[PREFIX_MAX];
	size_t n = 0;

	for (size_t i = 0; i < WORKER_RESOLVES_MAX; i++) {
		struct worker_resolve *slot = &ctx->resolves[i];
		struct client_resolve *req = slot->req;

		if (slot->id != r->id)
			continue;
		slot->id = 0;
		slot->req = NULL;
		/* validate_supervisor_msg: at most PREFIX_MAX, 4 or 16 bytes. */
		for (size_t j = 0; j < r->n_addrs; j++, n++) {
			memset(&ss[n], 0, sizeof(ss[n]));
			if (r->addrs[j].len == 4) {
				struct sockaddr_in *sin = (struct sockaddr_in *)&ss[n];

				sin->sin_family = AF_INET;
				memcpy(&sin->sin_addr, r->addrs[j].data, 4);
			} else {
				struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss[n];

				sin6->sin6_family = AF_INET6;
				memcpy(&sin6->sin6_addr, r->addrs[j].data, 16);
			}
		}
		if (n == 0)
			log_warn("pod %s: the supervisor could not resolve a name: %s",
				 ctx->pod_uid, r->error[0] ? r->error : "no address");
		client_resolve_done(req, n ? 0 : -EHOSTUNREACH, ss, n);
		return;
	}
}

/* The supervisor went away: look-ups in flight fail (the control client
 * retries and uses its cache meanwhile). */
static void resolves_fail(struct worker_ctx *ctx)
{
	for (size_t i = 0; i < WORKER_RESOLVES_MAX; i++) {
		struct client_resolve *req = ctx->resolves[i].req;

		if (!ctx->resolves[i].id)
			continue;
		ctx->resolves[i].id = 0;
		ctx->resolves[i].req = NULL;
		client_resolve_done(req, -ENOTCONN, NULL, 0);
	}
}

/* Whether Ready must wait for the home DERP region: a pod is reachable
 * through DERP from the moment ADD returns, whatever the NATs between it
 * and its peers. The wait is bounded (WORKER_READY_DERP_WAIT_MS) so that a
 * relay that is down costs the pod its relay, not its network: direct
 * paths work without it, and the region connects later. */
static bool derp_wait(struct worker_ctx *ctx)
{
	uint64_t now = uv_now(&ctx->loop);

	if (!ctx->derp || derp_link_home_state(ctx->derp) != DERP_HOME_CONNECTING)
		return false;
	if (!ctx->ready_wait_since)
		ctx->ready_wait_since = now;
	if (now - ctx->ready_wait_since < WORKER_READY_DERP_WAIT_MS)
		return true;
	log_warn("pod %s: the home DERP region is not connected after %u ms; Ready without it",
		 ctx->pod_uid, WORKER_READY_DERP_WAIT_MS);
	return false;
}

/* Ready, once per process: the self node's addresses are on ts0, control
 * accepted the first lite update and the home DERP region is connected
 * (or derp_wait gave up on it). */
void worker_maybe_ready(struct worker_ctx *ctx)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Ready r = TSCNI__READY__INIT;
	Tscni__IpPrefix pb[PREFIX_MAX], *pbp[PREFIX_MAX];
	struct netmap *nm;

	if (ctx->ready_sent || !ctx->control_up || !ctx->naddrs || ctx->netops_pending ||
	    ctx->netop_failed || !ctx->ctl_open || !routes_ready(ctx) || derp_wait(ctx))
		return;
	nm = client_netmap(ctx->ctl);
	for (size_t i = 0; i < ctx->naddrs; i++) {
		tscni__ip_prefix__init(&pb[i]);
		ip_prefix_to_pb(&ctx->addrs[i], &pb[i]);
		pbp[i] = &pb[i];
	}
	r.addresses = pbp;
	r.n_addresses = ctx->naddrs;
	r.stable_node_id = nm && nm->self ? nm->self->stable_id : (char *)"";
	r.registered_ns = client_registered_ns(ctx->ctl);
	r.netmap_ns = ctx->first_netmap_ns;
	/* The supervisor accepts a name or nothing: control's text may be
	 * neither. */
	if (*r.stable_node_id && !valid_name(r.stable_node_id, HOST_MAX_LEN))
		r.stable_node_id = (char *)"";
	m.body_case = TSCNI__WORKER_MSG__BODY_READY;
	m.ready = &r;
	if (ipc_send(WORKER_FD_CTL, &m) == 0)
		ctx->ready_sent = true;
}

static int send_netop(struct worker_ctx *ctx, Tscni__NetopKind kind, const struct ip_prefix *p)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__NetopRequest q = TSCNI__NETOP_REQUEST__INIT;
	Tscni__IpPrefix pb = TSCNI__IP_PREFIX__INIT;

	ip_prefix_to_pb(p, &pb);
	q.id = next_id(ctx);
	q.kind = kind;
	q.prefix = &pb;
	m.body_case = TSCNI__WORKER_MSG__BODY_NETOP_REQUEST;
	m.netop_request = &q;
	return ipc_send(WORKER_FD_CTL, &m);
}

static bool prefix_in(const struct ip_prefix *p, const struct ip_prefix *set, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (set[i].family == p->family && set[i].len == p->len &&
		    !memcmp(set[i].addr, p->addr, sizeof(p->addr)))
			return true;
	return false;
}

/* The self node's addresses (/32 and /128) go on ts0 through the
 * supervisor's netops; addresses no longer ours come off. Routes follow the
 * netmap (routes.c), except with a protocol 1 supervisor, which gets the
 * two wide routes here. */
static void on_self_addresses(void *arg, const struct ip_prefix *addrs, size_t n)
{
	static const char *const routes[WORKER_ROUTES] = {"100.64.0.0/10", "fd7a:115c:a1e0::/48"};
	struct worker_ctx *ctx = arg;
	unsigned int sent = 0;
	int ret = 0;

	if (n > PREFIX_MAX)
		n = PREFIX_MAX;
	if (n == ctx->naddrs && !ctx->netop_failed) {
		bool same = true;

		for (size_t i = 0; i < n && same; i++)
			same = prefix_in(&addrs[i], ctx->addrs, ctx->naddrs);
		if (same)
			return;
	}
	if (!ctx->ctl_open) {
		log_warn("pod %s: new addresses while the supervisor is away: set on adoption",
			 ctx->pod_uid);
		memcpy(ctx->addrs_owed, addrs, n * sizeof(*addrs));
		ctx->n_addrs_owed = n;
		ctx->addrs_owed_set = true;
		return;
	}
	ctx->netop_first = ctx->next_id + 1;
	ctx->netop_failed = false;
	for (size_t i = 0; i < ctx->naddrs && ret == 0; i++) {
		if (prefix_in(&ctx->addrs[i], addrs, n))
			continue;
		ret = send_netop(ctx, TSCNI__NETOP_KIND__NETOP_ADDR_DEL, &ctx->addrs[i]);
		sent += ret == 0;
	}
	for (size_t i = 0; i < n && ret == 0; i++) {
		ret = send_netop(ctx, TSCNI__NETOP_KIND__NETOP_ADDR_ADD, &addrs[i]);
		sent += ret == 0;
	}
	for (size_t i = 0; ctx->sup_version < 2 && i < WORKER_ROUTES && ret == 0; i++) {
		struct ip_prefix r;

		ip_prefix_parse(routes[i], false, &r);
		ret = send_netop(ctx, TSCNI__NETOP_KIND__NETOP_ROUTE_ADD, &r);
		sent += ret == 0;
	}
	if (ret < 0) {
		log_err_r(ret, "pod %s: ask the supervisor to set ts0's addresses", ctx->pod_uid);
		ctx->netop_failed = true;
	}
	memcpy(ctx->addrs, addrs, n * sizeof(*addrs));
	ctx->naddrs = n;
	ctx->netops_pending = sent;
}

static void netop_reply(struct worker_ctx *ctx, const Tscni__NetopReply *r)
{
	if (routes_reply(ctx, r))
		return;
	if (r->id < ctx->netop_first || !ctx->netops_pending)
		return; /* an older set of addresses */
	ctx->netops_pending--;
	if (r->err < 0) {
		ctx->netop_failed = true;
		log_err_r(r->err, "pod %s: the supervisor refused a change of ts0 (netop %u): %s",
			  ctx->pod_uid, r->id, r->why[0] ? r->why : "");
		return;
	}
	worker_maybe_ready(ctx);
}

/* Records the control client's new state for Stats. A run of failures
 * keeps the time of its first one (reason is the latest); the reason is
 * cut to CONTROL_REASON_MAX_LEN (ending in "...") and made printable, as
 * the supervisor checks. */
static void control_set(struct worker_ctx *ctx, int state, const char *reason)
{
	const char *kind = reason && ctx->ctl ? client_failure_kind(ctx->ctl) : NULL;
	char text[2 * CONTROL_REASON_MAX_LEN];

	if (state != ctx->control.state)
		ctx->control.since_unix = (uint64_t)time(NULL);
	ctx->control.state = state;
	/* "unreachable: GET /key: connect to ... failed: ...": what failed
	 * first, then the client's own words. */
	snprintf(text, sizeof(text), "%s%s%s", kind ? kind : "", kind ? ": " : "",
		 reason ? reason : "");
	printable_copy(ctx->control.reason, sizeof(ctx->control.reason), text);
	ctx->control.retry_unix = 0;
	if (state == TSCNI__CONTROL_STATE__CONTROL_RETRYING) {
		uint64_t ms = client_retry_in_ms(ctx->ctl);

		if (ms)
			ctx->control.retry_unix = (uint64_t)time(NULL) + (ms + 999) / 1000;
	}
}

/* A control Event with the state it leaves (worker.proto's Event.control). */
static void control_event(struct worker_ctx *ctx, Tscni__EventKind kind, const char *detail)
{
	Tscni__ControlStatus c;

	if (!ctx->ctl_open)
		return;
	control_pb(ctx, &c);
	ipc_send_event_control(WORKER_FD_CTL, kind, detail ? detail : "", &c);
}

static void on_state(void *arg, enum client_status st, int err, const char *msg)
{
	struct worker_ctx *ctx = arg;

	switch (st) {
	case CLIENT_UP:
		ctx->control_up = true;
		control_set(ctx, TSCNI__CONTROL_STATE__CONTROL_CONNECTED, NULL);
		control_event(ctx, TSCNI__EVENT_KIND__EVENT_CONTROL_UP, client_transport(ctx->ctl));
		worker_maybe_ready(ctx);
		break;
	case CLIENT_DOWN:
		/* No msg: the first attempt starts. */
		control_set(ctx,
			    msg ? TSCNI__CONTROL_STATE__CONTROL_RETRYING
				: TSCNI__CONTROL_STATE__CONTROL_CONNECTING,
			    msg);
		control_event(ctx, TSCNI__EVENT_KIND__EVENT_CONTROL_DOWN, msg);
		break;
	case CLIENT_ERROR:
		control_set(ctx, TSCNI__CONTROL_STATE__CONTROL_FAILED, msg);
		control_event(ctx, TSCNI__EVENT_KIND__EVENT_AUTH_FAILED, msg);
		/* The node key expired: the supervisor may confirm it and
		 * give this pod a new key (reauth.c). */
		if (err == -EKEYEXPIRED && !ctx->logging_out)
			reauth_expired(ctx);
		if (ctx->logging_out)
			uv_stop(&ctx->loop);
		break;
	case CLIENT_LOGGED_OUT:
		control_set(ctx, TSCNI__CONTROL_STATE__CONTROL_LOGGED_OUT, NULL);
		log_info("pod %s: logged out", ctx->pod_uid);
		uv_stop(&ctx->loop);
		break;
	}
}

/* Each netmap snapshot becomes the engine's configuration: its peers and
 * its packet filter. A snapshot that does not build leaves the previous
 * configuration (deny-all before the first) in place. */
static void on_netmap(void *arg, struct netmap *nm)
{
	struct worker_ctx *ctx = arg;
	struct dataplane_config *cfg;
	const char *why = "";
	size_t n;
	int ret;

	reauth_netmap(ctx, nm);
	if (!ctx->dp)
		return;
	derp_link_netmap(ctx->derp, nm);
	ret = dataplane_config_from_netmap(nm, (int64_t)time(NULL), dataplane_filter_state(ctx->dp),
					   &cfg, &why);
	if (ret < 0) {
		log_err_r(ret, "pod %s: netmap not applied to the data plane: %s", ctx->pod_uid,
			  why);
		return;
	}
	n = dataplane_config_peer_count(cfg);
	dataplane_set_config(ctx->dp, cfg);
	routes_update(ctx, nm);
	/* One line per change of the peer count (the e2e tests wait for it),
	 * not one per snapshot. */
	if (n != ctx->peers || !ctx->configured)
		log_info("pod %s: data plane: %zu peers", ctx->pod_uid, n);
	ctx->peers = n;
	ctx->configured = true;
	if (!ctx->first_netmap_ns)
		ctx->first_netmap_ns = uv_hrtime();
	/* Parsing the map freed as much as it took: the free pages go back
	 * (a worker's PSS is per pod), once the burst of maps is over. Not
	 * after each map: a control server may send several per second while
	 * nodes join (upstream's sends each node ~4 per join), and each trim
	 * madvises every free page, which the next map faults in again and
	 * which costs a TLB shootdown of the data thread's CPU each time. */
	if (!ctx->trim_due)
		ctx->trim_due = uv_now(&ctx->loop) + WORKER_TRIM_DELAY_MS;
}

/* The control client on our loop: created before the filter loads (curl's
 * multi handle makes its wakeup socketpair here), started at
 * control_thread_run. */
static int new_client(struct worker_ctx *ctx)
{
	struct worker_start *s = &ctx->start;
	struct client_config cfg = {
		.loop = &ctx->loop,
		.control_url = s->control_url,
		.ca_pem = ctx->ca_pem,
		.ca_pem_len = ctx->ca_pem_len,
		.auth_key = s->auth_key,
		.hostname = s->hostname[0] ? s->hostname : ctx->pod_uid,
		/* The pod's identity's tags, which the supervisor checked
		 * against --allowed-tags: asked for at every registration. */
		.tags = (const char *const *)s->tags,
		.n_tags = s->n_tags,
		/* Without a key the node registered before (the supervisor
		 * sends the key only until the first Ready). */
		.node_registered = !s->auth_key,
		.resolve = on_resolve,
		.resolve_arg = ctx,
		.on_netmap = on_netmap,
		.on_self_addresses = on_self_addresses,
		.on_state = on_state,
		.cb_arg = ctx,
		.test_flags = s->test_flags,
	};
	const char *why = "";
	int ret;

	memcpy(cfg.machine_priv, s->machine_private, KEY_LEN);
	memcpy(cfg.node_priv, s->node_private, KEY_LEN);
	if (s->has_old_node)
		memcpy(cfg.old_node_pub, s->old_node_public, KEY_LEN);
	/* The engine's disco key (data_thread_prepare made it). */
	memcpy(cfg.disco_pub, ctx->disco_public, KEY_LEN);
	client_config_proxy_from_env(&cfg);
	ret = client_new(&cfg, &ctx->ctl, &why);
	explicit_bzero(cfg.machine_priv, KEY_LEN);
	explicit_bzero(cfg.node_priv, KEY_LEN);
	if (ret < 0) {
		log_err_r(ret, "pod %s: control client: %s", ctx->pod_uid, why);
		return ret;
	}
	/* The host's addresses, sent with the first lite update. */
	return endpoints_init(ctx);
}

static void ctl_closed(struct worker_ctx *ctx)
{
	/* The supervisor is gone (killed, upgraded, its container removed):
	 * keep forwarding. Re-adoption comes through the rendezvous socket. */
	ctx->ctl_open = false;
	uv_poll_stop(&ctx->ctl_poll[ctx->ctl_idx]);
	if (ctx->ctl)
		resolves_fail(ctx);
	routes_supervisor_gone(ctx);
	if (ctx->netops_pending) {
		/* Their replies died with the supervisor: ask the next one. */
		memcpy(ctx->addrs_owed, ctx->addrs, ctx->naddrs * sizeof(*ctx->addrs));
		ctx->n_addrs_owed = ctx->naddrs;
		ctx->addrs_owed_set = true;
		ctx->naddrs = 0;
		ctx->netops_pending = 0;
	}
}

/* A supervisor's Hello on an adoption connection: check its versions, then
 * hand back the custody of every fd we were spawned with after fd 3. */
static void adopted(struct worker_ctx *ctx, const Tscni__Hello *h)
{
	int fds[WORKER_FD_MAX];
	size_t n = ctx->nfds - 1;

	ctx->adopting = false;
	if (h->max_version < WORKER_PROTO_MIN || h->min_version > WORKER_PROTO_MAX) {
		/* It cannot speak to us: drop the link, keep forwarding, wait
		 * for a supervisor that can. */
		ctl_closed(ctx);
		return;
	}
	for (size_t i = 0; i < n; i++)
		fds[i] = WORKER_FD_TUN + (int)i;
	ipc_send_custody(WORKER_FD_CTL, fds, n);
	ctx->sup_version = h->max_version < WORKER_PROTO_MAX ? h->max_version : WORKER_PROTO_MAX;
	log_info("pod %s: adopted by supervisor %d%s", ctx->pod_uid, (int)h->pid,
		 ctx->ready_sent ? "" : " (not Ready yet)");
	if (ctx->addrs_owed_set) {
		ctx->addrs_owed_set = false;
		on_self_addresses(ctx, ctx->addrs_owed, ctx->n_addrs_owed);
	}
	routes_adopted(ctx);
	worker_maybe_ready(ctx);
	/* The new supervisor's netcheck does not know our map yet. */
	derp_link_report_map(ctx->derp);
}

static void on_ctl(uv_poll_t *h, int status, int events)
{
	struct worker_ctx *ctx = h->data;

	(void)events;
	if (status < 0) {
		ctl_closed(ctx);
		return;
	}
	for (int i = 0; i < 16; i++) {
		Tscni__SupervisorMsg *m;
		const char *why = "";
		int ret = ipc_recv(WORKER_FD_CTL, &m, &why);

		if (ret == -EAGAIN)
			return;
		if (ret == 0 || ret == -ECONNRESET) {
			ctl_closed(ctx);
			return;
		}
		if (ret < 0) {
			/* Our own supervisor sent garbage: say so and go on. */
			log_err_r(ret, "pod %s: bad message from supervisor: %s", ctx->pod_uid,
				  why);
			continue;
		}
		switch (m->body_case) {
		case TSCNI__SUPERVISOR_MSG__BODY_STATS_REQUEST:
			send_stats(ctx);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_STOP:
			if (ctx->ctl && m->stop->logout) {
				/* on_state(LOGGED_OUT or ERROR) ends the loop;
				 * the supervisor's grace period bounds it. One
				 * under way (the TUN went) goes on. */
				if (!ctx->logging_out) {
					log_info("pod %s: logging out, then stopping",
						 ctx->pod_uid);
					ctx->logging_out = true;
					client_logout(ctx->ctl, m->stop->auth_key);
				}
				/* Copied: leave no auth key in freed memory. */
				explicit_bzero(m->stop->auth_key, strlen(m->stop->auth_key));
				break;
			}
			log_info("pod %s: stopping", ctx->pod_uid);
			explicit_bzero(m->stop->auth_key, strlen(m->stop->auth_key));
			tscni__supervisor_msg__free_unpacked(m, NULL);
			uv_stop(&ctx->loop);
			return;
		case TSCNI__SUPERVISOR_MSG__BODY_TEST_REQUEST:
			handle_test(ctx, m->test_request);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_HELLO:
			if (ctx->adopting)
				adopted(ctx, m->hello);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_NETOP_REPLY:
			log_debug("pod %s: netop %u: %d", ctx->pod_uid, m->netop_reply->id,
				  m->netop_reply->err);
			netop_reply(ctx, m->netop_reply);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_RESOLVE_REPLY:
			resolve_reply(ctx, m->resolve_reply);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_NETCHECK_REPORT:
			derp_link_netcheck(ctx->derp, m->netcheck_report);
			break;
		default:
			log_debug("pod %s: message %d ignored", ctx->pod_uid, (int)m->body_case);
			break;
		}
		tscni__supervisor_msg__free_unpacked(m, NULL);
	}
}

static void on_ctl_poll_closed(uv_handle_t *h)
{
	struct worker_ctx *ctx = h->data;

	ctx->ctl_closing[h == (uv_handle_t *)&ctx->ctl_poll[1]] = false;
}

/* A supervisor connected to our rendezvous socket (the previous one died or
 * was replaced). Only root can reach the socket: its directory is 0700. The
 * new connection replaces fd 3 (dup3), so everything that writes to fd 3,
 * the SIGSYS reporter included, follows. */
static void on_rdv(uv_poll_t *h, int status, int events)
{
	struct worker_ctx *ctx = h->data;
	int next = 1 - ctx->ctl_idx, fd;

	(void)events;
	if (status < 0)
		return;
	/* Only the newest of the pending connections counts: the others are
	 * attempts their supervisor gave up on. */
	fd = -1;
	for (;;) {
		int c = accept4(ctx->rdv_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (c < 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = c;
	}
	if (fd < 0)
		return;
	if (ctx->ctl_closing[next]) {
		close(fd); /* two supervisors within one loop turn: the first wins */
		return;
	}
	ctx->ctl_closing[ctx->ctl_idx] = true;
	uv_close((uv_handle_t *)&ctx->ctl_poll[ctx->ctl_idx], on_ctl_poll_closed);
	if (dup3(fd, WORKER_FD_CTL, O_CLOEXEC) < 0) {
		close(fd);
		ctx->ctl_open = false;
		return;
	}
	close(fd);
	ctx->ctl_idx = next;
	if (uv_poll_init(&ctx->loop, &ctx->ctl_poll[next], WORKER_FD_CTL) < 0) {
		ctx->ctl_open = false;
		return;
	}
	ctx->ctl_poll[next].data = ctx;
	uv_poll_start(&ctx->ctl_poll[next], UV_READABLE | UV_DISCONNECT, on_ctl);
	ctx->ctl_open = true;
	ctx->adopting = true;
	ipc_send_hello(WORKER_FD_CTL, ctx->pod_uid, ctx->ready_sent ? 1 : 2);
}

/* The pod is gone (its netns, or ts0 deleted by a DEL): nothing is left to
 * forward, and the node must not stay listed at control. A supervisor that
 * hears of it sends Stop{logout} with the auth key (upstream's control
 * wants it on every register request); without one, or if its Stop does
 * not come, we log out with what we hold. The exit is bounded either way. */
static void tun_gone_tick(struct worker_ctx *ctx)
{
	uint64_t now = uv_now(&ctx->loop);

	if (!ctx->tun_gone_sent) {
		char detail[64];

		ctx->tun_gone_sent = true;
		ctx->tun_gone_at = now;
		snprintf(detail, sizeof(detail), "TUN read failed: %s",
			 strerror(atomic_load(&ctx->tun_errno)));
		if (ctx->ctl_open)
			ipc_send_event(WORKER_FD_CTL, TSCNI__EVENT_KIND__EVENT_TUN_GONE, detail);
	}
	if (!ctx->ctl || now - ctx->tun_gone_at >= WORKER_TUN_GONE_LOGOUT_MS) {
		if (ctx->ctl)
			log_warn("pod %s: TUN gone and no logout in %u ms: stopping", ctx->pod_uid,
				 (unsigned)WORKER_TUN_GONE_LOGOUT_MS);
		uv_stop(&ctx->loop);
		return;
	}
	if (!ctx->logging_out &&
	    (!ctx->ctl_open || now - ctx->tun_gone_at >= WORKER_TUN_GONE_STOP_WAIT_MS)) {
		log_info("pod %s: TUN gone: logging out, then stopping", ctx->pod_uid);
		ctx->logging_out = true;
		client_logout(ctx->ctl, NULL);
	}
}

static void on_timer(uv_timer_t *t);

/* The housekeeping tick: every WORKER_TIMER_MS until Ready (derp_wait's
 * bound), while a route set goes out or waits, in an adoption or logout, once
 * the TUN is gone; else every WORKER_IDLE_TIMER_MS (a trim, a reauth request
 * or the TUN's loss then wait up to a second). */
static void tick_set(struct worker_ctx *ctx, uint64_t ms)
{
	if (uv_timer_get_repeat(&ctx->timer) != ms)
		uv_timer_start(&ctx->timer, on_timer, ms, ms);
}

void worker_tick_busy(struct worker_ctx *ctx)
{
	tick_set(ctx, WORKER_TIMER_MS);
}

static void on_timer(uv_timer_t *t)
{
	struct worker_ctx *ctx = t->data;
	bool busy;

	if (ctx->dp)
		dataplane_reclaim(ctx->dp);
	if (ctx->ready_wait_since && !ctx->ready_sent)
		worker_maybe_ready(ctx); /* derp_wait's bound */
	if (atomic_load(&ctx->tun_gone))
		tun_gone_tick(ctx);
	if (ctx->ctl_open && !ctx->adopting)
		routes_tick(ctx);
	if (ctx->ctl)
		reauth_tick(ctx);
	if (ctx->trim_due && uv_now(&ctx->loop) >= ctx->trim_due) {
		ctx->trim_due = 0;
		malloc_trim(0);
	}
	busy = !ctx->ready_sent || ctx->adopting || ctx->logging_out ||
	       atomic_load(&ctx->tun_gone) || ctx->routes_sending || ctx->routes_dirty;
	tick_set(ctx, busy ? WORKER_TIMER_MS : WORKER_IDLE_TIMER_MS);
}

int control_thread_init(struct worker_ctx *ctx)
{
	int ret;

	ret = uv_loop_init(&ctx->loop);
	if (ret < 0)
		return ret;
	ret = uv_poll_init(&ctx->loop, &ctx->ctl_poll[0], WORKER_FD_CTL);
	if (ret < 0)
		return ret;
	ctx->ctl_poll[0].data = ctx;
	if (ctx->rdv_fd >= 0) {
		/* We listen, not the supervisor that bound it: the kernel gives
		 * connecting supervisors the listener's credentials, ours. A
		 * respawned worker listens again and so takes them over. */
		if (listen(ctx->rdv_fd, 8) < 0)
			return -errno;
		ret = uv_poll_init(&ctx->loop, &ctx->rdv_poll, ctx->rdv_fd);
		if (ret < 0)
			return ret;
		ctx->rdv_poll.data = ctx;
		ret = uv_poll_start(&ctx->rdv_poll, UV_READABLE, on_rdv);
		if (ret < 0)
			return ret;
	}
	ret = uv_timer_init(&ctx->loop, &ctx->timer);
	if (ret < 0)
		return ret;
	ctx->timer.data = ctx;
	ctx->control.state = TSCNI__CONTROL_STATE__CONTROL_NONE;
	ctx->control.since_unix = (uint64_t)time(NULL);
	if (ctx->start.control_url) {
		ctx->control.state = TSCNI__CONTROL_STATE__CONTROL_CONNECTING;
		/* The zygote's copy and parsed store when the bundle is the
		 * same (tls_store.h), else ours; either outlives
		 * worker_start_clear. */
		ctx->ca_pem = tls_store_pem(ctx->start.ca_pem, ctx->start.ca_pem_len);
		if (!ctx->ca_pem) {
			ctx->ca_pem = ctx->start.ca_pem;
			ctx->start.ca_pem = NULL;
		}
		ctx->ca_pem_len = ctx->start.ca_pem_len;
		ctx->start.ca_pem_len = 0;
		ret = new_client(ctx);
		if (ret == 0 && ctx->chan)
			ret = derp_link_new(ctx, ctx->chan, &ctx->derp);
		worker_start_clear(&ctx->start);
		if (ret < 0)
			return ret;
	}
	/* Start the handles now: epoll_ctl ADD is allowed later, but this way
	 * every fd the loop needs exists before the filter loads. */
	ret = uv_poll_start(&ctx->ctl_poll[0], UV_READABLE | UV_DISCONNECT, on_ctl);
	if (ret < 0)
		return ret;
	return uv_timer_start(&ctx->timer, on_timer, WORKER_TIMER_MS, WORKER_TIMER_MS);
}

int control_thread_run(struct worker_ctx *ctx)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Ready r = TSCNI__READY__INIT;

	if (ctx->ctl) {
		/* Ready follows once the node is up and ts0 has its addresses
		 * (worker_maybe_ready). */
		int ret = client_start(ctx->ctl);

		if (ret < 0) {
			log_err_r(ret, "pod %s: start the control client", ctx->pod_uid);
			return 1;
		}
	} else {
		/* No control plane: the worker is ready as soon as its data
		 * path runs. */
		m.body_case = TSCNI__WORKER_MSG__BODY_READY;
		m.ready = &r;
		if (ipc_send(WORKER_FD_CTL, &m) == 0)
			ctx->ready_sent = true;
	}
	uv_run(&ctx->loop, UV_RUN_DEFAULT);
	return 0;
}
