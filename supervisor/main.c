/* tailscale-cni-supervisor: one per node (docs/design.md §2).
 *
 *   tailscale-cni-supervisor [run] [--state-dir DIR] [--socket PATH]
 *       [--node-name NAME] [--reconcile-interval SECONDS] [--identity-grace SECONDS]
 *       [--log-level err|warn|info|debug] [--worker PATH] [--run-dir DIR]
 *       [--cgroup-parent NAME] [--uid-base UID] [--sandbox seccomp|none]
 *       [--host-mntns PATH]
 *       [--control-url URL [--auth-key-file PATH] [--ca-file PATH] [--ca-file-add PATH]
 *        [--cluster-name NAME] [--udp-port-range LO-HI]
 *        [--endpoint-deny-iface GLOB]...] [--metrics-listen ADDR:PORT]
 *   tailscale-cni-supervisor status [--json] [--socket PATH]
 *   tailscale-cni-supervisor roll-workers [--socket PATH]
 *   tailscale-cni-supervisor install [--cni-bin-dir DIR] [--cni-conf-dir DIR]
 *       [--worker-dir DIR] [--source-dir DIR] [--plugin-conf FILE]
 *       [--mode auto|drop-in|conflist] [--wait SECONDS] [--watch]
 *   tailscale-cni-supervisor uninstall [--cni-bin-dir DIR] [--cni-conf-dir DIR]
 *       [--worker-dir DIR] [--mode auto|drop-in|conflist]
 *   tailscale-cni-supervisor --version | --help
 *
 * install and uninstall are installer/ (the DaemonSet's init container).
 *
 * Startup makes the process undumpable and raises its fd limit (proc_limits.h),
 * refuses a private pid namespace (workers must outlive us) and a socket path
 * another supervisor serves (cni_server_claim), then
 * acquires one thing per stage and unwinds in reverse order: the loop, the
 * zygote (started before any state or secret is read, so it inherits none),
 * the auth key (read only now, from a root-only file),
 * the state directory (flock), the pod table (loaded, workers re-adopted or
 * respawned, tombstones done, reconciled once), the CNI socket (it exists
 * only once all that is done, so a socket that exists is a supervisor that is
 * ready), the reconciler and the signal handlers. At exit the workers and the
 * zygote's children keep running: the next supervisor adopts them. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "ca_bundle.h"
#include "cni_server.h"
#include "installer.h"
#include "jobs.h"
#include "proc_limits.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "pods.h"
#include "netcheck.h"
#include "options.h"
#include "pool_watch.h"
#include "resolver.h"
#include "secret_file.h"
#include "state.h"
#include "supervisor.h"
#include "validate.h"
#include "workers.h"

struct signals {
	struct supervisor *sup;
	uv_signal_t term;
	uv_signal_t intr;
};

/* Lets the workers go (they keep running: the next supervisor adopts them).
 * The pods forget them first, so that no callback reaches a freed pod; the
 * resolver and the netcheck go before the workers they answer. NULL-safe. */
static void let_workers_go(struct supervisor *sup)
{
	pods_detach_workers(sup->pods);
	resolver_free(sup->resolver);
	sup->resolver = NULL;
	netcheck_free(sup->netcheck);
	sup->netcheck = NULL;
	workers_close(sup->workers);
	sup->workers = NULL;
}

/* Stops serving: the socket closes, the reconciler stops, what runs may
 * finish, and the workers are let go. */
static void shut_down(struct supervisor *sup)
{
	cni_server_close(sup->srv);
	sup->srv = NULL;
	metrics_serve_stop(sup);
	pool_watch_stop(sup->pool_watch);
	sup->pool_watch = NULL;
	/* An active watch would keep the loop running. */
	secret_watch_stop(sup->auth_key_watch);
	sup->auth_key_watch = NULL;
	pods_stop(sup->pods);
	/* ADDs waiting for a key have failed (pods_stop), jobs stop: the
	 * API's transfers end. */
	jobs_stop(sup->jobs);
	secret_watch_stop(sup->ak_secret_watch);
	sup->ak_secret_watch = NULL;
	authkeys_close(sup->authkeys);
	sup->authkeys = NULL;
	let_workers_go(sup);
}

/* SIGTERM, SIGINT: stop accepting, let what runs finish, and leave uv_run. */
static void on_signal(uv_signal_t *h, int signum)
{
	struct signals *s = h->data;
	struct supervisor *sup = s->sup;

	log_info("%s: shutting down", strsignal(signum));
	sup->health = TSCNI__HEALTH__HEALTH_NOT_READY;
	sup->health_reason = "shutting down";
	shut_down(sup);
	uv_close((uv_handle_t *)&s->term, NULL);
	uv_close((uv_handle_t *)&s->intr, NULL);
}

/* Before anything is acquired: workers must outlive us (no private pid
 * namespace), and what identifies this node and this boot (no secret in
 * there). */
/* libuv's threadpool: 16 threads unless UV_THREADPOOL_SIZE says otherwise
 * (read at the first uv_queue_work). Its work mostly waits (fsync, the RTNL
 * lock, netns switches, name look-ups), not computes: with libuv's 4, a
 * burst of ADDs queued behind each other's fsyncs and behind the workers'
 * route sets (bench add_latency.sh: the spans' queue and tun). */
static void pool_size(void)
{
	char n[16];

	if (getenv("UV_THREADPOOL_SIZE"))
		return;
	snprintf(n, sizeof(n), "%d", SUPERVISOR_POOL_THREADS);
	setenv("UV_THREADPOOL_SIZE", n, 0);
}

static int check_host(struct supervisor *sup, struct state_origin *origin)
{
	const char *why = NULL;
	int ret;

	ret = workers_check_host_pidns(&why);
	if (ret < 0) {
		log_err_r(ret, "refusing to start: %s", why);
		return ret;
	}
	memcpy(origin->node_name, sup->cfg.node_name, sizeof(origin->node_name));
	ret = state_origin_detect(origin);
	if (ret < 0)
		log_err_r(ret, "detect machine id, boot id and node name");
	return ret;
}

/* Stage: the zygote, before any record or key is read, with what the workers
 * borrow: the CA bundle, the resolver and the netcheck (with a control plane). On failure
 * what this stage made is freed here. */
static int start_workers(struct supervisor *sup, const struct state_origin *origin)
{
	struct workers_config wc = {
		.worker_path = sup->cfg.worker_path,
		.host_mntns = sup->cfg.host_mntns,
		.cgroup_parent = sup->cfg.cgroup_parent,
		.sandbox = sup->cfg.sandbox,
		.uid_base = sup->cfg.uid_base,
		.run_dir = sup->cfg.run_dir,
		.boot_id = origin->boot_id,
		.proto_min = sup->cfg.worker_proto_min,
		.proto_max = sup->cfg.worker_proto_max,
		.netop = pods_on_netop,
		.routes = pods_on_route_set,
		.netop_arg = sup,
	};
	const char *ca_src;
	int ret;

	if (sup->cfg.control_url) {
		/* Public, read before the zygote starts (workers_config
		 * borrows it). */
		if (!sup->cfg.ca_file && !sup->cfg.ca_file_add && !ca_bundle_default_path() &&
		    strncmp(sup->cfg.control_url, "https://", 8) != 0) {
			/* Plain http control still works; DERP over TLS cannot. */
			log_warn("no system CA bundle and no --ca-file: workers trust no CA "
				 "(DERP over TLS fails)");
		} else {
			ret = ca_bundle_load(sup->cfg.ca_file, sup->cfg.ca_file_add, &sup->ca_pem,
					     &sup->ca_pem_len, &ca_src);
			if (ret < 0)
				return ret;
			log_info("workers trust the CA certificates of %s%s%s (%zu bytes)", ca_src,
				 sup->cfg.ca_file_add ? " and " : "",
				 sup->cfg.ca_file_add ? sup->cfg.ca_file_add : "", sup->ca_pem_len);
			wc.ca_pem = sup->ca_pem;
			wc.ca_pem_len = sup->ca_pem_len;
		}
		ret = resolver_new(&sup->loop, &sup->resolver);
		if (ret < 0)
			goto err_ca;
		wc.resolve = resolver_request;
		wc.resolve_arg = sup->resolver;
		ret = netcheck_new(&sup->loop, workers_netcheck_report, &sup->netcheck);
		if (ret < 0)
			goto err_resolver;
		wc.derpmap = netcheck_request;
		wc.derpmap_arg = sup->netcheck;
		wc.control_test_flags = sup->cfg.test_control_no_lite ? START_TEST_NO_LITE : 0;
		wc.endpoint_deny = sup->cfg.endpoint_deny;
		wc.n_endpoint_deny = sup->cfg.n_endpoint_deny;
		memcpy(wc.wg_timers_ms, sup->cfg.test_wg_timers_ms, sizeof(wc.wg_timers_ms));
	}
	ret = workers_new(&sup->loop, &wc, &sup->workers);
	if (ret < 0) {
		log_err_r(ret, "start the zygote from %s", sup->cfg.worker_path);
		goto err_resolver;
	}
	log_info("zygote %d started from %s (sandbox %s, rendezvous in %s/workers)",
		 (int)workers_zygote_pid(sup->workers), sup->cfg.worker_path, sup->cfg.sandbox,
		 sup->cfg.run_dir);
	return 0;

err_resolver:
	netcheck_free(sup->netcheck);
	sup->netcheck = NULL;
	resolver_free(sup->resolver);
	sup->resolver = NULL;
err_ca:
	free(sup->ca_pem);
	sup->ca_pem = NULL;
	return ret;
}

/* let_workers_go, then the loop runs their close callbacks. */
static void release_workers(struct supervisor *sup)
{
	bool running = sup->workers != NULL;

	let_workers_go(sup);
	if (running)
		uv_run(&sup->loop, UV_RUN_DEFAULT);
}

/* Undoes start_workers. */
static void free_workers(struct supervisor *sup)
{
	release_workers(sup);
	free(sup->ca_pem);
	sup->ca_pem = NULL;
}

/* A rotated --auth-key-file (a Secret updated by kubelet): registrations
 * from now on present the new key. Workers copy the key they are spawned
 * with, so the old one can go at once. */
static void auth_key_changed(void *arg, char *key)
{
	struct supervisor *sup = arg;

	workers_set_auth_key(sup->workers, key);
	if (sup->auth_key)
		sodium_free(sup->auth_key);
	sup->auth_key = key;
}

/* Stage, before the zygote starts: the secrets given in the environment
 * (--auth-key-env, the key source's -env option) are taken out of it. The
 * zygote is exec'd with the supervisor's environment, and its
 * /proc/<pid>/environ, which every worker forked from it shares, would show
 * them. */
static int take_env_secrets(struct supervisor *sup)
{
	const char *flag_file, *file, *flag_env, *env;
	int ret;

	if (sodium_init() < 0) {
		log_err("libsodium init failed");
		return -EIO;
	}
	if (!sup->cfg.auth_key_file && sup->cfg.auth_key_env) {
		ret = secret_env_read("--auth-key-env", sup->cfg.auth_key_env, AUTHKEY_MAX_LEN,
				      &sup->auth_key);
		if (ret < 0)
			return ret;
	}
	if (authkeys_config_kind(&sup->cfg.ak) == AUTHKEYS_STATIC)
		return 0;
	authkeys_config_secret(&sup->cfg.ak, &flag_file, &file, &flag_env, &env);
	if (file)
		return 0;
	return secret_env_read(flag_env, env, AUTHKEYS_SECRET_MAX, &sup->ak_env_secret);
}

/* Stage: the auth key from its file, now that the zygote cannot inherit it
 * (one from the environment is already taken). */
static int load_auth_key(struct supervisor *sup)
{
	int ret;

	if (sup->cfg.auth_key_file) {
		ret = secret_file_read("--auth-key-file", sup->cfg.auth_key_file, AUTHKEY_MAX_LEN,
				       &sup->auth_key);
		if (ret < 0)
			return ret;
		ret = secret_watch_start(&sup->loop, "--auth-key-file", sup->cfg.auth_key_file,
					 AUTHKEY_MAX_LEN, AUTH_KEY_WATCH_MS, sup->auth_key,
					 auth_key_changed, sup, &sup->auth_key_watch);
		if (ret < 0)
			log_warn_r(ret,
				   "--auth-key-file %s: not watched: a new key needs a restart",
				   sup->cfg.auth_key_file);
	}
	if (sup->auth_key) /* from the file, or the environment (take_env_secrets) */
		workers_set_auth_key(sup->workers, sup->auth_key);
	if (sup->cfg.control_url)
		log_info("control plane %s (%s auth key, %s CA, cluster name %s)",
			 sup->cfg.control_url, sup->auth_key ? "with an" : "without an",
			 sup->ca_pem ? "with a" : "without a",
			 sup->cfg.cluster_name ? sup->cfg.cluster_name : "none");
	return 0;
}

static void ak_secret_changed(void *arg, char *secret)
{
	struct supervisor *sup = arg;

	authkeys_set_secret(sup->authkeys, secret);
}

/* Stage: the key source's API (authkeys.h) with its secret, read like the
 * auth key, and the device cleanup runner (jobs.h). */
static int start_authkeys(struct supervisor *sup)
{
	const char *flag_file, *file, *flag_env, *env;
	char *secret = NULL;
	int ret;

	ret = jobs_new(sup, &sup->jobs);
	if (ret < 0) {
		log_err_r(ret, "the device cleanup runner");
		return ret;
	}
	if (authkeys_config_kind(&sup->cfg.ak) == AUTHKEYS_STATIC)
		return 0;
	authkeys_config_secret(&sup->cfg.ak, &flag_file, &file, &flag_env, &env);
	if (file) {
		ret = secret_file_read(flag_file, file, AUTHKEYS_SECRET_MAX, &secret);
		if (ret < 0)
			return ret;
	} else {
		secret = sup->ak_env_secret; /* take_env_secrets' */
		sup->ak_env_secret = NULL;
	}
	ret = authkeys_new(&sup->loop, &sup->cfg.ak, secret, &sup->authkeys);
	if (ret < 0) {
		sodium_free(secret);
		log_err_r(ret, "the key source");
		return ret;
	}
	/* The API trusts what workers trust when the operator chose it;
	 * else libcurl's default, the same system bundle. */
	if (sup->ca_pem && (sup->cfg.ca_file || sup->cfg.ca_file_add))
		authkeys_set_ca(sup->authkeys, sup->ca_pem, sup->ca_pem_len);
	/* secret is the authkeys' now, alive until the watch is stopped. */
	if (file &&
	    secret_watch_start(&sup->loop, flag_file, file, AUTHKEYS_SECRET_MAX, AUTH_KEY_WATCH_MS,
			       secret, ak_secret_changed, sup, &sup->ak_secret_watch) < 0)
		log_warn("%s %s: not watched: a new secret needs a restart", flag_file, file);
	if (authkeys_config_kind(&sup->cfg.ak) == AUTHKEYS_OAUTH)
		log_info("auth keys: minted per pod through the Tailscale API %s (tailnet %s, "
			 "OAuth client %s, tags %s)",
			 sup->cfg.ak.api_url ? sup->cfg.ak.api_url : "https://api.tailscale.com",
			 sup->cfg.ak.tailnet ? sup->cfg.ak.tailnet : "-",
			 sup->cfg.ak.oauth_client_id, sup->cfg.ak.key_tags);
	else
		log_info("auth keys: minted per pod through Headscale %s (user %s, tags %s)",
			 sup->cfg.ak.hs_url, sup->cfg.ak.hs_user,
			 sup->cfg.ak.key_tags ? sup->cfg.ak.key_tags : "none");
	return 0;
}

static void free_auth_key(struct supervisor *sup)
{
	secret_watch_stop(sup->ak_secret_watch);
	sup->ak_secret_watch = NULL;
	if (sup->jobs || sup->authkeys) {
		jobs_close(sup->jobs);
		sup->jobs = NULL;
		authkeys_close(sup->authkeys);
		sup->authkeys = NULL;
		uv_run(&sup->loop, UV_RUN_NOWAIT); /* their close callbacks */
	}
	secret_watch_stop(sup->auth_key_watch);
	sup->auth_key_watch = NULL;
	if (sup->auth_key)
		sodium_free(sup->auth_key);
	sup->auth_key = NULL;
	if (sup->ak_env_secret)
		sodium_free(sup->ak_env_secret);
	sup->ak_env_secret = NULL;
}

static void close_state(struct supervisor *sup)
{
	state_close(sup->st);
	sup->st = NULL;
}

/* Undoes the pod table: the close callbacks of a failed stage run first,
 * then the workers are let go while the pods still exist, then the pods go. */
static void free_pods(struct supervisor *sup)
{
	uv_run(&sup->loop, UV_RUN_DEFAULT);
	if (sup->workers)
		release_workers(sup);
	pods_free(sup->pods);
	sup->pods = NULL;
}

/* Stage: the reconciler and the signal handlers. */
static int start_signals(struct supervisor *sup, struct signals *sig)
{
	int ret;

	ret = pods_start(sup->pods);
	if (ret < 0) {
		log_err("reconcile timer: %s", uv_strerror(ret));
		return ret;
	}
	uv_signal_init(&sup->loop, &sig->term);
	uv_signal_init(&sup->loop, &sig->intr);
	sig->term.data = sig;
	sig->intr.data = sig;
	ret = uv_signal_start(&sig->term, on_signal, SIGTERM);
	if (ret == 0)
		ret = uv_signal_start(&sig->intr, on_signal, SIGINT);
	if (ret < 0) {
		log_err("signal handlers: %s", uv_strerror(ret));
		uv_close((uv_handle_t *)&sig->term, NULL);
		uv_close((uv_handle_t *)&sig->intr, NULL);
	}
	return ret;
}

static void close_loop(struct supervisor *sup)
{
	if (uv_loop_close(&sup->loop) < 0)
		log_warn("libuv loop still had handles at exit");
}

/* Acquires every stage (see the top of this file) and unwinds in reverse
 * when one fails: 0 with the supervisor ready to serve, or a negative errno
 * with nothing left behind. */
static int start(struct supervisor *sup, struct signals *sig)
{
	struct state_origin origin = {0};
	int ret;

	ret = check_host(sup, &origin);
	if (ret < 0)
		return ret;
	ret = sup->sock_lock = cni_server_claim(sup->cfg.socket_path);
	if (ret < 0)
		return ret;
	pool_size();
	ret = uv_loop_init(&sup->loop);
	if (ret < 0) {
		log_err("libuv loop: %s", uv_strerror(ret));
		goto err_claim;
	}
	ret = take_env_secrets(sup);
	if (ret == 0)
		ret = start_workers(sup, &origin);
	if (ret < 0) {
		free_auth_key(sup);
		goto err_loop;
	}
	ret = load_auth_key(sup);
	if (ret == 0)
		ret = start_authkeys(sup);
	if (ret < 0) {
		free_auth_key(sup);
		goto err_workers;
	}
	/* Stage: the state directory, locked. -EWOULDBLOCK (another
	 * supervisor holds the lock) is logged there. */
	ret = state_open(sup->cfg.state_dir, &origin, &sup->st);
	if (ret < 0 && ret != -EWOULDBLOCK)
		log_err_r(ret, "open the state directory %s", sup->cfg.state_dir);
	if (ret < 0)
		goto err_auth_key;
	/* Stage: the pod table, brought up to date before anyone can ask. */
	ret = pods_new(sup, &sup->pods);
	if (ret < 0)
		goto err_state;
	ret = pods_startup(sup->pods);
	if (ret < 0)
		goto err_pods;
	/* Stage: the metrics port (when asked for), so that an address in
	 * use stops the start before the CNI socket says "ready". */
	ret = metrics_serve_start(sup);
	if (ret < 0)
		goto err_pods;
	/* Stage: the CNI socket. */
	ret = cni_server_open(sup, sup->cfg.socket_path, &sup->srv);
	if (ret < 0)
		goto err_metrics;
	ret = start_signals(sup, sig);
	if (ret < 0)
		goto err_server;
	return 0;

err_server:
	shut_down(sup);
	uv_run(&sup->loop, UV_RUN_DEFAULT);
err_metrics:
	metrics_serve_stop(sup);
err_pods:
	free_pods(sup);
err_state:
	close_state(sup);
err_auth_key:
	free_auth_key(sup);
err_workers:
	free_workers(sup);
err_loop:
	close_loop(sup);
err_claim:
	close(sup->sock_lock);
	return ret;
}

/* After uv_run: on_signal has closed the server and let the workers go;
 * the rest goes in the order start's unwinding uses. */
static void stop(struct supervisor *sup)
{
	jobs_close(sup->jobs); /* closed by free_pods' run of the loop */
	sup->jobs = NULL;
	free_pods(sup);
	close_state(sup);
	free_auth_key(sup);
	free_workers(sup);
	close_loop(sup);
	close(sup->sock_lock);
}

static int run(struct supervisor *sup)
{
	struct signals sig = {.sup = sup};
	int ret;

	ret = start(sup, &sig);
	if (ret < 0)
		return ret;
	sup->health = TSCNI__HEALTH__HEALTH_READY;
	sup->health_reason = NULL;
	ret = pool_watch_start(sup, &sup->pool_watch);
	if (ret < 0)
		log_warn_r(ret,
			   "the threadpool watch did not start: health will not show a stuck pool");
	log_info("ready: %zu attachments, socket %s, state %s, node %s", pods_count(sup->pods),
		 sup->cfg.socket_path, sup->cfg.state_dir, state_get_origin(sup->st)->node_name);
	uv_run(&sup->loop, UV_RUN_DEFAULT);
	log_info("stopped");
	stop(sup);
	return 0;
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
	if (argc > 1 && strcmp(argv[1], "roll-workers") == 0)
		return roll_workers_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "install") == 0)
		return installer_install_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "uninstall") == 0)
		return installer_uninstall_command(argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "help") == 0) {
		options_usage_short(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "run") == 0) {
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	/* The daemon only, before any jansson allocation: its allocations are
	 * wiped when freed (API answers hold tokens and keys). Not for the
	 * subcommands above, which hold no secret and hand jansson's buffers
	 * to realloc() (installer/conflist.c), which a sized allocator breaks. */
	authkeys_json_wipe_init();
	ret = options_parse(argc, argv, &sup.cfg);
	if (ret != 0)
		return ret > 0 ? 0 : 1;

	log_init("tailscale-cni-supervisor", sup.cfg.log_level);
	if (proc_caps_check() < 0 || proc_limits_apply() < 0)
		return 1;
	/* Files and sockets we create are ours alone (state 0600/0700, the
	 * socket is chmod'ed too, this closes the window before that). */
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	sup.started_unix = (uint64_t)time(NULL);
	sup.metrics = metrics_new();
	ret = run(&sup) < 0 ? 1 : 0;
	metrics_free(sup.metrics);
	return ret;
}
