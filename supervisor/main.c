/* tailscale-cni-supervisor: one per node (docs/design.md §2).
 *
 *   tailscale-cni-supervisor [run] [--state-dir DIR] [--socket PATH]
 *       [--node-name NAME] [--reconcile-interval SECONDS] [--identity-grace SECONDS]
 *       [--log-level err|warn|info|debug] [--worker PATH] [--run-dir DIR]
 *       [--cgroup-parent NAME] [--uid-base UID] [--sandbox seccomp|none]
 *       [--host-mntns PATH]
 *       [--control-url URL [--auth-key-file PATH] [--ca-file PATH]
 *        [--cluster-name NAME] [--udp-port-range LO-HI]
 *        [--endpoint-deny-iface GLOB]...]
 *   tailscale-cni-supervisor status [--json] [--socket PATH]
 *   tailscale-cni-supervisor roll-workers [--socket PATH]
 *   tailscale-cni-supervisor --version | --help
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
#include <getopt.h>
#include <libgen.h>
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

#include "cni_server.h"
#include "hostname.h"
#include "proc_limits.h"
#include "log.h"
#include "mem.h"
#include "pods.h"
#include "netcheck.h"
#include "pool_watch.h"
#include "resolver.h"
#include "state.h"
#include "supervisor.h"
#include "validate.h"
#include "workers.h"

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

/* What the command line gives: the configuration, and three values that are
 * checked only once every option is read (parse_args). */
struct args {
	struct supervisor_config cfg;
	const char *node, *worker, *run_dir;
};

/* An option's handler: 0 when val is taken, 1 for an exit with success
 * (--help, --version), or -EINVAL after a line on stderr. */
typedef int opt_fn(struct args *a, const char *val);

static int opt_reconcile(struct args *a, const char *val)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(val, &end, 10);
	if (errno || end == val || *end || v < 1 || v > SUPERVISOR_RECONCILE_MAX_S) {
		fprintf(stderr,
			"--reconcile-interval: '%s' is not a number of seconds from 1 to %d\n", val,
			SUPERVISOR_RECONCILE_MAX_S);
		return -EINVAL;
	}
	a->cfg.reconcile_interval_s = (unsigned int)v;
	return 0;
}

static int opt_identity_grace(struct args *a, const char *val)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(val, &end, 10);
	if (errno || end == val || *end || v > SUPERVISOR_IDENTITY_GRACE_MAX_S) {
		fprintf(stderr, "--identity-grace: '%s' is not a number of seconds from 0 to %d\n",
			val, SUPERVISOR_IDENTITY_GRACE_MAX_S);
		return -EINVAL;
	}
	a->cfg.identity_grace_s = (unsigned int)v;
	return 0;
}

static int opt_log_level(struct args *a, const char *val)
{
	if (log_level_parse(val, &a->cfg.log_level) < 0) {
		fprintf(stderr, "--log-level: '%s' is not one of err, warn, info, debug\n", val);
		return -EINVAL;
	}
	return 0;
}

static int opt_cgroup_parent(struct args *a, const char *val)
{
	if (strchr(val, '/') || !strcmp(val, ".") || !strcmp(val, "..")) {
		fprintf(stderr, "--cgroup-parent: '%s' is not one path component\n", val);
		return -EINVAL;
	}
	a->cfg.cgroup_parent = val;
	return 0;
}

static int opt_uid_base(struct args *a, const char *val)
{
	if (parse_u32(val, 1000, UINT32_MAX - WORKERS_UID_COUNT, &a->cfg.uid_base) < 0) {
		fprintf(stderr, "--uid-base: '%s' is not a uid from 1000 to %lu\n", val,
			(unsigned long)(UINT32_MAX - WORKERS_UID_COUNT));
		return -EINVAL;
	}
	return 0;
}

static int opt_sandbox(struct args *a, const char *val)
{
	if (strcmp(val, "seccomp") && strcmp(val, "none")) {
		fprintf(stderr, "--sandbox: '%s' is not seccomp or none\n", val);
		return -EINVAL;
	}
	a->cfg.sandbox = val;
	return 0;
}

static int opt_host_mntns(struct args *a, const char *val)
{
	if (val[0] != '/' || access(val, R_OK) < 0) {
		fprintf(stderr,
			"--host-mntns: '%s' is not a readable absolute path (a mount namespace "
			"file such as /proc/1/ns/mnt)\n",
			val);
		return -EINVAL;
	}
	a->cfg.host_mntns = val;
	return 0;
}

static int opt_control_url(struct args *a, const char *val)
{
	if ((strncmp(val, "http://", 7) && strncmp(val, "https://", 8)) ||
	    strlen(val) > URL_MAX_LEN || strchr(val, ' ')) {
		fprintf(stderr,
			"--control-url: '%s' is not an http:// or https:// URL of at most %d "
			"bytes\n",
			val, URL_MAX_LEN);
		return -EINVAL;
	}
	a->cfg.control_url = val;
	return 0;
}

static int opt_cluster_name(struct args *a, const char *val)
{
	if (!*val || strlen(val) > HOSTNAME_MAX) {
		fprintf(stderr, "--cluster-name: '%s' must be 1 to %d bytes\n", val, HOSTNAME_MAX);
		return -EINVAL;
	}
	a->cfg.cluster_name = val;
	return 0;
}

static int opt_udp_port_range(struct args *a, const char *val)
{
	if (pods_port_range_parse(val, &a->cfg.udp_port_lo, &a->cfg.udp_port_hi) < 0) {
		fprintf(stderr, "--udp-port-range: '%s' is not LO-HI, 1 <= LO <= HI <= 65535\n",
			val);
		return -EINVAL;
	}
	return 0;
}

static int opt_endpoint_deny(struct args *a, const char *val)
{
	if (!valid_iface_glob(val) || a->cfg.n_endpoint_deny == ENDPOINT_DENY_MAX) {
		fprintf(stderr,
			"--endpoint-deny-iface: '%s': at most %d globs of 1 to %d printable "
			"bytes (no space or '/')\n",
			val, ENDPOINT_DENY_MAX, ENDPOINT_DENY_GLOB_MAX_LEN);
		return -EINVAL;
	}
	a->cfg.endpoint_deny[a->cfg.n_endpoint_deny++] = val;
	return 0;
}

static int opt_wg_timers(struct args *a, const char *val)
{
	return parse_wg_timers(val, a->cfg.test_wg_timers_ms);
}

/* --test-worker-proto MIN:MAX, 1 <= MIN <= MAX <= 1000. */
static int opt_worker_proto(struct args *a, const char *val)
{
	const char *colon = strchr(val, ':');
	char lo[16];

	if (colon && (size_t)(colon - val) < sizeof(lo)) {
		memcpy(lo, val, colon - val);
		lo[colon - val] = '\0';
		if (parse_u32(lo, 1, 1000, &a->cfg.worker_proto_min) == 0 &&
		    parse_u32(colon + 1, a->cfg.worker_proto_min, 1000, &a->cfg.worker_proto_max) ==
			    0)
			return 0;
	}
	fprintf(stderr, "--test-worker-proto: '%s' is not MIN:MAX\n", val);
	return -EINVAL;
}

static int opt_no_lite(struct args *a, const char *val)
{
	(void)val;
	a->cfg.test_control_no_lite = true;
	return 0;
}

static int opt_version(struct args *a, const char *val)
{
	(void)a;
	(void)val;
	printf("tailscale-cni-supervisor %s\n", TSCNI_VERSION);
	return 1;
}

static void usage(FILE *f);

static int opt_help(struct args *a, const char *val)
{
	(void)a;
	(void)val;
	usage(stdout);
	return 1;
}

#define ARG_FIELD(name) offsetof(struct args, name)

/* The options, in the order --help lists them. An option with a metavar takes
 * a value. It is checked and stored by set, or, without set, is a plain
 * string stored at field (a const char * in struct args). help is one or
 * more lines ('\n' continues in the help column); each '#' in it stands for
 * the next of nums. Options without help are for tests or are named in the
 * usage lines. */
static const struct opt {
	const char *name;
	const char *metavar;
	opt_fn *set;
	size_t field;
	const char *help;
	unsigned long nums[2];
} opts[] = {
	{.name = "state-dir",
	 .metavar = "DIR",
	 .field = ARG_FIELD(cfg.state_dir),
	 .help = "state directory (default " SUPERVISOR_STATE_DIR ")"},
	{.name = "socket",
	 .metavar = "PATH",
	 .field = ARG_FIELD(cfg.socket_path),
	 .help = "CNI socket (default " SUPERVISOR_SOCKET ")"},
	{.name = "node-name",
	 .metavar = "NAME",
	 .field = ARG_FIELD(node),
	 .help = "this node's name (default $NODE_NAME, else the host name)"},
	{.name = "reconcile-interval",
	 .metavar = "SECONDS",
	 .set = opt_reconcile,
	 .help = "netns check period, 1..# (default #)",
	 .nums = {SUPERVISOR_RECONCILE_MAX_S, SUPERVISOR_RECONCILE_S}},
	{.name = "identity-grace",
	 .metavar = "SECONDS",
	 .set = opt_identity_grace,
	 .help = "how long the identity (keys, node) of a pod\nwith no attachment is kept, 0..# "
		 "(default #)",
	 .nums = {SUPERVISOR_IDENTITY_GRACE_MAX_S, SUPERVISOR_IDENTITY_GRACE_S}},
	{.name = "log-level",
	 .metavar = "LEVEL",
	 .set = opt_log_level,
	 .help = "err, warn, info or debug (default info)"},
	{.name = "worker",
	 .metavar = "PATH",
	 .field = ARG_FIELD(worker),
	 .help = "the worker binary (default: " SUPERVISOR_WORKER " next to this\nbinary, "
		 "then " SUPERVISOR_WORKER_INSTALLED ")"},
	{.name = "run-dir",
	 .metavar = "DIR",
	 .field = ARG_FIELD(run_dir),
	 .help = "workers' rendezvous sockets go to DIR/workers\n(default: the CNI socket's "
		 "directory)"},
	{.name = "cgroup-parent",
	 .metavar = "NAME",
	 .set = opt_cgroup_parent,
	 .help = "the zygote's cgroup parent (default tailscale-cni,\n\"\" for no placement)"},
	{.name = "uid-base",
	 .metavar = "UID",
	 .set = opt_uid_base,
	 .help = "worker uid = UID + slot (default #)",
	 .nums = {WORKERS_UID_BASE}},
	{.name = "sandbox",
	 .metavar = "seccomp|none",
	 .set = opt_sandbox,
	 .help = "the worker's syscall filter (none: tests only)"},
	{.name = "test-worker-proto", .metavar = "MIN:MAX", .set = opt_worker_proto},
	{.name = "host-mntns",
	 .metavar = "PATH",
	 .set = opt_host_mntns,
	 .help = "exec the zygote in this mount namespace (e.g.\n/proc/1/ns/mnt with hostPID: the "
		 "host's); --worker\nthen names the host's binary"},
	{.name = "control-url",
	 .metavar = "URL",
	 .set = opt_control_url,
	 .help = "the control server, http(s)://host[:port]\n(default: none, pods get no tailnet "
		 "addresses)"},
	{.name = "auth-key-file",
	 .metavar = "PATH",
	 .field = ARG_FIELD(cfg.auth_key_file),
	 .help = "pre-auth key for new nodes (root's, mode 0600 or\n0400)"},
	{.name = "ca-file",
	 .metavar = "PATH",
	 .field = ARG_FIELD(cfg.ca_file),
	 .help = "PEM CA certificates workers trust for https"},
	{.name = "cluster-name",
	 .metavar = "NAME",
	 .set = opt_cluster_name,
	 .help = "hostname prefix: NAME-<namespace>-<pod>"},
	{.name = "udp-port-range",
	 .metavar = "LO-HI",
	 .set = opt_udp_port_range,
	 .help = "pods' UDP sockets bind the first free port\n"
		 "in LO-HI (default: an ephemeral port)"},
	{.name = "endpoint-deny-iface",
	 .metavar = "GLOB",
	 .set = opt_endpoint_deny,
	 .help = "never announce addresses of host interfaces\n"
		 "matching GLOB (repeatable, at most #; lo, cni0,\n"
		 "docker0, kube-ipvs0, veth*, flannel*, cilium_*,\n"
		 "cali* always)",
	 .nums = {ENDPOINT_DENY_MAX}},
	{.name = "test-control-no-lite", .set = opt_no_lite},
	{.name = "test-wg-timers",
	 .metavar = "R:J:A:T:K",
	 .set = opt_wg_timers,
	 .help = "tests only: the workers' WireGuard timers in ms\n(REKEY_AFTER, REJECT_AFTER, "
		 "REKEY_ATTEMPT,\nREKEY_TIMEOUT, KEEPALIVE)"},
	{.name = "version", .set = opt_version},
	{.name = "help", .set = opt_help},
};
enum { N_OPTS = sizeof(opts) / sizeof(opts[0]) };

/* One option's help: "  --name METAVAR" padded to the help column, then the
 * help text with its continuation lines indented to that column. */
static void usage_opt(FILE *f, const struct opt *o)
{
	enum { HELP_COLUMN = 31 }; /* "  " + the widest left part + " " */
	char left[64];
	size_t num = 0;

	snprintf(left, sizeof(left), "--%s%s%s", o->name, o->metavar ? " " : "",
		 o->metavar ? o->metavar : "");
	fprintf(f, "  %-*s ", HELP_COLUMN - 3, left);
	for (const char *p = o->help; *p; p++) {
		if (*p == '\n')
			fprintf(f, "\n%*s", HELP_COLUMN, "");
		else if (*p == '#' && num < 2)
			fprintf(f, "%lu", o->nums[num++]);
		else
			fputc(*p, f);
	}
	fputc('\n', f);
}

static void usage(FILE *f)
{
	fputs("usage: tailscale-cni-supervisor [run] [options]\n"
	      "       tailscale-cni-supervisor status [--json] [--socket PATH]\n"
	      "       tailscale-cni-supervisor roll-workers [--socket PATH]\n"
	      "       tailscale-cni-supervisor --version | --help\n"
	      "options:\n",
	      f);
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].help)
			usage_opt(f, &opts[i]);
}

/* The control plane's options go together: a key or a CA only with a URL,
 * and an https URL only with a CA (workers cannot read the system's). */
static int check_control(const struct supervisor_config *cfg)
{
	if (!cfg->control_url &&
	    (cfg->auth_key_file || cfg->ca_file || cfg->udp_port_lo || cfg->n_endpoint_deny)) {
		fprintf(stderr, "--auth-key-file, --ca-file, --udp-port-range and "
				"--endpoint-deny-iface need --control-url\n");
		return -EINVAL;
	}
	if (cfg->control_url && !strncmp(cfg->control_url, "https://", 8) && !cfg->ca_file) {
		fprintf(stderr,
			"--control-url %s is https: --ca-file is needed (workers open "
			"no file, so they cannot read the system's certificates)\n",
			cfg->control_url);
		return -EINVAL;
	}
	return 0;
}

/* --worker, or the binary find_worker finds, into cfg->worker_path. */
static int check_worker(struct args *a)
{
	struct supervisor_config *cfg = &a->cfg;
	const char *worker = a->worker;

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
	return 0;
}

/* --run-dir, else the CNI socket's directory, into cfg->run_dir. */
static int check_run_dir(struct args *a)
{
	struct supervisor_config *cfg = &a->cfg;
	const char *run_dir = a->run_dir;

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

/* The options together, once all are read. */
static int check_args(struct args *a)
{
	struct supervisor_config *cfg = &a->cfg;
	int ret;

	ret = check_control(cfg);
	if (ret < 0)
		return ret;
	if (cfg->state_dir[0] != '/' || cfg->socket_path[0] != '/') {
		fprintf(stderr, "--state-dir and --socket must be absolute paths\n");
		return -EINVAL;
	}
	if (a->node && *a->node && strscpy(cfg->node_name, a->node, sizeof(cfg->node_name)) < 0) {
		fprintf(stderr, "node name longer than %zu bytes\n", sizeof(cfg->node_name) - 1);
		return -EINVAL;
	}
	ret = check_worker(a);
	if (ret < 0)
		return ret;
	return check_run_dir(a);
}

/* Returns 0 to run, 1 for an exit with success (--help, --version), or
 * -EINVAL after printing what was wrong. */
static int parse_args(int argc, char **argv, struct supervisor_config *cfg)
{
	struct option longopts[N_OPTS + 1] = {{0}};
	struct args a = {.node = getenv("NODE_NAME")};
	int c, ret;

	a.cfg = (struct supervisor_config){
		.state_dir = SUPERVISOR_STATE_DIR,
		.socket_path = SUPERVISOR_SOCKET,
		.reconcile_interval_s = SUPERVISOR_RECONCILE_S,
		.identity_grace_s = SUPERVISOR_IDENTITY_GRACE_S,
		.log_level = LOG_INFO,
		.sandbox = "seccomp",
	};
	/* getopt_long returns the index + 1 of the option it found. */
	for (size_t i = 0; i < N_OPTS; i++)
		longopts[i] = (struct option){opts[i].name,
					      opts[i].metavar ? required_argument : no_argument,
					      NULL, (int)i + 1};
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		const struct opt *o = c >= 1 && c <= N_OPTS ? &opts[c - 1] : NULL;

		if (!o) {
			usage(stderr);
			return -EINVAL;
		}
		if (!o->set) {
			*(const char **)((char *)&a + o->field) = optarg;
			continue;
		}
		ret = o->set(&a, optarg);
		if (ret != 0)
			return ret;
	}
	if (optind != argc) {
		fprintf(stderr, "unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	ret = check_args(&a);
	*cfg = a.cfg;
	return ret;
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
	pool_watch_stop(sup->pool_watch);
	sup->pool_watch = NULL;
	pods_stop(sup->pods);
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
		.netop_arg = sup,
	};
	int ret;

	if (sup->cfg.control_url) {
		if (sup->cfg.ca_file) {
			ret = read_ca(sup->cfg.ca_file, &sup->ca_pem, &sup->ca_pem_len);
			if (ret < 0)
				return ret;
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

/* Stage: the auth key, now that the zygote cannot inherit it. */
static int load_auth_key(struct supervisor *sup)
{
	int ret;

	if (sup->cfg.auth_key_file) {
		if (sodium_init() < 0) {
			log_err("libsodium init failed");
			return -EIO;
		}
		ret = read_auth_key(sup->cfg.auth_key_file, &sup->auth_key);
		if (ret < 0)
			return ret;
		workers_set_auth_key(sup->workers, sup->auth_key);
	}
	if (sup->cfg.control_url)
		log_info("control plane %s (%s auth key, %s CA, cluster name %s)",
			 sup->cfg.control_url, sup->auth_key ? "with an" : "without an",
			 sup->ca_pem ? "with a" : "without a",
			 sup->cfg.cluster_name ? sup->cfg.cluster_name : "none");
	return 0;
}

static void free_auth_key(struct supervisor *sup)
{
	if (sup->auth_key)
		sodium_free(sup->auth_key);
	sup->auth_key = NULL;
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
	ret = uv_loop_init(&sup->loop);
	if (ret < 0) {
		log_err("libuv loop: %s", uv_strerror(ret));
		goto err_claim;
	}
	ret = start_workers(sup, &origin);
	if (ret < 0)
		goto err_loop;
	ret = load_auth_key(sup);
	if (ret < 0)
		goto err_workers;
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
	/* Stage: the CNI socket. */
	ret = cni_server_open(sup, sup->cfg.socket_path, &sup->srv);
	if (ret < 0)
		goto err_pods;
	ret = start_signals(sup, sig);
	if (ret < 0)
		goto err_server;
	return 0;

err_server:
	shut_down(sup);
	uv_run(&sup->loop, UV_RUN_DEFAULT);
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
	if (argc > 1 && strcmp(argv[1], "run") == 0) {
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	ret = parse_args(argc, argv, &sup.cfg);
	if (ret != 0)
		return ret > 0 ? 0 : 1;

	log_init("tailscale-cni-supervisor", sup.cfg.log_level);
	if (proc_limits_apply() < 0)
		return 1;
	/* Files and sockets we create are ours alone (state 0600/0700, the
	 * socket is chmod'ed too, this closes the window before that). */
	umask(077);
	signal(SIGPIPE, SIG_IGN);
	sup.started_unix = (uint64_t)time(NULL);
	return run(&sup) < 0 ? 1 : 0;
}
