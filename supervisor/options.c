/* The supervisor's command line (options.h): a table of long options, each
 * with its metavar, its help line and either a field of struct args it sets
 * as given or a function that checks and converts it; then the checks that
 * span options. */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "annotations.h"
#include "hostname.h"
#include "http_serve.h"
#include "ip.h"
#include "log.h"
#include "mem.h"
#include "pods.h"
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

static int opt_allowed_tags(struct args *a, const char *val)
{
	char why[ANNOTATIONS_WHY_LEN];

	if (annotations_tags_add(&a->cfg.allowed_tags, val, NULL, why, sizeof(why)) < 0) {
		fprintf(stderr, "--allowed-tags: %s (at most %d tags in all)\n", why, POD_TAGS_MAX);
		return -EINVAL;
	}
	return 0;
}

static int opt_route_all(struct args *a, const char *val)
{
	(void)val;
	a->cfg.route_all = true;
	return 0;
}

static int opt_accept_routes(struct args *a, const char *val)
{
	(void)val;
	a->cfg.accept_routes = true;
	return 0;
}

static int opt_route_deny(struct args *a, const char *val)
{
	struct ip_prefix p;

	if (a->cfg.n_route_deny == SUPERVISOR_ROUTE_DENY_MAX ||
	    ip_prefix_parse(val, false, &p) < 0) {
		fprintf(stderr, "--route-deny: '%s' is not a CIDR prefix (at most %d of them)\n",
			val, SUPERVISOR_ROUTE_DENY_MAX);
		return -EINVAL;
	}
	a->cfg.route_deny[a->cfg.n_route_deny++] = p;
	return 0;
}

static int opt_metrics_listen(struct args *a, const char *val)
{
	const char *why = NULL;

	if (http_listen_parse(val, &a->cfg.metrics_addr, &why) < 0) {
		fprintf(stderr, "--metrics-listen: '%s' is %s\n", val, why);
		return -EINVAL;
	}
	a->cfg.metrics_listen = val;
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

static void usage(FILE *f, bool options);

static int opt_help(struct args *a, const char *val)
{
	(void)a;
	(void)val;
	usage(stdout, true);
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
	 .help = "pre-auth key for new nodes: a root-owned file\nonly root may write, or a "
		 "Kubernetes Secret\nvolume's file; re-read when it changes"},
	{.name = "auth-key-env",
	 .metavar = "NAME",
	 .field = ARG_FIELD(cfg.auth_key_env),
	 .help = "pre-auth key from environment variable NAME\n(wiped from the environment "
		 "once read)"},
	{.name = "oauth-client-id",
	 .metavar = "ID",
	 .field = ARG_FIELD(cfg.ak.oauth_client_id),
	 .help = "mint one key per pod through the Tailscale API\nwith this OAuth client "
		 "(scopes auth_keys,\ndevices:core)"},
	{.name = "oauth-client-secret-file",
	 .metavar = "PATH",
	 .field = ARG_FIELD(cfg.ak.oauth_secret_file),
	 .help = "its secret, read as --auth-key-file is"},
	{.name = "oauth-client-secret-env",
	 .metavar = "NAME",
	 .field = ARG_FIELD(cfg.ak.oauth_secret_env),
	 .help = "its secret from environment variable NAME"},
	{.name = "api-url",
	 .metavar = "URL",
	 .field = ARG_FIELD(cfg.ak.api_url),
	 .help = "the Tailscale API (default https://api.tailscale.com)"},
	{.name = "tailnet",
	 .metavar = "NAME",
	 .field = ARG_FIELD(cfg.ak.tailnet),
	 .help = "the tailnet (default \"-\": the client's)"},
	{.name = "headscale-api-url",
	 .metavar = "URL",
	 .field = ARG_FIELD(cfg.ak.hs_url),
	 .help = "mint one pre-auth key per pod through\nHeadscale's API"},
	{.name = "headscale-api-key-file",
	 .metavar = "PATH",
	 .field = ARG_FIELD(cfg.ak.hs_key_file),
	 .help = "Headscale API key, read as --auth-key-file is"},
	{.name = "headscale-api-key-env",
	 .metavar = "NAME",
	 .field = ARG_FIELD(cfg.ak.hs_key_env),
	 .help = "Headscale API key from environment variable NAME"},
	{.name = "headscale-user",
	 .metavar = "NAME",
	 .field = ARG_FIELD(cfg.ak.hs_user),
	 .help = "the Headscale user pods' keys belong to"},
	{.name = "key-tags",
	 .metavar = "TAGS",
	 .field = ARG_FIELD(cfg.ak.key_tags),
	 .help = "tag:a,tag:b: the tags each pod's key carries"},
	{.name = "key-ephemeral",
	 .metavar = "true|false",
	 .field = ARG_FIELD(cfg.ak.key_ephemeral),
	 .help = "pods' nodes are ephemeral (default true)"},
	{.name = "key-expiry",
	 .metavar = "SECONDS",
	 .field = ARG_FIELD(cfg.ak.key_expiry),
	 .help = "a minted key's lifetime (default 300)"},
	{.name = "ca-file",
	 .metavar = "PATH",
	 .field = ARG_FIELD(cfg.ca_file),
	 .help = "PEM CA certificates workers trust for https\n"
		 "(control, DERP), instead of the system's\n"
		 "(default: libcurl's bundle, e.g.\n"
		 "/etc/ssl/certs/ca-certificates.crt; at most 1 MiB)"},
	{.name = "ca-file-add",
	 .metavar = "PATH",
	 .field = ARG_FIELD(cfg.ca_file_add),
	 .help = "PEM CA certificates trusted on top of the\n"
		 "system's (or --ca-file's): a private CA"},
	{.name = "cluster-name",
	 .metavar = "NAME",
	 .set = opt_cluster_name,
	 .help = "hostname prefix: NAME-<namespace>-<pod>"},
	{.name = "allowed-tags",
	 .metavar = "TAG[,TAG...]",
	 .set = opt_allowed_tags,
	 .help = "tags a pod's tailscale-cni.io/tags annotation\n"
		 "may ask for (repeatable, at most # in all;\n"
		 "default: none)",
	 .nums = {POD_TAGS_MAX}},
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
	{.name = "route-all",
	 .set = opt_route_all,
	 .help = "route all of 100.64.0.0/10 and fd7a:115c:a1e0::/48\n"
		 "into ts0 (default: each peer's addresses and\n100.100.100.100)"},
	{.name = "accept-routes",
	 .set = opt_accept_routes,
	 .help = "route peers' subnet routes into ts0, never\n"
		 "over the pod's own networks (like tailscale up\n--accept-routes)"},
	{.name = "route-deny",
	 .metavar = "CIDR",
	 .set = opt_route_deny,
	 .help = "no subnet route may overlap CIDR (repeatable,\nat most #)",
	 .nums = {SUPERVISOR_ROUTE_DENY_MAX}},
	{.name = "metrics-listen",
	 .metavar = "ADDR:PORT",
	 .set = opt_metrics_listen,
	 .help = "serve /metrics (Prometheus) and /healthz over\nHTTP on ADDR:PORT, e.g. "
		 "127.0.0.1:9341 or\n[::1]:9341 (default: not served)"},
	/* Tests only, so not in --help: workers never send lite updates; the
	 * workers' WireGuard timers in ms (REKEY_AFTER, REJECT_AFTER,
	 * REKEY_ATTEMPT, REKEY_TIMEOUT, KEEPALIVE). */
	{.name = "test-control-no-lite", .set = opt_no_lite},
	{.name = "test-wg-timers", .metavar = "R:J:A:T:K", .set = opt_wg_timers},
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

/* The usage lines; with options, every option --help lists. */
static void usage(FILE *f, bool options)
{
	fputs("usage: tailscale-cni-supervisor [run] [options]\n"
	      "       tailscale-cni-supervisor status [--json] [--socket PATH]\n"
	      "       tailscale-cni-supervisor roll-workers [--socket PATH]\n"
	      "       tailscale-cni-supervisor install | uninstall [options] (see install --help)\n"
	      "       tailscale-cni-supervisor --version | --help\n",
	      f);
	if (!options) {
		fputs("(--help lists the options)\n", f);
		return;
	}
	fputs("options:\n", f);
	for (size_t i = 0; i < N_OPTS; i++)
		if (opts[i].help)
			usage_opt(f, &opts[i]);
}

void options_usage_short(FILE *f)
{
	usage(f, false);
}

/* The control plane's options go together: a key or a CA only with a URL.
 * (An https URL needs no option: the system's CA bundle is the default.) */
static int check_control(const struct supervisor_config *cfg)
{
	if (!cfg->control_url && (cfg->auth_key_file || cfg->auth_key_env || cfg->ca_file ||
				  cfg->ca_file_add || cfg->udp_port_lo || cfg->n_endpoint_deny)) {
		fprintf(stderr, "--auth-key-file, --auth-key-env, --ca-file, --ca-file-add, "
				"--udp-port-range and --endpoint-deny-iface need --control-url\n");
		return -EINVAL;
	}
	if (cfg->auth_key_file && cfg->auth_key_env) {
		fprintf(stderr, "--auth-key-file and --auth-key-env: give one of them\n");
		return -EINVAL;
	}
	if (authkeys_config_check(&cfg->ak, cfg->auth_key_file || cfg->auth_key_env) < 0)
		return -EINVAL;
	if (!cfg->control_url && authkeys_config_kind(&cfg->ak) != AUTHKEYS_STATIC) {
		fprintf(stderr, "--oauth-client-id and --headscale-api-url need --control-url\n");
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
int options_parse(int argc, char **argv, struct supervisor_config *cfg)
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
	/* getopt_long returns the index + 1 of the option it found; 'h' for
	 * -h, ':' and '?' for a missing value and an unknown option, which
	 * are told here (opterr 0), naming the option. */
	for (size_t i = 0; i < N_OPTS; i++)
		longopts[i] = (struct option){opts[i].name,
					      opts[i].metavar ? required_argument : no_argument,
					      NULL, (int)i + 1};
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		const struct opt *o = c >= 1 && c <= N_OPTS ? &opts[c - 1] : NULL;

		if (c == 'h') {
			usage(stdout, false);
			return 1;
		}
		if (c == ':') {
			fprintf(stderr,
				"tailscale-cni-supervisor: option '%s' needs a value (see "
				"--help)\n",
				argv[optind - 1]);
			return -EINVAL;
		}
		if (!o) {
			if (optopt)
				fprintf(stderr,
					"tailscale-cni-supervisor: unknown option '-%c' (see "
					"--help)\n",
					optopt);
			else
				fprintf(stderr,
					"tailscale-cni-supervisor: unknown option '%s' (see "
					"--help)\n",
					argv[optind - 1]);
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
		fprintf(stderr,
			"tailscale-cni-supervisor: unexpected argument '%s' (commands: run, "
			"status, roll-workers, install, uninstall, help; see --help)\n",
			argv[optind]);
		return -EINVAL;
	}
	ret = check_args(&a);
	*cfg = a.cfg;
	return ret;
}
