/* tailscale-cni-supervisor install | uninstall (installer.h).
 *
 * install: the binaries first, then the configuration (§12.4: the config
 * never names a missing binary):
 *   1. the plugin into --cni-bin-dir, atomically (files.h);
 *   2. the worker tree into --worker-dir (worker_tree.h);
 *   3. the plugin, run from where it now is, must support the primary
 *      list's cniVersion (§12.3), then our entry into the configuration
 *      (confdir.h), waiting up to --wait for a primary to appear;
 *   4. with --watch: inotify on the conf dir and the bin dir, plus a rescan
 *      every 30 s, puts back the plugin or our entry when they go, until
 *      SIGTERM/SIGINT. Our entry is re-added at most 5 times in 10 minutes:
 *      beyond that another writer is fighting us, and we stop and say so.
 * uninstall: the configuration first, then the binaries, and the binaries
 * only when no configuration could still name them (§12.7). */
#include "installer.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "confdir.h"
#include "conflist.h"
#include "files.h"
#include "log.h"
#include "mem.h"
#include "subprocess.h"
#include "worker_tree.h"

struct install_opts {
	const char *bin_dir, *conf_dir, *worker_dir, *source_dir, *plugin_conf;
	enum confdir_mode mode;
	unsigned long wait_s;
	bool watch;
};

/* What install works with once the command line is read. */
struct installer {
	struct install_opts o;
	char plugin_src[PATH_MAX], worker_src[PATH_MAX], plugin_dst[PATH_MAX];
	json_t *ours;
	int sigfd, inofd;
	/* The versions the installed plugin was seen to support. */
	char checked_version[32];
	/* When our entry was last re-added (monotonic ms), a ring. */
	int64_t writes[INSTALLER_FIGHT_WRITES];
	size_t next_write;
	bool fight_logged;
	char last_why[CONFDIR_WHY_LEN];
	/* The drop-in's folder, watched too once we write there. */
	char dropin_dir[PATH_MAX];
};

/* A message into why (CONFLIST_WHY_LEN), truncated if it must be. */
static void say(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, CONFLIST_WHY_LEN, fmt, ap);
	va_end(ap);
}

static void install_usage(FILE *f)
{
	fprintf(f,
		"usage: tailscale-cni-supervisor install [options]\n"
		"  Copies the plugin and the worker onto the host, then chains tailscale-cni\n"
		"  into the node's primary CNI configuration (waiting for one to appear).\n"
		"  Run again, it changes nothing that is already right.\n"
		"options:\n"
		"  --cni-bin-dir DIR       where the plugin goes (default " INSTALLER_CNI_BIN_DIR
		")\n"
		"  --cni-conf-dir DIR      the runtime's CNI configuration "
		"(default " INSTALLER_CNI_CONF_DIR ")\n"
		"  --worker-dir DIR        worker, its libraries and loader; the same path on\n"
		"                          the host (default " INSTALLER_WORKER_DIR ")\n"
		"  --source-dir DIR        where tailscale-cni and tailscale-cni-worker are\n"
		"                          (default: this binary's directory)\n"
		"  --plugin-conf FILE      a JSON object: our entry's keys besides \"type\"\n"
		"                          (default {})\n"
		"  --mode auto|drop-in|conflist\n"
		"                          drop-in: <conf-dir>/<network>/" CONFDIR_DROPIN_FILE "\n"
		"                          (libcni >= 1.3); conflist: edit the primary list;\n"
		"                          auto: drop-in where that folder exists (default)\n"
		"  --wait SECONDS          how long to wait for a primary configuration\n"
		"                          (default 0: forever)\n"
		"  --watch                 then keep our entry in place until SIGTERM; never\n"
		"                          uninstalls on exit\n"
		"  Exit status 0 when installed, 1 otherwise.\n");
}

static void uninstall_usage(FILE *f)
{
	fprintf(f, "usage: tailscale-cni-supervisor uninstall [--cni-bin-dir DIR] "
		   "[--cni-conf-dir DIR]\n"
		   "                                          [--worker-dir DIR] "
		   "[--mode auto|drop-in|conflist]\n"
		   "  Removes our entry from the CNI configuration (a converted .conf is put\n"
		   "  back), then the plugin and the worker tree: those only when no\n"
		   "  configuration file could still name tailscale-cni.\n"
		   "  Exit status 0 when everything of ours is gone, 1 otherwise.\n");
}

static int parse_mode(const char *val, enum confdir_mode *mode)
{
	if (!strcmp(val, "auto"))
		*mode = CONFDIR_AUTO;
	else if (!strcmp(val, "drop-in"))
		*mode = CONFDIR_DROPIN;
	else if (!strcmp(val, "conflist"))
		*mode = CONFDIR_CONFLIST;
	else
		return -EINVAL;
	return 0;
}

enum {
	OPT_BIN = 1,
	OPT_CONF,
	OPT_WORKER,
	OPT_SOURCE,
	OPT_PLUGIN_CONF,
	OPT_MODE,
	OPT_WAIT,
	OPT_WATCH,
	OPT_HELP,
	OPT_VERSION
};

/* The options of install (all) or uninstall (bin, conf, worker, mode).
 * 0 to go on, 1 after --help or --version, -EINVAL after a line on stderr. */
static int parse_opts(const char *cmd, bool install, int argc, char **argv, struct install_opts *o)
{
	static const struct option all[] = {
		{"cni-bin-dir", required_argument, NULL, OPT_BIN},
		{"cni-conf-dir", required_argument, NULL, OPT_CONF},
		{"worker-dir", required_argument, NULL, OPT_WORKER},
		{"mode", required_argument, NULL, OPT_MODE},
		{"help", no_argument, NULL, OPT_HELP},
		{"version", no_argument, NULL, OPT_VERSION},
		{"source-dir", required_argument, NULL, OPT_SOURCE},
		{"plugin-conf", required_argument, NULL, OPT_PLUGIN_CONF},
		{"wait", required_argument, NULL, OPT_WAIT},
		{"watch", no_argument, NULL, OPT_WATCH},
		{0},
	};
	/* uninstall knows the first six only. */
	struct option opts[sizeof(all) / sizeof(all[0])];
	size_t n = install ? sizeof(all) / sizeof(all[0]) : 6;
	int c;

	memcpy(opts, all, n * sizeof(all[0]));
	opts[n < sizeof(all) / sizeof(all[0]) ? n : n - 1] = (struct option){0};
	*o = (struct install_opts){
		.bin_dir = INSTALLER_CNI_BIN_DIR,
		.conf_dir = INSTALLER_CNI_CONF_DIR,
		.worker_dir = INSTALLER_WORKER_DIR,
	};
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		char *end;

		switch (c) {
		case OPT_BIN:
			o->bin_dir = optarg;
			break;
		case OPT_CONF:
			o->conf_dir = optarg;
			break;
		case OPT_WORKER:
			o->worker_dir = optarg;
			break;
		case OPT_SOURCE:
			o->source_dir = optarg;
			break;
		case OPT_PLUGIN_CONF:
			o->plugin_conf = optarg;
			break;
		case OPT_MODE:
			if (parse_mode(optarg, &o->mode) < 0) {
				fprintf(stderr,
					"tailscale-cni-supervisor %s: --mode: '%s' is not auto, "
					"drop-in or conflist\n",
					cmd, optarg);
				return -EINVAL;
			}
			break;
		case OPT_WAIT:
			errno = 0;
			o->wait_s = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-' ||
			    o->wait_s > INSTALLER_WAIT_MAX_S) {
				fprintf(stderr,
					"tailscale-cni-supervisor %s: --wait: '%s' is not a number "
					"of seconds from 0 (forever) to %d\n",
					cmd, optarg, INSTALLER_WAIT_MAX_S);
				return -EINVAL;
			}
			break;
		case OPT_WATCH:
			o->watch = true;
			break;
		case 'h':
		case OPT_HELP:
			if (install)
				install_usage(stdout);
			else
				uninstall_usage(stdout);
			return 1;
		case OPT_VERSION:
			printf("tailscale-cni-supervisor %s\n", TSCNI_VERSION);
			return 1;
		default:
			cli_bad_option(cmd, c, argv);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		fprintf(stderr,
			"tailscale-cni-supervisor %s: unexpected argument '%s' (see --help)\n", cmd,
			argv[optind]);
		return -EINVAL;
	}
	if (o->bin_dir[0] != '/' || o->conf_dir[0] != '/' || o->worker_dir[0] != '/' ||
	    (o->source_dir && o->source_dir[0] != '/')) {
		fprintf(stderr,
			"tailscale-cni-supervisor %s: --cni-bin-dir, --cni-conf-dir, "
			"--worker-dir and --source-dir must be absolute paths\n",
			cmd);
		return -EINVAL;
	}
	return 0;
}

/* name in dir when it is an executable file, into out. */
static bool find_in(const char *dir, const char *name, char *out, size_t n)
{
	struct stat st;

	return snprintf(out, n, "%s/%s", dir, name) < (int)n && stat(out, &st) == 0 &&
	       S_ISREG(st.st_mode) && access(out, X_OK) == 0;
}

/* The two binaries: in --source-dir, else beside this executable (an
 * image's /usr/local/bin), else in a build tree's cni/ and worker/. */
static int find_sources(struct installer *in)
{
	char self[PATH_MAX], dir[PATH_MAX], alt[PATH_MAX];
	ssize_t len;
	const char *where = in->o.source_dir;

	if (!where) {
		len = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (len <= 0) {
			log_err("cannot read /proc/self/exe: pass --source-dir");
			return -ENOENT;
		}
		self[len] = '\0';
		strscpy(dir, dirname(self), sizeof(dir));
		where = dir;
	}
	if (!find_in(where, INSTALLER_PLUGIN, in->plugin_src, sizeof(in->plugin_src)) &&
	    !(!in->o.source_dir && snprintf(alt, sizeof(alt), "%s/../cni", where) > 0 &&
	      find_in(alt, INSTALLER_PLUGIN, in->plugin_src, sizeof(in->plugin_src)))) {
		log_err("no executable %s in %s: pass --source-dir", INSTALLER_PLUGIN, where);
		return -ENOENT;
	}
	if (!find_in(where, WORKER_TREE_BIN, in->worker_src, sizeof(in->worker_src)) &&
	    !(!in->o.source_dir && snprintf(alt, sizeof(alt), "%s/../worker", where) > 0 &&
	      find_in(alt, WORKER_TREE_BIN, in->worker_src, sizeof(in->worker_src)))) {
		log_err("no executable %s in %s: pass --source-dir", WORKER_TREE_BIN, where);
		return -ENOENT;
	}
	return 0;
}

/* --plugin-conf, or {}, into in->ours. */
static int load_ours(struct installer *in)
{
	char why[CONFLIST_WHY_LEN], *buf = NULL;
	size_t len = 0;
	int ret;

	if (in->o.plugin_conf) {
		ret = files_read(in->o.plugin_conf, CONFLIST_MAX_LEN, &buf, &len, NULL, NULL, NULL);
		if (ret < 0) {
			fprintf(stderr, "tailscale-cni-supervisor install: --plugin-conf %s: %s\n",
				in->o.plugin_conf,
				ret == -EFBIG	 ? "larger than 1 MiB"
				: ret == -EINVAL ? "not a regular file"
						 : strerror(-ret));
			return ret;
		}
	}
	ret = conflist_ours_new(buf, len, &in->ours, why);
	if (ret < 0)
		fprintf(stderr, "tailscale-cni-supervisor install: --plugin-conf %s: %s\n",
			in->o.plugin_conf, why);
	free(buf);
	return ret;
}

/* confdir_version_fn: the installed plugin, asked VERSION as a runtime
 * asks it, must list the configuration's cniVersion. Remembered once
 * seen, so the watch does not run it on every event. */
static int check_version(void *arg, const char *version, char why[static CONFLIST_WHY_LEN])
{
	struct installer *in = arg;
	char *argv[] = {in->plugin_dst, NULL};
	char *envp[] = {"CNI_COMMAND=VERSION", "CNI_PATH=/nonexistent", NULL};
	char input[96], *out = NULL;
	json_t *root, *list, *v;
	size_t len, i;
	int ret;

	if (!version || !strcmp(version, in->checked_version))
		return 0;
	if (strlen(version) >= sizeof(in->checked_version) || strchr(version, '"') ||
	    strchr(version, '\\')) {
		say(why, "cniVersion is not a version number");
		return -ENOTSUP;
	}
	snprintf(input, sizeof(input), "{\"cniVersion\":\"%s\"}", version);
	ret = subprocess_capture(argv, envp, input, &out, &len);
	if (ret < 0) {
		say(why, "%s did not answer VERSION: %s", in->plugin_dst, strerror(-ret));
		return -ENOTSUP;
	}
	root = json_loadb(out, len, 0, NULL);
	free(out);
	list = json_object_get(root, "supportedVersions");
	ret = -ENOTSUP;
	json_array_foreach(list, i, v)
	{
		if (json_is_string(v) && !strcmp(json_string_value(v), version))
			ret = 0;
	}
	json_decref(root);
	if (ret < 0) {
		say(why, "cniVersion %s is not among the versions %s supports: not chained",
		    version, in->plugin_dst);
		return ret;
	}
	strscpy(in->checked_version, version, sizeof(in->checked_version));
	return 0;
}

/* The plugin into --cni-bin-dir. A dynamically linked one runs only where
 * the host has the libraries it links: said once. */
static int install_plugin(struct installer *in, bool quiet)
{
	char interp[ELF_INTERP_MAX];
	bool written;
	int ret;

	if (!quiet && elf_interp(in->plugin_src, interp) == 0)
		log_warn("%s is dynamically linked (loader %s): it runs only on hosts with "
			 "compatible libraries; build it with -DTSCNI_STATIC_PLUGIN=ON",
			 in->plugin_src, interp);
	if (mkdir(in->o.bin_dir, 0755) < 0 && errno != EEXIST) {
		ret = -errno;
		log_err_r(ret, "create %s", in->o.bin_dir);
		return ret;
	}
	ret = files_copy(in->plugin_src, in->plugin_dst, 0755, &written);
	if (ret == 0 && (written || !quiet))
		log_info("%s: %s", in->plugin_dst, written ? "installed" : "up to date");
	return ret;
}

/* Whether the ring of re-add times allows one more write now. */
static bool may_write(struct installer *in)
{
	int64_t oldest = in->writes[in->next_write], now = (int64_t)now_ms();

	if (oldest == 0 || now - oldest >= (int64_t)INSTALLER_FIGHT_WINDOW_S * 1000) {
		in->fight_logged = false;
		return true;
	}
	return false;
}

static void note_write(struct installer *in)
{
	in->writes[in->next_write] = (int64_t)now_ms();
	in->next_write = (in->next_write + 1) % INSTALLER_FIGHT_WRITES;
}

/* One pass over the configuration. 0 when our entry is in place (or
 * writing is held back), else what confdir_apply said. */
static int apply(struct installer *in, bool watching)
{
	struct confdir_result res;
	char why[CONFDIR_WHY_LEN];
	int ret;

	if (watching && !may_write(in)) {
		if (!in->fight_logged)
			log_err("our entry was re-added %d times in %d s: another writer keeps "
				"removing it; not writing again until that slows down",
				INSTALLER_FIGHT_WRITES, INSTALLER_FIGHT_WINDOW_S);
		in->fight_logged = true;
		return 0;
	}
	ret = confdir_apply(in->o.conf_dir, in->o.mode, in->ours, check_version, in, &res, why);
	if (ret < 0) {
		if (!watching || strcmp(why, in->last_why)) {
			if (watching || (ret != -ENOENT && ret != -EAGAIN))
				log_err("%s", why);
			strscpy(in->last_why, why, sizeof(in->last_why));
		}
		return ret;
	}
	in->last_why[0] = '\0';
	in->dropin_dir[0] = '\0';
	if (res.dropin) {
		strscpy(in->dropin_dir, res.file, sizeof(in->dropin_dir));
		*strrchr(in->dropin_dir, '/') = '\0';
	}
	if (res.written) {
		note_write(in);
		log_info("%s: tailscale-cni %s", res.file,
			 res.dropin ? "drop-in written" : "chained");
	} else if (!watching) {
		log_info("%s: tailscale-cni already chained", res.file);
	}
	return 0;
}

/* (Re)adds the watches; a directory that was deleted and recreated gets a
 * new one. Missing directories are picked up by the rescan. */
static void add_watches(struct installer *in)
{
	const uint32_t conf = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE |
			      IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

	(void)inotify_add_watch(in->inofd, in->o.conf_dir, conf);
	if (in->dropin_dir[0])
		(void)inotify_add_watch(in->inofd, in->dropin_dir, conf);
	(void)inotify_add_watch(in->inofd, in->o.bin_dir,
				IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF |
					IN_ONLYDIR);
}

static void drain_events(int fd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

/* Waits up to ms for an inotify event: 1 on an event (drained after a
 * settle time), 0 on timeout, -EINTR on SIGTERM/SIGINT. */
static int wait_event(struct installer *in, int ms)
{
	struct pollfd p[2] = {{.fd = in->sigfd, .events = POLLIN},
			      {.fd = in->inofd, .events = POLLIN}};
	struct signalfd_siginfo si;

	if (poll(p, 2, ms) < 0)
		return errno == EINTR ? 0 : -errno;
	if (p[0].revents & POLLIN) {
		if (read(in->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
			log_info("%s: stopping (nothing is uninstalled)",
				 strsignal((int)si.ssi_signo));
		return -EINTR;
	}
	if (!(p[1].revents & POLLIN))
		return 0;
	/* A writer's rename or its several writes: let them land. */
	if (poll(p, 1, INSTALLER_SETTLE_MS) > 0)
		return wait_event(in, 0) == -EINTR ? -EINTR : 1;
	drain_events(in->inofd);
	return 1;
}

/* The configuration, waiting up to --wait for a primary to appear. */
static int apply_waiting(struct installer *in)
{
	int64_t deadline =
		in->o.wait_s ? (int64_t)now_ms() + (int64_t)in->o.wait_s * 1000 : INT64_MAX;
	bool said = false;
	int ret;

	for (;;) {
		add_watches(in);
		ret = apply(in, false);
		if (ret != -ENOENT && ret != -EAGAIN)
			return ret;
		if (!said)
			log_info("%s (waiting%s)", in->last_why, in->o.wait_s ? "" : ", no limit");
		said = true;
		int64_t left = deadline - (int64_t)now_ms();

		if (left <= 0) {
			log_err("%s after %lu s: nothing chained", in->last_why, in->o.wait_s);
			return -ETIMEDOUT;
		}
		/* Short polls while the directory itself is missing (no
		 * watch on it yet). */
		ret = wait_event(in, (int)(left < 1000 ? left : 1000));
		if (ret == -EINTR)
			return ret;
	}
}

/* --watch: reconcile on every event and every INSTALLER_RESCAN_MS. */
static int watch(struct installer *in)
{
	int ret;

	log_info("watching %s and %s", in->o.conf_dir, in->o.bin_dir);
	add_watches(in);
	for (;;) {
		ret = wait_event(in, INSTALLER_RESCAN_MS);
		if (ret == -EINTR)
			return 0;
		add_watches(in);
		if (install_plugin(in, true) < 0)
			continue; /* said; tried again at the next event */
		(void)apply(in, true);
	}
}

/* SIGTERM and SIGINT are read from a signalfd, so a wait ends cleanly. */
static int open_fds(struct installer *in)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	in->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	in->inofd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (in->sigfd < 0 || in->inofd < 0) {
		log_err_r(-errno, "signalfd, inotify");
		return -errno;
	}
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int installer_install_command(int argc, char **argv)
{
	struct installer in = {.sigfd = -1, .inofd = -1};
	bool changed;
	int ret;

	ret = parse_opts("install", true, argc, argv, &in.o);
	if (ret != 0)
		return ret > 0 ? 0 : 1;
	log_init("tailscale-cni-supervisor", LOG_INFO);
	if (load_ours(&in) < 0)
		return 1;
	ret = find_sources(&in);
	if (ret == 0 && snprintf(in.plugin_dst, sizeof(in.plugin_dst), "%s/" INSTALLER_PLUGIN,
				 in.o.bin_dir) >= (int)sizeof(in.plugin_dst))
		ret = -ENAMETOOLONG;
	if (ret == 0)
		ret = open_fds(&in);
	/* Binaries before configuration. */
	if (ret == 0)
		ret = install_plugin(&in, false);
	if (ret == 0) {
		ret = worker_tree_install(in.worker_src, in.o.worker_dir, &changed);
		if (ret == 0)
			log_info("%s/bin/" WORKER_TREE_BIN ": %s", in.o.worker_dir,
				 changed ? "installed" : "up to date");
	}
	if (ret == 0)
		ret = apply_waiting(&in);
	if (ret == 0 && in.o.watch)
		ret = watch(&in);
	json_decref(in.ours);
	if (in.sigfd >= 0)
		close(in.sigfd);
	if (in.inofd >= 0)
		close(in.inofd);
	return ret < 0 ? 1 : 0;
}

int installer_uninstall_command(int argc, char **argv)
{
	struct install_opts o;
	char plugin[PATH_MAX];
	bool clean;
	int ret;

	ret = parse_opts("uninstall", false, argc, argv, &o);
	if (ret != 0)
		return ret > 0 ? 0 : 1;
	log_init("tailscale-cni-supervisor", LOG_INFO);
	/* Configuration first: a runtime must never find an entry naming a
	 * binary that is gone (§12.7). */
	ret = confdir_remove(o.conf_dir, o.mode, &clean);
	if (ret < 0 || !clean) {
		log_err("%s: some configuration may still name tailscale-cni: the plugin and "
			"the worker stay installed",
			o.conf_dir);
		return 1;
	}
	snprintf(plugin, sizeof(plugin), "%s/" INSTALLER_PLUGIN, o.bin_dir);
	if (access(plugin, F_OK) == 0) {
		ret = files_remove(plugin);
		if (ret == 0)
			log_info("%s: removed", plugin);
	}
	if (ret == 0) {
		ret = worker_tree_remove(o.worker_dir);
		if (ret == 0)
			log_info("%s: worker tree removed", o.worker_dir);
	}
	return ret < 0 ? 1 : 0;
}
