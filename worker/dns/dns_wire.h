/* DNS messages on the wire (RFC 1035 §4, EDNS(0) RFC 6891 §6): the bounded
 * reader of a query and the writer of a reply. Private to worker/dns/.
 *
 * The reader checks every length against the bytes it was given and never
 * follows a compression pointer: a query's question is the first name of
 * its message, so a pointer in it can only aim at the header, forward, or at
 * itself, and is refused. Names of the records after the question may end
 * in a pointer; the reader steps over it without following it. */
#ifndef TSCNI_WORKER_DNS_DNS_WIRE_H
#define TSCNI_WORKER_DNS_DNS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dns_wire_limits {
	DNS_HEADER_LEN = 12,
	DNS_NAME_MAX = 255, /* on the wire, with the root's zero byte */
	DNS_LABEL_MAX = 63,
	DNS_RR_FIXED_LEN = 10,			   /* type, class, TTL, RDLENGTH */
	DNS_OPT_LEN = 11,			   /* an OPT RR with no options */
	DNS_PTR_POINTER = 0xc000 | DNS_HEADER_LEN, /* the question's name */
};

/* Header flag bits (RFC 1035 §4.1.1). */
enum dns_flags {
	DNS_FLAG_QR = 1U << 15,
	DNS_FLAG_OPCODE = 0xfU << 11,
	DNS_FLAG_AA = 1U << 10,
	DNS_FLAG_TC = 1U << 9,
	DNS_FLAG_RD = 1U << 8,
	DNS_FLAG_RA = 1U << 7,
	DNS_FLAG_RCODE = 0xfU,
};

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
	DNS_RCODE_BADVERS = 16, /* extended: the upper 8 bits go in the OPT TTL */
};

enum dns_type {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_HINFO = 13,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_AXFR = 252,
	DNS_TYPE_ANY = 255,
};

enum dns_class {
	DNS_CLASS_IN = 1,
	DNS_CLASS_ANY = 255,
};

/* What dns_wire_parse_query() made of a message. */
enum dns_parse {
	DNS_PARSE_OK,
	DNS_PARSE_DROP,	   /* no header, or a response: send nothing */
	DNS_PARSE_FORMERR, /* header readable, the rest is not a query */
	DNS_PARSE_NOTIMP,  /* an opcode other than QUERY */
};

struct dns_query {
	uint16_t id;
	uint16_t flags;	      /* as received */
	const uint8_t *qname; /* into the message; labels, no pointers */
	size_t qname_len;     /* with the root's zero byte */
	uint16_t qtype, qclass;
	size_t question_end; /* offset just past QCLASS */
	bool edns;	     /* an OPT RR was in the additional section */
	uint16_t edns_size;  /* its requestor's UDP payload size */
	uint8_t edns_version;
	bool edns_do; /* DNSSEC OK */
};

/* Reads the query q[0..len). On DNS_PARSE_OK all of *out is set and points
 * into q; on FORMERR and NOTIMP only id and flags are; *why says what was
 * wrong (a static string) on anything but OK. */
enum dns_parse dns_wire_parse_query(const uint8_t *q, size_t len, struct dns_query *out,
				    const char **why);

/* Writes into buf[0..cap). A write that does not fit sets overflow and
 * writes nothing; later writes are ignored, so a reply is built without a
 * check per field and checked once at the end. */
struct dns_writer {
	uint8_t *buf;
	size_t cap, len;
	bool overflow;
};

void dns_wire_put(struct dns_writer *w, const void *p, size_t n);
void dns_wire_put16(struct dns_writer *w, uint16_t v);
void dns_wire_put32(struct dns_writer *w, uint32_t v);
/* A reply header: counts in the order QD, AN, NS, AR. */
void dns_wire_put_header(struct dns_writer *w, uint16_t id, uint16_t flags, uint16_t qd,
			 uint16_t an, uint16_t ns, uint16_t ar);
/* Overwrites ANCOUNT of a header already written at buf[0]. */
void dns_wire_set_ancount(struct dns_writer *w, uint16_t an);
/* An OPT RR with no options: our UDP payload size, the upper 8 bits of an
 * extended RCODE, version 0, and the DO bit. */
void dns_wire_put_opt(struct dns_writer *w, uint16_t udp_size, uint8_t ext_rcode, bool dnssec_ok);

static inline uint16_t dns_load16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t dns_load32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
