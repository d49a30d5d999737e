/* tailscale-cni-worker: started only as `--zygote` by the supervisor; every
 * worker is a fork of the zygote (worker/zygote.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sandbox.h"
#include "zygote.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: tailscale-cni-worker --zygote [--cgroup-parent NAME|\"\"] "
		   "[--max-forks N] [--sandbox seccomp|none] [--log-level LEVEL] "
		   "[--force-fallbacks] [--ca-fd FD]\n"
		   "Started by tailscale-cni-supervisor with its link on fd 3 and, with\n"
		   "--ca-fd, the CA bundle its workers trust on that fd.\n");
}

int main(int argc, char **argv)
{
	struct zygote_config cfg = {
		.self_path = argv[0],
		.argv = argv,
		.cgroup_parent = "tailscale-cni",
		.max_forks = ZYGOTE_MAX_FORKS,
		.sandbox = &sandbox_seccomp,
		.ca_fd = -1,
	};
	enum log_level level = LOG_INFO;
	bool zygote = false;

	log_init("zygote", level);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--zygote")) {
			zygote = true;
			continue;
		}
		if (!strcmp(a, "--force-fallbacks")) {
			cfg.force_fallbacks = true;
			continue;
		}
		if (!strcmp(a, "--help") || !strcmp(a, "-h") || !strcmp(a, "help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--version")) {
			printf("tailscale-cni-worker %s\n", TSCNI_VERSION);
			return 0;
		}
		if (strcmp(a, "--cgroup-parent") && strcmp(a, "--max-forks") &&
		    strcmp(a, "--sandbox") && strcmp(a, "--log-level") && strcmp(a, "--ca-fd")) {
			fprintf(stderr, "tailscale-cni-worker: unknown option '%s' (see --help)\n",
				a);
			return 2;
		}
		if (!v) {
			fprintf(stderr, "tailscale-cni-worker: %s needs a value (see --help)\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--cgroup-parent")) {
			if (strchr(v, '/') || !strcmp(v, ".") || !strcmp(v, "..")) {
				fprintf(stderr,
					"tailscale-cni-worker: --cgroup-parent: one path "
					"component expected, got \"%s\"\n",
					v);
				return 2;
			}
			cfg.cgroup_parent = v;
		} else if (!strcmp(a, "--max-forks")) {
			char *end;
			unsigned long n;

			errno = 0;
			n = strtoul(v, &end, 10);
			if (errno || *end || end == v || n == 0 || n > 1000000) {
				fprintf(stderr,
					"tailscale-cni-worker: --max-forks: 1..1000000, "
					"got \"%s\"\n",
					v);
				return 2;
			}
			cfg.max_forks = (unsigned int)n;
		} else if (!strcmp(a, "--ca-fd")) {
			char *end;
			long n;

			errno = 0;
			n = strtol(v, &end, 10);
			if (errno || *end || end == v || n < 4 || n > 1024) {
				fprintf(stderr,
					"tailscale-cni-worker: --ca-fd: 4..1024, got \"%s\"\n", v);
				return 2;
			}
			cfg.ca_fd = (int)n;
		} else if (!strcmp(a, "--sandbox")) {
			if (!strcmp(v, "seccomp")) {
				cfg.sandbox = &sandbox_seccomp;
			} else if (!strcmp(v, "none")) {
				cfg.sandbox = &sandbox_none;
			} else {
				fprintf(stderr,
					"tailscale-cni-worker: --sandbox: seccomp or none, "
					"got \"%s\"\n",
					v);
				return 2;
			}
		} else if (!strcmp(a, "--log-level")) {
			if (log_level_parse(v, &level) < 0) {
				fprintf(stderr,
					"tailscale-cni-worker: --log-level: err, warn, "
					"info or debug, got \"%s\"\n",
					v);
				return 2;
			}
			log_set_level(level);
		}
	}
	if (!zygote) {
		fprintf(stderr, "tailscale-cni-worker: only the supervisor starts me, as --zygote "
				"(see --help)\n");
		return 2;
	}
	return zygote_run(&cfg);
}
