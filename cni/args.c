/* The CNI environment and CNI_ARGS. */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "log.h"
#include "mem.h"
#include "validate.h"

static const char *const verb_names[] = {
	[CNI_VERB_NONE] = "",		[CNI_VERB_ADD] = "ADD",	  [CNI_VERB_DEL] = "DEL",
	[CNI_VERB_CHECK] = "CHECK",	[CNI_VERB_GC] = "GC",	  [CNI_VERB_STATUS] = "STATUS",
	[CNI_VERB_VERSION] = "VERSION", [CNI_VERB_UNKNOWN] = "?",
};

static const char *nonempty(const char *s)
{
	return s && *s ? s : NULL;
}

void args_env_load(struct cni_env *env, args_getenv_fn *get)
{
	const char *ov;

	*env = (struct cni_env){0};
	env->command = nonempty(get("CNI_COMMAND"));
	env->container_id = nonempty(get("CNI_CONTAINERID"));
	env->netns = nonempty(get("CNI_NETNS"));
	env->ifname = nonempty(get("CNI_IFNAME"));
	env->args = nonempty(get("CNI_ARGS"));
	env->path = nonempty(get("CNI_PATH"));
	ov = nonempty(get("CNI_NETNS_OVERRIDE"));
	env->netns_override = ov && (strcmp(ov, "1") == 0 || strcasecmp(ov, "true") == 0);
	env->verb = args_verb_parse(env->command);
}

enum cni_verb args_verb_parse(const char *s)
{
	if (!s || !*s)
		return CNI_VERB_NONE;
	for (int v = CNI_VERB_ADD; v <= CNI_VERB_VERSION; v++) {
		if (strcmp(s, verb_names[v]) == 0)
			return (enum cni_verb)v;
	}
	return CNI_VERB_UNKNOWN;
}

const char *args_verb_name(enum cni_verb verb)
{
	if ((unsigned int)verb > CNI_VERB_UNKNOWN)
		return "?";
	return verb_names[verb];
}

/* Appends "<name>" to the list of bad names and "<name> <problem>" to the
 * details, "; "-separated. Both buffers stay NUL-terminated. */
static void note_bad(char *names, size_t nn, char *details, size_t nd, const char *name,
		     const char *problem, const char *value)
{
	char esc[80];
	size_t ln = strlen(names), ld = strlen(details);

	snprintf(names + ln, nn - ln, "%s%s", ln ? ", " : "", name);
	if (value) {
		log_escape(esc, sizeof(esc), value, strlen(value));
		snprintf(details + ld, nd - ld, "%s%s %s (\"%s\")", ld ? "; " : "", name, problem,
			 esc);
	} else {
		snprintf(details + ld, nd - ld, "%s%s %s", ld ? "; " : "", name, problem);
	}
}

int args_env_validate(const struct cni_env *env, struct cni_error *err)
{
	char names[160] = "", details[CNI_ERR_DETAILS_LEN] = "", esc[80];
	bool need_id = false, need_netns = false;

	switch (env->verb) {
	case CNI_VERB_NONE:
	case CNI_VERB_VERSION:
	case CNI_VERB_GC:
	case CNI_VERB_STATUS:
		return 0;
	case CNI_VERB_ADD:
	case CNI_VERB_CHECK:
		need_id = need_netns = true;
		break;
	case CNI_VERB_DEL:
		need_id = true;
		break;
	case CNI_VERB_UNKNOWN:
		log_escape(esc, sizeof(esc), env->command, strlen(env->command));
		return error_set(
			err, CNI_ERR_ENV, "unknown CNI_COMMAND",
			"%s is not one of ADD, DEL, CHECK, GC, STATUS or VERSION (in upper "
			"case)",
			esc);
	}
	if (need_id) {
		if (!env->container_id)
			note_bad(names, sizeof(names), details, sizeof(details), "CNI_CONTAINERID",
				 "is missing", NULL);
		else if (!valid_name(env->container_id, CONTAINER_ID_MAX_LEN))
			note_bad(names, sizeof(names), details, sizeof(details), "CNI_CONTAINERID",
				 "must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$ (at most 4096 bytes)",
				 env->container_id);
	}
	if (need_netns) {
		if (!env->netns)
			note_bad(names, sizeof(names), details, sizeof(details), "CNI_NETNS",
				 "is missing", NULL);
		else if (!valid_abs_path(env->netns))
			note_bad(names, sizeof(names), details, sizeof(details), "CNI_NETNS",
				 "must be an absolute path", env->netns);
	}
	if (!env->ifname)
		note_bad(names, sizeof(names), details, sizeof(details), "CNI_IFNAME", "is missing",
			 NULL);
	else if (!valid_ifname(env->ifname))
		note_bad(names, sizeof(names), details, sizeof(details), "CNI_IFNAME",
			 "must be 1-15 bytes, not . or .., without /, : or whitespace",
			 env->ifname);
	if (!names[0])
		return 0;
	error_set(err, CNI_ERR_ENV, "", "%s", details);
	snprintf(err->msg, sizeof(err->msg), "missing or invalid environment variables: %s", names);
	return -EINVAL;
}

/* A K8S_ value worth passing on: namespaces, names, UIDs and container ids
 * all match ^[A-Za-z0-9][A-Za-z0-9_.-]*$ within max bytes, which is also
 * what the supervisor accepts. */
static void take(char **slot, const char *v, size_t len, size_t max, unsigned int *malformed)
{
	char *copy;

	if (len == 0 || len > max) {
		(*malformed)++;
		return;
	}
	copy = xstrndup(v, len);
	if (!valid_name(copy, max)) {
		free(copy);
		(*malformed)++;
		return;
	}
	/* Duplicate keys: the last one wins, as with the reference parser. */
	free(*slot);
	*slot = copy;
}

static bool key_is(const char *k, size_t klen, const char *want)
{
	return klen == strlen(want) && memcmp(k, want, klen) == 0;
}

int args_parse(const char *s, struct cni_args *a)
{
	const char *p, *end;

	*a = (struct cni_args){0};
	if (!s)
		return 0;
	if (strlen(s) > ARGS_MAX_LEN)
		return -E2BIG;
	for (p = s; *p; p = *end ? end + 1 : end) {
		const char *eq, *v;
		size_t klen, vlen;

		end = strchrnul(p, ';');
		if (end == p)
			continue; /* empty segment, "a=b;;c=d" */
		eq = memchr(p, '=', (size_t)(end - p));
		if (!eq || eq == p) {
			a->malformed++;
			continue;
		}
		klen = (size_t)(eq - p);
		v = eq + 1;
		vlen = (size_t)(end - v);
		if (key_is(p, klen, "K8S_POD_NAMESPACE"))
			take(&a->pod_namespace, v, vlen, POD_FIELD_MAX_LEN, &a->malformed);
		else if (key_is(p, klen, "K8S_POD_NAME"))
			take(&a->pod_name, v, vlen, POD_FIELD_MAX_LEN, &a->malformed);
		else if (key_is(p, klen, "K8S_POD_UID"))
			take(&a->pod_uid, v, vlen, POD_FIELD_MAX_LEN, &a->malformed);
		else if (key_is(p, klen, "K8S_POD_INFRA_CONTAINER_ID"))
			take(&a->infra_container_id, v, vlen, CONTAINER_ID_MAX_LEN, &a->malformed);
		else if (key_is(p, klen, "IgnoreUnknown"))
			a->ignore_unknown = (vlen == 1 && v[0] == '1') ||
					    (vlen == 4 && strncasecmp(v, "true", 4) == 0);
		/* Every other key belongs to someone else: ignored whatever
		 * IgnoreUnknown says. A value holding '=' ("a=b=c") is kept
		 * whole, since only the first '=' splits. */
	}
	return 0;
}

void args_destroy(struct cni_args *a)
{
	free(a->pod_namespace);
	free(a->pod_name);
	free(a->pod_uid);
	free(a->infra_container_id);
	*a = (struct cni_args){0};
}
