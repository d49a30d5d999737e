/* The sockets a pod's worker gets from the host's netns besides its TUN fd:
 * its UDP socket (WireGuard, disco, STUN) and a read-only NETLINK_ROUTE
 * socket from which it learns the host's addresses, its endpoints
 * (docs/tailscale-protocol.md §8). Both are made here, where the supervisor
 * runs, and their custody then follows the TUN fd's: a respawned or
 * re-adopted worker keeps the same port and the same subscription. */
#include "pods_internal.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "supervisor.h"

int pods_port_range_parse(const char *s, uint16_t *lo, uint16_t *hi)
{
	unsigned long v[2];
	const char *p = s;

	*lo = *hi = 0;
	for (int i = 0; i < 2; i++) {
		char *end;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		errno = 0;
		v[i] = strtoul(p, &end, 10);
		if (errno || v[i] < 1 || v[i] > 65535 || *end != (i == 0 ? '-' : '\0'))
			return -EINVAL;
		p = end + 1;
	}
	if (v[0] > v[1])
		return -EINVAL;
	*lo = (uint16_t)v[0];
	*hi = (uint16_t)v[1];
	return 0;
}

/* Binds s (AF_INET6 dual-stack or AF_INET) to port (0: any). */
static int bind_port(int s, int family, uint16_t port)
{
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	int ret = family == AF_INET6 ? bind(s, (struct sockaddr *)&sin6, sizeof(sin6))
				     : bind(s, (struct sockaddr *)&sin, sizeof(sin));

	return ret < 0 ? -errno : 0;
}

/* Dual-stack, bound to an ephemeral port or to the first free one of
 * --udp-port-range (for nodes behind firewalls that open only those), with
 * large buffers (SO_*BUFFORCE: the worker has no CAP_NET_ADMIN to ask). */
int pods__udp_socket_new(const struct supervisor_config *cfg, int *fd, const char **why)
{
	int s, family = AF_INET6, off = 0, sz = UDP_BUFFER_BYTES, ret;

	*fd = -1;
	s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0) {
		/* A kernel without IPv6: an IPv4 socket. */
		family = AF_INET;
		s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (s < 0) {
			*why = "the pod's UDP socket";
			return -errno;
		}
	} else {
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	}
	if (!cfg->udp_port_lo) {
		ret = bind_port(s, family, 0);
		*why = "bind the pod's UDP socket";
	} else {
		ret = -EADDRINUSE;
		for (uint32_t port = cfg->udp_port_lo;
		     port <= cfg->udp_port_hi && ret == -EADDRINUSE; port++)
			ret = bind_port(s, family, (uint16_t)port);
		*why = ret == -EADDRINUSE ? "no free UDP port left in --udp-port-range"
					  : "bind the pod's UDP socket in --udp-port-range";
	}
	if (ret < 0) {
		close(s);
		return ret;
	}
	if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	*fd = s;
	return 0;
}

/* Subscribed to link and address changes. The worker reads it and sends
 * only dump requests: anything that would change the host needs
 * CAP_NET_ADMIN in the task that sends it, which a worker never has. */
int pods__netlink_socket_new(int *fd, const char **why)
{
	struct sockaddr_nl sa = {
		.nl_family = AF_NETLINK,
		.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR,
	};
	int s, sz = 256 << 10, ret;

	*fd = -1;
	s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	if (s < 0) {
		*why = "the pod's netlink socket";
		return -errno;
	}
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		*why = "bind the pod's netlink socket";
		close(s);
		return ret;
	}
	/* Room for a burst of changes (a node with many pods adds and
	 * removes veths often); an overflow costs the worker one more dump. */
	if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
		setsockopt(s, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	*fd = s;
	return 0;
}
