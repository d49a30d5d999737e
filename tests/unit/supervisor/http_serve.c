/* http_request_parse (the metrics port's request heads) and
 * http_listen_parse (--metrics-listen), from numbered vectors. */
#include "supervisor/http_serve.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

/* status 0: complete (path and method as given); -1: need more. */
static const struct head_vector {
	const char *in;
	int status;
	const char *path;
	enum http_method method;
} heads[] = {
	/* 0 */ {"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9341\r\nAccept: */*\r\n\r\n", 0,
		 "/metrics", HTTP_GET},
	/* 1 */ {"HEAD /healthz?verbose=1 HTTP/1.0\r\n\r\n", 0, "/healthz", HTTP_HEAD},
	/* 2 */ {"GET /healthz HTTP/1.1\nHost: x\n\n", 0, "/healthz", HTTP_GET},
	/* 3 */ {"GET /metrics HTTP/1.1\r\nHost: x\r\n", -1, NULL, 0},
	/* 4 */ {"GET /met", -1, NULL, 0},
	/* 5 */ {"", -1, NULL, 0},
	/* 6 */ {"POST /metrics HTTP/1.1\r\n", 405, NULL, 0},
	/* 7 */ {"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, NULL, 0},
	/* 8 */ {"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505, NULL, 0},
	/* 9 */ {"GET /metrics HTTP/0.9\r\n\r\n", 400, NULL, 0},
	/* 10 */ {"GET /metrics\r\n\r\n", 400, NULL, 0},
	/* 11 */ {"GET  /metrics HTTP/1.1\r\n\r\n", 400, NULL, 0},
	/* 12 */ {"GET http://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL, 0},
	/* 13 */ {"GET /metrics HTTP/1.1\r\n\r\n", 400, NULL, 0},
	/* 14 */ {"GET /metrics HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, NULL, 0},
	/* 15 */ {"GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, NULL, 0},
	/* 16 */ {"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n", 400, NULL, 0},
	/* 17 */ {"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\001b\r\n\r\n", 400, NULL, 0},
	/* 18 */ {"\026\003\001\002\000\001\000\001\374\003\003\n", 400, NULL, 0},
	/* 19 */ {"GET /metrics HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400, NULL, 0},
	/* 20 */ {"GET /metrics HTTP/1.9\r\nHost: x\r\n\r\n", 0, "/metrics", HTTP_GET},
	/* 21 */ {"ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n", 400, NULL, 0},
	/* 22 */ {"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL, 0},
};

static void test_heads(void **state)
{
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		const struct head_vector *v = &heads[i];
		size_t len = strlen(v->in);
		struct http_request req;
		const char *why = NULL;
		int status = -7;
		ssize_t n;

		/* Vector 18 has a NUL in it: its length is spelled out. */
		if (i == 18)
			len = 12;
		n = http_request_parse((const uint8_t *)v->in, len, &req, &status, &why);
		print_message("vector %zu: %zd status %d %s\n", i, n, status, why ? why : "");
		if (v->status == 0) {
			assert_int_equal(n, (ssize_t)len);
			assert_string_equal(req.path, v->path);
			assert_int_equal(req.method, v->method);
		} else if (v->status < 0) {
			assert_int_equal(n, 0);
		} else {
			assert_true(n < 0);
			assert_int_equal(status, v->status);
			assert_non_null(why);
		}
	}
}

/* The bounds: a head that never ends is 431 at HTTP_HEAD_MAX bytes (never
 * before), a long target 414, many headers 431; bytes after the head are
 * not part of it. */
static void test_bounds(void **state)
{
	static uint8_t big[HTTP_HEAD_MAX + 100];
	struct http_request req;
	const char *why = NULL;
	int status = 0;
	char *s;
	ssize_t n;
	size_t off;

	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	assert_int_equal(http_request_parse(big, HTTP_HEAD_MAX - 1, &req, &status, &why), 0);
	n = http_request_parse(big, HTTP_HEAD_MAX, &req, &status, &why);
	assert_true(n < 0);
	assert_int_equal(status, 431);
	n = http_request_parse(big, sizeof(big), &req, &status, &why);
	assert_int_equal(status, 431);

	s = xasprintf("GET /%0*d HTTP/1.1\r\nHost: x\r\n\r\n", HTTP_PATH_MAX, 0);
	n = http_request_parse((uint8_t *)s, strlen(s), &req, &status, &why);
	assert_true(n < 0);
	assert_int_equal(status, 414);
	free(s);

	off = (size_t)sprintf((char *)big, "GET / HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < HTTP_HEADERS_MAX; i++)
		off += (size_t)sprintf((char *)big + off, "X: y\r\n");
	off += (size_t)sprintf((char *)big + off, "\r\n");
	n = http_request_parse(big, off, &req, &status, &why);
	assert_true(n < 0);
	assert_int_equal(status, 431);

	s = xstrdup("GET /metrics HTTP/1.0\r\n\r\nPOST / HTTP/1.1\r\n");
	n = http_request_parse((uint8_t *)s, strlen(s), &req, &status, &why);
	assert_int_equal(n, 25);
	free(s);
}

static void test_listen(void **state)
{
	static const char *const good[] = {"127.0.0.1:9341", "[::1]:9341", "0.0.0.0:1",
					   "[fd00::1]:65535"};
	static const char *const bad[] = {"127.0.0.1",	   "127.0.0.1:0", "127.0.0.1:65536",
					  "::1:9341",	   "[::1]9341",	  "localhost:9341",
					  "1.2.3:4",	   ":9341",	  "127.0.0.1:+5",
					  "[127.0.0.1]:5", "1.2.3.4:5x",  "[]:5"};
	struct sockaddr_storage ss;
	const char *why;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(http_listen_parse(good[i], &ss, &why), 0);
	assert_int_equal(http_listen_parse("[::1]:9341", &ss, &why), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 9341);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why = NULL;
		print_message("bad %s\n", bad[i]);
		assert_int_equal(http_listen_parse(bad[i], &ss, &why), -EINVAL);
		assert_non_null(why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_heads),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_listen),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
