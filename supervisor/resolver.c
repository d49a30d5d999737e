/* Names for workers: see resolver.h. Each look-up is one uv_getaddrinfo
 * (a threadpool job); its answer goes back through workers_resolve_reply
 * unless the worker was forgotten meanwhile. */
#include "resolver.h"

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "mem.h"
#include "workers.h"

struct lookup {
	struct lookup *next;
	struct resolver *r;
	struct worker *w; /* NULL once forgotten */
	uint32_t id;
	uv_getaddrinfo_t req;
};

struct resolver {
	uv_loop_t *loop;
	struct lookup *pending;
	unsigned int npending;
	bool closing;
};

int resolver_new(uv_loop_t *loop, struct resolver **out)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->loop = loop;
	*out = r;
	return 0;
}

static void lookup_unlink(struct lookup *l)
{
	struct resolver *r = l->r;

	for (struct lookup **pp = &r->pending; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	r->npending--;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct lookup *l = req->data;
	struct resolver *r = l->r;
	struct sockaddr_storage ss[RESOLVER_MAX_ADDRS];
	size_t n = 0;

	lookup_unlink(l);
	for (struct addrinfo *ai = res; ai && n < RESOLVER_MAX_ADDRS; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(ss[0]))
			continue;
		memset(&ss[n], 0, sizeof(ss[n]));
		memcpy(&ss[n], ai->ai_addr, ai->ai_addrlen);
		n++;
	}
	if (l->w) {
		log_debug("pod %s: resolve %u: %zu addresses%s%s", workers_pod_uid(l->w), l->id, n,
			  status < 0 ? ", " : "", status < 0 ? uv_strerror(status) : "");
		workers_resolve_reply(l->w, l->id, ss, n,
				      status < 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
	}
	uv_freeaddrinfo(res);
	free(l);
	if (r->closing && !r->npending)
		free(r);
}

void resolver_request(struct worker *w, uint32_t id, const char *host, void *arg)
{
	struct resolver *r = arg;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct lookup *l;
	int ret;

	if (r->closing || r->npending >= RESOLVER_MAX_PENDING) {
		workers_resolve_reply(w, id, NULL, 0, "too many look-ups in flight");
		return;
	}
	l = xcalloc(1, sizeof(*l));
	l->r = r;
	l->w = w;
	l->id = id;
	l->req.data = l;
	ret = uv_getaddrinfo(r->loop, &l->req, on_resolved, host, NULL, &hints);
	if (ret < 0) {
		workers_resolve_reply(w, id, NULL, 0, uv_strerror(ret));
		free(l);
		return;
	}
	l->next = r->pending;
	r->pending = l;
	r->npending++;
}

void resolver_forget(struct resolver *r, const struct worker *w)
{
	if (!r)
		return;
	for (struct lookup *l = r->pending; l; l = l->next)
		if (l->w == w)
			l->w = NULL;
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	for (struct lookup *l = r->pending; l; l = l->next)
		l->w = NULL;
	r->closing = true;
	if (!r->npending)
		free(r);
}
