/* Workers end to end, as root: the real zygote and worker binary, a TUN device
 * made here and moved into a netns made here.
 *
 *   this test (supervisor side: supervisor/workers.c on a libuv loop)
 *     │ fork+exec                     │ TUN fd (custody dup kept here)
 *     ▼                               ▼
 *   tailscale-cni-worker --zygote ── clone3(CLONE_PIDFD|CLONE_PARENT) ──► worker
 *                                                                        │ fd 4
 *   netns tscniw<pid>:  ts0 (100.64.0.1/32, route 100.64.0.0/10)  ◄──────┘
 *                       ping 100.64.0.2 → packets into the TUN, the worker counts them
 *
 * Each test makes its own netns and TUN and removes them; processes it starts
 * it stops by pidfd. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "mem.h"
#include "workers.h"
#include "kfeat.h"
#include "worker.pb-c.h"
#include "fixture.h"
#include "tests/lib/test_ca.h"

struct fx {
	uv_loop_t loop;
	struct workers *ws;
	struct worker *w;
	char ns[32];
	char ifname[IFNAMSIZ];
	char cgroup[64];
	int tun;
	int extra_fd; /* >= 0: handed to the next spawn as an extra fd */
	/* What the callbacks saw. */
	int ready, started, exits, gone, stats_n, traps, test_replies;
	int exit_code, exit_status;
	struct worker_stats stats;
	int test_err;
	char test_detail[256];
	char trap_detail[256];
	char gone_why[128];
};

static int tun_create(const char *name)
{
	struct ifreq ifr = {.ifr_flags = IFF_TUN | IFF_NO_PI};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	strscpy(ifr.ifr_name, name, sizeof(ifr.ifr_name));
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

static void on_worker(struct worker *w, enum worker_event ev, const struct worker_report *r,
		      void *arg)
{
	struct fx *f = arg;

	(void)w;
	switch (ev) {
	case WORKER_EV_READY:
		f->ready++;
		break;
	case WORKER_EV_STATS:
		f->stats = r->stats;
		f->stats_n++;
		break;
	case WORKER_EV_EVENT:
		if (r->event_kind == TSCNI__EVENT_KIND__EVENT_SECCOMP_TRAP) {
			f->traps++;
			snprintf(f->trap_detail, sizeof(f->trap_detail), "%s", r->detail);
		}
		break;
	case WORKER_EV_TEST_REPLY:
		f->test_replies++;
		f->test_err = r->err;
		snprintf(f->test_detail, sizeof(f->test_detail), "%s", r->detail);
		break;
	case WORKER_EV_EXIT:
		f->exits++;
		f->exit_code = r->code;
		f->exit_status = r->status;
		break;
	case WORKER_EV_GONE:
		f->gone++;
		snprintf(f->gone_why, sizeof(f->gone_why), "%s", r->why);
		f->w = NULL;
		break;
	case WORKER_EV_STARTED:
		f->started++;
		break;
	case WORKER_EV_REAUTH: /* no control plane here: never asked */
		break;
	}
}

static void tick(uv_timer_t *t)
{
	(void)t;
}

/* Runs the loop until *counter reaches want or ms pass. Returns the time it
 * took in ms, or -1 on timeout. */
static long run_until(struct fx *f, const int *counter, int want, unsigned int ms)
{
	unsigned long long start = now_ms();
	uv_timer_t t;

	uv_timer_init(&f->loop, &t);
	uv_timer_start(&t, tick, 10, 10);
	while (*counter < want && now_ms() - start < ms)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	return *counter >= want ? (long)(now_ms() - start) : -1;
}

static void cleanup_net(struct fx *f)
{
	if (f->tun >= 0)
		close(f->tun);
	f->tun = -1;
	sh("ip netns del %s 2>/dev/null", f->ns);
}

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct workers_config wc = {0};
	const char *bd = getenv("TSCNI_BUILD_DIR");
	char path[512];
	int ret;

	f->tun = -1;
	f->extra_fd = -1;
	snprintf(f->ns, sizeof(f->ns), "tscniw%d", (int)getpid());
	snprintf(f->ifname, sizeof(f->ifname), "tw%d", (int)getpid());
	snprintf(f->cgroup, sizeof(f->cgroup), "tscni-test-%d", (int)getpid());
	if (!bd || bd[0] != '/') {
		fprintf(stderr, "TSCNI_BUILD_DIR (absolute) must name the build directory\n");
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/worker/tailscale-cni-worker", bd);
	if (sh("ip netns add %s", f->ns))
		goto fail;
	f->tun = tun_create(f->ifname);
	if (f->tun < 0)
		goto fail;
	if (sh("ip link set %s netns %s && ip -n %s link set %s name ts0 && "
	       "ip -n %s addr add 100.64.0.1/32 dev ts0 && ip -n %s link set ts0 up && "
	       "ip -n %s route add 100.64.0.0/10 dev ts0",
	       f->ifname, f->ns, f->ns, f->ifname, f->ns, f->ns, f->ns))
		goto fail;
	if (uv_loop_init(&f->loop) < 0)
		goto fail;
	wc.worker_path = path;
	wc.cgroup_parent = f->cgroup;
	wc.uid_base = 2000000000;
	ret = workers_new(&f->loop, &wc, &f->ws);
	if (ret < 0) {
		fprintf(stderr, "workers_new: %s\n", strerror(-ret));
		uv_loop_close(&f->loop);
		goto fail;
	}
	*state = f;
	return 0;
fail:
	cleanup_net(f);
	free(f);
	return -1;
}

static void rm_cgroups(const char *parent)
{
	/* Only directories named after this test's pid. */
	sh("for d in /sys/fs/cgroup/*/%s /sys/fs/cgroup/%s; do [ -d \"$d\" ] || continue; "
	   "rmdir \"$d\"/zygote \"$d\" 2>/dev/null; done; true",
	   parent, parent);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pid_t zpid = workers_zygote_pid(f->ws);

	if (f->w) {
		int gone = f->gone;

		workers_stop(f->w, false);
		run_until(f, &f->gone, gone + 1, 5000);
	}
	workers_close(f->ws);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	/* The zygote sees EOF and exits; reap it. */
	if (zpid > 0)
		waitpid(zpid, NULL, 0);
	uv_loop_close(&f->loop);
	cleanup_net(f);
	rm_cgroups(f->cgroup);
	free(f);
	return 0;
}

static struct worker *spawn(struct fx *f, bool test_requests, bool debug)
{
	struct worker_spec spec = {
		.pod_uid = "pod-0001",
		.tun_fd = f->tun,
		.slot = 7,
		.mtu = 1280,
		.test_requests = test_requests,
		.debug_seccomp = debug,
	};
	int ready = f->ready, started = f->started;

	memset(spec.machine_private, 0x11, sizeof(spec.machine_private));
	memset(spec.node_private, 0x22, sizeof(spec.node_private));
	if (f->extra_fd >= 0) {
		spec.extra_fds = &f->extra_fd;
		spec.n_extra_fds = 1;
	}
	assert_int_equal(workers_spawn(f->ws, &spec, on_worker, f, &f->w), 0);
	assert_true(run_until(f, &f->ready, ready + 1, 5000) >= 0);
	/* Its Hello came first (WORKER_EV_STARTED: the record names it). */
	assert_int_equal(f->started, started + 1);
	return f->w;
}

static uint64_t stats_once(struct fx *f)
{
	int n = f->stats_n;

	assert_int_equal(workers_request_stats(f->w), 0);
	assert_true(run_until(f, &f->stats_n, n + 1, 3000) >= 0);
	return f->stats.tun_rx_packets;
}

/* The data thread may not have read the last packets when the control
 * thread answers: ask until want is reached (or 2 s pass). */
static uint64_t stats(struct fx *f, uint64_t want)
{
	unsigned long long start = now_ms();
	uint64_t v;

	while ((v = stats_once(f)) < want && now_ms() - start < 2000)
		usleep(20000);
	return v;
}

/* count IPv4 packets from inside the pod towards a tailnet address: they
 * leave through ts0 into the TUN. (No ping binary here: bash's /dev/udp.) */
static void ping(struct fx *f, int count)
{
	assert_int_equal(sh("ip netns exec %s bash -c 'for i in $(seq %d); do "
			    "echo ping >/dev/udp/100.64.0.2/9; done'",
			    f->ns, count),
			 0);
}

static bool alive(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return poll(&p, 1, 0) == 0;
}

static void read_file(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t r;

	assert_true(fd >= 0);
	r = read(fd, buf, n - 1);
	close(fd);
	assert_true(r > 0);
	buf[r] = '\0';
}

/* With the clone3 fallback forced (TSCNI_FORCE_FALLBACK), workers are the
 * zygote's children, not ours: how one died cannot be known (waitid needs a
 * child), only that it did. */
static bool death_known(void)
{
	return !kfeat_fallback_forced("clone3") && !kfeat_fallback_forced("close_range");
}

static void test_ping_counted(void **state)
{
	struct fx *f = *state;
	uint64_t before, after;

	spawn(f, false, false);
	before = stats_once(f);
	ping(f, 5);
	after = stats(f, before + 5);
	printf("worker %d counted %llu packets of 5 sent\n", (int)workers_pid(f->w),
	       (unsigned long long)(after - before));
	assert_true(after - before >= 5);
}

static void test_worker_kill9_respawn(void **state)
{
	struct fx *f = *state;
	int custody, old_pid, pidfd;
	unsigned long long t0;
	long took;

	spawn(f, false, false);
	custody = workers_tun_fd(f->w);
	old_pid = workers_pid(f->w);
	pidfd = workers_pidfd(f->w);
	t0 = now_ms();
	assert_int_equal(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0), 0);
	took = run_until(f, &f->ready, 2, 2000);
	assert_true(took >= 0);
	printf("respawn: worker %d -> %d ready %llu ms after kill -9\n", old_pid,
	       (int)workers_pid(f->w), now_ms() - t0);
	assert_int_equal(f->exits, 1);
	if (death_known()) {
		assert_int_equal(f->exit_code, CLD_KILLED);
		assert_int_equal(f->exit_status, SIGKILL);
	}
	assert_true(now_ms() - t0 < 500);
	assert_int_not_equal(workers_pid(f->w), old_pid);
	assert_int_equal(workers_tun_fd(f->w), custody);
	assert_int_equal(workers_respawns(f->w), 1);
	/* ts0 never left the pod, and the new worker reads it. */
	assert_int_equal(sh("ip -n %s link show ts0 >/dev/null", f->ns), 0);
	ping(f, 3);
	assert_true(stats(f, 3) >= 3);
}

static void test_zygote_kill9(void **state)
{
	struct fx *f = *state;
	pid_t z0 = workers_zygote_pid(f->ws);
	int wpid, wfd, restarts = 1;
	struct worker *w1;

	spawn(f, false, false);
	wpid = workers_pid(f->w);
	wfd = workers_pidfd(f->w);
	assert_true(z0 > 0);
	assert_int_equal(kill(z0, SIGKILL), 0);
	/* workers_zygote_restarts counts up when the new one is asked for. */
	for (unsigned long long t = now_ms();
	     (workers_zygote_restarts(f->ws) < 1 || workers_zygote_pid(f->ws) == 0) &&
	     now_ms() - t < 3000;)
		run_until(f, &restarts, 2, 20);
	assert_int_equal(workers_zygote_restarts(f->ws), 1);
	assert_true(workers_zygote_pid(f->ws) > 0);
	assert_int_not_equal(workers_zygote_pid(f->ws), z0);
	printf("zygote %d killed, new zygote %d; worker %d untouched\n", (int)z0,
	       (int)workers_zygote_pid(f->ws), wpid);
	assert_true(alive(wfd));
	assert_int_equal(workers_pid(f->w), wpid);
	assert_int_equal(f->exits, 0);
	ping(f, 3);
	assert_true(stats(f, 3) >= 3);
	/* The new zygote spawns. */
	w1 = f->w;
	spawn(f, false, false);
	assert_true(workers_pid(f->w) > 0);
	workers_stop(f->w, false);
	assert_true(run_until(f, &f->gone, 1, 5000) >= 0);
	f->w = w1;
}

static void test_seccomp_kills(void **state)
{
	struct fx *f = *state;
	char st[4096], path[64], *p;

	spawn(f, true, false);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)workers_pid(f->w));
	read_file(path, st, sizeof(st));
	for (const char *k = "CapInh:\tCapPrm:\tCapEff:\tCapBnd:\tCapAmb:\t"; *k; k += 8) {
		char key[8];

		memcpy(key, k, 7);
		key[7] = '\0';
		p = strstr(st, key);
		assert_non_null(p);
		assert_int_equal(strtoull(p + 8, NULL, 16), 0);
	}
	assert_non_null(strstr(st, "Uid:\t2000000007\t2000000007\t2000000007"));
	assert_non_null(strstr(st, "NoNewPrivs:\t1"));
	assert_non_null(strstr(st, "Seccomp:\t2"));
	/* Opening a file is refused (EACCES), not fatal. */
	assert_int_equal(workers_test_request(f->w, 1, "open_read", "/etc/hostname"), 0);
	assert_true(run_until(f, &f->test_replies, 1, 3000) >= 0);
	assert_int_equal(f->test_err, -EACCES);
	/* execve is not in the allow-list: the filter kills with SIGSYS. */
	assert_int_equal(workers_test_request(f->w, 2, "execve", "/bin/true"), 0);
	assert_true(run_until(f, &f->exits, 1, 3000) >= 0);
	printf("execve: worker killed by signal %d (code %d)\n", f->exit_status, f->exit_code);
	if (death_known()) {
		assert_int_equal(f->exit_code, CLD_KILLED);
		assert_int_equal(f->exit_status, SIGSYS);
	}
	assert_true(run_until(f, &f->ready, 2, 2000) >= 0);
}

static void test_seccomp_debug_traps(void **state)
{
	struct fx *f = *state;
	char want[32];

	spawn(f, true, true);
	/* getppid is harmless but not on the list: debug mode names it. */
	assert_int_equal(workers_test_request(f->w, 1, "syscall", "110"), 0);
	assert_true(run_until(f, &f->test_replies, 1, 3000) >= 0);
	assert_true(run_until(f, &f->traps, 1, 1000) >= 0);
	snprintf(want, sizeof(want), "syscall %d", SYS_getppid);
	assert_string_equal(f->trap_detail, want);
	assert_int_equal(f->test_err, -ENOSYS);
	assert_int_equal(f->exits, 0);
}

/* The sandbox table: each action through a TestRequest must be
 * refused (an errno) or kill the worker (SIGSYS); the test says which. One
 * control row (a UDP socket) must be allowed, so the harness can tell. */
static void test_sandbox_table(void **state)
{
	struct fx *f = *state;
	struct worker *other, *mine;
	char other_pid[16], wpath[64];
	static const struct {
		const char *action, *arg;
		int want; /* > 0: killed by that signal; < 0: refused with it; 0: allowed */
	} rows[] = {
		{"open_read", "/etc/hostname", -EACCES},
		{"open_write", NULL, -EACCES},
		{"execve", "/bin/true", SIGSYS},
		{"socket_netlink", "", SIGSYS},
		{"socket_unix", "", SIGSYS},
		{"socket_packet", "", SIGSYS},
		{"ioctl_siocaddrt", "", SIGSYS},
		{"setsockopt_ipt", "", SIGSYS},
		{"ptrace", NULL, SIGSYS},
		{"proc_mem", NULL, -EACCES},
		{"connect_unix", "/run/tailscale-cni/cni.sock", SIGSYS},
		{"fork", "", SIGSYS},
		{"bpf", "", SIGSYS},
		{"io_uring_setup", "", SIGSYS},
		{"userfaultfd", "", SIGSYS},
		{"keyctl", "", SIGSYS},
		/* The host's NETLINK_ROUTE socket the supervisor hands every
		 * worker (here an extra fd of the test's own): it reads, but
		 * a change needs CAP_NET_ADMIN, which the worker lacks. */
		{"netlink_newaddr", "", -EPERM},
		{"socket_udp", "", 0},
	};

	/* Another worker, the target of ptrace and /proc/PID/mem. */
	other = spawn(f, false, false);
	snprintf(other_pid, sizeof(other_pid), "%d", (int)workers_pid(other));
	f->extra_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
	assert_true(f->extra_fd >= 0);
	mine = spawn(f, true, false);
	close(f->extra_fd); /* workers holds its own dup (custody) */
	f->extra_fd = -1;
	snprintf(wpath, sizeof(wpath), "/tmp/tscni-worker-%d", (int)getpid());
	unlink(wpath);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const char *arg = rows[i].arg;
		int replies = f->test_replies, exits = f->exits, ready = f->ready;
		unsigned long long t = now_ms();

		if (!arg)
			arg = !strcmp(rows[i].action, "open_write") ? wpath : other_pid;
		assert_int_equal(workers_test_request(mine, (uint32_t)i + 1, rows[i].action, arg),
				 0);
		while (f->test_replies == replies && f->exits == exits && now_ms() - t < 3000)
			run_until(f, &replies, replies + 1, 10);
		if (f->exits > exits) {
			printf("sandbox %-16s killed by signal %d\n", rows[i].action,
			       f->exit_status);
			if (rows[i].want <= 0)
				fail_msg("%s: killed, expected %d", rows[i].action, rows[i].want);
			if (death_known()) {
				assert_int_equal(f->exit_code, CLD_KILLED);
				assert_int_equal(f->exit_status, rows[i].want);
			}
			/* Respawned, same custody: wait for it before the next row. */
			assert_true(run_until(f, &f->ready, ready + 1, 3000) >= 0);
		} else if (f->test_replies > replies) {
			printf("sandbox %-16s %s\n", rows[i].action, f->test_detail);
			if (rows[i].want > 0 || f->test_err != rows[i].want)
				fail_msg("%s: returned %d (%s), expected %d", rows[i].action,
					 f->test_err, f->test_detail, rows[i].want);
		} else {
			fail_msg("%s: neither a reply nor a death", rows[i].action);
		}
	}
	assert_int_equal(access(wpath, F_OK), -1);
	/* The other worker was never touched. */
	assert_int_equal(workers_respawns(other), 0);
	int gone = f->gone;

	workers_stop(other, false);
	assert_true(run_until(f, &f->gone, gone + 1, 5000) >= 0);
	f->w = mine;
}

/* The first mapping of the worker binary itself: where ASLR put it. */
static void first_map(pid_t pid, char *buf, size_t n)
{
	char path[64], maps[16384], *p, *end;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	read_file(path, maps, sizeof(maps));
	p = strstr(maps, "/tailscale-cni-worker");
	assert_non_null(p);
	while (p > maps && p[-1] != '\n')
		p--;
	end = strchr(p, '\n');
	snprintf(buf, n, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
}

/* Whether pid maps the zygote's copy of the CA bundle (--ca-fd). */
static bool maps_ca(pid_t pid)
{
	char path[64], line[512];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "memfd:tscni-ca") != NULL;
	fclose(f);
	return found;
}

/* After max_forks spawns the zygote re-execs itself: same pid, a fresh
 * address-space layout (ASLR), and it keeps serving, with the CA bundle
 * it was handed on fd 4 parsed again (worker/tls/tls_store.h). */
static void test_zygote_reexec(void **state)
{
	struct fx *f = *state;
	struct workers_config wc = {.cgroup_parent = "",
				    .zygote_max_forks = 2,
				    .ca_pem = TEST_CA_PEM,
				    .ca_pem_len = sizeof(TEST_CA_PEM) - 1};
	char path[512], before[256], after[256];
	pid_t z0 = workers_zygote_pid(f->ws);
	pid_t zpid;

	/* Replace the fixture's zygote with one that re-execs every 2 forks. */
	workers_close(f->ws);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	waitpid(z0, NULL, 0);
	snprintf(path, sizeof(path), "%s/worker/tailscale-cni-worker", getenv("TSCNI_BUILD_DIR"));
	wc.worker_path = path;
	assert_int_equal(workers_new(&f->loop, &wc, &f->ws), 0);
	zpid = workers_zygote_pid(f->ws);
	/* Let it reach its request loop (it has mapped everything by then). */
	usleep(100 * 1000);
	first_map(zpid, before, sizeof(before));
	assert_true(maps_ca(zpid));
	for (int i = 0; i < 3; i++) {
		int gone = f->gone;

		spawn(f, false, false);
		workers_stop(f->w, false);
		assert_true(run_until(f, &f->gone, gone + 1, 5000) >= 0);
	}
	usleep(100 * 1000);
	first_map(zpid, after, sizeof(after));
	printf("zygote %d after 3 forks (max 2): first mapping %s -> %s\n", (int)zpid, before,
	       after);
	assert_int_equal(workers_zygote_pid(f->ws), zpid);
	assert_int_equal(workers_zygote_restarts(f->ws), 0);
	assert_string_not_equal(before, after);
	assert_true(maps_ca(zpid));
}

static void test_fds_and_pss(void **state)
{
	struct fx *f = *state;
	char path[64], link[256], buf[4096];
	int epolls = 0, eventfds = 0, pipes = 0, smaps = 0;
	long pss = -1;

	spawn(f, false, false);
	for (int fd = 0; fd < 64; fd++) {
		ssize_t r;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)workers_pid(f->w), fd);
		r = readlink(path, link, sizeof(link) - 1);
		if (r < 0)
			continue;
		link[r] = '\0';
		if (fd <= 2)
			assert_string_equal(link, "/dev/null");
		else if (fd == 3)
			assert_memory_equal(link, "socket:", 7);
		else if (fd == 4)
			assert_string_equal(link, "/dev/net/tun");
		else if (!strcmp(link, "anon_inode:[eventpoll]"))
			epolls++;
		else if (!strcmp(link, "anon_inode:[eventfd]"))
			eventfds++;
		else if (!strncmp(link, "pipe:", 5))
			pipes++;
		else if (strstr(link, "smaps_rollup"))
			smaps++; /* Stats' PSS: opened before the sandbox hid /proc */
		else
			fail_msg("unexpected fd %d -> %s", fd, link);
	}
	/* The rest is the worker's own libuv loop (1.44): its epoll fd, the
	 * threadpool's async eventfd, the signal lock pipe and the loop's
	 * signal pipe. */
	printf("worker fds: 0-2 /dev/null, 3 socket, 4 tun, %d epoll, %d eventfd, %d pipe ends, %d "
	       "smaps_rollup\n",
	       epolls, eventfds, pipes, smaps);
	assert_int_equal(epolls, 1);
	assert_int_equal(smaps, 1);
	assert_true(eventfds <= 1);
	assert_true(pipes <= 4);
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)workers_pid(f->w));
	read_file(path, buf, sizeof(buf));
	for (char *p = strstr(buf, "\nPss:"); p; p = NULL)
		pss = strtol(p + 5, NULL, 10);
	printf("idle worker PSS: %ld kB\n", pss);
	assert_true(pss > 0);
}

static void test_netns_gone(void **state)
{
	struct fx *f = *state;

	spawn(f, false, false);
	assert_int_equal(sh("ip netns del %s", f->ns), 0);
	assert_true(run_until(f, &f->gone, 1, 5000) >= 0);
	printf("netns deleted: worker gone (%s), respawns %d\n", f->gone_why, f->exits - 1);
	assert_int_equal(f->exits, 1);
	if (death_known())
		assert_int_equal(f->exit_code, CLD_EXITED);
	assert_null(f->w);
}

/* The paths for older kernels, forced: fork + pidfd_open in the zygote
 * (no clone3, so the worker is the zygote's child and how it died is not
 * known to us), /proc/self/fd instead of close_range in the child. */
static void test_fallbacks(void **state)
{
	struct fx *f = *state;
	struct workers_config wc = {.cgroup_parent = "", .force_fallbacks = true};
	pid_t z0 = workers_zygote_pid(f->ws);
	char path[512];
	int old_pid;

	workers_close(f->ws);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	waitpid(z0, NULL, 0);
	snprintf(path, sizeof(path), "%s/worker/tailscale-cni-worker", getenv("TSCNI_BUILD_DIR"));
	wc.worker_path = path;
	assert_int_equal(workers_new(&f->loop, &wc, &f->ws), 0);
	spawn(f, false, false);
	ping(f, 4);
	assert_true(stats(f, 4) >= 4);
	old_pid = workers_pid(f->w);
	assert_int_equal(syscall(SYS_pidfd_send_signal, workers_pidfd(f->w), SIGKILL, NULL, 0), 0);
	assert_true(run_until(f, &f->ready, 2, 2000) >= 0);
	assert_int_equal(f->exit_code, 0); /* not our child: no status */
	assert_int_not_equal(workers_pid(f->w), old_pid);
	printf("fallbacks: worker %d -> %d after kill -9\n", old_pid, (int)workers_pid(f->w));
	/* The /proc/self/fd walk closed as much as close_range would: 0-4,
	 * the loop's own (1 epoll, 1 eventfd, 4 pipe ends) and smaps_rollup
	 * (opened after the walk), nothing from the zygote. */
	assert_int_equal(sh("test $(ls /proc/%d/fd | wc -l) -eq 12", (int)workers_pid(f->w)), 0);
}

/* ns_ino: the inode of a namespace file, 0 if unreadable. */
static unsigned long long ns_ino(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? 0 : (unsigned long long)st.st_ino;
}

/* The child of test_host_mntns, in a mount namespace of its own that plays
 * the supervisor's container: a tmpfs hides the worker binary's directory and
 * another /sys/fs/cgroup. Returns 0, or the number of the step that failed
 * (after a line on stderr). */
static int host_mntns_child(const char *path, const char *host_ns, const char *cg)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct workers_config wc = {.worker_path = path, .cgroup_parent = cg};
	char dir[512], ns[64], line[512];
	struct worker_spec spec = {.pod_uid = "pod-mntns", .slot = 9, .mtu = 1280};
	pid_t z0, z1;
	FILE *cgf;
	int ret, found = 0;

	f->tun = -1;
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=64k") < 0 ||
	    mount("tmpfs", "/sys/fs/cgroup", "tmpfs", 0, "size=64k") < 0) {
		fprintf(stderr, "private mount namespace: %s\n", strerror(errno));
		return 1;
	}
	if (access(path, F_OK) == 0 || errno != ENOENT) {
		fprintf(stderr, "%s still visible in the private namespace\n", path);
		return 2;
	}
	if (uv_loop_init(&f->loop) < 0)
		return 3;
	/* Without host_mntns: the binary is not there, a clear error. */
	ret = workers_new(&f->loop, &wc, &f->ws);
	if (ret != -ENOENT) {
		fprintf(stderr, "without host_mntns: %d, want -ENOENT\n", ret);
		return 4;
	}
	/* Not a namespace: setns refuses, the error names the stage. */
	wc.host_mntns = "/proc/self/cmdline";
	ret = workers_new(&f->loop, &wc, &f->ws);
	if (ret != -EINVAL) {
		fprintf(stderr, "host_mntns /proc/self/cmdline: %d, want -EINVAL\n", ret);
		return 5;
	}
	wc.host_mntns = "/nonexistent/ns/mnt";
	if (workers_new(&f->loop, &wc, &f->ws) != -ENOENT)
		return 6;
	wc.host_mntns = host_ns;
	ret = workers_new(&f->loop, &wc, &f->ws);
	if (ret < 0) {
		fprintf(stderr, "with host_mntns %s: %s\n", host_ns, strerror(-ret));
		return 7;
	}
	z0 = workers_zygote_pid(f->ws);
	snprintf(ns, sizeof(ns), "/proc/%d/ns/mnt", (int)z0);
	if (ns_ino(ns) != ns_ino(host_ns) || ns_ino(ns) == ns_ino("/proc/self/ns/mnt")) {
		fprintf(stderr, "zygote %d is not in the host's mount namespace\n", (int)z0);
		return 8;
	}
	/* It saw the host's cgroupfs (ours is an empty tmpfs): placed. */
	snprintf(ns, sizeof(ns), "/proc/%d/cgroup", (int)z0);
	for (int i = 0; i < 100 && !found; i++) {
		cgf = fopen(ns, "re");
		while (cgf && fgets(line, sizeof(line), cgf))
			if (strstr(line, cg) && strstr(line, "/zygote"))
				found = 1;
		if (cgf)
			fclose(cgf);
		if (!found)
			usleep(20000);
	}
	if (!found) {
		fprintf(stderr, "zygote %d not placed in %s/zygote\n", (int)z0, cg);
		return 9;
	}
	snprintf(f->ifname, sizeof(f->ifname), "tm%d", (int)getpid());
	f->tun = tun_create(f->ifname);
	if (f->tun < 0)
		return 10;
	spec.tun_fd = f->tun;
	memset(spec.machine_private, 0x33, sizeof(spec.machine_private));
	memset(spec.node_private, 0x44, sizeof(spec.node_private));
	if (workers_spawn(f->ws, &spec, on_worker, f, &f->w) < 0 ||
	    run_until(f, &f->ready, 1, 5000) < 0) {
		fprintf(stderr, "no Ready from a worker of the host's binary\n");
		return 11;
	}
	/* A restarted zygote goes to the same namespace (the fd is kept). */
	kill(z0, SIGKILL);
	for (unsigned long long t = now_ms();
	     (workers_zygote_restarts(f->ws) < 1 || workers_zygote_pid(f->ws) <= 0) &&
	     now_ms() - t < 3000;)
		run_until(f, &found, 2, 20);
	z1 = workers_zygote_pid(f->ws);
	snprintf(ns, sizeof(ns), "/proc/%d/ns/mnt", (int)z1);
	if (z1 <= 0 || z1 == z0 || ns_ino(ns) != ns_ino(host_ns)) {
		fprintf(stderr, "restarted zygote %d not in the host's mount namespace\n", (int)z1);
		return 12;
	}
	printf("zygote %d -> %d and worker %d run %s from %s; the supervisor side cannot see "
	       "it\n",
	       (int)z0, (int)z1, (int)workers_pid(f->w), path, host_ns);
	workers_stop(f->w, false);
	if (run_until(f, &f->gone, 1, 5000) < 0)
		return 13;
	workers_close(f->ws);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	waitpid(z1, NULL, 0);
	uv_loop_close(&f->loop);
	close(f->tun);
	free(f);
	return 0;
}

/* The zygote is exec'd from the binary installed on the host, in
 * the host's mount namespace. Here "the host" is this test's namespace and
 * the supervisor side a forked child with a private one, where the binary
 * and the cgroupfs are hidden under tmpfs. */
static void test_host_mntns(void **state)
{
	const char *bd = getenv("TSCNI_BUILD_DIR");
	char path[512], host_ns[64], cg[64];
	pid_t c;
	int st;

	(void)state;
	assert_non_null(bd);
	snprintf(path, sizeof(path), "%s/worker/tailscale-cni-worker", bd);
	snprintf(host_ns, sizeof(host_ns), "/proc/%d/ns/mnt", (int)getpid());
	snprintf(cg, sizeof(cg), "tscni-test-mnt-%d", (int)getpid());
	fflush(stdout);
	c = fork();
	assert_true(c >= 0);
	if (c == 0) {
		int r = host_mntns_child(path, host_ns, cg);

		fflush(stdout);
		_exit(r);
	}
	assert_int_equal(waitpid(c, &st, 0), c);
	rm_cgroups(cg);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* The supervisor refuses a private pid namespace; here, the host's, it
 * accepts. The child runs in a new pid namespace made for it. */
static void test_private_pidns_refused(void **state)
{
	const char *why = "";
	pid_t c;
	int st;

	(void)state;
	assert_int_equal(workers_check_host_pidns(&why), 0);
	c = fork();
	assert_true(c >= 0);
	if (c == 0) {
		if (unshare(CLONE_NEWPID) < 0)
			_exit(2);
		pid_t g = fork();

		if (g == 0)
			_exit(workers_check_host_pidns(&why) == -EPERM ? 0 : 1);
		_exit(g > 0 && waitpid(g, &st, 0) == g && WIFEXITED(st) ? WEXITSTATUS(st) : 3);
	}
	assert_int_equal(waitpid(c, &st, 0), c);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ping_counted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_kill9_respawn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zygote_kill9, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seccomp_kills, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seccomp_debug_traps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zygote_reexec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fds_and_pss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_netns_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fallbacks, setup, teardown),
		cmocka_unit_test(test_private_pidns_refused),
		cmocka_unit_test(test_host_mntns),
	};

	if (geteuid() != 0) {
		printf("netns tests need root\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
