/* job_record STATE_DIR POD_UID STABLE_ID NODEKEY: writes a device cleanup
 * job (jobs/<id>.pb, as the supervisor's jobs.c does) naming a device by
 * its stable id and a node key, so e2e.authkeys_oauth can hand the
 * supervisor a job whose node key is not the device's (a stale or
 * tampered record) and see that nothing is deleted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keys.h"
#include "record.h"

int main(int argc, char **argv)
{
	Tscni__Job m = TSCNI__JOB__INIT;
	uint8_t pub[KEY_LEN];
	char name[64];
	int dfd, ret;

	if (argc != 5 || keys_from_text("nodekey", argv[4], pub) < 0) {
		fprintf(stderr, "usage: job_record STATE_DIR POD_UID STABLE_ID nodekey:HEX\n");
		return 2;
	}
	m.id = "device-e2e-mismatch";
	m.kind = TSCNI__JOB_KIND__JOB_DELETE_DEVICE;
	m.pod_uid = argv[2];
	m.stable_node_id = argv[3];
	m.node_public.data = pub;
	m.node_public.len = KEY_LEN;
	m.created_unix = (uint64_t)time(NULL);
	snprintf(name, sizeof(name), "%s/jobs", argv[1]);
	dfd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		perror(name);
		return 1;
	}
	snprintf(name, sizeof(name), "%s.pb", m.id);
	ret = record_write_job(dfd, name, &m);
	close(dfd);
	if (ret < 0) {
		fprintf(stderr, "job_record: %s\n", strerror(-ret));
		return 1;
	}
	return 0;
}
