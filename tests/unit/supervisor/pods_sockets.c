/* --udp-port-range: what parses and what does not; the pod's UDP socket
 * binds the first free port of the range and, once every port is taken,
 * fails with -EADDRINUSE and a reason naming the option; the netlink socket
 * is a NETLINK_ROUTE one. Sockets are only bound, never sent on. */
#include "supervisor/pods_sockets.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static void test_parse(void **state)
{
	static const struct {
		const char *s;
		int ret;
		uint16_t lo, hi;
	} v[] = {
		{"41641-41641", 0, 41641, 41641},
		{"1-65535", 0, 1, 65535},
		{"40000-40100", 0, 40000, 40100},
		{"0-10", -EINVAL, 0, 0},
		{"10-65536", -EINVAL, 0, 0},
		{"20-10", -EINVAL, 0, 0},
		{"41641", -EINVAL, 0, 0},
		{"41641-", -EINVAL, 0, 0},
		{"-41641", -EINVAL, 0, 0},
		{"1-2-3", -EINVAL, 0, 0},
		{" 1-2", -EINVAL, 0, 0},
		{"1- 2", -EINVAL, 0, 0},
		{"+1-2", -EINVAL, 0, 0},
		{"1-2 ", -EINVAL, 0, 0},
		{"0x10-0x20", -EINVAL, 0, 0},
		{"99999999999999999999-1", -EINVAL, 0, 0},
		{"", -EINVAL, 0, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint16_t lo = 7, hi = 7;

		if (pods_port_range_parse(v[i].s, &lo, &hi) != v[i].ret || lo != v[i].lo ||
		    hi != v[i].hi)
			fail_msg("vector %zu: \"%s\" gave %u-%u", i, v[i].s, lo, hi);
	}
}

static uint16_t port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

static void test_range(void **state)
{
	struct supervisor_config cfg = {0};
	const char *why = "";
	int a, b, c;
	uint16_t p;

	(void)state;
	/* An ephemeral port, then a range of that port and the next one. */
	assert_int_equal(pods__udp_socket_new(&cfg, &a, &why), 0);
	p = port_of(a);
	close(a);
	if (p == 65535)
		p--;
	cfg.udp_port_lo = p;
	cfg.udp_port_hi = (uint16_t)(p + 1);
	assert_int_equal(pods__udp_socket_new(&cfg, &a, &why), 0);
	assert_int_equal(pods__udp_socket_new(&cfg, &b, &why), 0);
	assert_true(port_of(a) >= p && port_of(a) <= p + 1);
	assert_true(port_of(b) >= p && port_of(b) <= p + 1);
	assert_int_not_equal(port_of(a), port_of(b));
	why = "";
	assert_int_equal(pods__udp_socket_new(&cfg, &c, &why), -EADDRINUSE);
	assert_int_equal(c, -1);
	assert_non_null(strstr(why, "--udp-port-range"));
	/* A port freed is taken again. */
	p = port_of(a);
	close(a);
	assert_int_equal(pods__udp_socket_new(&cfg, &c, &why), 0);
	assert_int_equal(port_of(c), p);
	close(b);
	close(c);
}

static void test_netlink(void **state)
{
	int fd, proto = 0;
	socklen_t pl = sizeof(proto);
	const char *why = "";

	(void)state;
	assert_int_equal(pods__netlink_socket_new(&fd, &why), 0);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl), 0);
	assert_int_equal(proto, NETLINK_ROUTE);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_range),
		cmocka_unit_test(test_netlink),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
