/* The host's interface addresses as the worker learns them from the
 * NETLINK_ROUTE socket the supervisor hands it (docs/tailscale-protocol.md
 * §8): a bounded reader of rtnetlink datagrams (link and address messages,
 * dump ends and errors), and the table of addresses that may be announced
 * as endpoints. No I/O here: endpoints.c reads the socket. The bytes come
 * from the kernel, but are parsed as untrusted all the same (every length
 * checked; fuzz/fuzz_ifaddr.c). */
#ifndef TSCNI_WORKER_IFADDR_H
#define TSCNI_WORKER_IFADDR_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "validate.h"

enum ifaddr_limits {
	IFADDR_LINKS_MAX = 64, /* links kept: up, not loopback, not denied */
	IFADDR_ADDRS_MAX = 32, /* addresses kept: on those links, reachable */
	IFADDR_DENY_MAX = ENDPOINT_DENY_MAX,
	IFADDR_GLOB_MAX_LEN = ENDPOINT_DENY_GLOB_MAX_LEN,
};

/* One decoded rtnetlink message. type is the nlmsghdr's: RTM_NEWLINK,
 * RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR, NLMSG_DONE, NLMSG_ERROR, or any
 * other (only the header fields are then set). */
struct ifaddr_msg {
	uint16_t type;
	uint16_t nl_flags; /* NLM_F_* */
	uint32_t seq;
	int error; /* NLMSG_ERROR: 0 (an ack) or a negative errno */
	int index; /* links and addresses: the interface index (> 0) */
	/* Links. */
	unsigned int link_flags; /* IFF_* */
	char name[IF_NAMESIZE];	 /* "" when the message had no IFLA_IFNAME */
	/* Addresses: IFA_LOCAL, else IFA_ADDRESS; family 0 when neither. */
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	uint8_t prefixlen;
	uint32_t addr_flags;	  /* IFA_F_* (IFA_FLAGS when present) */
	bool has_addr, has_local; /* which attribute addr came from */
};

/* Decodes the message at buf[*off..len) of one datagram. Returns 1 with *m
 * filled and *off past it, 0 at the datagram's end, or -EBADMSG with *why
 * set when the rest of the datagram cannot be trusted (a length that
 * overruns it or is shorter than its own header). */
int ifaddr_next(const uint8_t *buf, size_t len, size_t *off, struct ifaddr_msg *m,
		const char **why);

/* Interface names whose addresses are never endpoints: the built-in list
 * (ifaddr.c: loopback, CNI bridges, veths, overlay devices) and up to
 * IFADDR_DENY_MAX configured globs. */
struct ifaddr_deny {
	char globs[IFADDR_DENY_MAX][IFADDR_GLOB_MAX_LEN + 1];
	size_t n;
};

/* Adds glob (a valid_iface_glob) to d. 0, -ENOSPC when d is full, -EINVAL
 * for an invalid glob. */
int ifaddr_deny_add(struct ifaddr_deny *d, const char *glob);
/* Is name denied (the built-in list or one of d's globs; d may be NULL)? */
bool ifaddr_denied(const struct ifaddr_deny *d, const char *name);

struct ifaddr_link {
	int index;
	char name[IF_NAMESIZE];
};

struct ifaddr_addr {
	int index;
	int family;
	uint8_t addr[16];
};

/* What one dump (links, then addresses) found: only links that are up,
 * not loopback and not denied, and only addresses on those links that
 * someone outside could reach (not loopback, link-local, multicast or
 * tailnet; not tentative, deprecated or failed DAD). dropped counts what
 * did not fit the bounds. */
struct ifaddr_table {
	struct ifaddr_link links[IFADDR_LINKS_MAX];
	size_t n_links;
	struct ifaddr_addr addrs[IFADDR_ADDRS_MAX];
	size_t n_addrs;
	size_t dropped;
};

/* Feeds one RTM_NEWLINK or RTM_NEWADDR of a dump to t (others are
 * ignored). Addresses must follow the links they are on. */
void ifaddr_table_add(struct ifaddr_table *t, const struct ifaddr_msg *m,
		      const struct ifaddr_deny *deny);

/* Did t keep the link with this index? */
bool ifaddr_table_has_link(const struct ifaddr_table *t, int index);

/* Would a peer outside the host reach a (AF_INET or AF_INET6)? False for
 * unspecified, loopback, link-local, multicast and tailnet addresses
 * (100.64.0.0/10, fd7a:115c:a1e0::/48). */
bool ifaddr_reachable(int family, const uint8_t *addr);

#endif
