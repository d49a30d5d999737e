/* interop: our DERP client (worker/magicsock/derp_conn.c) against genuine
 * upstream DERP (peerctl = tailscale v1.68.2 testcontrol with its
 * in-process DERP server over TLS with a self-signed certificate):
 *
 *   netns tsderp<pid>  (lo 10.99.0.1/32, nothing else)
 *   ┌───────────────────────────────────────────────────┐
 *   │ peerctl  DERP https://10.99.0.1:443 (self-signed) │
 *   │    ▲ ▲                                            │
 *   │    │ └─ client B ─┐  this test, one libuv loop    │
 *   │    └─── client A ─┘  A → B and B → A via DERP     │
 *   └───────────────────────────────────────────────────┘
 *
 * Also: the certificate pinned by its SHA-256 (DERPNode.CertName
 * "sha256-raw:<hex>", the digest taken with openssl when it is there), a
 * wrong pin refused, and chain verification refusing the self-signed
 * certificate. Skips with one line without root or TSCNI_PEERS_DIR. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sodium.h>
#include <uv.h>

#include "common/keys.h"
#include "tests/netns/fixture.h"
#include "worker/magicsock/derp_conn.h"

enum { WAIT_MS = 30000 };

static char ns[64];
static pid_t peerctl = -1;

struct client {
	struct derp_conn *conn;
	uint8_t priv[32], pub[32];
	bool up, closed;
	int down_err;
	unsigned int downs;
	uint8_t got_from[32];
	uint8_t got[64];
	size_t got_len;
	unsigned int packets;
};

static void on_packet(void *arg, const uint8_t src[static 32], const uint8_t *pkt, size_t len)
{
	struct client *c = arg;

	memcpy(c->got_from, src, 32);
	c->got_len = len < sizeof(c->got) ? len : sizeof(c->got);
	memcpy(c->got, pkt, c->got_len);
	c->packets++;
}

static void on_event(void *arg, const struct derp_event *ev)
{
	struct client *c = arg;

	if (ev->type == DERP_EV_SERVER_INFO)
		c->up = true;
}

static void on_down(void *arg, int err, const char *why, unsigned int retry_ms)
{
	struct client *c = arg;

	(void)retry_ms;
	fprintf(stderr, "derp_interop: down: %s\n", why);
	c->up = false;
	c->down_err = err;
	c->downs++;
}

static void on_closed(void *arg)
{
	((struct client *)arg)->closed = true;
}

/* A real CA bundle (the system's, when there is one): the self-signed
 * certificate must fail against it, not against an empty bundle. */
static uint8_t ca[1 << 20];
static size_t ca_len;

static void load_ca(void)
{
	FILE *f = fopen("/etc/ssl/certs/ca-certificates.crt", "rb");

	if (f) {
		ca_len = fread(ca, 1, sizeof(ca), f);
		fclose(f);
	}
	if (!ca_len) { /* any well-formed PEM will do */
		static const char none[] =
			"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";

		memcpy(ca, none, sizeof(none) - 1);
		ca_len = sizeof(none) - 1;
	}
}

static void client_open(uv_loop_t *loop, struct client *c, const char *cert_name, bool insecure)
{
	const char *why = NULL;
	struct derp_conn_config cfg = {
		.host = "10.99.0.1",
		.addr = "10.99.0.1",
		.port = 443,
		.cert_name = cert_name,
		.insecure_for_tests = insecure,
		.ca_pem = ca,
		.ca_pem_len = ca_len,
		.node_priv = c->priv,
		.preferred = true,
		.on_packet = on_packet,
		.on_event = on_event,
		.on_down = on_down,
		.arg = c,
	};

	keys_generate(c->priv);
	assert_int_equal(keys_public(c->pub, c->priv), 0);
	assert_int_equal(derp_conn_new(loop, &cfg, &c->conn, &why), 0);
}

static void client_close(uv_loop_t *loop, struct client *c)
{
	derp_conn_close(c->conn, on_closed, c);
	while (!c->closed)
		uv_run(loop, UV_RUN_ONCE);
}

static void on_tick(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until done(arg) or WAIT_MS pass; returns done(arg). */
static bool run_until(uv_loop_t *loop, bool (*done)(void *), void *arg)
{
	uint64_t end = uv_now(loop) + WAIT_MS;
	uv_timer_t tick;

	uv_timer_init(loop, &tick);
	while (!done(arg) && uv_now(loop) < end) {
		/* A tick keeps the loop from blocking past the deadline. */
		uv_timer_start(&tick, on_tick, 100, 0);
		uv_run(loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return done(arg);
}

static bool is_up(void *arg)
{
	return ((struct client *)arg)->up;
}

static bool has_packet(void *arg)
{
	return ((struct client *)arg)->packets > 0;
}

static bool went_down(void *arg)
{
	return ((struct client *)arg)->downs > 0;
}

static void test_exchange(void **state)
{
	uv_loop_t loop;
	struct client a = {0}, b = {0};
	static const char ab[] = "A to B through genuine DERP", ba[] = "and back";

	(void)state;
	uv_loop_init(&loop);
	client_open(&loop, &a, NULL, true);
	client_open(&loop, &b, NULL, true);
	assert_true(run_until(&loop, is_up, &a));
	assert_true(run_until(&loop, is_up, &b));
	assert_true(derp_conn_is_up(a.conn) && derp_conn_is_up(b.conn));
	assert_int_equal(derp_conn_send(a.conn, b.pub, (const uint8_t *)ab, sizeof(ab)), 0);
	assert_true(run_until(&loop, has_packet, &b));
	assert_memory_equal(b.got_from, a.pub, 32);
	assert_int_equal(b.got_len, sizeof(ab));
	assert_memory_equal(b.got, ab, sizeof(ab));
	assert_int_equal(derp_conn_send(b.conn, a.pub, (const uint8_t *)ba, sizeof(ba)), 0);
	assert_true(run_until(&loop, has_packet, &a));
	assert_int_equal(a.packets, 1);
	assert_int_equal(b.packets, 1);
	assert_memory_equal(a.got_from, b.pub, 32);
	assert_int_equal(a.got_len, sizeof(ba));
	assert_memory_equal(a.got, ba, sizeof(ba));
	assert_int_equal(a.downs + b.downs, 0);
	client_close(&loop, &a);
	client_close(&loop, &b);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static bool both_down(void *arg)
{
	struct client *c = arg;

	return went_down(&c[0]) && went_down(&c[1]);
}

static bool both_up(void *arg)
{
	struct client *c = arg;

	return c[0].up && c[1].up;
}

static int spawn_peerctl(void);
static void kill_peerctl(void);

/* The server goes away and comes back (with a new key): both clients see
 * the connection drop, reconnect by themselves, and packets flow again. */
static void test_reconnect(void **state)
{
	uv_loop_t loop;
	struct client c[2] = {0};
	static const char msg[] = "after the restart";

	(void)state;
	uv_loop_init(&loop);
	client_open(&loop, &c[0], NULL, true);
	client_open(&loop, &c[1], NULL, true);
	assert_true(run_until(&loop, both_up, c));
	kill_peerctl();
	assert_true(run_until(&loop, both_down, c));
	assert_false(derp_conn_is_up(c[0].conn));
	assert_int_equal(derp_conn_send(c[0].conn, c[1].pub, (const uint8_t *)msg, sizeof(msg)),
			 -ENOTCONN);
	assert_int_equal(spawn_peerctl(), 0);
	assert_true(run_until(&loop, both_up, c));
	assert_int_equal(derp_conn_send(c[0].conn, c[1].pub, (const uint8_t *)msg, sizeof(msg)), 0);
	assert_true(run_until(&loop, has_packet, &c[1]));
	assert_memory_equal(c[1].got_from, c[0].pub, 32);
	assert_memory_equal(c[1].got, msg, sizeof(msg));
	client_close(&loop, &c[0]);
	client_close(&loop, &c[1]);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* The leaf certificate's SHA-256 in hex, taken with the openssl tool from
 * inside the netns; false when the tool is not there. */
static bool server_cert_sha256(char hex[65])
{
	char cmd[512];
	FILE *p;
	bool ok;

	snprintf(cmd, sizeof(cmd),
		 "openssl s_client -connect 10.99.0.1:443 </dev/null 2>/dev/null | "
		 "openssl x509 -outform DER 2>/dev/null | sha256sum");
	if (access("/usr/bin/openssl", X_OK) != 0)
		return false;
	p = popen(cmd, "r");
	if (!p)
		return false;
	ok = fscanf(p, "%64[0-9a-f]", hex) == 1 && strlen(hex) == 64;
	pclose(p);
	return ok;
}

/* CertName "sha256-raw:<hex>" of the real certificate connects without a
 * chain; one bit off is refused before any DERP byte; and without the
 * test flag, the self-signed certificate fails chain verification. */
static void test_certificates(void **state)
{
	uv_loop_t loop;
	struct client pinned = {0}, wrong = {0}, strict = {0};
	char hex[65] = {0}, name[80];

	(void)state;
	uv_loop_init(&loop);
	if (server_cert_sha256(hex)) {
		snprintf(name, sizeof(name), "sha256-raw:%s", hex);
		client_open(&loop, &pinned, name, false);
		assert_true(run_until(&loop, is_up, &pinned));
		client_close(&loop, &pinned);
		hex[0] = hex[0] == '0' ? '1' : '0';
		snprintf(name, sizeof(name), "sha256-raw:%s", hex);
	} else {
		fprintf(stderr, "derp_interop: no openssl tool: only a wrong pin is tried\n");
		snprintf(name, sizeof(name), "sha256-raw:%064d", 0);
	}
	client_open(&loop, &wrong, name, false);
	assert_true(run_until(&loop, went_down, &wrong));
	assert_int_equal(wrong.down_err, -EPERM);
	assert_false(wrong.up);
	client_close(&loop, &wrong);
	client_open(&loop, &strict, NULL, false);
	assert_true(run_until(&loop, went_down, &strict));
	assert_int_equal(strict.down_err, -EPERM);
	assert_false(strict.up);
	client_close(&loop, &strict);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- the server ---- */

static void kill_peerctl(void);

static void stop_peerctl(void)
{
	kill_peerctl();
	if (ns[0])
		sh("ip netns del %s 2>/dev/null", ns);
}

/* Starts peerctl in a fresh netns and moves this process there. */
/* Starts peerctl in the netns and waits until it listens. */
static int spawn_peerctl(void)
{
	const char *dir = getenv("TSCNI_PEERS_DIR");
	char bin[512], line[256] = {0};
	int fds[2];
	FILE *out;

	snprintf(bin, sizeof(bin), "%s/bin/peerctl", dir);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	peerctl = fork();
	if (peerctl < 0)
		return -1;
	if (peerctl == 0) {
		enter_netns(ns);
		dup2(fds[1], 1);
		execl(bin, "peerctl", "-listen", "10.99.0.1:80", "-derp", "10.99.0.1:443", "-stun",
		      "10.99.0.1:3478", "-admin", "127.0.0.1:8081", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	out = fdopen(fds[0], "r");
	if (!out || !fgets(line, sizeof(line), out) || strncmp(line, "listening", 9) != 0) {
		fprintf(stderr, "derp_interop: peerctl did not start\n");
		if (out)
			fclose(out);
		return -1;
	}
	fclose(out); /* peerctl writes nothing more to stdout */
	return 0;
}

static void kill_peerctl(void)
{
	if (peerctl > 0) {
		kill(peerctl, SIGTERM);
		waitpid(peerctl, NULL, 0);
		peerctl = -1;
	}
}

/* A fresh netns with peerctl in it; this process moves there too. */
static int setup(void **state)
{
	int fd;

	(void)state;
	snprintf(ns, sizeof(ns), "tsderp%d", (int)getpid());
	if (sh("ip netns add %s && ip -n %s link set lo up && "
	       "ip -n %s addr add 10.99.0.1/32 dev lo",
	       ns, ns, ns) != 0 ||
	    spawn_peerctl() < 0)
		goto err;
	fd = open_ns(ns);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
		goto err;
	close(fd);
	return 0;
err:
	stop_peerctl();
	return -1;
}

static int teardown(void **state)
{
	(void)state;
	stop_peerctl();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange),
		cmocka_unit_test(test_certificates),
		cmocka_unit_test(test_reconnect),
	};
	const char *dir = getenv("TSCNI_PEERS_DIR");
	char bin[512];

	snprintf(bin, sizeof(bin), "%s/bin/peerctl", dir ? dir : "");
	if (!dir || !*dir || access(bin, X_OK) != 0 || geteuid() != 0) {
		printf("SKIP derp_interop: needs root and TSCNI_PEERS_DIR with bin/peerctl\n");
		return 77;
	}
	load_ca();
	if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	return cmocka_run_group_tests(tests, setup, teardown);
}
