/* `tailscale-cni-supervisor status [--json] [--peers] [--socket PATH]`: one
 * STATUS round trip on the CNI socket, printed for a person (one aligned row
 * per pod, as `tailscale status`; its peers as `wg show` with --peers) or
 * for jq. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <jansson.h>

#include "cli.h"
#include "frame.h"
#include "ip.h"
#include "log.h"
#include "mem.h"
#include "supervisor.h"
#include "validate.h"

enum status_limits { STATUS_TIMEOUT_MS = 5000, FIELD_LEN = 96 };

static const char *health_name(Tscni__Health h)
{
	switch (h) {
	case TSCNI__HEALTH__HEALTH_READY:
		return "ready";
	case TSCNI__HEALTH__HEALTH_NOT_READY:
		return "not-ready";
	case TSCNI__HEALTH__HEALTH_DEGRADED:
		return "degraded";
	default:
		return "unknown";
	}
}

/* The supervisor's strings come from pods' metadata: escape them before
 * they reach a terminal. */
static const char *esc(char buf[static FIELD_LEN], const char *s)
{
	return log_escape(buf, FIELD_LEN, s ? s : "", s ? strlen(s) : 0);
}

static int connect_socket(const char *path, int *fd_out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret;

	*fd_out = -1;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*fd_out = fd;
	return 0;
}

/* The pod's addresses, space-separated; a host prefix (/32, /128) as its
 * bare address, as `tailscale status` shows them. "-" when none. */
static void addrs_text(Tscni__IpPrefix *const *v, size_t n, char *out, size_t len)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		struct ip_prefix p;
		char b[IP_PREFIX_STRLEN], *slash;

		if (ip_prefix_from_pb(v[i], &p) < 0)
			continue;
		ip_prefix_format(&p, b, sizeof(b));
		slash = strchr(b, '/');
		if (slash && p.len == (p.family == AF_INET ? 32 : 128))
			*slash = '\0';
		int w = snprintf(out + used, len - used, "%s%s", used ? " " : "", b);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
	if (!out[0])
		snprintf(out, len, "-");
}

/* ---- peers: `tailscale status`'s columns for each of a pod's peers ---- */

/* "direct 198.51.100.7:41641" ("[2001:db8::7]:41641" for IPv6), "derp-900"
 * or "none". */
static const char *peer_path_text(const Tscni__PeerStatus *p, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "";

	switch (p->path) {
	case TSCNI__PEER_PATH__PEER_PATH_DIRECT:
		inet_ntop(p->direct_ip.len == 4 ? AF_INET : AF_INET6, p->direct_ip.data, ip,
			  sizeof(ip));
		snprintf(out, len, p->direct_ip.len == 4 ? "direct %s:%u" : "direct [%s]:%u", ip,
			 p->direct_port);
		break;
	case TSCNI__PEER_PATH__PEER_PATH_DERP:
		snprintf(out, len, "derp-%u", p->derp_region);
		break;
	default:
		snprintf(out, len, "none");
		break;
	}
	return out;
}

/* Its tailnet IPv4, or "" when the worker did not know it. */
static const char *peer_ip_text(const Tscni__PeerStatus *p, char out[static INET_ADDRSTRLEN])
{
	out[0] = '\0';
	if (p->tailnet_ipv4.len == 4)
		inet_ntop(AF_INET, p->tailnet_ipv4.data, out, INET_ADDRSTRLEN);
	return out;
}

/* One indented line per peer (validate.c checked every field's shape, so
 * names are plain). */
static void print_peers(const Tscni__PodStatus *p, uint64_t now)
{
	for (size_t i = 0; i < p->n_peer; i++) {
		const Tscni__PeerStatus *q = p->peer[i];
		char ip[INET_ADDRSTRLEN], path[80], hs[48];
		uint64_t hs_at = q->last_handshake_unix;

		if (!hs_at)
			snprintf(hs, sizeof(hs), "never");
		else
			snprintf(hs, sizeof(hs), "%" PRIu64 " (%" PRIu64 "s ago)", hs_at,
				 now > hs_at ? now - hs_at : 0);
		peer_ip_text(q, ip);
		printf("    peer %-15s %-20s %s  %-30s handshake %s  rx %" PRIu64 " tx %" PRIu64
		       "\n",
		       ip[0] ? ip : "-", q->host_name[0] ? q->host_name : "-", q->node_key,
		       peer_path_text(q, path, sizeof(path)), hs, q->rx_bytes, q->tx_bytes);
	}
	if (p->peers_left_off)
		printf("    ... %u more peers not listed\n", p->peers_left_off);
}

/* What the operator's view calls the supervisor's health: the CNI STATUS
 * verb's (st->health: can ADD be served?), except that a ready supervisor
 * with pods whose control is failing reads "degraded" with a reason naming
 * how many. The plugin does not look at control_failing: one pod's
 * unreachable control server must not make the runtime's network NotReady
 * (docs/cni-contract.md 4.5). */
static const char *shown_health(const Tscni__StatusReply *st, char *reason, size_t len)
{
	char r[FIELD_LEN];

	if (st->health == TSCNI__HEALTH__HEALTH_READY && st->control_failing) {
		snprintf(reason, len, "control failing for %u of %u pod%s", st->control_failing,
			 st->control_pods, st->control_pods == 1 ? "" : "s");
		return "degraded";
	}
	snprintf(reason, len, "%s", st->reason[0] ? esc(r, st->reason) : "");
	return health_name(st->health);
}

/* "1.9 MiB" ("-": not known). */
static const char *mem_text(uint64_t bytes, char *out, size_t len)
{
	if (!bytes)
		snprintf(out, len, "-");
	else if (bytes < 1024 * 1024)
		snprintf(out, len, "%" PRIu64 " KiB", bytes / 1024);
	else
		snprintf(out, len, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
	return out;
}

/* One row of the pod table, each cell formatted (and escaped) once so the
 * widths come from the content. */
enum { COL_POD, COL_HOST, COL_ADDRS, COL_CONTROL, COL_PEERS, COL_WORKER, COL_MEM, NCOLS };
enum { CELL_LEN = 2 * FIELD_LEN + 2 };

struct row {
	char cell[NCOLS][CELL_LEN];
};

static void row_fill(struct row *r, const Tscni__PodStatus *p)
{
	char a[FIELD_LEN], b[FIELD_LEN];

	snprintf(r->cell[COL_POD], CELL_LEN, "%s/%s", esc(a, p->pod ? p->pod->namespace_ : ""),
		 esc(b, p->pod ? p->pod->name : ""));
	snprintf(r->cell[COL_HOST], CELL_LEN, "%s", p->hostname[0] ? esc(a, p->hostname) : "-");
	addrs_text(p->addresses, p->n_addresses, r->cell[COL_ADDRS], CELL_LEN);
	snprintf(r->cell[COL_CONTROL], CELL_LEN, "%s", esc(a, p->control_state));
	snprintf(r->cell[COL_PEERS], CELL_LEN, "%u", p->peers);
	if (!p->worker_pid)
		snprintf(r->cell[COL_WORKER], CELL_LEN, "- (%s)", esc(a, p->worker_state));
	else if (!strcmp(p->worker_state, "ready"))
		snprintf(r->cell[COL_WORKER], CELL_LEN, "%d", (int)p->worker_pid);
	else
		snprintf(r->cell[COL_WORKER], CELL_LEN, "%d (%s)", (int)p->worker_pid,
			 esc(a, p->worker_state));
	mem_text(p->pss_bytes, r->cell[COL_MEM], CELL_LEN);
}

/* Under a pod whose control is not connected: why, since when, and when
 * the next attempt comes. */
static void print_control(const Tscni__PodStatus *p, uint64_t now)
{
	char reason[4 * CONTROL_REASON_MAX_LEN + 1], since[48] = "", next[48] = "";
	bool retrying = !strcmp(p->control_state, "retrying");

	if (!retrying && strcmp(p->control_state, "failed"))
		return;
	log_escape(reason, sizeof(reason), p->control_reason, strlen(p->control_reason));
	if (p->control_since_unix)
		snprintf(since, sizeof(since), " (failing for %" PRIu64 " s)",
			 now > p->control_since_unix ? now - p->control_since_unix : 0);
	if (retrying && p->control_retry_unix > now)
		snprintf(next, sizeof(next), "; retrying in %" PRIu64 " s",
			 p->control_retry_unix - now);
	else if (retrying)
		snprintf(next, sizeof(next), "; retrying now");
	else
		snprintf(next, sizeof(next), "; not retrying");
	printf("    control %s%s%s\n", reason[0] ? reason : "not connected", next, since);
}

/* Cells padded to their column's width, two spaces apart; the last one not
 * padded. */
static void print_row(const char *const cell[static NCOLS], const int width[static NCOLS])
{
	for (size_t c = 0; c + 1 < NCOLS; c++)
		printf("%-*s  ", width[c], cell[c]);
	printf("%s\n", cell[NCOLS - 1]);
}

static void print_text(const Tscni__StatusReply *st, bool peers)
{
	static const char *const head[NCOLS] = {"POD",	 "HOSTNAME", "ADDRESSES", "CONTROL",
						"PEERS", "WORKER",   "MEMORY"};
	char a[FIELD_LEN], reason[FIELD_LEN + 64];
	const char *health = shown_health(st, reason, sizeof(reason));
	uint64_t now = (uint64_t)time(NULL);
	int width[NCOLS];
	struct row *rows;

	printf("health: %s", health);
	if (reason[0])
		printf(" (%s)", reason);
	printf("  version: %s  uptime: %" PRIu64 "s  attachments: %u  zygote: %d (%u restarts)\n",
	       esc(a, st->version), st->uptime_s, st->pods, (int)st->zygote_pid,
	       st->zygote_restarts);
	if (!st->n_pod)
		return;
	rows = xcalloc(st->n_pod, sizeof(*rows));
	for (size_t c = 0; c < NCOLS; c++)
		width[c] = (int)strlen(head[c]);
	for (size_t i = 0; i < st->n_pod; i++) {
		row_fill(&rows[i], st->pod[i]);
		for (size_t c = 0; c < NCOLS; c++)
			if ((int)strlen(rows[i].cell[c]) > width[c])
				width[c] = (int)strlen(rows[i].cell[c]);
	}
	print_row(head, width);
	for (size_t i = 0; i < st->n_pod; i++) {
		const Tscni__PodStatus *p = st->pod[i];

		const char *cells[NCOLS];

		for (size_t c = 0; c < NCOLS; c++)
			cells[c] = rows[i].cell[c];
		print_row(cells, width);
		print_control(p, now);
		if (p->disco_unknown_sender || p->disco_bad_box || p->stun_bad_txid ||
		    p->stun_malformed || p->derp_bad_frames)
			printf("    bad peers: disco unknown sender %" PRIu64
			       ", disco bad box %" PRIu64 ", STUN wrong txid %" PRIu64
			       ", STUN malformed %" PRIu64 ", DERP bad frames %" PRIu64 "\n",
			       p->disco_unknown_sender, p->disco_bad_box, p->stun_bad_txid,
			       p->stun_malformed, p->derp_bad_frames);
		if (peers)
			print_peers(p, now);
	}
	free(rows);
}

/* jansson wants UTF-8; anything else is shown escaped. */
static json_t *jstr(const char *s)
{
	char buf[FIELD_LEN];
	json_t *j = json_string(s ? s : "");

	return j ? j : json_string(esc(buf, s));
}

static json_t *jaddrs(Tscni__IpPrefix *const *v, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < n; i++) {
		struct ip_prefix p;
		char b[IP_PREFIX_STRLEN];

		if (ip_prefix_from_pb(v[i], &p) == 0)
			json_array_append_new(arr, json_string(ip_prefix_format(&p, b, sizeof(b))));
	}
	return arr;
}

static json_t *jpeers(const Tscni__PodStatus *p)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < p->n_peer; i++) {
		const Tscni__PeerStatus *q = p->peer[i];
		char ip[INET_ADDRSTRLEN], path[80];
		json_t *o = json_object();

		json_object_set_new(o, "node_key", jstr(q->node_key));
		json_object_set_new(o, "tailnet_ip", jstr(peer_ip_text(q, ip)));
		json_object_set_new(o, "host_name", jstr(q->host_name));
		json_object_set_new(o, "path", jstr(peer_path_text(q, path, sizeof(path))));
		json_object_set_new(o, "last_handshake_unix",
				    json_integer((json_int_t)q->last_handshake_unix));
		json_object_set_new(o, "rx_bytes", json_integer((json_int_t)q->rx_bytes));
		json_object_set_new(o, "tx_bytes", json_integer((json_int_t)q->tx_bytes));
		json_array_append_new(arr, o);
	}
	return arr;
}

static int print_json(const Tscni__StatusReply *st)
{
	json_t *root = json_object(), *pods = json_array();
	int ret;
	char reason[FIELD_LEN + 64];
	const char *health = shown_health(st, reason, sizeof(reason));

	/* health and reason as the text shows them; supervisor_health and
	 * supervisor_reason as the CNI STATUS verb reads them. */
	json_object_set_new(root, "health", json_string(health));
	json_object_set_new(root, "reason", jstr(reason));
	json_object_set_new(root, "supervisor_health", json_string(health_name(st->health)));
	json_object_set_new(root, "supervisor_reason", jstr(st->reason));
	json_object_set_new(root, "control_failing", json_integer(st->control_failing));
	json_object_set_new(root, "control_pods", json_integer(st->control_pods));
	json_object_set_new(root, "version", jstr(st->version));
	json_object_set_new(root, "uptime_s", json_integer((json_int_t)st->uptime_s));
	json_object_set_new(root, "attachments", json_integer(st->pods));
	json_object_set_new(root, "zygote_pid", json_integer(st->zygote_pid));
	json_object_set_new(root, "zygote_restarts", json_integer(st->zygote_restarts));
	for (size_t i = 0; i < st->n_pod; i++) {
		const Tscni__PodStatus *p = st->pod[i];
		json_t *o = json_object();

		json_object_set_new(o, "network", jstr(p->key->network));
		json_object_set_new(o, "container_id", jstr(p->key->container_id));
		json_object_set_new(o, "ifname", jstr(p->key->ifname));
		json_object_set_new(o, "pod_namespace", jstr(p->pod ? p->pod->namespace_ : ""));
		json_object_set_new(o, "pod_name", jstr(p->pod ? p->pod->name : ""));
		json_object_set_new(o, "pod_uid", jstr(p->pod ? p->pod->uid : ""));
		json_object_set_new(o, "netns", jstr(p->netns_path));
		json_object_set_new(o, "interface", jstr(p->interface_name));
		json_object_set_new(o, "ifindex", json_integer(p->ifindex));
		json_object_set_new(o, "state", jstr(p->state));
		json_object_set_new(o, "addresses", jaddrs(p->addresses, p->n_addresses));
		json_object_set_new(o, "created_unix", json_integer((json_int_t)p->created_unix));
		json_object_set_new(o, "worker_pid", json_integer(p->worker_pid));
		json_object_set_new(o, "worker_state", jstr(p->worker_state));
		json_object_set_new(o, "worker_respawns", json_integer(p->worker_respawns));
		json_object_set_new(o, "tun_rx_packets",
				    json_integer((json_int_t)p->tun_rx_packets));
		json_object_set_new(o, "tun_tx_packets",
				    json_integer((json_int_t)p->tun_tx_packets));
		json_object_set_new(o, "udp_rx_packets",
				    json_integer((json_int_t)p->udp_rx_packets));
		json_object_set_new(o, "udp_tx_packets",
				    json_integer((json_int_t)p->udp_tx_packets));
		json_object_set_new(o, "drops", json_integer((json_int_t)p->drops));
		json_object_set_new(o, "peers", json_integer(p->peers));
		json_object_set_new(o, "handshakes", json_integer((json_int_t)p->handshakes));
		json_object_set_new(o, "filter_drops", json_integer((json_int_t)p->filter_drops));
		json_object_set_new(o, "configured", json_boolean(p->configured));
		json_object_set_new(o, "disco_unknown_sender",
				    json_integer((json_int_t)p->disco_unknown_sender));
		json_object_set_new(o, "disco_bad_box", json_integer((json_int_t)p->disco_bad_box));
		json_object_set_new(o, "stun_bad_txid", json_integer((json_int_t)p->stun_bad_txid));
		json_object_set_new(o, "stun_malformed",
				    json_integer((json_int_t)p->stun_malformed));
		json_object_set_new(o, "derp_bad_frames",
				    json_integer((json_int_t)p->derp_bad_frames));
		json_object_set_new(o, "dns_queries", json_integer((json_int_t)p->dns_queries));
		json_object_set_new(o, "dns_answers", json_integer((json_int_t)p->dns_answers));
		json_object_set_new(o, "dns_forwarded", json_integer((json_int_t)p->dns_forwarded));
		json_object_set_new(o, "hostname", jstr(p->hostname));
		json_object_set_new(o, "control_state", jstr(p->control_state));
		json_object_set_new(o, "control_reason", jstr(p->control_reason));
		json_object_set_new(o, "control_since_unix",
				    json_integer((json_int_t)p->control_since_unix));
		json_object_set_new(o, "control_retry_unix",
				    json_integer((json_int_t)p->control_retry_unix));
		json_object_set_new(o, "pss_bytes", json_integer((json_int_t)p->pss_bytes));
		json_object_set_new(o, "peer_status", jpeers(p));
		json_object_set_new(o, "peers_left_off", json_integer(p->peers_left_off));
		json_array_append_new(pods, o);
	}
	json_object_set_new(root, "pods", pods);
	ret = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	printf("\n");
	json_decref(root);
	return ret;
}

static void status_usage(FILE *f)
{
	fprintf(f, "usage: tailscale-cni-supervisor status [--json] [--peers] [--socket PATH]\n"
		   "  Prints the supervisor's health and, per pod: its tailnet hostname and\n"
		   "  addresses, its control connection (why, when it is not connected), its\n"
		   "  peer count, worker pid and memory (PSS).\n"
		   "  --peers  also one line per peer: address, name, path, last handshake, bytes\n"
		   "  --json   everything, peers included, as JSON (errors too)\n"
		   "  Exit status 0 when the supervisor answered, 1 otherwise.\n");
}

/* One request, one reply on the CNI socket. 0 with *out (free it with
 * tscni__cni_reply__free_unpacked), or 1 with what went wrong in err. */
static int round_trip(const char *path, const Tscni__CniRequest *req, unsigned int timeout_ms,
		      Tscni__CniReply **out, char *err, size_t errlen)
{
	Tscni__CniReply *rep = NULL;
	uint8_t *buf = NULL, *in = NULL;
	size_t len, in_len;
	const char *why = NULL;
	unsigned long long deadline = now_ms() + timeout_ms;
	int fd = -1, ret, rc = 1;

	*out = NULL;
	ret = connect_socket(path, &fd);
	if (ret < 0) {
		snprintf(err, errlen, "tailscale-cni-supervisor is not reachable at %s: %s", path,
			 strerror(-ret));
		goto out;
	}
	len = tscni__cni_request__get_packed_size(req);
	buf = xmalloc(len);
	tscni__cni_request__pack(req, buf);
	ret = frame_write_fd(fd, buf, len, deadline);
	if (ret == 0)
		ret = frame_read_fd(fd, &in, &in_len, deadline, &why);
	if (ret < 0) {
		snprintf(err, errlen, "tailscale-cni-supervisor at %s did not answer: %s%s%s", path,
			 strerror(-ret), why ? ": " : "", why ? why : "");
		goto out;
	}
	rep = tscni__cni_reply__unpack(NULL, in_len, in);
	if (!rep || validate_cni_reply(rep, &why) < 0) {
		snprintf(err, errlen, "tailscale-cni-supervisor at %s sent a malformed reply%s%s",
			 path, why ? ": " : "", why ? why : "");
		if (rep)
			tscni__cni_reply__free_unpacked(rep, NULL);
		goto out;
	}
	*out = rep;
	rc = 0;
out:
	free(in);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static void roll_usage(FILE *f)
{
	fprintf(f, "usage: tailscale-cni-supervisor roll-workers [--socket PATH]\n"
		   "  Replaces every worker, one at a time, with a fresh process of the worker\n"
		   "  binary installed now (same keys, same fds, ts0 never leaves its pod).\n"
		   "  Exit status 0 when every worker was replaced, 1 otherwise.\n");
}

int roll_workers_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	/* Each worker has 10 s to come back Ready; allow for many. */
	enum { ROLL_TIMEOUT_MS = 3600 * 1000 };
	const char *path = SUPERVISOR_SOCKET;
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__RollWorkersRequest rr = TSCNI__ROLL_WORKERS_REQUEST__INIT;
	Tscni__CniReply *rep = NULL;
	char err[512];
	int c, rc = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			path = optarg;
			break;
		case 'h':
			roll_usage(stdout);
			return 0;
		case 'V':
			printf("tailscale-cni-supervisor %s\n", TSCNI_VERSION);
			return 0;
		default:
			cli_bad_option("roll-workers", c, argv);
			return 1;
		}
	}
	if (optind != argc) {
		fprintf(stderr,
			"tailscale-cni-supervisor roll-workers: unexpected argument '%s' (see "
			"--help)\n",
			argv[optind]);
		return 1;
	}
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_ROLL_WORKERS;
	req.roll_workers = &rr;
	if (round_trip(path, &req, ROLL_TIMEOUT_MS, &rep, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (rep->body_case == TSCNI__CNI_REPLY__BODY_ERROR) {
		char m[FIELD_LEN], d[FIELD_LEN];

		fprintf(stderr, "tailscale-cni-supervisor refused roll-workers (code %u): %s: %s\n",
			rep->error->cni_code, esc(m, rep->error->msg), esc(d, rep->error->details));
	} else if (rep->body_case != TSCNI__CNI_REPLY__BODY_ROLL_WORKERS) {
		fprintf(stderr, "tailscale-cni-supervisor answered roll-workers with another "
				"reply\n");
	} else {
		char f[FIELD_LEN];

		printf("rolled: %u  failed: %zu\n", rep->roll_workers->rolled,
		       rep->roll_workers->n_failed);
		for (size_t i = 0; i < rep->roll_workers->n_failed; i++)
			printf("  failed: %s\n", esc(f, rep->roll_workers->failed[i]));
		rc = rep->roll_workers->n_failed ? 1 : 0;
	}
	tscni__cni_reply__free_unpacked(rep, NULL);
	return rc;
}

int status_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},	  {"peers", no_argument, NULL, 'p'},
		{"socket", required_argument, NULL, 's'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},	  {0},
	};
	const char *path = SUPERVISOR_SOCKET;
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__StatusRequest sreq = TSCNI__STATUS_REQUEST__INIT;
	Tscni__CniReply *rep = NULL;
	bool json = false, peers = false;
	char err[512];
	int c, rc = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'p':
			peers = true;
			break;
		case 's':
			path = optarg;
			break;
		case 'h':
			status_usage(stdout);
			return 0;
		case 'V':
			printf("tailscale-cni-supervisor %s\n", TSCNI_VERSION);
			return 0;
		default:
			cli_bad_option("status", c, argv);
			return 1;
		}
	}
	if (optind != argc) {
		fprintf(stderr,
			"tailscale-cni-supervisor status: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 1;
	}

	sreq.verbose = true;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_STATUS;
	req.status = &sreq;
	if (round_trip(path, &req, STATUS_TIMEOUT_MS, &rep, err, sizeof(err)))
		goto fail;
	if (rep->body_case == TSCNI__CNI_REPLY__BODY_ERROR) {
		char m[FIELD_LEN], d[FIELD_LEN];

		snprintf(err, sizeof(err),
			 "tailscale-cni-supervisor refused STATUS (code %u): %s: %s",
			 rep->error->cni_code, esc(m, rep->error->msg),
			 esc(d, rep->error->details));
		goto fail;
	}
	if (rep->body_case != TSCNI__CNI_REPLY__BODY_STATUS) {
		snprintf(err, sizeof(err),
			 "tailscale-cni-supervisor at %s answered STATUS with another reply", path);
		goto fail;
	}
	if (json) {
		if (print_json(rep->status) < 0) {
			snprintf(err, sizeof(err), "cannot write the JSON");
			goto fail;
		}
	} else {
		print_text(rep->status, peers);
	}
	rc = 0;
	goto out;
fail:
	/* With --json, what went wrong is JSON too: a script reads stdout. */
	if (json) {
		json_t *o = json_pack("{s:s}", "error", err);

		if (o) {
			json_dumpf(o, stdout, JSON_INDENT(2));
			printf("\n");
			json_decref(o);
		}
	} else {
		fprintf(stderr, "%s\n", err);
	}
out:
	if (rep)
		tscni__cni_reply__free_unpacked(rep, NULL);
	return rc;
}
