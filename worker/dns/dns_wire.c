/* DNS messages on the wire: the bounded reader of a query, the writer of a
 * reply. */
#include "dns_wire.h"

#include <string.h>

enum dns_section {
	SECTION_ANSWER,
	SECTION_AUTHORITY,
	SECTION_ADDITIONAL,
};

/* Steps over the name at q[*pos]. In the question (in_question) a
 * compression pointer is refused; elsewhere it ends the name and is not
 * followed: nothing here needs the name's text, and never following one
 * means no loop to detect. Either way every label is checked against len
 * and the name against DNS_NAME_MAX. Returns 0 and moves *pos past the
 * name, or -1 with *why set. */
static int skip_name(const uint8_t *q, size_t len, size_t *pos, bool in_question, const char **why)
{
	size_t p = *pos;
	size_t start = p;

	for (;;) {
		uint8_t l;

		if (p >= len) {
			*why = "truncated name";
			return -1;
		}
		l = q[p];
		if ((l & 0xc0) == 0xc0) {
			if (in_question) {
				*why = "compression pointer in the question";
				return -1;
			}
			if (len - p < 2) {
				*why = "truncated compression pointer";
				return -1;
			}
			*pos = p + 2;
			return 0;
		}
		/* 0x40 and 0x80: extended and reserved label types (RFC 6891
		 * §5 retired the only one defined); a plain label is at most
		 * 63 bytes, so a length byte over 63 is one of these. */
		if (l & 0xc0) {
			*why = "label longer than 63 bytes";
			return -1;
		}
		/* Counts this length byte and the label (the root's zero byte
		 * included when l is 0). */
		if (p - start + 1 + l > DNS_NAME_MAX) {
			*why = "name longer than 255 bytes";
			return -1;
		}
		if (len - p - 1 < l) {
			*why = "truncated label";
			return -1;
		}
		p += 1 + (size_t)l;
		if (l == 0)
			break;
	}
	*pos = p;
	return 0;
}

/* The options of an OPT RR, each code (2) ‖ length (2) ‖ data, must fill
 * its RDATA exactly. None is acted on. */
static int check_options(const uint8_t *opt, size_t len, const char **why)
{
	size_t p = 0;

	while (p < len) {
		uint16_t olen;

		if (len - p < 4) {
			*why = "truncated EDNS option";
			return -1;
		}
		olen = dns_load16(opt + p + 2);
		p += 4;
		if (len - p < olen) {
			*why = "EDNS option overruns its OPT record";
			return -1;
		}
		p += olen;
	}
	return 0;
}

enum dns_parse dns_wire_parse_query(const uint8_t *q, size_t len, struct dns_query *out,
				    const char **why)
{
	uint32_t records;
	uint16_t an, ns;
	size_t p;

	memset(out, 0, sizeof(*out));
	if (len < DNS_HEADER_LEN) {
		*why = "shorter than a DNS header";
		return DNS_PARSE_DROP;
	}
	out->id = dns_load16(q);
	out->flags = dns_load16(q + 2);
	if (out->flags & DNS_FLAG_QR) {
		*why = "a response, not a query";
		return DNS_PARSE_DROP;
	}
	if (out->flags & DNS_FLAG_OPCODE) {
		*why = "opcode other than QUERY";
		return DNS_PARSE_NOTIMP;
	}
	if (dns_load16(q + 4) != 1) {
		*why = "QDCOUNT is not 1";
		return DNS_PARSE_FORMERR;
	}
	an = dns_load16(q + 6);
	ns = dns_load16(q + 8);
	records = (uint32_t)an + ns + dns_load16(q + 10);

	p = DNS_HEADER_LEN;
	if (skip_name(q, len, &p, true, why) < 0)
		return DNS_PARSE_FORMERR;
	out->qname = q + DNS_HEADER_LEN;
	out->qname_len = p - DNS_HEADER_LEN;
	if (len - p < 4) {
		*why = "truncated question";
		return DNS_PARSE_FORMERR;
	}
	out->qtype = dns_load16(q + p);
	out->qclass = dns_load16(q + p + 2);
	p += 4;
	out->question_end = p;

	/* Each record takes at least 11 bytes, so the loop ends within
	 * len / 11 rounds whatever the counts claim. */
	for (uint32_t i = 0; i < records; i++) {
		enum dns_section section = i < an		   ? SECTION_ANSWER
					   : i < (uint32_t)an + ns ? SECTION_AUTHORITY
								   : SECTION_ADDITIONAL;
		size_t name_start = p;
		uint16_t type, class, rdlen;
		uint32_t ttl;

		if (skip_name(q, len, &p, false, why) < 0)
			return DNS_PARSE_FORMERR;
		if (len - p < DNS_RR_FIXED_LEN) {
			*why = "truncated record";
			return DNS_PARSE_FORMERR;
		}
		type = dns_load16(q + p);
		class = dns_load16(q + p + 2);
		ttl = dns_load32(q + p + 4);
		rdlen = dns_load16(q + p + 8);
		p += DNS_RR_FIXED_LEN;
		if (len - p < rdlen) {
			*why = "truncated record data";
			return DNS_PARSE_FORMERR;
		}
		if (type == DNS_TYPE_OPT) {
			/* RFC 6891 §6.1.1: one OPT, on the root name, only in
			 * the additional section; anything else is FORMERR. */
			if (section != SECTION_ADDITIONAL) {
				*why = "OPT record outside the additional section";
				return DNS_PARSE_FORMERR;
			}
			if (p - DNS_RR_FIXED_LEN - name_start != 1) {
				*why = "OPT record not on the root name";
				return DNS_PARSE_FORMERR;
			}
			if (out->edns) {
				*why = "more than one OPT record";
				return DNS_PARSE_FORMERR;
			}
			if (check_options(q + p, rdlen, why) < 0)
				return DNS_PARSE_FORMERR;
			out->edns = true;
			out->edns_size = class;
			out->edns_version = (uint8_t)(ttl >> 16);
			out->edns_do = ttl & 0x8000;
		}
		p += rdlen;
	}
	/* Bytes after the last record are ignored, as tailscaled's parser
	 * ignores them. */
	return DNS_PARSE_OK;
}

void dns_wire_put(struct dns_writer *w, const void *p, size_t n)
{
	if (w->overflow || w->cap - w->len < n) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void dns_wire_put16(struct dns_writer *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	dns_wire_put(w, b, sizeof(b));
}

void dns_wire_put32(struct dns_writer *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

	dns_wire_put(w, b, sizeof(b));
}

void dns_wire_put_header(struct dns_writer *w, uint16_t id, uint16_t flags, uint16_t qd,
			 uint16_t an, uint16_t ns, uint16_t ar)
{
	dns_wire_put16(w, id);
	dns_wire_put16(w, flags);
	dns_wire_put16(w, qd);
	dns_wire_put16(w, an);
	dns_wire_put16(w, ns);
	dns_wire_put16(w, ar);
}

void dns_wire_set_ancount(struct dns_writer *w, uint16_t an)
{
	if (w->len < DNS_HEADER_LEN)
		return;
	w->buf[6] = (uint8_t)(an >> 8);
	w->buf[7] = (uint8_t)an;
}

void dns_wire_put_opt(struct dns_writer *w, uint16_t udp_size, uint8_t ext_rcode, bool dnssec_ok)
{
	dns_wire_put(w, "", 1); /* the root name */
	dns_wire_put16(w, DNS_TYPE_OPT);
	dns_wire_put16(w, udp_size);
	/* TTL: extended RCODE ‖ version 0 ‖ DO ‖ Z. */
	dns_wire_put32(w, (uint32_t)ext_rcode << 24 | (dnssec_ok ? 0x8000U : 0));
	dns_wire_put16(w, 0);
}
