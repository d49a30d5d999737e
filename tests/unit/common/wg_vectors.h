/* Loading wireguard.json (../shared/vectors/tailscale, produced by running
 * the genuine wireguard-go) for the wg_* unit tests. Every helper fails the
 * test when the file, a field or its length is missing: a vector test that
 * cannot find its vectors must not pass. Include after <cmocka.h>. */
#ifndef TSCNI_TESTS_UNIT_COMMON_WG_VECTORS_H
#define TSCNI_TESTS_UNIT_COMMON_WG_VECTORS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The whole file; the caller json_decref()s it. */
static inline json_t *wg_vectors_load(void)
{
	const char *dir = getenv("TSCNI_SHARED_DIR");
	char path[4096];
	json_error_t err;
	json_t *root;

	if (!dir || !*dir)
		fail_msg("TSCNI_SHARED_DIR is not set: cannot find wireguard.json");
	snprintf(path, sizeof(path), "%s/vectors/tailscale/wireguard.json", dir);
	root = json_load_file(path, 0, &err);
	if (!root)
		fail_msg("%s: %s (line %d)", path, err.text, err.line);
	return root;
}

static inline json_t *wg_vectors_get(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		fail_msg("wireguard.json: field %s missing", key);
	return v;
}

/* Decodes a hex field; returns its length in bytes (at most cap). */
static inline size_t wg_vectors_hex_var(json_t *obj, const char *key, uint8_t *out, size_t cap)
{
	const char *hex = json_string_value(wg_vectors_get(obj, key));
	size_t n;

	if (!hex)
		fail_msg("wireguard.json: field %s is not a string", key);
	n = strlen(hex);
	if (n % 2 || n / 2 > cap)
		fail_msg("wireguard.json: field %s has a bad length %zu", key, n);
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			fail_msg("wireguard.json: field %s is not hex", key);
		out[i] = (uint8_t)v;
	}
	return n / 2;
}

/* Decodes a hex field of exactly n bytes. */
static inline void wg_vectors_hex(json_t *obj, const char *key, uint8_t *out, size_t n)
{
	size_t got = wg_vectors_hex_var(obj, key, out, n);

	if (got != n)
		fail_msg("wireguard.json: field %s is %zu bytes, want %zu", key, got, n);
}

static inline uint64_t wg_vectors_int(json_t *obj, const char *key)
{
	json_t *v = wg_vectors_get(obj, key);

	if (!json_is_integer(v))
		fail_msg("wireguard.json: field %s is not an integer", key);
	return (uint64_t)json_integer_value(v);
}

static inline const char *wg_vectors_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(wg_vectors_get(obj, key));

	if (!s)
		fail_msg("wireguard.json: field %s is not a string", key);
	return s;
}

/* The message of capture index i (messages[] is in capture order). */
static inline json_t *wg_vectors_message(json_t *root, size_t i)
{
	json_t *msgs = wg_vectors_get(root, "messages");
	json_t *m = json_array_get(msgs, i);

	if (!m)
		fail_msg("wireguard.json: messages[%zu] missing", i);
	return m;
}

/* A 4-byte sender index as upstream reads its random bytes: little-endian. */
static inline uint32_t wg_vectors_index(json_t *obj, const char *key)
{
	uint8_t b[4];

	wg_vectors_hex(obj, key, b, sizeof(b));
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

#endif
