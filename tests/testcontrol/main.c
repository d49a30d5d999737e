/* testcontrol: a Tailscale control server for tests and the local demo.
 *
 *   testcontrol --state-dir DIR --http 127.0.0.1:PORT --https 127.0.0.1:PORT
 *               --admin 127.0.0.1:PORT [--api 127.0.0.1:PORT [--api-tls]] [--derp HOST:PORT]...
 *               [--policy FILE] [--min-capver N] [--keepalive-ms N]
 *
 * Port 0 picks a free port. Once every listener is up, one line
 *   listening http=H:P https=H:P admin=H:P ca=PATH [api=H:P] [derp=H:P,...]
 * goes to stdout (tests parse it). Logs go to stderr. --api serves the
 * Tailscale API subset (/api/v2) and the Headscale API fake (/api/v1) over
 * plain HTTP, or with --api-tls over TLS with the https listener's
 * certificate (the ca= file); see README.md. */
#include "tc.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "mem.h"

volatile int tc_signalled;

static void on_signal(int sig)
{
	tc_signalled = sig;
}

static void usage(void)
{
	fprintf(stderr, "usage: testcontrol --state-dir DIR --http ADDR:PORT --https ADDR:PORT "
			"--admin ADDR:PORT [--api ADDR:PORT [--api-tls]] [--derp HOST:PORT]... "
			"[--policy FILE] "
			"[--min-capver N] [--keepalive-ms N] [--log-level LEVEL]\n");
}

static int parse_int(const char *text, long min, long max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < min || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static void server_free(struct tc_server *s)
{
	while (s->nodes) {
		struct tc_node *n = s->nodes;

		s->nodes = n->next;
		control_node_free(n);
	}
	while (s->keys) {
		struct tc_key *k = s->keys;

		s->keys = k->next;
		json_decref(k->tags);
		sodium_memzero(k, sizeof(*k));
		free(k);
	}
	json_decref(s->policy);
	json_decref(s->dns);
	api_free(s->api);
	if (s->ssl_ctx)
		SSL_CTX_free(s->ssl_ctx);
	for (int k = 0; k < TC_LISTENERS; k++)
		if (s->lfd[k] >= 0)
			close(s->lfd[k]);
	for (int i = 0; i < s->nderp; i++) {
		if (!s->derp[i].down)
			derp_region_close(s, &s->derp[i]);
		sodium_memzero(s->derp[i].priv, sizeof(s->derp[i].priv));
	}
	sodium_memzero(s->noise_priv, sizeof(s->noise_priv));
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 's'},
		{"http", required_argument, NULL, 'h'},
		{"https", required_argument, NULL, 't'},
		{"admin", required_argument, NULL, 'a'},
		{"api", required_argument, NULL, 'A'},
		{"api-tls", no_argument, NULL, 'T'},
		{"derp", required_argument, NULL, 'd'},
		{"policy", required_argument, NULL, 'p'},
		{"min-capver", required_argument, NULL, 'm'},
		{"keepalive-ms", required_argument, NULL, 'k'},
		{"log-level", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0},
	};
	struct tc_server s = {.lfd = {-1, -1, -1, -1},
			      .keepalive_ms = TC_KEEPALIVE_MS,
			      .derp_keepalive_ms = TC_DERP_KEEPALIVE_MS};
	const char *listen_at[TC_LISTENERS] = {NULL}, *why = NULL;
	struct sigaction sa = {.sa_handler = on_signal};
	enum log_level level = LOG_INFO;
	int opt, ret = 1;

	log_init("testcontrol", LOG_INFO);
	strscpy(s.domain, "fake-control.example.net", sizeof(s.domain));
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			s.state_dir = optarg;
			break;
		case 'h':
			listen_at[TC_CONN_HTTP] = optarg;
			break;
		case 't':
			listen_at[TC_CONN_HTTPS] = optarg;
			break;
		case 'a':
			listen_at[TC_CONN_ADMIN] = optarg;
			break;
		case 'A':
			listen_at[TC_CONN_API] = optarg;
			break;
		case 'T':
			s.api_tls = true;
			break;
		case 'd': {
			const char *colon = strrchr(optarg, ':');
			struct tc_derp_region *r = &s.derp[s.nderp];

			if (s.nderp == TC_DERP_REGIONS_MAX) {
				fprintf(stderr, "testcontrol: at most %d --derp regions\n",
					TC_DERP_REGIONS_MAX);
				return 2;
			}
			if (!colon || (size_t)(colon - optarg) >= sizeof(r->host) ||
			    colon == optarg || parse_int(colon + 1, 0, 65535, &r->port) < 0) {
				fprintf(stderr, "testcontrol: --derp wants HOST:PORT, got %s\n",
					optarg);
				return 2;
			}
			/* "[v6]:port": the brackets go. */
			if (optarg[0] == '[' && colon > optarg + 1 && colon[-1] == ']')
				memcpy(r->host, optarg + 1, (size_t)(colon - optarg - 2));
			else
				memcpy(r->host, optarg, (size_t)(colon - optarg));
			r->id = TC_DERP_REGION + s.nderp++;
			r->lfd = r->ufd = -1;
			r->down = true; /* until derp_region_open */
			break;
		}
		case 'p':
			s.policy_path = optarg;
			break;
		case 'm':
			if (parse_int(optarg, 0, 65535, &s.min_capver) < 0) {
				fprintf(stderr, "testcontrol: --min-capver wants 0..65535\n");
				return 2;
			}
			break;
		case 'k':
			if (parse_int(optarg, 100, 3600 * 1000, &s.keepalive_ms) < 0) {
				fprintf(stderr, "testcontrol: --keepalive-ms wants 100..3600000\n");
				return 2;
			}
			break;
		case 'l':
			if (log_level_parse(optarg, &level) < 0) {
				fprintf(stderr, "testcontrol: bad --log-level %s\n", optarg);
				return 2;
			}
			log_set_level(level);
			break;
		default:
			usage();
			return 2;
		}
	}
	if (!s.state_dir || !listen_at[0] || !listen_at[1] || !listen_at[2] || optind != argc) {
		usage();
		return 2;
	}
	if (sodium_init() < 0) {
		log_err("sodium_init failed");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (mkdir(s.state_dir, 0700) < 0 && errno != EEXIST) {
		log_err_r(-errno, "mkdir %s", s.state_dir);
		return 1;
	}
	if (store_noise_key(&s) < 0 || store_load(&s) < 0 || store_tls(&s) < 0)
		goto out;
	/* Nodes come back offline; endpoints stay until they send new ones. */
	if (s.policy_path) {
		json_error_t jerr;
		json_t *policy = json_load_file(s.policy_path, 0, &jerr);

		if (!policy) {
			log_err("%s: line %d: %s", s.policy_path, jerr.line, jerr.text);
			goto out;
		}
		ret = control_policy_load(&s, policy, &why);
		json_decref(policy);
		if (ret < 0) {
			log_err("%s: %s", s.policy_path, why);
			ret = 1;
			goto out;
		}
		ret = 1;
	}
	s.api = api_new();
	for (int k = 0; k < TC_LISTENERS; k++) {
		int r;

		if (!listen_at[k])
			continue; /* --api is optional */
		r = net_listen(&s, (enum tc_conn_kind)k, listen_at[k]);
		if (r < 0) {
			log_err_r(r, "listen on %s", listen_at[k]);
			goto out;
		}
	}
	for (int i = 0; i < s.nderp; i++) {
		int r;

		keys_generate(s.derp[i].priv);
		keys_public(s.derp[i].pub, s.derp[i].priv);
		r = derp_region_open(&s, &s.derp[i]);
		if (r < 0) {
			log_err_r(r, "DERP region %d on %s:%d", s.derp[i].id, s.derp[i].host,
				  s.derp[i].port);
			goto out;
		}
	}
	printf("listening http=%s https=%s admin=%s ca=%s", s.addr[TC_CONN_HTTP],
	       s.addr[TC_CONN_HTTPS], s.addr[TC_CONN_ADMIN], s.ca_path);
	if (listen_at[TC_CONN_API])
		printf(" api=%s", s.addr[TC_CONN_API]);
	for (int i = 0; i < s.nderp; i++)
		printf(strchr(s.derp[i].host, ':') ? "%s[%s]:%d" : "%s%s:%d",
		       i ? "," : " derp=", s.derp[i].host, s.derp[i].port);
	printf("\n");
	fflush(stdout);
	log_info("listening http=%s https=%s admin=%s", s.addr[TC_CONN_HTTP], s.addr[TC_CONN_HTTPS],
		 s.addr[TC_CONN_ADMIN]);
	ret = net_run(&s) < 0 ? 1 : 0;
	log_info("stopping (signal %d)", tc_signalled);
out:
	server_free(&s);
	return ret;
}
