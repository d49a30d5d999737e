/* The real sandbox: an empty mount namespace, the worker's own uid, no
 * capabilities, no_new_privs, not dumpable, then a seccomp allow-list whose
 * default kills the process (docs/design.md §1). */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/sockios.h>
#include <net/route.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <ucontext.h>
#include <unistd.h>

#include <cap-ng.h>

#include "worker.pb-c.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

/* Moves the worker into a mount namespace whose whole tree is one empty,
 * read-only tmpfs. Nothing of the host's filesystem stays reachable: no file
 * to open even if the seccomp filter had a hole. */
static int empty_root(const char **why)
{
	if (unshare(CLONE_NEWNS) < 0) {
		*why = "unshare(CLONE_NEWNS)";
		return -errno;
	}
	/* Nothing we do below may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		*why = "make / private";
		return -errno;
	}
	/* /proc exists on every host; the tmpfs only needs a mount point. */
	if (mount("tscni-worker", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=4k,nr_inodes=2,mode=0555") < 0) {
		*why = "mount tmpfs";
		return -errno;
	}
	if (chdir("/proc") < 0) {
		*why = "chdir new root";
		return -errno;
	}
	/* pivot_root(".", ".") stacks the old root on top of the new one; the
	 * detach below then leaves only the tmpfs (pivot_root(2), NOTES). */
	if (syscall(SYS_pivot_root, ".", ".") < 0) {
		*why = "pivot_root";
		return -errno;
	}
	if (umount2(".", MNT_DETACH) < 0) {
		*why = "umount old root";
		return -errno;
	}
	if (chdir("/") < 0) {
		*why = "chdir /";
		return -errno;
	}
	if (mount(NULL, "/", NULL,
		  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		*why = "remount root read-only";
		return -errno;
	}
	return 0;
}

static int seccomp_enter(uint32_t uid, const char **why)
{
	int ret;

	if (uid == 0) {
		*why = "worker uid must not be 0";
		return -EINVAL;
	}
	ret = sandbox__basic(why);
	if (ret < 0)
		return ret;
	ret = empty_root(why);
	if (ret < 0)
		return ret;
	/* capng_change_id keeps no capability across the uid change and clears
	 * the bounding set and supplementary groups while it still may. */
	capng_clear(CAPNG_SELECT_ALL);
	ret = capng_change_id((int)uid, (int)uid, CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING);
	if (ret < 0) {
		*why = "capng_change_id (uid, groups, bounding set)";
		return -EPERM;
	}
	capng_clear(CAPNG_SELECT_ALL);
	if (capng_apply(CAPNG_SELECT_CAPS) < 0) {
		*why = "capng_apply";
		return -EPERM;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL) {
		*why = "clear ambient capabilities";
		return -errno;
	}
	/* Prove the drop: root must be out of reach. */
	if (getuid() != uid || geteuid() != uid || setuid(0) == 0) {
		*why = "uid change did not stick";
		return -EPERM;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		*why = "PR_SET_NO_NEW_PRIVS";
		return -errno;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		*why = "PR_SET_DUMPABLE";
		return -errno;
	}
	return 0;
}

/* Debug mode: SIGSYS names the syscall over fd 3 and makes it fail with
 * ENOSYS. Only async-signal-safe work here: a stack buffer, protobuf-c
 * packing into it (no allocation) and one send(2). */
/* The one piece of mutable file-scope state in the worker: a signal handler
 * has no other way to learn where to write. Set once, before the filter. */
static int trap_fd = -1;

static char *put_uint(char *p, unsigned long v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static void sigsys_handler(int sig, siginfo_t *si, void *uctx)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Event ev = TSCNI__EVENT__INIT;
	char detail[48] = "syscall ";
	uint8_t buf[128];
	int saved = errno;
	size_t len;

	(void)sig;
	*put_uint(detail + 8, (unsigned long)si->si_syscall) = '\0';
	ev.kind = TSCNI__EVENT_KIND__EVENT_SECCOMP_TRAP;
	ev.detail = detail;
	m.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
	m.event = &ev;
	if (tscni__worker_msg__get_packed_size(&m) <= sizeof(buf)) {
		len = tscni__worker_msg__pack(&m, buf);
		send(trap_fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
#if defined(__x86_64__)
	((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#elif defined(__aarch64__)
	((ucontext_t *)uctx)->uc_mcontext.regs[0] = (unsigned long)-ENOSYS;
#else
	(void)uctx;
#endif
	errno = saved;
}

struct rule {
	int nr;
	unsigned int argc;
	struct scmp_arg_cmp arg[2];
};

/* Syscalls a worker's two threads make after the filter loads: glibc memory
 * and thread management, libuv's epoll loop, fd 3, the TUN fd (read, readv,
 * writev), the UDP socket (recvmmsg, sendmmsg with UDP_SEGMENT control
 * messages), the IP sockets it opens for TCP to control and DERP, and the
 * host's NETLINK_ROUTE socket the supervisor hands it (endpoints.c: sendto
 * for its dump requests, recvfrom for dumps and change notifications; no
 * new syscall). That socket needs no argument filter: a request that would
 * change the host is refused by the kernel for want of CAP_NET_ADMIN, and
 * rebinding it (bind is allowed) reaches only other rtnetlink groups, which
 * carry nothing an unprivileged process may not read. */
static const int allowed[] = {
	SCMP_SYS(read),
	SCMP_SYS(pread64), /* Stats' PSS: the smaps_rollup fd opened before */
	SCMP_SYS(readv),
	SCMP_SYS(write),
	SCMP_SYS(writev),
	SCMP_SYS(close),
	SCMP_SYS(recvfrom),
	SCMP_SYS(recvmsg),
	SCMP_SYS(recvmmsg),
	SCMP_SYS(sendto),
	SCMP_SYS(sendmsg),
	SCMP_SYS(sendmmsg),
	SCMP_SYS(poll),
	SCMP_SYS(ppoll),
	SCMP_SYS(epoll_wait),
	SCMP_SYS(epoll_pwait),
	SCMP_SYS(epoll_pwait2),
	SCMP_SYS(epoll_ctl),
	/* The data-plane engine arms its timerfd when its thread starts,
	 * which may be after the filter; it creates epoll, eventfd and
	 * timerfd and sets up the TUN and UDP offloads before. */
	SCMP_SYS(timerfd_settime),
	SCMP_SYS(futex),
	SCMP_SYS(clock_gettime),
	SCMP_SYS(clock_getres),
	SCMP_SYS(clock_nanosleep),
	SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday),
	SCMP_SYS(munmap),
	SCMP_SYS(madvise),
	SCMP_SYS(mremap),
	SCMP_SYS(brk),
	SCMP_SYS(exit),
	SCMP_SYS(exit_group),
	SCMP_SYS(rt_sigreturn),
	SCMP_SYS(rt_sigprocmask),
	SCMP_SYS(sigaltstack),
	SCMP_SYS(getpid),
	SCMP_SYS(gettid),
	SCMP_SYS(getuid),
	SCMP_SYS(geteuid),
	SCMP_SYS(getgid),
	SCMP_SYS(getegid),
	SCMP_SYS(getrandom),
	SCMP_SYS(connect),
	SCMP_SYS(bind),
	SCMP_SYS(getsockname),
	SCMP_SYS(getpeername),
	SCMP_SYS(getsockopt),
	SCMP_SYS(shutdown),
	SCMP_SYS(sched_yield),
	SCMP_SYS(sched_getaffinity),
	SCMP_SYS(restart_syscall),
	SCMP_SYS(rseq),
	SCMP_SYS(set_robust_list),
	SCMP_SYS(get_robust_list),
};

/* Calls libc may make harmlessly: refused with an errno instead of a kill
 * (ssh sandbox-seccomp-filter.c SC_DENY). Opening any file is refused. */
static const struct {
	int nr;
	int err;
} refused[] = {
	{SCMP_SYS(open), EACCES},    {SCMP_SYS(openat), EACCES},
	{SCMP_SYS(openat2), EACCES}, {SCMP_SYS(newfstatat), EACCES},
	{SCMP_SYS(statx), EACCES},   {SCMP_SYS(clone3), ENOSYS}, /* glibc falls back to clone */
};

static int add(scmp_filter_ctx f, uint32_t action, int nr, unsigned int argc,
	       const struct scmp_arg_cmp *arg)
{
	return seccomp_rule_add_array(f, action, nr, argc, arg);
}

/* "argument arg == v" (libseccomp's SCMP_A<n> leaves datum_b to the
 * compiler's zeroing, which clang's -Wmissing-field-initializers names). */
static struct scmp_arg_cmp arg_eq(unsigned int arg, scmp_datum_t v)
{
	return (struct scmp_arg_cmp){.arg = arg, .op = SCMP_CMP_EQ, .datum_a = v};
}

static int add_rules(scmp_filter_ctx f, const char **why)
{
	int ret;

	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
		ret = add(f, SCMP_ACT_ALLOW, allowed[i], 0, NULL);
		if (ret < 0) {
			*why = "seccomp: allow rule";
			return ret;
		}
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		ret = add(f, SCMP_ACT_ERRNO((uint32_t)refused[i].err), refused[i].nr, 0, NULL);
		if (ret < 0) {
			*why = "seccomp: errno rule";
			return ret;
		}
	}

	/* clone only for threads: fork or a new namespace is never allowed. */
	struct scmp_arg_cmp thread = SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD);
	ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, &thread);
	if (ret < 0) {
		*why = "seccomp: clone rule";
		return ret;
	}

	/* mmap and mprotect: never a new executable mapping. */
	struct scmp_arg_cmp noexec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, &noexec);
	if (ret == 0)
		ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1, &noexec);
	if (ret < 0) {
		*why = "seccomp: mmap rule";
		return ret;
	}

	/* New sockets only for IPv4 and IPv6: no AF_UNIX (the CNI socket, other
	 * workers' rendezvous), no AF_NETLINK, no AF_PACKET. */
	static const int families[] = {AF_INET, AF_INET6};
	for (size_t i = 0; i < 2; i++) {
		struct scmp_arg_cmp fam = arg_eq(0, (scmp_datum_t)families[i]);

		ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, &fam);
		if (ret < 0) {
			*why = "seccomp: socket rule";
			return ret;
		}
	}

	/* socketpair(AF_UNIX) only: every DERP connection (derp_conn.c) has
	 * its own libcurl multi handle, made when a region is first needed,
	 * after the filter, and libcurl 7.x makes the multi handle's wakeup
	 * pair with socketpair. An anonymous pair reaches nothing outside. */
	struct scmp_arg_cmp unix_pair = arg_eq(0, (scmp_datum_t)AF_UNIX);
	ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1, &unix_pair);
	if (ret < 0) {
		*why = "seccomp: socketpair rule";
		return ret;
	}

	/* ioctl: non-blocking and pending-byte queries only; no SIOCADDRT or any
	 * TUNSET*: the TUN is configured by the supervisor. */
	static const unsigned long ioctls[] = {FIONBIO, FIONREAD, FIOCLEX, FIONCLEX, SIOCOUTQ};
	for (size_t i = 0; i < sizeof(ioctls) / sizeof(ioctls[0]); i++) {
		struct scmp_arg_cmp req = arg_eq(1, (scmp_datum_t)ioctls[i]);

		ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, &req);
		if (ret < 0) {
			*why = "seccomp: ioctl rule";
			return ret;
		}
	}

	/* fcntl: flags only (libuv's non-blocking and close-on-exec). */
	static const int fcntls[] = {F_GETFL, F_SETFL, F_GETFD, F_SETFD};
	for (size_t i = 0; i < sizeof(fcntls) / sizeof(fcntls[0]); i++) {
		struct scmp_arg_cmp cmd = arg_eq(1, (scmp_datum_t)fcntls[i]);

		ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1, &cmd);
		if (ret < 0) {
			*why = "seccomp: fcntl rule";
			return ret;
		}
	}

	/* setsockopt: the few (level, option) pairs TCP and UDP need; never
	 * iptables' IPT_SO_SET_REPLACE or anything else. */
	static const struct {
		int level, opt;
	} opts[] = {
		{SOL_SOCKET, SO_REUSEADDR},   {SOL_SOCKET, SO_KEEPALIVE},
		{SOL_SOCKET, SO_RCVBUF},      {SOL_SOCKET, SO_SNDBUF},
		{IPPROTO_TCP, TCP_NODELAY},   {IPPROTO_TCP, TCP_KEEPIDLE},
		{IPPROTO_TCP, TCP_KEEPINTVL}, {IPPROTO_TCP, TCP_KEEPCNT},
		{IPPROTO_IPV6, IPV6_V6ONLY},  {SOL_UDP, UDP_SEGMENT},
		{SOL_UDP, UDP_GRO},
	};
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		struct scmp_arg_cmp a[2] = {
			arg_eq(1, (scmp_datum_t)opts[i].level),
			arg_eq(2, (scmp_datum_t)opts[i].opt),
		};

		ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 2, a);
		if (ret < 0) {
			*why = "seccomp: setsockopt rule";
			return ret;
		}
	}

	/* A re-adopting supervisor's connection: accepted (any listener; the
	 * worker holds one) and moved onto fd 3, never onto another number. */
	ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(accept4), 0, NULL);
	struct scmp_arg_cmp onto3 = arg_eq(1, 3);
	if (ret == 0)
		ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(dup3), 1, &onto3);
	if (ret < 0) {
		*why = "seccomp: accept4/dup3 rule";
		return ret;
	}

	/* Signals only to this process (abort, the libuv loop's own threads). */
	struct scmp_arg_cmp self = arg_eq(0, (scmp_datum_t)getpid());
	ret = add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1, &self);
	if (ret < 0) {
		*why = "seccomp: tgkill rule";
		return ret;
	}
	return 0;
}

static int seccomp_load_filter(bool debug, int ctl_fd, const char **why)
{
	scmp_filter_ctx f;
	int ret;

	if (debug) {
		struct sigaction sa = {.sa_sigaction = sigsys_handler,
				       .sa_flags = SA_SIGINFO | SA_NODEFER};

		trap_fd = ctl_fd;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSYS, &sa, NULL) < 0) {
			*why = "sigaction(SIGSYS)";
			return -errno;
		}
	}
	f = seccomp_init(debug ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
	if (!f) {
		*why = "seccomp_init";
		return -ENOMEM;
	}
	/* Both threads already run: TSYNC puts the filter on each of them. */
	ret = seccomp_attr_set(f, SCMP_FLTATR_CTL_TSYNC, 1);
	if (ret < 0) {
		*why = "seccomp: TSYNC";
		goto out;
	}
	if (debug) {
		/* rt_sigreturn and the handler's send must stay allowed: they are. */
		ret = seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(rt_sigaction), 0);
		if (ret < 0) {
			*why = "seccomp: rt_sigaction rule";
			goto out;
		}
	}
	ret = add_rules(f, why);
	if (ret < 0)
		goto out;
	ret = seccomp_load(f);
	if (ret < 0)
		*why = "seccomp_load";
out:
	seccomp_release(f);
	return ret;
}

const struct sandbox_ops sandbox_seccomp = {
	.name = "seccomp",
	.enter = seccomp_enter,
	.load_filter = seccomp_load_filter,
};
