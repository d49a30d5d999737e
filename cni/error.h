/* CNI error objects: what the plugin prints on stdout when a verb fails. */
#ifndef TSCNI_CNI_ERROR_H
#define TSCNI_CNI_ERROR_H

#include <stddef.h>

/* The codes tailscale-cni uses (docs/cni-contract.md 6.2). */
enum cni_code {
	CNI_ERR_VERSION = 1,
	CNI_ERR_UNSUPPORTED_FIELD = 2,
	CNI_ERR_UNKNOWN_CONTAINER = 3,
	CNI_ERR_ENV = 4,
	CNI_ERR_IO = 5,
	CNI_ERR_DECODE = 6,
	CNI_ERR_CONFIG = 7,
	CNI_ERR_NETNS = 8,
	CNI_ERR_TRY_AGAIN = 11,
	CNI_ERR_NOT_READY = 50,
	CNI_ERR_DEGRADED = 51,
	CNI_ERR_IF_EXISTS = 100,
	CNI_ERR_PROTOCOL = 101,
	CNI_ERR_REFUSED = 102,
	CNI_ERR_CHECK = 103,
	CNI_ERR_KEY_REFUSED = 104,     /* the key source refused (supervisor/authkeys) */
	CNI_ERR_KEY_UNAVAILABLE = 105, /* the key source rate limits or is down */
	CNI_ERR_INTERNAL = 999,
};

enum cni_error_limits {
	CNI_ERR_MSG_LEN = 256,
	CNI_ERR_DETAILS_LEN = 2048,
};

/* One failure. code == 0 means "no error recorded". msg is short and fixed per
 * cause; details carries the variable part and may be empty. */
struct cni_error {
	unsigned int code;
	char msg[CNI_ERR_MSG_LEN];
	char details[CNI_ERR_DETAILS_LEN];
};

/* Records code, msg and printf-formatted details (details_fmt may be NULL) in
 * e, truncating both strings to their buffers. Returns -EINVAL so that a
 * failing function can end with `return error_set(...)`. */
int error_set(struct cni_error *e, unsigned int code, const char *msg, const char *details_fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Formats e as one JSON object followed by "\n":
 * {"cniVersion":V,"code":N,"msg":"...","details":"..."} (details left out
 * when empty). Bytes that are not valid UTF-8 are replaced so the output
 * always parses. Returns a malloc'd string (caller frees), *len set. */
char *error_format(const struct cni_error *e, const char *cni_version, size_t *len);

#endif
