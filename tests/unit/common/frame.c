/* Framing: the CNI stream frames and worker SOCK_SEQPACKET datagrams. */
#include "common/frame.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>

static void put_len(uint8_t *p, uint32_t n)
{
	p[0] = (uint8_t)(n >> 24);
	p[1] = (uint8_t)(n >> 16);
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
}

static void test_decode_whole_and_partial(void **state)
{
	uint8_t buf[16] = {0};
	const uint8_t *body;
	const char *why = NULL;
	size_t blen;

	put_len(buf, 5);
	memcpy(buf + 4, "hello", 5);
	/* Every prefix shorter than the whole frame asks for more. */
	for (size_t len = 0; len < 9; len++)
		assert_int_equal(frame_decode(buf, len, &body, &blen, &why), 0);
	assert_int_equal(frame_decode(buf, 9, &body, &blen, &why), 9);
	assert_int_equal(blen, 5);
	assert_memory_equal(body, "hello", 5);
	/* Trailing bytes of the next frame are left alone. */
	assert_int_equal(frame_decode(buf, 12, &body, &blen, &why), 9);
}

static void test_decode_oversize_decided_from_header(void **state)
{
	uint8_t hdr[4];
	const uint8_t *body;
	const char *why = NULL;
	size_t blen;

	put_len(hdr, FRAME_MAX_BODY + 1);
	assert_int_equal(frame_decode(hdr, 4, &body, &blen, &why), -EMSGSIZE);
	assert_non_null(why);
	put_len(hdr, 0xffffffffU);
	assert_int_equal(frame_decode(hdr, 4, &body, &blen, &why), -EMSGSIZE);
	put_len(hdr, 0);
	why = NULL;
	assert_int_equal(frame_decode(hdr, 4, &body, &blen, &why), -EMSGSIZE);
	assert_string_equal(why, "empty frame");
	/* The maximum itself is valid: it waits for the body. */
	put_len(hdr, FRAME_MAX_BODY);
	assert_int_equal(frame_decode(hdr, 4, &body, &blen, &why), 0);
}

static void test_decode_garbage(void **state)
{
	/* ASCII garbage such as an HTTP request reads as a huge length. */
	const uint8_t junk[] = "GET / HTTP/1.1\r\n\r\n";
	const uint8_t *body;
	const char *why = NULL;
	size_t blen;

	assert_true(frame_decode(junk, sizeof(junk) - 1, &body, &blen, &why) < 0);
}

static void test_write_read_roundtrip(void **state)
{
	int sv[2];
	uint8_t *body;
	size_t len;
	const char *why = NULL;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(frame_write_fd(sv[0], (const uint8_t *)"abc", 3, now_ms() + 1000), 0);
	assert_int_equal(frame_read_fd(sv[1], &body, &len, now_ms() + 1000, &why), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(body, "abc", 3);
	free(body);
	/* A header alone, then EOF: a truncated frame. */
	assert_int_equal(write(sv[0], "\0\0\0\x10", 4), 4);
	close(sv[0]);
	assert_int_equal(frame_read_fd(sv[1], &body, &len, now_ms() + 1000, &why), -ECONNRESET);
	assert_null(body);
	close(sv[1]);
}

static void test_read_timeout_and_oversize(void **state)
{
	int sv[2];
	uint8_t *body;
	size_t len;
	const char *why = NULL;
	uint8_t hdr[4];
	unsigned long long t0;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
	t0 = now_ms();
	assert_int_equal(frame_read_fd(sv[1], &body, &len, t0 + 100, &why), -ETIMEDOUT);
	assert_true(now_ms() - t0 >= 100);
	put_len(hdr, FRAME_MAX_BODY + 1);
	assert_int_equal(write(sv[0], hdr, 4), 4);
	assert_int_equal(frame_read_fd(sv[1], &body, &len, now_ms() + 1000, &why), -EMSGSIZE);
	assert_int_equal(frame_write_fd(sv[0], hdr, FRAME_MAX_BODY + 1, now_ms() + 10), -EMSGSIZE);
	close(sv[0]);
	close(sv[1]);
}

static void test_seqpacket_trunc_is_error(void **state)
{
	int sv[2];
	uint8_t big[512], small[64];
	const char *why = NULL;

	memset(big, 'x', sizeof(big));
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(seqpacket_send(sv[0], big, sizeof(big), NULL, 0), 0);
	assert_int_equal(seqpacket_recv(sv[1], small, sizeof(small), NULL, NULL, 0, &why),
			 -EMSGSIZE);
	assert_string_equal(why, "message truncated");
	/* The next datagram is read whole. */
	assert_int_equal(seqpacket_send(sv[0], big, 10, NULL, 0), 0);
	assert_int_equal(seqpacket_recv(sv[1], small, sizeof(small), NULL, NULL, 0, &why), 10);
	assert_int_equal(seqpacket_recv(sv[1], small, sizeof(small), NULL, NULL, 0, &why), -EAGAIN);
	assert_int_equal(seqpacket_send(sv[0], big, WMSG_MAX_LEN + 1, NULL, 0), -EMSGSIZE);
	close(sv[0]);
	assert_int_equal(seqpacket_recv(sv[1], small, sizeof(small), NULL, NULL, 0, &why), 0);
	close(sv[1]);
}

static int count_open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

static void test_seqpacket_fds(void **state)
{
	int sv[2], pass[2], got[WMSG_MAX_FDS], before;
	size_t nfds = 0;
	uint8_t buf[16];
	const char *why = NULL;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	assert_int_equal(pipe2(pass, O_CLOEXEC), 0);
	/* Accepted where the receiver asks for fds, close-on-exec. */
	assert_int_equal(seqpacket_send(sv[0], (const uint8_t *)"x", 1, pass, 2), 0);
	assert_int_equal(seqpacket_recv(sv[1], buf, sizeof(buf), got, &nfds, WMSG_MAX_FDS, &why),
			 1);
	assert_int_equal(nfds, 2);
	assert_true(fcntl(got[0], F_GETFD) & FD_CLOEXEC);
	close(got[0]);
	close(got[1]);
	/* Refused (and nothing leaks) where the receiver has no control
	 * buffer: that is how the supervisor reads workers. */
	before = count_open_fds();
	assert_int_equal(seqpacket_send(sv[0], (const uint8_t *)"x", 1, pass, 2), 0);
	assert_int_equal(seqpacket_recv(sv[1], buf, sizeof(buf), NULL, NULL, 0, &why), -EMSGSIZE);
	assert_string_equal(why, "control data truncated");
	assert_int_equal(count_open_fds(), before);
	/* More fds than the receiver takes: the message is refused, none
	 * leak. */
	assert_int_equal(seqpacket_send(sv[0], (const uint8_t *)"x", 1, pass, 2), 0);
	assert_int_equal(seqpacket_recv(sv[1], buf, sizeof(buf), got, &nfds, 1, &why), -EMSGSIZE);
	assert_int_equal(count_open_fds(), before);
	close(pass[0]);
	close(pass[1]);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode_whole_and_partial),
		cmocka_unit_test(test_decode_oversize_decided_from_header),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_write_read_roundtrip),
		cmocka_unit_test(test_read_timeout_and_oversize),
		cmocka_unit_test(test_seqpacket_trunc_is_error),
		cmocka_unit_test(test_seqpacket_fds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
