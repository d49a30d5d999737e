/* TUN creation flags shared by the supervisor and the worker (see tun.h). */
#include "tun.h"

#include <net/if.h>
#include <sys/ioctl.h>

#include <linux/if_tun.h>

#include "kfeat.h"

short tun_iff_flags(int fd, bool no_vnet_hdr)
{
	unsigned int features = 0;
	short flags = IFF_TUN | IFF_NO_PI;

	if (no_vnet_hdr || kfeat_fallback_forced("tun_vnet_hdr"))
		return flags;
	if (ioctl(fd, TUNGETFEATURES, &features) == 0 && (features & IFF_VNET_HDR))
		flags |= IFF_VNET_HDR;
	return flags;
}
