/* The CNI verbs (docs/cni-contract.md 4): everything between reading stdin and
 * writing stdout. main.c owns the process (signals, watchdog, stdin, stdout,
 * log sinks); this file owns the decisions. */
#ifndef TSCNI_CNI_CMD_H
#define TSCNI_CNI_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "args.h"
#include "conf.h"
#include "error.h"

struct cmd {
	struct cni_env env;   /* borrowed strings (the environment) */
	struct cni_args args; /* owned */
	struct conf conf;     /* owned once cmd_prepare succeeded */
	struct cni_error err; /* set when a function returns < 0 */
	char *out;	      /* stdout payload (malloc'd) or NULL for none */
	size_t out_len;
	unsigned long long start_ms; /* now_ms() at process start: budgets count from here */
	bool added;		     /* the supervisor holds an attachment from this ADD */
};

/* Takes env (already loaded) and the start time. */
void cmd_init(struct cmd *c, const struct cni_env *env, unsigned long long start_ms);

/* Validates the environment (code 4), then parses the config in buf (len
 * bytes) and CNI_ARGS. Returns 0, or -EINVAL with c->err set. */
int cmd_prepare(struct cmd *c, const char *buf, size_t len);

/* The verb's budget in ms (addTimeoutMs, delTimeoutMs, ...), after prepare. */
unsigned int cmd_budget_ms(const struct cmd *c);

/* The cniVersion to print: the request's once recognised, else "1.1.0". */
const char *cmd_version(const struct cmd *c);

/* Runs the verb. Returns 0 (c->out holds the result for ADD, NULL for the
 * others), or -EINVAL with c->err set. */
int cmd_exec(struct cmd *c);

/* ADD only: the result could not be delivered; asks the supervisor, best
 * effort and within one second, to release what this ADD created. */
void cmd_rollback(struct cmd *c);

void cmd_destroy(struct cmd *c);

#endif
