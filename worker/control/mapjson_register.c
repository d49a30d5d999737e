/* tailcfg.RegisterResponse: what the login decides on. */
#include "mapjson_internal.h"

#include <errno.h>
#include <stdlib.h>

#include "mem.h"

int mapjson_parse_register_response(const char *json, size_t len,
				    struct mapjson_register_response **out, const char **why)
{
	struct mapjson_register_response *r = xcalloc(1, sizeof(*r));
	const json_t *user, *login, *sig;
	json_t *root;
	int ret = -EBADMSG;

	*out = NULL;
	root = mapjson__load(json, len, MAPJSON_MAX_REGISTER_RESPONSE, why);
	if (!root)
		goto err;
	if ((ret = mapjson__get_object(root, "User", 1 << 10, &user, "bad RegisterResponse User",
				       why)) < 0 ||
	    (ret = mapjson__get_object(root, "Login", 1 << 10, &login, "bad RegisterResponse Login",
				       why)) < 0)
		goto err;
	if (user && (ret = mapjson__get_int64(user, "ID", INT64_MIN, INT64_MAX, &r->user_id,
					      "bad RegisterResponse User.ID", why)) < 0)
		goto err;
	if (login)
		ret = mapjson__get_string(login, "LoginName", &r->login_name,
					  "bad RegisterResponse Login.LoginName", why);
	else
		r->login_name = xstrdup("");
	if (ret < 0)
		goto err;
	if ((ret = mapjson__get_bool(root, "NodeKeyExpired", &r->node_key_expired,
				     "bad RegisterResponse NodeKeyExpired", why)) < 0 ||
	    (ret = mapjson__get_bool(root, "MachineAuthorized", &r->machine_authorized,
				     "bad RegisterResponse MachineAuthorized", why)) < 0 ||
	    (ret = mapjson__get_string(root, "AuthURL", &r->auth_url,
				       "bad RegisterResponse AuthURL", why)) < 0 ||
	    (ret = mapjson__get_string(root, "Error", &r->error, "bad RegisterResponse Error",
				       why)) < 0)
		goto err;
	/* tkatype.MarshaledSignature: base64 bytes; any non-empty value means
	 * tailnet lock wants a re-signature. */
	sig = json_object_get(root, "NodeKeySignature");
	if (!mapjson__absent(sig)) {
		if (!json_is_string(sig)) {
			*why = "bad RegisterResponse NodeKeySignature";
			ret = -EBADMSG;
			goto err;
		}
		r->has_node_key_signature = json_string_length(sig) > 0;
	}
	json_decref(root);
	*out = r;
	return 0;
err:
	json_decref(root);
	mapjson_register_response_free(r);
	return ret < 0 ? ret : -EBADMSG;
}

void mapjson_register_response_free(struct mapjson_register_response *r)
{
	if (!r)
		return;
	free(r->login_name);
	free(r->auth_url);
	free(r->error);
	free(r);
}
