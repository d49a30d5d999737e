/* Key expiry while a pod runs: the supervisor's decisions on a worker's
 * ReauthRequest (pods_reauth.c; docs/design.md "Key expiry"). Pure
 * functions, unit-tested; the flow around them is in pods_reauth.c. */
#ifndef TSCNI_SUPERVISOR_PODS_REAUTH_H
#define TSCNI_SUPERVISOR_PODS_REAUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "authkeys.h"

enum pods_reauth_limits {
	/* A request within this long of the pod's previous one is dropped
	 * (a worker resends every 20 s while it waits). */
	PODS_REAUTH_ASK_S = 10,
	/* At most one rotation per pod in this long, confirmed or not. */
	PODS_REAUTH_INTERVAL_S = 60,
};

enum pods_reauth_verdict {
	PODS_REAUTH_OK,		  /* admitted, or the expiry confirmed */
	PODS_REAUTH_BUSY,	  /* one of this pod's is under way */
	PODS_REAUTH_TOO_OFTEN,	  /* within PODS_REAUTH_ASK_S of the last */
	PODS_REAUTH_RATE_LIMITED, /* within PODS_REAUTH_INTERVAL_S of a rotation */
	PODS_REAUTH_NO_EXPIRY,	  /* the key source: the key does not expire */
	PODS_REAUTH_NOT_DUE,	  /* the key source: it expires after the margin */
	PODS_REAUTH_MISMATCH,	  /* the device has another node key */
	PODS_REAUTH_NO_DEVICE,	  /* no device with the pod's node key */
	PODS_REAUTH_API_DOWN,	  /* the key source could not be asked */
	PODS_REAUTH_UNREGISTERED, /* the identity's node is not registered */
	PODS_REAUTH_NO_KEY,	  /* no auth key could be had */
};

/* A pod's request history (uv_now seconds, +1 so that 0 means never). */
struct pod_reauth_limits {
	uint64_t last_ask_s;	  /* the last request admitted or rate limited */
	uint64_t last_rotation_s; /* the last rotation applied */
	bool busy;
};

/* May a request at now_s go on to be checked? */
enum pods_reauth_verdict pods_reauth_admit(const struct pod_reauth_limits *l, uint64_t now_s);
/* Is the expiry confirmed by what the key source said of the pod's device
 * (res, expiry_unix: 0 never expires) at now_unix? A static key confirms
 * nothing and is OK (only the limits apply). */
enum pods_reauth_verdict pods_reauth_confirm(enum authkeys_kind kind, enum authkeys_device res,
					     int64_t expiry_unix, int64_t now_unix);
/* A fixed sentence for the log. */
const char *pods_reauth_why(enum pods_reauth_verdict v);

#endif
