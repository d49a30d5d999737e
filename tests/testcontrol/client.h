/* A small blocking ts2021 client for testing testcontrol without the
 * worker: GET /key, the Noise upgrade over HTTP or HTTPS, HTTP/2 requests
 * inside it (nghttp2 client session) and the map stream decoder. */
#ifndef TSCNI_TESTCONTROL_CLIENT_H
#define TSCNI_TESTCONTROL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct cl;

enum { CL_MAX_STREAMS = 16 };

/* GET /key over http or https (verified against ca). Fills pub from
 * "publicKey". 0 or -errno. */
int cl_get_key(const char *hostport, bool tls, const char *ca, uint8_t pub[static 32]);
/* A raw HTTP/1.1 exchange; returns the status (or -errno) and the body as a
 * NUL-terminated string the caller frees. timeout_ms bounds the wait. */
int cl_http(const char *hostport, const char *method, const char *path, const char *body,
	    char **resp, int timeout_ms);
/* Dials, upgrades and completes the Noise handshake as machine_priv with
 * capability version. 0 with *out set, or -errno: -EBADMSG for a bad or
 * failed handshake response, -ECONNREFUSED for a server error message,
 * -ETIMEDOUT, -EPROTO for a non-101 answer. */
int cl_connect(const char *hostport, bool tls, const char *ca, const uint8_t server_pub[static 32],
	       const uint8_t machine_priv[static 32], uint16_t version, struct cl **out);
void cl_free(struct cl *c);
/* Whether an early payload with a nodeKeyChallenge arrived (after the
 * first request was answered). */
bool cl_has_challenge(struct cl *c);
/* Starts POST path with a JSON body; returns the stream slot or -errno. */
int cl_post(struct cl *c, const char *path, json_t *body);
/* Waits for the whole response of slot; returns the HTTP status with the
 * body in *body (not NUL-terminated, *len bytes, owned by c), or -errno. */
int cl_wait(struct cl *c, int slot, const uint8_t **body, size_t *len, int timeout_ms);
/* Waits for the next map message on slot: 1 with *msg (caller decrefs),
 * 0 when the stream ended, -ETIMEDOUT, or -EBADMSG. */
int cl_map_next(struct cl *c, int slot, bool zstd, json_t **msg, int timeout_ms);
/* Reads and handles what is available for up to timeout_ms. */
int cl_pump(struct cl *c, int timeout_ms);

#endif
