/* Re-adoption after kill -9 of the supervisor, as root.
 *
 *   supervisor A (a forked child of this test)     supervisor B (this test)
 *     zygote A ── worker pod-a ── fd 4: TUN a ──► ts0 in netns tscnia<pid>
 *              └─ worker pod-b ── fd 4: TUN b ──► ts0 in netns tscnib<pid>
 *     each worker listens on /run/tscniw-<pid>/workers/<pod>.sock
 *
 *   1. A spawns both workers, reports their identities, B closes its TUN fds.
 *   2. packets into both TUNs; kill -9 A; more packets while no supervisor runs.
 *   3. B (a new zygote of its own) tries records that must be refused: a
 *      foreign boot id, an unrelated live process, a wrong start time, the
 *      two records swapped, a peer speaking a version we do not; then adopts
 *      both for real: every packet counted, same processes, fd custody back.
 *   4. kill -9 an adopted worker: respawned from the custody B took back.
 * B is a child subreaper, so A's orphans come to it and are reaped here. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "frame.h"
#include "mem.h"
#include "worker.pb-c.h"
#include "workers.h"
#include "fixture.h"

enum { NPODS = 2 };

struct pod {
	const char *uid;
	char ns[32];
	char ifname[IFNAMSIZ];
	int tun;
	struct worker_identity id;
	struct worker *w;
};

static struct {
	uv_loop_t loop;
	struct workers *ws;
	char run_dir[64];
	char worker_path[512];
	struct pod pods[NPODS];
	int ready, exits, gone, stats_n;
	struct worker_stats stats;
	pid_t sup_a;
} t;

static int tun_create(const char *name)
{
	struct ifreq ifr = {.ifr_flags = IFF_TUN | IFF_NO_PI};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	strscpy(ifr.ifr_name, name, sizeof(ifr.ifr_name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

static void on_worker(struct worker *w, enum worker_event ev, const struct worker_report *r,
		      void *arg)
{
	(void)w;
	(void)arg;
	if (ev == WORKER_EV_READY)
		t.ready++;
	else if (ev == WORKER_EV_EXIT)
		t.exits++;
	else if (ev == WORKER_EV_GONE)
		t.gone++;
	else if (ev == WORKER_EV_STATS) {
		t.stats = r->stats;
		t.stats_n++;
	}
}

static void tick(uv_timer_t *h)
{
	(void)h;
}

static long run_until(const int *counter, int want, unsigned int ms)
{
	unsigned long long start = now_ms();
	uv_timer_t tm;

	uv_timer_init(&t.loop, &tm);
	uv_timer_start(&tm, tick, 10, 10);
	while (*counter < want && now_ms() - start < ms)
		uv_run(&t.loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&tm, NULL);
	uv_run(&t.loop, UV_RUN_NOWAIT);
	return *counter >= want ? (long)(now_ms() - start) : -1;
}

/* /proc/PID/stat field 22, or 0. */
static uint64_t proc_start(pid_t pid)
{
	char path[32], b[1024], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, b, sizeof(b) - 1);
	close(fd);
	b[n > 0 ? n : 0] = '\0';
	p = strrchr(b, ')');
	for (int f = 2; p && f < 22; f++)
		p = strchr(p + 1, ' ');
	return p ? strtoull(p + 1, NULL, 10) : 0;
}

static struct worker_spec spec_of(const struct pod *p)
{
	struct worker_spec s = {
		.pod_uid = p->uid,
		.tun_fd = p->tun,
		.slot = (uint32_t)(p - t.pods) + 20,
		.mtu = 1280,
	};

	memset(s.machine_private, 0x31, sizeof(s.machine_private));
	memset(s.node_private, 0x32, sizeof(s.node_private));
	return s;
}

static void send_packets(const struct pod *p, int count)
{
	assert_int_equal(sh("ip netns exec %s bash -c 'for i in $(seq %d); do "
			    "echo x >/dev/udp/100.64.0.2/9; done'",
			    p->ns, count),
			 0);
}

static uint64_t stats_once(struct worker *w)
{
	int n = t.stats_n;

	assert_int_equal(workers_request_stats(w), 0);
	assert_true(run_until(&t.stats_n, n + 1, 3000) >= 0);
	return t.stats.tun_rx_packets;
}

/* The data thread may not have read the last packets when the control
 * thread answers: ask until want is reached (or 2 s pass). */
static uint64_t stats(struct worker *w, uint64_t want)
{
	unsigned long long start = now_ms();
	uint64_t v;

	while ((v = stats_once(w)) < want && now_ms() - start < 2000)
		usleep(20000);
	return v;
}

/* Supervisor A: spawns the workers, reports their identities on fd out,
 * then waits to be killed. */
static _Noreturn void supervisor_a(int out)
{
	struct workers_config wc = {
		.worker_path = t.worker_path, .run_dir = t.run_dir, .cgroup_parent = ""};
	uv_loop_t loop;
	struct workers *ws;

	t.ready = 0;
	if (uv_loop_init(&loop) < 0 || workers_new(&loop, &wc, &ws) < 0)
		_exit(1);
	for (int i = 0; i < NPODS; i++) {
		struct worker_spec s = spec_of(&t.pods[i]);

		if (workers_spawn(ws, &s, on_worker, NULL, &t.pods[i].w) < 0)
			_exit(2);
	}
	while (t.ready < NPODS)
		uv_run(&loop, UV_RUN_ONCE);
	for (int i = 0; i < NPODS; i++) {
		struct worker_identity id;

		if (workers_identity(t.pods[i].w, &id) < 0 || write_all(out, &id, sizeof(id)) < 0)
			_exit(3);
	}
	for (;;)
		pause();
}

static int setup(void **state)
{
	const char *bd = getenv("TSCNI_BUILD_DIR");
	static const char *const uids[NPODS] = {"pod-a", "pod-b"};

	(void)state;
	if (!bd || bd[0] != '/')
		return -1;
	snprintf(t.worker_path, sizeof(t.worker_path), "%s/worker/tailscale-cni-worker", bd);
	snprintf(t.run_dir, sizeof(t.run_dir), "/run/tscniw-%d", (int)getpid());
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	for (int i = 0; i < NPODS; i++) {
		struct pod *p = &t.pods[i];

		p->uid = uids[i];
		p->tun = -1;
		snprintf(p->ns, sizeof(p->ns), "tscni%c%d", 'a' + i, (int)getpid());
		snprintf(p->ifname, sizeof(p->ifname), "t%c%d", 'a' + i, (int)getpid());
		if (sh("ip netns add %s", p->ns))
			return -1;
		p->tun = tun_create(p->ifname);
		if (p->tun < 0)
			return -1;
		/* No IPv6 on ts0: only the packets we send reach the TUN, so the
		 * count is exact. */
		if (sh("ip link set %s netns %s && ip -n %s link set %s name ts0 && "
		       "ip netns exec %s sysctl -qw net.ipv6.conf.ts0.disable_ipv6=1 && "
		       "ip -n %s addr add 100.64.0.1/32 dev ts0 && ip -n %s link set ts0 up && "
		       "ip -n %s route add 100.64.0.0/10 dev ts0",
		       p->ifname, p->ns, p->ns, p->ifname, p->ns, p->ns, p->ns, p->ns))
			return -1;
	}
	return uv_loop_init(&t.loop) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < NPODS; i++) {
		if (t.pods[i].w) {
			int g = t.gone;

			workers_stop(t.pods[i].w, false);
			run_until(&t.gone, g + 1, 5000);
		}
	}
	if (t.ws) {
		workers_close(t.ws);
		uv_run(&t.loop, UV_RUN_NOWAIT);
	}
	if (t.sup_a > 0)
		kill(t.sup_a, SIGKILL);
	/* Stray processes from A (if a step failed): every identity recorded. */
	for (int i = 0; i < NPODS; i++) {
		if (t.pods[i].id.pid > 0) {
			int pfd = (int)syscall(SYS_pidfd_open, t.pods[i].id.pid, 0);

			/* Only the recorded process, never a reused pid. */
			if (pfd >= 0 && proc_start(t.pods[i].id.pid) == t.pods[i].id.start_time) {
				syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
			}
			if (pfd >= 0)
				close(pfd);
		}
	}
	/* Everything orphaned came to us (subreaper): reap it all. */
	for (unsigned long long s = now_ms(); now_ms() - s < 2000;) {
		pid_t r = waitpid(-1, NULL, WNOHANG);

		if (r < 0)
			break;
		if (r == 0)
			usleep(10000);
	}
	uv_loop_close(&t.loop);
	for (int i = 0; i < NPODS; i++) {
		if (t.pods[i].tun >= 0)
			close(t.pods[i].tun);
		sh("ip netns del %s 2>/dev/null", t.pods[i].ns);
	}
	sh("rm -rf '%s'", t.run_dir);
	return 0;
}

/* A peer on a rendezvous path that speaks protocol versions 7..9 only. */
static void *old_worker(void *arg)
{
	int lfd = *(int *)arg, c;
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Hello h = TSCNI__HELLO__INIT;
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	uint8_t buf[64];

	if (poll(&p, 1, 3000) != 1)
		return NULL;
	c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return NULL;
	h.min_version = 7;
	h.max_version = 9;
	h.pod_uid = (char *)"pod-old";
	h.pid = getpid();
	m.body_case = TSCNI__WORKER_MSG__BODY_HELLO;
	m.hello = &h;
	seqpacket_send(c, buf, tscni__worker_msg__pack(&m, buf), NULL, 0);
	p.fd = c;
	poll(&p, 1, 2000); /* until the supervisor hangs up */
	close(c);
	return NULL;
}

static void test_adopt_after_kill9(void **state)
{
	struct workers_config wc = {
		.worker_path = t.worker_path, .run_dir = t.run_dir, .cgroup_parent = ""};
	int pipefd[2], st;
	uint64_t before[NPODS];
	unsigned long long t0;
	struct worker *w;

	(void)state;
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	t.sup_a = fork();
	assert_true(t.sup_a >= 0);
	if (t.sup_a == 0) {
		close(pipefd[0]);
		supervisor_a(pipefd[1]);
	}
	close(pipefd[1]);
	for (int i = 0; i < NPODS; i++) {
		struct pollfd p = {.fd = pipefd[0], .events = POLLIN};

		assert_int_equal(poll(&p, 1, 10000), 1);
		assert_int_equal(read(pipefd[0], &t.pods[i].id, sizeof(t.pods[i].id)),
				 sizeof(t.pods[i].id));
	}
	close(pipefd[0]);
	/* From now on only A (its custody dups) and the workers hold the TUNs. */
	for (int i = 0; i < NPODS; i++) {
		close(t.pods[i].tun);
		t.pods[i].tun = -1;
		send_packets(&t.pods[i], 5);
	}
	assert_int_equal(kill(t.sup_a, SIGKILL), 0);
	assert_int_equal(waitpid(t.sup_a, &st, 0), t.sup_a);
	t.sup_a = 0;
	/* No supervisor at all now: the workers keep reading their TUNs. */
	for (int i = 0; i < NPODS; i++) {
		assert_int_equal(kill(t.pods[i].id.pid, 0), 0);
		send_packets(&t.pods[i], 5);
		assert_int_equal(sh("ip -n %s link show ts0 >/dev/null", t.pods[i].ns), 0);
	}

	assert_int_equal(workers_new(&t.loop, &wc, &t.ws), 0);
	{
		struct worker_spec sa = spec_of(&t.pods[0]), sb = spec_of(&t.pods[1]);
		struct worker_identity id = t.pods[0].id;
		uint64_t self_start = proc_start(getpid());
		char path[128];
		pthread_t th;
		int lfd;

		/* A record from another boot. */
		id.boot_id[0] = id.boot_id[0] == 'f' ? 'e' : 'f';
		assert_int_equal(workers_adopt(t.ws, &sa, &id, on_worker, NULL, &w), -ESTALE);
		/* A record pointing at an unrelated live process (this test). */
		id = t.pods[0].id;
		id.pid = getpid();
		id.start_time = self_start;
		assert_int_equal(workers_adopt(t.ws, &sa, &id, on_worker, NULL, &w), -ESRCH);
		/* The right pid with another start time (a reused pid). */
		id = t.pods[0].id;
		id.start_time++;
		assert_int_equal(workers_adopt(t.ws, &sa, &id, on_worker, NULL, &w), -ESRCH);
		/* Two records swapped. */
		assert_int_equal(workers_adopt(t.ws, &sa, &t.pods[1].id, on_worker, NULL, &w),
				 -ESRCH);
		assert_int_equal(workers_adopt(t.ws, &sb, &t.pods[0].id, on_worker, NULL, &w),
				 -ESRCH);
		/* A peer speaking versions we do not (7..9). */
		snprintf(path, sizeof(path), "%s/workers/pod-old.sock", t.run_dir);
		{
			struct sockaddr_un sun = {.sun_family = AF_UNIX};
			struct worker_spec so = spec_of(&t.pods[0]);

			strscpy(sun.sun_path, path, sizeof(sun.sun_path));
			lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
			assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
			assert_int_equal(listen(lfd, 1), 0);
			assert_int_equal(pthread_create(&th, NULL, old_worker, &lfd), 0);
			so.pod_uid = "pod-old";
			id = t.pods[0].id;
			id.pid = getpid();
			id.start_time = self_start;
			assert_int_equal(workers_adopt(t.ws, &so, &id, on_worker, NULL, &w),
					 -EPROTONOSUPPORT);
			pthread_join(th, NULL);
			close(lfd);
			unlink(path);
		}
		printf("refused: foreign boot id, unrelated process, wrong start time, "
		       "swapped records x2, version 7..9\n");
	}

	/* A supervisor that hands one more extra fd than the worker holds (a
	 * worker spawned before the host's netlink socket existed): refused
	 * unless that fd is marked optional. */
	{
		const int no_fd = -1;
		struct worker_spec s = spec_of(&t.pods[1]);

		s.extra_fds = &no_fd;
		s.n_extra_fds = 1;
		assert_int_equal(workers_adopt(t.ws, &s, &t.pods[1].id, on_worker, NULL, &w),
				 -EBADMSG);
		printf("refused: custody without a mandatory extra fd\n");
	}

	/* The real adoption: both, timed; pod 1's spec names one optional
	 * extra fd it does not hold. */
	t0 = now_ms();
	for (int i = 0; i < NPODS; i++) {
		struct worker_spec s = spec_of(&t.pods[i]);
		const int no_fd = -1;

		if (i == 1) {
			s.extra_fds = &no_fd;
			s.n_extra_fds = 1;
			s.n_extra_fds_optional = 1;
		}

		assert_int_equal(
			workers_adopt(t.ws, &s, &t.pods[i].id, on_worker, NULL, &t.pods[i].w), 0);
		assert_int_equal(workers_pid(t.pods[i].w), t.pods[i].id.pid);
	}
	printf("adopted %d workers in %llu ms\n", NPODS, now_ms() - t0);
	assert_true(now_ms() - t0 < 1000);
	for (int i = 0; i < NPODS; i++) {
		before[i] = stats(t.pods[i].w, 10);
		printf("pod %s: %llu packets counted across the supervisor's death (10 sent)\n",
		       t.pods[i].uid, (unsigned long long)before[i]);
		assert_int_equal(before[i], 10);
	}

	/* kill -9 an adopted worker: respawned from the custody we took back. */
	t0 = now_ms();
	assert_int_equal(
		syscall(SYS_pidfd_send_signal, workers_pidfd(t.pods[0].w), SIGKILL, NULL, 0), 0);
	assert_true(run_until(&t.ready, 1, 2000) >= 0);
	printf("adopted worker %d killed, respawned as %d in %llu ms\n", (int)t.pods[0].id.pid,
	       (int)workers_pid(t.pods[0].w), now_ms() - t0);
	assert_true(now_ms() - t0 < 500);
	assert_int_equal(t.exits, 1);
	assert_int_equal(sh("ip -n %s link show ts0 >/dev/null", t.pods[0].ns), 0);
	send_packets(&t.pods[0], 3);
	assert_int_equal(stats(t.pods[0].w, 3), 3);
	/* The other pod's worker was not touched. */
	assert_int_equal(workers_pid(t.pods[1].w), t.pods[1].id.pid);
	send_packets(&t.pods[1], 2);
	assert_int_equal(stats(t.pods[1].w, 12), 12);

	/* Pod 1's worker was adopted short of its optional extra fd: one
	 * added to custody now goes to its respawn, which starts with it
	 * (its Start.fd_count counts it) and forwards as before. */
	{
		int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
		pid_t old = workers_pid(t.pods[1].w);

		assert_true(nl >= 0);
		assert_int_equal(workers_custody_count(t.pods[1].w), 2);
		assert_int_equal(workers_custody_add(t.pods[1].w, nl), 0);
		close(nl);
		assert_int_equal(workers_custody_count(t.pods[1].w), 3);
		assert_int_equal(syscall(SYS_pidfd_send_signal, workers_pidfd(t.pods[1].w), SIGKILL,
					 NULL, 0),
				 0);
		assert_true(run_until(&t.ready, 2, 3000) >= 0);
		assert_int_not_equal(workers_pid(t.pods[1].w), old);
		assert_int_equal(t.exits, 2);
		send_packets(&t.pods[1], 4);
		assert_int_equal(stats(t.pods[1].w, 4), 4);
		printf("pod %s: respawned as %d with one more fd in custody\n", t.pods[1].uid,
		       (int)workers_pid(t.pods[1].w));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_adopt_after_kill9, setup, teardown),
	};

	if (geteuid() != 0) {
		printf("netns tests need root\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
