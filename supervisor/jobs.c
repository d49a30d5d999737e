/* The device cleanup runner (jobs.h). Jobs arrive from the threadpool (DEL
 * and GC work) through a locked inbox and a uv_async, or from the loop
 * (startup, identity expiry); they run on the loop, at most JOBS_INFLIGHT
 * at once; a finished job's record is removed on the threadpool. */
#include "jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "authkeys.h"
#include "keys.h"
#include "log.h"
#include "mem.h"
#include "pods.h"
#include "state.h"
#include "supervisor.h"

enum { JOB_ID_LEN = 208 }; /* state.c's longest job id, 200, and room */

struct job {
	struct job *next;
	char id[JOB_ID_LEN];
	char *pod_uid;
	char *stable_id;
	uint8_t node_public[32];
	unsigned int attempts;
	uint64_t due_ms;
	struct authkeys_req *req; /* running */
	struct jobs *jobs;
};

struct jobs {
	struct supervisor *sup;
	uv_timer_t timer;
	uv_async_t async;
	uv_mutex_t lock;
	struct job *inbox; /* under lock */
	struct job *list;
	size_t n;
	unsigned int running;
	unsigned int handles_open;
	unsigned int removes_pending; /* record removals on the threadpool */
	bool stopped;		      /* jobs_stop: nothing more runs */
	bool closing;
	bool warned_static;
};

struct remove_work {
	uv_work_t work;
	struct jobs *jobs;
	char id[JOB_ID_LEN];
};

static void run(struct jobs *j);
static void job_end(struct jobs *j, struct job *jb);

static void job_free(struct job *jb)
{
	free(jb->pod_uid);
	free(jb->stable_id);
	free(jb);
}

static void maybe_free(struct jobs *j)
{
	if (!j->closing || j->handles_open || j->removes_pending)
		return;
	while (j->list) {
		struct job *jb = j->list;

		j->list = jb->next;
		job_free(jb);
	}
	while (j->inbox) {
		struct job *jb = j->inbox;

		j->inbox = jb->next;
		job_free(jb);
	}
	uv_mutex_destroy(&j->lock);
	free(j);
}

static void handle_closed(uv_handle_t *h)
{
	struct jobs *j = h->data;

	j->handles_open--;
	maybe_free(j);
}

static void job_id(const uint8_t node_public[32], char *out)
{
	static const char hex[] = "0123456789abcdef";

	memcpy(out, "device-", 7);
	for (int i = 0; i < 12; i++) {
		out[7 + 2 * i] = hex[node_public[i] >> 4];
		out[8 + 2 * i] = hex[node_public[i] & 15];
	}
	out[31] = '\0';
}

/* id: the record's (a loaded job), or NULL for a new one's. */
static struct job *job_new(const char *id, const char *pod_uid, const uint8_t node_public[32],
			   const char *stable_id)
{
	struct job *jb = xcalloc(1, sizeof(*jb));

	if (id)
		snprintf(jb->id, sizeof(jb->id), "%s", id);
	else
		job_id(node_public, jb->id);
	jb->pod_uid = xstrdup(pod_uid);
	jb->stable_id = xstrdup(stable_id ? stable_id : "");
	memcpy(jb->node_public, node_public, 32);
	return jb;
}

/* Into the list unless the same job (same node key) is there already. */
static void job_take(struct jobs *j, struct job *jb)
{
	for (struct job *o = j->list; o; o = o->next) {
		if (strcmp(o->id, jb->id) == 0) {
			job_free(jb);
			return;
		}
	}
	if (j->n >= JOBS_MAX) {
		log_warn("device cleanup: %zu jobs held: %s waits on disk for a restart", j->n,
			 jb->id);
		job_free(jb);
		return;
	}
	jb->jobs = j;
	jb->due_ms = uv_now(&j->sup->loop);
	jb->next = j->list;
	j->list = jb;
	j->n++;
}

static void inbox_drain(struct jobs *j)
{
	struct job *in;

	uv_mutex_lock(&j->lock);
	in = j->inbox;
	j->inbox = NULL;
	uv_mutex_unlock(&j->lock);
	while (in) {
		struct job *next = in->next;

		job_take(j, in);
		in = next;
	}
}

static void on_async(uv_async_t *a)
{
	struct jobs *j = a->data;

	inbox_drain(j);
	run(j);
}

static void on_timer(uv_timer_t *t)
{
	run(t->data);
}

int jobs_new(struct supervisor *sup, struct jobs **out)
{
	struct jobs *j = xcalloc(1, sizeof(*j));
	int ret;

	*out = NULL;
	j->sup = sup;
	ret = uv_mutex_init(&j->lock);
	if (ret < 0) {
		free(j);
		return ret;
	}
	ret = uv_timer_init(&sup->loop, &j->timer);
	if (ret < 0) {
		uv_mutex_destroy(&j->lock);
		free(j);
		return ret;
	}
	j->timer.data = j;
	j->handles_open = 1;
	ret = uv_async_init(&sup->loop, &j->async, on_async);
	if (ret < 0) {
		j->closing = true;
		uv_close((uv_handle_t *)&j->timer, handle_closed);
		return ret;
	}
	j->async.data = j;
	j->handles_open++;
	/* Neither keeps the loop alive: records wait for the next start. */
	uv_unref((uv_handle_t *)&j->timer);
	uv_unref((uv_handle_t *)&j->async);
	*out = j;
	return 0;
}

void jobs_stop(struct jobs *j)
{
	if (!j)
		return;
	j->stopped = true;
	for (struct job *jb = j->list; jb; jb = jb->next) {
		authkeys_cancel(jb->req);
		jb->req = NULL;
	}
	j->running = 0;
	uv_timer_stop(&j->timer);
}

void jobs_close(struct jobs *j)
{
	if (!j)
		return;
	jobs_stop(j);
	j->closing = true;
	uv_close((uv_handle_t *)&j->timer, handle_closed);
	uv_close((uv_handle_t *)&j->async, handle_closed);
}

void jobs_drop_pod(struct jobs *j, const char *pod_uid)
{
	struct job *jb, *jn;

	if (!j || j->stopped)
		return;
	inbox_drain(j);
	for (jb = j->list; jb; jb = jn) {
		jn = jb->next;
		if (strcmp(jb->pod_uid, pod_uid) != 0)
			continue;
		if (jb->req) {
			authkeys_cancel(jb->req);
			jb->req = NULL;
			j->running--;
		}
		log_info("pod %s: attached again: its node is in use, its device cleanup is "
			 "dropped",
			 pod_uid);
		job_end(j, jb);
	}
}

size_t jobs_count(const struct jobs *j)
{
	return j ? j->n : 0;
}

void jobs_load(struct jobs *j, const Tscni__Job *job)
{
	if (job->kind != TSCNI__JOB_KIND__JOB_DELETE_DEVICE || job->node_public.len != 32)
		return;
	job_take(j, job_new(job->id, job->pod_uid, job->node_public.data, job->stable_node_id));
	uv_timer_start(&j->timer, on_timer, 0, 0);
}

int jobs_device_delete(struct jobs *j, const char *pod_uid, const uint8_t node_public[32],
		       const char *stable_id)
{
	struct job *jb = job_new(NULL, pod_uid, node_public, stable_id);
	Tscni__Job m = TSCNI__JOB__INIT;
	int ret;

	m.id = jb->id;
	m.kind = TSCNI__JOB_KIND__JOB_DELETE_DEVICE;
	m.pod_uid = jb->pod_uid;
	m.stable_node_id = jb->stable_id;
	m.node_public.data = jb->node_public;
	m.node_public.len = 32;
	m.created_unix = (uint64_t)time(NULL);
	ret = state_job_put(j->sup->st, &m);
	if (ret < 0) {
		job_free(jb);
		return ret;
	}
	uv_mutex_lock(&j->lock);
	jb->next = j->inbox;
	j->inbox = jb;
	uv_mutex_unlock(&j->lock);
	uv_async_send(&j->async);
	return 0;
}

/* ------------------------------------------------------------ the run */

static void remove_work(uv_work_t *w)
{
	struct remove_work *rw = w->data;
	int ret = state_job_remove(rw->jobs->sup->st, rw->id);

	if (ret < 0 && ret != -ENOENT)
		log_warn_r(ret, "device cleanup: remove the record of %s", rw->id);
}

static void remove_after(uv_work_t *w, int status)
{
	struct remove_work *rw = w->data;
	struct jobs *j = rw->jobs;

	(void)status;
	free(rw);
	j->removes_pending--;
	maybe_free(j);
}

/* The job is done (or dropped): out of the list, its record removed. */
static void job_end(struct jobs *j, struct job *jb)
{
	struct remove_work *rw = xcalloc(1, sizeof(*rw));

	for (struct job **pp = &j->list; *pp; pp = &(*pp)->next) {
		if (*pp == jb) {
			*pp = jb->next;
			j->n--;
			break;
		}
	}
	rw->jobs = j;
	memcpy(rw->id, jb->id, sizeof(rw->id));
	rw->work.data = rw;
	if (uv_queue_work(&j->sup->loop, &rw->work, remove_work, remove_after) == 0)
		j->removes_pending++;
	else
		free(rw);
	job_free(jb);
}

static void device_done(void *arg, enum authkeys_device res, const char *why)
{
	/* Never called after jobs_stop: it cancels every request. */
	struct job *jb = arg;
	struct jobs *j = jb->jobs;
	char nk[80];

	jb->req = NULL;
	j->running--;
	keys_to_text("nodekey", jb->node_public, nk, sizeof(nk));
	switch (res) {
	case AUTHKEYS_DEVICE_DELETED:
	case AUTHKEYS_DEVICE_FOUND: /* a check's, never a delete's */
		log_info("pod %s: device %.32s… deleted", jb->pod_uid, nk);
		job_end(j, jb);
		break;
	case AUTHKEYS_DEVICE_ABSENT:
		log_info("pod %s: device %.32s… is gone already (%s)", jb->pod_uid, nk, why);
		job_end(j, jb);
		break;
	case AUTHKEYS_DEVICE_MISMATCH:
		log_warn("pod %s: device not deleted: %s; the job is dropped", jb->pod_uid, why);
		job_end(j, jb);
		break;
	case AUTHKEYS_DEVICE_RETRY: {
		uint64_t ms = (uint64_t)JOBS_BACKOFF_MS << (jb->attempts < 8 ? jb->attempts : 8);

		if (ms > JOBS_BACKOFF_MAX_MS)
			ms = JOBS_BACKOFF_MAX_MS;
		jb->attempts++;
		jb->due_ms = uv_now(&j->sup->loop) + ms;
		log_info("pod %s: device cleanup attempt %u failed (%s); again in %" PRIu64 " ms",
			 jb->pod_uid, jb->attempts, why, ms);
		break;
	}
	}
	uv_timer_start(&j->timer, on_timer, 0, 0);
}

static void run(struct jobs *j)
{
	uint64_t now = uv_now(&j->sup->loop), next = 0;
	struct job *jb, *jn;

	if (j->stopped)
		return;
	if (j->n && !j->sup->authkeys) {
		if (!j->warned_static)
			log_warn("device cleanup: %zu jobs wait for a key source's API "
				 "(--oauth-client-id or --headscale-api-url)",
				 j->n);
		j->warned_static = true;
		return;
	}
	for (jb = j->list; jb; jb = jn) {
		jn = jb->next;
		if (jb->req)
			continue;
		if (jb->due_ms > now) {
			next = next && next < jb->due_ms ? next : jb->due_ms;
			continue;
		}
		if (j->running >= JOBS_INFLIGHT)
			break;
		/* Still in the table (the DEL that wrote the job finishes on
		 * the loop after it), or back: later. A pod that is back for
		 * good has its jobs dropped by its ADD (jobs_drop_pod). */
		if (j->sup->pods && pods_pod_attached(j->sup->pods, jb->pod_uid)) {
			jb->due_ms = now + JOBS_BACKOFF_MS;
			next = next && next < jb->due_ms ? next : jb->due_ms;
			continue;
		}
		if (authkeys_device_delete(j->sup->authkeys, jb->node_public, jb->stable_id,
					   device_done, jb, &jb->req) < 0) {
			jb->due_ms = now + JOBS_BACKOFF_MS;
			next = next && next < jb->due_ms ? next : jb->due_ms;
			continue;
		}
		j->running++;
	}
	if (next)
		uv_timer_start(&j->timer, on_timer, next - now, 0);
}
