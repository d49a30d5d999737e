/* stdin JSON -> struct conf. */
#include "conf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "mem.h"
#include "validate.h"

const char *const conf_version_names[CNI_V_COUNT] = {
	[CNI_V030] = "0.3.0", [CNI_V031] = "0.3.1", [CNI_V040] = "0.4.0",
	[CNI_V100] = "1.0.0", [CNI_V110] = "1.1.0",
};

int conf_version_parse(const char *s, enum cni_version *out)
{
	for (int v = 0; v < CNI_V_COUNT; v++) {
		if (strcmp(s, conf_version_names[v]) == 0) {
			*out = (enum cni_version)v;
			return 0;
		}
	}
	return -EINVAL;
}

/* Bounds what jansson is asked to build: nesting depth and a rough count of
 * values (one per '[', '{' and ',' outside strings), so a 4 MiB "[1,1,1,...]"
 * cannot make the plugin allocate hundreds of megabytes. Raw NUL bytes are
 * refused here too: jansson stops at none of them on its own when given a
 * length, and a C string cannot hold them. */
static int precheck(const char *buf, size_t len, const char **why)
{
	bool in_str = false, esc = false;
	size_t depth = 0, tokens = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = buf[i];

		if (ch == '\0') {
			*why = "NUL byte in input";
			return -EBADMSG;
		}
		if (in_str) {
			if (esc)
				esc = false;
			else if (ch == '\\')
				esc = true;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		switch (ch) {
		case '"':
			in_str = true;
			break;
		case '[':
		case '{':
			if (++depth > CONF_MAX_DEPTH) {
				*why = "JSON nested deeper than 64 levels";
				return -EBADMSG;
			}
			tokens++;
			break;
		case ']':
		case '}':
			if (depth > 0)
				depth--;
			break;
		case ',':
			tokens++;
			break;
		default:
			break;
		}
		if (tokens > CONF_MAX_TOKENS) {
			*why = "JSON holds too many values";
			return -EBADMSG;
		}
	}
	return 0;
}

static json_t *load(const char *buf, size_t len, struct cni_error *err)
{
	const char *why = NULL;
	json_error_t jerr;
	json_t *root;

	if (len == 0) {
		if (err)
			error_set(err, CNI_ERR_DECODE, "failed to decode the network configuration",
				  "stdin is empty; expected a JSON object");
		return NULL;
	}
	if (precheck(buf, len, &why) < 0) {
		if (err)
			error_set(err, CNI_ERR_DECODE, "failed to decode the network configuration",
				  "%s", why);
		return NULL;
	}
	root = json_loadb(buf, len, 0, &jerr);
	if (!root) {
		if (err)
			error_set(err, CNI_ERR_DECODE, "failed to decode the network configuration",
				  "line %d column %d: %s", jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		if (err)
			error_set(err, CNI_ERR_DECODE, "failed to decode the network configuration",
				  "stdin must be a JSON object");
		return NULL;
	}
	return root;
}

const char *conf_peek_version(const char *buf, size_t len)
{
	json_t *root = load(buf, len, NULL);
	const char *name = NULL;
	enum cni_version v;
	json_t *jv;

	if (!root)
		return NULL;
	jv = json_object_get(root, "cniVersion");
	if (json_is_string(jv) && conf_version_parse(json_string_value(jv), &v) == 0)
		name = conf_version_names[v];
	json_decref(root);
	return name;
}

/* A key that is absent or JSON null: the default applies. */
static json_t *opt(json_t *root, const char *key)
{
	json_t *v = json_object_get(root, key);

	return json_is_null(v) ? NULL : v;
}

static int get_string(json_t *root, const char *key, const char **out, struct cni_error *err)
{
	json_t *v = opt(root, key);

	if (!v)
		return 0;
	if (!json_is_string(v))
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "%s must be a string", key);
	*out = json_string_value(v);
	return 0;
}

static int get_bool(json_t *root, const char *key, bool *out, struct cni_error *err)
{
	json_t *v = opt(root, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "%s must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int get_ms(json_t *root, const char *key, unsigned int *out, struct cni_error *err)
{
	json_t *v = opt(root, key);
	json_int_t n;

	if (!v)
		return 0;
	n = json_is_integer(v) ? json_integer_value(v) : -1;
	if (n < 1 || n > CONF_MAX_TIMEOUT_MS)
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "%s must be a whole number of milliseconds from 1 to %d", key,
				 CONF_MAX_TIMEOUT_MS);
	*out = (unsigned int)n;
	return 0;
}

/* "1.5s": digits, an optional fraction, a unit of ms, s or m. */
static int parse_duration_text(const char *s, unsigned int *ms, const char **why)
{
	unsigned long long whole = 0, frac = 0, scale = 1, unit;
	const char *p = s;

	if (*p < '0' || *p > '9') {
		*why = "syncTimeout must start with a digit, e.g. \"3s\" or \"500ms\"";
		return -EINVAL;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (unsigned long long)(*p - '0');
		if (whole > CONF_MAX_TIMEOUT_MS) {
			*why = "syncTimeout is too large";
			return -EINVAL;
		}
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9') {
			*why = "syncTimeout has a '.' without digits after it";
			return -EINVAL;
		}
		for (; *p >= '0' && *p <= '9'; p++) {
			if (scale < 1000000) {
				frac = frac * 10 + (unsigned long long)(*p - '0');
				scale *= 10;
			}
		}
	}
	if (strcmp(p, "ms") == 0) {
		unit = 1;
	} else if (strcmp(p, "s") == 0) {
		unit = 1000;
	} else if (strcmp(p, "m") == 0) {
		unit = 60000;
	} else {
		*why = "syncTimeout needs a unit of ms, s or m, e.g. \"3s\" or \"500ms\"";
		return -EINVAL;
	}
	whole = whole * unit + frac * unit / scale;
	if (whole > CONF_MAX_TIMEOUT_MS) {
		*why = "syncTimeout is too large (at most 60s)";
		return -EINVAL;
	}
	*ms = (unsigned int)whole;
	return 0;
}

int conf_duration_ms(const json_t *v, unsigned int *ms, const char **why)
{
	double secs;

	if (json_is_string(v))
		return parse_duration_text(json_string_value(v), ms, why);
	if (!json_is_number(v)) {
		*why = "syncTimeout must be a number of seconds or a string such as \"3s\"";
		return -EINVAL;
	}
	secs = json_number_value(v);
	if (!(secs >= 0) || secs * 1000.0 > CONF_MAX_TIMEOUT_MS) {
		*why = "syncTimeout must be from 0 to 60 seconds";
		return -EINVAL;
	}
	*ms = (unsigned int)(secs * 1000.0 + 0.5);
	return 0;
}

static int parse_version(json_t *root, enum cni_verb verb, struct conf *c, struct cni_error *err)
{
	json_t *v = json_object_get(root, "cniVersion");
	static const char *const need[] = {
		[CNI_VERB_CHECK] = "0.4.0", [CNI_VERB_GC] = "1.1.0", [CNI_VERB_STATUS] = "1.1.0"};

	if (!v)
		return error_set(err, CNI_ERR_VERSION, "incompatible CNI version",
				 "cniVersion is missing (meaning 0.1.0); supported versions: "
				 "0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
	if (!json_is_string(v))
		return error_set(err, CNI_ERR_DECODE, "failed to decode the network configuration",
				 "cniVersion must be a string");
	if (conf_version_parse(json_string_value(v), &c->version) < 0) {
		char esc[64];

		log_escape(esc, sizeof(esc), json_string_value(v), json_string_length(v));
		return error_set(err, CNI_ERR_VERSION, "incompatible CNI version",
				 "config is \"%s\"; supported versions: 0.3.0, 0.3.1, 0.4.0, "
				 "1.0.0, 1.1.0",
				 esc);
	}
	c->cni_version = conf_version_names[c->version];
	if ((verb == CNI_VERB_CHECK && c->version < CNI_V040) ||
	    ((verb == CNI_VERB_GC || verb == CNI_VERB_STATUS) && c->version < CNI_V110))
		return error_set(err, CNI_ERR_VERSION, "incompatible CNI version",
				 "config version %s does not allow %s (needs %s or later)",
				 c->cni_version, args_verb_name(verb), need[verb]);
	return 0;
}

static int parse_name(json_t *root, struct conf *c, struct cni_error *err)
{
	json_t *v = json_object_get(root, "name");
	char esc[64];

	if (!json_is_string(v))
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "name is %s; it must be a string", v ? "not a string" : "missing");
	c->name = json_string_value(v);
	if (!valid_name(c->name, NAME_MAX_LEN)) {
		log_escape(esc, sizeof(esc), c->name, json_string_length(v));
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "name \"%s\" must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$", esc);
	}
	return 0;
}

static bool has_dotdot(const char *path)
{
	for (const char *p = path; (p = strstr(p, "..")); p += 2) {
		if ((p == path || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
			return true;
	}
	return false;
}

static int check_path(const char *key, const char *path, size_t max, struct cni_error *err)
{
	if (!valid_abs_path(path) || strlen(path) > max || has_dotdot(path))
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "%s must be an absolute path without \"..\" of at most %zu bytes",
				 key, max);
	return 0;
}

static int parse_choice(json_t *root, const char *key, const char *a, const char *b, bool *is_b,
			struct cni_error *err)
{
	const char *s = NULL;

	if (get_string(root, key, &s, err) < 0)
		return -EINVAL;
	if (!s)
		return 0;
	if (strcmp(s, a) == 0)
		*is_b = false;
	else if (strcmp(s, b) == 0)
		*is_b = true;
	else
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "%s must be \"%s\" or \"%s\"", key, a, b);
	return 0;
}

static int parse_log_level(json_t *root, struct conf *c, struct cni_error *err)
{
	const char *s = NULL;

	if (get_string(root, "logLevel", &s, err) < 0)
		return -EINVAL;
	if (!s)
		return 0;
	if (strcmp(s, "error") == 0)
		s = "err";
	else if (strcmp(s, "warning") == 0)
		s = "warn";
	if (log_level_parse(s, &c->log_level) < 0)
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "logLevel must be \"error\", \"warn\", \"info\" or \"debug\"");
	return 0;
}

static int parse_sync_timeout(json_t *root, struct conf *c, struct cni_error *err)
{
	json_t *v = opt(root, "syncTimeout");
	const char *why = NULL;

	if (!v) {
		/* The default (3 s) yields to a short addTimeoutMs rather than
		 * failing a config that never mentioned syncTimeout. */
		if (c->sync_timeout_ms >= c->add_timeout_ms)
			c->sync_timeout_ms = c->add_timeout_ms / 2;
		return 0;
	}
	if (conf_duration_ms(v, &c->sync_timeout_ms, &why) < 0)
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration", "%s", why);
	if (c->sync_timeout_ms >= c->add_timeout_ms)
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "syncTimeout (%u ms) must be shorter than addTimeoutMs (%u ms)",
				 c->sync_timeout_ms, c->add_timeout_ms);
	return 0;
}

static int parse_keys(json_t *root, const char *ifname, struct conf *c, struct cni_error *err)
{
	json_t *ipam = opt(root, "ipam");

	if (ipam) {
		char *text = json_dumps(ipam, JSON_COMPACT | JSON_ENCODE_ANY);

		error_set(err, CNI_ERR_UNSUPPORTED_FIELD, "unsupported field: ipam",
			  "ipam = %.200s: tailscale-cni assigns addresses itself and never "
			  "delegates IPAM; remove the key",
			  text ? text : "?");
		free(text);
		return -EINVAL;
	}
	if (get_string(root, "socketPath", &c->socket_path, err) < 0 ||
	    check_path("socketPath", c->socket_path, CONF_SOCKET_PATH_MAX, err) < 0)
		return -EINVAL;
	if (get_string(root, "stateDir", &c->state_dir, err) < 0 ||
	    check_path("stateDir", c->state_dir, CONF_STATE_DIR_MAX, err) < 0)
		return -EINVAL;
	if (get_string(root, "logFile", &c->log_file, err) < 0 ||
	    (c->log_file && check_path("logFile", c->log_file, PATH_MAX_LEN, err) < 0))
		return -EINVAL;
	if (get_string(root, "interfaceName", &c->interface_name, err) < 0)
		return -EINVAL;
	if (!valid_ifname(c->interface_name))
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "interfaceName must be 1-15 bytes, not . or .., without /, : or "
				 "whitespace");
	if (ifname && strcmp(ifname, c->interface_name) == 0)
		return error_set(err, CNI_ERR_CONFIG, "invalid network configuration",
				 "interfaceName \"%s\" is the primary plugin's CNI_IFNAME; choose "
				 "another name",
				 c->interface_name);
	if (get_ms(root, "addTimeoutMs", &c->add_timeout_ms, err) < 0 ||
	    get_ms(root, "delTimeoutMs", &c->del_timeout_ms, err) < 0 ||
	    get_ms(root, "checkTimeoutMs", &c->check_timeout_ms, err) < 0 ||
	    get_ms(root, "statusTimeoutMs", &c->status_timeout_ms, err) < 0 ||
	    get_ms(root, "gcTimeoutMs", &c->gc_timeout_ms, err) < 0)
		return -EINVAL;
	if (parse_sync_timeout(root, c, err) < 0)
		return -EINVAL;
	if (parse_choice(root, "failurePolicy", "fail", "ignore", &c->fail_open, err) < 0 ||
	    parse_choice(root, "selection", "all", "annotation", &c->select_annotation, err) < 0)
		return -EINVAL;
	if (get_bool(root, "reportIPs", &c->report_ips, err) < 0 ||
	    get_bool(root, "allowOverlap", &c->allow_overlap, err) < 0)
		return -EINVAL;
	return parse_log_level(root, c, err);
}

static int parse_runtime(json_t *root, struct conf *c, struct cni_error *err)
{
	json_t *prev = opt(root, "prevResult");
	json_t *rc = opt(root, "runtimeConfig");
	json_t *ann;

	if (prev && !json_is_object(prev))
		return error_set(err, CNI_ERR_DECODE, "failed to decode prevResult",
				 "prevResult must be a JSON object");
	c->prev_result = prev;
	/* runtimeConfig only carries what the runtime chose to supply: a
	 * shape we do not expect means "no annotations". */
	ann = json_is_object(rc) ? json_object_get(rc, CONF_ANNOTATIONS_KEY) : NULL;
	c->annotations = json_is_object(ann) ? ann : NULL;
	return 0;
}

static int parse_gc(json_t *root, struct conf *c, struct cni_error *err)
{
	json_t *list = opt(root, "cni.dev/valid-attachments");
	size_t i;
	json_t *e;

	if (!list)
		list = opt(root, "cni.dev/attachments");
	if (!list)
		return 0;
	if (!json_is_array(list))
		return error_set(err, CNI_ERR_DECODE, "failed to decode the GC attachment list",
				 "cni.dev/valid-attachments must be an array");
	if (json_array_size(list) > GC_MAX_ATTACHMENTS)
		return error_set(err, CNI_ERR_CONFIG, "GC attachment list too long",
				 "%zu entries; at most %d", json_array_size(list),
				 GC_MAX_ATTACHMENTS);
	json_array_foreach(list, i, e)
	{
		json_t *id = json_object_get(e, "containerID");
		json_t *ifn = json_object_get(e, "ifname");

		/* An entry we cannot read must fail the GC: skipping it would
		 * release an attachment the runtime still uses. */
		if (!json_is_string(id) || !json_is_string(ifn) ||
		    !valid_name(json_string_value(id), CONTAINER_ID_MAX_LEN) ||
		    !valid_ifname(json_string_value(ifn)))
			return error_set(
				err, CNI_ERR_DECODE, "failed to decode the GC attachment list",
				"entry %zu needs a valid \"containerID\" and \"ifname\"", i);
	}
	c->gc_attachments = list;
	return 0;
}

int conf_parse(const char *buf, size_t len, enum cni_verb verb, const char *ifname, struct conf *c,
	       struct cni_error *err)
{
	json_t *root;

	*c = (struct conf){
		.socket_path = CONF_DEFAULT_SOCKET,
		.state_dir = CONF_DEFAULT_STATE_DIR,
		.interface_name = CONF_DEFAULT_IFNAME,
		.log_level = LOG_WARN,
		.add_timeout_ms = 20000,
		.del_timeout_ms = 5000,
		.check_timeout_ms = 5000,
		.status_timeout_ms = 1000,
		.gc_timeout_ms = 25000,
		.sync_timeout_ms = 3000,
		.report_ips = true,
		/* ts0's routes stay off the pod's own networks (the supervisor's
		 * netops_routes_plan), so a cluster range inside 100.64.0.0/10
		 * is safe; "allowOverlap": false refuses one at ADD. */
		.allow_overlap = true,
	};
	root = load(buf, len, err);
	if (!root)
		goto err;
	c->root = root;
	if (parse_version(root, verb, c, err) < 0 || parse_name(root, c, err) < 0 ||
	    parse_keys(root, ifname, c, err) < 0 || parse_runtime(root, c, err) < 0)
		goto err;
	if (verb == CNI_VERB_GC && parse_gc(root, c, err) < 0)
		goto err;
	return 0;
err:
	conf_destroy(c);
	return -EINVAL;
}

void conf_destroy(struct conf *c)
{
	json_decref(c->root);
	c->root = NULL;
	c->prev_result = c->annotations = c->gc_attachments = NULL;
}

bool conf_pod_selected(const struct conf *c)
{
	json_t *v = c->annotations ? json_object_get(c->annotations, CONF_ENABLED_KEY) : NULL;
	const char *s = json_is_string(v) ? json_string_value(v) : NULL;

	/* selection "all": every pod but those that opt out; "annotation":
	 * only those that opt in. Any other value is neither. */
	if (!c->select_annotation)
		return !s || strcmp(s, "false") != 0;
	return s && strcmp(s, "true") == 0;
}
