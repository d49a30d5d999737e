/* Fuzz target for the rtnetlink reader of the host's addresses
 * (worker/ifaddr.c): the input is one datagram, walked to its end or to the
 * first error, every message fed to a table built with one configured glob.
 * A message must never move the offset backwards or past the datagram, an
 * error must say why, and the table must hold only what its rules allow.
 * Nothing is allocated. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/ifaddr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ifaddr_table t;
	struct ifaddr_deny deny = {0};
	struct ifaddr_msg m;
	const char *why = NULL;
	size_t off = 0, prev = 0;
	int ret;

	memset(&t, 0, sizeof(t));
	if (ifaddr_deny_add(&deny, "eth9*") != 0)
		abort();
	while ((ret = ifaddr_next(data, size, &off, &m, &why)) > 0) {
		if (off <= prev || off > size || m.name[sizeof(m.name) - 1] != '\0')
			abort();
		prev = off;
		ifaddr_table_add(&t, &m, &deny);
	}
	if ((ret < 0 && !why) || t.n_links > IFADDR_LINKS_MAX || t.n_addrs > IFADDR_ADDRS_MAX)
		abort();
	for (size_t i = 0; i < t.n_links; i++)
		if (ifaddr_denied(&deny, t.links[i].name))
			abort();
	for (size_t i = 0; i < t.n_addrs; i++)
		if (!ifaddr_reachable(t.addrs[i].family, t.addrs[i].addr) ||
		    !ifaddr_table_has_link(&t, t.addrs[i].index))
			abort();
	return 0;
}
