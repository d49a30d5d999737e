/* DEL (docs/cni-contract.md section 4): the attachment released, its worker
 * stopped first; a DEL of a key never added, or deleted before, succeeds.
 * A tombstone (a DEL the plugin could not deliver) becomes a DEL here too,
 * at startup or when the reconciler finds one. */
#include "pods.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "pods_internal.h"
#include "state.h"

struct op_del {
	struct op op;
	char *tombstone; /* a DEL from a tombstone: its file name */
	bool existed;	 /* outcome: the reply's */
};

static struct op_del *to_del(struct op *op)
{
	return (struct op_del *)op;
}

static void del_work(struct op *op)
{
	struct op_del *del = to_del(op);
	const char *why = NULL;
	int ret;

	if (!op->cur) {
		del->existed = false;
	} else {
		del->existed = true;
		ret = pods__release(op->pods, op->cur, &why);
		if (ret < 0) {
			pods__op_fail(op, pods__errno_cni_code(ret),
				      "cannot release the attachment", ret, "%s", why);
			return;
		}
		op->replace = true;
		log_info("%s: released", op->tag);
		if (op->logged_out) {
			pods__identity_logged_out(op, op->cur->pod_uid);
			pods__device_cleanup(op->pods, op->cur->pod_uid, false);
		}
	}
	if (del->tombstone) {
		ret = state_tombstone_remove(op->pods->st, del->tombstone);
		if (ret < 0 && ret != -ENOENT)
			log_warn_r(ret, "%s: remove tombstone", op->tag);
	}
}

static void del_reply(struct op *op)
{
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__DelReply body = TSCNI__DEL_REPLY__INIT;

	body.existed = to_del(op)->existed;
	rep.body_case = TSCNI__CNI_REPLY__BODY_DEL;
	rep.del = &body;
	pods__op_send(op, &rep);
}

static void del_destroy(struct op *op)
{
	free(to_del(op)->tombstone);
}

static const struct op_type del_type = {
	.size = sizeof(struct op_del),
	.work = del_work,
	.stops_worker = pods__op_stops_always,
	.reply = del_reply,
	.destroy = del_destroy,
};

void pods__submit_del(struct pods *p, const Tscni__DelRequest *m, struct pods_request *r)
{
	struct op *op =
		pods__op_new(p, &del_type, m->key->network, m->key->container_id, m->key->ifname);

	pods__op_tag_from_table(op);
	op->req = r;
	pods__op_enqueue(op);
}

void pods__del_tombstone(struct pods *p, const struct tomb_entry *t)
{
	struct op *op = pods__op_new(p, &del_type, t->network, t->container_id, t->ifname);

	pods__op_tag_from_table(op);
	to_del(op)->tombstone = xstrdup(t->filename);
	log_info("%s: tombstone found, performing its DEL", op->tag);
	pods__op_enqueue(op);
}

bool pods__tombstone_active(struct pods *p, const char *filename)
{
	for (struct op *o = p->ops; o; o = o->next)
		if (o->type == &del_type && to_del(o)->tombstone &&
		    strcmp(to_del(o)->tombstone, filename) == 0)
			return true;
	return false;
}
