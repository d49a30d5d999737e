/* IPv4/IPv6 packet parsing for the packet filter and the data path. See
 * packet.h for the two protocol views and the bounds. Upstream reference:
 * tailscale net/packet/packet.go (Parsed.Decode, decode4, decode6). */
#include "packet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static uint16_t load_be16(const uint8_t *b)
{
	return (uint16_t)((b[0] << 8) | b[1]);
}

/* Fails the parse: the filter then sees an unknown protocol. */
static int invalid(struct packet *p, const char *msg, const char **why)
{
	p->proto = PACKET_PROTO_UNKNOWN;
	*why = msg;
	return -EBADMSG;
}

/* Reads the transport header of protocol `proto` at p->l4_off (bounded by
 * p->len): ports, TCP flags, ICMP type and code. Upstream's minimum lengths
 * apply; a TCP data offset must also fit. */
static int parse_transport(struct packet *p, const uint8_t *b, uint8_t proto, const char **why)
{
	const uint8_t *t = b + p->l4_off;
	size_t avail = (size_t)(p->len - p->l4_off);

	p->transport = proto;
	switch (proto) {
	case PACKET_PROTO_TCP: {
		size_t doff;

		if (avail < PACKET_TCP_HDR_LEN)
			return invalid(p, "TCP header truncated", why);
		doff = (size_t)(t[12] >> 4) * 4;
		if (doff < PACKET_TCP_HDR_LEN || doff > avail)
			return invalid(p, "TCP data offset out of range", why);
		p->src_port = load_be16(t);
		p->dst_port = load_be16(t + 2);
		p->tcp_flags = t[13];
		p->payload_off = (uint32_t)(p->l4_off + doff);
		return 0;
	}
	case PACKET_PROTO_UDP:
		if (avail < PACKET_UDP_HDR_LEN)
			return invalid(p, "UDP header truncated", why);
		p->src_port = load_be16(t);
		p->dst_port = load_be16(t + 2);
		p->payload_off = (uint32_t)(p->l4_off + PACKET_UDP_HDR_LEN);
		return 0;
	case PACKET_PROTO_SCTP:
		if (avail < PACKET_SCTP_HDR_LEN)
			return invalid(p, "SCTP header truncated", why);
		p->src_port = load_be16(t);
		p->dst_port = load_be16(t + 2);
		p->payload_off = (uint32_t)(p->l4_off + PACKET_SCTP_HDR_LEN);
		return 0;
	case PACKET_PROTO_ICMP4:
	case PACKET_PROTO_ICMP6:
		if ((proto == PACKET_PROTO_ICMP4) != (p->version == 4))
			break; /* ICMPv6 in IPv4 or the reverse: an ordinary protocol number */
		if (avail < PACKET_ICMP_HDR_LEN)
			return invalid(p, "ICMP header truncated", why);
		p->icmp_type = t[0];
		p->icmp_code = t[1];
		if (avail >= PACKET_ICMP_FULL_LEN)
			p->flags |= PACKET_F_ICMP_FULL;
		p->payload_off = (uint32_t)(p->l4_off + PACKET_ICMP_HDR_LEN);
		return 0;
	case PACKET_PROTO_IGMP:
		if (p->version == 4 && avail < PACKET_IGMP_HDR_LEN)
			return invalid(p, "IGMP header truncated", why);
		break;
	case PACKET_PROTO_TSMP:
		if (avail < PACKET_TSMP_MIN_LEN)
			return invalid(p, "TSMP message truncated", why);
		break;
	case PACKET_PROTO_FRAGMENT:
		/* Upstream's internal value must never come from the wire. */
		return invalid(p, "protocol 255 is reserved", why);
	case PACKET_PROTO_UNKNOWN:
		return invalid(p, "unexpected hop-by-hop header", why);
	default:
		break;
	}
	p->payload_off = p->l4_off;
	return 0;
}

/* IPv4 options are a TLV list inside the header: EOL ends it, NOP is one
 * byte, every other option carries a length >= 2 that must fit. */
static bool ip4_options_valid(const uint8_t *o, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (o[i] == 0)
			return true;
		if (o[i] == 1) {
			i++;
			continue;
		}
		if (n - i < 2 || o[i + 1] < 2 || o[i + 1] > n - i)
			return false;
		i += o[i + 1];
	}
	return true;
}

static int parse4(struct packet *p, const uint8_t *b, size_t len, const char **why)
{
	size_t ihl, tot;
	uint16_t frag;
	uint8_t proto;

	if (len < PACKET_IP4_HDR_LEN) {
		p->version = 0; /* upstream: too short to be IPv4 at all */
		return invalid(p, "IPv4 header truncated", why);
	}
	memcpy(p->src, b + 12, 4);
	memcpy(p->dst, b + 16, 4);
	proto = b[9];
	tot = load_be16(b + 2);
	ihl = (size_t)(b[0] & 0x0f) * 4;
	if (tot > len)
		return invalid(p, "IPv4 total length beyond the buffer", why);
	p->len = (uint32_t)tot;
	if (ihl < PACKET_IP4_HDR_LEN)
		return invalid(p, "IPv4 header length below 20", why);
	if (ihl > tot)
		return invalid(p, "IPv4 header length beyond the total length", why);
	if (ihl > PACKET_IP4_HDR_LEN) {
		p->flags |= PACKET_F_IP4_OPTIONS;
		if (!ip4_options_valid(b + PACKET_IP4_HDR_LEN, ihl - PACKET_IP4_HDR_LEN))
			return invalid(p, "malformed IPv4 option", why);
	}
	p->l4_off = (uint32_t)ihl;
	p->payload_off = p->l4_off;
	frag = load_be16(b + 6);
	p->frag_offset = frag & 0x1fff;
	if (frag & 0x2000)
		p->flags |= PACKET_F_MORE_FRAGMENTS;
	if (p->frag_offset || (frag & 0x2000))
		p->flags |= PACKET_F_FRAGMENT;
	if (p->frag_offset) {
		/* A later fragment has no transport header. One that starts
		 * where a transport header could be is an overlap attack. */
		if (p->frag_offset < PACKET_MIN_FRAG_BLOCKS)
			return invalid(p, "IPv4 fragment offset inside the transport header", why);
		p->transport = p->proto = PACKET_PROTO_FRAGMENT;
		return 0;
	}
	if (proto == PACKET_PROTO_TSMP && (frag & 0x2000))
		return invalid(p, "fragmented TSMP", why);
	if (proto == PACKET_PROTO_UNKNOWN)
		return invalid(p, "IPv4 protocol 0", why);
	p->proto = proto;
	return parse_transport(p, b, proto, why);
}

/* Walks the IPv6 extension header chain from p->l4_off with next header
 * `nh`, at most PACKET_MAX_EXT_HDRS headers, and parses the transport. */
static int walk6(struct packet *p, const uint8_t *b, uint8_t nh, const char **why)
{
	for (;;) {
		size_t off = p->l4_off, avail = (size_t)(p->len - off), hlen;

		switch (nh) {
		case PACKET_PROTO_UNKNOWN: /* hop-by-hop, only right after the base header */
			if (p->n_ext > 0)
				return invalid(p, "IPv6 hop-by-hop header not first", why);
			/* fallthrough */
		case PACKET_PROTO_IP6_ROUTING:
		case PACKET_PROTO_IP6_DSTOPTS:
		case PACKET_PROTO_AH:
			if (avail < 8)
				return invalid(p, "IPv6 extension header truncated", why);
			hlen = nh == PACKET_PROTO_AH ? ((size_t)b[off + 1] + 2) * 4
						     : ((size_t)b[off + 1] + 1) * 8;
			if (hlen > avail)
				return invalid(p, "IPv6 extension header beyond the packet", why);
			p->flags |= PACKET_F_IP6_EXT;
			break;
		case PACKET_PROTO_IP6_FRAGMENT: {
			uint16_t fo;

			if (avail < PACKET_IP6_FRAG_HDR_LEN)
				return invalid(p, "IPv6 fragment header truncated", why);
			if (p->flags & PACKET_F_FRAGMENT)
				return invalid(p, "two IPv6 fragment headers", why);
			hlen = PACKET_IP6_FRAG_HDR_LEN;
			fo = load_be16(b + off + 2);
			p->frag_offset = fo >> 3;
			p->flags |= PACKET_F_FRAGMENT;
			if (fo & 1)
				p->flags |= PACKET_F_MORE_FRAGMENTS;
			break;
		}
		default:
			return parse_transport(p, b, nh, why);
		}
		/* n_ext never passes the bound, whatever the packet. */
		if (p->n_ext == PACKET_MAX_EXT_HDRS)
			return invalid(p, "IPv6 extension header chain too long", why);
		p->n_ext++;
		nh = b[off];
		p->l4_off = (uint32_t)(off + hlen);
		p->payload_off = p->l4_off;
		if (p->frag_offset) {
			if (p->frag_offset < PACKET_MIN_FRAG_BLOCKS)
				return invalid(
					p, "IPv6 fragment offset inside the transport header", why);
			p->transport = PACKET_PROTO_FRAGMENT;
			return 0;
		}
		if (nh == PACKET_PROTO_IP6_NONE) {
			p->transport = nh;
			return 0;
		}
	}
}

static int parse6(struct packet *p, const uint8_t *b, size_t len, const char **why)
{
	size_t tot;
	uint8_t nh;
	int ret;

	if (len < PACKET_IP6_HDR_LEN) {
		p->version = 0; /* upstream: too short to be IPv6 at all */
		return invalid(p, "IPv6 header truncated", why);
	}
	memcpy(p->src, b + 8, 16);
	memcpy(p->dst, b + 24, 16);
	nh = b[6];
	tot = (size_t)load_be16(b + 4) + PACKET_IP6_HDR_LEN;
	if (tot > len)
		return invalid(p, "IPv6 payload length beyond the buffer", why);
	p->len = (uint32_t)tot;
	p->l4_off = PACKET_IP6_HDR_LEN;
	p->payload_off = p->l4_off;
	ret = walk6(p, b, nh, why);
	if (ret < 0)
		return ret;
	/* Upstream's view: only a Fragment header right after the base header
	 * is stepped over. A later fragment, or the first fragment's next
	 * header, or the base header's next header as it is. */
	if (nh == PACKET_PROTO_IP6_FRAGMENT) {
		if (p->frag_offset)
			p->proto = PACKET_PROTO_FRAGMENT;
		else
			p->proto = b[PACKET_IP6_HDR_LEN];
	} else {
		p->proto = nh;
	}
	return 0;
}

int packet_parse(struct packet *p, const uint8_t *buf, size_t len, const char **why)
{
	memset(p, 0, sizeof(*p));
	p->buf_len = len;
	*why = NULL;
	if (len == 0)
		return invalid(p, "empty packet", why);
	p->version = buf[0] >> 4;
	if (p->version == 4)
		return parse4(p, buf, len, why);
	if (p->version == 6)
		return parse6(p, buf, len, why);
	p->version = 0;
	return invalid(p, "not IPv4 or IPv6", why);
}

bool packet_is_icmp_echo_reply(const struct packet *p)
{
	if (!(p->flags & PACKET_F_ICMP_FULL) || p->icmp_code != 0)
		return false;
	if (p->proto == PACKET_PROTO_ICMP4)
		return p->icmp_type == PACKET_ICMP4_ECHO_REPLY;
	if (p->proto == PACKET_PROTO_ICMP6)
		return p->icmp_type == PACKET_ICMP6_ECHO_REPLY;
	return false;
}

bool packet_is_icmp_echo_request(const struct packet *p)
{
	if (!(p->flags & PACKET_F_ICMP_FULL) || p->icmp_code != 0)
		return false;
	if (p->proto == PACKET_PROTO_ICMP4)
		return p->icmp_type == PACKET_ICMP4_ECHO_REQUEST;
	if (p->proto == PACKET_PROTO_ICMP6)
		return p->icmp_type == PACKET_ICMP6_ECHO_REQUEST;
	return false;
}

bool packet_is_icmp_error(const struct packet *p)
{
	if (!(p->flags & PACKET_F_ICMP_FULL))
		return false;
	if (p->proto == PACKET_PROTO_ICMP4)
		return p->icmp_type == PACKET_ICMP4_UNREACHABLE ||
		       p->icmp_type == PACKET_ICMP4_TIME_EXCEEDED ||
		       p->icmp_type == PACKET_ICMP4_PARAM_PROBLEM;
	if (p->proto == PACKET_PROTO_ICMP6)
		return p->icmp_type == PACKET_ICMP6_UNREACHABLE ||
		       p->icmp_type == PACKET_ICMP6_PACKET_TOO_BIG ||
		       p->icmp_type == PACKET_ICMP6_TIME_EXCEEDED ||
		       p->icmp_type == PACKET_ICMP6_PARAM_PROBLEM;
	return false;
}

static const char *proto_name(uint8_t proto, char *tmp, size_t n)
{
	switch (proto) {
	case PACKET_PROTO_UNKNOWN:
		return "Unknown";
	case PACKET_PROTO_FRAGMENT:
		return "Frag";
	case PACKET_PROTO_ICMP4:
		return "ICMPv4";
	case PACKET_PROTO_IGMP:
		return "IGMP";
	case PACKET_PROTO_ICMP6:
		return "ICMPv6";
	case PACKET_PROTO_UDP:
		return "UDP";
	case PACKET_PROTO_TCP:
		return "TCP";
	case PACKET_PROTO_SCTP:
		return "SCTP";
	case PACKET_PROTO_TSMP:
		return "TSMP";
	case 47:
		return "GRE";
	case 33:
		return "DCCP";
	default:
		snprintf(tmp, n, "IPProto-%u", proto);
		return tmp;
	}
}

char *packet_format(const struct packet *p, char *buf, size_t n)
{
	char tmp[16], s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	int af = p->version == 4 ? AF_INET : AF_INET6;
	bool ports;

	if (n == 0)
		return buf;
	if (p->version != 4 && p->version != 6) {
		snprintf(buf, n, "Unknown{???}");
		return buf;
	}
	inet_ntop(af, p->src, s, sizeof(s));
	inet_ntop(af, p->dst, d, sizeof(d));
	ports = p->proto == PACKET_PROTO_TCP || p->proto == PACKET_PROTO_UDP ||
		p->proto == PACKET_PROTO_SCTP;
	if (af == AF_INET)
		snprintf(buf, n, "%s{%s:%u > %s:%u}", proto_name(p->proto, tmp, sizeof(tmp)), s,
			 ports ? p->src_port : 0, d, ports ? p->dst_port : 0);
	else
		snprintf(buf, n, "%s{[%s]:%u > [%s]:%u}", proto_name(p->proto, tmp, sizeof(tmp)), s,
			 ports ? p->src_port : 0, d, ports ? p->dst_port : 0);
	return buf;
}
