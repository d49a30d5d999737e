/* A worker's requests for addresses and routes on its pod's ts0
 * (workers_config.netop, one address or route; workers_config.routes, the
 * whole route set): done on the threadpool inside the pod's netns,
 * re-opened by path and checked by inode, and answered with
 * workers_netop_reply / workers_routes_reply unless the worker is GONE by
 * then. */
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
	/* A route set instead (routes != NULL): the operator's policy and
	 * what became of the set. */
	struct ip_prefix *routes;
	size_t n_routes;
	struct netops_route_policy policy;
	struct netops_routes_result res;
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
	if (j->routes) {
		ret = netops_routes_sync(nsfd, (int)j->ifindex, j->routes, j->n_routes, &j->policy,
					 &j->res);
		close(nsfd);
		j->err = ret < 0 ? ret : 0;
		j->why = ret < 0 ? j->res.why : NULL;
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

static void job_free(struct netop_job *j)
{
	free(j->routes);
	free(j->netns_path);
	free(j);
}

/* What became of a route set, in the log: refused routes always (the
 * operator's policy or the pod's own networks won), changes at debug. */
static void routes_after(struct netop_job *j)
{
	const char *uid = j->w ? workers_pod_uid(j->w) : "-";
	char a[IP_PREFIX_STRLEN], b[IP_PREFIX_STRLEN];
	const struct netops_routes_result *r = &j->res;
	unsigned int now = r->kept + r->added;

	for (size_t i = 0; i < r->n_refused_kept; i++) {
		const struct netops_refused_route *x = &r->refused_kept[i];

		if (x->over.family)
			log_warn("pod %s: route %s refused: %s (%s)", uid,
				 ip_prefix_format(&x->prefix, a, sizeof(a)), x->why,
				 ip_prefix_format(&x->over, b, sizeof(b)));
		else
			log_warn("pod %s: route %s refused: %s", uid,
				 ip_prefix_format(&x->prefix, a, sizeof(a)), x->why);
	}
	if (r->refused > r->n_refused_kept)
		log_warn("pod %s: %u more routes refused", uid,
			 r->refused - (unsigned int)r->n_refused_kept);
	if (r->own_unchecked)
		log_warn("pod %s: more own networks than checked (%d): routes were checked "
			 "against the first only",
			 uid, NETOPS_OWN_MAX);
	if (j->err < 0)
		log_warn_r(j->err, "pod %s: ts0's routes: %s (%s); %u of %u changes failed", uid,
			   j->why ? j->why : "", ip_prefix_format(&r->failed_prefix, a, sizeof(a)),
			   r->failed, r->failed + r->added + r->removed);
	log_debug("pod %s: ts0's routes: %u (+%u -%u), %u refused, %u subnet routes not "
		  "accepted",
		  uid, now, r->added, r->removed, r->refused, r->not_accepted);
	if (j->w)
		workers_routes_reply(j->w, j->id, j->err, j->why, now, r->refused, r->not_accepted);
	job_free(j);
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
	if (j->routes) {
		routes_after(j);
		return;
	}
	if (j->err < 0) {
		char text[IP_PREFIX_STRLEN];

		log_warn_r(j->err, "pod %s: netop %d %s on ifindex %u: %s",
			   j->w ? workers_pod_uid(j->w) : "-", (int)j->kind,
			   ip_prefix_format(&j->prefix, text, sizeof(text)), j->ifindex, j->why);
	}
	if (j->w && j->kind == WORKER_NETOP_ADDR_ADD && j->err == 0)
		for (struct attachment *a = p->atts; a; a = a->next)
			if (a->worker == j->w)
				pods__add_mark(a, ADD_MARK_ADDRESSES, uv_hrtime());
	if (j->w)
		workers_netop_reply(j->w, j->id, j->err, j->why);
	job_free(j);
}

/* The attachment w serves, if it has a ts0 to change: else answered here. */
static struct attachment *netop_attachment(struct pods *p, struct worker *w, uint32_t id, bool set)
{
	struct attachment *a;

	if (!p || p->stopping) {
		if (set)
			workers_routes_reply(w, id, -EAGAIN,
					     "the supervisor is starting or stopping", 0, 0, 0);
		else
			workers_netop_reply(w, id, -EAGAIN,
					    "the supervisor is starting or stopping");
		return NULL;
	}
	for (a = p->atts; a && a->worker != w; a = a->next)
		;
	if (!a || a->state != TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY || !a->ifindex) {
		if (set)
			workers_routes_reply(w, id, -ENODEV, "no interface for this worker", 0, 0,
					     0);
		else
			workers_netop_reply(w, id, -ENODEV, "no interface for this worker");
		return NULL;
	}
	return a;
}

static struct netop_job *job_new(struct pods *p, struct worker *w, uint32_t id,
				 const struct attachment *a)
{
	struct netop_job *j = xcalloc(1, sizeof(*j));

	j->pods = p;
	j->w = w;
	j->id = id;
	j->netns_path = xstrdup(a->netns_path);
	j->netns_dev = a->netns_dev;
	j->netns_ino = a->netns_ino;
	j->ifindex = a->ifindex;
	j->work.data = j;
	return j;
}

void pods_on_route_set(struct worker *w, uint32_t id, struct ip_prefix *routes, size_t n, void *arg)
{
	struct supervisor *sup = arg;
	struct pods *p = sup->pods;
	struct attachment *a = netop_attachment(p, w, id, true);
	struct netop_job *j;
	int ret;

	if (!a) {
		free(routes);
		return;
	}
	j = job_new(p, w, id, a);
	j->routes = routes ? routes : xcalloc(1, sizeof(*routes));
	j->n_routes = n;
	j->policy = (struct netops_route_policy){
		.route_all = sup->cfg.route_all,
		.accept_routes = sup->cfg.accept_routes,
		.deny = sup->cfg.route_deny,
		.n_deny = sup->cfg.n_route_deny,
	};
	ret = uv_queue_work(&sup->loop, &j->work, netop_work, netop_after);
	if (ret < 0) {
		workers_routes_reply(w, id, ret, "supervisor internal error", 0, 0, 0);
		job_free(j);
		return;
	}
	j->next = p->netops;
	p->netops = j;
}

void pods_on_netop(struct worker *w, uint32_t id, enum worker_netop op, const struct ip_prefix *pfx,
		   void *arg)
{
	struct supervisor *sup = arg;
	struct pods *p = sup->pods;
	struct attachment *a = netop_attachment(p, w, id, false);
	struct netop_job *j;
	int ret;

	if (!a)
		return;
	j = job_new(p, w, id, a);
	j->kind = op;
	j->prefix = *pfx;
	ret = uv_queue_work(&sup->loop, &j->work, netop_work, netop_after);
	if (ret < 0) {
		workers_netop_reply(w, id, ret, "supervisor internal error");
		job_free(j);
		return;
	}
	j->next = p->netops;
	p->netops = j;
}
