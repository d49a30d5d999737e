/* A DNS server for the e2e tests: the upstream resolver a pod's quad-100
 * forwards to. Answers A/AAAA over UDP from NAME=ADDR arguments with the
 * project's own responder (worker/dns), everything else NXDOMAIN.
 *
 *   dns_upstream ADDR PORT NAME=IP...
 *
 * Prints "listening" once bound; runs until killed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "magicdns.h"

int main(int argc, char **argv)
{
	struct magicdns_extra_record rec[64];
	static const char *const root[] = {"."};
	struct magicdns_config cfg = {.extra = rec, .local_domains = root, .n_local_domains = 1};
	struct sockaddr_storage ss = {0};
	struct magicdns *m = NULL;
	const char *why = "";
	socklen_t sl;
	int fd;

	if (argc < 3 || argc - 3 > 64) {
		fprintf(stderr, "usage: dns_upstream ADDR PORT NAME=IP...\n");
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		char *eq = strchr(argv[i], '=');

		if (!eq) {
			fprintf(stderr, "dns_upstream: '%s' is not NAME=IP\n", argv[i]);
			return 2;
		}
		*eq = '\0';
		rec[cfg.n_extra++] = (struct magicdns_extra_record){
			.name = argv[i], .type = "", .value = eq + 1};
	}
	if (magicdns_new(&cfg, &m, NULL, &why) < 0) {
		fprintf(stderr, "dns_upstream: %s\n", why);
		return 1;
	}
	if (inet_pton(AF_INET, argv[1], &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)atoi(argv[2]));
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, argv[1], &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)atoi(argv[2]));
		sl = sizeof(struct sockaddr_in6);
	} else {
		fprintf(stderr, "dns_upstream: '%s' is not an address\n", argv[1]);
		return 2;
	}
	fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, sl) < 0) {
		fprintf(stderr, "dns_upstream: bind %s:%s: %s\n", argv[1], argv[2],
			strerror(errno));
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		uint8_t q[1500], r[1500];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
		size_t out = 0;

		if (n < 0)
			continue;
		if (magicdns_answer(m, q, (size_t)n, 0, r, sizeof(r), &out) == MAGICDNS_ANSWER)
			sendto(fd, r, out, 0, (struct sockaddr *)&from, fl);
	}
}
