/* The installer's view of a CNI configuration file (conflist.h). */
#include "conflist.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jansson's own error, with where it stopped: "line 3, column 5: ...". */
static void json_why(char *why, const json_error_t *e)
{
	snprintf(why, CONFLIST_WHY_LEN, "not valid JSON: line %d, column %d: %s", e->line,
		 e->column, e->text);
}

/* One plugin object: an object with a non-empty string "type". */
static int check_plugin(const json_t *p, const char *where, char *why)
{
	const json_t *type = json_object_get(p, "type");

	if (!json_is_object(p)) {
		snprintf(why, CONFLIST_WHY_LEN, "%s is not an object", where);
		return -EINVAL;
	}
	if (!json_is_string(type) || json_string_length(type) == 0) {
		snprintf(why, CONFLIST_WHY_LEN, "%s has no \"type\" string", where);
		return -EINVAL;
	}
	return 0;
}

static bool is_ours(const json_t *p)
{
	const char *t = json_string_value(json_object_get(p, "type"));

	return t && strcmp(t, CONFLIST_OUR_TYPE) == 0;
}

/* The shape libcni accepts, read into cl's fields. */
static int check_shape(struct conflist *cl, char *why)
{
	const json_t *root = cl->root, *name = json_object_get(root, "name");
	const json_t *ver = json_object_get(root, "cniVersion");
	const json_t *plugins = json_object_get(root, "plugins");
	char where[32];

	if (!json_is_object(root)) {
		snprintf(why, CONFLIST_WHY_LEN, "the top level is not a JSON object");
		return -EINVAL;
	}
	if (!json_is_string(name) || json_string_length(name) == 0 ||
	    json_string_length(name) > CONFLIST_NAME_MAX) {
		snprintf(why, CONFLIST_WHY_LEN, "no \"name\" string of 1 to %d bytes",
			 CONFLIST_NAME_MAX);
		return -EINVAL;
	}
	if (ver && !json_is_string(ver)) {
		snprintf(why, CONFLIST_WHY_LEN, "\"cniVersion\" is not a string");
		return -EINVAL;
	}
	cl->name = json_string_value(name);
	cl->version = json_string_value(ver);
	if (!plugins) {
		/* A single-plugin .conf: the top level is the plugin. */
		if (check_plugin(root, "the configuration", why) < 0) {
			snprintf(why, CONFLIST_WHY_LEN,
				 "neither a \"plugins\" list nor a single plugin with a \"type\"");
			return -EINVAL;
		}
		cl->single = true;
		cl->n_plugins = 1;
		return 0;
	}
	if (!json_is_array(plugins) || json_array_size(plugins) == 0) {
		snprintf(why, CONFLIST_WHY_LEN, "\"plugins\" is not a non-empty array");
		return -EINVAL;
	}
	if (json_array_size(plugins) > CONFLIST_MAX_PLUGINS) {
		snprintf(why, CONFLIST_WHY_LEN, "more than %d plugins", CONFLIST_MAX_PLUGINS);
		return -EINVAL;
	}
	for (size_t i = 0; i < json_array_size(plugins); i++) {
		snprintf(where, sizeof(where), "plugins[%zu]", i);
		if (check_plugin(json_array_get(plugins, i), where, why) < 0)
			return -EINVAL;
	}
	cl->n_plugins = json_array_size(plugins);
	return 0;
}

int conflist_parse(const char *buf, size_t len, struct conflist *cl,
		   char why[static CONFLIST_WHY_LEN])
{
	json_error_t e;
	int ret;

	*cl = (struct conflist){0};
	if (len > CONFLIST_MAX_LEN) {
		snprintf(why, CONFLIST_WHY_LEN, "larger than %d bytes", CONFLIST_MAX_LEN);
		return -EFBIG;
	}
	if (len == 0) {
		snprintf(why, CONFLIST_WHY_LEN, "empty");
		return -EINVAL;
	}
	/* Duplicate keys would be read one way by Go's encoding/json (the
	 * last wins) and printed back as one: refused, not rewritten. */
	cl->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &e);
	if (!cl->root) {
		json_why(why, &e);
		return -EINVAL;
	}
	ret = check_shape(cl, why);
	if (ret < 0)
		conflist_destroy(cl);
	return ret;
}

void conflist_destroy(struct conflist *cl)
{
	json_decref(cl->root);
	*cl = (struct conflist){0};
}

int conflist_ours_new(const char *buf, size_t len, json_t **out, char why[static CONFLIST_WHY_LEN])
{
	json_t *conf = NULL, *ours;
	json_error_t e;
	const char *key;
	json_t *val;

	*out = NULL;
	if (buf) {
		if (len > CONFLIST_MAX_LEN) {
			snprintf(why, CONFLIST_WHY_LEN, "larger than %d bytes", CONFLIST_MAX_LEN);
			return -EINVAL;
		}
		conf = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &e);
		if (!conf) {
			json_why(why, &e);
			return -EINVAL;
		}
		if (!json_is_object(conf)) {
			snprintf(why, CONFLIST_WHY_LEN, "not a JSON object");
			json_decref(conf);
			return -EINVAL;
		}
		if (json_object_get(conf, "type")) {
			snprintf(why, CONFLIST_WHY_LEN,
				 "sets \"type\" (it is always \"" CONFLIST_OUR_TYPE "\")");
			json_decref(conf);
			return -EINVAL;
		}
	}
	ours = json_object();
	json_object_set_new(ours, "type", json_string(CONFLIST_OUR_TYPE));
	json_object_foreach(conf, key, val)
	{
		json_object_set(ours, key, val);
	}
	json_decref(conf);
	*out = ours;
	return 0;
}

size_t conflist_count_ours(const struct conflist *cl)
{
	const json_t *plugins = json_object_get(cl->root, "plugins");
	size_t n = 0;

	if (cl->single)
		return is_ours(cl->root) ? 1 : 0;
	for (size_t i = 0; i < json_array_size(plugins); i++)
		n += is_ours(json_array_get(plugins, i));
	return n;
}

bool conflist_is_multus(const struct conflist *cl)
{
	const json_t *plugins = json_object_get(cl->root, "plugins");

	for (size_t i = 0; i < (cl->single ? 1 : json_array_size(plugins)); i++) {
		const char *t = json_string_value(json_object_get(
			cl->single ? cl->root : json_array_get(plugins, i), "type"));

		if (t && (!strcmp(t, "multus") || !strcmp(t, "multus-shim")))
			return true;
	}
	return false;
}

bool conflist_inline_only(const struct conflist *cl)
{
	return json_is_true(json_object_get(cl->root, "loadOnlyInlinedPlugins"));
}

/* {"cniVersion", "name", "plugins": [the plugin minus cniVersion]}: the
 * list libcni would make of the single plugin (its ConfListFromConf). The
 * new root takes the old one's place in cl. */
static void wrap_single(struct conflist *cl)
{
	json_t *list = json_object(), *plugin = json_deep_copy(cl->root);

	if (cl->version)
		json_object_set(list, "cniVersion", json_object_get(cl->root, "cniVersion"));
	json_object_set(list, "name", json_object_get(cl->root, "name"));
	json_object_del(plugin, "cniVersion");
	json_object_set_new(list, "plugins", json_array());
	json_array_append_new(json_object_get(list, "plugins"), plugin);
	json_decref(cl->root);
	cl->root = list;
	cl->single = false;
	cl->name = json_string_value(json_object_get(list, "name"));
	cl->version = json_string_value(json_object_get(list, "cniVersion"));
	cl->n_plugins = 1;
}

int conflist_add(struct conflist *cl, const json_t *ours, bool *changed,
		 char why[static CONFLIST_WHY_LEN])
{
	json_t *plugins;
	size_t i, first = SIZE_MAX;

	*changed = false;
	if (cl->single) {
		if (is_ours(cl->root)) {
			snprintf(why, CONFLIST_WHY_LEN,
				 "a single-plugin configuration of tailscale-cni alone (it only "
				 "chains after a primary plugin)");
			return -EINVAL;
		}
		wrap_single(cl);
		*changed = true;
	}
	plugins = json_object_get(cl->root, "plugins");
	for (i = 0; i < json_array_size(plugins);) {
		if (!is_ours(json_array_get(plugins, i))) {
			i++;
		} else if (first == SIZE_MAX) {
			first = i++;
		} else {
			json_array_remove(plugins, i);
			*changed = true;
		}
	}
	if (first != SIZE_MAX) {
		if (!json_equal(json_array_get(plugins, first), (json_t *)ours)) {
			json_array_set_new(plugins, first, json_deep_copy(ours));
			*changed = true;
		}
	} else {
		if (json_array_size(plugins) >= CONFLIST_MAX_PLUGINS) {
			snprintf(why, CONFLIST_WHY_LEN, "already %d plugins, the most we edit",
				 CONFLIST_MAX_PLUGINS);
			return -E2BIG;
		}
		json_array_append_new(plugins, json_deep_copy(ours));
		*changed = true;
	}
	cl->n_plugins = json_array_size(plugins);
	return 0;
}

int conflist_remove(struct conflist *cl, bool *changed, char why[static CONFLIST_WHY_LEN])
{
	json_t *plugins = json_object_get(cl->root, "plugins");
	size_t n = conflist_count_ours(cl);

	*changed = false;
	if (n == 0)
		return 0;
	if (n == cl->n_plugins) {
		snprintf(why, CONFLIST_WHY_LEN,
			 "tailscale-cni is its only plugin: removing it would leave none");
		return -ENOTEMPTY;
	}
	for (size_t i = 0; i < json_array_size(plugins);) {
		if (is_ours(json_array_get(plugins, i)))
			json_array_remove(plugins, i);
		else
			i++;
	}
	cl->n_plugins = json_array_size(plugins);
	*changed = true;
	return 0;
}

bool conflist_is_wrap_of(const struct conflist *cl, const struct conflist *orig)
{
	struct conflist w = {.root = json_deep_copy(orig->root)}, mine = {0};
	char why[CONFLIST_WHY_LEN];
	bool changed, same;

	if (!orig->single || cl->single) {
		json_decref(w.root);
		return false;
	}
	w.single = true;
	w.name = orig->name;
	w.version = orig->version;
	w.n_plugins = 1;
	wrap_single(&w);
	mine.root = json_deep_copy(cl->root);
	mine.n_plugins = cl->n_plugins;
	if (conflist_remove(&mine, &changed, why) < 0) {
		json_decref(mine.root);
		json_decref(w.root);
		return false;
	}
	same = json_equal(mine.root, w.root);
	json_decref(mine.root);
	json_decref(w.root);
	return same;
}

/* The fewest significant digits (1..17) that print v so it reads back
 * exactly: jansson's default of 17 turns 0.1 into 0.10000000000000001. */
static int digits_for(double v)
{
	char s[40];

	for (int p = 1; p < 17; p++) {
		snprintf(s, sizeof(s), "%.*g", p, v);
		if (strtod(s, NULL) == v)
			return p;
	}
	return 17;
}

/* The most digits any real in the tree needs (0 when it has none). The
 * depth is jansson's parser's bound (2048), so recursion is bounded. */
static int max_digits(const json_t *v)
{
	const char *key;
	json_t *child;
	size_t i;
	int m = 0, d;

	if (json_is_real(v))
		return digits_for(json_real_value(v));
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, child)
		{
			d = max_digits(child);
			m = d > m ? d : m;
		}
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, child)
		{
			d = max_digits(child);
			m = d > m ? d : m;
		}
	}
	return m;
}

char *conflist_dump(const json_t *root, size_t *len)
{
	int digits = max_digits(root);
	size_t flags = JSON_INDENT(2) | JSON_REAL_PRECISION(digits ? digits : 17);
	char *text = json_dumps(root, flags), *out;
	size_t n;

	*len = 0;
	if (!text)
		return NULL;
	n = strlen(text);
	out = realloc(text, n + 2);
	if (!out) {
		free(text);
		return NULL;
	}
	out[n] = '\n';
	out[n + 1] = '\0';
	*len = n + 1;
	return out;
}
