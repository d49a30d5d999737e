/* Kernel features newer than the 5.10 floor are probed at run time, each with
 * a fallback. TSCNI_FORCE_FALLBACK=all (or a comma-separated list of feature
 * names, e.g. "close_range,so_peerpidfd") makes the probes answer "absent" so
 * tests and CI run the fallback paths on a kernel that has the feature. */
#ifndef TSCNI_COMMON_KFEAT_H
#define TSCNI_COMMON_KFEAT_H

#include <stdbool.h>

/* True when the fallback for feature name is forced by the environment.
 * Probes call this first and report the feature absent when it is true. */
bool kfeat_fallback_forced(const char *name);

#endif
