/* The data-plane engine (worker/dataplane.h) between two nodes (root).
 *
 *   netns dp<pid>pa (pod A)          netns dp<pid>pb (pod B)
 *   ts0 100.64.0.1 fd7a:..::1         ts0 100.64.0.2 fd7a:..::2      (netops_tun_create)
 *     | engine A (own process,           | engine B, or wireguard-go dpw<pid>b
 *     |  own data thread)                |  in node B when the peer is wireguard-go
 *   netns dp<pid>na (node A)         netns dp<pid>nb (node B)
 *   UDP 10.79.0.1:51820 -- veth ====== veth -- UDP 10.79.0.2:51820
 *
 * Every engine runs in a child process of its own (so its CPU time and PSS
 * are its own), configured through shared memory: the child builds a
 * struct dataplane_config from a filter JSON the runner writes there and
 * publishes it with dataplane_set_config(). TCP senders and receivers are
 * children that setns into a pod; streams are compared by BLAKE2b.
 *
 * Cases: pod<->pod (ping v4/v6 both ways, 100 MB TCP each way), the same
 * with every offload off, pod<->wireguard-go (the same, plus TSMP ping and
 * disco-key advertisement from wireguard-go's side, never reaching ts0), and
 * the filter (only TCP 80 allowed in; replies to our own flows; a swap to a
 * new filter within 2 s without dropping an established stream).
 *
 * TSCNI_BENCH=1 runs the benchmark of issue 5 instead (tests/bench/
 * throughput.sh): iperf3 on the same topology for pod<->pod, pod<->
 * wireguard-go and wireguard-go<->wireguard-go; ours with every offload on,
 * each one off alone, and all off (what it prints: above bench()). */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <net/if.h>
#include <netinet/in.h>
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
#include <arpa/inet.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/ip.h"
#include "common/keys.h"
#include "common/log.h"
#include "worker/control/mapjson.h"
#include "worker/control/netmap.h"
#include "common/netns.h"
#include "dataplane.h"
#include "kfeat.h"
#include "netops.h"
#include "fixture.h"

enum {
	MTU = 1280,
	WG_PORT = 51820,
	STREAM_PORT = 5001,
	BIG = 100 * 1024 * 1024,
	SMALL = 10 * 1024 * 1024,
	CHUNK = 64 * 1024,
};

#define V4(i) "100.64.0." #i
#define V6(i) "fd7a:115c:a1e0::" #i

#define ALLOW_ALL                                                                                  \
	"[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"First\":0,\"Last\":65535}}" \
	"]}]"
#define ALLOW_PORT(p)                                                               \
	"[{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"*\",\"Ports\":{\"First\":" #p \
	",\"Last\":" #p "}}]}]"

enum peer_kind { KIND_ENGINE, KIND_WGGO };

struct side_sh {
	int ready, quit, failed;
	int cfg_gen, cfg_done;
	char filter[512];
	struct dataplane_stats st;
	uint64_t cpu_ticks; /* engine thread utime + stime */
	uint64_t pss_kb, pss_kb_max;
	int has_disco;
	uint8_t disco[32];
};

struct shared {
	struct side_sh side[2];
	int rx_done;
	uint64_t rx_bytes;
	uint8_t rx_hash[32];
};

static struct fixture {
	char node[2][32], pod[2][32], dir[64];
	enum peer_kind kind[2];
	bool no_offloads;
	pid_t eng[2], wg[2], extra[4];
	struct shared *sh;
	uint8_t priv[2][32], pub[2][32];
} fx;

/* The benchmark's per-row offload switches, handed to every engine child
 * as struct dataplane_params .tun/.udp when set (the cmocka cases leave it
 * unset: their engines run with fx.no_offloads alone). */
static struct bench_offloads {
	bool set;
	struct tunio_config tun;
	struct udpio_config udp;
} bench_off;

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Where a side's applications live: the pod, or node netns for wireguard-go. */
static const char *app_ns(int side)
{
	return fx.kind[side] == KIND_ENGINE ? fx.pod[side] : fx.node[side];
}

/* fork() whose child dies with the runner (no orphans if it is killed). */
static pid_t spawn(void)
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(89);
	}
	return pid;
}

static pid_t reap(pid_t pid, unsigned ms)
{
	int st;

	for (unsigned t = 0; t < ms; t += 10) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* ---- the engine child ------------------------------------------------- */

/* PSS of process pid (0 = self). */
static uint64_t read_pss_kb(pid_t pid)
{
	char line[256], path[64];
	uint64_t kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid ? pid : getpid());
	f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Pss: %lu kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* utime + stime of task tid of process pid (0 = self), in clock ticks. */
static uint64_t read_cpu_ticks(pid_t pid, int tid)
{
	char path[96], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	ssize_t n;
	int fd;

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid ? pid : getpid(), tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return ut + st;
}

struct udp_arg {
	int side, fd;
};

static int udp_open(void *arg)
{
	struct udp_arg *a = arg;
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(WG_PORT)};
	int size = 4 << 20;

	sin.sin_addr.s_addr = htonl(0x0a4f0001 + (uint32_t)a->side);
	a->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (a->fd < 0)
		return -errno;
	/* The supervisor sets these (issue 5). */
	setsockopt(a->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	setsockopt(a->fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
	if (bind(a->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		return -errno;
	return 0;
}

/* The engine's configuration through the real netmap path: a MapResponse
 * (self, the other side as a peer with its endpoint, an expired peer that
 * must be left out, the filter), mapjson -> netmap_apply ->
 * dataplane_config_from_netmap. */
static int engine_config(struct dataplane *dp, int side, const char *filter)
{
	char self_hex[65], peer_hex[65], gone_hex[65], json[2048];
	uint8_t gone[32];
	struct mapjson_map_response *r = NULL;
	struct dataplane_config *cfg = NULL;
	struct netmap *nm = NULL;
	const char *why = NULL;
	int other = !side, ret = -1;
	int64_t now = (int64_t)time(NULL);

	randombytes_buf(gone, sizeof(gone));
	sodium_bin2hex(self_hex, sizeof(self_hex), fx.pub[side], 32);
	sodium_bin2hex(peer_hex, sizeof(peer_hex), fx.pub[other], 32);
	sodium_bin2hex(gone_hex, sizeof(gone_hex), gone, 32);
	snprintf(json, sizeof(json),
		 "{\"Node\":{\"ID\":%d,\"Key\":\"nodekey:%s\",\"Addresses\":[\"100.64.0.%d/32\","
		 "\"fd7a:115c:a1e0::%d/128\"]},"
		 "\"Peers\":[{\"ID\":%d,\"Key\":\"nodekey:%s\",\"Addresses\":[\"100.64.0.%d/32\","
		 "\"fd7a:115c:a1e0::%d/128\"],\"Endpoints\":[\"10.79.0.%d:%d\"]},"
		 "{\"ID\":9,\"Key\":\"nodekey:%s\",\"Addresses\":[\"100.64.0.9/32\"],"
		 "\"KeyExpiry\":\"2001-01-01T00:00:00Z\",\"Endpoints\":[\"10.79.0.9:1\"]}],"
		 "\"PacketFilter\":%s}",
		 side + 1, self_hex, side + 1, side + 1, other + 1, peer_hex, other + 1, other + 1,
		 other + 1, WG_PORT, gone_hex, filter);
	if (mapjson_parse_map_response(json, strlen(json), &r, &why) < 0 ||
	    netmap_apply(NULL, r, now, &nm, &why) < 0 ||
	    dataplane_config_from_netmap(nm, now, dataplane_filter_state(dp), &cfg, &why) < 0) {
		fprintf(stderr, "config: %s\n", why);
		goto out;
	}
	if (dataplane_config_peer_count(cfg) != 1) {
		fprintf(stderr, "config: %zu peers, expected 1\n",
			dataplane_config_peer_count(cfg));
		dataplane_config_free(cfg);
		goto out;
	}
	dataplane_set_config(dp, cfg);
	ret = 0;
out:
	netmap_put(nm);
	mapjson_map_response_free(r);
	return ret;
}

static void engine_child(int side)
{
	struct side_sh *s = &fx.sh->side[side];
	struct dataplane_params p = {.n_udp = 1, .mtu = MTU};
	struct wg_device_timers timers = {
		.rekey_after_ns = 120 * WG_NSEC_PER_SEC,
		.reject_after_ns = 180 * WG_NSEC_PER_SEC,
		.rekey_attempt_ns = 90 * WG_NSEC_PER_SEC,
		.rekey_timeout_ns = 1 * WG_NSEC_PER_SEC, /* quicker first handshakes */
		.keepalive_ns = 10 * WG_NSEC_PER_SEC,
		.jitter_max_ns = 100000000,
	};
	struct ip_prefix pf;
	struct udp_arg ua = {.side = side, .fd = -1};
	struct dataplane *dp;
	const char *why = NULL;
	int podfd, nodefd, tun, ifindex, tick = 0;
	char a[48];

	log_set_level(LOG_WARN);
	if (fx.no_offloads)
		setenv("TSCNI_FORCE_FALLBACK", "tun_vnet_hdr,tun_uso,udp_gso,udp_gro", 1);
	podfd = open_ns(fx.pod[side]);
	nodefd = open_ns(fx.node[side]);
	if (podfd < 0 || nodefd < 0 ||
	    netops_tun_create(podfd, "ts0", NULL, MTU, &tun, &ifindex, &why))
		_exit(91);
	snprintf(a, sizeof(a), "100.64.0.%d/32", side + 1);
	if (ip_prefix_parse(a, false, &pf) || netops_addr_add(podfd, ifindex, &pf))
		_exit(92);
	snprintf(a, sizeof(a), "fd7a:115c:a1e0::%d/128", side + 1);
	if (ip_prefix_parse(a, false, &pf) || netops_addr_add(podfd, ifindex, &pf) ||
	    netops_route_add(podfd, ifindex, &ip_tailscale_v4) ||
	    netops_route_add(podfd, ifindex, &ip_tailscale_v6))
		_exit(93);
	if (netns_run(nodefd, udp_open, &ua) < 0)
		_exit(94);
	p.tun_fd = tun;
	p.udp_fds[0] = ua.fd;
	p.timers = &timers;
	if (fx.no_offloads)
		p.tun = (struct tunio_config){true, true, true, true};
	p.udp.no_gso = p.udp.no_gro = fx.no_offloads;
	if (bench_off.set) {
		p.tun = bench_off.tun;
		p.udp = bench_off.udp;
	}
	memcpy(p.private_key, fx.priv[side], 32);
	if (dataplane_new(&p, &dp, &why) < 0) {
		fprintf(stderr, "dataplane_new: %s\n", why);
		_exit(95);
	}
	sodium_memzero(p.private_key, 32);
	if (engine_config(dp, side, s->filter) < 0 || dataplane_start(dp) < 0)
		_exit(96);
	s->cfg_done = s->cfg_gen;
	__atomic_store_n(&s->ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&s->quit, __ATOMIC_SEQ_CST)) {
		int gen = __atomic_load_n(&s->cfg_gen, __ATOMIC_SEQ_CST);

		if (gen != s->cfg_done) {
			if (engine_config(dp, side, s->filter) < 0)
				s->failed = 1;
			s->cfg_done = gen;
		}
		dataplane_stats(dp, &s->st);
		if (s->st.error)
			s->failed = 1;
		s->has_disco = dataplane_disco_key(dp, fx.pub[!side], s->disco) == 0;
		if (s->st.tid)
			s->cpu_ticks = read_cpu_ticks(0, s->st.tid);
		if (++tick % 5 == 0) {
			s->pss_kb = read_pss_kb(0);
			if (s->pss_kb > s->pss_kb_max)
				s->pss_kb_max = s->pss_kb;
		}
		sleep_ms(20);
	}
	dataplane_free(dp);
	close(tun);
	close(ua.fd);
	_exit(0);
}

/* ---- wireguard-go ----------------------------------------------------- */

static int key_b64(const uint8_t key[32], char *out, size_t n)
{
	return sodium_bin2base64(out, n, key, 32, sodium_base64_VARIANT_ORIGINAL) ? 0 : -1;
}

static int start_wggo(int side)
{
	char peer[64], keyfile[128], dev[IFNAMSIZ];
	int other = !side;
	FILE *f;
	pid_t pid;

	/* wireguard-go's UAPI socket (/var/run/wireguard/<dev>.sock) is not
	 * per netns: a unique name per side and per run. */
	snprintf(dev, sizeof(dev), "dpw%d%c", (int)getpid() % 1000000, 'a' + side);
	snprintf(keyfile, sizeof(keyfile), "%s/wg%d.key", fx.dir, side);
	f = fopen(keyfile, "we");
	if (!f || key_b64(fx.priv[side], peer, sizeof(peer)) < 0)
		return -1;
	fprintf(f, "%s\n", peer);
	fclose(f);
	key_b64(fx.pub[other], peer, sizeof(peer));
	pid = spawn();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		dup2(null, 1);
		dup2(null, 2);
		setenv("WG_PROCESS_FOREGROUND", "1", 1);
		execlp("ip", "ip", "netns", "exec", fx.node[side], "wireguard-go", "-f", dev,
		       (char *)NULL);
		_exit(127);
	}
	fx.wg[side] = pid;
	for (int i = 0; i < 300 && sh("ip -n %s link show %s >/dev/null 2>&1", fx.node[side], dev);
	     i++)
		sleep_ms(10);
	if (sh("ip netns exec %s wg set %s listen-port %d private-key %s peer %s allowed-ips "
	       "100.64.0.%d/32,fd7a:115c:a1e0::%d/128 endpoint 10.79.0.%d:%d",
	       fx.node[side], dev, WG_PORT, keyfile, peer, other + 1, other + 1, other + 1,
	       WG_PORT))
		return -1;
	return sh("ip -n %s link set %s mtu %d up && ip -n %s addr add 100.64.0.%d/32 dev %s && "
		  "ip -n %s addr add fd7a:115c:a1e0::%d/128 dev %s nodad && "
		  "ip -n %s route add 100.64.0.%d/32 dev %s && "
		  "ip -n %s route add fd7a:115c:a1e0::%d/128 dev %s",
		  fx.node[side], dev, MTU, fx.node[side], side + 1, dev, fx.node[side], side + 1,
		  dev, fx.node[side], other + 1, dev, fx.node[side], other + 1, dev);
}

static void stop_pid(pid_t *pid, int sig)
{
	if (*pid <= 0)
		return;
	kill(*pid, sig);
	reap(*pid, 3000);
	*pid = 0;
}

/* ---- fixture ---------------------------------------------------------- */

static int setup_kinds(enum peer_kind a, enum peer_kind b, bool no_offloads, const char *filter_a)
{
	int pid = (int)getpid();

	memset(&fx, 0, sizeof(fx));
	fx.kind[0] = a;
	fx.kind[1] = b;
	fx.no_offloads = no_offloads;
	for (int i = 0; i < 2; i++) {
		snprintf(fx.node[i], sizeof(fx.node[i]), "dp%dn%c", pid, 'a' + i);
		snprintf(fx.pod[i], sizeof(fx.pod[i]), "dp%dp%c", pid, 'a' + i);
		keys_generate(fx.priv[i]);
		if (keys_public(fx.pub[i], fx.priv[i]) < 0)
			return -1;
	}
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/tscni-dp.XXXXXX");
	if (!mkdtemp(fx.dir))
		return -1;
	fx.sh = mmap(NULL, sizeof(*fx.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		     0);
	if (fx.sh == MAP_FAILED)
		return -1;
	memset(fx.sh, 0, sizeof(*fx.sh));
	snprintf(fx.sh->side[0].filter, sizeof(fx.sh->side[0].filter), "%s", filter_a);
	snprintf(fx.sh->side[1].filter, sizeof(fx.sh->side[1].filter), "%s", ALLOW_ALL);
	if (sh("ip netns add %s && ip netns add %s && ip netns add %s && ip netns add %s",
	       fx.node[0], fx.node[1], fx.pod[0], fx.pod[1]) ||
	    sh("ip link add dpv%da netns %s type veth peer name dpv%db netns %s", pid, fx.node[0],
	       pid, fx.node[1]))
		return -1;
	for (int i = 0; i < 2; i++) {
		if (sh("ip -n %s link set lo up && ip -n %s link set lo up && "
		       "ip -n %s addr add 10.79.0.%d/24 dev dpv%d%c && ip -n %s link set dpv%d%c "
		       "up",
		       fx.node[i], fx.pod[i], fx.node[i], i + 1, pid, 'a' + i, fx.node[i], pid,
		       'a' + i))
			return -1;
	}
	for (int i = 0; i < 2; i++) {
		if (fx.kind[i] == KIND_WGGO) {
			if (start_wggo(i) < 0)
				return -1;
			continue;
		}
		fx.eng[i] = spawn();
		if (fx.eng[i] == 0)
			engine_child(i);
		for (int t = 0;
		     t < 500 && !__atomic_load_n(&fx.sh->side[i].ready, __ATOMIC_SEQ_CST); t++) {
			if (waitpid(fx.eng[i], NULL, WNOHANG) == fx.eng[i]) {
				fx.eng[i] = 0;
				return -1;
			}
			sleep_ms(10);
		}
		if (!fx.sh->side[i].ready)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	for (int i = 0; i < 4; i++)
		stop_pid(&fx.extra[i], SIGKILL);
	for (int i = 0; i < 2; i++) {
		if (fx.eng[i] > 0) {
			__atomic_store_n(&fx.sh->side[i].quit, 1, __ATOMIC_SEQ_CST);
			if (reap(fx.eng[i], 5000) != 0)
				fprintf(stderr, "engine %d did not stop cleanly\n", i);
			fx.eng[i] = 0;
		}
		stop_pid(&fx.wg[i], SIGTERM);
	}
	for (int i = 0; i < 2; i++)
		sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", fx.node[i],
		   fx.pod[i]);
	sh("rm -rf %s", fx.dir);
	if (fx.sh && fx.sh != MAP_FAILED)
		munmap(fx.sh, sizeof(*fx.sh));
	fx.sh = NULL;
	sodium_memzero(fx.priv, sizeof(fx.priv));
	return 0;
}

static int setup_pod_pod(void **state)
{
	(void)state;
	return setup_kinds(KIND_ENGINE, KIND_ENGINE, false, ALLOW_ALL);
}

static int setup_pod_pod_plain(void **state)
{
	(void)state;
	return setup_kinds(KIND_ENGINE, KIND_ENGINE, true, ALLOW_ALL);
}

static int setup_pod_wggo(void **state)
{
	(void)state;
	return setup_kinds(KIND_ENGINE, KIND_WGGO, false, ALLOW_ALL);
}

static int setup_filter(void **state)
{
	(void)state;
	return setup_kinds(KIND_ENGINE, KIND_ENGINE, false, ALLOW_PORT(80));
}

/* ---- traffic helpers -------------------------------------------------- */

static void dump(int side)
{
	const struct dataplane_stats *s = &fx.sh->side[side].st;

	print_message(
		"engine %c: tun in %llu out %llu, udp in %llu out %llu, wg hs %llu "
		"init %llu resp %llu, wg drops no peer %llu bad data %llu, filter in acl "
		"%llu, udp send drops %llu, failed %d\n",
		'A' + side, (unsigned long long)s->tun_in_pkts, (unsigned long long)s->tun_out_pkts,
		(unsigned long long)s->udp_in_dgrams, (unsigned long long)s->udp_out_dgrams,
		(unsigned long long)s->wg.handshakes_completed,
		(unsigned long long)s->wg.handshake_initiations_sent,
		(unsigned long long)s->wg.handshake_responses_sent,
		(unsigned long long)s->wg.drop_no_peer, (unsigned long long)s->wg.drop_bad_data,
		(unsigned long long)s->filter_drop_in[FILTER_REASON_ACL],
		(unsigned long long)s->drops[DATAPLANE_DROP_UDP_SEND], fx.sh->side[side].failed);
}

static bool ping(int from, const char *addr, int tries)
{
	for (int i = 0; i < tries; i++) {
		if (sh("ip netns exec %s busybox ping -c 1 -W 1 %s >/dev/null 2>&1", app_ns(from),
		       addr) == 0)
			return true;
	}
	dump(0);
	dump(1);
	return false;
}

static void ping_all_ways(void)
{
	assert_true(ping(0, V4(2), 5));
	assert_true(ping(0, V6(2), 3));
	assert_true(ping(1, V4(1), 3));
	assert_true(ping(1, V6(1), 3));
}

static int tcp_socket_to(int family, const char *dst, int port, struct sockaddr_storage *ss,
			 socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, dst, &a->sin_addr);
		*len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, dst, &a->sin6_addr);
		*len = sizeof(*a);
	}
	return socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
}

static int tcp_listen(int family, int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;
	int s = tcp_socket_to(family, family == AF_INET ? "0.0.0.0" : "::", port, &ss, &len);

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (struct sockaddr *)&ss, len) < 0 || listen(s, 16) < 0)
		_exit(95);
	return s;
}

/* The deterministic stream: ChaCha20 keystream, chunk by chunk. */
static void stream_chunk(uint8_t *buf, size_t n, uint64_t index)
{
	static const uint8_t key[32] = {7};
	uint8_t nonce[8];

	memcpy(nonce, &index, sizeof(nonce));
	crypto_stream_chacha20(buf, n, nonce, key);
}

static void stream_hash(size_t total, uint8_t out[32])
{
	static uint8_t buf[CHUNK];
	crypto_generichash_state h;

	crypto_generichash_init(&h, NULL, 0, 32);
	for (size_t off = 0, i = 0; off < total; off += CHUNK, i++) {
		size_t n = total - off < CHUNK ? total - off : CHUNK;

		stream_chunk(buf, n, i);
		crypto_generichash_update(&h, buf, n);
	}
	crypto_generichash_final(&h, out, 32);
}

static void receiver_child(const char *ns, int family, int port)
{
	uint64_t total;
	int ls, st;

	enter_netns(ns);
	ls = tcp_listen(family, port);
	__atomic_store_n(&fx.sh->rx_done, 1, __ATOMIC_SEQ_CST);
	st = accept_and_hash(ls, fx.sh->rx_hash, &total);
	if (st == 96 || st == 97)
		_exit(st);
	fx.sh->rx_bytes = total;
	__atomic_store_n(&fx.sh->rx_done, 2, __ATOMIC_SEQ_CST);
	_exit(st);
}

/* Sends total bytes of the stream; pace_ms > 0 waits that long per chunk. */
static void sender_child(const char *ns, int family, const char *dst, int port, size_t total,
			 unsigned pace_ms)
{
	static uint8_t buf[CHUNK];
	struct sockaddr_storage ss;
	socklen_t len;
	int s;

	enter_netns(ns);
	s = tcp_socket_to(family, dst, port, &ss, &len);
	if (s < 0 || connect(s, (struct sockaddr *)&ss, len) < 0)
		_exit(99);
	for (size_t off = 0, i = 0; off < total; off += CHUNK, i++) {
		size_t n = total - off < CHUNK ? total - off : CHUNK;

		stream_chunk(buf, n, i);
		if (write(s, buf, n) != (ssize_t)n)
			_exit(100);
		if (pace_ms)
			sleep_ms(pace_ms);
	}
	close(s);
	_exit(0);
}

struct stream {
	pid_t rx, tx;
	uint64_t t0;
	size_t total;
};

static void stream_start(struct stream *st, int from, int family, const char *dst, int port,
			 size_t total, unsigned pace_ms)
{
	st->total = total;
	fx.sh->rx_done = 0;
	st->rx = spawn();
	if (st->rx == 0)
		receiver_child(app_ns(!from), family, port);
	for (int i = 0; i < 300 && !__atomic_load_n(&fx.sh->rx_done, __ATOMIC_SEQ_CST); i++)
		sleep_ms(10);
	st->t0 = mono_ms();
	st->tx = spawn();
	if (st->tx == 0)
		sender_child(app_ns(from), family, dst, port, total, pace_ms);
}

static double stream_finish(struct stream *st)
{
	uint8_t want[32];
	int ts = reap(st->tx, 120000), rs = reap(st->rx, 10000);
	double secs = (double)(mono_ms() - st->t0) / 1e3;

	if (ts || rs) {
		dump(0);
		dump(1);
	}
	assert_int_equal(ts, 0);
	assert_int_equal(rs, 0);
	assert_int_equal(fx.sh->rx_bytes, st->total);
	stream_hash(st->total, want);
	assert_memory_equal(fx.sh->rx_hash, want, 32);
	return secs;
}

static void transfer(int from, int family, const char *dst, size_t total)
{
	struct stream st;
	double secs;

	stream_start(&st, from, family, dst, STREAM_PORT, total, 0);
	secs = stream_finish(&st);
	print_message("%c -> %c %zu MB over %s: %.2f s, %.0f Mbit/s, hash ok\n", 'A' + from,
		      'A' + !from, total >> 20, family == AF_INET ? "v4" : "v6", secs,
		      (double)total * 8 / secs / 1e6);
}

/* Connects from side `from` to dst:port with a 1 s timeout: 0 connected,
 * 1 refused, 2 timed out. */
static int probe(int from, const char *dst, int port)
{
	pid_t pid = spawn();

	if (pid == 0) {
		struct sockaddr_storage ss;
		struct pollfd pfd;
		socklen_t len;
		int s, err = 0;

		enter_netns(app_ns(from));
		s = tcp_socket_to(AF_INET, dst, port, &ss, &len);
		fcntl(s, F_SETFL, O_NONBLOCK);
		if (connect(s, (struct sockaddr *)&ss, len) == 0)
			_exit(0);
		if (errno != EINPROGRESS)
			_exit(1);
		pfd = (struct pollfd){.fd = s, .events = POLLOUT};
		if (poll(&pfd, 1, 1000) != 1)
			_exit(2);
		len = sizeof(err);
		getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
		_exit(err == 0 ? 0 : 1);
	}
	return reap(pid, 5000);
}

/* A child in side's app netns accepting (and closing) on ports; killed by
 * teardown or listeners_stop. */
static pid_t listener(int side, int p1, int p2)
{
	pid_t pid = spawn();

	if (pid == 0) {
		struct pollfd pfd[2];

		enter_netns(app_ns(side));
		pfd[0] = (struct pollfd){.fd = tcp_listen(AF_INET, p1), .events = POLLIN};
		pfd[1] = (struct pollfd){.fd = p2 ? tcp_listen(AF_INET, p2) : -1, .events = POLLIN};
		for (;;) {
			if (poll(pfd, 2, -1) < 0)
				_exit(1);
			for (int i = 0; i < 2; i++) {
				if (pfd[i].revents & POLLIN)
					close(accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC));
			}
		}
	}
	sleep_ms(100);
	return pid;
}

static void engines_alive(void)
{
	for (int i = 0; i < 2; i++) {
		if (fx.eng[i] > 0) {
			assert_int_equal(waitpid(fx.eng[i], NULL, WNOHANG), 0);
			assert_int_equal(fx.sh->side[i].failed, 0);
		}
	}
}

/* ---- cases ------------------------------------------------------------ */

static void check_offloads(bool want)
{
	unsigned o = fx.sh->side[0].st.offloads;

	print_message("engine A offloads: vnet %d tso %d uso %d coalesce %d gso %d gro %d\n",
		      !!(o & DATAPLANE_OFFLOAD_TUN_VNET), !!(o & DATAPLANE_OFFLOAD_TUN_TSO),
		      !!(o & DATAPLANE_OFFLOAD_TUN_USO), !!(o & DATAPLANE_OFFLOAD_TUN_COALESCE),
		      !!(o & DATAPLANE_OFFLOAD_UDP_GSO), !!(o & DATAPLANE_OFFLOAD_UDP_GRO));
	/* Under TSCNI_FORCE_FALLBACK the probes report the offloads absent:
	 * then the "on" run must have fallen back to none. */
	if (want && !kfeat_fallback_forced("tun_vnet_hdr"))
		assert_true(o & DATAPLANE_OFFLOAD_TUN_TSO);
	else if (want && kfeat_fallback_forced("udp_gso") && kfeat_fallback_forced("udp_gro"))
		assert_int_equal(o, 0);
	else if (!want)
		assert_int_equal(o, 0);
}

static bool idle_period(int side)
{
	return __atomic_load_n(&fx.sh->side[side].st.timer_period_ns, __ATOMIC_SEQ_CST) ==
	       DATAPLANE_IDLE_TICK_NS;
}

static void test_pod_pod(void **state)
{
	(void)state;
	check_offloads(!fx.no_offloads);
	ping_all_ways();
	transfer(0, AF_INET, V4(2), BIG);
	transfer(1, AF_INET6, V6(1), BIG);
	engines_alive();
	dump(0);
	assert_true(fx.sh->side[0].st.tun_in_pkts > 0 && fx.sh->side[0].st.tun_out_pkts > 0);
	/* Idle after the transfers: each engine gives its batch buffers back
	 * (dataplane.c release_idle) within DP_IDLE_RELEASE_NS and a tick. */
	for (int k = 0; k < 150; k++) {
		if (__atomic_load_n(&fx.sh->side[0].st.buf_releases, __ATOMIC_SEQ_CST) > 0 &&
		    __atomic_load_n(&fx.sh->side[1].st.buf_releases, __ATOMIC_SEQ_CST) > 0)
			break;
		sleep_ms(20);
	}
	assert_true(fx.sh->side[0].st.buf_releases > 0 && fx.sh->side[1].st.buf_releases > 0);
	/* Idle, the timers slow to a quarter second (dataplane.c
	 * timer_adapt); traffic brings the short tick back. Disco's own
	 * heartbeats may wake an engine meanwhile, so "idle" is waited for. */
	for (int k = 0; k < 250 && !(idle_period(0) && idle_period(1)); k++)
		sleep_ms(20);
	assert_true(idle_period(0) && idle_period(1));
	ping_all_ways();
	/* This process copies the engines' stats every 20 ms. */
	for (int k = 0; k < 25 && (idle_period(0) || idle_period(1)); k++)
		sleep_ms(20);
	assert_false(idle_period(0) || idle_period(1));
	engines_alive();
}

/* TSMP from wireguard-go's side through a raw socket: a disco-key
 * advertisement and a ping; the engine answers the ping and stores the key;
 * nothing of it reaches pod A's ts0. */
static int tsmp_exchange(const uint8_t disco[32])
{
	struct sockaddr_in to = {.sin_family = AF_INET};
	uint8_t msg[33], reply[128];
	struct pollfd pfd;
	int s;

	enter_netns(app_ns(1));
	s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, 99);
	if (s < 0)
		return 81;
	inet_pton(AF_INET, V4(1), &to.sin_addr);
	msg[0] = 'a';
	memcpy(msg + 1, disco, 32);
	if (sendto(s, msg, 33, 0, (struct sockaddr *)&to, sizeof(to)) != 33)
		return 82;
	memcpy(msg, "p\x01\x02\x03\x04\x05\x06\x07\x08", 9);
	if (sendto(s, msg, 9, 0, (struct sockaddr *)&to, sizeof(to)) != 9)
		return 83;
	pfd = (struct pollfd){.fd = s, .events = POLLIN};
	while (poll(&pfd, 1, 2000) == 1) {
		ssize_t n = recv(s, reply, sizeof(reply), 0);

		/* Our own sends loop back to the raw socket too: look for 'o'. */
		if (n >= 29 && reply[20] == 'o' && memcmp(reply + 21, msg + 1, 8) == 0 &&
		    memcmp(reply + 12, &to.sin_addr, 4) == 0)
			return 0;
	}
	return 84;
}

static void test_pod_wggo(void **state)
{
	uint8_t disco[32];
	pid_t quiet, tx;

	(void)state;
	ping_all_ways();
	transfer(0, AF_INET, V4(2), BIG);
	transfer(1, AF_INET6, V6(1), BIG);

	randombytes_buf(disco, sizeof(disco));
	quiet = spawn();
	if (quiet == 0) {
		/* Pod A must not see TSMP: a raw socket there stays silent. */
		uint8_t b[128];
		struct pollfd pfd;
		int s;

		enter_netns(app_ns(0));
		s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, 99);
		pfd = (struct pollfd){.fd = s, .events = POLLIN};
		if (s < 0)
			_exit(2);
		_exit(poll(&pfd, 1, 2500) == 0 ? 0 : (recv(s, b, sizeof(b), 0), 1));
	}
	sleep_ms(200);
	tx = spawn();
	if (tx == 0)
		_exit(tsmp_exchange(disco));
	assert_int_equal(reap(tx, 5000), 0);
	assert_int_equal(reap(quiet, 5000), 0);
	sleep_ms(100);
	print_message("TSMP: %llu ping(s) answered, %llu disco key(s) stored\n",
		      (unsigned long long)fx.sh->side[0].st.tsmp_pings_answered,
		      (unsigned long long)fx.sh->side[0].st.tsmp_disco_keys);
	assert_true(fx.sh->side[0].st.tsmp_pings_answered >= 1);
	assert_true(fx.sh->side[0].has_disco);
	assert_memory_equal(fx.sh->side[0].disco, disco, 32);
	engines_alive();
}

static void publish_filter(int side, const char *filter)
{
	struct side_sh *s = &fx.sh->side[side];
	uint64_t applied = s->st.configs_applied;

	snprintf(s->filter, sizeof(s->filter), "%s", filter);
	__atomic_add_fetch(&s->cfg_gen, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 200 && s->st.configs_applied == applied; i++)
		sleep_ms(10);
	assert_true(s->st.configs_applied > applied);
}

static void test_filter(void **state)
{
	struct stream st;
	uint64_t t0, acl0;
	int r = -1;

	(void)state;
	/* Only TCP 80 comes in to A. */
	fx.extra[0] = listener(0, 80, 22);
	fx.extra[1] = listener(1, 22, 0);
	assert_true(ping(0, V4(2), 5)); /* A's own flow: the echo reply comes back */
	assert_int_equal(probe(1, V4(1), 80), 0);
	acl0 = fx.sh->side[0].st.filter_drop_in[FILTER_REASON_ACL];
	assert_int_equal(probe(1, V4(1), 22), 2);
	sleep_ms(100);
	assert_true(fx.sh->side[0].st.filter_drop_in[FILTER_REASON_ACL] > acl0);
	assert_int_equal(probe(0, V4(2), 22), 0); /* replies to A's outbound SYN */
	/* ICMP is matched by addresses alone (upstream matchIPsOnly). */
	assert_true(ping(1, V4(1), 3));
	stop_pid(&fx.extra[0], SIGKILL);

	/* An allowed stream to 80 runs while the policy changes to "22 only". */
	fx.extra[0] = listener(0, 22, 0);
	stream_start(&st, 1, AF_INET, V4(1), 80, SMALL, 25);
	sleep_ms(1000);
	t0 = mono_ms();
	publish_filter(0, ALLOW_PORT(22));
	while (mono_ms() - t0 < 3000) {
		r = probe(1, V4(1), 22);
		if (r == 0)
			break;
	}
	print_message("new filter in force after %llu ms\n", (unsigned long long)(mono_ms() - t0));
	assert_int_equal(r, 0);
	assert_true(mono_ms() - t0 < 2000);
	print_message("established stream to :80 across the swap: %.2f s, hash ok\n",
		      stream_finish(&st));
	/* New connections to 80 are now dropped (a listener there would
	 * answer; a filtered SYN times out). */
	stop_pid(&fx.extra[0], SIGKILL);
	fx.extra[0] = listener(0, 80, 0);
	assert_int_equal(probe(1, V4(1), 80), 2);
	engines_alive();
}

/* ---- the benchmark (TSCNI_BENCH=1) ------------------------------------ */

/* bench() builds the topology above once per row and prints, on stdout:
 *
 *   a header: seconds per iperf3 run, runs per figure (the median of them
 *   is printed), the MTU;
 *   per row and case, "<row> <case> <Mbit/s> cpu <s/GB> B <s/GB>
 *   [syscalls <n/GB>]":
 *     Mbit/s    iperf3's received rate (UDP: its send rate times 1 - loss);
 *     cpu, B    CPU seconds per GB moved of side A, then of side B: our
 *               engine's data thread (/proc/<engine pid>/task/<tid>/stat) or,
 *               for wireguard-go, its whole process;
 *     syscalls  engine A's syscalls per GB: epoll wakeups + TUN reads and
 *               writes + sendmmsg/recvmmsg that moved data (its counters);
 *   per row and engine of ours, "engine A|B offloads ..." : the offloads it
 *   ended up with (dataplane_stats.offloads; name+ on, name- off), with
 *   MISSING/UNEXPECTED naming any that differ from what the row asked for,
 *   and what they did over the row: IP packets per TUN read and per TUN
 *   write, datagrams per sendmmsg and per recvmmsg;
 *   per row: the largest PSS of engine A's process (sampled every 100 ms
 *   while the row ran) or, for wireguard-go A, its PSS after the load;
 *   at the end: ours / wireguard-go<->wireguard-go per case from the same
 *   run, and the bench's wall time.
 *
 * Rows: wireguard-go<->wireguard-go; pod<->pod with every offload on, with
 * ONE of them off (TUN TSO: tunio_config.no_tso, the vnet header kept; TUN
 * coalescing on writes: no_coalesce; UDP GSO: udpio_config.no_gso; UDP
 * GRO: no_gro; switched through struct dataplane_params in both engines),
 * and with all off (the TUN without a vnet header too: TSCNI_FORCE_FALLBACK
 * as in CI's fallback run, plus the params); pod<->wireguard-go on and off.
 * Every row runs every case: 9 rows x 5 cases x 3 runs take about 7.5
 * minutes on 2 cores (the wall time is printed last). TSCNI_BENCH_ROWS and
 * TSCNI_BENCH_CASES, comma-separated indices into bench_rows and bench_cases
 * (e.g. ROWS=0,1 CASES=0,1: wireguard-go and pod<->pod, TCP 1 stream both
 * ways), run only those (tests/bench/guard.sh). */

struct bench_case {
	const char *name, *args;
	bool udp;
};

static const struct bench_case bench_cases[] = {
	{"tcp 1 A->B", "", false},
	{"tcp 1 B->A (-R)", "-R", false},
	{"tcp 4 A->B", "-P 4", false},
	{"tcp 4 B->A (-R)", "-P 4 -R", false},
	{"udp A->B", "-u -b 0 -l 1200", true},
};
enum { N_CASES = sizeof(bench_cases) / sizeof(bench_cases[0]), RUNS = 3, SECS = 3 };

struct bench_row {
	const char *label;
	enum peer_kind a, b;
	bool plain;		 /* every offload off, no vnet header on the TUN */
	struct tunio_config tun; /* else: these switches in both engines */
	struct udpio_config udp;
};

static const struct bench_row bench_rows[] = {
	{"wireguard-go<->wireguard-go", KIND_WGGO, KIND_WGGO, false, {0}, {0}},
	{"pod<->pod offloads on", KIND_ENGINE, KIND_ENGINE, false, {0}, {0}},
	{"pod<->pod TUN TSO off", KIND_ENGINE, KIND_ENGINE, false, {.no_tso = true}, {0}},
	{"pod<->pod TUN coalesce off", KIND_ENGINE, KIND_ENGINE, false, {.no_coalesce = true}, {0}},
	{"pod<->pod UDP GSO off", KIND_ENGINE, KIND_ENGINE, false, {0}, {.no_gso = true}},
	{"pod<->pod UDP GRO off", KIND_ENGINE, KIND_ENGINE, false, {0}, {.no_gro = true}},
	{"pod<->pod offloads off", KIND_ENGINE, KIND_ENGINE, true, {0}, {0}},
	{"pod<->wireguard-go on", KIND_ENGINE, KIND_WGGO, false, {0}, {0}},
	{"pod<->wireguard-go off", KIND_ENGINE, KIND_WGGO, true, {0}, {0}},
};
enum { N_ROWS = sizeof(bench_rows) / sizeof(bench_rows[0]) };

static const struct {
	unsigned bit;
	const char *name;
} bench_offload_names[] = {
	{DATAPLANE_OFFLOAD_TUN_VNET, "vnet"}, {DATAPLANE_OFFLOAD_TUN_TSO, "tso"},
	{DATAPLANE_OFFLOAD_TUN_USO, "uso"},   {DATAPLANE_OFFLOAD_TUN_COALESCE, "coalesce"},
	{DATAPLANE_OFFLOAD_UDP_GSO, "gso"},   {DATAPLANE_OFFLOAD_UDP_GRO, "gro"},
};

/* Runs iperf3 from A to B; returns Mbit/s received and bytes moved. */
static double iperf(const struct bench_case *c, double *bytes)
{
	char cmd[512], out[1 << 16];
	json_error_t err;
	json_t *j, *sum;
	size_t n;
	FILE *f;
	double bps = 0;

	*bytes = 0;
	snprintf(cmd, sizeof(cmd), "ip netns exec %s iperf3 -c " V4(2) " -t %d %s -J 2>/dev/null",
		 app_ns(0), SECS, c->args);
	f = popen(cmd, "r");
	if (!f)
		return 0;
	n = fread(out, 1, sizeof(out) - 1, f);
	pclose(f);
	out[n] = 0;
	j = json_loads(out, 0, &err);
	if (!j)
		return 0;
	sum = json_object_get(json_object_get(j, "end"), c->udp ? "sum" : "sum_received");
	if (sum) {
		bps = json_number_value(json_object_get(sum, "bits_per_second"));
		*bytes = json_number_value(json_object_get(sum, "bytes"));
		if (c->udp) {
			double lost = json_number_value(json_object_get(sum, "lost_percent"));

			bps *= (100.0 - lost) / 100.0;
			*bytes *= (100.0 - lost) / 100.0;
		}
	}
	json_decref(j);
	return bps / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median3(double v[RUNS])
{
	qsort(v, RUNS, sizeof(double), cmp_double);
	return v[RUNS / 2];
}

/* CPU ticks of side i's engine thread (or wireguard-go process). */
static uint64_t cpu_side(int i)
{
	if (fx.kind[i] == KIND_WGGO)
		return read_cpu_ticks(fx.wg[i], 0);
	return fx.sh->side[i].cpu_ticks;
}

static uint64_t syscalls_a(void)
{
	const struct dataplane_stats *s = &fx.sh->side[0].st;

	return s->wakeups + s->tun_read_calls + s->tun_write_calls + s->udp_send_calls +
	       s->udp_recv_calls;
}

/* The offloads a row asks of our engines (DATAPLANE_OFFLOAD_*). */
static unsigned bench_want(const struct bench_row *r)
{
	unsigned o = 0;

	if (r->plain)
		return 0;
	if (!r->tun.no_vnet_hdr) {
		o |= DATAPLANE_OFFLOAD_TUN_VNET;
		if (!r->tun.no_tso) {
			o |= DATAPLANE_OFFLOAD_TUN_TSO;
			if (!r->tun.no_uso)
				o |= DATAPLANE_OFFLOAD_TUN_USO;
		}
		if (!r->tun.no_coalesce)
			o |= DATAPLANE_OFFLOAD_TUN_COALESCE;
	}
	if (!r->udp.no_gso)
		o |= DATAPLANE_OFFLOAD_UDP_GSO;
	if (!r->udp.no_gro)
		o |= DATAPLANE_OFFLOAD_UDP_GRO;
	return o;
}

/* Writes offload names to buf: with all, every one as "name+" (in on) or
 * "name-"; without, only the names of those in mask. */
static void bench_offload_list(char *buf, size_t n, unsigned mask, unsigned on, bool all)
{
	size_t len = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sizeof(bench_offload_names) / sizeof(bench_offload_names[0]); i++) {
		unsigned bit = bench_offload_names[i].bit;

		if (!all && !(mask & bit))
			continue;
		len += (size_t)snprintf(buf + len, n - len, "%s%s%s", len ? " " : "",
					bench_offload_names[i].name,
					all ? ((on & bit) ? "+" : "-") : "");
		if (len >= n)
			return;
	}
}

static double per_call(uint64_t units, uint64_t calls)
{
	return calls ? (double)units / (double)calls : 0;
}

/* Engine `side`'s offloads and what they did since s0 (the stats when the
 * row's load began). */
static void bench_engine_line(const char *label, int side, unsigned want,
			      const struct dataplane_stats *s0)
{
	const struct dataplane_stats *s = &fx.sh->side[side].st;
	char got[96], bad[96];
	unsigned o = s->offloads;

	bench_offload_list(got, sizeof(got), ~0U, o, true);
	printf("%-27s engine %c offloads %s", label, 'A' + side, got);
	if (want & ~o) {
		bench_offload_list(bad, sizeof(bad), want & ~o, 0, false);
		printf("  MISSING %s", bad);
	}
	if (o & ~want) {
		bench_offload_list(bad, sizeof(bad), o & ~want, 0, false);
		printf("  UNEXPECTED %s", bad);
	}
	printf("; pkts per TUN read %.1f, per TUN write %.1f; dgrams per sendmmsg %.1f, "
	       "per recvmmsg %.1f\n",
	       per_call(s->tun_in_pkts - s0->tun_in_pkts, s->tun_read_calls - s0->tun_read_calls),
	       per_call(s->tun_out_pkts - s0->tun_out_pkts,
			s->tun_write_calls - s0->tun_write_calls),
	       per_call(s->udp_out_dgrams - s0->udp_out_dgrams,
			s->udp_send_calls - s0->udp_send_calls),
	       per_call(s->udp_in_dgrams - s0->udp_in_dgrams,
			s->udp_recv_calls - s0->udp_recv_calls));
}

static double bench_results[N_ROWS][N_CASES];

/* Whether index i is in the comma-separated list of indices in environment
 * variable var (unset or empty: every index). */
static bool bench_pick(const char *var, int i)
{
	const char *v = getenv(var), *p;

	if (!v || !*v)
		return true;
	for (p = v; *p;) {
		char *end;
		long n = strtol(p, &end, 10);

		if (end == p)
			return false;
		if (n == i)
			return true;
		p = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return false;
	}
	return false;
}

static int bench_one(int row)
{
	const struct bench_row *r = &bench_rows[row];
	long hz = sysconf(_SC_CLK_TCK);
	struct dataplane_stats s0[2];
	pid_t srv;

	bench_off = (struct bench_offloads){.set = !r->plain, .tun = r->tun, .udp = r->udp};
	if (setup_kinds(r->a, r->b, r->plain, ALLOW_ALL) < 0) {
		fprintf(stderr, "bench %s: setup failed\n", r->label);
		teardown(NULL);
		return -1;
	}
	if (!ping(0, V4(2), 10)) {
		fprintf(stderr, "bench %s: no path\n", r->label);
		teardown(NULL);
		return -1;
	}
	srv = spawn();
	if (srv == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		dup2(null, 1);
		dup2(null, 2);
		execlp("ip", "ip", "netns", "exec", app_ns(1), "iperf3", "-s", (char *)NULL);
		_exit(127);
	}
	fx.extra[0] = srv;
	sleep_ms(300);
	s0[0] = fx.sh->side[0].st;
	s0[1] = fx.sh->side[1].st;
	for (int c = 0; c < N_CASES; c++) {
		double mbit[RUNS], cpu[RUNS], cpub[RUNS], sys[RUNS];

		if (!bench_pick("TSCNI_BENCH_CASES", c))
			continue;
		for (int k = 0; k < RUNS; k++) {
			uint64_t c0, c1, y0;
			double bytes;

			sleep_ms(60);
			c0 = cpu_side(0);
			c1 = cpu_side(1);
			y0 = syscalls_a();
			mbit[k] = iperf(&bench_cases[c], &bytes);
			sleep_ms(60);
			bytes = bytes > 1 ? bytes : 1;
			cpu[k] = (double)(cpu_side(0) - c0) / (double)hz / (bytes / 1e9);
			cpub[k] = (double)(cpu_side(1) - c1) / (double)hz / (bytes / 1e9);
			sys[k] = (double)(syscalls_a() - y0) / (bytes / 1e9);
		}
		bench_results[row][c] = median3(mbit);
		printf("%-27s %-16s %7.0f Mbit/s  cpu %6.2f s/GB  B %6.2f s/GB", r->label,
		       bench_cases[c].name, bench_results[row][c], median3(cpu), median3(cpub));
		if (r->a == KIND_ENGINE)
			printf("  syscalls %8.0f /GB", median3(sys));
		printf("\n");
		fflush(stdout);
	}
	for (int i = 0; i < 2; i++) {
		if (fx.kind[i] == KIND_ENGINE)
			bench_engine_line(r->label, i, bench_want(r), &s0[i]);
	}
	if (r->a == KIND_ENGINE)
		printf("%-27s PSS of engine A's process under load: max %llu kB\n", r->label,
		       (unsigned long long)fx.sh->side[0].pss_kb_max);
	else
		printf("%-27s wireguard-go A (CPU of its whole process): PSS %llu kB after load\n",
		       r->label, (unsigned long long)read_pss_kb(fx.wg[0]));
	fflush(stdout);
	teardown(NULL);
	return 0;
}

static int bench(void)
{
	uint64_t t0 = mono_ms();
	int ret = 0;

	for (int r = 0; r < N_ROWS; r++) {
		for (int c = 0; c < N_CASES; c++)
			bench_results[r][c] = -1;
	}
	printf("iperf3 %d s per run, median of %d runs; MTU %d everywhere; two node netns over "
	       "veth\n",
	       SECS, RUNS, MTU);
	printf("rows: wireguard-go<->wireguard-go; pod<->pod with every offload on, one off "
	       "(the others on), all off; pod<->wireguard-go on, off\n\n");
	fflush(stdout);
	for (int r = 0; r < N_ROWS; r++) {
		if (bench_pick("TSCNI_BENCH_ROWS", r))
			ret |= bench_one(r);
	}
	printf("\nratio ours / wireguard-go<->wireguard-go (same run; - = no figure):\n%-27s", "");
	for (int c = 0; c < N_CASES; c++)
		printf(" %16s", bench_cases[c].name);
	printf("\n");
	for (int r = 1; r < N_ROWS; r++) {
		if (!bench_pick("TSCNI_BENCH_ROWS", r))
			continue;
		printf("%-27s", bench_rows[r].label);
		for (int c = 0; c < N_CASES; c++) {
			if (bench_results[r][c] < 0 || bench_results[0][c] <= 0)
				printf(" %16s", "-");
			else
				printf(" %15.2fx", bench_results[r][c] / bench_results[0][c]);
		}
		printf("\n");
	}
	printf("\nbench wall time: %.0f s\n", (double)(mono_ms() - t0) / 1e3);
	return ret ? 1 : 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_pod_pod, setup_pod_pod, teardown),
		cmocka_unit_test_setup_teardown(test_pod_pod, setup_pod_pod_plain, teardown),
		cmocka_unit_test_setup_teardown(test_pod_wggo, setup_pod_wggo, teardown),
		cmocka_unit_test_setup_teardown(test_filter, setup_filter, teardown),
	};

	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	if (getenv("TSCNI_BENCH"))
		return bench();
	if (getenv("TSCNI_DP_TEST"))
		cmocka_set_test_filter(getenv("TSCNI_DP_TEST"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
