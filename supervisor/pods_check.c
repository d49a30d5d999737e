/* CHECK (docs/cni-contract.md section 4): the attachment's netns is still
 * the one it was made in, ts0 there has the MTU and addresses ADD gave it,
 * and the pod's worker runs. */
#include "pods.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"
#include "netops.h"
#include "pods_internal.h"

struct op_check {
	struct op op;
	char *netns_path; /* the request's, may be empty */
	struct ip_prefix expected[PREFIX_MAX];
	size_t nexpected;
	/* Outcome: the reply's addresses. */
	struct ip_prefix addrs[PREFIX_MAX];
	size_t naddrs;
};

static struct op_check *to_check(struct op *op)
{
	return (struct op_check *)op;
}

static void check_work(struct op *op)
{
	struct op_check *chk = to_check(op);
	struct attachment *cur = op->cur;
	const char *path = chk->netns_path && *chk->netns_path ? chk->netns_path : NULL;
	int nsfd, ret;

	if (!cur) {
		pods__op_fail(op, CNI_ERR_CHECK, "no record of this attachment", 0,
			      "the supervisor holds no attachment for %s", op->keyname);
		return;
	}
	if (path && strcmp(path, cur->netns_path) != 0) {
		pods__op_fail(op, CNI_ERR_CHECK, "the pod's network namespace changed", 0,
			      "the attachment was made in %s, CHECK names %s", cur->netns_path,
			      path);
		return;
	}
	ret = pods__netns_reopen(cur->netns_path, cur->netns_dev, cur->netns_ino, &nsfd);
	if (ret == 0) {
		pods__op_fail(op, CNI_ERR_CHECK, "the pod's network namespace is gone", 0,
			      "%s no longer exists or is another namespace", cur->netns_path);
		return;
	}
	if (ret < 0) {
		pods__op_fail(op, pods__errno_cni_code(ret),
			      "cannot open the pod's network namespace", ret, "%s",
			      cur->netns_path);
		return;
	}
	ret = netops_link_check(nsfd, cur->interface_name, NETOPS_MTU, chk->expected,
				chk->nexpected, op->detail, sizeof(op->detail));
	close(nsfd);
	if (ret < 0) {
		op->cni_code = CNI_ERR_CHECK;
		op->msg = "the pod's interface does not match what ADD made";
		if (!op->detail[0])
			snprintf(op->detail, sizeof(op->detail), "%s: %s", cur->interface_name,
				 strerror(-ret));
		return;
	}
	memcpy(chk->addrs, cur->addrs, sizeof(chk->addrs));
	chk->naddrs = cur->naddrs;
}

/* On the loop: ts0 is right, but is the pod's worker up? */
static void check_done(struct op *op)
{
	struct pods *p = op->pods;

	if (op->cni_code == 0 && op->cur && !pods__pod_worker_up(p, op->cur->pod_uid)) {
		struct attachment *wa = pods__pod_worker_att(p, op->cur->pod_uid);

		pods__op_fail(op, CNI_ERR_WORKER, "worker not running", 0, "pod %s: %s",
			      op->cur->pod_uid,
			      !wa ? "the pod has no worker" : "its worker is being respawned");
	}
	pods__op_reply(op);
	pods__op_finish(op);
}

static void check_reply(struct op *op)
{
	struct op_check *chk = to_check(op);
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__CheckReply body = TSCNI__CHECK_REPLY__INIT;
	struct pb_prefixes addrs;

	body.n_addresses = pods__prefixes_to_pb(chk->addrs, chk->naddrs, &addrs);
	body.addresses = addrs.p;
	rep.body_case = TSCNI__CNI_REPLY__BODY_CHECK;
	rep.check = &body;
	pods__op_send(op, &rep);
}

static void check_destroy(struct op *op)
{
	free(to_check(op)->netns_path);
}

static const struct op_type check_type = {
	.size = sizeof(struct op_check),
	.work = check_work,
	.done = check_done,
	.reply = check_reply,
	.destroy = check_destroy,
};

void pods__submit_check(struct pods *p, const Tscni__CheckRequest *m, struct pods_request *r)
{
	struct op *op =
		pods__op_new(p, &check_type, m->key->network, m->key->container_id, m->key->ifname);
	struct op_check *chk = to_check(op);

	pods__op_tag_from_table(op);
	op->req = r;
	chk->netns_path = pods__dup_or_empty(m->netns_path);
	chk->nexpected = pods__prefixes_from_pb(m->expected_addresses, m->n_expected_addresses,
						chk->expected);
	pods__op_enqueue(op);
}
