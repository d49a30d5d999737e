/* The pod table's metrics (pods.h, pods_metrics_render): pods and
 * attachments by state, the work pending, and each pod's worker as its
 * last Stats described it. Per-pod series carry the labels namespace and
 * pod, never a peer's: a pod's peers are summed up (how many on each
 * path, the newest handshake). */
#include "pods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem.h"
#include "metrics.h"
#include "pods_internal.h"
#include "supervisor.h"
#include "workers.h"

/* The worker states a pod is counted in (status's worker_state; "shared"
 * attachments are counted with the one holding the pod's worker). */
enum pod_state { PS_READY, PS_STARTING, PS_RESPAWNING, PS_STOPPING, PS_NONE, PS_N };
static const char *const pod_state_name[PS_N] = {"ready", "starting", "respawning", "stopping",
						 "none"};

static enum pod_state pod_state(const struct attachment *a)
{
	if (a->stop_op)
		return PS_STOPPING;
	if (a->worker_ready && workers_pid(a->worker) > 0)
		return PS_READY;
	return workers_pid(a->worker) > 0 ? PS_STARTING : PS_RESPAWNING;
}

/* Is a the first attachment of its pod in the table? */
static bool first_of_pod(const struct pods *p, const struct attachment *a)
{
	for (const struct attachment *b = p->atts; b != a; b = b->next)
		if (!strcmp(b->pod_uid, a->pod_uid))
			return false;
	return true;
}

static void render_states(struct pods *p, struct metrics_text *t)
{
	uint64_t pods[PS_N] = {0}, atts[4] = {0};
	static const char *const att_name[4] = {"unknown", "intent", "ready", "releasing"};

	for (struct attachment *a = p->atts; a; a = a->next) {
		unsigned int s = (unsigned int)a->state;

		atts[s < 4 ? s : 0]++;
		if (a->worker)
			pods[pod_state(a)]++;
		else if (!pods__pod_worker_att(p, a->pod_uid) && first_of_pod(p, a))
			pods[PS_NONE]++;
	}
	metrics_family(t, "tailscale_cni_pods", "gauge",
		       "Pods by the state of their worker: ready, starting (no Ready yet), "
		       "respawning, stopping, none (no worker).");
	for (int i = 0; i < PS_N; i++)
		metrics_sample(t, "tailscale_cni_pods",
			       (const char *[]){"state", pod_state_name[i], NULL}, pods[i]);
	metrics_family(t, "tailscale_cni_attachments", "gauge",
		       "CNI attachments (network, container, ifname) by record state: intent "
		       "(ADD under way), ready, releasing (DEL under way).");
	for (int i = 1; i < 4; i++)
		metrics_sample(t, "tailscale_cni_attachments",
			       (const char *[]){"state", att_name[i], NULL}, atts[i]);
}

static void render_jobs(struct pods *p, struct metrics_text *t)
{
	uint64_t running = 0, queued = 0;

	for (const struct op *op = p->ops; op; op = op->next) {
		if (op->running)
			running++;
		else
			queued++;
	}
	metrics_family(t, "tailscale_cni_jobs_pending", "gauge",
		       "Work the supervisor has not finished: operation_running and "
		       "operation_queued (ADD, DEL, CHECK, GC, netns probes, record writes; "
		       "queued ones wait behind an earlier one of the same attachment), "
		       "tombstone (DELs the plugin recorded while the supervisor was "
		       "unreachable, as the last scan found them; each is done then removed), "
		       "api_job (records in jobs/ found at start: nothing acts on them yet).");
	metrics_sample(t, "tailscale_cni_jobs_pending",
		       (const char *[]){"kind", "operation_running", NULL}, running);
	metrics_sample(t, "tailscale_cni_jobs_pending",
		       (const char *[]){"kind", "operation_queued", NULL}, queued);
	metrics_sample(t, "tailscale_cni_jobs_pending", (const char *[]){"kind", "tombstone", NULL},
		       p->tombs_pending);
	metrics_sample(t, "tailscale_cni_jobs_pending", (const char *[]){"kind", "api_job", NULL},
		       p->api_jobs);
}

/* One pod's worker, summed up from its last Stats. */
struct pod_view {
	const char *ns, *name;
	struct worker_stats st;
	uint64_t newest_handshake; /* Unix seconds, 0: none */
	uint64_t paths[3];	   /* direct, derp, none */
	unsigned int respawns;
	bool control;
};

static void pod_view(const struct pods *p, const struct attachment *a, struct pod_view *v)
{
	uint32_t left_off;
	size_t n;
	const struct worker_peer *peers = workers_get_peers(a->worker, &n, &left_off);

	memset(v, 0, sizeof(*v));
	v->ns = a->meta.namespace_ ? a->meta.namespace_ : "";
	v->name = a->meta.name && *a->meta.name ? a->meta.name : a->pod_uid;
	workers_get_stats(a->worker, &v->st);
	for (size_t i = 0; i < n; i++) {
		if (peers[i].last_handshake_unix > v->newest_handshake)
			v->newest_handshake = peers[i].last_handshake_unix;
		if (peers[i].path == TSCNI__PEER_PATH__PEER_PATH_DIRECT)
			v->paths[0]++;
		else if (peers[i].path == TSCNI__PEER_PATH__PEER_PATH_DERP)
			v->paths[1]++;
		else
			v->paths[2]++;
	}
	/* Peers past the worker's report's bound have no path we know. */
	v->paths[2] += left_off;
	v->respawns = workers_respawns(a->worker);
	/* An adopted worker sends no event for a connection it already
	 * holds: Ready (which waits for control) stands for "up" then. */
	if (a->control == CONTROL_UP)
		v->control = true;
	else if (a->control == CONTROL_UNKNOWN)
		v->control = p->sup->cfg.control_url && a->worker_ready;
}

/* The per-pod families, each over the pods with a worker (at most
 * METRICS_PODS_MAX of them). */
enum pod_family {
	PF_TUN_BYTES,
	PF_TUN_PACKETS,
	PF_UDP_PACKETS,
	PF_DROPS,
	PF_HANDSHAKE_AGE,
	PF_PEERS,
	PF_CONTROL,
	PF_RESPAWNS,
	PF_N,
};

static const struct {
	const char *name, *type, *help;
} pod_family[PF_N] = {
	[PF_TUN_BYTES] = {"tailscale_cni_pod_tun_bytes_total", "counter",
			  "Bytes through the pod's ts0: rx read from it (sent by the pod), tx "
			  "written to it (received by the pod)."},
	[PF_TUN_PACKETS] = {"tailscale_cni_pod_tun_packets_total", "counter",
			    "Packets through the pod's ts0 (directions as for bytes)."},
	[PF_UDP_PACKETS] = {"tailscale_cni_pod_udp_packets_total", "counter",
			    "Datagrams on the pod's UDP socket (WireGuard, disco, STUN)."},
	[PF_DROPS] = {"tailscale_cni_pod_drops_total", "counter",
		      "Packets the pod's worker dropped (the packet filter, bad peers, no "
		      "route)."},
	[PF_HANDSHAKE_AGE] = {"tailscale_cni_pod_handshake_age_seconds", "gauge",
			      "Seconds since the newest WireGuard handshake among the pod's "
			      "peers (no sample while none ever completed one)."},
	[PF_PEERS] = {"tailscale_cni_pod_peers", "gauge",
		      "The pod's peers by the path their packets take now: direct, derp "
		      "(relayed), none."},
	[PF_CONTROL] = {"tailscale_cni_pod_control_connected", "gauge",
			"1 while the pod's worker holds its control-plane connection (its "
			"last control event said up), else 0."},
	[PF_RESPAWNS] = {"tailscale_cni_pod_worker_respawns_total", "counter",
			 "Times the pod's worker was respawned under this supervisor."},
};

static void pod_sample(struct metrics_text *t, enum pod_family f, const struct pod_view *v,
		       uint64_t now)
{
	const char *name = pod_family[f].name;
	const char *const lab[] = {"namespace", v->ns, "pod", v->name, NULL};
	static const char *const paths[3] = {"direct", "derp", "none"};

	switch (f) {
	case PF_TUN_BYTES:
	case PF_TUN_PACKETS:
	case PF_UDP_PACKETS: {
		uint64_t rx = f == PF_TUN_BYTES	    ? v->st.tun_rx_bytes
			      : f == PF_TUN_PACKETS ? v->st.tun_rx_packets
						    : v->st.udp_rx_packets;
		uint64_t tx = f == PF_TUN_BYTES	    ? v->st.tun_tx_bytes
			      : f == PF_TUN_PACKETS ? v->st.tun_tx_packets
						    : v->st.udp_tx_packets;

		metrics_sample(t, name,
			       (const char *[]){"namespace", v->ns, "pod", v->name, "direction",
						"rx", NULL},
			       rx);
		metrics_sample(t, name,
			       (const char *[]){"namespace", v->ns, "pod", v->name, "direction",
						"tx", NULL},
			       tx);
		break;
	}
	case PF_DROPS:
		metrics_sample(t, name, lab, v->st.drops);
		break;
	case PF_HANDSHAKE_AGE:
		if (v->newest_handshake)
			metrics_sample(t, name, lab,
				       now > v->newest_handshake ? now - v->newest_handshake : 0);
		break;
	case PF_PEERS:
		for (int i = 0; i < 3; i++)
			metrics_sample(t, name,
				       (const char *[]){"namespace", v->ns, "pod", v->name, "path",
							paths[i], NULL},
				       v->paths[i]);
		break;
	case PF_CONTROL:
		metrics_sample(t, name, lab, v->control);
		break;
	case PF_RESPAWNS:
		metrics_sample(t, name, lab, v->respawns);
		break;
	default:
		break;
	}
}

void pods_metrics_render(struct pods *p, struct metrics_text *t)
{
	uint64_t now = (uint64_t)time(NULL), left_off = 0;
	size_t n = 0;
	struct pod_view *views;

	render_states(p, t);
	render_jobs(p, t);
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->worker)
			n++;
	if (n > METRICS_PODS_MAX) {
		left_off = n - METRICS_PODS_MAX;
		n = METRICS_PODS_MAX;
	}
	views = n ? xcalloc(n, sizeof(*views)) : NULL;
	n = 0;
	for (struct attachment *a = p->atts; a && n < METRICS_PODS_MAX; a = a->next)
		if (a->worker)
			pod_view(p, a, &views[n++]);
	for (int f = 0; f < PF_N; f++) {
		metrics_family(t, pod_family[f].name, pod_family[f].type, pod_family[f].help);
		for (size_t i = 0; i < n; i++)
			pod_sample(t, (enum pod_family)f, &views[i], now);
	}
	free(views);
	metrics_family(t, "tailscale_cni_metrics_pods_left_off", "gauge",
		       "Pods with a worker left out of the per-pod series (at most 1024 are "
		       "listed).");
	metrics_sample(t, "tailscale_cni_metrics_pods_left_off", NULL, left_off);
}

void pods_request_stats(struct pods *p)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->worker)
			workers_request_stats(a->worker);
}
