/* What the mapjson*.c files share, and nothing outside this folder
 * includes: the bounded field readers every message's parser is made of,
 * and the parsers of the parts that a MapResponse holds. One file a
 * message:
 *   mapjson.c           time and endpoint text, field readers, the loader;
 *   mapjson_node.c      Node (self and peers);
 *   mapjson_derp.c      DERPMap;
 *   mapjson_dns.c       DNSConfig;
 *   mapjson_map.c       MapResponse, its deltas, packet filters, PingRequest;
 *   mapjson_register.c  RegisterResponse;
 *   mapjson_request.c   RegisterRequest, MapRequest, Hostinfo (built).
 *
 * Field readers: absent and null read as the zero value, as Go's decoder
 * leaves them. Every reader fails with -EBADMSG and *why = bad, a static
 * string naming the field. */
#ifndef TSCNI_WORKER_CONTROL_MAPJSON_INTERNAL_H
#define TSCNI_WORKER_CONTROL_MAPJSON_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "mapjson.h"

/* Go's zero time.Time, 0001-01-01T00:00:00Z, in Unix seconds. */
#define GO_ZERO_TIME (-62135596800LL)

/* Go's time.Time MarshalJSON for a whole-second UTC time. */
void mapjson__format_time(int64_t t, char *buf, size_t n);

bool mapjson__absent(const json_t *v);
/* Absent or null: "" (the caller frees *out in every case it is set). */
int mapjson__get_string(const json_t *o, const char *field, char **out, const char *bad,
			const char **why);
int mapjson__get_bool(const json_t *o, const char *field, bool *out, const char *bad,
		      const char **why);
int mapjson__get_int64(const json_t *o, const char *field, int64_t min, int64_t max, int64_t *out,
		       const char *bad, const char **why);
int mapjson__get_int(const json_t *o, const char *field, int min, int max, int *out,
		     const char *bad, const char **why);
int mapjson__get_key(const json_t *o, const char *field, const char *prefix,
		     uint8_t key[static KEY_LEN], bool *has, const char *bad, const char **why);
int mapjson__get_time(const json_t *o, const char *field, int64_t *out, bool *has, const char *bad,
		      const char **why);
int mapjson__get_array(const json_t *o, const char *field, size_t max, const json_t **arr,
		       const char *bad, const char **why);
int mapjson__get_object(const json_t *o, const char *field, size_t max, const json_t **obj,
			const char *bad, const char **why);
int mapjson__get_strings(const json_t *o, const char *field, size_t max, char ***out, size_t *n,
			 const char *bad, const char **why);
void mapjson__free_strv(char **v, size_t n);
/* An array of "ip:port" strings (at most its caller's bound). */
int mapjson__endpoints_from(const json_t *arr, struct netmap_endpoint **out, size_t *n,
			    const char *bad, const char **why);
/* A decimal NodeID / region map key up to max. 0 or -EINVAL. */
int mapjson__parse_id_key(const char *k, int64_t max, int64_t *out);
/* A JSON object document of at most max bytes, or NULL with *why. */
json_t *mapjson__load(const char *json, size_t len, size_t max, const char **why);

/* Parts of a MapResponse: 0 and *out (the caller's reference), or -EBADMSG
 * with *why and *out NULL. */
int mapjson__parse_node(const json_t *o, struct netmap_node **out, const char **why);
int mapjson__get_nodes(const json_t *o, const char *field, struct netmap_node ***out, size_t *n,
		       const char *bad, const char **why);
void mapjson__free_nodes(struct netmap_node **v, size_t n);
int mapjson__parse_derpmap(const json_t *o, struct netmap_derpmap **out, const char **why);
int mapjson__parse_dns(const json_t *o, struct netmap_dns **out, const char **why);

#endif
