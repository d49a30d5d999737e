/* Unit tests for cni/client.c against a scripted supervisor on a unix
 * socket in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cni/client.c"
#include "fake_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

enum mode {
	M_GOOD,
	M_SILENT,
	M_CLOSE,
	M_HALF,
	M_GARBAGE,
	M_WRONG_VERSION,
	M_OVERSIZE,
	M_INVALID,
};

static int serve(int conn, int index, void *arg)
{
	enum mode m = *(enum mode *)arg;
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;
	Tscni__CniRequest *req = fake_read(conn);
	static const uint8_t half[] = {0, 0, 0, 100, 8, 1, 0x3a, 0};
	static const uint8_t garbage[] = {0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff};
	static const uint8_t oversize[] = {0x7f, 0, 0, 0};
	int ret = 0;

	if (!req)
		return 1;
	/* The request itself: version and body as sent. */
	if (req->protocol_version != CNI_PROTOCOL_VERSION ||
	    req->body_case != TSCNI__CNI_REQUEST__BODY_STATUS)
		ret = 2;
	tscni__cni_request__free_unpacked(req, NULL);
	r.protocol_version = CNI_PROTOCOL_VERSION;
	r.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	r.status = &st;
	st.health = TSCNI__HEALTH__HEALTH_READY;
	st.reason = "fine";
	switch (m) {
	case M_GOOD:
		fake_send(conn, &r);
		break;
	case M_SILENT:
		fake_drain(conn);
		break;
	case M_CLOSE:
		break;
	case M_HALF:
		(void)write_all(conn, half, sizeof(half));
		break;
	case M_GARBAGE:
		(void)write_all(conn, garbage, sizeof(garbage));
		break;
	case M_WRONG_VERSION:
		r.protocol_version = CNI_PROTOCOL_VERSION + 1;
		fake_send(conn, &r);
		break;
	case M_OVERSIZE:
		(void)write_all(conn, oversize, sizeof(oversize));
		fake_drain(conn);
		break;
	case M_INVALID:
		st.health = (Tscni__Health)77; /* out of the enum's range */
		fake_send(conn, &r);
		break;
	}
	return ret;
}

static int call(const char *path, unsigned int ms, Tscni__CniReply **reply, const char **why)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__StatusRequest st = TSCNI__STATUS_REQUEST__INIT;

	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_STATUS;
	req.status = &st;
	return client_call(path, &req, now_ms() + ms, reply, why);
}

static int run(enum mode m, unsigned int ms, Tscni__CniReply **reply, const char **why)
{
	struct fake s;
	int ret;

	fake_start(&s, 1, serve, &m);
	ret = call(s.path, ms, reply, why);
	assert_int_equal(fake_wait(&s), 0);
	return ret;
}

static void test_good(void **state)
{
	Tscni__CniReply *r = NULL;
	const char *why = NULL;

	assert_int_equal(run(M_GOOD, 2000, &r, &why), 0);
	assert_non_null(r);
	assert_int_equal(r->body_case, TSCNI__CNI_REPLY__BODY_STATUS);
	assert_int_equal(r->status->health, TSCNI__HEALTH__HEALTH_READY);
	assert_string_equal(r->status->reason, "fine");
	tscni__cni_reply__free_unpacked(r, NULL);
}

static void test_missing_socket(void **state)
{
	unsigned long long t0 = now_ms();
	Tscni__CniReply *r = (Tscni__CniReply *)&r;
	const char *why = NULL;

	assert_int_equal(call("/nonexistent-tscni/cni.sock", 5000, &r, &why), -ENOENT);
	assert_null(r);
	assert_string_equal(why, "connect");
	assert_true(now_ms() - t0 < 500);
}

static void test_stale_socket(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	unsigned long long t0 = now_ms();
	Tscni__CniReply *r = NULL;
	const char *why = NULL;
	struct fake s;
	int fd;

	/* Bound but never listening, then closed: ECONNREFUSED. */
	fake_mkdir(&s);
	strcpy(sa.sun_path, s.path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(call(s.path, 5000, &r, &why), -ECONNREFUSED);
	assert_true(now_ms() - t0 < 500);
	assert_int_equal(fake_wait(&s), 0);
}

/* A listener on path in a child running as uid, which then waits for one
 * connection attempt or 5 s. Returns the child's pid. */
static pid_t listen_as(const char *path, uid_t uid, int ready[2])
{
	pid_t pid = fork();

	if (pid == 0) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		struct pollfd pfd = {.events = POLLIN};
		int fd;

		strcpy(sa.sun_path, path);
		if (setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
			_exit(1);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
			_exit(2);
		(void)!write(ready[1], "x", 1);
		pfd.fd = fd;
		poll(&pfd, 1, 5000);
		_exit(0);
	}
	return pid;
}

static void test_untrusted_socket(void **state)
{
	Tscni__CniReply *r = NULL;
	const char *why = NULL;
	int ready[2], st = 0;
	struct fake s;
	char c;
	pid_t pid;

	if (geteuid() != 0)
		skip(); /* needs another uid to own the socket */
	/* A regular file where the socket should be. */
	fake_mkdir(&s);
	close(open(s.path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
	assert_int_equal(call(s.path, 2000, &r, &why), -EPERM);
	assert_non_null(strstr(why, "not a socket"));
	unlink(s.path);

	/* A socket file and a listener of uid 65534: refused before a byte
	 * is sent, first for the file, then (file handed to root) for the
	 * process behind it. */
	assert_int_equal(chmod(s.dir, 0755), 0);
	assert_int_equal(chown(s.dir, 65534, 65534), 0);
	assert_int_equal(pipe(ready), 0);
	pid = listen_as(s.path, 65534, ready);
	assert_true(pid > 0);
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(call(s.path, 2000, &r, &why), -EPERM);
	assert_non_null(strstr(why, "socket is not owned by root"));
	assert_int_equal(chown(s.path, 0, 0), 0);
	assert_int_equal(call(s.path, 2000, &r, &why), -EPERM);
	assert_non_null(strstr(why, "does not run as root"));
	assert_null(r);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(ready[0]);
	close(ready[1]);
	assert_int_equal(fake_wait(&s), 0);
}

static void test_silent_times_out(void **state)
{
	unsigned long long t0 = now_ms(), dt;
	Tscni__CniReply *r = NULL;
	const char *why = NULL;

	assert_int_equal(run(M_SILENT, 300, &r, &why), -ETIMEDOUT);
	dt = now_ms() - t0;
	assert_true(dt >= 290 && dt < 2000);
	assert_string_equal(why, "receive");
}

static void test_close_is_unavailable(void **state)
{
	Tscni__CniReply *r = NULL;
	const char *why = NULL;

	assert_int_equal(run(M_CLOSE, 2000, &r, &why), -ECONNRESET);
	assert_null(r);
}

static void test_protocol_errors(void **state)
{
	static const enum mode modes[] = {M_HALF, M_GARBAGE, M_WRONG_VERSION, M_OVERSIZE,
					  M_INVALID};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		Tscni__CniReply *r = NULL;
		const char *why = NULL;

		assert_int_equal(run(modes[i], 2000, &r, &why), -EPROTO);
		assert_null(r);
		assert_non_null(why);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_missing_socket),
		cmocka_unit_test(test_stale_socket),
		cmocka_unit_test(test_untrusted_socket),
		cmocka_unit_test(test_silent_times_out),
		cmocka_unit_test(test_close_is_unavailable),
		cmocka_unit_test(test_protocol_errors),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
