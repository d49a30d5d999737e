/* The supervisor's `run` command line (the usage in main.c's head comment).
 * options_parse fills cfg with the defaults (SUPERVISOR_STATE_DIR and the
 * rest of supervisor.h), then what argv says, each option checked as it
 * is read and the whole checked at the end (a control URL's companions,
 * the worker binary, the run directory). */
#ifndef TSCNI_SUPERVISOR_OPTIONS_H
#define TSCNI_SUPERVISOR_OPTIONS_H

#include <stdio.h>

#include "supervisor.h"

/* Returns 0 to run, 1 for an exit with success (--help, --version, after
 * printing them), or -EINVAL after printing what was wrong on stderr. The
 * strings in cfg point into argv or are static. */
int options_parse(int argc, char **argv, struct supervisor_config *cfg);
/* The usage lines without the options (-h, help). */
void options_usage_short(FILE *f);

#endif
