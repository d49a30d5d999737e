/* tailscale-cni-supervisor: one per node (DESIGN.md section 2).
 *
 *   tailscale-cni-supervisor [run] [--state-dir DIR] [--socket PATH]
 *       [--node-name NAME] [--reconcile-interval SECONDS]
 *       [--log-level err|warn|info|debug]
 *   tailscale-cni-supervisor status [--json] [--socket PATH]
 *   tailscale-cni-supervisor --version | --help
 *
 * Startup acquires one thing per stage and unwinds in reverse order: the
 * state directory (flock), the loop, the pod table (loaded, tombstones done,
 * reconciled once), the CNI socket (it exists only once all that is done, so
 * a socket that exists is a supervisor that is ready), the reconciler and
 * the signal handlers. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cni_server.h"
#include "log.h"
#include "mem.h"
#include "pods.h"
#include "state.h"
#include "supervisor.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tailscale-cni-supervisor [run] [options]\n"
		"       tailscale-cni-supervisor status [--json] [--socket PATH]\n"
		"       tailscale-cni-supervisor --version | --help\n"
		"options:\n"
		"  --state-dir DIR              state directory (default %s)\n"
		"  --socket PATH                CNI socket (default %s)\n"
		"  --node-name NAME             this node's name (default $NODE_NAME, else the "
		"host name)\n"
		"  --reconcile-interval SECONDS netns check period, 1..%d (default %d)\n"
		"  --log-level LEVEL            err, warn, info or debug (default info)\n",
		SUPERVISOR_STATE_DIR, SUPERVISOR_SOCKET, SUPERVISOR_RECONCILE_MAX_S,
		SUPERVISOR_RECONCILE_S);
}

/* Returns 0 to run, 1 for an exit with success (--help, --version), or
 * -EINVAL after printing what was wrong. */
static int parse_args(int argc, char **argv, struct supervisor_config *cfg)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 'd'},
		{"socket", required_argument, NULL, 's'},
		{"node-name", required_argument, NULL, 'n'},
		{"reconcile-interval", required_argument, NULL, 'r'},
		{"log-level", required_argument, NULL, 'l'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *node = getenv("NODE_NAME");
	unsigned long v;
	char *end;
	int c;

	*cfg = (struct supervisor_config){
		.state_dir = SUPERVISOR_STATE_DIR,
		.socket_path = SUPERVISOR_SOCKET,
		.reconcile_interval_s = SUPERVISOR_RECONCILE_S,
		.log_level = LOG_INFO,
	};
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			cfg->state_dir = optarg;
			break;
		case 's':
			cfg->socket_path = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		case 'r':
			errno = 0;
			v = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 1 ||
			    v > SUPERVISOR_RECONCILE_MAX_S) {
				fprintf(stderr,
					"--reconcile-interval: '%s' is not a number of seconds "
					"from 1 to %d\n",
					optarg, SUPERVISOR_RECONCILE_MAX_S);
				return -EINVAL;
			}
			cfg->reconcile_interval_s = (unsigned int)v;
			break;
		case 'l':
			if (log_level_parse(optarg, &cfg->log_level) < 0) {
				fprintf(stderr,
					"--log-level: '%s' is not one of err, warn, info, debug\n",
					optarg);
				return -EINVAL;
			}
			break;
		case 'V':
			printf("tailscale-cni-supervisor %s\n", TSCNI_VERSION);
			return 1;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	if (cfg->state_dir[0] != '/' || cfg->socket_path[0] != '/') {
		fprintf(stderr, "--state-dir and --socket must be absolute paths\n");
		return -EINVAL;
	}
	if (node && *node && strscpy(cfg->node_name, node, sizeof(cfg->node_name)) < 0) {
		fprintf(stderr, "node name longer than %zu bytes\n", sizeof(cfg->node_name) - 1);
		return -EINVAL;
	}
	return 0;
}

struct signals {
	struct supervisor *sup;
	uv_signal_t term;
	uv_signal_t intr;
};

/* SIGTERM, SIGINT: stop accepting, let what runs finish, and leave uv_run. */
static void on_signal(uv_signal_t *h, int signum)
{
	struct signals *s = h->data;
	struct supervisor *sup = s->sup;

	log_info("%s: shutting down", strsignal(signum));
	sup->health = TSCNI__HEALTH__HEALTH_NOT_READY;
	sup->health_reason = "shutting down";
	cni_server_close(sup->srv);
	sup->srv = NULL;
	pods_stop(sup->pods);
	uv_close((uv_handle_t *)&s->term, NULL);
	uv_close((uv_handle_t *)&s->intr, NULL);
}

static int run(struct supervisor *sup)
{
	struct state_origin origin = {0};
	struct signals sig = {.sup = sup};
	int ret;

	/* Stage: the state directory, locked. */
	memcpy(origin.node_name, sup->cfg.node_name, sizeof(origin.node_name));
	ret = state_origin_detect(&origin);
	if (ret < 0) {
		log_err_r(ret, "detect machine id, boot id and node name");
		return ret;
	}
	/* -EWOULDBLOCK (another supervisor holds the lock) is logged there. */
	ret = state_open(sup->cfg.state_dir, &origin, &sup->st);
	if (ret < 0 && ret != -EWOULDBLOCK)
		log_err_r(ret, "open the state directory %s", sup->cfg.state_dir);
	if (ret < 0)
		return ret;

	/* Stage: the loop. */
	ret = uv_loop_init(&sup->loop);
	if (ret < 0) {
		log_err("libuv loop: %s", uv_strerror(ret));
		goto err_state;
	}

	/* Stage: the pod table, brought up to date before anyone can ask. */
	ret = pods_new(sup, &sup->pods);
	if (ret < 0)
		goto err_loop;
	ret = pods_startup(sup->pods);
	if (ret < 0)
		goto err_pods;

	/* Stage: the CNI socket. */
	ret = cni_server_open(sup, sup->cfg.socket_path, &sup->srv);
	if (ret < 0)
		goto err_pods;

	/* Stage: the reconciler and the signals. */
	ret = pods_start(sup->pods);
	if (ret < 0) {
		log_err("reconcile timer: %s", uv_strerror(ret));
		goto err_server;
	}
	uv_signal_init(&sup->loop, &sig.term);
	uv_signal_init(&sup->loop, &sig.intr);
	sig.term.data = &sig;
	sig.intr.data = &sig;
	ret = uv_signal_start(&sig.term, on_signal, SIGTERM);
	if (ret == 0)
		ret = uv_signal_start(&sig.intr, on_signal, SIGINT);
	if (ret < 0) {
		log_err("signal handlers: %s", uv_strerror(ret));
		uv_close((uv_handle_t *)&sig.term, NULL);
		uv_close((uv_handle_t *)&sig.intr, NULL);
		goto err_server;
	}

	sup->health = TSCNI__HEALTH__HEALTH_READY;
	sup->health_reason = NULL;
	log_info("ready: %zu attachments, socket %s, state %s, node %s", pods_count(sup->pods),
		 sup->cfg.socket_path, sup->cfg.state_dir, state_get_origin(sup->st)->node_name);
	uv_run(&sup->loop, UV_RUN_DEFAULT);
	log_info("stopped");
	ret = 0;
	goto err_pods; /* the server and the timers are closed already */

err_server:
	cni_server_close(sup->srv);
	sup->srv = NULL;
	pods_stop(sup->pods);
	uv_run(&sup->loop, UV_RUN_DEFAULT);
err_pods:
	uv_run(&sup->loop, UV_RUN_DEFAULT); /* close callbacks of a failed stage */
	pods_free(sup->pods);
	sup->pods = NULL;
err_loop:
	if (uv_loop_close(&sup->loop) < 0)
		log_warn("libuv loop still had handles at exit");
err_state:
	state_close(sup->st);
	sup->st = NULL;
	return ret;
}

int main(int argc, char **argv)
{
	struct supervisor sup = {
		.health = TSCNI__HEALTH__HEALTH_NOT_READY,
		.health_reason = "starting",
	};
	int ret;

	if (argc > 1 && strcmp(argv[1], "status") == 0)
		return status_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "run") == 0) {
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	ret = parse_args(argc, argv, &sup.cfg);
	if (ret != 0)
		return ret > 0 ? 0 : 1;

	log_init("tailscale-cni-supervisor", sup.cfg.log_level);
	/* Files and sockets we create are ours alone (state 0600/0700, the
	 * socket is chmod'ed too, this closes the window before that). */
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	sup.started_unix = (uint64_t)time(NULL);
	return run(&sup) < 0 ? 1 : 0;
}
