/* heap_sites: an LD_PRELOAD library that records every live malloc'ed block
 * with the call stack that allocated it, for tests/bench/routes.sh
 * (TSCNI_HEAP_SITES=1) to print an idle worker's heap by allocation site.
 * Neither valgrind 3.19 (no clone3, no pidfd_open) nor heaptrack (stops
 * tracing in a forked child) can follow the zygote's forks; this can.
 *
 * Every process that loads it (the supervisor, the zygote, each worker run
 * with --sandbox none: the seccomp filter would refuse its files) looks at
 * /tmp/tscni-heap.<pid>.req every 16th allocation and, each time it was
 * touched, writes /tmp/tscni-heap.<pid>.txt: "site bytes blocks addr addr ..." per
 * distinct stack (up to HS_DEPTH frames above malloc), then the process's
 * maps for addr2line. A bench tool, not part of any binary. */
#include <execinfo.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

enum {
	HS_DEPTH = 6,
	HS_SLOTS = 1 << 20, /* live blocks at most (open addressing) */
	HS_SKIP = 2,	    /* record() and the interposed function */
};

struct hs_block {
	uintptr_t ptr; /* 0: empty; 1: deleted */
	size_t size;
	void *stack[HS_DEPTH];
};

static struct hs_block *table;
static atomic_flag lock = ATOMIC_FLAG_INIT;
static __thread int busy; /* inside backtrace() or our own code */
static int ready;

static void take(void)
{
	while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire))
		;
}

static void give(void)
{
	atomic_flag_clear_explicit(&lock, memory_order_release);
}

static size_t slot_of(uintptr_t p)
{
	return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> 44) & (HS_SLOTS - 1);
}

static void maybe_dump(void);

static void record(void *p, size_t size)
{
	static atomic_uint calls;
	void *st[HS_DEPTH + HS_SKIP];
	int n;
	size_t i;

	if (!p || !ready || busy)
		return;
	if ((atomic_fetch_add(&calls, 1) & 15) == 0)
		maybe_dump();
	busy = 1;
	n = backtrace(st, HS_DEPTH + HS_SKIP);
	busy = 0;
	take();
	for (i = slot_of((uintptr_t)p);; i = (i + 1) & (HS_SLOTS - 1))
		if (table[i].ptr <= 1)
			break;
	table[i].ptr = (uintptr_t)p;
	table[i].size = size;
	memset(table[i].stack, 0, sizeof(table[i].stack));
	for (int k = HS_SKIP; k < n; k++)
		table[i].stack[k - HS_SKIP] = st[k];
	give();
}

static void forget(void *p)
{
	if (!p || !ready)
		return;
	take();
	for (size_t i = slot_of((uintptr_t)p);; i = (i + 1) & (HS_SLOTS - 1)) {
		if (table[i].ptr == 0)
			break;
		if (table[i].ptr == (uintptr_t)p) {
			table[i].ptr = 1;
			break;
		}
	}
	give();
}

void *malloc(size_t n)
{
	void *p = __libc_malloc(n);

	record(p, n);
	return p;
}

void *calloc(size_t a, size_t b)
{
	void *p = __libc_calloc(a, b);

	record(p, a * b);
	return p;
}

void *realloc(void *old, size_t n)
{
	void *p;

	forget(old);
	p = __libc_realloc(old, n);
	record(p ? p : (n ? old : NULL), p ? n : 0);
	return p;
}

void free(void *p)
{
	forget(p);
	__libc_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	if (!p)
		return 12; /* ENOMEM */
	record(p, n);
	*out = p;
	return 0;
}

void *aligned_alloc(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	record(p, n);
	return p;
}

void *memalign(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);

	record(p, n);
	return p;
}

/* One live block in a dump: its site's slot, address and size. */
struct hs_blk {
	size_t site;
	uintptr_t ptr;
	size_t size;
};

/* Same stack: same site. Sums into a second table (not recorded: busy). */
struct hs_site {
	void *stack[HS_DEPTH];
	size_t bytes, blocks, idx;
};

/* Written with dprintf and read(), not stdio's FILE lists: this runs inside
 * whatever malloc call noticed the request. */
static void dump(const char *path)
{
	enum { SITES = 1 << 16 };
	struct hs_site *sites = __libc_calloc(SITES, sizeof(*sites));
	struct hs_blk *blk = NULL;
	size_t nblk = 0, capblk = 0;
	char buf[4096];
	int out, maps;
	ssize_t n;

	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (!sites || out < 0)
		goto done;
	take();
	for (size_t i = 0; i < HS_SLOTS; i++) {
		size_t h = 0, k;

		if (table[i].ptr <= 1)
			continue;
		for (int d = 0; d < HS_DEPTH; d++)
			h = (h ^ (uintptr_t)table[i].stack[d]) * 0x100000001B3ull;
		for (k = h & (SITES - 1);; k = (k + 1) & (SITES - 1))
			if (!sites[k].blocks ||
			    !memcmp(sites[k].stack, table[i].stack, sizeof(sites[k].stack)))
				break;
		memcpy(sites[k].stack, table[i].stack, sizeof(sites[k].stack));
		sites[k].bytes += table[i].size;
		sites[k].blocks++;
		/* __libc_realloc: not through our hooks, so safe under the lock. */
		if (nblk == capblk) {
			struct hs_blk *more =
				__libc_realloc(blk, (capblk ? 2 * capblk : 4096) * sizeof(*blk));

			if (more) {
				blk = more;
				capblk = capblk ? 2 * capblk : 4096;
			}
		}
		if (nblk < capblk)
			blk[nblk++] = (struct hs_blk){k, table[i].ptr, table[i].size};
	}
	give();
	for (size_t k = 0, order = 0; k < SITES; k++) {
		if (!sites[k].blocks)
			continue;
		sites[k].idx = order++;
		dprintf(out, "site %zu %zu", sites[k].bytes, sites[k].blocks);
		for (int d = 0; d < HS_DEPTH && sites[k].stack[d]; d++)
			dprintf(out, " %p", sites[k].stack[d]);
		dprintf(out, "\n");
	}
	/* "blk SITE ADDR SIZE": each live block, SITE counting the site lines
	 * from 0, for heap_sites.py to look up which of its pages are
	 * resident and private. */
	for (size_t j = 0; j < nblk; j++)
		dprintf(out, "blk %zu %lx %zu\n", sites[blk[j].site].idx, (unsigned long)blk[j].ptr,
			blk[j].size);
	/* "map " before each line of /proc/self/maps. */
	maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	dprintf(out, "map ");
	while (maps >= 0 && (n = read(maps, buf, sizeof(buf))) > 0)
		for (ssize_t j = 0; j < n; j++)
			dprintf(out, buf[j] == '\n' && j + 1 < n ? "\nmap " : "%c", buf[j]);
	if (maps >= 0)
		close(maps);
done:
	if (out >= 0)
		close(out);
	__libc_free(sites);
	__libc_free(blk);
}

/* A dump for each touch of /tmp/tscni-heap.<pid>.req (the worker may not
 * remove root's file), noticed by the next allocations: a status call makes
 * an idle worker allocate. */
static void maybe_dump(void)
{
	static struct timespec last;
	char req[64], tmp[64], out[64];
	pid_t pid = getpid();
	struct stat st;

	snprintf(req, sizeof(req), "/tmp/tscni-heap.%d.req", (int)pid);
	if (stat(req, &st) < 0 ||
	    (st.st_mtim.tv_sec == last.tv_sec && st.st_mtim.tv_nsec == last.tv_nsec))
		return;
	last = st.st_mtim;
	snprintf(tmp, sizeof(tmp), "/tmp/tscni-heap.%d.tmp", (int)pid);
	snprintf(out, sizeof(out), "/tmp/tscni-heap.%d.txt", (int)pid);
	busy = 1;
	dump(tmp);
	rename(tmp, out);
	busy = 0;
}

__attribute__((constructor)) static void init(void)
{
	void *st[2];

	busy = 1;
	backtrace(st, 2); /* loads libgcc_s now, not inside a malloc */
	table = __libc_calloc(HS_SLOTS, sizeof(*table));
	busy = 0;
	if (table)
		ready = 1;
}
