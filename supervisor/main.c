/* tailscale-cni-supervisor: one per node (docs/design.md §2).
 *
 *   tailscale-cni-supervisor [run] [--state-dir DIR] [--socket PATH]
 *       [--node-name NAME] [--reconcile-interval SECONDS]
 *       [--log-level err|warn|info|debug] [--worker PATH] [--run-dir DIR]
 *       [--cgroup-parent NAME] [--uid-base UID] [--sandbox seccomp|none]
 *       [--host-mntns PATH]
 *       [--control-url URL [--auth-key-file PATH] [--ca-file PATH]
 *        [--cluster-name NAME]]
 *   tailscale-cni-supervisor status [--json] [--socket PATH]
 *   tailscale-cni-supervisor roll-workers [--socket PATH]
 *   tailscale-cni-supervisor --version | --help
 *
 * Startup refuses a private pid namespace (workers must outlive us), then
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
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "cni_server.h"
#include "hostname.h"
#include "log.h"
#include "mem.h"
#include "pods.h"
#include "resolver.h"
#include "state.h"
#include "supervisor.h"
#include "validate.h"
#include "workers.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tailscale-cni-supervisor [run] [options]\n"
		"       tailscale-cni-supervisor status [--json] [--socket PATH]\n"
		"       tailscale-cni-supervisor roll-workers [--socket PATH]\n"
		"       tailscale-cni-supervisor --version | --help\n"
		"options:\n"
		"  --state-dir DIR              state directory (default %s)\n"
		"  --socket PATH                CNI socket (default %s)\n"
		"  --node-name NAME             this node's name (default $NODE_NAME, else the "
		"host name)\n"
		"  --reconcile-interval SECONDS netns check period, 1..%d (default %d)\n"
		"  --log-level LEVEL            err, warn, info or debug (default info)\n"
		"  --worker PATH                the worker binary (default: %s next to this\n"
		"                               binary, then %s)\n"
		"  --run-dir DIR                workers' rendezvous sockets go to DIR/workers\n"
		"                               (default: the CNI socket's directory)\n"
		"  --cgroup-parent NAME         the zygote's cgroup parent (default "
		"tailscale-cni,\n"
		"                               \"\" for no placement)\n"
		"  --uid-base UID               worker uid = UID + slot (default %u)\n"
		"  --sandbox seccomp|none       the worker's syscall filter (none: tests only)\n"
		"  --host-mntns PATH            exec the zygote in this mount namespace (e.g.\n"
		"                               /proc/1/ns/mnt with hostPID: the host's); "
		"--worker\n"
		"                               then names the host's binary\n"
		"  --control-url URL            the control server, http(s)://host[:port]\n"
		"                               (default: none, pods get no tailnet addresses)\n"
		"  --auth-key-file PATH         pre-auth key for new nodes (root's, mode 0600 or\n"
		"                               0400)\n"
		"  --ca-file PATH               PEM CA certificates workers trust for https\n"
		"  --cluster-name NAME          hostname prefix: NAME-<namespace>-<pod>\n"
		"  --test-wg-timers R:J:A:T:K   tests only: the workers' WireGuard timers in ms\n"
		"                               (REKEY_AFTER, REJECT_AFTER, REKEY_ATTEMPT,\n"
		"                               REKEY_TIMEOUT, KEEPALIVE)\n",
		SUPERVISOR_STATE_DIR, SUPERVISOR_SOCKET, SUPERVISOR_RECONCILE_MAX_S,
		SUPERVISOR_RECONCILE_S, SUPERVISOR_WORKER, SUPERVISOR_WORKER_INSTALLED,
		(unsigned int)WORKERS_UID_BASE);
}

/* The worker binary when --worker is not given: beside this executable (an
 * installed pair, or the build tree's supervisor/ and worker/), else the
 * installed path. Absolute, resolved now: the zygote is re-exec'd from it. */
static int find_worker(char *out, size_t len)
{
	char self[PATH_MAX], *dir;
	const char *cands[3];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = '\0';
		dir = dirname(self);
		char a[PATH_MAX], b[PATH_MAX];

		snprintf(a, sizeof(a), "%s/%s", dir, SUPERVISOR_WORKER);
		snprintf(b, sizeof(b), "%s/../worker/%s", dir, SUPERVISOR_WORKER);
		cands[0] = a;
		cands[1] = b;
		cands[2] = SUPERVISOR_WORKER_INSTALLED;
		for (size_t i = 0; i < 3; i++) {
			char real[PATH_MAX];

			if (access(cands[i], X_OK) == 0 && realpath(cands[i], real) &&
			    strscpy(out, real, len) >= 0)
				return 0;
		}
	} else if (access(SUPERVISOR_WORKER_INSTALLED, X_OK) == 0) {
		return strscpy(out, SUPERVISOR_WORKER_INSTALLED, len) < 0 ? -ENAMETOOLONG : 0;
	}
	return -ENOENT;
}

/* "N" within [lo, hi] into *out; -EINVAL otherwise. */
static int parse_u32(const char *s, unsigned long lo, unsigned long hi, uint32_t *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* --test-wg-timers R:J:A:T:K (milliseconds): the same rules as
 * wg_device_new's (every one > 0, REJECT_AFTER at most the protocol's 180 s,
 * REKEY_AFTER below it, KEEPALIVE + REKEY_TIMEOUT below it too), checked
 * here so a bad set is named at start-up rather than by every worker. The
 * jitter is a third of REKEY_TIMEOUT, at most the protocol's 333 ms. */
static int parse_wg_timers(const char *s, uint32_t out[6])
{
	static const char *const names[5] = {"REKEY_AFTER", "REJECT_AFTER", "REKEY_ATTEMPT",
					     "REKEY_TIMEOUT", "KEEPALIVE"};
	const char *p = s;

	for (int i = 0; i < 5; i++) {
		char part[16];
		size_t len = strcspn(p, ":");

		if (len == 0 || len >= sizeof(part) || (i < 4 && p[len] != ':') ||
		    (i == 4 && p[len] != '\0')) {
			fprintf(stderr,
				"--test-wg-timers: '%s' is not R:J:A:T:K (five times in ms)\n", s);
			return -EINVAL;
		}
		memcpy(part, p, len);
		part[len] = '\0';
		if (parse_u32(part, 1, START_WG_TIMER_MAX_MS, &out[i]) < 0) {
			fprintf(stderr, "--test-wg-timers: %s '%s' is not 1..%d ms\n", names[i],
				part, START_WG_TIMER_MAX_MS);
			return -EINVAL;
		}
		p += len + 1;
	}
	if (out[0] >= out[1] || (uint64_t)out[4] + out[3] >= out[1]) {
		fprintf(stderr,
			"--test-wg-timers: REKEY_AFTER and KEEPALIVE + REKEY_TIMEOUT must be "
			"below REJECT_AFTER\n");
		return -EINVAL;
	}
	out[5] = out[3] / 3 < 333 ? out[3] / 3 : 333;
	if (!out[5])
		out[5] = 1;
	return 0;
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
		{"worker", required_argument, NULL, 'w'},
		{"run-dir", required_argument, NULL, 'R'},
		{"cgroup-parent", required_argument, NULL, 'c'},
		{"uid-base", required_argument, NULL, 'u'},
		{"sandbox", required_argument, NULL, 'S'},
		{"test-worker-proto", required_argument, NULL, 'P'},
		{"host-mntns", required_argument, NULL, 'M'},
		{"control-url", required_argument, NULL, 'C'},
		{"auth-key-file", required_argument, NULL, 'K'},
		{"ca-file", required_argument, NULL, 'A'},
		{"cluster-name", required_argument, NULL, 'N'},
		{"test-control-no-lite", no_argument, NULL, 'L'},
		{"test-wg-timers", required_argument, NULL, 'T'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *node = getenv("NODE_NAME");
	const char *worker = NULL, *run_dir = NULL;
	unsigned long v;
	char *end;
	int c;

	*cfg = (struct supervisor_config){
		.state_dir = SUPERVISOR_STATE_DIR,
		.socket_path = SUPERVISOR_SOCKET,
		.reconcile_interval_s = SUPERVISOR_RECONCILE_S,
		.log_level = LOG_INFO,
		.sandbox = "seccomp",
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
		case 'w':
			worker = optarg;
			break;
		case 'R':
			run_dir = optarg;
			break;
		case 'c':
			if (strchr(optarg, '/') || !strcmp(optarg, ".") || !strcmp(optarg, "..")) {
				fprintf(stderr, "--cgroup-parent: '%s' is not one path component\n",
					optarg);
				return -EINVAL;
			}
			cfg->cgroup_parent = optarg;
			break;
		case 'u':
			if (parse_u32(optarg, 1000, UINT32_MAX - WORKERS_UID_COUNT,
				      &cfg->uid_base) < 0) {
				fprintf(stderr, "--uid-base: '%s' is not a uid from 1000 to %lu\n",
					optarg, (unsigned long)(UINT32_MAX - WORKERS_UID_COUNT));
				return -EINVAL;
			}
			break;
		case 'S':
			if (strcmp(optarg, "seccomp") && strcmp(optarg, "none")) {
				fprintf(stderr, "--sandbox: '%s' is not seccomp or none\n", optarg);
				return -EINVAL;
			}
			cfg->sandbox = optarg;
			break;
		case 'P': {
			char lo[16], *colon = strchr(optarg, ':');

			if (!colon || (size_t)(colon - optarg) >= sizeof(lo) ||
			    (memcpy(lo, optarg, colon - optarg), lo[colon - optarg] = '\0',
			     parse_u32(lo, 1, 1000, &cfg->worker_proto_min) < 0) ||
			    parse_u32(colon + 1, cfg->worker_proto_min, 1000,
				      &cfg->worker_proto_max) < 0) {
				fprintf(stderr, "--test-worker-proto: '%s' is not MIN:MAX\n",
					optarg);
				return -EINVAL;
			}
			break;
		}
		case 'C':
			if ((strncmp(optarg, "http://", 7) && strncmp(optarg, "https://", 8)) ||
			    strlen(optarg) > URL_MAX_LEN || strchr(optarg, ' ')) {
				fprintf(stderr,
					"--control-url: '%s' is not an http:// or https:// URL of "
					"at most %d bytes\n",
					optarg, URL_MAX_LEN);
				return -EINVAL;
			}
			cfg->control_url = optarg;
			break;
		case 'L':
			cfg->test_control_no_lite = true;
			break;
		case 'T':
			if (parse_wg_timers(optarg, cfg->test_wg_timers_ms) < 0)
				return -EINVAL;
			break;
		case 'M':
			if (optarg[0] != '/' || access(optarg, R_OK) < 0) {
				fprintf(stderr,
					"--host-mntns: '%s' is not a readable absolute path (a "
					"mount namespace file such as /proc/1/ns/mnt)\n",
					optarg);
				return -EINVAL;
			}
			cfg->host_mntns = optarg;
			break;
		case 'K':
			cfg->auth_key_file = optarg;
			break;
		case 'A':
			cfg->ca_file = optarg;
			break;
		case 'N':
			if (!*optarg || strlen(optarg) > HOSTNAME_MAX) {
				fprintf(stderr, "--cluster-name: '%s' must be 1 to %d bytes\n",
					optarg, HOSTNAME_MAX);
				return -EINVAL;
			}
			cfg->cluster_name = optarg;
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
	if (!cfg->control_url && (cfg->auth_key_file || cfg->ca_file)) {
		fprintf(stderr, "--auth-key-file and --ca-file need --control-url\n");
		return -EINVAL;
	}
	if (cfg->control_url && !strncmp(cfg->control_url, "https://", 8) && !cfg->ca_file) {
		fprintf(stderr,
			"--control-url %s is https: --ca-file is needed (workers open "
			"no file, so they cannot read the system's certificates)\n",
			cfg->control_url);
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
	if (worker && cfg->host_mntns) {
		/* A path in the host's mount namespace: the zygote's exec
		 * checks it (workers_new logs a failure). */
		if (worker[0] != '/' ||
		    strscpy(cfg->worker_path, worker, sizeof(cfg->worker_path)) < 0) {
			fprintf(stderr, "--worker: '%s' is not an absolute path\n", worker);
			return -EINVAL;
		}
	} else if (worker) {
		if (worker[0] != '/' || access(worker, X_OK) < 0 ||
		    strscpy(cfg->worker_path, worker, sizeof(cfg->worker_path)) < 0) {
			fprintf(stderr, "--worker: '%s' is not an absolute path to an executable\n",
				worker);
			return -EINVAL;
		}
	} else if (find_worker(cfg->worker_path, sizeof(cfg->worker_path)) < 0) {
		fprintf(stderr,
			"no %s beside this binary nor at %s: install it or pass --worker PATH\n",
			SUPERVISOR_WORKER, SUPERVISOR_WORKER_INSTALLED);
		return -EINVAL;
	}
	if (run_dir) {
		if (strscpy(cfg->run_dir, run_dir, sizeof(cfg->run_dir)) < 0)
			run_dir = NULL;
	} else {
		char sock[PATH_MAX];

		strscpy(sock, cfg->socket_path, sizeof(sock));
		if (strscpy(cfg->run_dir, dirname(sock), sizeof(cfg->run_dir)) >= 0)
			run_dir = cfg->run_dir;
	}
	/* workers.h: the rendezvous path must fit a sockaddr_un. */
	if (!run_dir || cfg->run_dir[0] != '/' || strlen(cfg->run_dir) > 64) {
		fprintf(stderr, "--run-dir: an absolute path of at most 64 bytes is needed "
				"(default: the socket's directory)\n");
		return -EINVAL;
	}
	return 0;
}

/* The CA bundle: public, read before the zygote starts (workers_config
 * borrows it). 0, or -errno after a line naming the file and the fault. */
static int read_ca(const char *path, char **out, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	ssize_t n;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		log_err_r(ret, "--ca-file %s: cannot open", path);
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    st.st_size > CA_BUNDLE_MAX_LEN) {
		log_err("--ca-file %s: not a regular file of 1 to %d bytes", path,
			CA_BUNDLE_MAX_LEN);
		ret = -EINVAL;
		goto out;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	n = read(fd, buf, (size_t)st.st_size);
	if (n != st.st_size || !memmem(buf, (size_t)n, "-----BEGIN CERTIFICATE-----", 27)) {
		log_err("--ca-file %s: %s", path,
			n < 0 ? strerror(errno) : "no PEM certificate in it");
		ret = -EINVAL;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = (size_t)n;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return ret;
}

/* The pre-auth key, read after the zygote started (it must inherit no
 * secret). The file must be root's and readable by root only. The key
 * itself never reaches a log line. 0, or -errno after a line naming the
 * file and the fault. */
static int read_auth_key(const char *path, char **out)
{
	char buf[AUTHKEY_MAX_LEN + 2];
	struct stat st;
	ssize_t n;
	size_t len;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		ret = -errno;
		log_err_r(ret, "--auth-key-file %s: cannot open (a symlink is refused)", path);
		return ret;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		log_err("--auth-key-file %s: not a regular file", path);
		ret = -EINVAL;
		goto out;
	}
	if (st.st_uid != 0 || ((st.st_mode & 07777) != 0600 && (st.st_mode & 07777) != 0400)) {
		log_err("--auth-key-file %s: owned by uid %u with mode %04o; it must be owned by "
			"root with mode 0600 or 0400",
			path, (unsigned int)st.st_uid, (unsigned int)(st.st_mode & 07777));
		ret = -EPERM;
		goto out;
	}
	n = read(fd, buf, sizeof(buf));
	if (n < 0) {
		ret = -errno;
		log_err_r(ret, "--auth-key-file %s: read", path);
		goto out;
	}
	len = (size_t)n;
	while (len && isspace((unsigned char)buf[len - 1]))
		len--;
	if (len == 0 || len > AUTHKEY_MAX_LEN) {
		log_err("--auth-key-file %s: the key must be 1 to %d bytes", path, AUTHKEY_MAX_LEN);
		ret = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		if (!isgraph((unsigned char)buf[i])) {
			log_err("--auth-key-file %s: the key holds a space or control character "
				"(at byte %zu)",
				path, i);
			ret = -EINVAL;
			goto out;
		}
	}
	*out = sodium_malloc(len + 1);
	if (!*out) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(*out, buf, len);
	(*out)[len] = '\0';
out:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return ret;
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
	/* The workers live on: the next supervisor adopts them. */
	pods_detach_workers(sup->pods);
	resolver_free(sup->resolver);
	sup->resolver = NULL;
	workers_close(sup->workers);
	sup->workers = NULL;
	uv_close((uv_handle_t *)&s->term, NULL);
	uv_close((uv_handle_t *)&s->intr, NULL);
}

static int run(struct supervisor *sup)
{
	struct state_origin origin = {0};
	struct signals sig = {.sup = sup};
	struct workers_config wc = {0};
	const char *why = NULL;
	int ret;

	ret = workers_check_host_pidns(&why);
	if (ret < 0) {
		log_err_r(ret, "refusing to start: %s", why);
		return ret;
	}
	/* What identifies this node and this boot (no secret in there). */
	memcpy(origin.node_name, sup->cfg.node_name, sizeof(origin.node_name));
	ret = state_origin_detect(&origin);
	if (ret < 0) {
		log_err_r(ret, "detect machine id, boot id and node name");
		return ret;
	}

	/* Stage: the loop. */
	ret = uv_loop_init(&sup->loop);
	if (ret < 0) {
		log_err("libuv loop: %s", uv_strerror(ret));
		return ret;
	}

	/* Stage: the zygote, before any record or key is read. */
	wc.worker_path = sup->cfg.worker_path;
	wc.host_mntns = sup->cfg.host_mntns;
	wc.cgroup_parent = sup->cfg.cgroup_parent;
	wc.sandbox = sup->cfg.sandbox;
	wc.uid_base = sup->cfg.uid_base;
	wc.run_dir = sup->cfg.run_dir;
	wc.boot_id = origin.boot_id;
	wc.proto_min = sup->cfg.worker_proto_min;
	wc.proto_max = sup->cfg.worker_proto_max;
	wc.netop = pods_on_netop;
	wc.netop_arg = sup;
	if (sup->cfg.control_url) {
		if (sup->cfg.ca_file) {
			ret = read_ca(sup->cfg.ca_file, &sup->ca_pem, &sup->ca_pem_len);
			if (ret < 0)
				goto err_loop;
			wc.ca_pem = sup->ca_pem;
			wc.ca_pem_len = sup->ca_pem_len;
		}
		ret = resolver_new(&sup->loop, &sup->resolver);
		if (ret < 0)
			goto err_loop;
		wc.resolve = resolver_request;
		wc.resolve_arg = sup->resolver;
		wc.control_test_flags = sup->cfg.test_control_no_lite ? START_TEST_NO_LITE : 0;
		memcpy(wc.wg_timers_ms, sup->cfg.test_wg_timers_ms, sizeof(wc.wg_timers_ms));
	}
	ret = workers_new(&sup->loop, &wc, &sup->workers);
	if (ret < 0) {
		log_err_r(ret, "start the zygote from %s", sup->cfg.worker_path);
		goto err_loop;
	}
	log_info("zygote %d started from %s (sandbox %s, rendezvous in %s/workers)",
		 (int)workers_zygote_pid(sup->workers), sup->cfg.worker_path, sup->cfg.sandbox,
		 sup->cfg.run_dir);

	/* Stage: the auth key, now that the zygote cannot inherit it. */
	if (sup->cfg.auth_key_file) {
		if (sodium_init() < 0) {
			log_err("libsodium init failed");
			ret = -EIO;
			goto err_workers;
		}
		ret = read_auth_key(sup->cfg.auth_key_file, &sup->auth_key);
		if (ret < 0)
			goto err_workers;
		workers_set_auth_key(sup->workers, sup->auth_key);
	}
	if (sup->cfg.control_url)
		log_info("control plane %s (%s auth key, %s CA, cluster name %s)",
			 sup->cfg.control_url, sup->auth_key ? "with an" : "without an",
			 sup->ca_pem ? "with a" : "without a",
			 sup->cfg.cluster_name ? sup->cfg.cluster_name : "none");

	/* Stage: the state directory, locked. -EWOULDBLOCK (another
	 * supervisor holds the lock) is logged there. */
	ret = state_open(sup->cfg.state_dir, &origin, &sup->st);
	if (ret < 0 && ret != -EWOULDBLOCK)
		log_err_r(ret, "open the state directory %s", sup->cfg.state_dir);
	if (ret < 0)
		goto err_workers;

	/* Stage: the pod table, brought up to date before anyone can ask. */
	ret = pods_new(sup, &sup->pods);
	if (ret < 0)
		goto err_state;
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
	pods_detach_workers(sup->pods);
	resolver_free(sup->resolver);
	sup->resolver = NULL;
	workers_close(sup->workers);
	sup->workers = NULL;
	uv_run(&sup->loop, UV_RUN_DEFAULT);
err_pods:
	uv_run(&sup->loop, UV_RUN_DEFAULT); /* close callbacks of a failed stage */
	/* Workers keep running for the next supervisor: detach, then free. */
	if (sup->workers) {
		pods_detach_workers(sup->pods);
		resolver_free(sup->resolver);
		sup->resolver = NULL;
		workers_close(sup->workers);
		sup->workers = NULL;
		uv_run(&sup->loop, UV_RUN_DEFAULT);
	}
	pods_free(sup->pods);
	sup->pods = NULL;
err_state:
	state_close(sup->st);
	sup->st = NULL;
err_workers:
	resolver_free(sup->resolver);
	sup->resolver = NULL;
	if (sup->workers) {
		workers_close(sup->workers);
		sup->workers = NULL;
		uv_run(&sup->loop, UV_RUN_DEFAULT);
	}
err_loop:
	resolver_free(sup->resolver);
	sup->resolver = NULL;
	if (sup->auth_key)
		sodium_free(sup->auth_key);
	sup->auth_key = NULL;
	free(sup->ca_pem);
	sup->ca_pem = NULL;
	if (uv_loop_close(&sup->loop) < 0)
		log_warn("libuv loop still had handles at exit");
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
	if (argc > 1 && strcmp(argv[1], "roll-workers") == 0)
		return roll_workers_command(argc - 1, argv + 1);
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
