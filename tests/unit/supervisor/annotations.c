/* annotations_parse and friends: a pod's tailscale-cni.io/tags and
 * tailscale-cni.io/hostname, checked against upstream's tag rules
 * (tailcfg.CheckTag), the operator's --allowed-tags and a DNS label. */
#include "supervisor/annotations.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* An allowed set from a list, as --allowed-tags builds it. */
static void allow(struct tag_set *set, const char *list)
{
	char why[ANNOTATIONS_WHY_LEN];

	memset(set, 0, sizeof(*set));
	assert_int_equal(annotations_tags_add(set, list, NULL, why, sizeof(why)), 0);
}

/* annotations_parse over key/value pairs (NULL-terminated). */
static int parse(const struct tag_set *allowed, struct pod_choice *out, char *why, size_t len,
		 const char *const *kv)
{
	Tscni__Annotation a[8], *p[8];
	size_t n = 0;

	for (; kv[2 * n]; n++) {
		tscni__annotation__init(&a[n]);
		a[n].key = (char *)kv[2 * n];
		a[n].value = (char *)kv[2 * n + 1];
		p[n] = &a[n];
	}
	why[0] = '\0';
	return annotations_parse(p, n, allowed, out, why, len);
}

/* Upstream's CheckTag, case by case (number, tag, valid, upstream's reason). */
static const struct {
	const char *tag;
	bool ok;
	const char *why;
} tag_vectors[] = {
	/* 0 */ {"tag:web", true, NULL},
	/* 1 */ {"tag:Web-2", true, NULL},
	/* 2 */ {"tag:a", true, NULL},
	/* 3 */ {"web", false, "tags must start with 'tag:'"},
	/* 4 */ {"Tag:web", false, "tags must start with 'tag:'"},
	/* 5 */ {"tag:", false, "tag names must not be empty"},
	/* 6 */ {"tag:1web", false, "tag names must start with a letter, after 'tag:'"},
	/* 7 */ {"tag:-web", false, "tag names must start with a letter, after 'tag:'"},
	/* 8 */ {"tag:we_b", false, "tag names can only contain numbers, letters, or dashes"},
	/* 9 */ {"tag:we b", false, "tag names can only contain numbers, letters, or dashes"},
	/* 10 */ {"tag:wéb", false, "tag names can only contain numbers, letters, or dashes"},
	/* 11 */ {"tag:web:80", false, "tag names can only contain numbers, letters, or dashes"},
};

static void test_valid_tag_vectors(void **state)
{
	for (size_t i = 0; i < sizeof(tag_vectors) / sizeof(tag_vectors[0]); i++) {
		const char *why = NULL;

		print_message("vector %zu: %s\n", i, tag_vectors[i].tag);
		assert_int_equal(valid_tag(tag_vectors[i].tag, &why), tag_vectors[i].ok);
		if (!tag_vectors[i].ok)
			assert_string_equal(why, tag_vectors[i].why);
	}
}

static void test_tag_length_bound(void **state)
{
	char t[TAG_MAX_LEN + 2];
	const char *why = NULL;

	memcpy(t, "tag:", 4);
	memset(t + 4, 'a', TAG_MAX_LEN - 4);
	t[TAG_MAX_LEN] = '\0';
	assert_true(valid_tag(t, &why));
	t[TAG_MAX_LEN] = 'a';
	t[TAG_MAX_LEN + 1] = '\0';
	assert_false(valid_tag(t, &why));
	assert_string_equal(why, "tags are at most 128 bytes");
}

static void test_allowed_list(void **state)
{
	struct tag_set set;
	char why[ANNOTATIONS_WHY_LEN];

	/* Commas, blanks around items, a repeat, and a second option. */
	allow(&set, " tag:web ,tag:db,tag:web");
	assert_int_equal(annotations_tags_add(&set, "tag:cache", NULL, why, sizeof(why)), 0);
	assert_int_equal(set.n, 3);
	assert_string_equal(set.v[0], "tag:web");
	assert_string_equal(set.v[1], "tag:db");
	assert_string_equal(set.v[2], "tag:cache");
	/* A bad item names itself and leaves the set as it was. */
	assert_int_equal(annotations_tags_add(&set, "tag:x,admin", NULL, why, sizeof(why)),
			 -EINVAL);
	assert_string_equal(why, "\"admin\" is not a tag: tags must start with 'tag:'");
	assert_int_equal(set.n, 3);
	assert_int_equal(annotations_tags_add(&set, "tag:x,,tag:y", NULL, why, sizeof(why)),
			 -EINVAL);
	assert_string_equal(why, "an empty tag in \"tag:x,,tag:y\"");
	assert_int_equal(annotations_tags_add(&set, "tag:x,", NULL, why, sizeof(why)), -EINVAL);
	assert_int_equal(set.n, 3);
}

static void test_allowed_at_most_64(void **state)
{
	struct tag_set set = {.n = 0};
	char why[ANNOTATIONS_WHY_LEN], t[16];

	for (int i = 0; i < POD_TAGS_MAX; i++) {
		snprintf(t, sizeof(t), "tag:t%d", i);
		assert_int_equal(annotations_tags_add(&set, t, NULL, why, sizeof(why)), 0);
	}
	/* A repeat still fits; a 65th does not. */
	assert_int_equal(annotations_tags_add(&set, "tag:t0", NULL, why, sizeof(why)), 0);
	assert_int_equal(annotations_tags_add(&set, "tag:t64", NULL, why, sizeof(why)), -EINVAL);
	assert_string_equal(why, "more than 64 tags");
	assert_int_equal(set.n, POD_TAGS_MAX);
}

static void test_pod_tags_allowed(void **state)
{
	struct tag_set allowed;
	struct pod_choice c;
	char why[ANNOTATIONS_WHY_LEN];

	allow(&allowed, "tag:web,tag:db");
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/tags", "tag:db, tag:web",
						     "tailscale-cni.io/other", "x", NULL}),
			 0);
	assert_int_equal(c.tags.n, 2);
	assert_string_equal(c.tags.v[0], "tag:db");
	assert_string_equal(c.tags.v[1], "tag:web");
	assert_string_equal(c.hostname, "");
	/* An empty value asks for none. */
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/tags", "", NULL}),
			 0);
	assert_int_equal(c.tags.n, 0);
}

static void test_pod_tag_refused(void **state)
{
	struct tag_set allowed;
	struct pod_choice c;
	char why[ANNOTATIONS_WHY_LEN];

	allow(&allowed, "tag:web");
	assert_int_equal(
		parse(&allowed, &c, why, sizeof(why),
		      (const char *const[]){"tailscale-cni.io/tags", "tag:web,tag:admin", NULL}),
		-EINVAL);
	assert_string_equal(why, "tailscale-cni.io/tags: tag:admin is not in --allowed-tags");
	assert_int_equal(c.tags.n, 0);
	/* Case matters, as it does upstream. */
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/tags", "tag:Web", NULL}),
			 -EINVAL);
	assert_string_equal(why, "tailscale-cni.io/tags: tag:Web is not in --allowed-tags");
	/* With no --allowed-tags, every tag is refused (the default). */
	memset(&allowed, 0, sizeof(allowed));
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/tags", "tag:web", NULL}),
			 -EINVAL);
	assert_string_equal(why, "tailscale-cni.io/tags: tag:web is not in --allowed-tags (none "
				 "are allowed)");
	/* A value that is no tag is named escaped. */
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/tags", "tag:a\nb", NULL}),
			 -EINVAL);
	assert_string_equal(why, "tailscale-cni.io/tags: \"tag:a\\x0ab\" is not a tag: tag names "
				 "can only contain numbers, letters, or dashes");
}

static void test_hostname(void **state)
{
	struct tag_set allowed = {.n = 0};
	struct pod_choice c;
	char why[ANNOTATIONS_WHY_LEN], long63[64], long64[65];

	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/hostname", "Web-1", NULL}),
			 0);
	assert_string_equal(c.hostname, "web-1");
	assert_int_equal(c.tags.n, 0);
	memset(long63, 'a', 63);
	long63[63] = '\0';
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/hostname", long63, NULL}),
			 0);
	assert_string_equal(c.hostname, long63);
	memset(long64, 'a', 64);
	long64[64] = '\0';
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/hostname", long64, NULL}),
			 -EINVAL);
	assert_non_null(strstr(why, "is not a DNS label"));
	static const char *const bad[] = {"", "-web", "web-", "web_1", "web.example", "wéb"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("bad hostname %zu\n", i);
		assert_int_equal(
			parse(&allowed, &c, why, sizeof(why),
			      (const char *const[]){"tailscale-cni.io/hostname", bad[i], NULL}),
			-EINVAL);
		assert_int_equal(strncmp(why, "tailscale-cni.io/hostname: \"", 28), 0);
		assert_string_equal(c.hostname, "");
	}
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/hostname", "web_1", NULL}),
			 -EINVAL);
	assert_string_equal(why, "tailscale-cni.io/hostname: \"web_1\" is not a DNS label (1 to 63 "
				 "letters, digits and '-', not starting or ending with '-')");
}

/* The last of a repeated key wins; a bad hostname refuses the whole choice. */
static void test_repeat_and_all_or_nothing(void **state)
{
	struct tag_set allowed;
	struct pod_choice c;
	char why[ANNOTATIONS_WHY_LEN];

	allow(&allowed, "tag:web,tag:db");
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/tags", "tag:web",
						     "tailscale-cni.io/tags", "tag:db", NULL}),
			 0);
	assert_int_equal(c.tags.n, 1);
	assert_string_equal(c.tags.v[0], "tag:db");
	assert_int_equal(parse(&allowed, &c, why, sizeof(why),
			       (const char *const[]){"tailscale-cni.io/tags", "tag:web",
						     "tailscale-cni.io/hostname", "-x", NULL}),
			 -EINVAL);
	assert_int_equal(c.tags.n, 0);
	assert_string_equal(c.hostname, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_tag_vectors),
		cmocka_unit_test(test_tag_length_bound),
		cmocka_unit_test(test_allowed_list),
		cmocka_unit_test(test_allowed_at_most_64),
		cmocka_unit_test(test_pod_tags_allowed),
		cmocka_unit_test(test_pod_tag_refused),
		cmocka_unit_test(test_hostname),
		cmocka_unit_test(test_repeat_and_all_or_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
