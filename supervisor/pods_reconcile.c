/* The reconciler: every reconcile_interval_s, a probe of each attachment
 * (PROBE: is its netns still the one it was made in? If not, the pod went
 * away without a DEL and the attachment is released) and a scan for
 * tombstones the plugin wrote while the supervisor was briefly unreachable. */
#include "pods.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "log.h"
#include "mem.h"
#include "pods_internal.h"
#include "record.h"
#include "state.h"
#include "supervisor.h"

struct tomb_scan {
	struct pods *pods;
	uv_work_t work;
	struct tomb_entry *ents;
	size_t n;
};

static void probe_work(struct op *op)
{
	struct attachment *cur = op->cur;
	const char *why = NULL;
	int nsfd, ret;

	if (!cur)
		return;
	ret = pods__netns_reopen(cur->netns_path, cur->netns_dev, cur->netns_ino, &nsfd);
	if (ret == 1) {
		close(nsfd);
		return;
	}
	if (ret < 0) {
		log_warn_r(ret, "%s: reconcile: open %s", cur->tag, cur->netns_path);
		return;
	}
	ret = pods__release(op->pods, cur, &why);
	if (ret < 0) {
		log_warn_r(ret, "%s: reconcile: netns gone, %s", cur->tag, why);
		return;
	}
	op->replace = true;
	log_info("%s: netns %s gone without DEL: released", cur->tag, cur->netns_path);
}

/* A probe has nothing of its own beyond struct op. */
static const struct op_type probe_type = {
	.size = sizeof(struct op),
	.work = probe_work,
};

void pods__probe(struct pods *p, const struct attachment *a)
{
	pods__op_enqueue(pods__op_new_for(p, &probe_type, a));
}

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
		pods__tombs_add(&s->ents, &s->n, &cap, t, de->d_name);
		tscni__tombstone__free_unpacked(t, NULL);
	}
	closedir(d);
}

static void tomb_scan_after(uv_work_t *w, int status)
{
	struct tomb_scan *s = w->data;
	struct pods *p = s->pods;

	p->tomb_scan_running = false;
	p->tombs_pending = s->n;
	for (size_t i = 0; i < s->n; i++) {
		struct tomb_entry *t = &s->ents[i];

		if (!p->stopping && !pods__tombstone_active(p, t->filename))
			pods__del_tombstone(p, t);
		pods__tomb_entry_clear(t);
	}
	free(s->ents);
	free(s);
}

static bool pod_attached(const struct pods *p, const char *pod_uid)
{
	for (const struct attachment *a = p->atts; a; a = a->next) {
		if (strcmp(a->pod_uid, pod_uid) == 0)
			return true;
	}
	for (const struct attachment *a = p->dying; a; a = a->next) {
		if (strcmp(a->pod_uid, pod_uid) == 0)
			return true;
	}
	return false;
}

bool pods_pod_attached(const struct pods *p, const char *pod_uid)
{
	return pod_attached(p, pod_uid);
}

void pods__identities_gc(struct pods *p)
{
	uint64_t now = uv_now(&p->sup->loop), grace = (uint64_t)p->sup->cfg.identity_grace_s * 1000;

	/* An operation in flight may be creating or reading an identity
	 * (ADD, under identity_lock in the threadpool): the next tick. */
	if (p->ops)
		return;
	for (size_t i = 0; i < p->ngone;) {
		struct pod_gone *g = &p->gone[i];
		int ret;

		if (pod_attached(p, g->pod_uid)) {
			free(g->pod_uid);
			*g = p->gone[--p->ngone];
			continue;
		}
		if (now - g->since_ms < grace) {
			i++;
			continue;
		}
		/* A node that never logged out (its DEL's logout did not
		 * happen) still has a device: a cleanup job for it, once no
		 * attachment record keeps the identity. */
		if (state_attachment_count(p->st, g->pod_uid) == 0)
			pods__device_cleanup(p, g->pod_uid, true);
		ret = state_pod_remove(p->st, g->pod_uid);
		if (ret == -ENOTEMPTY) {
			i++; /* an attachment record on disk: not gone */
			continue;
		}
		if (ret < 0) {
			log_warn_r(ret, "pod %s: remove its identity", g->pod_uid);
			i++;
			continue;
		}
		log_info("pod %s: gone for %u s or more: its identity (keys, node) wiped and "
			 "removed",
			 g->pod_uid, p->sup->cfg.identity_grace_s);
		free(g->pod_uid);
		*g = p->gone[--p->ngone];
	}
}

static void reconcile_cb(uv_timer_t *t)
{
	struct pods *p = t->data;

	if (p->stopping)
		return;
	pods__identities_gc(p);
	for (struct attachment *a = p->atts; a; a = a->next) {
		if (pods__key_active(p, a->keyname))
			continue; /* whatever runs there will settle it */
		pods__probe(p, a);
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
