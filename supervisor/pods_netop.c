/* A worker's requests for addresses and routes on its pod's ts0
 * (workers_config.netop): done on the threadpool inside the pod's netns,
 * re-opened by path and checked by inode, and answered with
 * workers_netop_reply unless the worker is GONE by then. */
#include "pods.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <uv.h>

#include "ip.h"
#include "log.h"
#include "mem.h"
#include "netops.h"
#include "pods_internal.h"
#include "supervisor.h"
#include "workers.h"

/* A worker's netop on the threadpool. */
struct netop_job {
	struct netop_job *next;
	struct pods *pods;
	struct worker *w; /* NULL once the worker is GONE: no reply */
	uint32_t id;
	enum worker_netop kind;
	struct ip_prefix prefix;
	char *netns_path;
	uint64_t netns_dev, netns_ino;
	uint32_t ifindex;
	int err;
	const char *why;
	uv_work_t work;
};

void pods__netops_forget(struct pods *p, const struct worker *w)
{
	for (struct netop_job *j = p->netops; j; j = j->next)
		if (!w || j->w == w)
			j->w = NULL;
}

static void netop_work(uv_work_t *w)
{
	struct netop_job *j = w->data;
	int nsfd, ret;

	ret = pods__netns_reopen(j->netns_path, j->netns_dev, j->netns_ino, &nsfd);
	if (ret <= 0) {
		j->err = ret < 0 ? ret : -ENODEV;
		j->why = ret < 0 ? "cannot open the pod's network namespace"
				 : "the pod's network namespace is gone";
		return;
	}
	switch (j->kind) {
	case WORKER_NETOP_ADDR_ADD:
		ret = netops_addr_add(nsfd, (int)j->ifindex, &j->prefix);
		break;
	case WORKER_NETOP_ADDR_DEL:
		ret = netops_addr_del(nsfd, (int)j->ifindex, &j->prefix);
		break;
	case WORKER_NETOP_ROUTE_ADD:
		ret = netops_route_add(nsfd, (int)j->ifindex, &j->prefix);
		break;
	case WORKER_NETOP_ROUTE_DEL:
		ret = netops_route_del(nsfd, (int)j->ifindex, &j->prefix);
		break;
	default:
		ret = -EOPNOTSUPP;
		break;
	}
	close(nsfd);
	j->err = ret < 0 ? ret : 0;
	j->why = ret < 0 ? "netlink refused the change" : NULL;
}

static void netop_after(uv_work_t *w, int status)
{
	struct netop_job *j = w->data;
	struct pods *p = j->pods;

	for (struct netop_job **pp = &p->netops; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	if (status < 0) {
		j->err = status;
		j->why = "cancelled";
	}
	if (j->err < 0) {
		char text[IP_PREFIX_STRLEN];

		log_warn_r(j->err, "pod %s: netop %d %s on ifindex %u: %s",
			   j->w ? workers_pod_uid(j->w) : "-", (int)j->kind,
			   ip_prefix_format(&j->prefix, text, sizeof(text)), j->ifindex, j->why);
	}
	if (j->w)
		workers_netop_reply(j->w, j->id, j->err, j->why);
	free(j->netns_path);
	free(j);
}

void pods_on_netop(struct worker *w, uint32_t id, enum worker_netop op, const struct ip_prefix *pfx,
		   void *arg)
{
	struct supervisor *sup = arg;
	struct pods *p = sup->pods;
	struct attachment *a = NULL;
	struct netop_job *j;
	int ret;

	if (!p || p->stopping) {
		workers_netop_reply(w, id, -EAGAIN, "the supervisor is starting or stopping");
		return;
	}
	for (a = p->atts; a && a->worker != w; a = a->next)
		;
	if (!a || a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY || !a->ifindex) {
		workers_netop_reply(w, id, -ENODEV, "no interface for this worker");
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->pods = p;
	j->w = w;
	j->id = id;
	j->kind = op;
	j->prefix = *pfx;
	j->netns_path = xstrdup(a->netns_path);
	j->netns_dev = a->netns_dev;
	j->netns_ino = a->netns_ino;
	j->ifindex = a->ifindex;
	j->work.data = j;
	ret = uv_queue_work(&sup->loop, &j->work, netop_work, netop_after);
	if (ret < 0) {
		workers_netop_reply(w, id, ret, "supervisor internal error");
		free(j->netns_path);
		free(j);
		return;
	}
	j->next = p->netops;
	p->netops = j;
}
