/* A bounded, allocation-free parser for one IPv4 or IPv6 packet as read from
 * the TUN device or decrypted from WireGuard: version, addresses, protocol,
 * ports, TCP flags, ICMP type/code, IPv4 options, IPv6 extension headers and
 * fragments.
 *
 * Two views of the upper-layer protocol are kept:
 *  - `proto` is what upstream's net/packet Parsed.IPProto would say, and is
 *    what the packet filter decides on, so that its verdicts match
 *    tailscaled's (common/filter.h). Upstream steps over one IPv6 Fragment
 *    header directly after the base header and no other extension header:
 *    hop-by-hop (0) reads as "unknown" and is dropped, routing (43) or
 *    destination options (60) read as that protocol number.
 *  - `transport`/`l4_off` come from walking the whole extension header chain
 *    (at most PACKET_MAX_EXT_HDRS headers), for the rest of the data path.
 *
 * Every offset is bounded by the IP total length (IPv4 Total Length, IPv6
 * 40 + Payload Length), not by the buffer: bytes after it (WireGuard's zero
 * padding) are ignored. Stricter than upstream, which reads past it: IPv4
 * with IHL < 5 or malformed options, a TCP data offset < 5 or past the end,
 * and a malformed extension header chain are invalid here (the kernel would
 * drop them too). */
#ifndef TSCNI_WORKER_DATAPLANE_PACKET_H
#define TSCNI_WORKER_DATAPLANE_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* IANA protocol numbers, plus upstream's two internal values. */
enum packet_proto {
	PACKET_PROTO_UNKNOWN = 0, /* also IPv6 hop-by-hop: upstream cannot tell them apart */
	PACKET_PROTO_ICMP4 = 1,
	PACKET_PROTO_IGMP = 2,
	PACKET_PROTO_TCP = 6,
	PACKET_PROTO_UDP = 17,
	PACKET_PROTO_IP6_ROUTING = 43,
	PACKET_PROTO_IP6_FRAGMENT = 44,
	PACKET_PROTO_ESP = 50,
	PACKET_PROTO_AH = 51,
	PACKET_PROTO_ICMP6 = 58,
	PACKET_PROTO_IP6_NONE = 59,
	PACKET_PROTO_IP6_DSTOPTS = 60,
	PACKET_PROTO_TSMP = 99, /* Tailscale's in-tunnel messages */
	PACKET_PROTO_SCTP = 132,
	PACKET_PROTO_FRAGMENT = 255, /* a non-first fragment: no transport header */
};

enum packet_tcp_flag {
	PACKET_TCP_FIN = 1U << 0,
	PACKET_TCP_SYN = 1U << 1,
	PACKET_TCP_RST = 1U << 2,
	PACKET_TCP_PSH = 1U << 3,
	PACKET_TCP_ACK = 1U << 4,
	PACKET_TCP_URG = 1U << 5,
	PACKET_TCP_ECE = 1U << 6,
	PACKET_TCP_CWR = 1U << 7,
};

enum packet_icmp_type {
	PACKET_ICMP4_ECHO_REPLY = 0,
	PACKET_ICMP4_UNREACHABLE = 3,
	PACKET_ICMP4_ECHO_REQUEST = 8,
	PACKET_ICMP4_TIME_EXCEEDED = 11,
	PACKET_ICMP4_PARAM_PROBLEM = 12,
	PACKET_ICMP6_UNREACHABLE = 1,
	PACKET_ICMP6_PACKET_TOO_BIG = 2,
	PACKET_ICMP6_TIME_EXCEEDED = 3,
	PACKET_ICMP6_PARAM_PROBLEM = 4,
	PACKET_ICMP6_ECHO_REQUEST = 128,
	PACKET_ICMP6_ECHO_REPLY = 129,
};

enum packet_limits {
	PACKET_IP4_HDR_LEN = 20,
	PACKET_IP4_MAX_HDR_LEN = 60,
	PACKET_IP6_HDR_LEN = 40,
	PACKET_IP6_FRAG_HDR_LEN = 8,
	PACKET_MAX_EXT_HDRS = 8, /* a longer IPv6 extension chain is invalid */
	PACKET_TCP_HDR_LEN = 20,
	PACKET_UDP_HDR_LEN = 8,
	PACKET_SCTP_HDR_LEN = 12,
	PACKET_ICMP_HDR_LEN = 4,  /* type, code, checksum: what upstream requires */
	PACKET_ICMP_FULL_LEN = 8, /* what upstream needs to classify echo and errors */
	PACKET_IGMP_HDR_LEN = 8,
	PACKET_TSMP_MIN_LEN = 7,
	/* RFC 1858: a later fragment may not start inside the largest IPv4
	 * header plus a basic TCP header ((60 + 20) / 8 blocks). */
	PACKET_MIN_FRAG_BLOCKS = 10,
};

enum packet_flags {
	PACKET_F_IP4_OPTIONS = 1U << 0, /* IHL > 5 */
	PACKET_F_IP6_EXT = 1U << 1,	/* an extension header other than Fragment */
	PACKET_F_FRAGMENT = 1U << 2,	/* part of a fragmented datagram */
	PACKET_F_MORE_FRAGMENTS = 1U << 3,
	PACKET_F_ICMP_FULL = 1U << 4, /* at least PACKET_ICMP_FULL_LEN ICMP bytes */
};

/* One parsed packet. Addresses are in network order; an IPv4 address fills
 * the first 4 bytes and the rest is zero. */
struct packet {
	size_t buf_len;	 /* the length given to packet_parse() */
	uint8_t version; /* 4 or 6; 0 when the bytes are not IPv4/IPv6 (as upstream) */
	uint8_t proto;	 /* upstream's view (enum packet_proto); UNKNOWN if invalid or hop-by-hop */
	uint8_t transport; /* after the whole extension chain; FRAGMENT for a later one */
	uint8_t tcp_flags; /* valid when transport == TCP */
	uint8_t icmp_type, icmp_code; /* valid when transport is ICMPv4/ICMPv6 */
	uint8_t n_ext;		      /* IPv6 extension headers walked (Fragment included) */
	uint16_t flags;		      /* enum packet_flags */
	uint16_t src_port, dst_port;  /* TCP, UDP, SCTP; 0 otherwise */
	uint16_t frag_offset;	      /* in 8-byte blocks */
	uint32_t len;		      /* IP total length (IPv6: up to 65575); the rest is padding */
	uint32_t l4_off;	      /* transport header offset (valid when parsed) */
	uint32_t payload_off;	      /* transport payload offset (TCP, UDP, ICMP) */
	uint8_t src[16], dst[16];
};

/* Parses buf[0..len). Never reads outside it, never allocates. Fills every
 * field of *p on every path (zeros where nothing was found), so the filter
 * can apply upstream's pre-checks to invalid packets too.
 * Returns 0 when the packet is an IPv4/IPv6 packet whose transport header is
 * complete (or a later fragment with an acceptable offset), else -EBADMSG
 * with *why set to a static string and p->proto == PACKET_PROTO_UNKNOWN.
 * A valid IPv6 packet whose first extension header is hop-by-hop also has
 * proto UNKNOWN (upstream drops it), with transport telling what it carries. */
int packet_parse(struct packet *p, const uint8_t *buf, size_t len, const char **why);

/* Upstream's Parsed.IsTCPSyn: SYN set, ACK clear (valid when proto is TCP). */
static inline bool packet_is_tcp_syn(const struct packet *p)
{
	return (p->tcp_flags & (PACKET_TCP_SYN | PACKET_TCP_ACK)) == PACKET_TCP_SYN;
}

/* Upstream's IsEchoResponse / IsError, for proto ICMPv4 or ICMPv6 with at
 * least 8 ICMP bytes (an echo reply must have code 0). */
bool packet_is_icmp_echo_reply(const struct packet *p);
bool packet_is_icmp_error(const struct packet *p);
bool packet_is_icmp_echo_request(const struct packet *p);

/* Upstream's Parsed.String() ("TCP{1.2.3.4:5 > [::1]:6}", "Unknown{???}")
 * into buf; always terminated when n > 0. For logs and tests. */
char *packet_format(const struct packet *p, char *buf, size_t n);

#endif
