/* Test vectors for the unit tests: tests/vectors/<rel> (the directory in
 * $TSCNI_VECTORS_DIR, which ctest sets) loaded
 * with jansson, fields read and hex decoded. Every helper fails the test
 * (cmocka fail_msg) when the directory, the file, a field, its type, its hex
 * or its length is wrong: a vector test that cannot read its vectors must
 * not pass. Messages name the path or the field, never the field's bytes. */
#ifndef TSCNI_TESTS_UNIT_VECTORS_H
#define TSCNI_TESTS_UNIT_VECTORS_H

#include <ctype.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

/* Writes "$TSCNI_VECTORS_DIR/<rel>" into buf and returns buf. */
static inline char *vectors_path(char *buf, size_t n, const char *rel)
{
	const char *dir = getenv("TSCNI_VECTORS_DIR");
	int len;

	if (!dir || !*dir)
		fail_msg("TSCNI_VECTORS_DIR is not set; the vectors are required (%s)", rel);
	len = snprintf(buf, n, "%s/%s", dir, rel);
	if (len < 0 || (size_t)len >= n)
		fail_msg("vector path too long: %s/%s", dir, rel);
	return buf;
}

/* The whole JSON file at path; the caller json_decref()s it. */
static inline json_t *vectors_load_path(const char *path)
{
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);

	if (!root)
		fail_msg("cannot load %s: %s (line %d)", path, err.text, err.line);
	return root;
}

/* The whole file tests/vectors/<rel>, e.g. "tailscale/keys.json". */
static inline json_t *vectors_load(const char *rel)
{
	char path[4096];

	return vectors_load_path(vectors_path(path, sizeof(path), rel));
}

static inline json_t *vectors_get(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		fail_msg("vector field %s missing", key);
	return v;
}

static inline const char *vectors_str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(vectors_get(obj, key));

	if (!s)
		fail_msg("vector field %s is not a string", key);
	return s;
}

static inline uint64_t vectors_int(const json_t *obj, const char *key)
{
	json_t *v = vectors_get(obj, key);

	if (!json_is_integer(v))
		fail_msg("vector field %s is not an integer", key);
	return (uint64_t)json_integer_value(v);
}

/* Element i of the array field key. */
static inline json_t *vectors_at(const json_t *obj, const char *key, size_t i)
{
	json_t *v = json_array_get(vectors_get(obj, key), i);

	if (!v)
		fail_msg("vector field %s[%zu] missing", key, i);
	return v;
}

/* Decodes hex into out (at most cap bytes); returns the length in bytes.
 * what names the hex in a failure message (a field name, or "hex"). */
static inline size_t vectors__decode(const char *what, const char *hex, uint8_t *out, size_t cap)
{
	size_t len = strlen(hex);

	if (len % 2)
		fail_msg("%s: odd hex length %zu", what, len);
	if (len / 2 > cap)
		fail_msg("%s: %zu bytes, room for %zu", what, len / 2, cap);
	for (size_t i = 0; i < len / 2; i++) {
		char pair[3] = {hex[2 * i], hex[2 * i + 1], '\0'};

		if (!isxdigit((unsigned char)pair[0]) || !isxdigit((unsigned char)pair[1]))
			fail_msg("%s: bad hex digit at %zu", what, 2 * i);
		out[i] = (uint8_t)strtoul(pair, NULL, 16);
	}
	return len / 2;
}

/* Decodes hex into out (at most cap bytes); returns the length in bytes. */
static inline size_t vectors_unhex(const char *hex, uint8_t *out, size_t cap)
{
	return vectors__decode("hex", hex, out, cap);
}

/* Decodes hex into a new buffer (at least 1 byte allocated) the caller
 * free()s; *n is its length in bytes. */
static inline uint8_t *vectors__decode_alloc(const char *what, const char *hex, size_t *n)
{
	size_t cap = strlen(hex) / 2;
	uint8_t *out = malloc(cap + 1);

	assert_non_null(out);
	*n = vectors__decode(what, hex, out, cap);
	return out;
}

static inline uint8_t *vectors_unhex_alloc(const char *hex, size_t *n)
{
	return vectors__decode_alloc("hex", hex, n);
}

/* The hex field key decoded into out (at most cap bytes); returns its length. */
static inline size_t vectors_hex_var(const json_t *obj, const char *key, uint8_t *out, size_t cap)
{
	return vectors__decode(key, vectors_str(obj, key), out, cap);
}

/* The hex field key, exactly n bytes, decoded into out. */
static inline void vectors_hex(const json_t *obj, const char *key, uint8_t *out, size_t n)
{
	size_t got = vectors__decode(key, vectors_str(obj, key), out, n);

	if (got != n)
		fail_msg("%s: %zu bytes, want %zu", key, got, n);
}

/* The hex field key in a new buffer the caller free()s; *n is its length. */
static inline uint8_t *vectors_hex_alloc(const json_t *obj, const char *key, size_t *n)
{
	return vectors__decode_alloc(key, vectors_str(obj, key), n);
}

/* A 4-byte hex field read as a little-endian integer. */
static inline uint32_t vectors_le32(const json_t *obj, const char *key)
{
	uint8_t b[4];

	vectors_hex(obj, key, b, sizeof(b));
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline int vectors__visible(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* The entries of dir but dot files, in name order, into *ents; returns how
 * many (at least one). The caller frees each entry and the array. */
static inline int vectors_list(const char *dir, struct dirent ***ents)
{
	int n = scandir(dir, ents, vectors__visible, alphasort);

	if (n <= 0)
		fail_msg("cannot list %s (or it is empty)", dir);
	return n;
}

/* Calls fn(dir, name, arg) on every entry of every capture session folder
 * tests/vectors/captures/<session>, sessions and entries in name
 * order; dir is the session folder's path. Plain files directly under
 * captures/ (README.md) are passed over. */
static inline void vectors_each_capture(void (*fn)(const char *dir, const char *name, void *arg),
					void *arg)
{
	char base[4096], dir[4600];
	struct dirent **sessions, **ents;
	int n, nents;

	vectors_path(base, sizeof(base), "captures");
	n = vectors_list(base, &sessions);
	for (int s = 0; s < n; s++) {
		snprintf(dir, sizeof(dir), "%s/%s", base, sessions[s]->d_name);
		free(sessions[s]);
		nents = scandir(dir, &ents, vectors__visible, alphasort);
		if (nents < 0) /* not a folder */
			continue;
		for (int e = 0; e < nents; e++) {
			fn(dir, ents[e]->d_name, arg);
			free(ents[e]);
		}
		free(ents);
	}
	free(sessions);
}

#endif
