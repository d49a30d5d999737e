/* netops against the kernel (root). Each test gets a namespace of its own:
 *
 *   host netns (this process)              tscni-netops-<pid>-<n>
 *   ------------------------               ----------------------------------
 *   /dev/net/tun fd  <======= ts0 (TUN, MTU 1280, up, rp_filter 2,
 *   (the supervisor's custody)            addr_gen_mode none)
 *                                          100.64.0.7/32, fd7a:115c:a1e0::7/128
 *                                          100.64.0.0/10 dev ts0 scope link
 *
 * The namespaces are made with `ip netns add` and removed in teardown on
 * every path. Traffic stays inside them. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_addr.h>
#include <linux/if_tun.h>

#include <cmocka.h>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/route/addr.h>

#include "ip.h"
#include "netlink.h"
#include "netns.h"
#include "netops.h"
#include "tunio.h"
#include "fixture.h"

struct ns {
	char name[64];
	int fd;
};

static int ns_counter;

static int ns_create(struct ns *ns)
{
	char cmd[160], path[128];

	snprintf(ns->name, sizeof(ns->name), "tscni-netops-%d-%d", (int)getpid(), ++ns_counter);
	snprintf(cmd, sizeof(cmd), "ip netns add %s", ns->name);
	if (system(cmd) != 0)
		return -1;
	snprintf(path, sizeof(path), "/run/netns/%s", ns->name);
	ns->fd = open(path, O_RDONLY | O_CLOEXEC);
	return ns->fd < 0 ? -1 : 0;
}

static void ns_destroy(struct ns *ns)
{
	char cmd[160];

	if (ns->fd >= 0)
		close(ns->fd);
	ns->fd = -1;
	snprintf(cmd, sizeof(cmd), "ip netns del %s 2>/dev/null", ns->name);
	if (system(cmd) != 0) {
		/* Already gone (the deletion test removes its own). */
	}
}

static int setup(void **state)
{
	struct ns *ns = calloc(1, sizeof(*ns));

	if (!ns)
		return -1;
	ns->fd = -1;
	*state = ns;
	return ns_create(ns);
}

static int teardown(void **state)
{
	struct ns *ns = *state;

	ns_destroy(ns);
	free(ns);
	return 0;
}

/* ---- looking inside the namespace ---- */

struct ns_read {
	const char *path;
	char buf[64];
};

static int read_here(void *arg)
{
	struct ns_read *r = arg;
	ssize_t n;
	int fd = open(r->path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, r->buf, sizeof(r->buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	r->buf[n] = '\0';
	r->buf[strcspn(r->buf, "\n")] = '\0';
	return 0;
}

/* The value of a sysctl as seen inside nsfd. */
static const char *ns_sysctl(int nsfd, const char *path, struct ns_read *r)
{
	r->path = path;
	assert_int_equal(netns_run(nsfd, read_here, r), 0);
	return r->buf;
}

static int write_here(void *arg)
{
	const char **pv = arg;
	int fd = open(pv[0], O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, pv[1], strlen(pv[1])) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

struct ns_sock {
	int domain, type, fd;
};

static int socket_here(void *arg)
{
	struct ns_sock *s = arg;

	s->fd = socket(s->domain, s->type | SOCK_CLOEXEC, 0);
	return s->fd < 0 ? -errno : 0;
}

/* A socket bound to nsfd's network stack. */
static int ns_socket(int nsfd, int domain, int type)
{
	struct ns_sock s = {.domain = domain, .type = type, .fd = -1};

	assert_int_equal(netns_run(nsfd, socket_here, &s), 0);
	return s.fd;
}

struct ifinfo {
	unsigned int flags;
	int mtu;
};

static int ns_ifinfo(int nsfd, const char *ifname, struct ifinfo *info)
{
	struct ifreq ifr = {0};
	int fd = ns_socket(nsfd, AF_INET, SOCK_DGRAM), ret = 0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		ret = -errno;
		goto out;
	}
	info->flags = (unsigned short)ifr.ifr_flags;
	if (ioctl(fd, SIOCGIFMTU, &ifr) < 0) {
		ret = -errno;
		goto out;
	}
	info->mtu = ifr.ifr_mtu;
out:
	close(fd);
	return ret;
}

static int count_tmp_here(void *arg)
{
	struct if_nameindex *all = if_nameindex(), *i;
	int n = 0;

	(void)arg;
	if (!all)
		return -errno;
	for (i = all; i->if_index != 0; i++)
		n += strncmp(i->if_name, "tscni", 5) == 0;
	if_freenameindex(all);
	return n;
}

/* Links named tscni* (netops' temporary names) in nsfd, or in the host
 * namespace when nsfd < 0. */
static int count_tmp_links(int nsfd)
{
	return nsfd < 0 ? count_tmp_here(NULL) : netns_run(nsfd, count_tmp_here, NULL);
}

/* Open fds of this process on /dev/net/tun. */
static int count_tun_fds(void)
{
	char path[64], target[64];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		n += strcmp(target, "/dev/net/tun") == 0;
	}
	return n;
}

/* Nothing of ours left in the host namespace: this process holds exactly
 * want_fds TUN fds (a leaked device would keep one, as it is not
 * persistent), and no tscni* link stays. Other tests' supervisors on this
 * machine may have a temporary link for a moment, so that part waits for a
 * round without any. */
static void assert_host_clean(int want_fds)
{
	assert_int_equal(count_tun_fds(), want_fds);
	for (int i = 0; i < 300; i++) {
		if (count_tmp_links(-1) == 0)
			return;
		sleep_ms(10);
	}
	fail_msg("a tscni* link stays in the host namespace");
}

struct ns_nl {
	struct nl_sock *sk;
};

static int nl_here(void *arg)
{
	struct ns_nl *n = arg;

	n->sk = nl_socket_alloc();
	if (!n->sk)
		return -ENOMEM;
	return nl_connect(n->sk, NETLINK_ROUTE) < 0 ? -EIO : 0;
}

struct seen_addr {
	int family;
	int prefixlen;
	unsigned int flags;
	uint8_t addr[16];
};

/* The addresses on ifindex inside nsfd, at most max of them; returns how many. */
static int ns_addrs(int nsfd, int ifindex, struct seen_addr *out, int max)
{
	struct ns_nl n = {0};
	struct nl_cache *cache = NULL;
	int count = 0;

	assert_int_equal(netns_run(nsfd, nl_here, &n), 0);
	assert_int_equal(rtnl_addr_alloc_cache(n.sk, &cache), 0);
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct nl_addr *local = rtnl_addr_get_local(a);

		if (rtnl_addr_get_ifindex(a) != ifindex || !local || count >= max)
			continue;
		out[count].family = rtnl_addr_get_family(a);
		out[count].prefixlen = rtnl_addr_get_prefixlen(a);
		out[count].flags = rtnl_addr_get_flags(a);
		memcpy(out[count].addr, nl_addr_get_binary_addr(local),
		       nl_addr_get_len(local) > 16 ? 16 : nl_addr_get_len(local));
		count++;
	}
	nl_cache_free(cache);
	nl_socket_free(n.sk);
	return count;
}

static const struct seen_addr *find_addr(const struct seen_addr *a, int n,
					 const struct ip_prefix *p)
{
	size_t alen = p->family == AF_INET ? 4 : 16;

	for (int i = 0; i < n; i++) {
		if (a[i].family == p->family && a[i].prefixlen == p->len &&
		    memcmp(a[i].addr, p->addr, alen) == 0)
			return &a[i];
	}
	return NULL;
}

/* `ip -n NS <args>` output (args: "route show ..."), for a look at routes the way an
 * operator would see them. */
static void ns_route_show(const struct ns *ns, const char *args, char *out, size_t n)
{
	char cmd[256];
	size_t got;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ip -n %s %s", ns->name, args);
	f = popen(cmd, "r");
	assert_non_null(f);
	got = fread(out, 1, n - 1, f);
	out[got] = '\0';
	assert_int_equal(pclose(f), 0);
}

static struct ip_prefix pfx(const char *s)
{
	struct ip_prefix p;

	if (ip_prefix_parse(s, false, &p) != 0)
		fail_msg("bad prefix %s", s);
	return p;
}

static void create_ts0(struct ns *ns, int *fd, int *ifindex)
{
	const char *why = NULL;
	int ret = netops_tun_create(ns->fd, "ts0", NETLINK_ALIAS_PREFIX "test", NETOPS_MTU, fd,
				    ifindex, &why);

	if (ret != 0)
		fail_msg("netops_tun_create: %d (%s)", ret, why ? why : "no reason");
	assert_true(*fd >= 0);
	assert_true(*ifindex > 0);
}

/* ---- the tests ---- */

static void test_create(void **state)
{
	struct ns *ns = *state;
	unsigned int host_before = if_nametoindex("ts0");
	struct seen_addr addrs[8];
	struct ns_read r;
	struct ifinfo info = {0};
	int fd, ifindex, idx;

	create_ts0(ns, &fd, &ifindex);
	/* The fd is ours to keep: close-on-exec and non-blocking. */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	/* In the pod's namespace, under its final name, at the reported index. */
	assert_int_equal(netlink_link_index(ns->fd, "ts0", &idx), 0);
	assert_int_equal(idx, ifindex);
	assert_int_equal(ns_ifinfo(ns->fd, "ts0", &info), 0);
	assert_true(info.flags & IFF_UP);
	assert_int_equal(info.mtu, 1280);
	/* Not in the host's. */
	assert_int_equal(if_nametoindex("ts0"), host_before);
	assert_host_clean(1);
	assert_int_equal(count_tmp_links(ns->fd), 0);

	assert_string_equal(ns_sysctl(ns->fd, "/proc/sys/net/ipv4/conf/ts0/rp_filter", &r), "2");
	assert_string_equal(ns_sysctl(ns->fd, "/proc/sys/net/ipv6/conf/ts0/addr_gen_mode", &r),
			    "1"); /* IN6_ADDR_GEN_MODE_NONE */
	assert_string_equal(ns_sysctl(ns->fd, "/proc/sys/net/ipv6/conf/ts0/disable_ipv6", &r), "0");
	/* No link-local (nor any other) address shows up by itself. */
	sleep_ms(300);
	assert_int_equal(ns_addrs(ns->fd, ifindex, addrs, 8), 0);

	/* The device is not persistent: it goes with the last fd. */
	close(fd);
	assert_int_equal(netlink_link_index(ns->fd, "ts0", &idx), -ENODEV);
}

/* A namespace whose new devices start with IPv6 disabled still gets a ts0
 * that carries IPv6. */
static void test_create_ipv6_default_off(void **state)
{
	struct ns *ns = *state;
	const char *pv[2] = {"/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"};
	struct ip_prefix v6 = pfx("fd7a:115c:a1e0::7/128");
	struct seen_addr addrs[8];
	const struct seen_addr *a;
	struct ns_read r;
	int fd, ifindex, n;

	assert_int_equal(netns_run(ns->fd, write_here, pv), 0);
	create_ts0(ns, &fd, &ifindex);
	assert_string_equal(ns_sysctl(ns->fd, "/proc/sys/net/ipv6/conf/ts0/disable_ipv6", &r), "0");
	assert_int_equal(netops_addr_add(ns->fd, ifindex, &v6), 0);
	n = ns_addrs(ns->fd, ifindex, addrs, 8);
	a = find_addr(addrs, n, &v6);
	assert_non_null(a);
	assert_false(a->flags & IFA_F_TENTATIVE);
	close(fd);
}

static bool tun_has_vnet_hdr(int fd)
{
	struct ifreq ifr = {0};

	return ioctl(fd, TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_VNET_HDR);
}

/* Reads packets from the TUN fd until one of protocol proto (IPv4) or
 * next-header proto (IPv6) arrives; other packets (MLD reports) are skipped. */
static ssize_t read_packet(int fd, int version, int proto, uint8_t *buf, size_t n)
{
	for (int tries = 0; tries < 50; tries++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t got;

		if (poll(&pfd, 1, 2000) != 1)
			return -1;
		got = read(fd, buf, n);
		if (got < 1)
			return -1;
		/* ts0 carries a virtio_net_hdr when netops chose IFF_VNET_HDR. */
		if (tun_has_vnet_hdr(fd)) {
			if (got <= TUNIO_VNET_HDR_LEN)
				continue;
			got -= TUNIO_VNET_HDR_LEN;
			memmove(buf, buf + TUNIO_VNET_HDR_LEN, (size_t)got);
		}
		if ((buf[0] >> 4) != version)
			continue;
		if (version == 4 && got >= 20 && buf[9] == proto)
			return got;
		if (version == 6 && got >= 40 && buf[6] == proto)
			return got;
	}
	return -1;
}

static void test_tun_carries_packets(void **state)
{
	struct ns *ns = *state;
	struct ip_prefix a4 = pfx("100.64.0.7/32"), r4 = pfx("100.64.0.0/10");
	struct ip_prefix a6 = pfx("fd7a:115c:a1e0::7/128"), r6 = pfx("fd7a:115c:a1e0::/48");
	struct sockaddr_in to4 = {.sin_family = AF_INET, .sin_port = htons(4242)};
	struct sockaddr_in6 to6 = {.sin6_family = AF_INET6, .sin6_port = htons(4243)};
	static const uint8_t dst4[4] = {100, 64, 0, 9};
	uint8_t pkt[2048];
	int fd, ifindex, s;
	ssize_t n;

	create_ts0(ns, &fd, &ifindex);
	assert_int_equal(netops_addr_add(ns->fd, ifindex, &a4), 0);
	assert_int_equal(netops_route_add(ns->fd, ifindex, &r4), 0);
	assert_int_equal(netops_addr_add(ns->fd, ifindex, &a6), 0);
	assert_int_equal(netops_route_add(ns->fd, ifindex, &r6), 0);

	s = ns_socket(ns->fd, AF_INET, SOCK_DGRAM);
	memcpy(&to4.sin_addr, dst4, 4);
	assert_int_equal(sendto(s, "hello4", 6, 0, (struct sockaddr *)&to4, sizeof(to4)), 6);
	close(s);
	n = read_packet(fd, 4, IPPROTO_UDP, pkt, sizeof(pkt));
	assert_true(n >= 20 + 8 + 6);
	assert_memory_equal(pkt + 12, a4.addr, 4); /* source chosen from ts0 */
	assert_memory_equal(pkt + 16, dst4, 4);
	assert_memory_equal(pkt + (pkt[0] & 0xf) * 4 + 8, "hello4", 6);

	s = ns_socket(ns->fd, AF_INET6, SOCK_DGRAM);
	memcpy(&to6.sin6_addr, a6.addr, 16);
	to6.sin6_addr.s6_addr[15] = 9;
	assert_int_equal(sendto(s, "hello6", 6, 0, (struct sockaddr *)&to6, sizeof(to6)), 6);
	close(s);
	n = read_packet(fd, 6, IPPROTO_UDP, pkt, sizeof(pkt));
	assert_true(n >= 40 + 8 + 6);
	assert_memory_equal(pkt + 8, a6.addr, 16);
	assert_memory_equal(pkt + 24, to6.sin6_addr.s6_addr, 16);
	assert_memory_equal(pkt + 48, "hello6", 6);
	close(fd);
}

static void test_create_twice(void **state)
{
	struct ns *ns = *state;
	struct ip_prefix a4 = pfx("100.64.0.7/32");
	struct ifreq ifr = {0};
	char detail[160];
	const char *why = NULL;
	int fd, ifindex, fd2 = 42, ifindex2 = 42, idx;

	create_ts0(ns, &fd, &ifindex);
	assert_int_equal(netops_addr_add(ns->fd, ifindex, &a4), 0);
	assert_int_equal(netops_tun_create(ns->fd, "ts0", NULL, NETOPS_MTU, &fd2, &ifindex2, &why),
			 -EEXIST);
	assert_non_null(why);
	assert_int_equal(fd2, -1);
	assert_int_equal(ifindex2, 0);
	/* The first is untouched and nothing of the second is left anywhere. */
	assert_int_equal(netlink_link_index(ns->fd, "ts0", &idx), 0);
	assert_int_equal(idx, ifindex);
	assert_int_equal(
		netops_link_check(ns->fd, "ts0", NETOPS_MTU, &a4, 1, detail, sizeof(detail)), 0);
	assert_int_equal(ioctl(fd, TUNGETIFF, &ifr), 0);
	assert_string_equal(ifr.ifr_name, "ts0");
	assert_host_clean(1);
	assert_int_equal(count_tmp_links(ns->fd), 0);
	close(fd);
}

static void test_addr_idempotent(void **state)
{
	struct ns *ns = *state;
	struct ip_prefix a4 = pfx("100.64.0.5/32"), a6 = pfx("fd7a:115c:a1e0::5/128");
	struct seen_addr addrs[8];
	const struct seen_addr *a;
	int fd, ifindex, n;

	create_ts0(ns, &fd, &ifindex);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(netops_addr_add(ns->fd, ifindex, &a4), 0);
		assert_int_equal(netops_addr_add(ns->fd, ifindex, &a6), 0);
	}
	n = ns_addrs(ns->fd, ifindex, addrs, 8);
	assert_int_equal(n, 2);
	assert_non_null(find_addr(addrs, n, &a4));
	a = find_addr(addrs, n, &a6);
	assert_non_null(a);
	assert_true(a->flags & IFA_F_NODAD);
	assert_false(a->flags & IFA_F_TENTATIVE);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(netops_addr_del(ns->fd, ifindex, &a4), 0);
		assert_int_equal(netops_addr_del(ns->fd, ifindex, &a6), 0);
	}
	assert_int_equal(ns_addrs(ns->fd, ifindex, addrs, 8), 0);
	/* A link that does not exist is an error, not a silent success. */
	assert_true(netops_addr_add(ns->fd, ifindex + 1000, &a4) < 0);
	close(fd);
}

static void test_route(void **state)
{
	struct ns *ns = *state;
	struct ip_prefix r4 = pfx("100.64.0.0/10"), r6 = pfx("fd7a:115c:a1e0::/48");
	struct ip_prefix q100 = pfx("100.100.100.100/32"), sloppy = pfx("100.64.3.1/10");
	char out[1024];
	int fd, ifindex;

	create_ts0(ns, &fd, &ifindex);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(netops_route_add(ns->fd, ifindex, &r4), 0);
		assert_int_equal(netops_route_add(ns->fd, ifindex, &r6), 0);
		assert_int_equal(netops_route_add(ns->fd, ifindex, &q100), 0);
	}
	ns_route_show(ns, "route show 100.64.0.0/10", out, sizeof(out));
	assert_non_null(strstr(out, "dev ts0"));
	assert_non_null(strstr(out, "scope link"));
	assert_null(strstr(out, "via"));
	ns_route_show(ns, "route show 100.100.100.100", out, sizeof(out));
	assert_non_null(strstr(out, "dev ts0"));
	ns_route_show(ns, "-6 route show fd7a:115c:a1e0::/48", out, sizeof(out));
	assert_non_null(strstr(out, "dev ts0"));
	for (int i = 0; i < 2; i++) {
		assert_int_equal(netops_route_del(ns->fd, ifindex, &r4), 0);
		assert_int_equal(netops_route_del(ns->fd, ifindex, &r6), 0);
	}
	ns_route_show(ns, "route show 100.64.0.0/10", out, sizeof(out));
	assert_string_equal(out, "");
	ns_route_show(ns, "-6 route show fd7a:115c:a1e0::/48", out, sizeof(out));
	assert_string_equal(out, "");
	/* A prefix with host bits set is routed as its network. */
	assert_int_equal(netops_route_add(ns->fd, ifindex, &sloppy), 0);
	ns_route_show(ns, "route show 100.64.0.0/10", out, sizeof(out));
	assert_non_null(strstr(out, "dev ts0"));
	assert_int_equal(netops_route_del(ns->fd, ifindex, &sloppy), 0);
	ns_route_show(ns, "route show 100.64.0.0/10", out, sizeof(out));
	assert_string_equal(out, "");
	close(fd);
}

/* `ip -n NS <args>`, which must succeed. */
static void ns_ip(const struct ns *ns, const char *args)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "ip -n %s %s", ns->name, args);
	if (system(cmd) != 0)
		fail_msg("%s failed", cmd);
}

/* netops_routes_sync against the kernel: ts0's routes become exactly the
 * plan, the pod's own networks (a veth with 10.1.0.0/24 and 100.64.9.0/24)
 * are looked at and left alone, and a pod with more own prefixes than
 * NETOPS_OWN_MAX says so instead of reading past its buffers. */
static void test_routes_sync(void **state)
{
	struct ns *ns = *state;
	struct netops_route_policy pol = {0};
	struct netops_routes_result res;
	struct ip_prefix want[] = {pfx("100.64.0.2/32"), pfx("fd7a:115c:a1e0::2/128"),
				   pfx("100.100.100.100/32"), pfx("100.64.9.5/32")};
	struct ip_prefix next[] = {pfx("100.64.0.3/32")};
	char out[1024], batch[160];
	FILE *f;
	int fd, ifindex;

	create_ts0(ns, &fd, &ifindex);
	ns_ip(ns, "link add own0 type veth peer name own1");
	ns_ip(ns, "link set own0 up");
	ns_ip(ns, "link set own1 up");
	ns_ip(ns, "addr add 10.1.0.1/24 dev own0");
	ns_ip(ns, "route add 100.64.9.0/24 dev own0");

	assert_int_equal(netops_routes_sync(ns->fd, ifindex, want, 4, &pol, &res), 0);
	assert_int_equal(res.added, 3);
	assert_int_equal(res.removed, 0);
	assert_int_equal(res.refused, 1); /* 100.64.9.5: inside the pod's own 100.64.9.0/24 */
	assert_false(res.own_unchecked);
	ns_route_show(ns, "route show dev ts0", out, sizeof(out));
	assert_non_null(strstr(out, "100.64.0.2 "));
	assert_non_null(strstr(out, "100.100.100.100 "));
	assert_null(strstr(out, "100.64.9.5"));
	ns_route_show(ns, "route show dev own0", out, sizeof(out));
	assert_non_null(strstr(out, "100.64.9.0/24"));

	/* The same set again: nothing changes. */
	assert_int_equal(netops_routes_sync(ns->fd, ifindex, want, 4, &pol, &res), 0);
	assert_int_equal(res.added, 0);
	assert_int_equal(res.removed, 0);
	assert_int_equal(res.kept, 3);

	/* Another set: the three go, the new one comes. */
	assert_int_equal(netops_routes_sync(ns->fd, ifindex, next, 1, &pol, &res), 0);
	assert_int_equal(res.added, 1);
	assert_int_equal(res.removed, 3);
	ns_route_show(ns, "route show dev ts0", out, sizeof(out));
	assert_non_null(strstr(out, "100.64.0.3 "));
	assert_null(strstr(out, "100.64.0.2 "));
	ns_route_show(ns, "-6 route show dev ts0", out, sizeof(out));
	assert_null(strstr(out, "fd7a:115c:a1e0::2"));

	/* More own prefixes than NETOPS_OWN_MAX: routes 10.2.x.y/32 on own0,
	 * through one `ip -batch` reading its stdin. */
	snprintf(batch, sizeof(batch), "ip -n %s -batch -", ns->name);
	f = popen(batch, "w");
	assert_non_null(f);
	for (int i = 0; i < NETOPS_OWN_MAX + 4; i++)
		fprintf(f, "route add 10.2.%d.%d/32 dev own0\n", i / 250, i % 250 + 1);
	assert_int_equal(pclose(f), 0);
	assert_int_equal(netops_routes_sync(ns->fd, ifindex, want, 4, &pol, &res), 0);
	assert_true(res.own_unchecked);
	assert_int_equal(res.removed, 1);
	/* 100.64.9.0/24 may be past the prefixes looked at: 100.64.9.5 is
	 * then routed, else refused. */
	assert_int_equal(res.added + res.refused, 4);
	assert_in_range(res.added, 3, 4);
	ns_route_show(ns, "route show dev ts0", out, sizeof(out));
	assert_non_null(strstr(out, "100.64.0.2 "));
	assert_null(strstr(out, "100.64.0.3 "));
	close(fd);
}

static void test_link_check(void **state)
{
	struct ns *ns = *state;
	struct ip_prefix want[3] = {pfx("100.64.0.5/32"), pfx("fd7a:115c:a1e0::5/128"),
				    pfx("100.64.0.99/32")};
	char detail[160], cmd[320];
	int fd, ifindex;

	create_ts0(ns, &fd, &ifindex);
	assert_int_equal(netops_addr_add(ns->fd, ifindex, &want[0]), 0);
	assert_int_equal(netops_addr_add(ns->fd, ifindex, &want[1]), 0);
	assert_int_equal(netops_link_check(ns->fd, "ts0", 1280, want, 2, detail, sizeof(detail)),
			 0);
	assert_string_equal(detail, "");
	assert_int_equal(netops_link_check(ns->fd, "ts0", 0, NULL, 0, detail, sizeof(detail)), 0);

	assert_int_equal(netops_link_check(ns->fd, "ts0", 1280, want, 3, detail, sizeof(detail)),
			 -EADDRNOTAVAIL);
	assert_string_equal(detail, "address 100.64.0.99/32 missing on ts0");
	assert_int_equal(netops_link_check(ns->fd, "ts0", 1400, want, 2, detail, sizeof(detail)),
			 -EMSGSIZE);
	assert_string_equal(detail, "ts0 has MTU 1280, expected 1400");

	snprintf(cmd, sizeof(cmd), "ip -n %s link set ts0 down", ns->name);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(netops_link_check(ns->fd, "ts0", 1280, want, 2, detail, sizeof(detail)),
			 -ENETDOWN);
	assert_string_equal(detail, "ts0 is down");

	/* Only the device with the recorded index and, for the plugin, the
	 * alias of its key on a TUN is deleted. */
	assert_int_equal(netops_link_delete(ns->fd, "ts0", ifindex + 1), -EEXIST);
	struct netlink_owned other = {.ifname = "ts0", .alias = NETLINK_ALIAS_PREFIX "other"};
	struct netlink_owned ours = {.ifname = "ts0", .alias = NETLINK_ALIAS_PREFIX "test"};

	assert_int_equal(netlink_link_delete_owned(ns->fd, &other), -EEXIST);
	assert_int_equal(netlink_link_delete_owned(ns->fd, &ours), 1);
	assert_int_equal(netlink_link_delete_owned(ns->fd, &ours), 0);
	assert_int_equal(netops_link_delete(ns->fd, "ts0", ifindex), 0);
	/* A TUN of the name made by someone else has no alias of ours. */
	snprintf(cmd, sizeof(cmd), "ip -n %s tuntap add dev ts0 mode tun", ns->name);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(netlink_link_delete_owned(ns->fd, &ours), -EEXIST);
	snprintf(cmd, sizeof(cmd), "ip -n %s link del ts0", ns->name);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(netops_link_check(ns->fd, "ts0", 1280, want, 2, detail, sizeof(detail)),
			 -ENOENT);
	snprintf(cmd, sizeof(cmd), "ts0 not found in network namespace /run/netns/%s", ns->name);
	assert_string_equal(detail, cmd);
	/* A short buffer is cut, not overrun. */
	assert_int_equal(netops_link_check(ns->fd, "ts0", 1280, want, 2, detail, 8), -ENOENT);
	assert_string_equal(detail, "ts0 not");
	close(fd);
}

static void test_netns_deleted(void **state)
{
	struct ns *ns = *state;
	char cmd[160];
	uint8_t buf[64];
	short revents = 0;
	int fd, ifindex;

	create_ts0(ns, &fd, &ifindex);
	/* Our own reference would keep the namespace alive. */
	close(ns->fd);
	ns->fd = -1;
	snprintf(cmd, sizeof(cmd), "ip netns del %s", ns->name);
	assert_int_equal(system(cmd), 0);
	/* The namespace is torn down asynchronously, by the kernel's netns
	 * cleanup work: seconds when other tests tear theirs down too (5 s
	 * were once not enough under ASan beside netns.dataplane). */
	for (int i = 0; i < 600 && !(revents & POLLERR); i++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, 50) > 0)
			revents = pfd.revents;
	}
	assert_true(revents & POLLERR);
	assert_int_equal(read(fd, buf, sizeof(buf)), -1);
	assert_int_equal(errno, EBADFD);
	close(fd);
}

static void test_bad_arguments_leave_nothing(void **state)
{
	static const char *names[] = {"", "bad/name", "waytoolongname12", "eth%d", "a b", ".."};
	struct ns *ns = *state;
	const char *why;
	int fd, ifindex, devnull, idx;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		why = NULL;
		assert_int_equal(
			netops_tun_create(ns->fd, names[i], NULL, NETOPS_MTU, &fd, &ifindex, &why),
			-EINVAL);
		assert_non_null(why);
		assert_int_equal(fd, -1);
	}
	assert_int_equal(netops_tun_create(ns->fd, "ts0", NULL, 1000, &fd, &ifindex, &why),
			 -EINVAL);
	/* Not a namespace at all. */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(devnull >= 0);
	assert_true(netops_tun_create(devnull, "ts0", NULL, NETOPS_MTU, &fd, &ifindex, &why) < 0);
	assert_int_equal(fd, -1);
	close(devnull);
	assert_host_clean(0);
	assert_int_equal(count_tmp_links(ns->fd), 0);
	assert_int_equal(netlink_link_index(ns->fd, "ts0", &idx), -ENODEV);
	assert_int_equal(netlink_link_index(ns->fd, "bad/name/too/long", &idx), -EINVAL);
}

/* Several pods at once, as on the libuv threadpool. */
enum { PAR_PODS = 4 };

struct par {
	struct ns ns;
	int ret;
	char detail[160];
};

static void *par_pod(void *arg)
{
	struct par *p = arg;
	struct ip_prefix a[2] = {pfx("100.64.0.5/32"), pfx("fd7a:115c:a1e0::5/128")};
	const char *why = NULL;
	int fd, ifindex;

	p->ret = netops_tun_create(p->ns.fd, "ts0", NULL, NETOPS_MTU, &fd, &ifindex, &why);
	if (p->ret < 0)
		return NULL;
	for (int i = 0; i < 2 && p->ret == 0; i++)
		p->ret = netops_addr_add(p->ns.fd, ifindex, &a[i]);
	if (p->ret == 0)
		p->ret = netops_route_add(p->ns.fd, ifindex, &ip_tailscale_v4);
	if (p->ret == 0)
		p->ret = netops_link_check(p->ns.fd, "ts0", NETOPS_MTU, a, 2, p->detail,
					   sizeof(p->detail));
	close(fd);
	return NULL;
}

static int setup_parallel(void **state)
{
	struct par *pods = calloc(PAR_PODS, sizeof(*pods));

	if (!pods)
		return -1;
	*state = pods;
	for (int i = 0; i < PAR_PODS; i++)
		pods[i].ns.fd = -1;
	for (int i = 0; i < PAR_PODS; i++) {
		if (ns_create(&pods[i].ns) != 0)
			return -1;
	}
	return 0;
}

static int teardown_parallel(void **state)
{
	struct par *pods = *state;

	for (int i = 0; i < PAR_PODS; i++) {
		if (pods[i].ns.name[0])
			ns_destroy(&pods[i].ns);
	}
	free(pods);
	return 0;
}

static void test_parallel(void **state)
{
	struct par *pods = *state;
	pthread_t th[PAR_PODS];
	unsigned int self_before = if_nametoindex("ts0");

	for (int i = 0; i < PAR_PODS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, par_pod, &pods[i]), 0);
	for (int i = 0; i < PAR_PODS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < PAR_PODS; i++) {
		if (pods[i].ret != 0)
			fail_msg("pod %d: %d %s", i, pods[i].ret, pods[i].detail);
	}
	/* Every thread came back to the host namespace. */
	assert_int_equal(if_nametoindex("ts0"), self_before);
	assert_host_clean(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_ipv6_default_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tun_carries_packets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_addr_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_route, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routes_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_link_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_netns_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments_leave_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel, setup_parallel, teardown_parallel),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "netns.netops needs root\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
