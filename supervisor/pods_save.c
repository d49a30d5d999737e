/* SAVE: a rewrite of an attachment's record with its worker's identity
 * (pid, start time, protocol, uid slot), so that the next supervisor adopts
 * the right process; with the node's addresses and stable id into the pod's
 * identity when a Ready brought them. Queued on the attachment's key like
 * any operation, so it never races the DEL that removes the record. */
#include "pods.h"

#include <string.h>

#include "log.h"
#include "mem.h"
#include "pods_internal.h"

struct op_save {
	struct op op;
	struct save_args save;
};

void pods__save_ident_set(struct save_args *s, const struct attachment *a, const char *stable)
{
	s->ident = true;
	memcpy(s->addrs, a->addrs, sizeof(s->addrs));
	s->naddrs = a->naddrs;
	strscpy(s->stable, stable ? stable : "", sizeof(s->stable));
}

void pods__save_work(struct op *op, const struct save_args *s)
{
	int ret;

	if (!op->cur || op->cur->id != s->id)
		return; /* released or replaced in the meantime */
	ret = pods__attachment_save_worker(op->pods, op->cur, &s->wi, s->uid);
	if (ret < 0)
		log_warn_r(ret, "%s: record the worker's identity", op->tag);
	if (s->ident) {
		ret = pods__identity_record(op->pods, op->cur->pod_uid, true, s->addrs, s->naddrs,
					    s->stable);
		if (ret < 0)
			log_warn_r(ret, "%s: record the node's addresses in the identity", op->tag);
	}
}

static void save_op_work(struct op *op)
{
	pods__save_work(op, &((struct op_save *)op)->save);
}

static const struct op_type save_type = {
	.size = sizeof(struct op_save),
	.work = save_op_work,
};

void pods__record_worker(struct pods *p, struct attachment *a, bool ident, const char *stable)
{
	struct op_save *op;

	if (p->stopping)
		return;
	op = (struct op_save *)pods__op_new_for(p, &save_type, a);
	op->save.id = a->id;
	op->save.wi = a->wi;
	op->save.uid = a->worker_uid;
	if (ident)
		pods__save_ident_set(&op->save, a, stable);
	pods__op_enqueue(&op->op);
}
