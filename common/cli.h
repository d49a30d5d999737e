/* What the supervisor's subcommands (status, roll-workers, install,
 * uninstall) print for a wrong option. */
#ifndef TSCNI_COMMON_CLI_H
#define TSCNI_COMMON_CLI_H

/* After getopt_long returned c ('?' or ':') for argv: one line on stderr
 * naming the option of "tailscale-cni-supervisor CMD" and pointing to
 * --help (the option lacks its value, or is unknown). */
void cli_bad_option(const char *cmd, int c, char **argv);

#endif
