/* ROLL_WORKERS: every pod's worker replaced by one from the worker binary
 * installed now, one at a time, each waiting for its replacement's Ready
 * (at most ROLL_STEP_TIMEOUT_MS) before the next. */
#include "pods.h"

#include <stdlib.h>

#include <uv.h>

#include "log.h"
#include "mem.h"
#include "pods_internal.h"
#include "supervisor.h"
#include "workers.h"

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

static void roll_step(struct pods *p, bool ok, const char *why);

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
	pods__request_reply(r->req, &rep);
	uv_close((uv_handle_t *)&r->timer, roll_closed);
}

static void roll_fail(struct roll_run *r, const struct attachment *a, const char *why)
{
	if (r->nfailed < ROLL_FAILED_MAX)
		r->failed[r->nfailed++] = xasprintf("%s: %s", a ? a->pod_uid : "?", why);
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
		struct attachment *a = pods__table_find_id(p, r->cur);

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
		struct attachment *a = pods__table_find_id(p, r->ids[r->next++]);
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

void pods__submit_roll(struct pods *p, struct pods_request *req)
{
	struct roll_run *r;
	size_t n = 0;

	if (p->roll || p->stopping) {
		pods__reply_error(req, CNI_ERR_TRY_AGAIN,
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

void pods__roll_worker(struct pods *p, const struct attachment *a, bool ok, const char *why)
{
	if (p->roll && p->roll->cur == a->id)
		roll_step(p, ok, why);
}

void pods__roll_stop(struct pods *p, const char *why)
{
	roll_finish(p, why);
}
