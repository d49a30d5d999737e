/* Device cleanup as persisted, retried jobs (jobs/<id>.pb in the state
 * directory, state.h): when a pod's node logged out for good (DEL, GC) or
 * its identity expired, its device is deleted through the key source's API
 * (authkeys.h), confirmed first by the node key the supervisor generated.
 * A DEL never waits for it: the record is written, the runner on the loop
 * does the rest, retrying with a backoff (1 s doubling, at most
 * JOBS_BACKOFF_MAX_MS) until the API answers; a supervisor restart picks the
 * records up again. A job whose pod is attached again is dropped (its node
 * is in use); a device whose node key is another is never deleted. */
#ifndef TSCNI_SUPERVISOR_JOBS_H
#define TSCNI_SUPERVISOR_JOBS_H

#include <stdint.h>

#include "state.pb-c.h"

struct supervisor;
struct jobs;

enum jobs_limits {
	JOBS_MAX = 4096,   /* jobs held in memory; more wait on disk for a restart */
	JOBS_INFLIGHT = 4, /* device deletions at once */
	JOBS_BACKOFF_MS = 1000,
	JOBS_BACKOFF_MAX_MS = 8000,
};

/* On the loop, before pods_startup. 0 or a negative errno. */
int jobs_new(struct supervisor *sup, struct jobs **out);
/* Stops running jobs (before the key source closes); jobs may still be
 * recorded, for the next supervisor. NULL-safe. */
void jobs_stop(struct jobs *j);
/* Closes the handles; the loop frees the rest. NULL-safe. */
void jobs_close(struct jobs *j);
/* A record state_load found (pods_startup). */
void jobs_load(struct jobs *j, const Tscni__Job *job);
/* Writes the job for the pod's device (any thread; synchronous, it
 * fsyncs) and hands it to the runner. 0 or a negative errno. */
int jobs_device_delete(struct jobs *j, const char *pod_uid, const uint8_t node_public[32],
		       const char *stable_id);
/* The pod is attached again (an ADD of the same identity): its node is in
 * use, its device jobs are dropped (a deletion already sent is not
 * undone). On the loop. */
void jobs_drop_pod(struct jobs *j, const char *pod_uid);
/* How many jobs are waiting or running (status, tests). */
size_t jobs_count(const struct jobs *j);

#endif
