/* The CNI environment: CNI_COMMAND and friends, and the K=V;K=V pairs of
 * CNI_ARGS as Kubernetes runtimes send them (docs/cni-contract.md 2.1, 2.2). */
#ifndef TSCNI_CNI_ARGS_H
#define TSCNI_CNI_ARGS_H

#include <stdbool.h>

struct cni_error;

enum cni_verb {
	CNI_VERB_NONE = 0, /* CNI_COMMAND unset or empty */
	CNI_VERB_ADD,
	CNI_VERB_DEL,
	CNI_VERB_CHECK,
	CNI_VERB_GC,
	CNI_VERB_STATUS,
	CNI_VERB_VERSION,
	CNI_VERB_UNKNOWN,
};

enum args_limits {
	ARGS_MAX_LEN = 64 * 1024, /* CNI_ARGS as a whole */
};

/* The variables as received. Each pointer is NULL when the variable is unset
 * or empty (an empty value counts as unset), and otherwise points into the
 * process environment (or whatever the getter returned); nothing is owned. */
struct cni_env {
	enum cni_verb verb;
	const char *command;
	const char *container_id;
	const char *netns;
	const char *ifname;
	const char *args;
	const char *path;
	bool netns_override; /* CNI_NETNS_OVERRIDE=1|true: a test hook (1.4) */
};

typedef char *args_getenv_fn(const char *name);

/* Fills env from get (getenv in the binary, a table in tests). */
void args_env_load(struct cni_env *env, args_getenv_fn *get);

/* "ADD", "DEL", ... exactly in upper case; anything else is
 * CNI_VERB_UNKNOWN, NULL or "" is CNI_VERB_NONE. */
enum cni_verb args_verb_parse(const char *s);
const char *args_verb_name(enum cni_verb verb);

/* Checks the variables env->verb requires and reports every missing or
 * invalid one in a single code-4 error whose msg names them all. VERSION and
 * NONE need nothing; GC and STATUS need nothing but the command. Returns 0,
 * or -EINVAL with err filled. */
int args_env_validate(const struct cni_env *env, struct cni_error *err);

/* The K8S_ metadata from CNI_ARGS. Each field is NULL when absent; otherwise
 * a malloc'd copy owned by the struct (args_destroy frees them). */
struct cni_args {
	char *pod_namespace;
	char *pod_name;
	char *pod_uid;
	char *infra_container_id;
	bool ignore_unknown;
	/* Pairs that were malformed (no '=', empty key) or carried a K8S_ value
	 * that is empty, too long or not of the form ^[A-Za-z0-9][A-Za-z0-9_.-]*$:
	 * ignored, counted here so the caller can log one warning. */
	unsigned int malformed;
};

/* Parses s ("K=V;K=V", any order, NULL allowed). Pairs split on ';', each
 * on its first '='; empty segments are skipped; unknown keys are always
 * ignored (a chained plugin must not reject keys meant for another). Returns
 * 0, or -E2BIG when s is longer than ARGS_MAX_LEN (nothing parsed). */
int args_parse(const char *s, struct cni_args *a);
void args_destroy(struct cni_args *a);

#endif
