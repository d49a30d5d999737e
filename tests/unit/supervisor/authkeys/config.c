/* The key source's options: exactly one source, each complete, tags and
 * numbers checked, a clear line naming what is wrong. */
#include "supervisor/authkeys/config.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void sources(void **state)
{
	struct authkeys_config c = {0};

	(void)state;
	assert_int_equal(authkeys_config_check(&c, false), 0);
	assert_int_equal(authkeys_config_kind(&c), AUTHKEYS_STATIC);
	assert_int_equal(authkeys_config_check(&c, true), 0);
	c.key_tags = "tag:a";
	assert_int_equal(authkeys_config_check(&c, true), -EINVAL); /* tags need a source */
	c.oauth_client_id = "kID";
	c.oauth_secret_file = "/etc/secret";
	assert_int_equal(authkeys_config_kind(&c), AUTHKEYS_OAUTH);
	assert_int_equal(authkeys_config_check(&c, false), 0);
	assert_int_equal(authkeys_config_check(&c, true), -EINVAL); /* two sources */
	c.hs_url = "http://hs";
	assert_int_equal(authkeys_config_check(&c, false), -EINVAL);
	c.hs_url = NULL;
	c.oauth_secret_env = "X";
	assert_int_equal(authkeys_config_check(&c, false), -EINVAL); /* file and env */
	c.oauth_secret_env = NULL;
	c.key_tags = NULL;
	assert_int_equal(authkeys_config_check(&c, false), -EINVAL); /* untagged */
	c.key_tags = "tag:a,tag:b-2";
	c.api_url = "https://api.example.com/";
	c.tailnet = "example.com";
	assert_int_equal(authkeys_config_check(&c, false), 0);
	c.api_url = "https://user@api.example.com";
	assert_int_equal(authkeys_config_check(&c, false), -EINVAL);
	c.api_url = "ftp://api";
	assert_int_equal(authkeys_config_check(&c, false), -EINVAL);
	c.api_url = NULL;
	c.tailnet = "a/b";
	assert_int_equal(authkeys_config_check(&c, false), -EINVAL);

	memset(&c, 0, sizeof(c));
	c.hs_url = "http://127.0.0.1:8080";
	c.hs_key_env = "HS";
	assert_int_equal(authkeys_config_check(&c, false), -EINVAL); /* no user */
	c.hs_user = "pods";
	assert_int_equal(authkeys_config_kind(&c), AUTHKEYS_HEADSCALE);
	assert_int_equal(authkeys_config_check(&c, false), 0); /* tags optional */
}

static void values(void **state)
{
	char tags[AUTHKEYS_TAGS_MAX][AUTHKEYS_TAG_MAX + 1];
	const char *why = NULL;
	unsigned int e;
	size_t n;
	bool b;

	(void)state;
	assert_int_equal(authkeys__parse_tags("tag:a,tag:b", tags, &n, &why), 0);
	assert_int_equal(n, 2);
	assert_string_equal(tags[1], "tag:b");
	assert_int_equal(authkeys__parse_tags("tag:a,", tags, &n, &why), -EINVAL);
	assert_int_equal(authkeys__parse_tags("a", tags, &n, &why), -EINVAL);
	assert_int_equal(authkeys__parse_tags("tag:a b", tags, &n, &why), -EINVAL);
	assert_int_equal(authkeys__parse_tags("tag:\"x", tags, &n, &why), -EINVAL);
	assert_int_equal(authkeys__parse_tags("tag:a,tag:a,tag:a,tag:a,tag:a,tag:a,tag:a,tag:a,"
					      "tag:a,tag:a,tag:a,tag:a,tag:a,tag:a,tag:a,tag:a,"
					      "tag:a",
					      tags, &n, &why),
			 -EINVAL);
	assert_string_equal(why, "at most 16 tags");
	assert_int_equal(authkeys__parse_expiry(NULL, &e), 0);
	assert_int_equal(e, 300);
	assert_int_equal(authkeys__parse_expiry("60", &e), 0);
	assert_int_equal(e, 60);
	assert_int_equal(authkeys__parse_expiry("0", &e), -EINVAL);
	assert_int_equal(authkeys__parse_expiry("-5", &e), -EINVAL);
	assert_int_equal(authkeys__parse_expiry("7776001", &e), -EINVAL);
	assert_int_equal(authkeys__parse_bool(NULL, true, &b), 0);
	assert_true(b);
	assert_int_equal(authkeys__parse_bool("false", true, &b), 0);
	assert_false(b);
	assert_int_equal(authkeys__parse_bool("yes", true, &b), -EINVAL);
}

/* jansson's allocations through the wiping allocator still work. */
static void wipe_alloc(void **state)
{
	json_t *j;
	char *s;

	(void)state;
	authkeys_json_wipe_init();
	j = json_pack("{s:s}", "a", "b");
	s = json_dumps(j, JSON_COMPACT);
	assert_string_equal(s, "{\"a\":\"b\"}");
	wipe_free(s);
	json_decref(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sources),
		cmocka_unit_test(values),
		cmocka_unit_test(wipe_alloc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
