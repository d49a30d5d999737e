/* ts0's routes made exactly what the worker's netmap reaches, under the
 * operator's route policy (netops.h: netops_routes_plan, netops_routes_sync).
 *
 * The routes we own are the main table's RTPROT_STATIC unicast routes whose
 * only next hop is ts0: everything else in the pod's routing (eth0, the
 * cluster's ranges, routes somebody else put on ts0 with another protocol)
 * is read, to keep off it, and never changed. */
#include "netops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/rtnetlink.h>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/route/addr.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>

#include "netlink.h"

enum netops_routes_limits {
	NETOPS_ROUTES_DUMP_TRIES = 3,
};

static const struct ip_prefix wide_v4 = {.family = AF_INET, .len = 10, .addr = {100, 64}};
static const struct ip_prefix wide_v6 = {
	.family = AF_INET6, .len = 48, .addr = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0}};

static bool prefix_valid(const struct ip_prefix *p)
{
	return (p->family == AF_INET && p->len <= 32) || (p->family == AF_INET6 && p->len <= 128);
}

static void refuse(struct netops_routes_result *res, const struct ip_prefix *p,
		   const struct ip_prefix *over, const char *why)
{
	if (res->n_refused_kept < NETOPS_REFUSED_KEPT) {
		struct netops_refused_route *r = &res->refused_kept[res->n_refused_kept++];

		r->prefix = *p;
		r->over = over ? *over : (struct ip_prefix){0};
		r->why = why;
	}
	res->refused++;
}

/* The first of own[] that p must stay off: contained in it (more specific or
 * equal: it would take the pod's traffic), or, for a subnet route, any
 * overlap at all. */
static const struct ip_prefix *own_conflict(const struct ip_prefix *p, bool any_overlap,
					    const struct ip_prefix *own, size_t n_own)
{
	for (size_t i = 0; i < n_own; i++) {
		if (own[i].family != p->family)
			continue;
		if (any_overlap ? ip_prefix_overlaps(&own[i], p) : ip_prefix_contains(&own[i], p))
			return &own[i];
	}
	return NULL;
}

size_t netops_routes_plan(const struct ip_prefix *want, size_t n,
			  const struct netops_route_policy *pol, const struct ip_prefix *own,
			  size_t n_own, struct ip_prefix *out, struct netops_routes_result *res)
{
	static const struct netops_route_policy none;
	size_t k = 0;

	if (!pol)
		pol = &none;
	for (size_t i = 0; i < n && i < NETOPS_ROUTES_MAX; i++) {
		struct ip_prefix p = want[i];
		const struct ip_prefix *over;
		bool inside;

		if (!prefix_valid(&p)) {
			refuse(res, &p, NULL, "not an IPv4 or IPv6 prefix");
			continue;
		}
		ip_prefix_mask(&p);
		if (ip_prefix_equal(&p, &ip_quad100_v4) || ip_prefix_equal(&p, &ip_quad100_v6)) {
			if (!pol->route_all)
				out[k++] = p;
			continue;
		}
		inside = ip_prefix_contains(&ip_tailscale_v4, &p) ||
			 ip_prefix_contains(&ip_tailscale_v6, &p);
		if (inside && pol->route_all)
			continue; /* the wide routes below carry it */
		/* A node's address; anything wider is a subnet route, even
		 * one inside the Tailscale ranges. */
		if (inside && p.len == (p.family == AF_INET ? 32 : 128)) {
			over = own_conflict(&p, false, own, n_own);
			if (over) {
				refuse(res, &p, over, "inside one of the pod's own networks");
				continue;
			}
			out[k++] = p;
			continue;
		}
		if (!pol->accept_routes) {
			res->not_accepted++;
			continue;
		}
		over = own_conflict(&p, true, pol->deny, pol->n_deny);
		if (over) {
			refuse(res, &p, over, "overlaps the operator's deny list (--route-deny)");
			continue;
		}
		over = own_conflict(&p, true, own, n_own);
		if (over) {
			refuse(res, &p, over, "overlaps one of the pod's own networks");
			continue;
		}
		out[k++] = p;
	}
	if (pol->route_all) {
		const struct ip_prefix *wide[2] = {&wide_v4, &wide_v6};

		for (size_t i = 0; i < 2; i++) {
			const struct ip_prefix *over = own_conflict(wide[i], false, own, n_own);

			if (over)
				refuse(res, wide[i], over, "inside one of the pod's own networks");
			else
				out[k++] = *wide[i];
		}
	}
	if (k > 1)
		qsort(out, k, sizeof(*out), ip_prefix_cmp);
	/* Peers may share an address (a node listed twice, a subnet route
	 * announced by two routers): one route each. */
	{
		size_t u = 0;

		for (size_t i = 0; i < k; i++)
			if (!u || ip_prefix_cmp(&out[u - 1], &out[i]) != 0)
				out[u++] = out[i];
		k = u;
	}
	return k;
}

/* ---- reading the pod's routing ---- */

static bool prefix_from_nl(struct nl_addr *a, struct ip_prefix *p)
{
	unsigned int len;

	if (!a)
		return false;
	memset(p, 0, sizeof(*p));
	p->family = nl_addr_get_family(a);
	len = nl_addr_get_len(a);
	if ((p->family == AF_INET && len != 4) || (p->family == AF_INET6 && len != 16)) {
		/* The default route's dst may come without bytes. */
		if ((p->family == AF_INET || p->family == AF_INET6) && len == 0 &&
		    nl_addr_get_prefixlen(a) == 0)
			return true;
		return false;
	}
	memcpy(p->addr, nl_addr_get_binary_addr(a), len);
	p->len = (uint8_t)nl_addr_get_prefixlen(a);
	return prefix_valid(p);
}

static bool skip_own(const struct ip_prefix *p)
{
	static const struct ip_prefix lo4 = {.family = AF_INET, .len = 8, .addr = {127}};
	static const struct ip_prefix ll6 = {.family = AF_INET6, .len = 10, .addr = {0xfe, 0x80}};
	static const struct ip_prefix lo6 = {.family = AF_INET6, .len = 128, .addr = {[15] = 1}};

	return p->len == 0 || ip_prefix_contains(&lo4, p) || ip_prefix_contains(&ll6, p) ||
	       ip_prefix_equal(&lo6, p) || (p->family == AF_INET6 && p->addr[0] == 0xff);
}

static int route_oif(struct rtnl_route *r)
{
	struct rtnl_nexthop *nh;

	if (rtnl_route_get_nnexthops(r) != 1)
		return 0;
	nh = rtnl_route_nexthop_n(r, 0);
	return nh ? rtnl_route_nh_get_ifindex(nh) : 0;
}

struct scan {
	int ifindex;
	struct ip_prefix *own, *ours;
	size_t n_own, n_ours, cap_own, cap_ours;
	bool own_full;
};

/* One of the pod's own networks, unless it is one we never route over
 * anyway (loopback, link-local, multicast, a default route). */
static void own_add(struct scan *s, struct ip_prefix *p)
{
	if (skip_own(p))
		return;
	if (s->n_own >= s->cap_own) {
		s->own_full = true; /* only NETOPS_OWN_MAX is reached */
		return;
	}
	ip_prefix_mask(p);
	s->own[s->n_own++] = *p;
}

static void scan_route(struct nl_object *obj, void *arg)
{
	struct rtnl_route *r = (struct rtnl_route *)obj;
	struct scan *s = arg;
	struct ip_prefix p;
	int oif;

	if (rtnl_route_get_table(r) != RT_TABLE_MAIN || rtnl_route_get_type(r) != RTN_UNICAST ||
	    !prefix_from_nl(rtnl_route_get_dst(r), &p))
		return;
	oif = route_oif(r);
	if (oif == s->ifindex) {
		if (rtnl_route_get_protocol(r) != RTPROT_STATIC || s->n_ours >= s->cap_ours)
			return;
		ip_prefix_mask(&p);
		s->ours[s->n_ours++] = p;
		return;
	}
	own_add(s, &p);
}

static void scan_addr(struct nl_object *obj, void *arg)
{
	struct rtnl_addr *a = (struct rtnl_addr *)obj;
	struct scan *s = arg;
	struct ip_prefix p;

	if (rtnl_addr_get_ifindex(a) == s->ifindex || !prefix_from_nl(rtnl_addr_get_local(a), &p))
		return;
	p.len = (uint8_t)rtnl_addr_get_prefixlen(a);
	if (prefix_valid(&p))
		own_add(s, &p);
}

static int dump(struct nl_sock *sk, bool routes, struct nl_cache **out)
{
	int ret = 0;

	for (int i = 0; i < NETOPS_ROUTES_DUMP_TRIES; i++) {
		ret = routes ? rtnl_route_alloc_cache(sk, AF_UNSPEC, 0, out)
			     : rtnl_addr_alloc_cache(sk, out);
		if (ret != -NLE_DUMP_INTR)
			break;
	}
	return netlink_errno(ret);
}

static struct rtnl_route *route_build(int ifindex, const struct ip_prefix *dst)
{
	struct rtnl_route *route = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	struct nl_addr *addr =
		nl_addr_build(dst->family, dst->addr, dst->family == AF_INET ? 4 : 16);

	if (!route || !nh || !addr)
		goto err;
	nl_addr_set_prefixlen(addr, dst->len);
	if (rtnl_route_set_family(route, (uint8_t)dst->family) < 0 ||
	    rtnl_route_set_dst(route, addr) < 0 || rtnl_route_set_type(route, RTN_UNICAST) < 0)
		goto err;
	nl_addr_put(addr);
	rtnl_route_set_table(route, RT_TABLE_MAIN);
	rtnl_route_set_protocol(route, RTPROT_STATIC);
	rtnl_route_set_scope(route, RT_SCOPE_LINK);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_add_nexthop(route, nh);
	return route;
err:
	nl_addr_put(addr);
	if (nh)
		rtnl_route_nh_free(nh);
	rtnl_route_put(route);
	return NULL;
}

static int route_change(struct nl_sock *sk, int ifindex, const struct ip_prefix *dst, bool add)
{
	struct rtnl_route *route = route_build(ifindex, dst);
	int ret;

	if (!route)
		return -ENOMEM;
	if (add)
		ret = netlink_errno(rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_REPLACE));
	else {
		ret = netlink_errno(rtnl_route_delete(sk, route, 0));
		if (ret == -ENOENT || ret == -ESRCH)
			ret = 0;
	}
	rtnl_route_put(route);
	return ret;
}

static bool in_sorted(const struct ip_prefix *set, size_t n, const struct ip_prefix *p)
{
	return n && bsearch(p, set, n, sizeof(*set), ip_prefix_cmp) != NULL;
}

int netops_routes_sync(int nsfd, int ifindex, const struct ip_prefix *want, size_t n,
		       const struct netops_route_policy *pol, struct netops_routes_result *res)
{
	struct nl_cache *rcache = NULL, *acache = NULL;
	struct scan s = {.ifindex = ifindex};
	struct ip_prefix *plan = NULL;
	struct nl_sock *sk = NULL;
	size_t n_plan, n_rt, n_ad;
	int ret;

	memset(res, 0, sizeof(*res));
	if (ifindex <= 0 || n > NETOPS_ROUTES_MAX) {
		res->why = "bad request";
		return -EINVAL;
	}
	ret = netlink_socket_open(nsfd, &sk);
	if (ret < 0) {
		res->why = "cannot open netlink in the pod's network namespace";
		goto out;
	}
	ret = dump(sk, true, &rcache);
	if (ret == 0)
		ret = dump(sk, false, &acache);
	if (ret < 0) {
		res->why = "cannot read the pod's routes and addresses";
		goto out;
	}
	/* Sized by what the dumps hold, not by the limits: the limits' 1.6 MB
	 * would come zeroed by memset from a threadpool arena on every sync
	 * (glibc raises its mmap threshold once such a block is freed). */
	n_rt = (size_t)nl_cache_nitems(rcache);
	n_ad = (size_t)nl_cache_nitems(acache);
	s.cap_ours = n_rt < NETOPS_ROUTES_MAX + 2 ? n_rt : NETOPS_ROUTES_MAX + 2;
	s.cap_own = n_rt + n_ad < NETOPS_OWN_MAX ? n_rt + n_ad : NETOPS_OWN_MAX;
	s.own = malloc((s.cap_own + 1) * sizeof(*s.own));
	s.ours = malloc((s.cap_ours + 1) * sizeof(*s.ours));
	plan = malloc((n + 2) * sizeof(*plan));
	if (!s.own || !s.ours || !plan) {
		ret = -ENOMEM;
		res->why = "out of memory";
		goto out;
	}
	nl_cache_foreach(rcache, scan_route, &s);
	nl_cache_foreach(acache, scan_addr, &s);
	res->own_unchecked = s.own_full;
	n_plan = netops_routes_plan(want, n, pol, s.own, s.n_own, plan, res);
	if (s.n_ours > 1)
		qsort(s.ours, s.n_ours, sizeof(*s.ours), ip_prefix_cmp);
	/* Removals first: a route that moved between prefixes never has two
	 * entries at once, and the kernel table only shrinks before it grows. */
	for (size_t i = 0; i < s.n_ours; i++) {
		int r;

		if (in_sorted(plan, n_plan, &s.ours[i])) {
			res->kept++;
			continue;
		}
		r = route_change(sk, ifindex, &s.ours[i], false);
		if (r < 0) {
			res->failed++;
			if (!res->first_err) {
				res->first_err = r;
				res->failed_prefix = s.ours[i];
			}
			continue;
		}
		res->removed++;
	}
	for (size_t i = 0; i < n_plan; i++) {
		int r;

		if (in_sorted(s.ours, s.n_ours, &plan[i]))
			continue;
		r = route_change(sk, ifindex, &plan[i], true);
		if (r < 0) {
			res->failed++;
			if (!res->first_err) {
				res->first_err = r;
				res->failed_prefix = plan[i];
			}
			continue;
		}
		res->added++;
	}
	ret = res->first_err;
	if (ret < 0)
		res->why = "netlink refused a route";
out:
	nl_cache_free(rcache);
	nl_cache_free(acache);
	nl_socket_free(sk);
	free(s.own);
	free(s.ours);
	free(plan);
	return ret;
}
