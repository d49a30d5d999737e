/* Benchmarks of the workers, printed, with 100 workers (as root):
 *   - spawn time for 100 workers through one zygote,
 *   - worker PSS: steady (idle) and peak (while every worker reads traffic),
 *   - re-adoption time for 100 workers after kill -9 of their supervisor,
 *   - respawn time after kill -9 of a worker (10 samples).
 *
 *   supervisor A (forked child)  ─ spawns 100 workers ─ then killed with -9
 *   supervisor B (this test)     ─ adopts all 100 through their rendezvous
 *   netns tscnib<pid>: devices tb<pid>x<i>, route 100.65.<i/250>.<i%250+1>/32
 *   via device i, so one datagram to that address lands in worker i's TUN.
 * Every packet sent must be counted by its own worker (a bench that fails
 * when the thing it measures is broken). */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "mem.h"
#include "workers.h"
#include "fixture.h"

enum { N = 100, RESPAWN_SAMPLES = 10 };

static struct {
	uv_loop_t loop;
	struct workers *ws;
	char ns[32], run_dir[64], worker_path[512];
	char uid[N][16];
	int tun[N];
	struct worker_identity id[N];
	struct worker *w[N];
	int ready, exits, gone, stats_n;
	uint64_t rx[N];
	pid_t sup_a;
} t;

static void on_worker(struct worker *w, enum worker_event ev, const struct worker_report *r,
		      void *arg)
{
	size_t i = (size_t)(uintptr_t)arg;

	(void)w;
	if (ev == WORKER_EV_READY)
		t.ready++;
	else if (ev == WORKER_EV_EXIT)
		t.exits++;
	else if (ev == WORKER_EV_GONE)
		t.gone++;
	else if (ev == WORKER_EV_STATS && i < N) {
		t.rx[i] = r->stats.tun_rx_packets;
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

static struct worker_spec spec_of(int i)
{
	struct worker_spec s = {
		.pod_uid = t.uid[i],
		.tun_fd = t.tun[i],
		.slot = (uint32_t)i + 100,
		.mtu = 1280,
	};

	memset(s.machine_private, 0x41, sizeof(s.machine_private));
	memset(s.node_private, 0x42, sizeof(s.node_private));
	return s;
}

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

/* PSS of pid in kB from smaps_rollup, or -1. */
static long pss_kb(pid_t pid)
{
	char path[48], b[4096], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, b, sizeof(b) - 1);
	close(fd);
	b[n > 0 ? n : 0] = '\0';
	p = strstr(b, "\nPss:");
	return p ? strtol(p + 5, NULL, 10) : -1;
}

static long total_pss(const pid_t *pids, long *max)
{
	long sum = 0;

	*max = 0;
	for (int i = 0; i < N; i++) {
		long k = pss_kb(pids[i]);

		assert_true(k > 0);
		sum += k;
		if (k > *max)
			*max = k;
	}
	return sum;
}

/* One datagram to every worker's TUN, count times over. */
static void traffic(int count)
{
	assert_int_equal(
		sh("ip netns exec %s bash -c 'for r in $(seq %d); do for i in $(seq 0 %d); "
		   "do echo x >/dev/udp/100.65.$((i / 250)).$((i %% 250 + 1))/9; "
		   "done; done'",
		   t.ns, count, N - 1),
		0);
}

static _Noreturn void supervisor_a(int out)
{
	struct workers_config wc = {
		.worker_path = t.worker_path, .run_dir = t.run_dir, .cgroup_parent = ""};
	unsigned long long t0;
	uv_loop_t loop;
	struct workers *ws;

	if (uv_loop_init(&loop) < 0 || workers_new(&loop, &wc, &ws) < 0)
		_exit(1);
	t.ready = 0;
	t0 = now_ms();
	for (int i = 0; i < N; i++) {
		struct worker_spec s = spec_of(i);

		if (workers_spawn(ws, &s, on_worker, (void *)(uintptr_t)N, &t.w[i]) < 0)
			_exit(2);
	}
	while (t.ready < N)
		uv_run(&loop, UV_RUN_ONCE);
	printf("bench: spawned %d workers (all Ready) in %llu ms\n", N, now_ms() - t0);
	fflush(stdout);
	for (int i = 0; i < N; i++) {
		struct worker_identity id;

		if (workers_identity(t.w[i], &id) < 0 || write_all(out, &id, sizeof(id)) < 0)
			_exit(3);
	}
	for (;;)
		pause();
}

static int setup(void **state)
{
	const char *bd = getenv("TSCNI_BUILD_DIR");
	char batch[64];
	FILE *f;

	(void)state;
	if (!bd || bd[0] != '/')
		return -1;
	snprintf(t.worker_path, sizeof(t.worker_path), "%s/worker/tailscale-cni-worker", bd);
	snprintf(t.run_dir, sizeof(t.run_dir), "/run/tscniw-%d", (int)getpid());
	snprintf(t.ns, sizeof(t.ns), "tscnib%d", (int)getpid());
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (uv_loop_init(&t.loop) < 0 || sh("ip netns add %s", t.ns))
		return -1;
	snprintf(batch, sizeof(batch), "/tmp/tscniw-bench-%d", (int)getpid());
	f = fopen(batch, "we");
	if (!f)
		return -1;
	for (int i = 0; i < N; i++) {
		struct ifreq ifr = {.ifr_flags = IFF_TUN | IFF_NO_PI};

		snprintf(t.uid[i], sizeof(t.uid[i]), "pod-%03d", i);
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "tb%dx%d", (int)getpid(), i);
		t.tun[i] = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (t.tun[i] < 0 || ioctl(t.tun[i], TUNSETIFF, &ifr) < 0)
			return -1;
		fprintf(f, "link set %s netns %s\n", ifr.ifr_name, t.ns);
	}
	fclose(f);
	if (sh("ip -batch %s", batch))
		return -1;
	f = fopen(batch, "we");
	if (!f)
		return -1;
	for (int i = 0; i < N; i++) {
		fprintf(f, "link set tb%dx%d up\n", (int)getpid(), i);
		fprintf(f, "route add 100.65.%d.%d/32 dev tb%dx%d\n", i / 250, i % 250 + 1,
			(int)getpid(), i);
	}
	fclose(f);
	/* No IPv6 anywhere in the namespace: exact counts. */
	if (sh("ip netns exec %s sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && "
	       "ip -n %s -batch %s",
	       t.ns, t.ns, batch))
		return -1;
	unlink(batch);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < N; i++) {
		if (t.w[i]) {
			int g = t.gone;

			workers_stop(t.w[i], false);
			run_until(&t.gone, g + 1, 3000);
		}
	}
	if (t.ws) {
		workers_close(t.ws);
		uv_run(&t.loop, UV_RUN_NOWAIT);
	}
	if (t.sup_a > 0)
		kill(t.sup_a, SIGKILL);
	for (int i = 0; i < N; i++) {
		int pfd = t.id[i].pid > 0 ? (int)syscall(SYS_pidfd_open, t.id[i].pid, 0) : -1;

		/* Only the recorded process, never a reused pid. */
		if (pfd >= 0 && proc_start(t.id[i].pid) == t.id[i].start_time)
			syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
		if (pfd >= 0)
			close(pfd);
	}
	for (unsigned long long s = now_ms(); now_ms() - s < 3000;) {
		pid_t r = waitpid(-1, NULL, WNOHANG);

		if (r < 0)
			break;
		if (r == 0)
			usleep(10000);
	}
	uv_loop_close(&t.loop);
	for (int i = 0; i < N; i++)
		if (t.tun[i] >= 0)
			close(t.tun[i]);
	sh("ip netns del %s 2>/dev/null", t.ns);
	sh("rm -rf '%s'", t.run_dir);
	return 0;
}

static void collect_stats(uint64_t want)
{
	unsigned long long start = now_ms();

	for (;;) {
		int n = t.stats_n, low = 0;

		for (int i = 0; i < N; i++)
			assert_int_equal(workers_request_stats(t.w[i]), 0);
		assert_true(run_until(&t.stats_n, n + N, 5000) >= 0);
		for (int i = 0; i < N; i++)
			low += t.rx[i] < want;
		if (!low || now_ms() - start > 3000)
			break;
		usleep(20000);
	}
}

static void test_bench(void **state)
{
	struct workers_config wc = {
		.worker_path = t.worker_path, .run_dir = t.run_dir, .cgroup_parent = ""};
	pid_t pids[N];
	long steady, peak = 0, max1;
	int pipefd[2], st;
	unsigned long long t0, sum = 0, worst = 0;

	(void)state;
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	fflush(stdout);
	t.sup_a = fork();
	assert_true(t.sup_a >= 0);
	if (t.sup_a == 0) {
		close(pipefd[0]);
		supervisor_a(pipefd[1]);
	}
	close(pipefd[1]);
	for (int i = 0; i < N; i++) {
		struct pollfd p = {.fd = pipefd[0], .events = POLLIN};

		assert_int_equal(poll(&p, 1, 60000), 1);
		assert_int_equal(read(pipefd[0], &t.id[i], sizeof(t.id[i])), sizeof(t.id[i]));
		pids[i] = t.id[i].pid;
	}
	close(pipefd[0]);
	for (int i = 0; i < N; i++) {
		close(t.tun[i]);
		t.tun[i] = -1;
	}

	/* PSS: steady (idle), then peak while every worker reads traffic. */
	usleep(200 * 1000);
	steady = total_pss(pids, &max1);
	for (int r = 0; r < 3; r++) {
		long m, s;

		traffic(1);
		s = total_pss(pids, &m);
		if (s > peak)
			peak = s;
		if (m > max1)
			max1 = m;
	}
	printf("bench: worker PSS with %d workers: steady %ld kB total (%ld kB each), "
	       "peak %ld kB total (%ld kB each, max one worker %ld kB)\n",
	       N, steady, steady / N, peak, peak / N, max1);
#ifndef __SANITIZE_ADDRESS__
	/* The bound we hold workers to (ASan's shadow memory alone exceeds it). */
	assert_true(steady / N <= 1024);
#endif

	/* Re-adoption of all 100 after kill -9 of their supervisor. */
	assert_int_equal(kill(t.sup_a, SIGKILL), 0);
	assert_int_equal(waitpid(t.sup_a, &st, 0), t.sup_a);
	t.sup_a = 0;
	traffic(1); /* while no supervisor exists */
	assert_int_equal(workers_new(&t.loop, &wc, &t.ws), 0);
	t0 = now_ms();
	for (int i = 0; i < N; i++) {
		struct worker_spec s = spec_of(i);

		assert_int_equal(
			workers_adopt(t.ws, &s, &t.id[i], on_worker, (void *)(uintptr_t)i, &t.w[i]),
			0);
	}
	printf("bench: re-adopted %d workers in %llu ms\n", N, now_ms() - t0);
	collect_stats(4);
	for (int i = 0; i < N; i++)
		if (t.rx[i] != 4)
			fail_msg("worker %d counted %llu of 4 packets", i,
				 (unsigned long long)t.rx[i]);

	/* Respawn time after kill -9, RESPAWN_SAMPLES workers one by one. */
	for (int k = 0; k < RESPAWN_SAMPLES; k++) {
		int i = k * (N / RESPAWN_SAMPLES), ready = t.ready;
		unsigned long long d;

		t0 = now_ms();
		assert_int_equal(
			syscall(SYS_pidfd_send_signal, workers_pidfd(t.w[i]), SIGKILL, NULL, 0), 0);
		assert_true(run_until(&t.ready, ready + 1, 2000) >= 0);
		d = now_ms() - t0;
		sum += d;
		if (d > worst)
			worst = d;
	}
	printf("bench: respawn after kill -9: mean %llu ms, worst %llu ms (%d samples)\n",
	       sum / RESPAWN_SAMPLES, worst, RESPAWN_SAMPLES);
	assert_true(worst < 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bench, setup, teardown),
	};

	if (geteuid() != 0) {
		printf("netns tests need root\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
