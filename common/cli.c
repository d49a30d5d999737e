/* See cli.h. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

void cli_bad_option(const char *cmd, int c, char **argv)
{
	if (c == ':')
		fprintf(stderr,
			"tailscale-cni-supervisor %s: option '%s' needs a value (see --help)\n",
			cmd, argv[optind - 1]);
	else if (optopt)
		fprintf(stderr, "tailscale-cni-supervisor %s: unknown option '-%c' (see --help)\n",
			cmd, optopt);
	else
		fprintf(stderr, "tailscale-cni-supervisor %s: unknown option '%s' (see --help)\n",
			cmd, argv[optind - 1]);
}
