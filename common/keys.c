/* X25519 keys and their "<prefix>:<hex>" text forms, as Go's types/key
 * writes and reads them. */
#include "keys.h"

#include <errno.h>
#include <string.h>

#include <sodium.h>

_Static_assert(KEY_LEN == crypto_scalarmult_curve25519_BYTES, "X25519 key size");
_Static_assert(KEY_HEX_LEN == 2 * KEY_LEN, "hex doubles the length");

void keys_clamp(uint8_t priv[static KEY_LEN])
{
	/* RFC 7748 decodeScalar25519, stored clamped as Go does so the
	 * persisted and the text form match upstream byte for byte. */
	priv[0] &= 248;
	priv[31] = (priv[31] & 127) | 64;
}

void keys_generate(uint8_t priv[static KEY_LEN])
{
	randombytes_buf(priv, KEY_LEN);
	keys_clamp(priv);
}

int keys_public(uint8_t pub[static KEY_LEN], const uint8_t priv[static KEY_LEN])
{
	if (crypto_scalarmult_curve25519_base(pub, priv) != 0) {
		memset(pub, 0, KEY_LEN);
		return -EINVAL;
	}
	return 0;
}

char *keys_to_text(const char *prefix, const uint8_t key[static KEY_LEN], char *buf, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t plen = strlen(prefix);
	char *p;

	/* A truncated key would read as a different (shorter, invalid) key:
	 * give an empty string instead. */
	if (n < plen + 1 + KEY_HEX_LEN + 1) {
		if (n)
			buf[0] = '\0';
		return buf;
	}
	memcpy(buf, prefix, plen);
	p = buf + plen;
	*p++ = ':';
	for (size_t i = 0; i < KEY_LEN; i++) {
		*p++ = digits[key[i] >> 4];
		*p++ = digits[key[i] & 15];
	}
	*p = '\0';
	return buf;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int keys_from_text(const char *prefix, const char *text, uint8_t key[static KEY_LEN])
{
	size_t plen = strlen(prefix);
	uint8_t tmp[KEY_LEN];
	const char *hex;
	int ret = -EINVAL;

	/* The prefix is matched exactly (Go rejects "NODEKEY:"); only the hex
	 * digits are case-insensitive. */
	if (strncmp(text, prefix, plen) != 0 || text[plen] != ':')
		goto out;
	hex = text + plen + 1;
	if (strnlen(hex, KEY_HEX_LEN + 1) != KEY_HEX_LEN)
		goto out;
	for (size_t i = 0; i < KEY_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			goto out;
		tmp[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(key, tmp, KEY_LEN);
	ret = 0;
out:
	/* Private keys pass through here too. */
	sodium_memzero(tmp, sizeof(tmp));
	return ret;
}
