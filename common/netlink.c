/* Small rtnetlink helpers through libnl-route-3. Each call opens its own
 * socket, created inside the target namespace so that it stays bound there,
 * and closes it before returning: no state is shared between calls. */
#include "netlink.h"

#include <errno.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/route/link.h>

#include "netns.h"
#include "record.h"

/* libnl folds the kernel's errno into its own codes; this maps them back as
 * closely as the folding allows (ENOENT, ESRCH -> OBJ_NOTFOUND -> ENOENT). */
int netlink_errno(int nlerr)
{
	switch (nlerr < 0 ? -nlerr : nlerr) {
	case 0:
		return 0;
	case NLE_INTR:
	case NLE_DUMP_INTR:
		return -EINTR;
	case NLE_BAD_SOCK:
		return -EBADF;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_EXIST:
		return -EEXIST;
	case NLE_INVAL:
	case NLE_MISSING_ATTR:
	case NLE_OBJ_MISMATCH:
		return -EINVAL;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_MSGSIZE:
	case NLE_MSG_TRUNC:
	case NLE_ATTRSIZE:
		return -EMSGSIZE;
	case NLE_OPNOTSUPP:
	case NLE_SRCRT_NOSUPPORT:
	case NLE_MSGTYPE_NOSUPPORT:
		return -EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
	case NLE_AF_MISMATCH:
		return -EAFNOSUPPORT;
	case NLE_OBJ_NOTFOUND:
	case NLE_NOCACHE:
		return -ENOENT;
	case NLE_NOADDR:
		return -EADDRNOTAVAIL;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_PROTO_MISMATCH:
		return -EPROTONOSUPPORT;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_PERM:
	case NLE_IMMUTABLE:
		return -EPERM;
	case NLE_NODEV:
		return -ENODEV;
	default:
		return -EIO;
	}
}

struct sock_open {
	struct nl_sock *sk;
};

static int sock_open_here(void *arg)
{
	struct sock_open *so = arg;
	int ret;

	so->sk = nl_socket_alloc();
	if (!so->sk)
		return -ENOMEM;
	ret = nl_connect(so->sk, NETLINK_ROUTE);
	if (ret < 0) {
		nl_socket_free(so->sk);
		so->sk = NULL;
		return netlink_errno(ret);
	}
	return 0;
}

int netlink_socket_open(int nsfd, struct nl_sock **out)
{
	struct sock_open so = {0};
	int ret;

	*out = NULL;
	ret = nsfd < 0 ? sock_open_here(&so) : netns_run(nsfd, sock_open_here, &so);
	if (ret < 0)
		return ret;
	*out = so.sk;
	return 0;
}

static bool ifname_ok(const char *ifname)
{
	size_t len = strnlen(ifname, IFNAMSIZ);

	return len > 0 && len < IFNAMSIZ;
}

int netlink_link_index(int nsfd, const char *ifname, int *ifindex)
{
	struct rtnl_link *link = NULL;
	struct nl_sock *sk;
	int ret;

	*ifindex = 0;
	if (!ifname_ok(ifname))
		return -EINVAL;
	ret = netlink_socket_open(nsfd, &sk);
	if (ret < 0)
		return ret;
	ret = rtnl_link_get_kernel(sk, 0, ifname, &link);
	if (ret < 0) {
		ret = netlink_errno(ret);
		/* The kernel answers ENODEV for an unknown name. */
		if (ret == -ENOENT)
			ret = -ENODEV;
		goto out;
	}
	*ifindex = rtnl_link_get_ifindex(link);
	ret = 0;
out:
	rtnl_link_put(link);
	nl_socket_free(sk);
	return ret;
}

void netlink_owner_alias(const char *network, const char *container_id, const char *ifname,
			 char *buf, size_t n)
{
	char key[RECORD_KEYNAME_LEN];

	record_key_filename(network, container_id, ifname, key, sizeof(key));
	snprintf(buf, n, "%s%s", NETLINK_ALIAS_PREFIX, key);
}

/* Is link the device o describes? */
static bool link_is(struct rtnl_link *link, const struct netlink_owned *o)
{
	const char *alias = rtnl_link_get_ifalias(link), *kind = rtnl_link_get_type(link);

	if (o->ifindex > 0 && rtnl_link_get_ifindex(link) != o->ifindex)
		return false;
	if (o->alias &&
	    (!alias || strcmp(alias, o->alias) != 0 || !kind || strcmp(kind, "tun") != 0))
		return false;
	return true;
}

int netlink_link_delete_owned(int nsfd, const struct netlink_owned *o)
{
	struct rtnl_link *link = NULL, *del = NULL;
	struct nl_sock *sk;
	int ret;

	if (!ifname_ok(o->ifname) || (o->ifindex <= 0 && !o->alias))
		return -EINVAL;
	ret = netlink_socket_open(nsfd, &sk);
	if (ret < 0)
		return ret;
	ret = rtnl_link_get_kernel(sk, 0, o->ifname, &link);
	if (ret < 0) {
		ret = netlink_errno(ret);
		if (ret == -ENODEV || ret == -ENOENT)
			ret = 0;
		goto out;
	}
	if (!link_is(link, o)) {
		ret = -EEXIST;
		goto out;
	}
	del = rtnl_link_alloc();
	if (!del) {
		ret = -ENOMEM;
		goto out;
	}
	/* By index: the device just checked, not whatever holds the name
	 * by now. */
	rtnl_link_set_ifindex(del, rtnl_link_get_ifindex(link));
	ret = rtnl_link_delete(sk, del);
	if (ret < 0) {
		ret = netlink_errno(ret);
		if (ret == -ENODEV || ret == -ENOENT)
			ret = 0;
		goto out;
	}
	ret = 1;
out:
	rtnl_link_put(del);
	rtnl_link_put(link);
	nl_socket_free(sk);
	return ret;
}
