/* The queue every operation on the pod table goes through, and the one
 * reply each request gets. An operation (struct op, the head of one struct
 * per kind: pods_add.c, pods_del.c, pods_check.c, pods_gc.c, pods_save.c,
 * pods_reconcile.c) waits behind every earlier operation of its key, then
 * stops the attachment's worker when its kind says so, does its work on the
 * threadpool and hands the outcome to the loop (pods_internal.h, Threads). */
#include "pods.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "pods_internal.h"
#include "record.h"
#include "supervisor.h"
#include "workers.h"

static void op_schedule(struct pods *p);

/* Records a failure: msg is fixed per cause, detail the variable part. */
void pods__op_fail(struct op *op, uint32_t code, const char *msg, int ret, const char *fmt, ...)
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

struct op *pods__op_new(struct pods *p, const struct op_type *type, const char *network,
			const char *container_id, const char *ifname)
{
	struct op *op = xcalloc(1, type->size);

	op->pods = p;
	op->type = type;
	record_key_filename(network, container_id, ifname, op->keyname, sizeof(op->keyname));
	pods__make_tag(op->tag, "-", op->keyname);
	return op;
}

struct op *pods__op_new_for(struct pods *p, const struct op_type *type, const struct attachment *a)
{
	struct op *op = pods__op_new(p, type, a->network, a->container_id, a->ifname);

	memcpy(op->tag, a->tag, sizeof(op->tag));
	return op;
}

void pods__op_tag_from_table(struct op *op)
{
	struct attachment *a = pods__table_find(op->pods, op->keyname);

	if (a)
		memcpy(op->tag, a->tag, sizeof(op->tag));
}

void pods__op_free(struct op *op)
{
	if (op->type->destroy)
		op->type->destroy(op);
	free(op);
}

/* Appends op to the active list and starts what can start. */
void pods__op_enqueue(struct op *op)
{
	struct op **pp = &op->pods->ops;

	while (*pp)
		pp = &(*pp)->next;
	*pp = op;
	op_schedule(op->pods);
}

bool pods__key_active(struct pods *p, const char *keyname)
{
	for (struct op *o = p->ops; o; o = o->next)
		if (strcmp(o->keyname, keyname) == 0)
			return true;
	return false;
}

bool pods__op_stops_always(const struct op *op)
{
	return true;
}

static void op_work(uv_work_t *w)
{
	struct op *op = w->data;

	op->type->work(op);
}

/* Applies the outcome to the table, then lets the kind reply. */
static void op_after_work(uv_work_t *w, int status)
{
	struct op *op = w->data;
	struct pods *p = op->pods;

	if (op->replace && op->cur) {
		pods__table_remove(p, op->cur);
		pods__attachment_retire(p, op->cur);
		op->cur = NULL;
	}
	if (op->type->done) {
		op->type->done(op);
		return;
	}
	pods__op_reply(op);
	pods__op_finish(op);
}

bool pods__op_queue_work(struct op *op)
{
	struct pods *p = op->pods;
	int ret;

	op->work.data = op;
	ret = uv_queue_work(&p->sup->loop, &op->work, op_work, op_after_work);
	if (ret == 0)
		return true;
	pods__op_fail(op, CNI_ERR_INTERNAL, "supervisor internal error", ret, "queue work");
	pods__op_reply(op);
	pods__op_finish(op);
	return false;
}

void pods__op_resume(struct attachment *a)
{
	struct op *op = a->stop_op;

	if (!op)
		return;
	a->stop_op = NULL;
	op->waiting_worker = false;
	pods__op_queue_work(op);
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
		op->cur = pods__table_find(p, op->keyname);
		if (op->cur && op->cur->worker && op->type->stops_worker &&
		    op->type->stops_worker(op)) {
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
		if (!pods__op_queue_work(op))
			return; /* pods__op_finish rescheduled */
	}
}

/* ------------------------------------------------------------------ replies */

/* Counts r's answer for the metrics. */
static void request_observe(const struct pods_request *r, bool ok)
{
	metrics_cni_observe(r->metrics, (enum metrics_verb)r->verb, ok,
			    (uv_hrtime() - r->start_ns) / 1000);
}

void pods__request_reply(struct pods_request *r, const Tscni__CniReply *rep)
{
	if (!r)
		return;
	request_observe(r, rep->body_case != TSCNI__CNI_REPLY__BODY_ERROR);
	if (r->fn)
		r->fn(r->arg, rep);
	free(r);
}

void pods__reply_error(struct pods_request *r, uint32_t code, const char *msg, const char *detail)
{
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__Error e = TSCNI__ERROR__INIT;

	e.cni_code = code;
	e.msg = (char *)msg;
	e.details = (char *)detail;
	rep.protocol_version = CNI_PROTOCOL_VERSION;
	rep.body_case = TSCNI__CNI_REPLY__BODY_ERROR;
	rep.error = &e;
	pods__request_reply(r, &rep);
}

void pods__op_reply(struct op *op)
{
	if (!op->req)
		return;
	if (op->cni_code) {
		pods__reply_error(op->req, op->cni_code, op->msg, op->detail);
		op->req = NULL;
		return;
	}
	if (op->type->reply)
		op->type->reply(op);
}

void pods__op_send(struct op *op, Tscni__CniReply *rep)
{
	rep->protocol_version = CNI_PROTOCOL_VERSION;
	pods__request_reply(op->req, rep);
	op->req = NULL;
}

static void op_closed(uv_handle_t *h)
{
	pods__op_free(h->data);
}

/* Takes op off the active list, frees it, and starts what it held up. */
void pods__op_finish(struct op *op)
{
	struct pods *p = op->pods;

	if (op->type->end)
		op->type->end(op);
	for (struct op **pp = &p->ops; *pp; pp = &(*pp)->next) {
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	}
	/* Every request gets exactly one reply, even from a path that forgot. */
	if (op->req) {
		pods__reply_error(op->req, CNI_ERR_INTERNAL, "supervisor internal error",
				  "the operation ended without a reply");
		op->req = NULL;
	}
	if (!op->type->close || !op->type->close(op, op_closed))
		pods__op_free(op);
	op_schedule(p);
}

/* ------------------------------------------------------------------- submit */

static struct pods_request *request_new(struct pods *p, int verb, pods_reply_fn *fn, void *arg)
{
	struct pods_request *r = xcalloc(1, sizeof(*r));

	r->fn = fn;
	r->arg = arg;
	r->verb = verb;
	r->start_ns = uv_hrtime();
	r->metrics = p->sup ? p->sup->metrics : NULL;
	return r;
}

static int request_verb(Tscni__CniRequest__BodyCase c)
{
	switch (c) {
	case TSCNI__CNI_REQUEST__BODY_ADD:
		return METRICS_ADD;
	case TSCNI__CNI_REQUEST__BODY_DEL:
		return METRICS_DEL;
	case TSCNI__CNI_REQUEST__BODY_CHECK:
		return METRICS_CHECK;
	case TSCNI__CNI_REQUEST__BODY_GC:
		return METRICS_GC;
	default:
		return METRICS_VERBS;
	}
}

void pods_request_detach(struct pods_request *r)
{
	if (r)
		r->fn = NULL;
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
	r = request_new(p, request_verb(req->body_case), fn, arg);
	/* The reply must come later than this call (see pods.h); the pointer
	 * is handed out first so that a GC with nothing to release, which
	 * replies at once below, does not find a caller unprepared. */
	*out = r;
	switch (req->body_case) {
	case TSCNI__CNI_REQUEST__BODY_ADD:
		ret = pods__submit_add(p, req->add, r);
		break;
	case TSCNI__CNI_REQUEST__BODY_DEL:
		pods__submit_del(p, req->del, r);
		break;
	case TSCNI__CNI_REQUEST__BODY_CHECK:
		pods__submit_check(p, req->check, r);
		break;
	case TSCNI__CNI_REQUEST__BODY_ROLL_WORKERS:
		pods__submit_roll(p, r);
		break;
	default:
		pods__submit_gc(p, req->gc, r);
		break;
	}
	if (ret < 0) {
		/* The caller answers this one with an error. */
		request_observe(r, false);
		*out = NULL;
		free(r);
	}
	return ret;
}
