/* A pod's device on the tailnet, once its node is done with (jobs.h): the
 * job names the node key the supervisor generated for the pod, read from
 * the pod's identity here, never from anything a worker said. */
#include "pods.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "jobs.h"
#include "keys.h"
#include "log.h"
#include "pods_internal.h"
#include "state.h"
#include "supervisor.h"

void pods__device_cleanup(struct pods *p, const char *pod_uid, bool only_registered)
{
	uint8_t pub[KEY_LEN];
	Tscni__Identity *id;
	int err = 0, ret;

	if (!p->sup->jobs || authkeys_kind(p->sup->authkeys) == AUTHKEYS_STATIC)
		return;
	uv_mutex_lock(&p->identity_lock);
	id = state_identity_get(p->st, pod_uid, &err);
	uv_mutex_unlock(&p->identity_lock);
	if (!id) {
		if (err != -ENOENT)
			log_warn_r(err, "pod %s: no device cleanup: its identity is unreadable",
				   pod_uid);
		return;
	}
	/* A key rotation under way (pods_reauth.c): until the node registers
	 * with its new key, control's device holds the old one. */
	if (id->old_node_public.len == KEY_LEN) {
		memcpy(pub, id->old_node_public.data, KEY_LEN);
	} else if ((only_registered && !id->registered) || id->node_private.len != KEY_LEN ||
		   keys_public(pub, id->node_private.data) < 0) {
		pods__identity_wipe_free(id);
		return;
	}
	ret = jobs_device_delete(p->sup->jobs, pod_uid, pub,
				 id->stable_node_id ? id->stable_node_id : "");
	if (ret < 0)
		log_warn_r(ret, "pod %s: record the device cleanup job", pod_uid);
	else
		log_info("pod %s: device cleanup job recorded", pod_uid);
	pods__identity_wipe_free(id);
}
