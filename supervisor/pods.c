/* The pod table and the CNI verbs (docs/design.md §3 and §4,
 * docs/cni-contract.md sections 4 and 10).
 *
 * Threads. The table (struct pods and every struct attachment in it) belongs
 * to the loop thread. Each operation (struct op) reads the attachment of its
 * key as it was when the operation started (op->cur) from a threadpool
 * thread, does its netlink and fsync work there, and leaves its outcome in
 * the op; the after-work callback applies that outcome to the table on the
 * loop. This is safe because operations on one key are serialised (op_schedule
 * starts an op only when no earlier op of the same key is still active), the
 * loop itself never changes an attachment outside those callbacks, and the
 * loop only ever reads the fields an op's thread may write (tun_fd) after the
 * op is over.
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
 * Kubernetes API or a retention policy), so this issue never removes
 * identities; state_pod_remove exists for the code that will.
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
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "frame.h"
#include "hostname.h"
#include "ip.h"
#include "keys.h"
#include "log.h"
#include "mem.h"
#include "netns.h"
#include "netops.h"
#include "record.h"
#include "resolver.h"
#include "state.h"
#include "supervisor.h"
#include "validate.h"
#include "workers.h"

enum pods_limits {
	SYNC_TIMEOUT_DEFAULT_MS = 3000,
	UDP_BUFFER_BYTES = 7 << 20, /* the pod's UDP socket, each way */
	SYNC_TIMEOUT_MAX_MS = 60000,
	TAG_LEN = 192,
	DETAIL_LEN = 512,
	GC_FAILED_MAX = 64,
	TOMBSTONE_SCAN_MAX = 4096,
	ROLL_FAILED_MAX = 64,
	ROLL_STEP_TIMEOUT_MS = 10000, /* one worker's replacement, until Ready */
};

/* CNI error codes the supervisor puts into its replies (docs/cni-contract.md 6.2). */
enum cni_code {
	CNI_ERR_NETNS = 3,
	CNI_ERR_BAD_NETNS = 8,
	CNI_ERR_TRY_AGAIN = 11,
	CNI_ERR_IF_EXISTS = 100,
	CNI_ERR_REFUSED = 102, /* control refused the node for good */
	CNI_ERR_CHECK = 103,
	CNI_ERR_WORKER = 103, /* CHECK: the pod's worker is not running */
	CNI_ERR_INTERNAL = 999,
};

struct pod_meta {
	char *namespace_;
	char *name;
	char *uid;
	char *infra_container_id;
};

struct attachment {
	struct attachment *next; /* pods->atts */
	char keyname[RECORD_KEYNAME_LEN];
	char tag[TAG_LEN]; /* "pod <uid> <keyname>", escaped, for log lines */
	char *network;
	char *container_id;
	char ifname[IFNAME_MAX_LEN + 1]; /* the runtime's CNI_IFNAME */
	char *pod_uid;
	struct pod_meta meta;
	char *netns_path;
	uint64_t netns_dev;
	uint64_t netns_ino;
	char interface_name[IFNAME_MAX_LEN + 1]; /* ts0 */
	uint32_t ifindex;
	Tscni__AttachmentState state;
	char *cni_version;
	uint64_t created_unix;
	struct ip_prefix addrs[PREFIX_MAX];
	size_t naddrs;
	/* Our own TUN fd (O_CLOEXEC), -1 when none: between ts0's creation
	 * and workers_spawn, or for a second attachment of a pod whose worker
	 * belongs to another attachment. */
	int tun_fd;
	/* The ADD waiting for this attachment's worker to report Ready. */
	struct op *sync_op;

	struct pods *pods;
	uint64_t id;	       /* unique while the supervisor runs */
	struct worker *worker; /* the pod's worker, NULL when none */
	bool worker_ready;     /* its current process is up (Ready or adopted) */
	bool dying;	       /* off the table; freed on the worker's GONE */
	struct op *stop_op;    /* an op waiting for this worker's GONE */
	/* The worker as the record says: what pods_startup adopts, and what
	 * the next save writes (boot_id is the record's). */
	struct worker_identity wi;
	uint32_t worker_uid; /* 0 until a slot is allocated */
};

struct pods_request {
	pods_reply_fn *fn; /* NULL once detached */
	void *arg;
};

enum op_kind {
	OP_ADD,
	OP_DEL,
	OP_CHECK,
	OP_RELEASE, /* GC's release of one attachment */
	OP_PROBE,   /* the reconciler's netns check of one attachment */
	OP_SAVE,    /* rewrite the record with its worker's identity */
};

struct gc_run;

struct op {
	struct op *next; /* pods->ops, in arrival order */
	struct pods *pods;
	enum op_kind kind;
	bool running;
	bool waiting_worker; /* running: for cur's worker to be GONE */
	bool saving;	     /* ADD: recording its worker before the reply */
	char keyname[RECORD_KEYNAME_LEN];
	char tag[TAG_LEN];
	struct pods_request *req; /* NULL for internal operations */
	struct gc_run *gc;	  /* OP_RELEASE: the GC it belongs to */
	char *tombstone;	  /* OP_DEL from a tombstone: its file name */
	uv_work_t work;
	uv_timer_t sync_timer;
	bool sync_timer_open;

	/* The request, copied. */
	char *network;
	char *container_id;
	char ifname[IFNAME_MAX_LEN + 1];
	char *netns_path; /* may be NULL (DEL) */
	uint64_t netns_dev;
	uint64_t netns_ino;
	char interface_name[IFNAME_MAX_LEN + 1];
	struct pod_meta meta;
	char *cni_version;
	uint32_t sync_timeout_ms;
	struct ip_prefix expected[PREFIX_MAX];
	size_t nexpected;

	/* The table's attachment for the key when the op started. */
	struct attachment *cur;

	/* Outcome, written by the threadpool, applied on the loop. */
	bool replace;		     /* cur leaves the table; next_att (if any) enters */
	struct attachment *next_att; /* owned by the op until applied */
	bool existed;
	bool released;
	uint32_t cni_code; /* 0: success */
	const char *msg;   /* static */
	char detail[DETAIL_LEN];
	struct ip_prefix addrs[PREFIX_MAX];
	size_t naddrs;
	bool addresses_pending;

	/* ADD: the pod's keys for its worker (wiped in op_free). */
	bool have_keys;
	bool registered; /* the identity's node registered with control before */
	uint8_t machine_private[KEY_LEN];
	uint8_t node_private[KEY_LEN];
	char hostname[HOST_MAX_LEN + 1];
	/* OP_SAVE: which attachment, and the worker fields to write. */
	uint64_t save_id;
	struct worker_identity save_wi;
	uint32_t save_uid;
	/* Saves (OP_SAVE, an ADD's sync save): the node's addresses and
	 * stable id into the pod's identity too, marked registered. */
	bool save_ident;
	struct ip_prefix save_addrs[PREFIX_MAX];
	size_t save_naddrs;
	char save_stable[HOST_MAX_LEN + 1];
	/* DEL, GC: the worker was stopped with logout, so the identity's node
	 * must register again (with the auth key) next time. */
	bool logged_out;
};

/* A worker's netop on the threadpool. */
struct netop_job {
	struct netop_job *next;
	struct pods *pods;
	struct worker *w; /* NULL once the worker is GONE: no reply */
	uint32_t id;
	enum worker_netop kind;
	struct ip_prefix prefix;
	char *netns_path;
	uint64_t netns_dev, netns_ino;
	uint32_t ifindex;
	int err;
	const char *why;
	uv_work_t work;
};

struct roll_run {
	struct pods *pods;
	struct pods_request *req;
	uint64_t *ids; /* the attachments to roll, in order */
	size_t n, next;
	uint64_t cur; /* the one being replaced, 0 between two */
	uv_timer_t timer;
	unsigned int rolled;
	char *failed[ROLL_FAILED_MAX];
	size_t nfailed;
};

struct gc_run {
	struct pods_request *req;
	unsigned int pending;
	unsigned int released;
	char *failed[GC_FAILED_MAX];
	size_t nfailed;
	unsigned int nfailed_total;
};

struct tomb_entry {
	char *filename;
	char *network;
	char *container_id;
	char ifname[IFNAME_MAX_LEN + 1];
	char *netns_path;
	char interface_name[IFNAME_MAX_LEN + 1];
};

struct tomb_scan {
	struct pods *pods;
	uv_work_t work;
	struct tomb_entry *ents;
	size_t n;
};

struct pods {
	struct supervisor *sup;
	struct state *st;
	struct attachment *atts;
	size_t natts;
	struct op *ops;
	uv_timer_t reconcile_timer;
	bool timer_open;
	bool stopping;
	bool tomb_scan_running;
	struct attachment *dying; /* released, waiting for their workers' GONE */
	uint64_t next_id;
	struct roll_run *roll;
	/* Two ADDs of one pod (two attachments) may race to create its
	 * identity; this makes the check-then-create atomic. */
	uv_mutex_t identity_lock;
	struct netop_job *netops; /* in flight */
};

/* ---------------------------------------------------------------- helpers */

static void meta_free(struct pod_meta *m)
{
	free(m->namespace_);
	free(m->name);
	free(m->uid);
	free(m->infra_container_id);
	memset(m, 0, sizeof(*m));
}

static char *dup_or_empty(const char *s)
{
	return xstrdup(s ? s : "");
}

static void meta_from_pb(struct pod_meta *m, const Tscni__PodMeta *pb)
{
	m->namespace_ = dup_or_empty(pb ? pb->namespace_ : NULL);
	m->name = dup_or_empty(pb ? pb->name : NULL);
	m->uid = dup_or_empty(pb ? pb->uid : NULL);
	m->infra_container_id = dup_or_empty(pb ? pb->infra_container_id : NULL);
}

static void meta_to_pb(const struct pod_meta *m, Tscni__PodMeta *pb)
{
	tscni__pod_meta__init(pb);
	pb->namespace_ = m->namespace_;
	pb->name = m->name;
	pb->uid = m->uid;
	pb->infra_container_id = m->infra_container_id;
}

/* Storage for a repeated IpPrefix field built from struct ip_prefix. */
struct pb_prefixes {
	Tscni__IpPrefix m[PREFIX_MAX];
	Tscni__IpPrefix *p[PREFIX_MAX];
};

static size_t prefixes_to_pb(const struct ip_prefix *src, size_t n, struct pb_prefixes *out)
{
	for (size_t i = 0; i < n; i++) {
		tscni__ip_prefix__init(&out->m[i]);
		ip_prefix_to_pb(&src[i], &out->m[i]);
		out->p[i] = &out->m[i];
	}
	return n;
}

static size_t prefixes_from_pb(Tscni__IpPrefix *const *src, size_t n, struct ip_prefix *out)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < PREFIX_MAX; i++)
		if (ip_prefix_from_pb(src[i], &out[k]) == 0)
			k++;
	return k;
}

static void make_tag(char *tag, const char *pod_uid, const char *keyname)
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
 * the transient ones invite the runtime to retry (11), the rest are ours. */
static uint32_t errno_cni_code(int ret)
{
	switch (-ret) {
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

static void op_fail(struct op *op, uint32_t code, const char *msg, int ret, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Records a failure: msg is fixed per cause, detail the variable part. */
static void op_fail(struct op *op, uint32_t code, const char *msg, int ret, const char *fmt, ...)
{
	va_list ap;
	int n;

	op->cni_code = code;
	op->msg = msg;
	va_start(ap, fmt);
	n = vsnprintf(op->detail, sizeof(op->detail), fmt, ap);
	va_end(ap);
	if (ret < 0 && n >= 0 && (size_t)n < sizeof(op->detail))
		snprintf(op->detail + n, sizeof(op->detail) - n, ": %s", strerror(-ret));
}

/* ------------------------------------------------------------ attachments */

static void attachment_free(struct attachment *a)
{
	if (!a)
		return;
	if (a->tun_fd >= 0)
		close(a->tun_fd);
	free(a->network);
	free(a->container_id);
	free(a->pod_uid);
	meta_free(&a->meta);
	free(a->netns_path);
	free(a->cni_version);
	free(a);
}

static struct attachment *attachment_from_pb(const Tscni__Attachment *m)
{
	struct attachment *a = xcalloc(1, sizeof(*a));

	a->tun_fd = -1;
	a->network = xstrdup(m->key->network);
	a->container_id = xstrdup(m->key->container_id);
	strscpy(a->ifname, m->key->ifname, sizeof(a->ifname));
	record_key_filename(a->network, a->container_id, a->ifname, a->keyname, sizeof(a->keyname));
	a->pod_uid = xstrdup(m->pod_uid);
	meta_from_pb(&a->meta, m->pod);
	a->netns_path = xstrdup(m->netns_path);
	a->netns_dev = m->netns_dev;
	a->netns_ino = m->netns_ino;
	strscpy(a->interface_name, m->interface_name, sizeof(a->interface_name));
	a->ifindex = m->ifindex;
	a->state = m->state;
	a->cni_version = xstrdup(m->cni_version);
	a->created_unix = m->created_unix;
	a->naddrs = prefixes_from_pb(m->addresses, m->n_addresses, a->addrs);
	make_tag(a->tag, a->pod_uid, a->keyname);
	strscpy(a->wi.boot_id, m->boot_id ? m->boot_id : "", sizeof(a->wi.boot_id));
	if (m->worker) {
		a->wi.pid = m->worker->pid;
		a->wi.start_time = m->worker->start_time;
		a->wi.version = m->worker->handshake_version;
		a->worker_uid = m->worker->uid;
	}
	return a;
}

/* A new attachment for an ADD: pod_uid is the pod's identity key. */
static struct attachment *attachment_from_op(const struct op *op, const char *pod_uid)
{
	struct attachment *a = xcalloc(1, sizeof(*a));

	a->tun_fd = -1;
	memcpy(a->keyname, op->keyname, sizeof(a->keyname));
	memcpy(a->tag, op->tag, sizeof(a->tag));
	a->network = xstrdup(op->network);
	a->container_id = xstrdup(op->container_id);
	memcpy(a->ifname, op->ifname, sizeof(a->ifname));
	a->pod_uid = xstrdup(pod_uid);
	a->meta.namespace_ = xstrdup(op->meta.namespace_);
	a->meta.name = xstrdup(op->meta.name);
	a->meta.uid = xstrdup(op->meta.uid);
	a->meta.infra_container_id = xstrdup(op->meta.infra_container_id);
	a->netns_path = xstrdup(op->netns_path);
	a->netns_dev = op->netns_dev;
	a->netns_ino = op->netns_ino;
	memcpy(a->interface_name, op->interface_name, sizeof(a->interface_name));
	a->state = TSCNI__ATTACHMENT_STATE__ATTACHMENT_INTENT;
	a->cni_version = xstrdup(op->cni_version);
	a->created_unix = (uint64_t)time(NULL);
	memcpy(a->addrs, op->addrs, sizeof(a->addrs));
	a->naddrs = op->naddrs;
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
	meta_to_pb(&a->meta, &out->meta);
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
	out->m.n_addresses = prefixes_to_pb(a->addrs, a->naddrs, &out->addrs);
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

static int attachment_save(struct pods *p, const struct attachment *a)
{
	struct att_pb pb;

	attachment_to_pb(p, a, NULL, a->worker_uid, &pb);
	return state_attachment_put(p->st, &pb.m);
}

static int attachment_save_worker(struct pods *p, const struct attachment *a,
				  const struct worker_identity *wi, uint32_t uid)
{
	struct att_pb pb;

	attachment_to_pb(p, a, wi, uid, &pb);
	return state_attachment_put(p->st, &pb.m);
}

static int attachment_unrecord(struct pods *p, const struct attachment *a)
{
	Tscni__AttachmentKey key = TSCNI__ATTACHMENT_KEY__INIT;
	int ret;

	key.network = a->network;
	key.container_id = a->container_id;
	key.ifname = (char *)a->ifname;
	ret = state_attachment_remove(p->st, a->pod_uid, &key);
	return ret == -ENOENT ? 0 : ret;
}

static struct attachment *table_find(struct pods *p, const char *keyname)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (strcmp(a->keyname, keyname) == 0)
			return a;
	return NULL;
}

static void table_insert(struct pods *p, struct attachment *a)
{
	if (!a->id)
		a->id = ++p->next_id;
	a->pods = p;
	a->next = p->atts;
	p->atts = a;
	p->natts++;
}

/* Unlinks a from the table; the caller frees it. */
static void table_remove(struct pods *p, struct attachment *a)
{
	for (struct attachment **pp = &p->atts; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			a->next = NULL;
			p->natts--;
			return;
		}
	}
}

/* Opens the attachment's netns by path and checks it is still the one it
 * was created in. 1: *nsfd open (the caller closes it); 0: gone (missing,
 * not a namespace any more, or replaced by another one); < 0: error. */
static int netns_reopen(const char *path, uint64_t dev, uint64_t ino, int *nsfd)
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

struct ifindex_query {
	const char *name;
};

/* Runs inside the pod's namespace (netns_run): the interface's index, 0
 * when absent, or a negative errno. */
static int ifindex_in_ns(void *arg)
{
	const struct ifindex_query *q = arg;
	unsigned int idx = if_nametoindex(q->name);

	if (idx)
		return idx > INT_MAX ? -EOVERFLOW : (int)idx;
	return errno == ENODEV || errno == ENXIO ? 0 : -errno;
}

/* Releases a: the TUN fd out of custody, ts0 deleted if its netns is still
 * the same one, the record removed. Runs on the threadpool (or at startup).
 * Returns 0, or a negative errno with nothing removed from disk (a later
 * DEL or reconcile round retries); *why names the failing step. */
static int release(struct pods *p, struct attachment *a, const char **why)
{
	struct ifindex_query q = {.name = a->interface_name};
	int nsfd, ret;

	/* With no other holder, closing the fd deletes the device. */
	if (a->tun_fd >= 0) {
		close(a->tun_fd);
		a->tun_fd = -1;
	}
	ret = netns_reopen(a->netns_path, a->netns_dev, a->netns_ino, &nsfd);
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
			ret = netns_run(nsfd, ifindex_in_ns, &q);
		if (ret > 0 && (uint32_t)ret == a->ifindex)
			ret = netops_link_delete(nsfd, a->interface_name);
		close(nsfd);
		if (ret < 0) {
			*why = "delete the interface in the pod's network namespace";
			return ret;
		}
	}
	ret = attachment_unrecord(p, a);
	if (ret < 0) {
		*why = "remove the attachment record";
		return ret;
	}
	return 0;
}

/* ----------------------------------------------------------------- workers */

static struct op *op_new(struct pods *p, enum op_kind kind, const char *network,
			 const char *container_id, const char *ifname);
static void op_enqueue(struct op *op);
static bool op_queue_work(struct op *op);
static void roll_step(struct pods *p, bool ok, const char *why);
static void roll_finish(struct pods *p, const char *abort_why);
static int sync_save_begin(struct op *op, struct attachment *a);
static void sync_end(struct op *op, bool timed_out);
static void submit_roll(struct pods *p, struct pods_request *req);

/* The attachment of pod_uid that holds the pod's worker, or NULL. */
static struct attachment *pod_worker_att(struct pods *p, const char *pod_uid)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->worker && strcmp(a->pod_uid, pod_uid) == 0)
			return a;
	return NULL;
}

/* Is the pod's worker process up (Ready, or adopted)? */
static bool pod_worker_up(struct pods *p, const char *pod_uid)
{
	struct attachment *a = pod_worker_att(p, pod_uid);

	return a && a->worker_ready && workers_pid(a->worker) > 0;
}

static uint32_t uid_base(const struct pods *p)
{
	return p->sup->cfg.uid_base ? p->sup->cfg.uid_base : WORKERS_UID_BASE;
}

static bool uid_taken(struct pods *p, const struct attachment *self, uint32_t uid)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a != self && a->worker_uid == uid && strcmp(a->pod_uid, self->pod_uid))
			return true;
	for (struct attachment *a = p->dying; a; a = a->next)
		if (a->worker_uid == uid)
			return true;
	return false;
}

/* The worker's uid slot: the one the record has (stable across restarts
 * and respawns), else the lowest free. -ENOSPC when all are taken. */
static int slot_get(struct pods *p, struct attachment *a, uint32_t *slot)
{
	uint32_t base = uid_base(p);

	if (a->worker_uid >= base && a->worker_uid - base < WORKERS_UID_COUNT &&
	    !uid_taken(p, a, a->worker_uid)) {
		*slot = a->worker_uid - base;
		return 0;
	}
	for (uint32_t i = 0; i < WORKERS_UID_COUNT; i++) {
		if (!uid_taken(p, a, base + i)) {
			a->worker_uid = base + i;
			*slot = i;
			return 0;
		}
	}
	return -ENOSPC;
}

/* Takes a out of the pods' hands: freed now, or, while its worker still
 * runs, once the worker reports GONE. */
static void attachment_retire(struct pods *p, struct attachment *a)
{
	if (!a->worker) {
		attachment_free(a);
		return;
	}
	a->dying = true;
	a->next = p->dying;
	p->dying = a;
	workers_stop(a->worker, true);
}

static void dying_remove(struct pods *p, struct attachment *a)
{
	for (struct attachment **pp = &p->dying; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			a->next = NULL;
			return;
		}
	}
}

static void save_ident_set(struct op *op, const struct attachment *a, const char *stable);

/* Queues a rewrite of a's record with its worker's identity (and, with
 * ident, of the pod's identity with the node's addresses and stable id). */
static void attachment_record_worker(struct pods *p, struct attachment *a, bool ident,
				     const char *stable)
{
	struct op *op;

	if (p->stopping)
		return;
	op = op_new(p, OP_SAVE, a->network, a->container_id, a->ifname);
	memcpy(op->tag, a->tag, sizeof(op->tag));
	op->save_id = a->id;
	op->save_wi = a->wi;
	op->save_uid = a->worker_uid;
	if (ident)
		save_ident_set(op, a, stable);
	op_enqueue(op);
}

/* What a Ready brought for the pod's identity, carried by the save op. */
static void save_ident_set(struct op *op, const struct attachment *a, const char *stable)
{
	op->save_ident = true;
	memcpy(op->save_addrs, a->addrs, sizeof(op->save_addrs));
	op->save_naddrs = a->naddrs;
	strscpy(op->save_stable, stable ? stable : "", sizeof(op->save_stable));
}

static bool prefixes_equal(const struct ip_prefix *x, size_t nx, const struct ip_prefix *y,
			   size_t ny)
{
	if (nx != ny)
		return false;
	for (size_t i = 0; i < nx; i++)
		if (x[i].family != y[i].family || x[i].len != y[i].len ||
		    memcmp(x[i].addr, y[i].addr, sizeof(x[i].addr)))
			return false;
	return true;
}

static void netops_forget(struct pods *p, const struct worker *w)
{
	for (struct netop_job *j = p->netops; j; j = j->next)
		if (j->w == w)
			j->w = NULL;
}

static void pods_on_worker(struct worker *w, enum worker_event ev, const struct worker_report *r,
			   void *arg)
{
	struct attachment *a = arg;
	struct pods *p = a->pods;
	struct worker_identity id;
	bool changed, ident;

	switch (ev) {
	case WORKER_EV_READY:
		a->worker_ready = true;
		changed = workers_identity(w, &id) == 0 &&
			  (id.pid != a->wi.pid || id.start_time != a->wi.start_time ||
			   id.version != a->wi.version || strcmp(id.boot_id, a->wi.boot_id));
		if (changed)
			a->wi = id;
		/* The node's addresses (a control plane's worker): into the
		 * attachment, its record and the pod's identity. */
		ident = r->n_addresses > 0;
		if (ident && !prefixes_equal(a->addrs, a->naddrs, r->addresses, r->n_addresses)) {
			memset(a->addrs, 0, sizeof(a->addrs));
			memcpy(a->addrs, r->addresses, r->n_addresses * sizeof(*r->addresses));
			a->naddrs = r->n_addresses;
			changed = true;
		}
		log_info("%s: worker %d ready (uid %u, respawns %u, %zu addresses%s%s)", a->tag,
			 (int)r->pid, a->worker_uid, workers_respawns(w), r->n_addresses,
			 r->stable_node_id && *r->stable_node_id ? ", node " : "",
			 r->stable_node_id ? r->stable_node_id : "");
		/* An ADD waiting for it replies once the record names it. */
		if (ident && a->sync_op && !a->sync_op->saving)
			save_ident_set(a->sync_op, a, r->stable_node_id);
		if (!((changed || ident) && a->sync_op && !p->stopping &&
		      sync_save_begin(a->sync_op, a) == 0)) {
			if (changed || ident)
				attachment_record_worker(p, a, ident, r->stable_node_id);
			pods_attachment_ready(p, a);
		}
		if (p->roll && p->roll->cur == a->id)
			roll_step(p, true, NULL);
		break;
	case WORKER_EV_EVENT:
		/* Control refused the node for good (it wants an interactive
		 * login, the key is invalid or expired, the node is not
		 * authorized, tailnet lock is on): an ADD waiting for it fails now
		 * with control's reason instead of returning at syncTimeout. The
		 * runtime's DEL that follows a failed ADD removes the rest. */
		if (r->event_kind == TSCNI__EVENT_KIND__EVENT_AUTH_FAILED && a->sync_op &&
		    !a->sync_op->saving) {
			struct op *op = a->sync_op;

			log_warn("%s: control refused the node: %s", a->tag,
				 r->detail ? r->detail : "");
			op->cni_code = CNI_ERR_REFUSED;
			op->msg = "the control server refused the pod's node";
			snprintf(op->detail, sizeof(op->detail), "%s", r->detail ? r->detail : "");
			sync_end(op, false);
		}
		break;
	case WORKER_EV_EXIT:
		a->worker_ready = false;
		break;
	case WORKER_EV_GONE:
		netops_forget(p, w);
		resolver_forget(p->sup->resolver, w);
		a->worker = NULL;
		a->worker_ready = false;
		if (p->roll && p->roll->cur == a->id)
			roll_step(p, false, r->why);
		if (a->dying) {
			dying_remove(p, a);
			attachment_free(a);
			return;
		}
		if (a->stop_op) {
			struct op *op = a->stop_op;

			a->stop_op = NULL;
			op->waiting_worker = false;
			op_queue_work(op);
			return;
		}
		/* It ended by itself: its TUN died with the pod's netns. */
		if (!p->stopping) {
			struct op *op = op_new(p, OP_PROBE, a->network, a->container_id, a->ifname);

			memcpy(op->tag, a->tag, sizeof(op->tag));
			log_info("%s: worker gone (%s): probing the attachment", a->tag,
				 r->why ? r->why : "");
			op_enqueue(op);
		}
		break;
	default:
		break;
	}
}

/* A worker spec for a with the pod's keys (the caller wipes them). */
static void spec_fill(struct pods *p, struct attachment *a, struct worker_spec *spec, uint32_t slot,
		      const uint8_t *machine, const uint8_t *node, const char *hostname,
		      bool registered)
{
	memset(spec, 0, sizeof(*spec));
	/* The control plane: the auth key (borrowed, copied by workers) only
	 * for a node that never registered, or logged out since. */
	spec->control_url = p->sup->cfg.control_url;
	if (!registered)
		spec->auth_key = p->sup->auth_key;
	spec->pod_uid = a->pod_uid;
	spec->hostname = hostname && *hostname ? hostname : NULL;
	memcpy(spec->machine_private, machine, WORKERS_KEY_LEN);
	memcpy(spec->node_private, node, WORKERS_KEY_LEN);
	spec->addresses = a->addrs;
	spec->n_addresses = a->naddrs;
	spec->tun_fd = a->tun_fd;
	spec->slot = slot;
	spec->mtu = NETOPS_MTU;
}

/* The pod's UDP socket for its worker (WireGuard and disco): created here,
 * in the host's netns, dual-stack, bound to an ephemeral port, with large
 * buffers (SO_*BUFFORCE: the worker has no CAP_NET_ADMIN to ask for them).
 * Its custody then follows the TUN fd's, so the port stays the same across
 * respawns and supervisor restarts. 0 with *fd set, or a negative errno. */
static int udp_socket_new(int *fd)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
	int s, off = 0, sz = UDP_BUFFER_BYTES, ret;

	s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		/* A kernel without IPv6: an IPv4 socket. */
		struct sockaddr_in sin = {.sin_family = AF_INET};

		s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (s < 0)
			return -errno;
		if (bind(s, (struct sockaddr *)&sin, sizeof(sin)) < 0)
			goto fail;
	} else {
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		if (bind(s, (struct sockaddr *)&sin6, sizeof(sin6)) < 0)
			goto fail;
	}
	if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	*fd = s;
	return 0;
fail:
	ret = -errno;
	close(s);
	return ret;
}

/* Spawns the pod's worker for a with its TUN fd (a->tun_fd, closed here once
 * workers holds custody). A second attachment of a pod that has a worker
 * keeps its fd and gets none. 0 or a negative errno. */
static int attachment_spawn(struct pods *p, struct attachment *a, const uint8_t *machine,
			    const uint8_t *node, const char *hostname, bool registered)
{
	struct attachment *owner = pod_worker_att(p, a->pod_uid);
	struct worker_spec spec;
	int udp_fd = -1, ret;
	uint32_t slot;

	if (owner && owner != a) {
		log_info("%s: the pod's worker runs for %s; this ts0 is held here", a->tag,
			 owner->keyname);
		return 0;
	}
	if (a->tun_fd < 0)
		return -EBADF;
	if (!p->sup->workers)
		return -ENOTCONN; /* unit tests: no zygote */
	ret = slot_get(p, a, &slot);
	if (ret < 0) {
		log_err_r(ret, "%s: no free worker uid", a->tag);
		return ret;
	}
	spec_fill(p, a, &spec, slot, machine, node, hostname, registered);
	if (p->sup->cfg.control_url) {
		ret = udp_socket_new(&udp_fd);
		if (ret < 0) {
			log_err_r(ret, "%s: the pod's UDP socket", a->tag);
			return ret;
		}
		spec.extra_fds = &udp_fd;
		spec.n_extra_fds = 1;
	}
	ret = workers_spawn(p->sup->workers, &spec, pods_on_worker, a, &a->worker);
	sodium_memzero(&spec, sizeof(spec));
	if (udp_fd >= 0)
		close(udp_fd); /* workers holds its own dup (custody) */
	if (ret < 0) {
		log_err_r(ret, "%s: spawn the worker", a->tag);
		return ret;
	}
	a->worker_ready = false;
	close(a->tun_fd);
	a->tun_fd = -1;
	return 0;
}

/* ---------------------------------------------------------------- identity */

/* Reads the pod's identity or creates one (fresh machine and node keys),
 * and copies its addresses into op->addrs. Keys never leave this function
 * except into the 0600 record. */
static int identity_ensure(struct op *op, const char *pod_uid)
{
	struct pods *p = op->pods;
	Tscni__Identity *id;
	const char *why = NULL;
	int err = 0, ret = 0;

	uv_mutex_lock(&p->identity_lock);
	id = state_identity_get(p->st, pod_uid, &err);
	if (id) {
		op->naddrs = prefixes_from_pb(id->addresses, id->n_addresses, op->addrs);
		if (id->machine_private.len == KEY_LEN && id->node_private.len == KEY_LEN) {
			memcpy(op->machine_private, id->machine_private.data, KEY_LEN);
			memcpy(op->node_private, id->node_private.data, KEY_LEN);
			strscpy(op->hostname, id->hostname ? id->hostname : "",
				sizeof(op->hostname));
			op->have_keys = true;
			op->registered = id->registered;
		}
		if (id->machine_private.data)
			sodium_memzero(id->machine_private.data, id->machine_private.len);
		if (id->node_private.data)
			sodium_memzero(id->node_private.data, id->node_private.len);
		tscni__identity__free_unpacked(id, NULL);
		goto out;
	}
	if (err != -ENOENT) {
		ret = err < 0 ? err : -EIO;
		goto out;
	}

	const struct state_origin *o = state_get_origin(p->st);
	const char *cluster = p->sup->cfg.cluster_name;
	uint8_t machine[KEY_LEN], node[KEY_LEN];
	Tscni__Identity m = TSCNI__IDENTITY__INIT;
	char hn[HOSTNAME_MAX + 1];
	Tscni__PodMeta meta;

	keys_generate(machine);
	keys_generate(node);
	meta_to_pb(&op->meta, &meta);
	m.pod_uid = (char *)pod_uid;
	m.machine_private.data = machine;
	m.machine_private.len = KEY_LEN;
	m.node_private.data = node;
	m.node_private.len = KEY_LEN;
	m.hostname = *op->meta.name ? op->meta.name : (char *)pod_uid;
	/* <cluster>-<namespace>-<pod> (common/hostname.h) when the runtime
	 * named the pod; else the pod's name or uid as before. Supervisors on
	 * other nodes cannot be asked whether a name is taken, so any name
	 * whose parts could be split differently (a '-' inside one: "a-b"/"c"
	 * against "a"/"b-c") carries the hash of its exact triple: the same on
	 * every node and restart, different for different triples. */
	if (cluster && *op->meta.namespace_ && *op->meta.name &&
	    hostname_make(cluster, op->meta.namespace_, op->meta.name,
			  strchr(cluster, '-') || strchr(op->meta.namespace_, '-') ||
				  strchr(op->meta.name, '-'),
			  hn, &why) == 0)
		m.hostname = hn;
	m.machine_id = (char *)o->machine_id;
	m.node_name = (char *)o->node_name;
	m.created_unix = (uint64_t)time(NULL);
	m.pod = &meta;
	ret = state_identity_put(p->st, &m);
	if (ret == 0) {
		memcpy(op->machine_private, machine, KEY_LEN);
		memcpy(op->node_private, node, KEY_LEN);
		strscpy(op->hostname, m.hostname, sizeof(op->hostname));
		op->have_keys = true;
	}
	sodium_memzero(machine, sizeof(machine));
	sodium_memzero(node, sizeof(node));
	if (ret == 0)
		log_info("%s: new identity", op->tag);
	op->naddrs = 0; /* addresses come from the control plane */
out:
	uv_mutex_unlock(&p->identity_lock);
	return ret;
}

static void identity_wipe_free(Tscni__Identity *id)
{
	if (id->machine_private.data)
		sodium_memzero(id->machine_private.data, id->machine_private.len);
	if (id->node_private.data)
		sodium_memzero(id->node_private.data, id->node_private.len);
	tscni__identity__free_unpacked(id, NULL);
}

/* Records what the pod's node is on the control plane: registered (its
 * worker reported Ready) with these addresses and stable id, or, after a
 * logout, registered = false (addresses kept: control gives them back).
 * Runs on the threadpool. 0 or a negative errno. */
static int identity_record(struct pods *p, const char *pod_uid, bool registered,
			   const struct ip_prefix *addrs, size_t naddrs, const char *stable)
{
	Tscni__Identity *id;
	struct pb_prefixes pb;
	int err = 0, ret = 0;

	uv_mutex_lock(&p->identity_lock);
	id = state_identity_get(p->st, pod_uid, &err);
	if (!id) {
		ret = err < 0 ? err : -ENOENT;
		goto out;
	}
	if (id->registered == registered && (!registered || !addrs)) {
		identity_wipe_free(id);
		goto out;
	}
	id->registered = registered;
	if (registered && addrs) {
		size_t old_n = id->n_addresses;
		Tscni__IpPrefix **old = id->addresses;
		char *old_stable = id->stable_node_id;

		id->n_addresses = prefixes_to_pb(addrs, naddrs, &pb);
		id->addresses = pb.p;
		if (stable && *stable)
			id->stable_node_id = (char *)stable;
		ret = state_identity_put(p->st, id);
		id->n_addresses = old_n;
		id->addresses = old;
		id->stable_node_id = old_stable;
	} else {
		ret = state_identity_put(p->st, id);
	}
	identity_wipe_free(id);
out:
	uv_mutex_unlock(&p->identity_lock);
	return ret;
}

/* ------------------------------------------------------------- operations */

static void op_schedule(struct pods *p);
static void op_finish(struct op *op);
static void op_reply(struct op *op);
static void gc_account(struct gc_run *gc, const struct op *op);
static void gc_put(struct gc_run *gc);

static struct op *op_new(struct pods *p, enum op_kind kind, const char *network,
			 const char *container_id, const char *ifname)
{
	struct op *op = xcalloc(1, sizeof(*op));

	op->pods = p;
	op->kind = kind;
	op->network = xstrdup(network);
	op->container_id = xstrdup(container_id);
	strscpy(op->ifname, ifname, sizeof(op->ifname));
	record_key_filename(op->network, op->container_id, op->ifname, op->keyname,
			    sizeof(op->keyname));
	make_tag(op->tag, "-", op->keyname);
	op->meta.namespace_ = xstrdup("");
	op->meta.name = xstrdup("");
	op->meta.uid = xstrdup("");
	op->meta.infra_container_id = xstrdup("");
	op->cni_version = xstrdup("");
	return op;
}

static void op_free(struct op *op)
{
	free(op->network);
	free(op->container_id);
	free(op->netns_path);
	meta_free(&op->meta);
	free(op->cni_version);
	free(op->tombstone);
	attachment_free(op->next_att);
	sodium_memzero(op->machine_private, sizeof(op->machine_private));
	sodium_memzero(op->node_private, sizeof(op->node_private));
	free(op);
}

/* Appends op to the active list and starts what can start. */
static void op_enqueue(struct op *op)
{
	struct op **pp = &op->pods->ops;

	while (*pp)
		pp = &(*pp)->next;
	*pp = op;
	op_schedule(op->pods);
}

static bool key_active(struct pods *p, const char *keyname)
{
	for (struct op *o = p->ops; o; o = o->next)
		if (strcmp(o->keyname, keyname) == 0)
			return true;
	return false;
}

static void op_work(uv_work_t *w);
static void op_after_work(uv_work_t *w, int status);

/* Queues op's work on the threadpool. false when that failed: the op has
 * replied and finished (and op_finish rescheduled). */
static bool op_queue_work(struct op *op)
{
	struct pods *p = op->pods;
	int ret;

	op->work.data = op;
	ret = uv_queue_work(&p->sup->loop, &op->work, op_work, op_after_work);
	if (ret == 0)
		return true;
	op_fail(op, CNI_ERR_INTERNAL, "supervisor internal error", ret, "queue work");
	if (op->kind == OP_RELEASE) {
		gc_account(op->gc, op);
		gc_put(op->gc);
	}
	op_reply(op);
	op_finish(op);
	return false;
}

/* Does op release its attachment's worker? DEL and GC do; an ADD does
 * unless it is a retry in the same netns (answered without change). */
static bool op_stops_worker(const struct op *op)
{
	const struct attachment *a = op->cur;

	switch (op->kind) {
	case OP_DEL:
	case OP_RELEASE:
		return true;
	case OP_ADD:
		return a->netns_dev != op->netns_dev || a->netns_ino != op->netns_ino ||
		       a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY;
	default:
		return false;
	}
}

/* Starts every waiting op whose key has no earlier active op. */
static void op_schedule(struct pods *p)
{
	for (struct op *op = p->ops; op; op = op->next) {
		bool blocked = false;

		if (op->running)
			continue;
		for (struct op *e = p->ops; e != op; e = e->next) {
			if (strcmp(e->keyname, op->keyname) == 0) {
				blocked = true;
				break;
			}
		}
		if (blocked)
			continue;
		op->running = true;
		op->cur = table_find(p, op->keyname);
		if (op->cur && op->cur->worker && op_stops_worker(op)) {
			/* The worker goes first (it logs out while its data
			 * path still exists); the work follows its GONE. */
			log_info("%s: stopping worker %d first", op->tag,
				 (int)workers_pid(op->cur->worker));
			op->waiting_worker = true;
			op->logged_out = p->sup->cfg.control_url != NULL;
			op->cur->stop_op = op;
			workers_stop(op->cur->worker, true);
			continue;
		}
		if (!op_queue_work(op))
			return; /* op_finish rescheduled */
	}
}

static void add_work(struct op *op)
{
	struct pods *p = op->pods;
	struct attachment *cur = op->cur, *a = NULL;
	const char *pod_uid = *op->meta.uid ? op->meta.uid : op->container_id;
	const char *why = NULL;
	int nsfd = -1, tun_fd = -1, ifindex = 0, ret;
	dev_t dev;
	ino_t ino;

	/* A replaced attachment's worker logged the node out: the new worker
	 * registers again, with the auth key. */
	if (op->logged_out && cur) {
		ret = identity_record(p, cur->pod_uid, false, NULL, 0, NULL);
		if (ret < 0 && ret != -ENOENT)
			log_warn_r(ret, "%s: mark the identity logged out", op->tag);
	}
	ret = identity_ensure(op, pod_uid);
	if (ret < 0) {
		op_fail(op, errno_cni_code(ret), "cannot read or write the pod's identity", ret,
			"identity of pod %s", op->tag);
		return;
	}

	if (cur && cur->netns_dev == op->netns_dev && cur->netns_ino == op->netns_ino &&
	    cur->state == TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY) {
		/* A retried ADD. When ts0 is still there, it gets the same
		 * answer as the first; otherwise (the supervisor restarted
		 * and its fd custody went with it) ts0 is rebuilt below. */
		char detail[DETAIL_LEN];

		ret = netns_reopen(op->netns_path, op->netns_dev, op->netns_ino, &nsfd);
		if (ret == 1) {
			ret = netops_link_check(nsfd, cur->interface_name, 0, NULL, 0, detail,
						sizeof(detail));
			close(nsfd);
			nsfd = -1;
			if (ret != -ENOENT) {
				memcpy(op->addrs, cur->addrs, sizeof(op->addrs));
				op->naddrs = cur->naddrs;
				op->addresses_pending = cur->naddrs == 0;
				log_info("%s: retried ADD, same result", op->tag);
				return;
			}
			log_info("%s: retried ADD, %s is missing: rebuilding it", op->tag,
				 cur->interface_name);
		}
	}
	if (cur) {
		/* Another netns (a lost DEL), or a half-made or vanished ts0:
		 * release the old attachment before building the new one. */
		log_info("%s: releasing the previous attachment of this key (%s)", op->tag,
			 cur->netns_ino != op->netns_ino ? "netns replaced" : "rebuild");
		ret = release(p, cur, &why);
		if (ret < 0) {
			op_fail(op, errno_cni_code(ret), "cannot release the previous attachment",
				ret, "%s", why);
			return;
		}
		op->replace = true;
	}

	ret = netns_open(op->netns_path, &nsfd, &dev, &ino);
	if (ret == -ENOENT || ret == -ENOTNAM) {
		op_fail(op, CNI_ERR_NETNS, "the pod's network namespace does not exist", ret, "%s",
			op->netns_path);
		return;
	}
	if (ret < 0) {
		op_fail(op, errno_cni_code(ret), "cannot open the pod's network namespace", ret,
			"%s", op->netns_path);
		return;
	}
	if (netns_is_self(dev, ino)) {
		op_fail(op, CNI_ERR_BAD_NETNS,
			"the network namespace is the supervisor's own (the host's)", 0,
			"%s: refusing to create %s there", op->netns_path, op->interface_name);
		goto out;
	}
	if ((uint64_t)dev != op->netns_dev || (uint64_t)ino != op->netns_ino) {
		op_fail(op, CNI_ERR_NETNS, "the pod's network namespace changed", 0,
			"%s is now dev %ju inode %ju, the plugin saw dev %" PRIu64
			" inode %" PRIu64,
			op->netns_path, (uintmax_t)dev, (uintmax_t)ino, op->netns_dev,
			op->netns_ino);
		goto out;
	}

	/* Intent before any network change: a supervisor killed from here on
	 * leaves a record that startup, a DEL or the reconciler undoes. */
	a = attachment_from_op(op, pod_uid);
	ret = attachment_save(p, a);
	if (ret < 0) {
		op_fail(op, errno_cni_code(ret), "cannot write the attachment record", ret,
			"intent");
		attachment_free(a);
		goto out;
	}
	ret = netops_tun_create(nsfd, op->interface_name, NETOPS_MTU, &tun_fd, &ifindex, &why);
	if (ret == -EEXIST) {
		op_fail(op, CNI_ERR_IF_EXISTS, "ts0 already exists in the pod's network namespace",
			0, "%s exists in %s and was left alone", op->interface_name,
			op->netns_path);
		goto rollback;
	}
	if (ret < 0) {
		op_fail(op, errno_cni_code(ret), "cannot create the pod's interface", ret, "%s",
			why ? why : "create the TUN device");
		goto rollback;
	}
	a->tun_fd = tun_fd;
	a->ifindex = (uint32_t)ifindex;
	a->state = TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY;
	ret = attachment_save(p, a);
	if (ret < 0) {
		op_fail(op, errno_cni_code(ret), "cannot write the attachment record", ret,
			"ready");
		goto rollback;
	}
	log_info("%s: %s created in %s (ifindex %d)", op->tag, op->interface_name, op->netns_path,
		 ifindex);
	op->next_att = a;
	op->replace = true;
	op->addresses_pending = true; /* until the worker reports Ready */
	goto out;

rollback:
	if (a->tun_fd >= 0) {
		close(a->tun_fd);
		a->tun_fd = -1;
		netops_link_delete(nsfd, op->interface_name);
	}
	ret = attachment_unrecord(p, a);
	if (ret < 0)
		log_err_r(ret, "%s: roll back: remove the intent record", op->tag);
	attachment_free(a);
out:
	if (nsfd >= 0)
		close(nsfd);
}

static void del_work(struct op *op)
{
	const char *why = NULL;
	int ret;

	if (!op->cur) {
		op->existed = false;
	} else {
		op->existed = true;
		ret = release(op->pods, op->cur, &why);
		if (ret < 0) {
			op_fail(op, errno_cni_code(ret), "cannot release the attachment", ret, "%s",
				why);
			return;
		}
		op->replace = true;
		op->released = true;
		log_info("%s: released", op->tag);
		if (op->logged_out) {
			ret = identity_record(op->pods, op->cur->pod_uid, false, NULL, 0, NULL);
			if (ret < 0 && ret != -ENOENT)
				log_warn_r(ret, "%s: mark the identity logged out", op->tag);
		}
	}
	if (op->tombstone) {
		ret = state_tombstone_remove(op->pods->st, op->tombstone);
		if (ret < 0 && ret != -ENOENT)
			log_warn_r(ret, "%s: remove tombstone", op->tag);
	}
}

static void check_work(struct op *op)
{
	struct attachment *cur = op->cur;
	const char *path = op->netns_path && *op->netns_path ? op->netns_path : NULL;
	int nsfd, ret;

	if (!cur) {
		op_fail(op, CNI_ERR_CHECK, "no record of this attachment", 0,
			"the supervisor holds no attachment for %s", op->keyname);
		return;
	}
	if (path && strcmp(path, cur->netns_path) != 0) {
		op_fail(op, CNI_ERR_CHECK, "the pod's network namespace changed", 0,
			"the attachment was made in %s, CHECK names %s", cur->netns_path, path);
		return;
	}
	ret = netns_reopen(cur->netns_path, cur->netns_dev, cur->netns_ino, &nsfd);
	if (ret == 0) {
		op_fail(op, CNI_ERR_CHECK, "the pod's network namespace is gone", 0,
			"%s no longer exists or is another namespace", cur->netns_path);
		return;
	}
	if (ret < 0) {
		op_fail(op, errno_cni_code(ret), "cannot open the pod's network namespace", ret,
			"%s", cur->netns_path);
		return;
	}
	ret = netops_link_check(nsfd, cur->interface_name, NETOPS_MTU, op->expected, op->nexpected,
				op->detail, sizeof(op->detail));
	close(nsfd);
	if (ret < 0) {
		op->cni_code = CNI_ERR_CHECK;
		op->msg = "the pod's interface does not match what ADD made";
		if (!op->detail[0])
			snprintf(op->detail, sizeof(op->detail), "%s: %s", cur->interface_name,
				 strerror(-ret));
		return;
	}
	memcpy(op->addrs, cur->addrs, sizeof(op->addrs));
	op->naddrs = cur->naddrs;
}

static void release_work(struct op *op)
{
	const char *why = NULL;
	int ret;

	if (!op->cur)
		return; /* released by a DEL in the meantime */
	ret = release(op->pods, op->cur, &why);
	if (ret < 0) {
		op_fail(op, errno_cni_code(ret), "cannot release the attachment", ret, "%s", why);
		return;
	}
	op->replace = true;
	op->released = true;
	log_info("%s: released by GC", op->tag);
	if (op->logged_out) {
		ret = identity_record(op->pods, op->cur->pod_uid, false, NULL, 0, NULL);
		if (ret < 0 && ret != -ENOENT)
			log_warn_r(ret, "%s: mark the identity logged out", op->tag);
	}
}

static void probe_work(struct op *op)
{
	struct attachment *cur = op->cur;
	const char *why = NULL;
	int nsfd, ret;

	if (!cur)
		return;
	ret = netns_reopen(cur->netns_path, cur->netns_dev, cur->netns_ino, &nsfd);
	if (ret == 1) {
		close(nsfd);
		return;
	}
	if (ret < 0) {
		log_warn_r(ret, "%s: reconcile: open %s", cur->tag, cur->netns_path);
		return;
	}
	ret = release(op->pods, cur, &why);
	if (ret < 0) {
		log_warn_r(ret, "%s: reconcile: netns gone, %s", cur->tag, why);
		return;
	}
	op->replace = true;
	op->released = true;
	log_info("%s: netns %s gone without DEL: released", cur->tag, cur->netns_path);
}

static void save_work(struct op *op)
{
	int ret;

	if (!op->cur || op->cur->id != op->save_id)
		return; /* released or replaced in the meantime */
	ret = attachment_save_worker(op->pods, op->cur, &op->save_wi, op->save_uid);
	if (ret < 0)
		log_warn_r(ret, "%s: record the worker's identity", op->tag);
	if (op->save_ident) {
		ret = identity_record(op->pods, op->cur->pod_uid, true, op->save_addrs,
				      op->save_naddrs, op->save_stable);
		if (ret < 0)
			log_warn_r(ret, "%s: record the node's addresses in the identity", op->tag);
	}
}

static void op_work(uv_work_t *w)
{
	struct op *op = w->data;

	switch (op->kind) {
	case OP_SAVE:
		save_work(op);
		break;
	case OP_ADD:
		add_work(op);
		break;
	case OP_DEL:
		del_work(op);
		break;
	case OP_CHECK:
		check_work(op);
		break;
	case OP_RELEASE:
		release_work(op);
		break;
	case OP_PROBE:
		probe_work(op);
		break;
	}
}

/* ------------------------------------------------------------------ replies */

static void request_reply(struct pods_request *r, const Tscni__CniReply *rep)
{
	if (!r)
		return;
	if (r->fn)
		r->fn(r->arg, rep);
	free(r);
}

static void reply_error(struct pods_request *r, uint32_t code, const char *msg, const char *detail)
{
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__Error e = TSCNI__ERROR__INIT;

	e.cni_code = code;
	e.msg = (char *)msg;
	e.details = (char *)detail;
	rep.protocol_version = CNI_PROTOCOL_VERSION;
	rep.body_case = TSCNI__CNI_REPLY__BODY_ERROR;
	rep.error = &e;
	request_reply(r, &rep);
}

static void op_reply(struct op *op)
{
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__AddReply add = TSCNI__ADD_REPLY__INIT;
	Tscni__DelReply del = TSCNI__DEL_REPLY__INIT;
	Tscni__CheckReply check = TSCNI__CHECK_REPLY__INIT;
	struct pb_prefixes addrs;

	if (!op->req)
		return;
	if (op->cni_code) {
		reply_error(op->req, op->cni_code, op->msg, op->detail);
		op->req = NULL;
		return;
	}
	rep.protocol_version = CNI_PROTOCOL_VERSION;
	switch (op->kind) {
	case OP_ADD:
		add.interface_name = op->interface_name;
		add.mtu = NETOPS_MTU;
		add.n_addresses = prefixes_to_pb(op->addrs, op->naddrs, &addrs);
		add.addresses = addrs.p;
		add.addresses_pending = op->addresses_pending;
		rep.body_case = TSCNI__CNI_REPLY__BODY_ADD;
		rep.add = &add;
		break;
	case OP_DEL:
		del.existed = op->existed;
		rep.body_case = TSCNI__CNI_REPLY__BODY_DEL;
		rep.del = &del;
		break;
	case OP_CHECK:
		check.n_addresses = prefixes_to_pb(op->addrs, op->naddrs, &addrs);
		check.addresses = addrs.p;
		rep.body_case = TSCNI__CNI_REPLY__BODY_CHECK;
		rep.check = &check;
		break;
	default:
		return;
	}
	request_reply(op->req, &rep);
	op->req = NULL;
}

/* Counts one finished release of a GC. */
static void gc_account(struct gc_run *gc, const struct op *op)
{
	if (op->cni_code) {
		gc->nfailed_total++;
		if (gc->nfailed < GC_FAILED_MAX)
			gc->failed[gc->nfailed++] =
				xasprintf("%s: %s: %s", op->keyname, op->msg, op->detail);
	} else if (op->released) {
		gc->released++;
	}
}

/* Drops one pending release (or the submitter's hold); the last one
 * replies and frees the run. */
static void gc_put(struct gc_run *gc)
{
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__GcReply g = TSCNI__GC_REPLY__INIT;

	if (--gc->pending > 0)
		return;
	if (gc->nfailed_total > gc->nfailed) {
		/* The last slot says how many more failed, instead of one. */
		free(gc->failed[gc->nfailed - 1]);
		gc->failed[gc->nfailed - 1] = xasprintf(
			"... and %u more", (unsigned int)(gc->nfailed_total - gc->nfailed + 1));
	}
	g.released = gc->released;
	g.n_failed = gc->nfailed;
	g.failed = gc->failed;
	rep.protocol_version = CNI_PROTOCOL_VERSION;
	rep.body_case = TSCNI__CNI_REPLY__BODY_GC;
	rep.gc = &g;
	log_info("gc: released %u, %u failed", gc->released, gc->nfailed_total);
	request_reply(gc->req, &rep);
	for (size_t i = 0; i < gc->nfailed; i++)
		free(gc->failed[i]);
	free(gc);
}

/* The ADD's wait for its worker ends: Ready, timeout or shutdown. */
static void sync_end(struct op *op, bool timed_out)
{
	struct attachment *a = table_find(op->pods, op->keyname);

	if (a && a->sync_op == op) {
		a->sync_op = NULL;
		memcpy(op->addrs, a->addrs, sizeof(op->addrs));
		op->naddrs = a->naddrs;
	}
	op->addresses_pending = timed_out || op->naddrs == 0;
	if (timed_out)
		log_info("%s: syncTimeout reached, replying with addresses to follow", op->tag);
	uv_timer_stop(&op->sync_timer);
	op_reply(op);
	op_finish(op);
}

static void sync_timer_cb(uv_timer_t *t)
{
	struct op *op = t->data;

	if (!op->saving) /* else Ready came: the save's end replies */
		sync_end(op, true);
}

static void sync_save_work(uv_work_t *w)
{
	save_work(w->data);
}

static void sync_save_after(uv_work_t *w, int status)
{
	struct op *op = w->data;

	op->saving = false;
	op->cur = NULL;
	sync_end(op, false);
}

/* The ADD's worker is Ready: its identity goes into the record before the
 * ADD replies, so that a supervisor killed right after the reply finds the
 * worker it must adopt. 0, or a negative errno (nothing started). */
static int sync_save_begin(struct op *op, struct attachment *a)
{
	int ret;

	if (op->saving)
		return -EBUSY;
	op->cur = a;
	op->save_id = a->id;
	op->save_wi = a->wi;
	op->save_uid = a->worker_uid;
	op->saving = true;
	op->work.data = op;
	ret = uv_queue_work(&op->pods->sup->loop, &op->work, sync_save_work, sync_save_after);
	if (ret < 0) {
		op->saving = false;
		op->cur = NULL;
	}
	return ret;
}

/* ADD has made ts0: wait for the control plane, at most syncTimeout. */
static void sync_begin(struct op *op, struct attachment *a)
{
	uint32_t ms = op->sync_timeout_ms ? op->sync_timeout_ms : SYNC_TIMEOUT_DEFAULT_MS;
	int ret;

	if (ms > SYNC_TIMEOUT_MAX_MS)
		ms = SYNC_TIMEOUT_MAX_MS;
	ret = uv_timer_init(&op->pods->sup->loop, &op->sync_timer);
	if (ret < 0) {
		log_warn_r(ret, "%s: sync timer", op->tag);
		op_reply(op);
		op_finish(op);
		return;
	}
	op->sync_timer_open = true;
	op->sync_timer.data = op;
	a->sync_op = op;
	uv_timer_start(&op->sync_timer, sync_timer_cb, ms, 0);
	/* The worker (spawned by op_after_work) reports Ready through
	 * pods_attachment_ready(), which ends this wait before the timer does.
	 * An attachment served by its pod's worker elsewhere has nothing to
	 * wait for once that worker is up. */
	if (a->worker ? a->worker_ready : pod_worker_up(op->pods, a->pod_uid))
		pods_attachment_ready(op->pods, a);
}

void pods_attachment_ready(struct pods *p, struct attachment *att)
{
	if (att->sync_op && !att->sync_op->saving)
		sync_end(att->sync_op, false);
}

/* ------------------------------------------------------------ worker netops */

static void netop_work(uv_work_t *w)
{
	struct netop_job *j = w->data;
	int nsfd, ret;

	ret = netns_reopen(j->netns_path, j->netns_dev, j->netns_ino, &nsfd);
	if (ret <= 0) {
		j->err = ret < 0 ? ret : -ENODEV;
		j->why = ret < 0 ? "cannot open the pod's network namespace"
				 : "the pod's network namespace is gone";
		return;
	}
	switch (j->kind) {
	case WORKER_NETOP_ADDR_ADD:
		ret = netops_addr_add(nsfd, (int)j->ifindex, &j->prefix);
		break;
	case WORKER_NETOP_ADDR_DEL:
		ret = netops_addr_del(nsfd, (int)j->ifindex, &j->prefix);
		break;
	case WORKER_NETOP_ROUTE_ADD:
		ret = netops_route_add(nsfd, (int)j->ifindex, &j->prefix);
		break;
	case WORKER_NETOP_ROUTE_DEL:
		ret = netops_route_del(nsfd, (int)j->ifindex, &j->prefix);
		break;
	default:
		ret = -EOPNOTSUPP;
		break;
	}
	close(nsfd);
	j->err = ret < 0 ? ret : 0;
	j->why = ret < 0 ? "netlink refused the change" : NULL;
}

static void netop_after(uv_work_t *w, int status)
{
	struct netop_job *j = w->data;
	struct pods *p = j->pods;

	for (struct netop_job **pp = &p->netops; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	if (status < 0) {
		j->err = status;
		j->why = "cancelled";
	}
	if (j->err < 0) {
		char text[IP_PREFIX_STRLEN];

		log_warn_r(j->err, "pod %s: netop %d %s on ifindex %u: %s",
			   j->w ? workers_pod_uid(j->w) : "-", (int)j->kind,
			   ip_prefix_format(&j->prefix, text, sizeof(text)), j->ifindex, j->why);
	}
	if (j->w)
		workers_netop_reply(j->w, j->id, j->err, j->why);
	free(j->netns_path);
	free(j);
}

void pods_on_netop(struct worker *w, uint32_t id, enum worker_netop op, const struct ip_prefix *pfx,
		   void *arg)
{
	struct supervisor *sup = arg;
	struct pods *p = sup->pods;
	struct attachment *a = NULL;
	struct netop_job *j;
	int ret;

	if (!p || p->stopping) {
		workers_netop_reply(w, id, -EAGAIN, "the supervisor is starting or stopping");
		return;
	}
	for (a = p->atts; a && a->worker != w; a = a->next)
		;
	if (!a || a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY || !a->ifindex) {
		workers_netop_reply(w, id, -ENODEV, "no interface for this worker");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->pods = p;
	j->w = w;
	j->id = id;
	j->kind = op;
	j->prefix = *pfx;
	j->netns_path = xstrdup(a->netns_path);
	j->netns_dev = a->netns_dev;
	j->netns_ino = a->netns_ino;
	j->ifindex = a->ifindex;
	j->work.data = j;
	ret = uv_queue_work(&sup->loop, &j->work, netop_work, netop_after);
	if (ret < 0) {
		workers_netop_reply(w, id, ret, "supervisor internal error");
		free(j->netns_path);
		free(j);
		return;
	}
	j->next = p->netops;
	p->netops = j;
}

static void op_after_work(uv_work_t *w, int status)
{
	struct op *op = w->data;
	struct pods *p = op->pods;

	if (op->replace) {
		if (op->cur) {
			table_remove(p, op->cur);
			attachment_retire(p, op->cur);
			op->cur = NULL;
		}
		if (op->next_att) {
			table_insert(p, op->next_att);
			op->next_att = NULL;
		}
	}
	if (op->kind == OP_RELEASE) {
		gc_account(op->gc, op);
		gc_put(op->gc);
		op_finish(op);
		return;
	}
	if (op->kind == OP_SAVE || op->kind == OP_PROBE) {
		op_finish(op);
		return;
	}
	if (op->kind == OP_CHECK && op->cni_code == 0 && op->cur &&
	    !pod_worker_up(p, op->cur->pod_uid)) {
		struct attachment *wa = pod_worker_att(p, op->cur->pod_uid);

		op_fail(op, CNI_ERR_WORKER, "worker not running", 0, "pod %s: %s", op->cur->pod_uid,
			!wa ? "the pod has no worker" : "its worker is being respawned");
	}
	if (op->kind == OP_ADD && op->cni_code == 0 && op->replace && !p->stopping) {
		struct attachment *a = table_find(p, op->keyname);

		if (a) {
			int ret = op->have_keys ? attachment_spawn(p, a, op->machine_private,
								   op->node_private, op->hostname,
								   op->registered)
						: -ENOKEY;

			if (ret < 0) {
				op_fail(op,
					errno_cni_code(ret) == CNI_ERR_TRY_AGAIN ? CNI_ERR_TRY_AGAIN
										 : CNI_ERR_INTERNAL,
					"cannot start the pod's worker", ret, "%s", a->tag);
				log_warn("%s: ADD failed (code %u): %s: %s", op->tag, op->cni_code,
					 op->msg, op->detail);
				op_reply(op);
				op_finish(op);
				return;
			}
			sync_begin(op, a);
			return;
		}
	}
	if (op->kind == OP_ADD && op->cni_code)
		log_warn("%s: ADD failed (code %u): %s: %s", op->tag, op->cni_code, op->msg,
			 op->detail);
	op_reply(op);
	op_finish(op);
}

static void op_closed(uv_handle_t *h)
{
	op_free(h->data);
}

/* Takes op off the active list, frees it, and starts what it held up. */
static void op_finish(struct op *op)
{
	struct pods *p = op->pods;

	for (struct op **pp = &p->ops; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	}
	/* Every request gets exactly one reply, even from a path that forgot. */
	if (op->req) {
		reply_error(op->req, CNI_ERR_INTERNAL, "supervisor internal error",
			    "the operation ended without a reply");
		op->req = NULL;
	}
	if (op->sync_timer_open)
		uv_close((uv_handle_t *)&op->sync_timer, op_closed);
	else
		op_free(op);
	op_schedule(p);
}

/* ------------------------------------------------------------------- submit */

static struct pods_request *request_new(pods_reply_fn *fn, void *arg)
{
	struct pods_request *r = xcalloc(1, sizeof(*r));

	r->fn = fn;
	r->arg = arg;
	return r;
}

void pods_request_detach(struct pods_request *r)
{
	if (r)
		r->fn = NULL;
}

static int submit_add(struct pods *p, const Tscni__AddRequest *m, struct pods_request *r)
{
	struct op *op;

	if (!valid_ifname(m->interface_name))
		return -EINVAL;
	op = op_new(p, OP_ADD, m->key->network, m->key->container_id, m->key->ifname);
	op->req = r;
	op->netns_path = xstrdup(m->netns_path);
	op->netns_dev = m->netns_dev;
	op->netns_ino = m->netns_ino;
	strscpy(op->interface_name, m->interface_name, sizeof(op->interface_name));
	meta_free(&op->meta);
	meta_from_pb(&op->meta, m->pod);
	free(op->cni_version);
	op->cni_version = dup_or_empty(m->cni_version);
	op->sync_timeout_ms = m->sync_timeout_ms;
	make_tag(op->tag, *op->meta.uid ? op->meta.uid : op->container_id, op->keyname);
	op_enqueue(op);
	return 0;
}

static void submit_del(struct pods *p, const Tscni__DelRequest *m, struct pods_request *r)
{
	struct op *op = op_new(p, OP_DEL, m->key->network, m->key->container_id, m->key->ifname);
	struct attachment *a = table_find(p, op->keyname);

	if (a)
		memcpy(op->tag, a->tag, sizeof(op->tag));
	op->req = r;
	op_enqueue(op);
}

static void submit_check(struct pods *p, const Tscni__CheckRequest *m, struct pods_request *r)
{
	struct op *op = op_new(p, OP_CHECK, m->key->network, m->key->container_id, m->key->ifname);
	struct attachment *a = table_find(p, op->keyname);

	if (a)
		memcpy(op->tag, a->tag, sizeof(op->tag));
	op->req = r;
	op->netns_path = dup_or_empty(m->netns_path);
	strscpy(op->interface_name, m->interface_name ? m->interface_name : "",
		sizeof(op->interface_name));
	op->nexpected =
		prefixes_from_pb(m->expected_addresses, m->n_expected_addresses, op->expected);
	op_enqueue(op);
}

struct gc_pair {
	const char *container_id;
	const char *ifname;
};

static int gc_pair_cmp(const void *a, const void *b)
{
	const struct gc_pair *x = a, *y = b;
	int c = strcmp(x->container_id, y->container_id);

	return c ? c : strcmp(x->ifname, y->ifname);
}

static void submit_gc(struct pods *p, const Tscni__GcRequest *m, struct pods_request *r)
{
	struct gc_run *gc = xcalloc(1, sizeof(*gc));
	struct gc_pair *valid = NULL;
	struct op *first = NULL, **tail = &first;
	size_t n = m->n_valid;

	gc->req = r;
	if (n) {
		valid = xcalloc(n, sizeof(*valid));
		for (size_t i = 0; i < n; i++) {
			valid[i].container_id = m->valid[i]->container_id;
			valid[i].ifname = m->valid[i]->ifname;
		}
		qsort(valid, n, sizeof(*valid), gc_pair_cmp);
	} else {
		log_warn("gc: network %s: empty valid list, releasing all its attachments",
			 m->network);
	}
	/* Count first, then enqueue: a release that completes at once must
	 * not see pending reach zero while others are still to come. */
	for (struct attachment *a = p->atts; a; a = a->next) {
		struct gc_pair key = {a->container_id, a->ifname};

		if (strcmp(a->network, m->network) != 0)
			continue;
		if (n && bsearch(&key, valid, n, sizeof(*valid), gc_pair_cmp))
			continue;
		struct op *op = op_new(p, OP_RELEASE, a->network, a->container_id, a->ifname);

		memcpy(op->tag, a->tag, sizeof(op->tag));
		op->gc = gc;
		*tail = op;
		tail = &op->next;
		gc->pending++;
	}
	free(valid);
	gc->pending++; /* held until every op is queued */
	while (first) {
		struct op *op = first;

		first = op->next;
		op->next = NULL;
		op_enqueue(op);
	}
	/* Drop the hold: replies now, or when the last release completes. */
	gc_put(gc);
}

int pods_submit(struct pods *p, const Tscni__CniRequest *req, pods_reply_fn *fn, void *arg,
		struct pods_request **out)
{
	struct pods_request *r;
	int ret = 0;

	*out = NULL;
	switch (req->body_case) {
	case TSCNI__CNI_REQUEST__BODY_ADD:
	case TSCNI__CNI_REQUEST__BODY_DEL:
	case TSCNI__CNI_REQUEST__BODY_CHECK:
	case TSCNI__CNI_REQUEST__BODY_GC:
	case TSCNI__CNI_REQUEST__BODY_ROLL_WORKERS:
		break;
	default:
		return -EINVAL;
	}
	r = request_new(fn, arg);
	/* The reply must come later than this call (see pods.h); the pointer
	 * is handed out first so that a GC with nothing to release, which
	 * replies at once below, does not find a caller unprepared. */
	*out = r;
	switch (req->body_case) {
	case TSCNI__CNI_REQUEST__BODY_ADD:
		ret = submit_add(p, req->add, r);
		break;
	case TSCNI__CNI_REQUEST__BODY_DEL:
		submit_del(p, req->del, r);
		break;
	case TSCNI__CNI_REQUEST__BODY_CHECK:
		submit_check(p, req->check, r);
		break;
	case TSCNI__CNI_REQUEST__BODY_ROLL_WORKERS:
		submit_roll(p, r);
		break;
	default:
		submit_gc(p, req->gc, r);
		break;
	}
	if (ret < 0) {
		*out = NULL;
		free(r);
	}
	return ret;
}

/* -------------------------------------------------------------------- roll */

static void roll_closed(uv_handle_t *h)
{
	struct roll_run *r = h->data;

	for (size_t i = 0; i < r->nfailed; i++)
		free(r->failed[i]);
	free(r->ids);
	free(r);
}

/* Replies with what was rolled and ends the run. */
static void roll_finish(struct pods *p, const char *abort_why)
{
	struct roll_run *r = p->roll;
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__RollWorkersReply rw = TSCNI__ROLL_WORKERS_REPLY__INIT;

	p->roll = NULL;
	uv_timer_stop(&r->timer);
	if (abort_why && r->nfailed < ROLL_FAILED_MAX)
		r->failed[r->nfailed++] = xasprintf("roll stopped: %s", abort_why);
	rw.rolled = r->rolled;
	rw.n_failed = r->nfailed;
	rw.failed = r->failed;
	rep.protocol_version = CNI_PROTOCOL_VERSION;
	rep.body_case = TSCNI__CNI_REPLY__BODY_ROLL_WORKERS;
	rep.roll_workers = &rw;
	log_info("roll-workers: %u replaced, %zu failed", r->rolled, r->nfailed);
	request_reply(r->req, &rep);
	uv_close((uv_handle_t *)&r->timer, roll_closed);
}

static void roll_fail(struct roll_run *r, const struct attachment *a, const char *why)
{
	if (r->nfailed < ROLL_FAILED_MAX)
		r->failed[r->nfailed++] = xasprintf("%s: %s", a ? a->pod_uid : "?", why);
}

static struct attachment *table_find_id(struct pods *p, uint64_t id)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->id == id)
			return a;
	return NULL;
}

static void roll_timeout_start(uv_timer_t *t)
{
	struct roll_run *r = t->data;

	roll_step(r->pods, true, NULL);
}

static void roll_timeout(uv_timer_t *t)
{
	struct roll_run *r = t->data;

	roll_step(r->pods, false, "no Ready in time");
}

/* The current worker is done (ok: its replacement is Ready): on to the
 * next one, or the reply. */
static void roll_step(struct pods *p, bool ok, const char *why)
{
	struct roll_run *r = p->roll;

	if (r->cur) {
		struct attachment *a = table_find_id(p, r->cur);

		uv_timer_stop(&r->timer);
		if (ok) {
			r->rolled++;
			log_info("roll-workers: %s: worker %d replaced", a ? a->tag : "?",
				 a && a->worker ? (int)workers_pid(a->worker) : 0);
		} else {
			roll_fail(r, a, why ? why : "failed");
		}
		r->cur = 0;
	}
	while (r->next < r->n) {
		struct attachment *a = table_find_id(p, r->ids[r->next++]);
		int ret;

		if (!a || !a->worker)
			continue; /* released or stopped since the roll began */
		ret = workers_roll(a->worker);
		if (ret < 0) {
			roll_fail(r, a, "no running process to replace");
			continue;
		}
		r->cur = a->id;
		a->worker_ready = false;
		uv_timer_start(&r->timer, roll_timeout, ROLL_STEP_TIMEOUT_MS, 0);
		return;
	}
	roll_finish(p, NULL);
}

static void submit_roll(struct pods *p, struct pods_request *req)
{
	struct roll_run *r;
	size_t n = 0;

	if (p->roll || p->stopping) {
		reply_error(req, CNI_ERR_TRY_AGAIN,
			    p->roll ? "a roll of the workers is already running"
				    : "the supervisor is shutting down",
			    "try again later");
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->req = req;
	for (struct attachment *a = p->atts; a; a = a->next)
		n++;
	r->ids = xcalloc(n ? n : 1, sizeof(*r->ids));
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->worker)
			r->ids[r->n++] = a->id;
	uv_timer_init(&p->sup->loop, &r->timer);
	r->pods = p;
	r->timer.data = r;
	p->roll = r;
	/* Later spawns come from the worker binary installed now. */
	if (p->sup->workers && workers_zygote_reexec(p->sup->workers) == 0)
		log_info("roll-workers: zygote restarted from the installed binary");
	log_info("roll-workers: replacing %zu workers one at a time", r->n);
	/* Replies later than this call, as pods_submit promises. */
	uv_timer_start(&r->timer, roll_timeout_start, 0, 0);
}

/* ------------------------------------------------------------------ startup */

struct load_ctx {
	struct pods *p;
	struct tomb_entry *tombs;
	size_t ntombs;
	size_t cap;
	unsigned int identities;
	unsigned int jobs;
};

static void load_identity(void *arg, const Tscni__Identity *id)
{
	struct load_ctx *ctx = arg;

	ctx->identities++;
}

static void load_attachment(void *arg, const Tscni__Attachment *m)
{
	struct load_ctx *ctx = arg;
	struct attachment *a = attachment_from_pb(m);

	if (table_find(ctx->p, a->keyname)) {
		log_warn("%s: second record for one key, ignored", a->tag);
		attachment_free(a);
		return;
	}
	table_insert(ctx->p, a);
}

static void tomb_entry_clear(struct tomb_entry *t)
{
	free(t->filename);
	free(t->network);
	free(t->container_id);
	free(t->netns_path);
}

static void tombs_add(struct tomb_entry **v, size_t *n, size_t *cap, const Tscni__Tombstone *t,
		      const char *filename)
{
	struct tomb_entry *e;

	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*v = xrealloc(*v, *cap * sizeof(**v));
	}
	e = &(*v)[(*n)++];
	e->filename = xstrdup(filename);
	e->network = xstrdup(t->key->network);
	e->container_id = xstrdup(t->key->container_id);
	strscpy(e->ifname, t->key->ifname, sizeof(e->ifname));
	e->netns_path = dup_or_empty(t->netns_path);
	strscpy(e->interface_name, t->interface_name ? t->interface_name : "",
		sizeof(e->interface_name));
}

static void load_tombstone(void *arg, const Tscni__Tombstone *t, const char *filename)
{
	struct load_ctx *ctx = arg;

	tombs_add(&ctx->tombs, &ctx->ntombs, &ctx->cap, t, filename);
}

static void load_job(void *arg, const Tscni__Job *job)
{
	struct load_ctx *ctx = arg;

	ctx->jobs++;
}

/* Startup's release of one attachment (the loop is not running yet). */
static void startup_release(struct pods *p, struct attachment *a, const char *reason)
{
	const char *why = NULL;
	int ret = release(p, a, &why);

	if (ret < 0) {
		log_warn_r(ret, "%s: %s, but %s failed; the reconciler retries", a->tag, reason,
			   why);
		return;
	}
	log_info("%s: %s: released", a->tag, reason);
	table_remove(p, a);
	attachment_free(a);
}

/* The pod's keys from its identity record: 0, or a negative errno. */
static int identity_keys(struct pods *p, const char *pod_uid, uint8_t *machine, uint8_t *node,
			 char *hostname, size_t hlen, bool *registered)
{
	Tscni__Identity *id;
	int err = 0, ret = 0;

	id = state_identity_get(p->st, pod_uid, &err);
	if (!id)
		return err < 0 ? err : -ENOENT;
	if (id->machine_private.len != KEY_LEN || id->node_private.len != KEY_LEN) {
		ret = -EINVAL;
	} else {
		memcpy(machine, id->machine_private.data, KEY_LEN);
		memcpy(node, id->node_private.data, KEY_LEN);
		strscpy(hostname, id->hostname ? id->hostname : "", hlen);
		*registered = id->registered;
	}
	if (id->machine_private.data)
		sodium_memzero(id->machine_private.data, id->machine_private.len);
	if (id->node_private.data)
		sodium_memzero(id->node_private.data, id->node_private.len);
	tscni__identity__free_unpacked(id, NULL);
	return ret;
}

/* Startup: a's worker adopted (adopt: the record names one), or else ts0
 * rebuilt and a new worker spawned with the pod's keys. Failures are logged
 * and leave a without a worker (CHECK says so; DEL releases it). */
static void startup_worker(struct pods *p, struct attachment *a, bool adopt)
{
	struct ifindex_query q = {.name = a->interface_name};
	uint8_t machine[KEY_LEN], node[KEY_LEN];
	char hostname[HOST_MAX_LEN + 1];
	struct worker_spec spec;
	const char *why = NULL;
	int nsfd = -1, tun_fd = -1, ifindex = 0, ret;
	bool registered = false;
	const int no_fd = -1;
	uint32_t slot;

	if (a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY || !p->sup->workers)
		return;
	ret = identity_keys(p, a->pod_uid, machine, node, hostname, sizeof(hostname), &registered);
	if (ret < 0) {
		log_err_r(ret, "%s: no usable identity for the pod's worker", a->tag);
		return;
	}
	if (adopt) {
		if (pod_worker_att(p, a->pod_uid))
			goto out; /* another attachment of the pod adopted it */
		ret = slot_get(p, a, &slot);
		if (ret < 0)
			goto out;
		spec_fill(p, a, &spec, slot, machine, node, hostname, registered);
		spec.tun_fd = -1;
		/* With a control plane it holds the pod's UDP socket too (its
		 * custody comes back from the worker: the fd here is a stand-in). */
		if (p->sup->cfg.control_url) {
			spec.extra_fds = &no_fd;
			spec.n_extra_fds = 1;
		}
		ret = workers_adopt(p->sup->workers, &spec, &a->wi, pods_on_worker, a, &a->worker);
		sodium_memzero(&spec, sizeof(spec));
		if (ret == 0) {
			struct worker_identity id;

			a->worker_ready = true;
			/* Custody is back: our own fd, if any, is one too many. */
			if (a->tun_fd >= 0) {
				close(a->tun_fd);
				a->tun_fd = -1;
			}
			if (workers_identity(a->worker, &id) == 0 && id.version != a->wi.version) {
				a->wi = id;
				ret = attachment_save_worker(p, a, &a->wi, a->worker_uid);
				if (ret < 0)
					log_warn_r(ret, "%s: record the worker", a->tag);
			}
			log_info("%s: worker %d adopted (protocol %u)", a->tag, (int)a->wi.pid,
				 a->wi.version);
		}
		if (ret == -EINVAL)
			log_warn("%s: the worker's spec is invalid: not adopted", a->tag);
		/* workers_adopt logged why it refused; pass 2 rebuilds. */
		goto out;
	}

	if (pod_worker_att(p, a->pod_uid) && a->tun_fd >= 0)
		goto out; /* served by the pod's worker, fd held here */
	ret = netns_reopen(a->netns_path, a->netns_dev, a->netns_ino, &nsfd);
	if (ret <= 0)
		goto out; /* gone: the reconciler releases it */
	ret = netns_run(nsfd, ifindex_in_ns, &q);
	if (ret > 0 && (uint32_t)ret == a->ifindex) {
		/* Our device, held by a process we could not verify as the
		 * pod's worker: it loses its TUN, the pod gets a new one. */
		log_warn("%s: %s (ifindex %d) is held by a process that was not adopted: "
			 "deleting it and starting a new worker",
			 a->tag, a->interface_name, ret);
		ret = netops_link_delete(nsfd, a->interface_name);
		if (ret < 0 && ret != -ENODEV) {
			log_err_r(ret, "%s: delete %s", a->tag, a->interface_name);
			goto out;
		}
	} else if (ret > 0) {
		log_warn("%s: a %s that is not ours (ifindex %d, ours was %u) is in the pod: "
			 "leaving it, no worker",
			 a->tag, a->interface_name, ret, a->ifindex);
		goto out;
	} else if (ret < 0) {
		log_warn_r(ret, "%s: look for %s", a->tag, a->interface_name);
		goto out;
	}
	ret = netops_tun_create(nsfd, a->interface_name, NETOPS_MTU, &tun_fd, &ifindex, &why);
	if (ret < 0) {
		log_err_r(ret, "%s: rebuild %s: %s", a->tag, a->interface_name,
			  why ? why : "create the TUN device");
		goto out;
	}
	if (a->tun_fd >= 0)
		close(a->tun_fd);
	a->tun_fd = tun_fd;
	a->ifindex = (uint32_t)ifindex;
	memset(&a->wi, 0, sizeof(a->wi));
	ret = attachment_save(p, a);
	if (ret < 0)
		log_warn_r(ret, "%s: record the rebuilt %s", a->tag, a->interface_name);
	ret = attachment_spawn(p, a, machine, node, hostname, registered);
	if (ret == 0)
		log_info("%s: %s rebuilt (ifindex %d), worker spawned", a->tag, a->interface_name,
			 ifindex);
out:
	if (nsfd >= 0)
		close(nsfd);
	sodium_memzero(machine, sizeof(machine));
	sodium_memzero(node, sizeof(node));
}

int pods_startup(struct pods *p)
{
	struct state_load_cb cb = {
		.identity = load_identity,
		.attachment = load_attachment,
		.tombstone = load_tombstone,
		.job = load_job,
	};
	struct load_ctx ctx = {.p = p};
	unsigned int damaged = 0, quarantined = 0;
	struct attachment *a, *next;
	int ret;

	cb.arg = &ctx;
	ret = state_load(p->st, &cb, &damaged, &quarantined);
	if (ret < 0) {
		log_err_r(ret, "load the state directory %s", state_dir(p->st));
		goto out;
	}
	log_info("state: %zu attachments, %u identities, %zu tombstones, %u jobs, %u damaged and "
		 "%u foreign records moved aside",
		 p->natts, ctx.identities, ctx.ntombs, ctx.jobs, damaged, quarantined);

	/* Each tombstone is a DEL the plugin could not deliver. */
	for (size_t i = 0; i < ctx.ntombs; i++) {
		struct tomb_entry *t = &ctx.tombs[i];
		char keyname[RECORD_KEYNAME_LEN];

		record_key_filename(t->network, t->container_id, t->ifname, keyname,
				    sizeof(keyname));
		a = table_find(p, keyname);
		if (a) {
			const char *why = NULL;

			ret = release(p, a, &why);
			if (ret < 0) {
				log_warn_r(ret, "%s: tombstone: %s; kept for the next round",
					   a->tag, why);
				continue;
			}
			log_info("%s: released by tombstone", a->tag);
			table_remove(p, a);
			attachment_free(a);
		}
		ret = state_tombstone_remove(p->st, t->filename);
		if (ret < 0 && ret != -ENOENT)
			log_warn_r(ret, "remove tombstone %s", t->filename);
	}

	/* Reconcile once: a netns that vanished or was replaced while we were
	 * away, and ADDs a killed supervisor left half-made. */
	for (a = p->atts; a; a = next) {
		int nsfd;

		next = a->next;
		if (a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY) {
			startup_release(p, a, "left half-made by a previous supervisor");
			continue;
		}
		ret = netns_reopen(a->netns_path, a->netns_dev, a->netns_ino, &nsfd);
		if (ret == 0) {
			startup_release(p, a, "netns gone");
			continue;
		}
		if (ret < 0) {
			log_warn_r(ret, "%s: open netns %s; kept", a->tag, a->netns_path);
			continue;
		}
		close(nsfd);
	}

	/* The workers: adopt those the records name first (their pods' other
	 * attachments must not take the worker), then rebuild the rest. */
	for (int pass = 0; pass < 2; pass++) {
		for (a = p->atts; a; a = next) {
			next = a->next;
			if (!a->worker && (pass == 1 || a->wi.pid > 0))
				startup_worker(p, a, pass == 0);
		}
	}
	ret = 0;
out:
	for (size_t i = 0; i < ctx.ntombs; i++)
		tomb_entry_clear(&ctx.tombs[i]);
	free(ctx.tombs);
	return ret;
}

/* --------------------------------------------------------------- reconciler */

/* Lists tombstones/ on the threadpool: the plugin may write one while the
 * supervisor runs but was briefly unreachable. */
static void tomb_scan_work(uv_work_t *w)
{
	struct tomb_scan *s = w->data;
	size_t cap = 0;
	char *path = xasprintf("%s/tombstones", state_dir(s->pods->st));
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *de;

	free(path);
	if (dfd < 0)
		return;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	while ((de = readdir(d)) && s->n < TOMBSTONE_SCAN_MAX) {
		Tscni__Tombstone *t;
		const char *why = NULL;
		int err = 0;

		if (de->d_name[0] == '.' || (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue;
		t = record_read_tombstone(dirfd(d), de->d_name, &err, &why);
		if (!t) {
			/* state_load moves it aside at the next start. */
			log_debug("tombstone %s unreadable: %s", de->d_name, why ? why : "");
			continue;
		}
		tombs_add(&s->ents, &s->n, &cap, t, de->d_name);
		tscni__tombstone__free_unpacked(t, NULL);
	}
	closedir(d);
}

static bool tombstone_active(struct pods *p, const char *filename)
{
	for (struct op *o = p->ops; o; o = o->next)
		if (o->tombstone && strcmp(o->tombstone, filename) == 0)
			return true;
	return false;
}

static void tomb_scan_after(uv_work_t *w, int status)
{
	struct tomb_scan *s = w->data;
	struct pods *p = s->pods;

	p->tomb_scan_running = false;
	for (size_t i = 0; i < s->n; i++) {
		struct tomb_entry *t = &s->ents[i];

		if (!p->stopping && !tombstone_active(p, t->filename)) {
			struct op *op = op_new(p, OP_DEL, t->network, t->container_id, t->ifname);
			struct attachment *a = table_find(p, op->keyname);

			if (a)
				memcpy(op->tag, a->tag, sizeof(op->tag));
			op->tombstone = xstrdup(t->filename);
			log_info("%s: tombstone found, performing its DEL", op->tag);
			op_enqueue(op);
		}
		tomb_entry_clear(t);
	}
	free(s->ents);
	free(s);
}

static void reconcile_cb(uv_timer_t *t)
{
	struct pods *p = t->data;

	if (p->stopping)
		return;
	for (struct attachment *a = p->atts; a; a = a->next) {
		if (key_active(p, a->keyname))
			continue; /* whatever runs there will settle it */
		struct op *op = op_new(p, OP_PROBE, a->network, a->container_id, a->ifname);

		memcpy(op->tag, a->tag, sizeof(op->tag));
		op_enqueue(op);
	}
	if (!p->tomb_scan_running) {
		struct tomb_scan *s = xcalloc(1, sizeof(*s));
		int ret;

		s->pods = p;
		s->work.data = s;
		ret = uv_queue_work(&p->sup->loop, &s->work, tomb_scan_work, tomb_scan_after);
		if (ret < 0) {
			log_warn_r(ret, "queue the tombstone scan");
			free(s);
			return;
		}
		p->tomb_scan_running = true;
	}
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

int pods_start(struct pods *p)
{
	uint64_t ms = (uint64_t)p->sup->cfg.reconcile_interval_s * 1000;
	int ret;

	ret = uv_timer_init(&p->sup->loop, &p->reconcile_timer);
	if (ret < 0)
		return ret;
	p->timer_open = true;
	p->reconcile_timer.data = p;
	return uv_timer_start(&p->reconcile_timer, reconcile_cb, ms, ms);
}

void pods_stop(struct pods *p)
{
	p->stopping = true;
	if (p->timer_open) {
		uv_close((uv_handle_t *)&p->reconcile_timer, NULL);
		p->timer_open = false;
	}
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->sync_op && !a->sync_op->saving)
			sync_end(a->sync_op, true);
	if (p->roll)
		roll_finish(p, "the supervisor is shutting down");
}

void pods_detach_workers(struct pods *p)
{
	struct attachment *a, *next;

	if (!p)
		return;
	for (struct netop_job *j = p->netops; j; j = j->next)
		j->w = NULL;
	for (a = p->atts; a; a = a->next) {
		a->worker = NULL;
		a->worker_ready = false;
		if (a->stop_op) {
			/* Its worker stays up without us: the release that
			 * follows deletes ts0, which ends it. */
			struct op *op = a->stop_op;

			a->stop_op = NULL;
			op->waiting_worker = false;
			op_queue_work(op);
		}
	}
	for (a = p->dying; a; a = next) {
		next = a->next;
		attachment_free(a);
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
		attachment_free(a);
	}
	for (a = p->dying; a; a = next) {
		next = a->next;
		attachment_free(a);
	}
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
	owner = pod_worker_att(p, a->pod_uid);
	if (owner)
		return "shared";
	return "none";
}

struct status_buf {
	Tscni__PodStatus s; /* first: rep->pod[i] points at the whole buffer */
	Tscni__AttachmentKey key;
	Tscni__PodMeta meta;
	struct pb_prefixes addrs;
};

void pods_status_fill(struct pods *p, Tscni__StatusReply *rep, bool verbose)
{
	size_t i = 0;

	rep->pods = (uint32_t)p->natts;
	rep->n_pod = 0;
	rep->pod = NULL;
	if (!verbose || !p->natts)
		return;
	rep->pod = xcalloc(p->natts, sizeof(*rep->pod));
	for (struct attachment *a = p->atts; a && i < STATUS_MAX_PODS; a = a->next, i++) {
		struct status_buf *b = xmalloc(sizeof(*b));

		tscni__pod_status__init(&b->s);
		tscni__attachment_key__init(&b->key);
		b->key.network = a->network;
		b->key.container_id = a->container_id;
		b->key.ifname = a->ifname;
		meta_to_pb(&a->meta, &b->meta);
		b->s.key = &b->key;
		b->s.pod = &b->meta;
		b->s.netns_path = a->netns_path;
		b->s.interface_name = a->interface_name;
		b->s.ifindex = a->ifindex;
		b->s.state = (char *)state_name(a->state);
		b->s.n_addresses = prefixes_to_pb(a->addrs, a->naddrs, &b->addrs);
		b->s.addresses = b->addrs.p;
		b->s.created_unix = a->created_unix;
		b->s.worker_state = (char *)worker_state_name(p, a);
		if (a->worker) {
			struct worker_stats ws;

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
			/* Fresh counters for the next STATUS. */
			workers_request_stats(a->worker);
		}
		rep->pod[i] = &b->s;
	}
	rep->n_pod = i;
}

void pods_status_clear(Tscni__StatusReply *rep)
{
	for (size_t i = 0; i < rep->n_pod; i++)
		free(rep->pod[i]);
	free(rep->pod);
	rep->pod = NULL;
	rep->n_pod = 0;
}
