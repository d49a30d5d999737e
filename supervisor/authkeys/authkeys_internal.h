/* Shared between the files of supervisor/authkeys only. */
#ifndef TSCNI_AUTHKEYS_INTERNAL_H
#define TSCNI_AUTHKEYS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "authkeys.h"

int authkeys__parse_tags(const char *list, char tags[][AUTHKEYS_TAG_MAX + 1], size_t *n,
			 const char **why);
int authkeys__parse_expiry(const char *s, unsigned int *out);
int authkeys__parse_bool(const char *s, bool dflt, bool *out);

/* Parsers of the APIs' answers (apijson.c; fuzz/fuzz_apijson.c). Each takes
 * the raw body (len bytes, at most the caller's bound) and returns 0, or
 * -EBADMSG with *why naming what is wrong. Strings that are secrets come
 * back sodium_malloc'ed. */

/* OAuth token answer {access_token, expires_in}. */
int apijson_token(const char *body, size_t len, char **token, unsigned int *expires_in,
		  const char **why);
/* A minted key: Tailscale {key} or Headscale {preAuthKey: {key}}. */
int apijson_key(const char *body, size_t len, bool headscale, char **key, const char **why);
/* An error answer's words ({message}, {error, error_description}, Huma's
 * {title, detail}), escaped into out; "" when there are none. */
void apijson_error_text(const char *body, size_t len, char *out, size_t n);
/* A device list ({devices: [...]}, Headscale {nodes: [...]}): the id of the
 * one whose node key is nodekey ("nodekey:<hex>"): 1 with id, 0 when none. */
int apijson_find_device(const char *body, size_t len, bool headscale, const char *nodekey, char *id,
			size_t idlen, const char **why);
/* One device ({nodeKey, ...}, Headscale {node: {id, nodeKey}}): its node key
 * into out. */
int apijson_device_nodekey(const char *body, size_t len, bool headscale, char *out, size_t n,
			   const char **why);
/* One device's key expiry (Unix s): Tailscale {expires, keyExpiryDisabled},
 * Headscale {node: {expiry}}; 0 when the key does not expire (disabled,
 * absent, null, Go's zero time). */
int apijson_device_expiry(const char *body, size_t len, bool headscale, int64_t *expiry,
			  const char **why);

#endif
