/* The pod table and the CNI verbs (docs/design.md §3 and §4,
 * docs/cni-contract.md sections 4 and 10). This file holds the table, its
 * attachments and their records, the table's lifetime and STATUS; the
 * operations on it and the rest are named in pods_internal.h.
 *
 * Workers and fd custody. A TUN device that is not persistent lives as long
 * as some process holds an fd to it. ADD creates ts0 and spawns the pod's
 * worker with the TUN fd (workers.h); workers.c keeps its own dup of it for
 * every respawn (custody) and the worker process holds one more, so ts0
 * survives a worker's death and the supervisor's (kill -9, an upgrade, a
 * restarted container). One supervisor-side holder is enough: once
 * workers_spawn has its dup, the attachment closes its own fd (tun_fd = -1).
 * After a restart pods_startup takes custody back through workers_adopt,
 * identifying each worker by the pid, start time and boot id in the record.
 * A worker it cannot adopt is never trusted: ts0 is rebuilt (a TUN dies with
 * its last fd, so a worker that died while we were away took ts0 with it; a
 * ts0 still held by a process we could not verify is deleted first, which
 * ends that process's data path) and a new worker spawned with the pod's
 * keys. Only a second attachment of a pod that already has a worker (one
 * worker per pod) keeps its TUN fd here, and that ts0 still dies with the
 * supervisor; it is rebuilt at the next start.
 *
 * A worker is stopped before its attachment is released (DEL, GC, a
 * replacing ADD): the op waits for WORKER_EV_GONE, then does its netlink and
 * record work. An attachment released another way (the reconciler found its
 * netns gone) with its worker still up leaves the table at once and is freed
 * on GONE. A worker that reports GONE by itself saw its TUN die: the netns is
 * gone, and a probe of the attachment releases it.
 *
 * Identities. A pod's identity (pods/<uid>/identity.pb: keys, addresses) is
 * kept after its last attachment is deleted, because a sandbox recreated for
 * the same pod must keep its keys and addresses (docs/design.md §3). Whether
 * a pod is gone for good is not decidable from CNI calls alone (it needs the
 * Kubernetes API), so a retention policy decides: pods__identities_gc
 * (pods_reconcile.c) wipes and removes the identity of a pod that has had
 * no attachment for --identity-grace (default 10 min).
 *
 * The control plane (--control-url). A worker registers the pod's node and
 * asks for its addresses and routes on ts0 (pods_on_netop: done on the
 * threadpool inside the pod's netns, re-opened by path and checked by
 * inode). Its Ready carries the node's addresses: they go into the
 * attachment and its record, into the pod's identity (marked registered,
 * with the stable node id), and into the ADD's reply when Ready came within
 * syncTimeout (else the reply says addresses_pending). The auth key goes to
 * a worker only while the identity is not registered; a DEL or GC that
 * stopped the worker (which logs the node out) marks it unregistered. */
#include "pods.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "ip.h"
#include "log.h"
#include "mem.h"
#include "netlink.h"
#include "netns.h"
#include "netops.h"
#include "pods_internal.h"
#include "record.h"
#include "state.h"
#include "supervisor.h"
#include "validate.h"
#include "workers.h"

/* ---------------------------------------------------------------- helpers */

void pods__meta_free(struct pod_meta *m)
{
	free(m->namespace_);
	free(m->name);
	free(m->uid);
	free(m->infra_container_id);
	memset(m, 0, sizeof(*m));
}

char *pods__dup_or_empty(const char *s)
{
	return xstrdup(s ? s : "");
}

void pods__meta_from_pb(struct pod_meta *m, const Tscni__PodMeta *pb)
{
	m->namespace_ = pods__dup_or_empty(pb ? pb->namespace_ : NULL);
	m->name = pods__dup_or_empty(pb ? pb->name : NULL);
	m->uid = pods__dup_or_empty(pb ? pb->uid : NULL);
	m->infra_container_id = pods__dup_or_empty(pb ? pb->infra_container_id : NULL);
}

void pods__meta_to_pb(const struct pod_meta *m, Tscni__PodMeta *pb)
{
	tscni__pod_meta__init(pb);
	pb->namespace_ = m->namespace_;
	pb->name = m->name;
	pb->uid = m->uid;
	pb->infra_container_id = m->infra_container_id;
}

size_t pods__prefixes_to_pb(const struct ip_prefix *src, size_t n, struct pb_prefixes *out)
{
	for (size_t i = 0; i < n; i++) {
		tscni__ip_prefix__init(&out->m[i]);
		ip_prefix_to_pb(&src[i], &out->m[i]);
		out->p[i] = &out->m[i];
	}
	return n;
}

size_t pods__prefixes_from_pb(Tscni__IpPrefix *const *src, size_t n, struct ip_prefix *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < PREFIX_MAX; i++)
		if (ip_prefix_from_pb(src[i], &out[k]) == 0)
			k++;
	return k;
}

void pods__make_tag(char *tag, const char *pod_uid, const char *keyname)
{
	char uid[80], key[96];

	log_escape(uid, sizeof(uid), pod_uid, strlen(pod_uid));
	log_escape(key, sizeof(key), keyname, strlen(keyname));
	snprintf(tag, TAG_LEN, "pod %s %s", uid, key);
}

static const char *state_name(Tscni__AttachmentState s)
{
	switch (s) {
	case TSCNI__ATTACHMENT_STATE__ATTACHMENT_INTENT:
		return "intent";
	case TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY:
		return "ready";
	case TSCNI__ATTACHMENT_STATE__ATTACHMENT_RELEASING:
		return "releasing";
	default:
		return "unknown";
	}
}

/* A CNI code for an errno from netlink, the state directory or the system:
 * the transient ones invite the runtime to retry (11), a full state
 * directory among them (space comes back as pods go), the rest are ours. */
uint32_t pods__errno_cni_code(int ret)
{
	switch (-ret) {
	case ENOSPC:
	case EDQUOT:
	case EAGAIN:
	case EBUSY:
	case EINTR:
	case ENOBUFS:
	case ENOMEM:
	case ETIMEDOUT:
	case EMFILE:
	case ENFILE:
		return CNI_ERR_TRY_AGAIN;
	default:
		return CNI_ERR_INTERNAL;
	}
}

/* ------------------------------------------------------------ attachments */

void pods__attachment_free(struct attachment *a)
{
	if (!a)
		return;
	if (a->tun_fd >= 0)
		close(a->tun_fd);
	pods__reauth_free(a);
	free(a->network);
	free(a->container_id);
	free(a->pod_uid);
	pods__meta_free(&a->meta);
	free(a->netns_path);
	free(a->cni_version);
	free(a);
}

struct attachment *pods__attachment_from_pb(const Tscni__Attachment *m)
{
	struct attachment *a = xcalloc(1, sizeof(*a));

	a->tun_fd = -1;
	a->network = xstrdup(m->key->network);
	a->container_id = xstrdup(m->key->container_id);
	strscpy(a->ifname, m->key->ifname, sizeof(a->ifname));
	record_key_filename(a->network, a->container_id, a->ifname, a->keyname, sizeof(a->keyname));
	a->pod_uid = xstrdup(m->pod_uid);
	pods__meta_from_pb(&a->meta, m->pod);
	a->netns_path = xstrdup(m->netns_path);
	a->netns_dev = m->netns_dev;
	a->netns_ino = m->netns_ino;
	strscpy(a->interface_name, m->interface_name, sizeof(a->interface_name));
	a->ifindex = m->ifindex;
	a->state = m->state;
	a->cni_version = xstrdup(m->cni_version);
	a->created_unix = m->created_unix;
	a->naddrs = pods__prefixes_from_pb(m->addresses, m->n_addresses, a->addrs);
	pods__make_tag(a->tag, a->pod_uid, a->keyname);
	strscpy(a->wi.boot_id, m->boot_id ? m->boot_id : "", sizeof(a->wi.boot_id));
	if (m->worker) {
		a->wi.pid = m->worker->pid;
		a->wi.start_time = m->worker->start_time;
		a->wi.version = m->worker->handshake_version;
		a->worker_uid = m->worker->uid;
	}
	return a;
}

struct att_pb {
	Tscni__Attachment m;
	Tscni__WorkerInfo wi;
	Tscni__AttachmentKey key;
	Tscni__PodMeta meta;
	struct pb_prefixes addrs;
};

/* Builds the record for a with its worker as wi and uid say (wi NULL: no
 * worker yet); every pointer in out points into a, out or the state's
 * origin. The boot id is always this boot's. */
static void attachment_to_pb(struct pods *p, const struct attachment *a,
			     const struct worker_identity *wi, uint32_t uid, struct att_pb *out)
{
	const struct state_origin *o = state_get_origin(p->st);

	tscni__attachment__init(&out->m);
	tscni__attachment_key__init(&out->key);
	out->key.network = a->network;
	out->key.container_id = a->container_id;
	out->key.ifname = (char *)a->ifname;
	pods__meta_to_pb(&a->meta, &out->meta);
	out->m.key = &out->key;
	out->m.pod_uid = a->pod_uid;
	out->m.pod = &out->meta;
	out->m.netns_path = a->netns_path;
	out->m.netns_dev = a->netns_dev;
	out->m.netns_ino = a->netns_ino;
	out->m.interface_name = (char *)a->interface_name;
	out->m.ifindex = a->ifindex;
	out->m.state = a->state;
	out->m.boot_id = (char *)o->boot_id;
	out->m.machine_id = (char *)o->machine_id;
	out->m.node_name = (char *)o->node_name;
	out->m.cni_version = a->cni_version;
	out->m.created_unix = a->created_unix;
	out->m.n_addresses = pods__prefixes_to_pb(a->addrs, a->naddrs, &out->addrs);
	out->m.addresses = out->addrs.p;
	if (wi || uid) {
		tscni__worker_info__init(&out->wi);
		if (wi) {
			out->wi.pid = wi->pid;
			out->wi.start_time = wi->start_time;
			out->wi.handshake_version = wi->version;
		}
		out->wi.uid = uid;
		out->m.worker = &out->wi;
	}
}

int pods__attachment_save(struct pods *p, const struct attachment *a)
{
	struct att_pb pb;

	attachment_to_pb(p, a, NULL, a->worker_uid, &pb);
	return state_attachment_put(p->st, &pb.m);
}

int pods__attachment_save_cached(struct pods *p, const struct attachment *a)
{
	struct att_pb pb;

	attachment_to_pb(p, a, NULL, a->worker_uid, &pb);
	return state_attachment_put_cached(p->st, &pb.m);
}

int pods__attachment_save_worker(struct pods *p, const struct attachment *a,
				 const struct worker_identity *wi, uint32_t uid)
{
	struct att_pb pb;

	attachment_to_pb(p, a, wi, uid, &pb);
	return state_attachment_put(p->st, &pb.m);
}

int pods__attachment_unrecord(struct pods *p, const struct attachment *a)
{
	Tscni__AttachmentKey key = TSCNI__ATTACHMENT_KEY__INIT;
	int ret;

	key.network = a->network;
	key.container_id = a->container_id;
	key.ifname = (char *)a->ifname;
	ret = state_attachment_remove(p->st, a->pod_uid, &key);
	return ret == -ENOENT ? 0 : ret;
}

struct attachment *pods__table_find(struct pods *p, const char *keyname)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (strcmp(a->keyname, keyname) == 0)
			return a;
	return NULL;
}

struct attachment *pods__table_find_id(struct pods *p, uint64_t id)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->id == id)
			return a;
	return NULL;
}

static void gone_forget(struct pods *p, const char *pod_uid)
{
	for (size_t i = 0; i < p->ngone; i++) {
		if (strcmp(p->gone[i].pod_uid, pod_uid) == 0) {
			free(p->gone[i].pod_uid);
			p->gone[i] = p->gone[--p->ngone];
			return;
		}
	}
}

void pods__gone_note(struct pods *p, const char *pod_uid)
{
	for (size_t i = 0; i < p->ngone; i++) {
		if (strcmp(p->gone[i].pod_uid, pod_uid) == 0)
			return;
	}
	if (p->ngone == p->gone_cap) {
		p->gone_cap = p->gone_cap ? 2 * p->gone_cap : 16;
		p->gone = xrealloc(p->gone, p->gone_cap * sizeof(*p->gone));
	}
	p->gone[p->ngone++] = (struct pod_gone){
		.pod_uid = xstrdup(pod_uid),
		.since_ms = uv_now(&p->sup->loop),
	};
}

void pods__table_insert(struct pods *p, struct attachment *a)
{
	gone_forget(p, a->pod_uid);
	if (!a->id)
		a->id = ++p->next_id;
	a->pods = p;
	a->next = p->atts;
	p->atts = a;
	p->natts++;
}

/* Unlinks a from the table; the caller frees it. The pod's last one
 * starts the grace of its identity. */
void pods__table_remove(struct pods *p, struct attachment *a)
{
	for (struct attachment **pp = &p->atts; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			a->next = NULL;
			p->natts--;
			break;
		}
	}
	for (struct attachment *o = p->atts; o; o = o->next) {
		if (strcmp(o->pod_uid, a->pod_uid) == 0)
			return;
	}
	pods__gone_note(p, a->pod_uid);
}

/* Opens the attachment's netns by path and checks it is still the one it
 * was created in. 1: *nsfd open (the caller closes it); 0: gone (missing,
 * not a namespace any more, or replaced by another one); < 0: error. */
int pods__netns_reopen(const char *path, uint64_t dev, uint64_t ino, int *nsfd)
{
	dev_t d;
	ino_t i;
	int ret;

	*nsfd = -1;
	if (!path || !*path)
		return 0;
	ret = netns_open(path, nsfd, &d, &i);
	if (ret == -ENOENT || ret == -ENOTNAM)
		return 0;
	if (ret < 0)
		return ret;
	if ((uint64_t)d != dev || (uint64_t)i != ino) {
		close(*nsfd);
		*nsfd = -1;
		return 0;
	}
	return 1;
}

/* Runs inside the pod's namespace (netns_run): the interface's index, 0
 * when absent, or a negative errno. */
int pods__ifindex_in_ns(void *arg)
{
	const struct ifindex_query *q = arg;
	unsigned int idx = if_nametoindex(q->name);

	if (idx)
		return idx > INT_MAX ? -EOVERFLOW : (int)idx;
	return errno == ENODEV || errno == ENXIO ? 0 : -errno;
}

int pods__tun_create(const struct attachment *a, int nsfd, int *tun_fd, int *ifindex,
		     const char **why)
{
	char alias[NETLINK_ALIAS_LEN];

	netlink_owner_alias(a->network, a->container_id, a->ifname, alias, sizeof(alias));
	return netops_tun_create(nsfd, a->interface_name, alias, NETOPS_MTU, tun_fd, ifindex, why);
}

/* Releases a: the TUN fd out of custody, ts0 deleted if its netns is still
 * the same one, the record removed. Runs on the threadpool (or at startup).
 * Returns 0, or a negative errno with nothing removed from disk (a later
 * DEL or reconcile round retries); *why names the failing step. */
int pods__release(struct pods *p, struct attachment *a, const char **why)
{
	struct ifindex_query q = {.name = a->interface_name};
	int nsfd, ret;

	/* With no other holder, closing the fd deletes the device. */
	if (a->tun_fd >= 0) {
		close(a->tun_fd);
		a->tun_fd = -1;
	}
	ret = pods__netns_reopen(a->netns_path, a->netns_dev, a->netns_ino, &nsfd);
	if (ret < 0) {
		/* The namespace cannot be reached (it is not ours to wait
		 * for): its device went with the fd, or goes with the netns. */
		log_warn_r(ret, "%s: open netns to delete %s, releasing anyway", a->tag,
			   a->interface_name);
	} else if (ret == 1) {
		/* Delete by name only the device this attachment made (same
		 * ifindex): a ts0 of that name may belong to another attachment
		 * or to someone else, and must be left alone. An attachment
		 * that never reached READY has no ifindex and made nothing that
		 * outlived the fd. */
		ret = 0;
		if (a->ifindex)
			ret = netns_run(nsfd, pods__ifindex_in_ns, &q);
		if (ret > 0 && (uint32_t)ret == a->ifindex)
			ret = netops_link_delete(nsfd, a->interface_name, ret);
		if (ret == -EEXIST) {
			log_warn("%s: %s in %s is no longer ours: left alone", a->tag,
				 a->interface_name, a->netns_path);
			ret = 0;
		}
		close(nsfd);
		if (ret < 0) {
			*why = "delete the interface in the pod's network namespace";
			return ret;
		}
	}
	ret = pods__attachment_unrecord(p, a);
	if (ret < 0) {
		*why = "remove the attachment record";
		return ret;
	}
	return 0;
}

/* ------------------------------------------------------------------ lifetime */

int pods_new(struct supervisor *sup, struct pods **out)
{
	struct pods *p = xcalloc(1, sizeof(*p));
	int ret;

	*out = NULL;
	ret = uv_mutex_init(&p->identity_lock);
	if (ret < 0) {
		free(p);
		return ret;
	}
	p->sup = sup;
	p->st = sup->st;
	*out = p;
	return 0;
}

void pods_stop(struct pods *p)
{
	p->stopping = true;
	if (p->timer_open) {
		uv_close((uv_handle_t *)&p->reconcile_timer, NULL);
		p->timer_open = false;
	}
	for (struct attachment *a = p->atts; a; a = a->next)
		pods__add_stop_wait(a);
	pods__add_stop_mints(p);
	if (p->roll)
		pods__roll_stop(p, "the supervisor is shutting down");
}

void pods_detach_workers(struct pods *p)
{
	struct attachment *a, *next;

	if (!p)
		return;
	pods__netops_forget(p, NULL);
	for (a = p->atts; a; a = a->next) {
		a->worker = NULL;
		a->worker_ready = false;
		/* Its worker stays up without us: the release that follows
		 * deletes ts0, which ends it. */
		pods__op_resume(a);
	}
	for (a = p->dying; a; a = next) {
		next = a->next;
		pods__attachment_free(a);
	}
	p->dying = NULL;
}

void pods_free(struct pods *p)
{
	struct attachment *a, *next;

	if (!p)
		return;
	for (a = p->atts; a; a = next) {
		next = a->next;
		pods__attachment_free(a);
	}
	for (a = p->dying; a; a = next) {
		next = a->next;
		pods__attachment_free(a);
	}
	for (size_t i = 0; i < p->ngone; i++)
		free(p->gone[i].pod_uid);
	free(p->gone);
	uv_mutex_destroy(&p->identity_lock);
	free(p);
}

size_t pods_count(const struct pods *p)
{
	return p->natts;
}

/* ------------------------------------------------------------------- status */

static const char *worker_state_name(struct pods *p, const struct attachment *a)
{
	struct attachment *owner;

	if (a->worker) {
		if (a->stop_op)
			return "stopping";
		if (a->worker_ready && workers_pid(a->worker) > 0)
			return "ready";
		return workers_pid(a->worker) > 0 ? "starting" : "respawning";
	}
	owner = pods__pod_worker_att(p, a->pod_uid);
	if (owner)
		return "shared";
	return "none";
}

/* Peers in one status reply, all pods together: at about 150 bytes each
 * (worker/peer_status.c) they keep the reply well inside FRAME_MAX_BODY;
 * pods past the budget list fewer (PodStatus.peers_left_off counts them). */
enum { STATUS_MAX_PEERS = 4096 };

struct status_buf {
	Tscni__PodStatus s; /* first: rep->pod[i] points at the whole buffer */
	Tscni__AttachmentKey key;
	Tscni__PodMeta meta;
	struct pb_prefixes addrs;
	struct worker_control control; /* control_reason points here */
	/* PodStatus.peer: its strings and bytes point into the worker's
	 * array, so the reply is packed before the loop runs again (as
	 * send_status does). */
	Tscni__PeerStatus *peers;
	Tscni__PeerStatus **peer_ptrs;
};

/* PodStatus.peer from the worker's last Stats, at most *budget of them (the
 * budget shrinks by as many). */
static void peers_fill(struct status_buf *b, const struct worker *w, size_t *budget)
{
	uint32_t left_off;
	size_t n;
	const struct worker_peer *v = workers_get_peers(w, &n, &left_off);
	size_t keep = n < *budget ? n : *budget;

	b->s.peers_left_off = left_off + (uint32_t)(n - keep);
	if (!keep)
		return;
	*budget -= keep;
	b->peers = xcalloc(keep, sizeof(*b->peers));
	b->peer_ptrs = xcalloc(keep, sizeof(*b->peer_ptrs));
	for (size_t i = 0; i < keep; i++) {
		Tscni__PeerStatus *p = &b->peers[i];

		tscni__peer_status__init(p);
		p->node_key = (char *)v[i].node_key;
		p->host_name = (char *)v[i].host_name;
		if (v[i].has_ipv4)
			p->tailnet_ipv4 = (ProtobufCBinaryData){4, (uint8_t *)v[i].ipv4};
		p->path = (Tscni__PeerPath)v[i].path;
		if (v[i].direct_ip_len)
			p->direct_ip = (ProtobufCBinaryData){v[i].direct_ip_len,
							     (uint8_t *)v[i].direct_ip};
		p->direct_port = v[i].direct_port;
		p->derp_region = v[i].derp_region;
		p->last_handshake_unix = v[i].last_handshake_unix;
		p->rx_bytes = v[i].rx_bytes;
		p->tx_bytes = v[i].tx_bytes;
		b->peer_ptrs[i] = p;
	}
	b->s.peer = b->peer_ptrs;
	b->s.n_peer = keep;
}

/* PodStatus.control_state: worker.proto's ControlState in words. */
static const char *control_state_name(int state)
{
	switch (state) {
	case TSCNI__CONTROL_STATE__CONTROL_NONE:
		return "none";
	case TSCNI__CONTROL_STATE__CONTROL_CONNECTING:
		return "connecting";
	case TSCNI__CONTROL_STATE__CONTROL_CONNECTED:
		return "connected";
	case TSCNI__CONTROL_STATE__CONTROL_RETRYING:
		return "retrying";
	case TSCNI__CONTROL_STATE__CONTROL_FAILED:
		return "failed";
	case TSCNI__CONTROL_STATE__CONTROL_LOGGED_OUT:
		return "logged-out";
	default:
		return "unknown";
	}
}

static bool control_failing(int state)
{
	return state == TSCNI__CONTROL_STATE__CONTROL_RETRYING ||
	       state == TSCNI__CONTROL_STATE__CONTROL_FAILED;
}

/* StatusReply.control_pods and control_failing: every pod's worker counted
 * once (a second attachment of a pod shares its worker). */
static void control_count(struct pods *p, Tscni__StatusReply *rep)
{
	rep->control_pods = 0;
	rep->control_failing = 0;
	for (struct attachment *a = p->atts; a; a = a->next) {
		struct worker_control wc;

		if (!a->worker)
			continue;
		workers_get_control(a->worker, &wc);
		rep->control_pods++;
		rep->control_failing += control_failing(wc.state);
	}
}

void pods_status_fill(struct pods *p, Tscni__StatusReply *rep, bool verbose)
{
	size_t i = 0, peer_budget = STATUS_MAX_PEERS;

	rep->pods = (uint32_t)p->natts;
	rep->n_pod = 0;
	rep->pod = NULL;
	control_count(p, rep);
	if (!verbose || !p->natts)
		return;
	rep->pod = xcalloc(p->natts, sizeof(*rep->pod));
	for (struct attachment *a = p->atts; a && i < STATUS_MAX_PODS; a = a->next, i++) {
		struct status_buf *b = xcalloc(1, sizeof(*b));

		tscni__pod_status__init(&b->s);
		tscni__attachment_key__init(&b->key);
		b->key.network = a->network;
		b->key.container_id = a->container_id;
		b->key.ifname = a->ifname;
		pods__meta_to_pb(&a->meta, &b->meta);
		b->s.key = &b->key;
		b->s.pod = &b->meta;
		b->s.netns_path = a->netns_path;
		b->s.interface_name = a->interface_name;
		b->s.ifindex = a->ifindex;
		b->s.state = (char *)state_name(a->state);
		b->s.n_addresses = pods__prefixes_to_pb(a->addrs, a->naddrs, &b->addrs);
		b->s.addresses = b->addrs.p;
		b->s.created_unix = a->created_unix;
		b->s.worker_state = (char *)worker_state_name(p, a);
		b->s.control_state = (char *)"unknown";
		if (a->worker) {
			struct worker_stats ws;
			const char *hn = workers_hostname(a->worker);

			/* control is copied into b; the hostname is the
			 * worker's, valid until the reply is packed (before
			 * the loop runs again). */
			workers_get_control(a->worker, &b->control);
			b->s.control_state = (char *)control_state_name(b->control.state);
			b->s.control_reason = b->control.reason;
			b->s.control_since_unix = b->control.since_unix;
			b->s.control_retry_unix = b->control.retry_unix;
			if (hn && valid_name(hn, HOST_MAX_LEN))
				b->s.hostname = (char *)hn;
			b->s.worker_pid = workers_pid(a->worker);
			b->s.worker_respawns = workers_respawns(a->worker);
			workers_get_stats(a->worker, &ws);
			b->s.tun_rx_packets = ws.tun_rx_packets;
			b->s.tun_tx_packets = ws.tun_tx_packets;
			b->s.udp_rx_packets = ws.udp_rx_packets;
			b->s.udp_tx_packets = ws.udp_tx_packets;
			b->s.drops = ws.drops;
			b->s.peers = ws.peers;
			b->s.handshakes = ws.handshakes;
			b->s.filter_drops = ws.filter_drops;
			b->s.configured = ws.configured;
			b->s.disco_unknown_sender = ws.disco_unknown_sender;
			b->s.disco_bad_box = ws.disco_bad_box;
			b->s.stun_bad_txid = ws.stun_bad_txid;
			b->s.stun_malformed = ws.stun_malformed;
			b->s.derp_bad_frames = ws.derp_bad_frames;
			b->s.dns_queries = ws.dns_queries;
			b->s.dns_answers = ws.dns_answers;
			b->s.dns_forwarded = ws.dns_forwarded;
			b->s.pss_bytes = ws.pss_bytes;
			peers_fill(b, a->worker, &peer_budget);
			/* Fresh counters for the next STATUS. */
			workers_request_stats(a->worker);
		}
		rep->pod[i] = &b->s;
	}
	rep->n_pod = i;
}

void pods_status_clear(Tscni__StatusReply *rep)
{
	for (size_t i = 0; i < rep->n_pod; i++) {
		struct status_buf *b = (struct status_buf *)rep->pod[i];

		free(b->peers);
		free(b->peer_ptrs);
		free(b);
	}
	free(rep->pod);
	rep->pod = NULL;
	rep->n_pod = 0;
}
