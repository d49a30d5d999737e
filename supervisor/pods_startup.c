/* Startup, before the loop runs: the state directory loaded into the
 * table, the DELs its tombstones stand for, attachments whose netns is gone
 * or that a killed supervisor left half-made released, then each remaining
 * attachment's worker adopted (identified by the record) or its ts0 rebuilt
 * and a new worker spawned (fd custody: see pods.c). */
#include "pods.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "jobs.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "mem.h"
#include "netns.h"
#include "netops.h"
#include "pods_internal.h"
#include "record.h"
#include "state.h"
#include "supervisor.h"
#include "validate.h"
#include "workers.h"

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
	/* Its grace starts now, unless an attachment takes it back below. */
	pods__gone_note(ctx->p, id->pod_uid);
}

static void load_attachment(void *arg, const Tscni__Attachment *m)
{
	struct load_ctx *ctx = arg;
	struct attachment *a = pods__attachment_from_pb(m);

	if (pods__table_find(ctx->p, a->keyname)) {
		log_warn("%s: second record for one key, ignored", a->tag);
		pods__attachment_free(a);
		return;
	}
	pods__table_insert(ctx->p, a);
}

void pods__tomb_entry_clear(struct tomb_entry *t)
{
	free(t->filename);
	free(t->network);
	free(t->container_id);
	free(t->netns_path);
}

void pods__tombs_add(struct tomb_entry **v, size_t *n, size_t *cap, const Tscni__Tombstone *t,
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
	e->netns_path = pods__dup_or_empty(t->netns_path);
	strscpy(e->interface_name, t->interface_name ? t->interface_name : "",
		sizeof(e->interface_name));
}

static void load_tombstone(void *arg, const Tscni__Tombstone *t, const char *filename)
{
	struct load_ctx *ctx = arg;

	pods__tombs_add(&ctx->tombs, &ctx->ntombs, &ctx->cap, t, filename);
}

static void load_job(void *arg, const Tscni__Job *job)
{
	struct load_ctx *ctx = arg;

	ctx->jobs++;
	if (ctx->p->sup->jobs)
		jobs_load(ctx->p->sup->jobs, job);
}

/* Startup's release of one attachment (the loop is not running yet). */
static void startup_release(struct pods *p, struct attachment *a, const char *reason)
{
	const char *why = NULL;
	int ret = pods__release(p, a, &why);

	if (ret < 0) {
		log_warn_r(ret, "%s: %s, but %s failed; the reconciler retries", a->tag, reason,
			   why);
		return;
	}
	log_info("%s: %s: released", a->tag, reason);
	pods__table_remove(p, a);
	pods__attachment_free(a);
}

/* A pod's keys for its worker, from its identity (wiped after use). */
struct pod_keys {
	uint8_t machine[KEY_LEN];
	uint8_t node[KEY_LEN];
	char hostname[HOST_MAX_LEN + 1];
	struct tag_set tags;
	bool registered;
	/* A key rotation under way (pods_reauth.c): the old node key. */
	bool has_old;
	uint8_t old_public[KEY_LEN];
};

/* The pod's keys from its identity record: 0, or a negative errno. */
static int identity_keys(struct pods *p, const char *pod_uid, struct pod_keys *k)
{
	Tscni__Identity *id;
	int err = 0, ret = 0;

	id = state_identity_get(p->st, pod_uid, &err);
	if (!id)
		return err < 0 ? err : -ENOENT;
	if (id->machine_private.len != KEY_LEN || id->node_private.len != KEY_LEN) {
		ret = -EINVAL;
	} else {
		memcpy(k->machine, id->machine_private.data, KEY_LEN);
		memcpy(k->node, id->node_private.data, KEY_LEN);
		strscpy(k->hostname, id->hostname ? id->hostname : "", sizeof(k->hostname));
		/* Validated (validate_identity): at most POD_TAGS_MAX tags. */
		k->tags.n = 0;
		for (size_t i = 0; i < id->n_tags; i++)
			strscpy(k->tags.v[k->tags.n++], id->tags[i], sizeof(k->tags.v[0]));
		k->registered = id->registered;
		k->has_old = id->old_node_public.len == KEY_LEN;
		if (k->has_old)
			memcpy(k->old_public, id->old_node_public.data, KEY_LEN);
	}
	pods__identity_wipe_free(id);
	return ret;
}

/* Takes custody of the worker a's record names back. Failures are logged
 * and leave a without a worker (the rebuild pass gives it one). */
static void startup_adopt(struct pods *p, struct attachment *a, const struct pod_keys *k)
{
	struct worker_spec spec;
	struct worker_identity id;
	const int no_fds[2] = {-1, -1};
	uint32_t slot;
	int ret;

	if (pods__pod_worker_att(p, a->pod_uid))
		return; /* another attachment of the pod adopted it */
	ret = pods__slot_get(p, a, &slot);
	if (ret < 0)
		return;
	pods__spec_fill(p, a, &spec, slot, k->machine, k->node, k->hostname, &k->tags,
			k->registered);
	spec.old_node_public = k->has_old ? k->old_public : NULL;
	spec.tun_fd = -1;
	/* With a control plane it holds the pod's UDP and netlink sockets
	 * too (their custody comes back from the worker: the fds here are
	 * stand-ins); one spawned by an older supervisor has no netlink
	 * socket and gets one for its respawns below. */
	if (p->sup->cfg.control_url) {
		spec.extra_fds = no_fds;
		spec.n_extra_fds = 2;
		spec.n_extra_fds_optional = 1;
	}
	ret = workers_adopt(p->sup->workers, &spec, &a->wi, pods__on_worker, a, &a->worker);
	sodium_memzero(&spec, sizeof(spec));
	metrics_adoption(p->sup->metrics, ret == 0);
	if (ret == -EINVAL)
		log_warn("%s: the worker's spec is invalid: not adopted", a->tag);
	if (ret < 0)
		return; /* workers_adopt logged why it refused; pass 2 rebuilds */
	a->worker_ready = workers_is_ready(a->worker);
	/* Custody is back: our own fd, if any, is one too many. */
	if (a->tun_fd >= 0) {
		close(a->tun_fd);
		a->tun_fd = -1;
	}
	/* Spawned by a supervisor older than the host's netlink socket: its
	 * respawns get one (pods_sockets.c), so they follow the host's
	 * addresses. */
	if (p->sup->cfg.control_url && workers_custody_count(a->worker) < 2 + 2) {
		const char *why = "";
		int nl;

		ret = pods__netlink_socket_new(&nl, &why);
		if (ret == 0) {
			ret = workers_custody_add(a->worker, nl);
			close(nl);
		}
		if (ret < 0)
			log_warn_r(ret, "%s: no netlink socket for the worker's respawns", a->tag);
	}
	if (workers_identity(a->worker, &id) == 0 && id.version != a->wi.version) {
		a->wi = id;
		ret = pods__attachment_save_worker(p, a, &a->wi, a->worker_uid);
		if (ret < 0)
			log_warn_r(ret, "%s: record the worker", a->tag);
	}
	log_info("%s: worker %d adopted (protocol %u)", a->tag, (int)a->wi.pid, a->wi.version);
}

/* Is the way clear to create a's ts0 in nsfd? A device of that name is
 * deleted when it is ours (held by a process we could not verify as the
 * pod's worker: it loses its TUN, the pod gets a new one) and left alone,
 * with no worker, when it is not. */
static bool startup_clear_ts0(struct attachment *a, int nsfd)
{
	struct ifindex_query q = {.name = a->interface_name};
	int ret = netns_run(nsfd, pods__ifindex_in_ns, &q);

	if (ret > 0 && (uint32_t)ret == a->ifindex) {
		log_warn("%s: %s (ifindex %d) is held by a process that was not adopted: "
			 "deleting it and starting a new worker",
			 a->tag, a->interface_name, ret);
		ret = netops_link_delete(nsfd, a->interface_name, ret);
		if (ret < 0) {
			log_err_r(ret, "%s: delete %s", a->tag, a->interface_name);
			return false;
		}
	} else if (ret > 0) {
		log_warn("%s: a %s that is not ours (ifindex %d, ours was %u) is in the pod: "
			 "leaving it, no worker",
			 a->tag, a->interface_name, ret, a->ifindex);
		return false;
	} else if (ret < 0) {
		log_warn_r(ret, "%s: look for %s", a->tag, a->interface_name);
		return false;
	}
	return true;
}

/* Rebuilds a's ts0 and spawns a new worker with the pod's keys. Failures
 * are logged and leave a without a worker (CHECK says so; DEL releases it). */
static void startup_rebuild(struct pods *p, struct attachment *a, const struct pod_keys *k)
{
	const char *why = NULL;
	int nsfd = -1, tun_fd = -1, ifindex = 0, ret;

	if (pods__pod_worker_att(p, a->pod_uid) && a->tun_fd >= 0)
		return; /* served by the pod's worker, fd held here */
	ret = pods__netns_reopen(a->netns_path, a->netns_dev, a->netns_ino, &nsfd);
	if (ret <= 0)
		return; /* gone: the reconciler releases it */
	if (!startup_clear_ts0(a, nsfd))
		goto out;
	ret = pods__tun_create(a, nsfd, &tun_fd, &ifindex, &why);
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
	ret = pods__attachment_save(p, a);
	if (ret < 0)
		log_warn_r(ret, "%s: record the rebuilt %s", a->tag, a->interface_name);
	p->spawn_old = k->has_old ? k->old_public : NULL;
	ret = pods__attachment_spawn(p, a, k->machine, k->node, k->hostname, &k->tags,
				     k->registered);
	p->spawn_old = NULL;
	if (ret == 0)
		log_info("%s: %s rebuilt (ifindex %d), worker spawned", a->tag, a->interface_name,
			 ifindex);
out:
	close(nsfd);
}

/* Startup: a's worker adopted (adopt: the record names one), or else ts0
 * rebuilt and a new worker spawned with the pod's keys. */
static void startup_worker(struct pods *p, struct attachment *a, bool adopt)
{
	struct pod_keys k = {.registered = false};
	int ret;

	if (a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY || !p->sup->workers)
		return;
	ret = identity_keys(p, a->pod_uid, &k);
	if (ret < 0) {
		log_err_r(ret, "%s: no usable identity for the pod's worker", a->tag);
		return;
	}
	if (adopt)
		startup_adopt(p, a, &k);
	else
		startup_rebuild(p, a, &k);
	sodium_memzero(&k, sizeof(k));
}

/* Each tombstone is a DEL the plugin could not deliver. Returns how many
 * are kept for the reconciler. */
static size_t startup_tombstones(struct pods *p, struct tomb_entry *tombs, size_t n)
{
	struct attachment *a;
	size_t kept = 0;
	int ret;

	for (size_t i = 0; i < n; i++) {
		struct tomb_entry *t = &tombs[i];
		char keyname[RECORD_KEYNAME_LEN];

		record_key_filename(t->network, t->container_id, t->ifname, keyname,
				    sizeof(keyname));
		a = pods__table_find(p, keyname);
		if (a) {
			const char *why = NULL;

			ret = pods__release(p, a, &why);
			if (ret < 0) {
				log_warn_r(ret, "%s: tombstone: %s; kept for the next round",
					   a->tag, why);
				kept++;
				continue;
			}
			log_info("%s: released by tombstone", a->tag);
			pods__table_remove(p, a);
			pods__attachment_free(a);
		}
		ret = state_tombstone_remove(p->st, t->filename);
		if (ret < 0 && ret != -ENOENT) {
			log_warn_r(ret, "remove tombstone %s", t->filename);
			kept++;
		}
	}
	return kept;
}

/* Reconcile once: a netns that vanished or was replaced while we were
 * away, and ADDs a killed supervisor left half-made. */
static void startup_reconcile(struct pods *p)
{
	struct attachment *a, *next;
	int nsfd, ret;

	for (a = p->atts; a; a = next) {
		next = a->next;
		if (a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY) {
			startup_release(p, a, "left half-made by a previous supervisor");
			continue;
		}
		ret = pods__netns_reopen(a->netns_path, a->netns_dev, a->netns_ino, &nsfd);
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

	p->api_jobs = ctx.jobs;
	p->tombs_pending = startup_tombstones(p, ctx.tombs, ctx.ntombs);
	startup_reconcile(p);

	/* The workers: adopt those the records name first (their pods' other
	 * attachments must not take the worker), then rebuild the rest. */
	for (int pass = 0; pass < 2; pass++) {
		for (a = p->atts; a; a = next) {
			next = a->next;
			if (!a->worker && (pass == 1 || a->wi.pid > 0))
				startup_worker(p, a, pass == 0);
		}
		/* Every live worker is adopted or stopped before a new one
		 * takes a uid (a damaged record must not leave two pods'
		 * workers on one uid). */
		if (pass == 0 && p->sup->workers)
			workers_sweep_orphans(p->sup->workers);
	}
	ret = 0;
out:
	for (size_t i = 0; i < ctx.ntombs; i++)
		pods__tomb_entry_clear(&ctx.tombs[i]);
	free(ctx.tombs);
	return ret;
}
