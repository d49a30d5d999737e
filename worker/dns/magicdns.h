/* MagicDNS: the answers of the quad-100 resolver (100.100.100.100:53 and
 * [fd7a:115c:a1e0::53]:53) as tailscaled gives them (tailscale/tailscale
 * net/dns/resolver/tsdns.go), from a table built out of the netmap.
 *
 * Sans-I/O: magicdns_answer() reads one DNS message (a UDP payload, or a
 * TCP message without its 2-byte length prefix) and either writes the reply
 * into the caller's buffer, or says that the query should go unchanged to an
 * upstream resolver, or that nothing should be sent. It allocates nothing
 * and reads no state but the table, so one table can serve several threads.
 *
 * What is answered here, and how (AA set on all of these, RA copies RD,
 * positive TTL MAGICDNS_TTL):
 *   - A, AAAA and ANY for a name of the table, and for a single label
 *     ("peer1.") that is a name of the table under one of the local domains,
 *     tried in the order given. Every address of the asked family is listed
 *     (tailscaled lists only the first; the first here is that one).
 *   - NOERROR with no answer for a name of the table asked for another type
 *     (MX, TXT, an AAAA for an IPv4-only node...) or class; NOTIMP for NS,
 *     SOA, AXFR and HINFO, as tailscaled.
 *   - NXDOMAIN for any other name inside a local domain, and for *.onion.
 *   - PTR for a.b.c.d.in-addr.arpa. and the 32-nibble ip6.arpa. name of an
 *     address of the table (the first name given for that address, hosts
 *     before extra records) or of quad-100 itself; a Tailscale 4-to-6
 *     address (fd7a:115c:a1e0:ab12:4843:cd96:62xx:xxxx) also finds its
 *     100.x node. NXDOMAIN for any other address in 100.64.0.0/10 or
 *     fd7a:115c:a1e0::/48 or whose reverse name lies in a local domain.
 *     Bonjour browsing names (b._dns-sd._udp. and kin) are never ours.
 *   - "magicdns.localhost-tailscale-daemon." is quad-100's own name.
 * Every other well-formed query is MAGICDNS_FORWARD when the table says an
 * upstream resolver exists, else REFUSED.
 *
 * Malformed queries: fewer than 12 bytes, or QR set: MAGICDNS_DROP. Opcode
 * other than QUERY: NOTIMP. QDCOUNT other than 1, a truncated or oversized
 * question, any compression pointer or extended label type in the question,
 * a truncated record after it, an OPT RR that is not in the additional
 * section, not on the root name, or not alone: FORMERR. These replies carry
 * only the header (QDCOUNT 0).
 *
 * EDNS(0) (RFC 6891): a query with an OPT RR gets one back advertising
 * MAGICDNS_EDNS_SIZE, with the DO bit copied; a version other than 0 gets
 * BADVERS. Over UDP a reply may use the requestor's advertised size (at
 * least 512), but never more than MAGICDNS_EDNS_SIZE so that it fits the
 * tunnel's MTU unfragmented; without EDNS, 512. A reply that does not fit
 * that or outcap goes out as header and question (and OPT) with TC set, so
 * the client retries over TCP. */
#ifndef TSCNI_WORKER_DNS_MAGICDNS_H
#define TSCNI_WORKER_DNS_MAGICDNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ip.h"

enum magicdns_limits {
	/* A name as text, without the trailing dot; and on the wire. */
	MAGICDNS_NAME_MAX = 253,
	MAGICDNS_WIRE_NAME_MAX = 255,
	MAGICDNS_LABEL_MAX = 63,
	/* (name, address) pairs, hosts and extra records together. */
	MAGICDNS_MAX_RECORDS = 65536,
	MAGICDNS_MAX_DOMAINS = 1024,
	MAGICDNS_TTL = 600,
	MAGICDNS_UDP_MIN = 512,
	MAGICDNS_EDNS_SIZE = 1232,
	MAGICDNS_TCP_MAX = 65535,
	MAGICDNS_HEADER_LEN = 12,
};

/* Flags for magicdns_answer(). */
enum magicdns_flags {
	/* The query came over TCP: the reply may be up to MAGICDNS_TCP_MAX. */
	MAGICDNS_TCP = 1U << 0,
};

enum magicdns_verdict {
	MAGICDNS_DROP,	  /* nothing to send */
	MAGICDNS_ANSWER,  /* out holds the reply */
	MAGICDNS_FORWARD, /* send the query bytes, unchanged, upstream */
};

/* A node: its MagicDNS name ("peer1.tail1234.ts.net.", trailing dot
 * optional) and its addresses, each a /32 or a /128. */
struct magicdns_host {
	const char *name;
	const struct ip_prefix *addrs;
	size_t n_addrs;
};

/* One of the netmap's DNSConfig.ExtraRecords. Type "", "A" and "AAAA" are
 * used (the family comes from the value, as tailscaled does); others are
 * skipped. */
struct magicdns_extra_record {
	const char *name;
	const char *type;
	const char *value; /* an address as text */
};

/* Everything the table is built from; the builder copies what it keeps.
 * local_domains are the names quad-100 answers for itself: the tailnet's
 * MagicDNS suffix ("tail1234.ts.net.") and every DNSConfig.Routes suffix
 * whose resolver list is empty. have_upstream says whether default
 * resolvers exist to forward other queries to; names under a split domain
 * are forwarded to its own (magicdns_upstream). */
struct magicdns_config {
	const struct magicdns_host *hosts;
	size_t n_hosts;
	const struct magicdns_extra_record *extra;
	size_t n_extra;
	const char *const *local_domains;
	size_t n_local_domains;
	/* Split DNS: DNSConfig.Routes suffixes that have resolvers of their
	 * own; a name under one (the longest wins) is forwarded to it. */
	const char *const *split;
	size_t n_split;
	bool have_upstream;
};

struct magicdns;

/* Builds the table from cfg. Names are matched without regard to ASCII
 * case. Entries that cannot be used (a name with an empty label, a label
 * over MAGICDNS_LABEL_MAX or a name over MAGICDNS_NAME_MAX, an address that
 * is not a /32 or /128, an extra record of another type or whose value is
 * no address) are skipped and counted in *skipped (may be NULL), so one bad
 * peer cannot take DNS away from the rest. Returns 0 and a table the caller
 * frees with magicdns_free(), or -E2BIG with *why set (and *out NULL) when
 * cfg holds more than MAGICDNS_MAX_RECORDS addresses or
 * MAGICDNS_MAX_DOMAINS domains. */
int magicdns_new(const struct magicdns_config *cfg, struct magicdns **out, size_t *skipped,
		 const char **why);
/* Does nothing for NULL. */
void magicdns_free(struct magicdns *m);

/* Answers the query q[0..qlen) from m (NULL: an empty table with no
 * upstream) as described above; flags is 0 or MAGICDNS_TCP. On
 * MAGICDNS_ANSWER the reply is out[0..*outlen), *outlen <= outcap; on the
 * other verdicts *outlen is 0 and out is untouched. outcap should be at
 * least MAGICDNS_UDP_MIN; with less, a reply that does not fit is
 * truncated as above, and if not even a header fits the verdict is
 * MAGICDNS_DROP. */
enum magicdns_verdict magicdns_answer(const struct magicdns *m, const uint8_t *q, size_t qlen,
				      unsigned int flags, uint8_t *out, size_t outcap,
				      size_t *outlen);

enum { MAGICDNS_UPSTREAM_DEFAULT = -2 };

/* Where a query magicdns_answer() said MAGICDNS_FORWARD for goes: the index
 * into cfg->split of the longest split domain its name lies under,
 * MAGICDNS_UPSTREAM_DEFAULT for the default resolvers (have_upstream), or
 * -1 (not a well-formed query, or nowhere). */
int magicdns_upstream(const struct magicdns *m, const uint8_t *q, size_t qlen);

#endif
