/* The capability version ("capver") this node claims to control, and the
 * obligations behind it.
 *
 * The number is not cosmetic: it goes into the Noise header and prologue,
 * the RegisterRequest and every MapRequest, and control servers change what
 * they send (and what they expect of us) by it. tailcfg.go documents each
 * step; docs/tailscale-protocol.md §3.1 lists the ones a minimal
 * node has to care about. Every such obligation is one row of the table in
 * capver.c: the version that introduced it, what it promises, whether this
 * code meets it and where (or what is missing).
 *
 * The claim: Headscale refuses anything below CAPVER_FLOOR (113), so that is
 * where we start; we then claim the highest version V such that every row
 * in (CAPVER_FLOOR, V] is met. Rows at or below the floor that are not met
 * are known gaps: capver_gaps() lists them so the caller can log them (the
 * floor cannot be lowered without losing Headscale). */
#ifndef TSCNI_WORKER_CONTROL_CAPVER_H
#define TSCNI_WORKER_CONTROL_CAPVER_H

#include <stdbool.h>
#include <stddef.h>

enum capver_limits {
	CAPVER_FLOOR = 113,   /* headscale's MinSupportedCapabilityVersion */
	CAPVER_CEILING = 136, /* 137 adds 429 on register, 144 TSMP disco adverts */
};

struct capver_row {
	int version;
	const char *promise; /* what claiming this version tells control */
	bool met;
	const char *how; /* where it is met, or what is missing */
};

/* The table, sorted by version. Returns it; *n is set to its length. */
const struct capver_row *capver_table(size_t *n);
/* The version we claim (see above), computed from the table. */
int capver_claim(void);
/* Rows at or below the claim that are not met, as indexes into the table:
 * writes up to cap of them into idx and returns how many there are. */
size_t capver_gaps(size_t *idx, size_t cap);

#endif
