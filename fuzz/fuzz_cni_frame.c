/* Fuzz target for the CNI socket: a byte stream cut into frames by
 * frame_decode(), each body unpacked and validated as the supervisor does
 * (CniRequest, and an ADD's annotations read as pods__submit_add reads them)
 * and as the plugin does with the answer (CniReply). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#include "annotations.h"
#include "cni.pb-c.h"
#include "frame.h"
#include "validate.h"

#include "repack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_request(const void *m, const char **why)
{
	return validate_cni_request(m, why);
}

static int check_reply(const void *m, const char **why)
{
	return validate_cni_reply(m, why);
}

/* The pod's choices from an ADD's annotations, against a small allowed set. */
static void check_annotations(const Tscni__CniRequest *req)
{
	static struct tag_set allowed = {.n = 2, .v = {"tag:web", "tag:db"}};
	struct pod_choice choice;
	char why[ANNOTATIONS_WHY_LEN + 64];

	if (req->body_case != TSCNI__CNI_REQUEST__BODY_ADD || !req->add)
		return;
	annotations_parse(req->add->annotations, req->add->n_annotations, &allowed, &choice, why,
			  sizeof(why));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;

	while (off < size) {
		const uint8_t *body;
		size_t body_len;
		const char *why = NULL;
		ssize_t n = frame_decode(data + off, size - off, &body, &body_len, &why);
		Tscni__CniRequest *req;
		Tscni__CniReply *rep;

		if (n <= 0)
			break;
		off += (size_t)n;
		req = tscni__cni_request__unpack(NULL, body_len, body);
		if (req) {
			if (validate_cni_request(req, &why) == 0) {
				repack_check(&req->base, check_request);
				check_annotations(req);
			}
			tscni__cni_request__free_unpacked(req, NULL);
		}
		rep = tscni__cni_reply__unpack(NULL, body_len, body);
		if (rep) {
			if (validate_cni_reply(rep, &why) == 0)
				repack_check(&rep->base, check_reply);
			tscni__cni_reply__free_unpacked(rep, NULL);
		}
	}
	return 0;
}
