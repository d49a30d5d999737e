/* One DERP connection (to one DERP node of one region) on a libuv loop:
 * TLS through libcurl in CONNECT_ONLY mode, the HTTP upgrade, then the DERP
 * client of derp.h. It reconnects by itself with backoff after any failure
 * (and when the server says it is restarting), and treats a connection from
 * which nothing arrived for DERP_RECV_TIMEOUT_MS (the server sends a
 * KeepAlive every DERP_KEEPALIVE_MS) as dead, as upstream's client does.
 *
 * Certificates: the CA bundle comes from memory. A DERPNode.CertName of the
 * form "sha256-raw:<hex>" pins the server's leaf certificate (SHA-256 of its
 * DER) instead of checking a chain; another CertName is the name the
 * certificate must carry instead of the host name; InsecureForTests checks
 * nothing (upstream's test DERP servers use self-signed certificates). */
#ifndef TSCNI_WORKER_MAGICSOCK_DERP_CONN_H
#define TSCNI_WORKER_MAGICSOCK_DERP_CONN_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "derp.h"

struct derp_conn;

/* Everything the server said but packets (DERP_EV_SERVER_INFO means the
 * connection is up). ev's pointers are valid during the call only. */
typedef void derp_conn_event_fn(void *arg, const struct derp_event *ev);
typedef void derp_conn_packet_fn(void *arg, const uint8_t src[static DERP_KEY_LEN],
				 const uint8_t *pkt, size_t len);
/* The connection went down (err < 0, why says what); a reconnect is
 * scheduled in retry_ms. derp_conn_err_is_bad_server(err) tells a server
 * that sent what no DERP server may send. */
typedef void derp_conn_down_fn(void *arg, int err, const char *why, unsigned int retry_ms);

/* Whether a connection went down because of the server's bytes: an
 * oversized or malformed frame (derp_client_next) or HTTP answer
 * (derp_http_parse_reply). Such a server is retried with the backoff of a
 * failed dial even though it had accepted us, so a server that greets
 * every client and then sends garbage is not redialled twice a second. */
static inline bool derp_conn_err_is_bad_server(int err)
{
	return err == -EMSGSIZE || err == -EPROTO || err == -EBADMSG;
}
typedef void derp_conn_closed_fn(void *arg);

struct derp_conn_config {
	const char *host;      /* DERPNode.HostName: TLS name and Host header */
	const char *addr;      /* the address to dial (DERPNode.IPv4/IPv6); NULL: resolve host */
	uint16_t port;	       /* DERPNode.DERPPort; 0 means 443 */
	const char *cert_name; /* DERPNode.CertName, or NULL */
	bool insecure_for_tests;
	const uint8_t *ca_pem; /* the CA bundle (PEM), borrowed: outlives the conn */
	size_t ca_pem_len;
	const uint8_t *node_priv; /* 32 bytes, copied */
	bool preferred;		  /* this is the node's home region */
	derp_conn_packet_fn *on_packet;
	derp_conn_event_fn *on_event;
	derp_conn_down_fn *on_down;
	void *arg;
};

/* Creates a connection on loop and starts connecting. Returns 0 or
 * -EINVAL (missing host or key, a sha256-raw CertName that is not 64 hex
 * digits), *out NULL on failure. The caller owns *out and ends it with
 * derp_conn_close(). */
int derp_conn_new(uv_loop_t *loop, const struct derp_conn_config *cfg, struct derp_conn **out,
		  const char **why);
/* Queues a packet for dst. Returns 0 (queued, or dropped by the server's
 * rate limit), -ENOTCONN (not connected now: the packet is dropped, as
 * upstream drops what it cannot send), -EMSGSIZE or -ENOBUFS. */
int derp_conn_send(struct derp_conn *c, const uint8_t dst[static DERP_KEY_LEN], const uint8_t *pkt,
		   size_t len);
/* Whether this is the home region; told to the server now and on every
 * reconnect. */
void derp_conn_set_preferred(struct derp_conn *c, bool preferred);
bool derp_conn_is_up(const struct derp_conn *c);
/* Closes everything; cb(arg) runs once the memory is freed (from the loop).
 * No other callback runs after this call. */
void derp_conn_close(struct derp_conn *c, derp_conn_closed_fn *cb, void *arg);

#endif
