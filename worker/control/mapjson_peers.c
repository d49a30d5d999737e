/* A full map's Peers, parsed only where they changed (mapjson.h,
 * struct mapjson_peer_cache).
 *
 * The document is cut, not parsed, here: a scan that knows JSON's strings
 * and brackets finds the top-level "Peers" array and the extent of each of
 * its objects. Everything the scan does not expect (the key written with an
 * escape, twice, an array that is not one of objects, bytes after the end)
 * returns "not cut" and the caller parses the whole document as before, so
 * jansson alone decides what is valid. Each object's bytes are hashed
 * (BLAKE2b-128); an object whose bytes the cache saw in the last full list is
 * the node parsed then (nodes are immutable once shared: netmap.c's
 * writable() clones before a patch), the others are parsed one by one. */
#include "mapjson_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "mem.h"

enum { PEER_HASH_LEN = 16 };

struct peer_entry {
	uint8_t hash[PEER_HASH_LEN];
	size_t len;
	struct netmap_node *node; /* one reference */
};

struct mapjson_peer_cache {
	struct peer_entry *v; /* sorted by hash, then len */
	size_t n;
	uint64_t hits, misses; /* peers taken from v, and parsed (read by tests) */
};

struct mapjson_peer_cache *mapjson_peer_cache_new(void)
{
	return xcalloc(1, sizeof(struct mapjson_peer_cache));
}

static void entries_free(struct peer_entry *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		netmap_node_put(v[i].node);
	free(v);
}

void mapjson_peer_cache_free(struct mapjson_peer_cache *c)
{
	if (!c)
		return;
	entries_free(c->v, c->n);
	free(c);
}

void mapjson_peer_cache_trim(struct mapjson_peer_cache *c)
{
	size_t out = 0;

	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++) {
		if (atomic_load_explicit(&c->v[i].node->refs, memory_order_acquire) == 1)
			netmap_node_put(c->v[i].node);
		else
			c->v[out++] = c->v[i];
	}
	c->n = out;
	if (!out) {
		free(c->v);
		c->v = NULL;
	}
}

/* ---- The cut -------------------------------------------------------------- */

static size_t skip_ws(const char *s, size_t i, size_t len)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* s[i] is '"': the offset after the closing quote, or 0 when the string
 * does not end. */
static size_t skip_string(const char *s, size_t i, size_t len)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return 0;
}

/* s[i] starts a value: the offset after it, or 0 when it does not end. An
 * object or array ends where its brackets balance (which bracket closes
 * which is jansson's to check); a number or literal at the next delimiter. */
static size_t skip_value(const char *s, size_t i, size_t len)
{
	size_t depth = 0;

	if (i >= len)
		return 0;
	if (s[i] == '"')
		return skip_string(s, i, len);
	if (s[i] != '{' && s[i] != '[') {
		while (i < len && !strchr(",}] \t\n\r", s[i]))
			i++;
		return i;
	}
	while (i < len) {
		switch (s[i]) {
		case '"':
			i = skip_string(s, i, len);
			if (!i)
				return 0;
			continue;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth == 0)
				return i + 1;
			break;
		default:
			break;
		}
		i++;
	}
	return 0;
}

struct peers_cut {
	size_t lb, rb; /* the array's '[' and ']' */
	size_t n;
	size_t (*span)[2]; /* each object's start and end */
};

/* Finds the top-level "Peers" array of objects (at least one, at most
 * NETMAP_MAX_PEERS). true: cut holds it (the caller frees cut->span). */
static bool peers_cut(const char *s, size_t len, struct peers_cut *cut)
{
	size_t i = skip_ws(s, 0, len), cap = 0;
	bool found = false;

	memset(cut, 0, sizeof(*cut));
	if (i >= len || s[i] != '{')
		return false;
	i = skip_ws(s, i + 1, len);
	while (i < len && s[i] != '}') {
		size_t ks = i + 1, ke;

		if (s[i] != '"' || !(i = skip_string(s, i, len)))
			goto no;
		ke = i - 1;
		i = skip_ws(s, i, len);
		if (i >= len || s[i] != ':')
			goto no;
		i = skip_ws(s, i + 1, len);
		if (ke - ks == 5 && !memcmp(s + ks, "Peers", 5)) {
			if (found || i >= len || s[i] != '[')
				goto no;
			found = true;
			cut->lb = i;
			for (i = skip_ws(s, i + 1, len);; i = skip_ws(s, i + 1, len)) {
				size_t end;

				if (i >= len || s[i] != '{' || cut->n == NETMAP_MAX_PEERS ||
				    !(end = skip_value(s, i, len)))
					goto no;
				if (cut->n == cap) {
					cap = cap ? 2 * cap : 64;
					cut->span = xrealloc(cut->span, cap * sizeof(*cut->span));
				}
				cut->span[cut->n][0] = i;
				cut->span[cut->n][1] = end;
				cut->n++;
				i = skip_ws(s, end, len);
				if (i < len && s[i] == ']')
					break;
				if (i >= len || s[i] != ',')
					goto no;
			}
			cut->rb = i;
			i++;
		} else if (!(i = skip_value(s, i, len))) {
			goto no;
		}
		i = skip_ws(s, i, len);
		if (i < len && s[i] == ',')
			i = skip_ws(s, i + 1, len);
		else if (i >= len || s[i] != '}')
			goto no;
	}
	if (i >= len || skip_ws(s, i + 1, len) != len || !found)
		goto no;
	return true;
no:
	free(cut->span);
	memset(cut, 0, sizeof(*cut));
	return false;
}

/* ---- The cache ------------------------------------------------------------ */

static int cmp_entry(const void *a, const void *b)
{
	const struct peer_entry *x = a, *y = b;
	int c = memcmp(x->hash, y->hash, PEER_HASH_LEN);

	if (c)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

static struct netmap_node *cache_find(const struct mapjson_peer_cache *c,
				      const struct peer_entry *key)
{
	const struct peer_entry *e =
		c->n ? bsearch(key, c->v, c->n, sizeof(*c->v), cmp_entry) : NULL;

	return e ? e->node : NULL;
}

/* The peers of the cut, each from the cache or parsed; the cache then holds
 * this list. */
static int peers_from_cut(const char *json, const struct peers_cut *cut,
			  struct mapjson_peer_cache *c, struct mapjson_map_response *r,
			  const char **why)
{
	struct peer_entry *next = xcalloc(cut->n, sizeof(*next));
	struct netmap_node **v = xcalloc(cut->n, sizeof(*v));
	uint64_t hits = 0;

	for (size_t i = 0; i < cut->n; i++) {
		const char *p = json + cut->span[i][0];
		size_t len = cut->span[i][1] - cut->span[i][0];
		struct netmap_node *n;

		crypto_generichash(next[i].hash, PEER_HASH_LEN, (const unsigned char *)p, len, NULL,
				   0);
		next[i].len = len;
		n = cache_find(c, &next[i]);
		if (n) {
			v[i] = netmap_node_get(n);
			hits++;
		} else {
			json_t *o = mapjson__load(p, len, len, why);
			int ret = o ? mapjson__parse_node(o, &v[i], why) : -EBADMSG;

			json_decref(o);
			if (ret < 0) {
				mapjson__free_nodes(v, i);
				entries_free(next, i);
				return ret;
			}
		}
		next[i].node = netmap_node_get(v[i]);
	}
	qsort(next, cut->n, sizeof(*next), cmp_entry);
	entries_free(c->v, c->n);
	c->v = next;
	c->n = cut->n;
	c->hits += hits;
	c->misses += cut->n - hits;
	r->peers = v;
	r->n_peers = cut->n;
	return 0;
}

int mapjson_parse_map_response_cached(const char *json, size_t len, struct mapjson_peer_cache *c,
				      struct mapjson_map_response **out, const char **why)
{
	struct peers_cut cut;
	char *rest;
	size_t rlen;
	int ret;

	if (!c || len > MAPJSON_MAP_MAX || !peers_cut(json, len, &cut))
		return mapjson_parse_map_response(json, len, out, why);
	/* The document with an empty Peers array, parsed as before; then the
	 * peers. */
	rlen = len - (cut.rb - cut.lb - 1);
	rest = xmalloc(rlen);
	memcpy(rest, json, cut.lb + 1);
	memcpy(rest + cut.lb + 1, json + cut.rb, len - cut.rb);
	ret = mapjson_parse_map_response(rest, rlen, out, why);
	free(rest);
	if (ret == 0 && (*out)->n_peers) {
		/* Another Peers, its key written with an escape: jansson's
		 * reading of the whole document decides. */
		mapjson_map_response_free(*out);
		*out = NULL;
		free(cut.span);
		return mapjson_parse_map_response(json, len, out, why);
	}
	if (ret == 0) {
		ret = peers_from_cut(json, &cut, c, *out, why);
		if (ret < 0) {
			mapjson_map_response_free(*out);
			*out = NULL;
		}
	}
	free(cut.span);
	/* A bad document: the plain parse says what it says of it (the first
	 * bad field in its order, which the cut changed). */
	if (ret < 0)
		return mapjson_parse_map_response(json, len, out, why);
	return ret;
}
