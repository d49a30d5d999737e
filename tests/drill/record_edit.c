/* record_edit: reads or rewrites the worker fields of an attachment record,
 * for the re-adoption drill (tests/drill/worker_adoption.sh), which plays a
 * damaged or hostile state directory against the real supervisor.
 *
 *   record_edit FILE                          prints "pid start_time uid version boot_id"
 *   record_edit FILE [--pid N] [--start-time T] [--boot-id ID]
 *                    [--worker-from OTHER]     rewrites FILE (sealed, atomic)
 *
 * --worker-from copies OTHER's WorkerInfo (pid, start time, version) into
 * FILE's: two such calls with a saved copy swap two records' workers. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record.h"

static int usage(void)
{
	fprintf(stderr, "usage: record_edit FILE [--pid N] [--start-time T] [--boot-id ID] "
			"[--worker-from OTHER]\n");
	return 2;
}

/* Opens FILE's directory and sets *base to its last component. */
static Tscni__Attachment *read_rec(const char *path, int *dfd, char *base, size_t len)
{
	char a[4096], b[4096];
	const char *why = "";
	Tscni__Attachment *m;
	int err = 0;

	snprintf(a, sizeof(a), "%s", path);
	snprintf(b, sizeof(b), "%s", path);
	*dfd = open(dirname(a), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*dfd < 0) {
		fprintf(stderr, "record_edit: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	snprintf(base, len, "%s", basename(b));
	m = record_read_attachment(*dfd, base, &err, &why);
	if (!m) {
		fprintf(stderr, "record_edit: %s: %s (%s)\n", path, strerror(-err), why);
		close(*dfd);
		*dfd = -1;
	}
	return m;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -EINVAL : 0;
}

int main(int argc, char **argv)
{
	Tscni__WorkerInfo wi = TSCNI__WORKER_INFO__INIT;
	Tscni__Attachment *m, *other = NULL;
	Tscni__WorkerInfo *orig_worker;
	char *orig_boot;
	char base[256], obase[256];
	int dfd = -1, odfd = -1, ret = 1;
	uint64_t v;

	if (argc < 2)
		return usage();
	m = read_rec(argv[1], &dfd, base, sizeof(base));
	if (!m)
		return 1;
	orig_worker = m->worker;
	orig_boot = m->boot_id;
	if (m->worker)
		wi = *m->worker;
	if (argc == 2) {
		printf("%d %" PRIu64 " %u %u %s\n", wi.pid, wi.start_time, wi.uid,
		       wi.handshake_version, m->boot_id);
		ret = 0;
		goto out;
	}
	for (int i = 2; i < argc; i += 2) {
		const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!val) {
			ret = usage();
			goto out;
		}
		if (!strcmp(o, "--pid") && parse_u64(val, &v) == 0 && v <= INT32_MAX) {
			wi.pid = (int32_t)v;
		} else if (!strcmp(o, "--start-time") && parse_u64(val, &v) == 0) {
			wi.start_time = v;
		} else if (!strcmp(o, "--boot-id")) {
			m->boot_id = (char *)val;
		} else if (!strcmp(o, "--worker-from")) {
			other = read_rec(val, &odfd, obase, sizeof(obase));
			if (!other || !other->worker) {
				fprintf(stderr, "record_edit: %s has no worker\n", val);
				goto out;
			}
			wi.pid = other->worker->pid;
			wi.start_time = other->worker->start_time;
			wi.handshake_version = other->worker->handshake_version;
		} else {
			fprintf(stderr, "record_edit: bad option or value: %s %s\n", o, val);
			ret = usage();
			goto out;
		}
	}
	m->worker = &wi;
	ret = record_write_attachment(dfd, base, m);
	if (ret < 0) {
		fprintf(stderr, "record_edit: write %s: %s\n", argv[1], strerror(-ret));
		ret = 1;
		goto out;
	}
	ret = 0;
out:
	/* wi and the boot id may be ours: give back what unpack allocated. */
	m->worker = orig_worker;
	m->boot_id = orig_boot;
	tscni__attachment__free_unpacked(m, NULL);
	if (other)
		tscni__attachment__free_unpacked(other, NULL);
	if (dfd >= 0)
		close(dfd);
	if (odfd >= 0)
		close(odfd);
	return ret;
}
