/* CNI error objects. */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mem.h"

int error_set(struct cni_error *e, unsigned int code, const char *msg, const char *details_fmt, ...)
{
	va_list ap;

	e->code = code;
	strscpy(e->msg, msg ? msg : "", sizeof(e->msg));
	e->details[0] = '\0';
	if (details_fmt) {
		va_start(ap, details_fmt);
		vsnprintf(e->details, sizeof(e->details), details_fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* A JSON string for s. Text from the supervisor or the environment may hold
 * bytes that are not UTF-8 (jansson refuses those); then every byte outside
 * printable ASCII is replaced by '?', which keeps the message readable and the
 * output parseable. */
static json_t *safe_string(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j)
		return j;
	copy = xstrdup(s);
	for (char *p = copy; *p; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	}
	j = json_string(copy);
	free(copy);
	return j;
}

char *error_format(const struct cni_error *e, const char *cni_version, size_t *len)
{
	json_t *obj = json_object();
	char *text, *out;
	size_t n;

	json_object_set_new(obj, "cniVersion", json_string(cni_version ? cni_version : "1.1.0"));
	json_object_set_new(obj, "code", json_integer(e->code));
	json_object_set_new(obj, "msg", safe_string(e->msg[0] ? e->msg : "tailscale-cni failed"));
	if (e->details[0])
		json_object_set_new(obj, "details", safe_string(e->details));
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!text)
		abort();
	n = strlen(text);
	out = xmalloc(n + 2);
	memcpy(out, text, n);
	out[n] = '\n';
	out[n + 1] = '\0';
	free(text);
	*len = n + 1;
	return out;
}
