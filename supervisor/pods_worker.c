/* The pods' workers: one per pod, held by the attachment that spawned or
 * adopted it; its uid slot, its spec (the pod's keys, and the auth key only
 * for a node that is not registered), its events, and the pod's identity as
 * the control plane sees it (registered or logged out). Workers and fd
 * custody: see pods.c. */
#include "pods.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "ip.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "netops.h"
#include "pods_internal.h"
#include "netcheck.h"
#include "resolver.h"
#include "state.h"
#include "supervisor.h"
#include "workers.h"

/* The attachment of pod_uid that holds the pod's worker, or NULL. */
struct attachment *pods__pod_worker_att(struct pods *p, const char *pod_uid)
{
	for (struct attachment *a = p->atts; a; a = a->next)
		if (a->worker && strcmp(a->pod_uid, pod_uid) == 0)
			return a;
	return NULL;
}

/* Is the pod's worker process up (Ready, or adopted)? */
bool pods__pod_worker_up(struct pods *p, const char *pod_uid)
{
	struct attachment *a = pods__pod_worker_att(p, pod_uid);

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
int pods__slot_get(struct pods *p, struct attachment *a, uint32_t *slot)
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
void pods__attachment_retire(struct pods *p, struct attachment *a)
{
	if (!a->worker) {
		pods__attachment_free(a);
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

/* A new process runs for a: its record names it from now on, so that a
 * supervisor restarted before its Ready (control unreachable, say) adopts
 * it instead of taking its ts0 away. */
static void on_started(struct attachment *a, struct worker *w)
{
	struct worker_identity id;

	pods__add_mark(a, ADD_MARK_HELLO, uv_hrtime());
	if (workers_identity(w, &id) < 0 ||
	    (id.pid == a->wi.pid && id.start_time == a->wi.start_time &&
	     id.version == a->wi.version && !strcmp(id.boot_id, a->wi.boot_id)))
		return;
	a->wi = id;
	pods__record_worker(a->pods, a, false, NULL);
}

static void on_ready(struct attachment *a, struct worker *w, const struct worker_report *r)
{
	struct pods *p = a->pods;
	struct worker_identity id;
	bool changed, ident;

	a->worker_ready = true;
	pods__add_mark(a, ADD_MARK_REGISTER, r->registered_ns);
	pods__add_mark(a, ADD_MARK_NETMAP, r->netmap_ns);
	pods__add_mark(a, ADD_MARK_READY, uv_hrtime());
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
	if (!pods__add_ready_save(a, changed, ident, r->stable_node_id)) {
		if (changed || ident)
			pods__record_worker(p, a, ident, r->stable_node_id);
		pods_attachment_ready(p, a);
	}
	pods__roll_worker(p, a, true, NULL);
}

static void on_gone(struct attachment *a, struct worker *w, const struct worker_report *r)
{
	struct pods *p = a->pods;

	pods__netops_forget(p, w);
	resolver_forget(p->sup->resolver, w);
	netcheck_forget(p->sup->netcheck, w);
	a->worker = NULL;
	a->worker_ready = false;
	pods__roll_worker(p, a, false, r->why);
	if (a->dying) {
		dying_remove(p, a);
		pods__attachment_free(a);
		return;
	}
	if (a->stop_op) {
		pods__op_resume(a);
		return;
	}
	/* It ended by itself: its TUN died with the pod's netns. */
	if (!p->stopping) {
		log_info("%s: worker gone (%s): probing the attachment", a->tag,
			 r->why ? r->why : "");
		pods__probe(p, a);
	}
}

/* workers' event callback for a's worker (arg: the attachment). */
void pods__on_worker(struct worker *w, enum worker_event ev, const struct worker_report *r,
		     void *arg)
{
	struct attachment *a = arg;

	switch (ev) {
	case WORKER_EV_READY:
		on_ready(a, w, r);
		break;
	case WORKER_EV_EVENT:
		if (r->event_kind == TSCNI__EVENT_KIND__EVENT_CONTROL_UP) {
			a->control = CONTROL_UP;
		} else if (r->event_kind == TSCNI__EVENT_KIND__EVENT_CONTROL_DOWN) {
			a->control = CONTROL_DOWN;
			metrics_control_error(a->pods->sup->metrics, METRICS_CONTROL_DOWN);
		} else if (r->event_kind == TSCNI__EVENT_KIND__EVENT_AUTH_FAILED) {
			a->control = CONTROL_DOWN;
			metrics_control_error(a->pods->sup->metrics, METRICS_CONTROL_AUTH_FAILED);
		}
		/* Control refused the node for good (it wants an interactive
		 * login, the key is invalid or expired, the node is not
		 * authorized, tailnet lock is on): an ADD waiting for it fails now
		 * with control's reason instead of returning at syncTimeout. The
		 * runtime's DEL that follows a failed ADD removes the rest. */
		if (r->event_kind == TSCNI__EVENT_KIND__EVENT_AUTH_FAILED)
			pods__add_refused(a, r->detail);
		break;
	case WORKER_EV_STARTED:
		on_started(a, w);
		break;
	case WORKER_EV_REAUTH:
		pods__reauth_request(a->pods, a, r);
		break;
	case WORKER_EV_EXIT:
		a->worker_ready = false;
		a->control = CONTROL_UNKNOWN; /* the next process connects anew */
		if (r->respawn_ms)
			metrics_worker_restart(a->pods->sup->metrics);
		break;
	case WORKER_EV_GONE:
		on_gone(a, w, r);
		break;
	default:
		break;
	}
}

/* A worker spec for a with the pod's keys (the caller wipes them). */
void pods__spec_fill(struct pods *p, struct attachment *a, struct worker_spec *spec, uint32_t slot,
		     const uint8_t *machine, const uint8_t *node, const char *hostname,
		     const struct tag_set *tags, bool registered)
{
	memset(spec, 0, sizeof(*spec));
	/* The control plane: the auth key (borrowed, copied by workers) only
	 * for a node that never registered, or logged out since. */
	spec->control_url = p->sup->cfg.control_url;
	if (!registered)
		spec->auth_key = p->sup->auth_key;
	spec->auth_key = p->spawn_key ? p->spawn_key : spec->auth_key;
	spec->old_node_public = p->spawn_old;
	spec->pod_uid = a->pod_uid;
	spec->hostname = hostname && *hostname ? hostname : NULL;
	spec->tags = tags && tags->n ? tags : NULL;
	memcpy(spec->machine_private, machine, WORKERS_KEY_LEN);
	memcpy(spec->node_private, node, WORKERS_KEY_LEN);
	spec->addresses = a->addrs;
	spec->n_addresses = a->naddrs;
	spec->tun_fd = a->tun_fd;
	spec->slot = slot;
	spec->mtu = NETOPS_MTU;
}

/* Spawns the pod's worker for a with its TUN fd (a->tun_fd, closed here once
 * workers holds custody). A second attachment of a pod that has a worker
 * keeps its fd and gets none. 0 or a negative errno. */
int pods__attachment_spawn_key(struct pods *p, struct attachment *a, const uint8_t *machine,
			       const uint8_t *node, const char *hostname,
			       const struct tag_set *tags, const char *auth_key)
{
	int ret;

	p->spawn_key = auth_key;
	ret = pods__attachment_spawn(p, a, machine, node, hostname, tags, auth_key == NULL);
	p->spawn_key = NULL;
	return ret;
}

int pods__attachment_spawn(struct pods *p, struct attachment *a, const uint8_t *machine,
			   const uint8_t *node, const char *hostname, const struct tag_set *tags,
			   bool registered)
{
	struct attachment *owner = pods__pod_worker_att(p, a->pod_uid);
	struct worker_spec spec;
	int fds[2] = {-1, -1}, ret;
	const char *why = "";
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
	ret = pods__slot_get(p, a, &slot);
	if (ret < 0) {
		log_err_r(ret, "%s: no free worker uid", a->tag);
		return ret;
	}
	pods__spec_fill(p, a, &spec, slot, machine, node, hostname, tags, registered);
	if (p->sup->cfg.control_url) {
		ret = pods__udp_socket_new(&p->sup->cfg, &fds[0], &why);
		if (ret == 0)
			ret = pods__netlink_socket_new(&fds[1], &why);
		if (ret < 0) {
			log_err_r(ret, "%s: %s", a->tag, why);
			sodium_memzero(&spec, sizeof(spec));
			if (fds[0] >= 0)
				close(fds[0]);
			return ret;
		}
		spec.extra_fds = fds;
		spec.n_extra_fds = 2;
		spec.n_extra_fds_optional = 1;
	}
	ret = workers_spawn(p->sup->workers, &spec, pods__on_worker, a, &a->worker);
	sodium_memzero(&spec, sizeof(spec));
	for (size_t i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]); /* workers holds its own dups (custody) */
	if (ret < 0) {
		log_err_r(ret, "%s: spawn the worker", a->tag);
		return ret;
	}
	a->worker_ready = false;
	close(a->tun_fd);
	a->tun_fd = -1;
	return 0;
}

void pods__identity_wipe_free(Tscni__Identity *id)
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
int pods__identity_record(struct pods *p, const char *pod_uid, bool registered,
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
	if (id->registered == registered && (!registered || !addrs) &&
	    !(registered && id->old_node_public.len)) {
		pods__identity_wipe_free(id);
		goto out;
	}
	id->registered = registered;
	/* Registered with the node key: a rotation (pods_reauth.c) is done. */
	if (registered)
		id->old_node_public.len = 0;
	if (registered && addrs) {
		size_t old_n = id->n_addresses;
		Tscni__IpPrefix **old = id->addresses;
		char *old_stable = id->stable_node_id;

		id->n_addresses = pods__prefixes_to_pb(addrs, naddrs, &pb);
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
	pods__identity_wipe_free(id);
out:
	uv_mutex_unlock(&p->identity_lock);
	return ret;
}

void pods__identity_logged_out(struct op *op, const char *pod_uid)
{
	int ret = pods__identity_record(op->pods, pod_uid, false, NULL, 0, NULL);

	if (ret < 0 && ret != -ENOENT)
		log_warn_r(ret, "%s: mark the identity logged out", op->tag);
}
