/* STUN binding requests and responses (RFC 5389 §6, §15). */
#include "stun.h"

#include <errno.h>
#include <string.h>

enum stun_attr {
	ATTR_MAPPED_ADDRESS = 0x0001,
	ATTR_XOR_MAPPED_ADDRESS = 0x0020,
	/* Not in the RFC: XOR-MAPPED-ADDRESS moved into the
	 * comprehension-optional range, as some servers send it. */
	ATTR_XOR_MAPPED_ADDRESS_ALT = 0x8020,
	ATTR_SOFTWARE = 0x8022,
	ATTR_FINGERPRINT = 0x8028,
};

enum {
	FINGERPRINT_ATTR_LEN = 8, /* type, length, CRC-32 */
	FINGERPRINT_XOR = 0x5354554e,
	FAMILY_IPV4 = 1,
	FAMILY_IPV6 = 2,
};

static const uint8_t COOKIE[4] = {0x21, 0x12, 0xa4, 0x42};
/* Eight bytes, so the attribute needs no padding. */
static const char SOFTWARE[] = "tailnode";
enum { SOFTWARE_LEN = sizeof(SOFTWARE) - 1 };

_Static_assert(STUN_REQUEST_LEN == STUN_HEADER_LEN + 4 + SOFTWARE_LEN + FINGERPRINT_ATTR_LEN,
	       "request layout");

static const uint8_t V4_MAPPED[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static uint16_t load_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* CRC-32 (IEEE 802.3, reflected), bit by bit: it only ever covers a few
 * dozen bytes. */
static uint32_t crc32_ieee(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

static uint32_t fingerprint(const uint8_t *p, size_t len)
{
	return crc32_ieee(p, len) ^ FINGERPRINT_XOR;
}

bool stun_is(const uint8_t *b, size_t len)
{
	return len >= STUN_HEADER_LEN && (b[0] & 0xc0) == 0 && memcmp(b + 4, COOKIE, 4) == 0;
}

void stun_request(const uint8_t txid[static STUN_TXID_LEN], uint8_t out[static STUN_REQUEST_LEN])
{
	uint8_t *p = out;
	uint32_t fp;

	store_be16(p, 0x0001); /* binding request */
	store_be16(p + 2, STUN_REQUEST_LEN - STUN_HEADER_LEN);
	memcpy(p + 4, COOKIE, sizeof(COOKIE));
	memcpy(p + 8, txid, STUN_TXID_LEN);
	p += STUN_HEADER_LEN;
	store_be16(p, ATTR_SOFTWARE);
	store_be16(p + 2, SOFTWARE_LEN);
	memcpy(p + 4, SOFTWARE, SOFTWARE_LEN);
	p += 4 + SOFTWARE_LEN;
	/* The CRC covers everything before the FINGERPRINT attribute. */
	fp = fingerprint(out, (size_t)(p - out));
	store_be16(p, ATTR_FINGERPRINT);
	store_be16(p + 2, 4);
	p[4] = (uint8_t)(fp >> 24);
	p[5] = (uint8_t)(fp >> 16);
	p[6] = (uint8_t)(fp >> 8);
	p[7] = (uint8_t)fp;
}

/* Attribute iteration: type, value and length of the next attribute in
 * [*pos, end), values padded to 4. Returns 1, 0 at the end, or -EBADMSG
 * when a header or a padded value runs past end. */
static int next_attr(const uint8_t **pos, const uint8_t *end, uint16_t *type, const uint8_t **val,
		     size_t *val_len)
{
	size_t left = (size_t)(end - *pos), padded;

	if (left == 0)
		return 0;
	if (left < 4)
		return -EBADMSG;
	*type = load_be16(*pos);
	*val_len = load_be16(*pos + 2);
	padded = (*val_len + 3) & ~(size_t)3;
	if (padded > left - 4)
		return -EBADMSG;
	*val = *pos + 4;
	*pos += 4 + padded;
	return 1;
}

int stun_parse_binding_request(const uint8_t *b, size_t len, uint8_t txid[static STUN_TXID_LEN],
			       const char **why)
{
	const uint8_t *pos = b + STUN_HEADER_LEN, *end = b + len, *val;
	bool software_ok = false;
	uint16_t type, last = 0;
	uint32_t got_fp = 0, want_fp;
	size_t val_len;
	int ret;

	memset(txid, 0, STUN_TXID_LEN);
	if (!stun_is(b, len)) {
		*why = "response is not a STUN packet";
		return -EBADMSG;
	}
	if (load_be16(b) != 0x0001) {
		*why = "STUN request not a binding request";
		return -EBADMSG;
	}
	memcpy(txid, b + 8, STUN_TXID_LEN);
	/* Upstream walks every byte after the header here, not only the
	 * declared length, and so must we to agree on what is malformed. */
	while ((ret = next_attr(&pos, end, &type, &val, &val_len)) > 0) {
		last = type;
		if (type == ATTR_SOFTWARE && val_len == SOFTWARE_LEN &&
		    memcmp(val, SOFTWARE, SOFTWARE_LEN) == 0)
			software_ok = true;
		if (type == ATTR_FINGERPRINT && val_len == 4)
			got_fp = (uint32_t)val[0] << 24 | (uint32_t)val[1] << 16 |
				 (uint32_t)val[2] << 8 | val[3];
	}
	if (ret < 0) {
		*why = "STUN response has malformed attributes";
		return -EBADMSG;
	}
	if (!software_ok) {
		*why = "STUN request came from non-Tailscale software";
		return -EBADMSG;
	}
	if (last != ATTR_FINGERPRINT) {
		*why = "STUN request didn't end in fingerprint";
		return -EBADMSG;
	}
	/* len >= STUN_HEADER_LEN > FINGERPRINT_ATTR_LEN (stun_is). */
	want_fp = fingerprint(b, len - FINGERPRINT_ATTR_LEN);
	if (got_fp != want_fp) {
		*why = "STUN request had bogus fingerprint";
		return -EBADMSG;
	}
	return 0;
}

static size_t family_len(uint8_t family)
{
	switch (family) {
	case FAMILY_IPV4:
		return 4;
	case FAMILY_IPV6:
		return 16;
	}
	return 0;
}

/* MAPPED-ADDRESS and XOR-MAPPED-ADDRESS share their layout: reserved (1),
 * family (1), port (2), address (4 or 16; longer values are tolerated).
 * With xor_key (cookie ‖ txid) the port and address are XORed with it. */
static int read_address(const uint8_t *val, size_t val_len, const uint8_t *xor_key,
			struct stun_addr *out)
{
	uint8_t ip[16];
	size_t n;

	if (val_len < 4)
		return -EBADMSG;
	n = family_len(val[1]);
	if (n == 0 || val_len - 4 < n)
		return -EBADMSG;
	memcpy(ip, val + 4, n);
	out->port = load_be16(val + 2);
	if (xor_key) {
		out->port ^= load_be16(xor_key);
		for (size_t i = 0; i < n; i++)
			ip[i] ^= xor_key[i];
	}
	if (n == 4) {
		memcpy(out->ip, V4_MAPPED, sizeof(V4_MAPPED));
		memcpy(out->ip + sizeof(V4_MAPPED), ip, 4);
	} else {
		memcpy(out->ip, ip, 16); /* an IPv4-mapped one is the IPv4 address */
	}
	return 0;
}

int stun_parse_response(const uint8_t *b, size_t len, uint8_t txid[static STUN_TXID_LEN],
			struct stun_addr *addr, const char **why)
{
	uint8_t xor_key[4 + STUN_TXID_LEN];
	struct stun_addr xored = {0}, plain = {0};
	bool have_xored = false, have_plain = false;
	const uint8_t *pos, *end, *val;
	size_t attrs_len, val_len;
	uint16_t type;
	int ret;

	memset(txid, 0, STUN_TXID_LEN);
	memset(addr, 0, sizeof(*addr));
	if (!stun_is(b, len)) {
		*why = "response is not a STUN packet";
		return -EBADMSG;
	}
	memcpy(txid, b + 8, STUN_TXID_LEN);
	if (b[0] != 0x01 || b[1] != 0x01) {
		*why = "STUN packet is not a response";
		return -EBADMSG;
	}
	attrs_len = load_be16(b + 2);
	if (attrs_len > len - STUN_HEADER_LEN) {
		*why = "STUN response has malformed attributes";
		return -EBADMSG;
	}
	memcpy(xor_key, COOKIE, 4);
	memcpy(xor_key + 4, txid, STUN_TXID_LEN);
	pos = b + STUN_HEADER_LEN;
	end = pos + attrs_len; /* bytes past the declared length are not ours */
	/* The last address attribute of each kind counts, as upstream's. */
	while ((ret = next_attr(&pos, end, &type, &val, &val_len)) > 0) {
		if (type == ATTR_XOR_MAPPED_ADDRESS || type == ATTR_XOR_MAPPED_ADDRESS_ALT) {
			ret = read_address(val, val_len, xor_key, &xored);
			have_xored = true;
		} else if (type == ATTR_MAPPED_ADDRESS) {
			ret = read_address(val, val_len, NULL, &plain);
			have_plain = true;
		}
		if (ret < 0)
			break;
	}
	if (ret < 0 || (!have_xored && !have_plain)) {
		*why = "STUN response has malformed attributes";
		return -EBADMSG;
	}
	*addr = have_xored ? xored : plain;
	return 0;
}

int stun_check_response(const uint8_t *b, size_t len, const uint8_t want[static STUN_TXID_LEN],
			struct stun_addr *addr, const char **why)
{
	uint8_t txid[STUN_TXID_LEN];
	int ret = stun_parse_response(b, len, txid, addr, why);

	if (ret < 0)
		return ret;
	if (memcmp(txid, want, STUN_TXID_LEN) != 0) {
		memset(addr, 0, sizeof(*addr));
		*why = "STUN response for another transaction";
		return -ESRCH;
	}
	return 0;
}

size_t stun_response(const uint8_t txid[static STUN_TXID_LEN], const struct stun_addr *addr,
		     uint8_t out[static STUN_RESPONSE_MAX])
{
	bool v4 = memcmp(addr->ip, V4_MAPPED, sizeof(V4_MAPPED)) == 0;
	size_t n = v4 ? 4 : 16;
	const uint8_t *ip = v4 ? addr->ip + 12 : addr->ip;
	uint8_t *p = out;

	store_be16(p, 0x0101); /* binding success response */
	store_be16(p + 2, (uint16_t)(8 + n));
	memcpy(p + 4, COOKIE, 4);
	memcpy(p + 8, txid, STUN_TXID_LEN);
	p += STUN_HEADER_LEN;
	store_be16(p, ATTR_XOR_MAPPED_ADDRESS);
	store_be16(p + 2, (uint16_t)(4 + n));
	p[4] = 0;
	p[5] = v4 ? FAMILY_IPV4 : FAMILY_IPV6;
	store_be16(p + 6, addr->port ^ load_be16(COOKIE));
	for (size_t i = 0; i < n; i++)
		p[8 + i] = ip[i] ^ (i < 4 ? COOKIE[i] : txid[i - 4]);
	return STUN_HEADER_LEN + 8 + n;
}
