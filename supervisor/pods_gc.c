/* GC (docs/cni-contract.md section 10): every attachment of the network
 * that the runtime's valid list does not name is released, one release
 * operation each; the last one to finish replies with the count. */
#include "pods.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "pods_internal.h"

struct gc_run {
	struct pods_request *req;
	unsigned int pending;
	unsigned int released;
	char *failed[GC_FAILED_MAX];
	size_t nfailed;
	unsigned int nfailed_total;
};

/* GC's release of one attachment. */
struct op_release {
	struct op op;
	struct gc_run *gc; /* the GC it belongs to */
	bool released;	   /* outcome */
};

static struct op_release *to_release(struct op *op)
{
	return (struct op_release *)op;
}

static void release_work(struct op *op)
{
	const char *why = NULL;
	int ret;

	if (!op->cur)
		return; /* released by a DEL in the meantime */
	ret = pods__release(op->pods, op->cur, &why);
	if (ret < 0) {
		pods__op_fail(op, pods__errno_cni_code(ret), "cannot release the attachment", ret,
			      "%s", why);
		return;
	}
	op->replace = true;
	to_release(op)->released = true;
	log_info("%s: released by GC", op->tag);
	if (op->logged_out) {
		pods__identity_logged_out(op, op->cur->pod_uid);
		pods__device_cleanup(op->pods, op->cur->pod_uid, false);
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
	pods__request_reply(gc->req, &rep);
	for (size_t i = 0; i < gc->nfailed; i++)
		free(gc->failed[i]);
	free(gc);
}

/* The release is over (done or failed): counted, and the GC replies when it
 * was the last. */
static void release_end(struct op *op)
{
	struct gc_run *gc = to_release(op)->gc;

	if (op->cni_code) {
		gc->nfailed_total++;
		if (gc->nfailed < GC_FAILED_MAX)
			gc->failed[gc->nfailed++] =
				xasprintf("%s: %s: %s", op->keyname, op->msg, op->detail);
	} else if (to_release(op)->released) {
		gc->released++;
	}
	gc_put(gc);
}

static const struct op_type release_type = {
	.size = sizeof(struct op_release),
	.work = release_work,
	.stops_worker = pods__op_stops_always,
	.end = release_end,
};

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

void pods__submit_gc(struct pods *p, const Tscni__GcRequest *m, struct pods_request *r)
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
		struct op *op = pods__op_new_for(p, &release_type, a);

		to_release(op)->gc = gc;
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
		pods__op_enqueue(op);
	}
	/* Drop the hold: replies now, or when the last release completes. */
	gc_put(gc);
}
