/* X25519 keys (machine, node, disco) and their text forms. */
#ifndef TSCNI_COMMON_KEYS_H
#define TSCNI_COMMON_KEYS_H

#include <stddef.h>
#include <stdint.h>

enum key_limits { KEY_LEN = 32, KEY_HEX_LEN = 64 };

/* 32 random bytes, clamped as X25519 (and Go's clamp25519Private) wants. */
void keys_generate(uint8_t priv[static KEY_LEN]);
void keys_clamp(uint8_t priv[static KEY_LEN]);
/* pub = X25519(priv, basepoint). Returns 0 or -EINVAL. */
int keys_public(uint8_t pub[static KEY_LEN], const uint8_t priv[static KEY_LEN]);
/* prefix + ":" + 64 lowercase hex, e.g. "nodekey:ab..": buf needs
 * strlen(prefix) + 66 bytes. Returns buf. */
char *keys_to_text(const char *prefix, const uint8_t key[static KEY_LEN], char *buf, size_t n);
/* Parses "<prefix>:<64 hex>" (hex case-insensitive). 0 or -EINVAL. */
int keys_from_text(const char *prefix, const char *text, uint8_t key[static KEY_LEN]);

#endif
