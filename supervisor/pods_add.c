/* ADD (docs/cni-contract.md section 4): the pod's identity read or made,
 * a previous attachment of the key released, ts0 created in the pod's netns
 * with an intent record first, the pod's worker spawned, and the reply held
 * until the worker reports Ready or syncTimeout passes. */
#include "pods.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "authkeys.h"
#include "hostname.h"
#include "jobs.h"
#include "ip.h"
#include "keys.h"
#include "proc_limits.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "netns.h"
#include "netops.h"
#include "pods_internal.h"
#include "state.h"
#include "supervisor.h"
#include "validate.h"

struct op_add {
	struct op op;
	/* The request, copied. */
	char *network;
	char *container_id;
	char ifname[IFNAME_MAX_LEN + 1];
	char *netns_path;
	uint64_t netns_dev;
	uint64_t netns_ino;
	char interface_name[IFNAME_MAX_LEN + 1];
	struct pod_meta meta;
	char *cni_version;
	uint32_t sync_timeout_ms;
	/* What the pod's annotations ask for (annotations.h), checked in
	 * pods__submit_add before anything is made. */
	struct pod_choice choice;

	/* Outcome: the new attachment, owned by the op until the table has
	 * it, and what the reply carries. */
	struct attachment *next_att;
	struct ip_prefix addrs[PREFIX_MAX];
	size_t naddrs;
	bool addresses_pending;

	/* The pod's keys for its worker (wiped in add_destroy). */
	bool have_keys;
	bool registered; /* the identity's node registered with control before */
	uint8_t machine_private[KEY_LEN];
	uint8_t node_private[KEY_LEN];
	char hostname[HOST_MAX_LEN + 1];
	struct tag_set tags; /* the identity's: Hostinfo.RequestTags */
	/* A key minted for this pod's node (authkeys.h): asked for once, kept
	 * until the worker has its copy. */
	struct authkeys_req *mint_req;
	bool mint_asked;
	char *minted_key;

	/* The wait for the worker's Ready. */
	uv_timer_t sync_timer;
	bool sync_timer_open;
	bool saving; /* recording its worker before the reply */
	struct save_args save;

	uint64_t marks[ADD_MARKS]; /* uv_hrtime, 0: not passed */
};

static struct op_add *to_add(struct op *op)
{
	return (struct op_add *)op;
}

static const struct op_type add_type;

static struct op_add *add_new(struct pods *p, const char *network, const char *container_id,
			      const char *ifname)
{
	struct op_add *add = to_add(pods__op_new(p, &add_type, network, container_id, ifname));

	add->network = xstrdup(network);
	add->container_id = xstrdup(container_id);
	strscpy(add->ifname, ifname, sizeof(add->ifname));
	add->meta.namespace_ = xstrdup("");
	add->meta.name = xstrdup("");
	add->meta.uid = xstrdup("");
	add->meta.infra_container_id = xstrdup("");
	add->cni_version = xstrdup("");
	return add;
}

static void add_destroy(struct op *op)
{
	struct op_add *add = to_add(op);

	free(add->network);
	free(add->container_id);
	free(add->netns_path);
	pods__meta_free(&add->meta);
	free(add->cni_version);
	pods__attachment_free(add->next_att);
	sodium_memzero(add->machine_private, sizeof(add->machine_private));
	sodium_memzero(add->node_private, sizeof(add->node_private));
	authkeys_cancel(add->mint_req);
	authkeys_key_free(add->minted_key);
}

static bool add_close(struct op *op, uv_close_cb closed)
{
	struct op_add *add = to_add(op);

	if (!add->sync_timer_open)
		return false;
	uv_close((uv_handle_t *)&add->sync_timer, closed);
	return true;
}

/* An ADD releases its attachment's worker unless it is a retry in the same
 * netns (answered without change). */
static bool add_stops_worker(const struct op *op)
{
	const struct op_add *add = (const struct op_add *)op;
	const struct attachment *a = op->cur;

	if (op->cni_code) /* refused before it began: it touches nothing */
		return false;
	return a->netns_dev != add->netns_dev || a->netns_ino != add->netns_ino ||
	       a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY;
}

static void add_reply(struct op *op)
{
	struct op_add *add = to_add(op);
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__AddReply body = TSCNI__ADD_REPLY__INIT;
	struct pb_prefixes addrs;

	body.interface_name = add->interface_name;
	body.mtu = NETOPS_MTU;
	body.n_addresses = pods__prefixes_to_pb(add->addrs, add->naddrs, &addrs);
	body.addresses = addrs.p;
	body.addresses_pending = add->addresses_pending;
	rep.body_case = TSCNI__CNI_REPLY__BODY_ADD;
	rep.add = &body;
	pods__op_send(op, &rep);
}

/* A new attachment for an ADD: pod_uid is the pod's identity key. */
static struct attachment *attachment_from_add(const struct op_add *add, const char *pod_uid)
{
	struct attachment *a = xcalloc(1, sizeof(*a));

	a->tun_fd = -1;
	memcpy(a->keyname, add->op.keyname, sizeof(a->keyname));
	memcpy(a->tag, add->op.tag, sizeof(a->tag));
	a->network = xstrdup(add->network);
	a->container_id = xstrdup(add->container_id);
	memcpy(a->ifname, add->ifname, sizeof(a->ifname));
	a->pod_uid = xstrdup(pod_uid);
	a->meta.namespace_ = xstrdup(add->meta.namespace_);
	a->meta.name = xstrdup(add->meta.name);
	a->meta.uid = xstrdup(add->meta.uid);
	a->meta.infra_container_id = xstrdup(add->meta.infra_container_id);
	a->netns_path = xstrdup(add->netns_path);
	a->netns_dev = add->netns_dev;
	a->netns_ino = add->netns_ino;
	memcpy(a->interface_name, add->interface_name, sizeof(a->interface_name));
	a->state = TSCNI__ATTACHMENT_STATE__ATTACHMENT_INTENT;
	a->cni_version = xstrdup(add->cni_version);
	a->created_unix = (uint64_t)time(NULL);
	memcpy(a->addrs, add->addrs, sizeof(a->addrs));
	a->naddrs = add->naddrs;
	return a;
}

/* The identity's tags into add->tags (validated: at most POD_TAGS_MAX). */
static void identity_tags(struct op_add *add, const Tscni__Identity *id)
{
	add->tags.n = 0;
	for (size_t i = 0; i < id->n_tags && i < POD_TAGS_MAX; i++)
		strscpy(add->tags.v[add->tags.n++], id->tags[i], sizeof(add->tags.v[0]));
}

/* An existing identity keeps the tags and hostname it was made with: its
 * node registered (or will) with them, and a pod cannot re-tag a node by
 * changing its annotations and coming back under the same UID. Says so
 * when the annotations now ask for something else. */
static void identity_keeps_choice(const struct op_add *add)
{
	const struct pod_choice *c = &add->choice;
	bool same = c->tags.n == add->tags.n;

	for (size_t i = 0; same && i < c->tags.n; i++)
		same = strcmp(c->tags.v[i], add->tags.v[i]) == 0;
	if (!same)
		log_warn("%s: the pod's identity keeps its %zu tag(s); the %s annotation "
			 "(%zu tag(s)) applies to a new identity only",
			 add->op.tag, add->tags.n, ANNOTATION_TAGS, c->tags.n);
	if (c->hostname[0] && strcmp(c->hostname, add->hostname) != 0)
		log_warn("%s: the pod's identity keeps hostname %s; the %s annotation (%s) "
			 "applies to a new identity only",
			 add->op.tag, add->hostname, ANNOTATION_HOSTNAME, c->hostname);
}

/* Reads the pod's identity or creates one (fresh machine and node keys),
 * and copies its addresses into add->addrs. Keys never leave this function
 * except into the 0600 record. A new identity takes its tags and hostname
 * from the pod's annotations (add->choice). */
static int identity_ensure(struct op_add *add, const char *pod_uid)
{
	struct pods *p = add->op.pods;
	Tscni__Identity *id;
	const char *why = NULL;
	int err = 0, ret = 0;

	uv_mutex_lock(&p->identity_lock);
	id = state_identity_get(p->st, pod_uid, &err);
	if (id) {
		add->naddrs = pods__prefixes_from_pb(id->addresses, id->n_addresses, add->addrs);
		if (id->machine_private.len == KEY_LEN && id->node_private.len == KEY_LEN) {
			memcpy(add->machine_private, id->machine_private.data, KEY_LEN);
			memcpy(add->node_private, id->node_private.data, KEY_LEN);
			strscpy(add->hostname, id->hostname ? id->hostname : "",
				sizeof(add->hostname));
			add->have_keys = true;
			add->registered = id->registered;
			identity_tags(add, id);
			identity_keeps_choice(add);
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
	char *tagp[POD_TAGS_MAX];

	keys_generate(machine);
	keys_generate(node);
	pods__meta_to_pb(&add->meta, &meta);
	m.pod_uid = (char *)pod_uid;
	m.machine_private.data = machine;
	m.machine_private.len = KEY_LEN;
	m.node_private.data = node;
	m.node_private.len = KEY_LEN;
	m.hostname = *add->meta.name ? add->meta.name : (char *)pod_uid;
	/* <cluster>-<namespace>-<pod> (common/hostname.h) when the runtime
	 * named the pod; else the pod's name or uid as before. Supervisors on
	 * other nodes cannot be asked whether a name is taken, so any name
	 * whose parts could be split differently (a '-' inside one: "a-b"/"c"
	 * against "a"/"b-c") carries the hash of its exact triple: the same on
	 * every node and restart, different for different triples. */
	if (cluster && *add->meta.namespace_ && *add->meta.name &&
	    hostname_make(cluster, add->meta.namespace_, add->meta.name,
			  strchr(cluster, '-') || strchr(add->meta.namespace_, '-') ||
				  strchr(add->meta.name, '-'),
			  hn, &why) == 0)
		m.hostname = hn;
	if (add->choice.hostname[0])
		m.hostname = (char *)add->choice.hostname;
	for (size_t i = 0; i < add->choice.tags.n; i++)
		tagp[i] = (char *)add->choice.tags.v[i];
	m.tags = tagp;
	m.n_tags = add->choice.tags.n;
	m.machine_id = (char *)o->machine_id;
	m.node_name = (char *)o->node_name;
	m.created_unix = (uint64_t)time(NULL);
	m.pod = &meta;
	ret = state_identity_put(p->st, &m);
	if (ret == 0) {
		memcpy(add->machine_private, machine, KEY_LEN);
		memcpy(add->node_private, node, KEY_LEN);
		strscpy(add->hostname, m.hostname, sizeof(add->hostname));
		add->tags = add->choice.tags;
		add->have_keys = true;
	}
	sodium_memzero(machine, sizeof(machine));
	sodium_memzero(node, sizeof(node));
	if (ret == 0)
		log_info("%s: new identity %s (%zu tag(s) asked)", add->op.tag, add->hostname,
			 add->tags.n);
	add->naddrs = 0; /* addresses come from the control plane */
out:
	uv_mutex_unlock(&p->identity_lock);
	return ret;
}

/* A retried ADD in the same netns. When ts0 is still there, it gets the
 * same answer as the first (true); otherwise (the supervisor restarted and
 * its fd custody went with it) ts0 is rebuilt. */
static bool add_retry(struct op_add *add, const struct attachment *cur)
{
	char detail[DETAIL_LEN];
	int nsfd, ret;

	ret = pods__netns_reopen(add->netns_path, add->netns_dev, add->netns_ino, &nsfd);
	if (ret != 1)
		return false;
	ret = netops_link_check(nsfd, cur->interface_name, 0, NULL, 0, detail, sizeof(detail));
	close(nsfd);
	if (ret != -ENOENT) {
		memcpy(add->addrs, cur->addrs, sizeof(add->addrs));
		add->naddrs = cur->naddrs;
		add->addresses_pending = cur->naddrs == 0;
		log_info("%s: retried ADD, same result", add->op.tag);
		return true;
	}
	log_info("%s: retried ADD, %s is missing: rebuilding it", add->op.tag, cur->interface_name);
	return false;
}

/* Opens the request's netns and checks it is the one the plugin saw and not
 * the host's. 0 with *nsfd open, or the op failed. */
static int add_open_netns(struct op_add *add, int *nsfd)
{
	dev_t dev;
	ino_t ino;
	int ret;

	ret = netns_open(add->netns_path, nsfd, &dev, &ino);
	if (ret == -ENOENT || ret == -ENOTNAM) {
		pods__op_fail(&add->op, CNI_ERR_NETNS, "the pod's network namespace does not exist",
			      ret, "%s", add->netns_path);
		return ret;
	}
	if (ret < 0) {
		pods__op_fail(&add->op, pods__errno_cni_code(ret),
			      "cannot open the pod's network namespace", ret, "%s",
			      add->netns_path);
		return ret;
	}
	if (netns_is_self(dev, ino)) {
		pods__op_fail(&add->op, CNI_ERR_BAD_NETNS,
			      "the network namespace is the supervisor's own (the host's)", 0,
			      "%s: refusing to create %s there", add->netns_path,
			      add->interface_name);
		return -EPERM;
	}
	if ((uint64_t)dev != add->netns_dev || (uint64_t)ino != add->netns_ino) {
		pods__op_fail(&add->op, CNI_ERR_NETNS, "the pod's network namespace changed", 0,
			      "%s is now dev %ju inode %ju, the plugin saw dev %" PRIu64
			      " inode %" PRIu64,
			      add->netns_path, (uintmax_t)dev, (uintmax_t)ino, add->netns_dev,
			      add->netns_ino);
		return -ESTALE;
	}
	return 0;
}

/* Creates ts0 in nsfd between an intent record and a ready one; on failure
 * undoes both. */
static void add_build(struct op_add *add, int nsfd, const char *pod_uid)
{
	struct pods *p = add->op.pods;
	struct attachment *a;
	const char *why = NULL;
	int tun_fd = -1, ifindex = 0, ret;

	/* Intent before any network change: a supervisor killed from here on
	 * leaves a record that startup, a DEL or the reconciler undoes. Not
	 * fsync'd, nor is the next: a killed supervisor's writes stay in the
	 * page cache, and what a machine's crash would lose them to takes
	 * ts0 and the pod's netns along. The record this ADD's reply waits
	 * for (its worker's, sync_save_work) is fsync'd. */
	a = attachment_from_add(add, pod_uid);
	ret = pods__attachment_save_cached(p, a);
	if (ret < 0) {
		pods__op_fail(&add->op, pods__errno_cni_code(ret),
			      "cannot write the attachment record", ret, "intent");
		pods__attachment_free(a);
		return;
	}
	ret = pods__tun_create(a, nsfd, &tun_fd, &ifindex, &why);
	if (ret == -EEXIST) {
		pods__op_fail(&add->op, CNI_ERR_IF_EXISTS,
			      "the interface already exists in the pod's network namespace", 0,
			      "%s exists in %s and was left alone", add->interface_name,
			      add->netns_path);
		goto rollback;
	}
	if (ret < 0) {
		pods__op_fail(&add->op, pods__errno_cni_code(ret),
			      "cannot create the pod's interface", ret, "%s",
			      why ? why : "create the TUN device");
		goto rollback;
	}
	a->tun_fd = tun_fd;
	a->ifindex = (uint32_t)ifindex;
	a->state = TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY;
	ret = pods__attachment_save_cached(p, a);
	if (ret < 0) {
		pods__op_fail(&add->op, pods__errno_cni_code(ret),
			      "cannot write the attachment record", ret, "ready");
		goto rollback;
	}
	log_info("%s: %s created in %s (ifindex %d)", add->op.tag, add->interface_name,
		 add->netns_path, ifindex);
	add->next_att = a;
	add->op.replace = true;
	add->addresses_pending = true; /* until the worker reports Ready */
	return;

rollback:
	if (a->tun_fd >= 0) {
		close(a->tun_fd);
		a->tun_fd = -1;
		netops_link_delete(nsfd, add->interface_name, (int)a->ifindex);
	}
	ret = pods__attachment_unrecord(p, a);
	if (ret < 0)
		log_err_r(ret, "%s: roll back: remove the intent record", add->op.tag);
	pods__attachment_free(a);
}

/* Refuses the ADD while one more pod's descriptors would leave less than
 * the reserve free (proc_limits.h): a clear error now rather than EMFILE in the
 * middle of a spawn, or on the CNI socket. */
static bool add_fds_short(struct op *op)
{
	unsigned long open = 0, limit = 0, reserve = 0;
	int ret = proc_limits_pod_fits(&open, &limit, &reserve);

	/* Without /proc/self/fd there is nothing to count: the spawn's own
	 * errors then say what ran short. */
	if (ret != -EMFILE)
		return false;
	pods__op_fail(op, CNI_ERR_TRY_AGAIN, "the supervisor is at its open-file limit", ret,
		      "%lu of %lu descriptors open, a pod needs %d more and %lu stay in reserve "
		      "(raise the supervisor's LimitNOFILE)",
		      open, limit, PROC_LIMITS_POD_FDS, reserve);
	return true;
}

static void add_work(struct op *op)
{
	struct op_add *add = to_add(op);
	struct pods *p = op->pods;
	struct attachment *cur = op->cur;
	const char *pod_uid = *add->meta.uid ? add->meta.uid : add->container_id;
	const char *why = NULL;
	int nsfd = -1, ret;

	add->marks[ADD_MARK_WORK] = uv_hrtime();

	/* Refused at submission (the pod's annotations): nothing to undo. */
	if (op->cni_code)
		return;
	/* The identity lives in a directory named after the pod UID, or the
	 * container ID without one (docs/design.md §3): it must fit a file
	 * name. */
	if (strlen(pod_uid) > NAME_MAX) {
		const char *msg = "CNI_CONTAINERID is too long to name the pod's identity";

		pods__op_fail(op, CNI_ERR_ENV, msg, 0,
			      "without K8S_POD_UID in CNI_ARGS the identity is kept under the "
			      "container ID, which is %zu bytes (at most %d)",
			      strlen(pod_uid), NAME_MAX);
		return;
	}
	/* A replaced attachment's worker logged the node out: the new worker
	 * registers again, with the auth key. */
	if (op->logged_out && cur)
		pods__identity_logged_out(op, cur->pod_uid);
	ret = identity_ensure(add, pod_uid);
	if (ret < 0) {
		pods__op_fail(op, pods__errno_cni_code(ret),
			      "cannot read or write the pod's identity", ret, "identity of %s",
			      op->tag);
		return;
	}
	if (cur && cur->netns_dev == add->netns_dev && cur->netns_ino == add->netns_ino &&
	    cur->state == TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY && add_retry(add, cur))
		return;
	if (add_fds_short(op))
		return;
	if (cur) {
		/* Another netns (a lost DEL), or a half-made or vanished ts0:
		 * release the old attachment before building the new one. */
		log_info("%s: releasing the previous attachment of this key (%s)", op->tag,
			 cur->netns_ino != add->netns_ino ? "netns replaced" : "rebuild");
		ret = pods__release(p, cur, &why);
		if (ret < 0) {
			pods__op_fail(op, pods__errno_cni_code(ret),
				      "cannot release the previous attachment", ret, "%s", why);
			return;
		}
		op->replace = true;
	}
	if (add_open_netns(add, &nsfd) == 0)
		add_build(add, nsfd, pod_uid);
	if (nsfd >= 0)
		close(nsfd);
	add->marks[ADD_MARK_TUN] = uv_hrtime();
}

/* ------------------------------------------------------- the wait for Ready */

void pods__add_mark(struct attachment *a, enum add_mark mark, uint64_t ns)
{
	/* ts0's addresses: the last one set before Ready. */
	if (a->sync_op && (!a->sync_op->marks[mark] || mark == ADD_MARK_ADDRESSES))
		a->sync_op->marks[mark] = ns;
}

/* One info line per ADD that made a worker: the spans between the marks it
 * passed (docs/design.md §4), each from the last mark before it, so that
 * they add up to the total. A worker's own marks count only inside its
 * Hello..Ready. Also into the metrics' ADD phase histogram. */
static void add_log_spans(struct op_add *add)
{
	static const char *const name[ADD_MARKS] = {
		[ADD_MARK_WORK] = "queue",    [ADD_MARK_TUN] = "tun",
		[ADD_MARK_HELLO] = "spawn",   [ADD_MARK_REGISTER] = "register",
		[ADD_MARK_NETMAP] = "netmap", [ADD_MARK_ADDRESSES] = "addresses",
		[ADD_MARK_READY] = "ready",   [ADD_MARK_REPLY] = "save",
	};
	uint64_t *m = add->marks, prev = m[ADD_MARK_ARRIVED];
	char line[320];
	size_t len = 0;

	if (!prev || !m[ADD_MARK_HELLO] || !m[ADD_MARK_READY])
		return;
	for (int k = ADD_MARK_REGISTER; k <= ADD_MARK_NETMAP; k++)
		if (m[k] < m[ADD_MARK_HELLO] || m[k] > m[ADD_MARK_READY])
			m[k] = 0;
	for (int k = ADD_MARK_WORK; k < ADD_MARKS; k++) {
		uint64_t d = m[k] > prev ? m[k] - prev : 0;

		if (!m[k])
			continue;
		len += (size_t)snprintf(line + len, sizeof(line) - len, " %s=%.1f", name[k],
					(double)d / 1e6);
		if (len >= sizeof(line))
			break;
		metrics_add_phase(add->op.pods->sup->metrics, k - 1, d / 1000);
		prev = m[k] > prev ? m[k] : prev;
	}
	log_info("%s: ADD spans ms:%s total=%.1f", add->op.tag, line,
		 (double)(m[ADD_MARK_REPLY] - m[ADD_MARK_ARRIVED]) / 1e6);
}

/* The ADD's wait for its worker ends: Ready, timeout or shutdown. */
static void sync_end(struct op_add *add, bool timed_out)
{
	struct attachment *a = pods__table_find(add->op.pods, add->op.keyname);

	if (a && a->sync_op == add) {
		a->sync_op = NULL;
		memcpy(add->addrs, a->addrs, sizeof(add->addrs));
		add->naddrs = a->naddrs;
	}
	add->addresses_pending = timed_out || add->naddrs == 0;
	if (timed_out)
		log_info("%s: syncTimeout reached, replying with addresses to follow", add->op.tag);
	add->marks[ADD_MARK_REPLY] = uv_hrtime();
	if (!timed_out && !add->op.cni_code)
		add_log_spans(add);
	uv_timer_stop(&add->sync_timer);
	pods__op_reply(&add->op);
	pods__op_finish(&add->op);
}

static void sync_timer_cb(uv_timer_t *t)
{
	struct op_add *add = t->data;

	if (!add->saving) /* else Ready came: the save's end replies */
		sync_end(add, true);
}

static void sync_save_work(uv_work_t *w)
{
	struct op_add *add = w->data;

	pods__save_work(&add->op, &add->save);
}

static void sync_save_after(uv_work_t *w, int status)
{
	struct op_add *add = w->data;

	add->saving = false;
	add->op.cur = NULL;
	sync_end(add, false);
}

/* The ADD's worker is Ready: its identity goes into the record before the
 * ADD replies, so that a supervisor killed right after the reply finds the
 * worker it must adopt. 0, or a negative errno (nothing started). */
static int sync_save_begin(struct op_add *add, struct attachment *a)
{
	int ret;

	if (add->saving)
		return -EBUSY;
	add->op.cur = a;
	add->save.id = a->id;
	add->save.wi = a->wi;
	add->save.uid = a->worker_uid;
	add->saving = true;
	add->op.work.data = add;
	ret = uv_queue_work(&add->op.pods->sup->loop, &add->op.work, sync_save_work,
			    sync_save_after);
	if (ret < 0) {
		add->saving = false;
		add->op.cur = NULL;
	}
	return ret;
}

bool pods__add_ready_save(struct attachment *a, bool changed, bool ident, const char *stable)
{
	struct op_add *add = a->sync_op;

	if (!add)
		return false;
	if (ident && !add->saving)
		pods__save_ident_set(&add->save, a, stable);
	return (changed || ident) && !a->pods->stopping && sync_save_begin(add, a) == 0;
}

void pods__add_refused(struct attachment *a, const char *detail)
{
	struct op_add *add = a->sync_op;

	if (!add || add->saving)
		return;
	log_warn("%s: control refused the node: %s", a->tag, detail ? detail : "");
	add->op.cni_code = CNI_ERR_REFUSED;
	add->op.msg = "the control server refused the pod's node";
	snprintf(add->op.detail, sizeof(add->op.detail), "%s", detail ? detail : "");
	sync_end(add, false);
}

void pods__add_stop_wait(struct attachment *a)
{
	if (a->sync_op && !a->sync_op->saving)
		sync_end(a->sync_op, true);
}

void pods_attachment_ready(struct pods *p, struct attachment *att)
{
	if (att->sync_op && !att->sync_op->saving)
		sync_end(att->sync_op, false);
}

/* ADD has made ts0: wait for the control plane, at most syncTimeout. */
static void sync_begin(struct op_add *add, struct attachment *a)
{
	uint32_t ms = add->sync_timeout_ms ? add->sync_timeout_ms : SYNC_TIMEOUT_DEFAULT_MS;
	int ret;

	if (ms > SYNC_TIMEOUT_MAX_MS)
		ms = SYNC_TIMEOUT_MAX_MS;
	ret = uv_timer_init(&add->op.pods->sup->loop, &add->sync_timer);
	if (ret < 0) {
		log_warn_r(ret, "%s: sync timer", add->op.tag);
		pods__op_reply(&add->op);
		pods__op_finish(&add->op);
		return;
	}
	add->sync_timer_open = true;
	add->sync_timer.data = add;
	a->sync_op = add;
	uv_timer_start(&add->sync_timer, sync_timer_cb, ms, 0);
	/* The worker (spawned by add_done) reports Ready through
	 * pods_attachment_ready(), which ends this wait before the timer does.
	 * An attachment served by its pod's worker elsewhere has nothing to
	 * wait for once that worker is up. */
	if (a->worker ? a->worker_ready : pods__pod_worker_up(add->op.pods, a->pod_uid))
		pods_attachment_ready(add->op.pods, a);
}

static void add_done(struct op *op);

static void add_minted(void *arg, char *key, const struct authkeys_error *err)
{
	struct op_add *add = arg;

	add->mint_req = NULL;
	add->minted_key = key;
	if (!key)
		pods__op_fail(&add->op, err->code, err->msg, 0, "%s", err->detail);
	add_done(&add->op);
}

/* A node that is not registered (a new identity, or one whose node logged
 * out: the supervisor's own record says so) needs a key; with an API key
 * source one is minted for it. true: the ADD waits for add_minted. */
static bool add_mint(struct op_add *add)
{
	struct pods *p = add->op.pods;
	struct authkeys_error err;
	const char *pod_uid = *add->meta.uid ? add->meta.uid : add->container_id;
	const char *tagp[POD_TAGS_MAX];

	if (add->mint_asked || add->registered || !add->have_keys ||
	    authkeys_kind(p->sup->authkeys) == AUTHKEYS_STATIC)
		return false;
	add->mint_asked = true;
	jobs_drop_pod(p->sup->jobs, pod_uid); /* its node is to be used again */
	for (size_t i = 0; i < add->tags.n; i++)
		tagp[i] = add->tags.v[i];
	/* The key carries the pod's own tags (its annotation, checked against
	 * --allowed-tags), else --key-tags. */
	if (authkeys_mint(p->sup->authkeys, pod_uid, add->op.tag, tagp, add->tags.n, add_minted,
			  add, &add->mint_req, &err) == 0)
		return true;
	pods__op_fail(&add->op, err.code, err.msg, 0, "%s", err.detail);
	return false;
}

void pods__add_stop_mints(struct pods *p)
{
	struct op *o = p->ops;

	while (o) {
		struct op_add *add = to_add(o);

		if (o->type != &add_type || !add->mint_req) {
			o = o->next;
			continue;
		}
		authkeys_cancel(add->mint_req);
		add->mint_req = NULL;
		pods__op_fail(o, CNI_ERR_TRY_AGAIN, "the supervisor is shutting down", 0,
			      "while an auth key was minted");
		add_done(o); /* finishes o: the list changed */
		o = p->ops;
	}
}

/* On the loop: the new attachment enters the table and gets its worker,
 * then the reply waits for Ready; or the ADD failed and replies now. */
static void add_done(struct op *op)
{
	struct op_add *add = to_add(op);
	struct pods *p = op->pods;
	struct attachment *a;
	int ret;

	if (op->replace && add->next_att) {
		pods__table_insert(p, add->next_att);
		add->next_att = NULL;
	}
	if (op->cni_code == 0 && op->replace && !p->stopping &&
	    (a = pods__table_find(p, op->keyname))) {
		if (add_mint(add))
			return;
	}
	if (op->cni_code == 0 && op->replace && !p->stopping &&
	    (a = pods__table_find(p, op->keyname))) {
		ret = !add->have_keys ? -ENOKEY
		      : add->minted_key
			      ? pods__attachment_spawn_key(p, a, add->machine_private,
							   add->node_private, add->hostname,
							   &add->tags, add->minted_key)
			      : pods__attachment_spawn(p, a, add->machine_private,
						       add->node_private, add->hostname, &add->tags,
						       add->registered);
		authkeys_key_free(add->minted_key); /* the worker has its copy */
		add->minted_key = NULL;
		if (ret == 0) {
			sync_begin(add, a);
			return;
		}
		if (ret == -EADDRINUSE && p->sup->cfg.udp_port_lo)
			/* Not code 11: failurePolicy "ignore" would start the
			 * pod without ts0, and this is no supervisor outage.
			 * Ports free up as pods go; the runtime's retry may
			 * find one. */
			pods__op_fail(op, CNI_ERR_INTERNAL,
				      "no free UDP port left in --udp-port-range", 0,
				      "%s: %u-%u all in use", a->tag, p->sup->cfg.udp_port_lo,
				      p->sup->cfg.udp_port_hi);
		else
			pods__op_fail(op,
				      pods__errno_cni_code(ret) == CNI_ERR_TRY_AGAIN
					      ? CNI_ERR_TRY_AGAIN
					      : CNI_ERR_INTERNAL,
				      "cannot start the pod's worker", ret, "%s", a->tag);
	}
	if (op->cni_code)
		log_warn("%s: ADD failed (code %u): %s: %s", op->tag, op->cni_code, op->msg,
			 op->detail);
	pods__op_reply(op);
	pods__op_finish(op);
}

static const struct op_type add_type = {
	.size = sizeof(struct op_add),
	.work = add_work,
	.stops_worker = add_stops_worker,
	.done = add_done,
	.reply = add_reply,
	.close = add_close,
	.destroy = add_destroy,
};

int pods__submit_add(struct pods *p, const Tscni__AddRequest *m, struct pods_request *r)
{
	char why[ANNOTATIONS_WHY_LEN + 64];
	struct op_add *add;

	if (!valid_ifname(m->interface_name))
		return -EINVAL;
	add = add_new(p, m->key->network, m->key->container_id, m->key->ifname);
	add->op.req = r;
	add->marks[ADD_MARK_ARRIVED] = r->start_ns;
	add->netns_path = xstrdup(m->netns_path);
	add->netns_dev = m->netns_dev;
	add->netns_ino = m->netns_ino;
	strscpy(add->interface_name, m->interface_name, sizeof(add->interface_name));
	pods__meta_free(&add->meta);
	pods__meta_from_pb(&add->meta, m->pod);
	free(add->cni_version);
	add->cni_version = pods__dup_or_empty(m->cni_version);
	add->sync_timeout_ms = m->sync_timeout_ms;
	pods__make_tag(add->op.tag, *add->meta.uid ? add->meta.uid : add->container_id,
		       add->op.keyname);
	/* The pod's annotations first, before any record, identity, ts0 or
	 * worker: a tag the operator did not allow fails the ADD with
	 * nothing made (code 102, refused for good: the runtime's retries
	 * carry the same annotations, and failurePolicy "ignore" must not
	 * start the pod without ts0 over it). */
	if (annotations_parse(m->annotations, m->n_annotations, &p->sup->cfg.allowed_tags,
			      &add->choice, why, sizeof(why)) < 0)
		pods__op_fail(&add->op, CNI_ERR_REFUSED, "pod annotation refused", 0, "%s", why);
	pods__op_enqueue(&add->op);
	return 0;
}
