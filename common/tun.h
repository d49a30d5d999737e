/* The TUN flag bits both sides agree on: the supervisor creates each pod's
 * ts0 and the worker reads and writes it, so the device must be created with
 * exactly the flags the worker's batch I/O expects (worker/dataplane/tunio.h).
 * Kept here, apart from the worker's packet path, because the supervisor links
 * only common/. */
#ifndef TSCNI_COMMON_TUN_H
#define TSCNI_COMMON_TUN_H

#include <stdbool.h>

/* The TUNSETIFF flags to create a device with: IFF_TUN | IFF_NO_PI, plus
 * IFF_VNET_HDR unless no_vnet_hdr is set, the "tun_vnet_hdr" fallback is
 * forced (kfeat_fallback_forced), or TUNGETFEATURES on fd (an open
 * /dev/net/tun, not yet attached) says the kernel lacks it. The caller may add
 * IFF_TUN_EXCL and the like. */
short tun_iff_flags(int fd, bool no_vnet_hdr);

#endif
