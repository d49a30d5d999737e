/* tailscale-cni-supervisor install | uninstall: puts the plugin, the worker
 * tree and our entry in the node's CNI configuration onto the host, and
 * takes them away (docs/cni-contract.md §12). The DaemonSet's init container
 * runs `install`; a container that stays runs `install --watch`, which
 * re-adds our entry when the primary plugin rewrites its file; an explicit
 * uninstall Job runs `uninstall`. Nothing is removed when a container
 * stops: an upgrade is not an uninstall (§12.7). */
#ifndef TSCNI_INSTALLER_INSTALLER_H
#define TSCNI_INSTALLER_INSTALLER_H

#define INSTALLER_CNI_BIN_DIR  "/opt/cni/bin"
#define INSTALLER_CNI_CONF_DIR "/etc/cni/net.d"
#define INSTALLER_WORKER_DIR   "/opt/tailscale-cni"
#define INSTALLER_PLUGIN       "tailscale-cni"

enum installer_limits {
	INSTALLER_WAIT_MAX_S = 86400 * 365,
	INSTALLER_RESCAN_MS = 30000,	/* inotify misses events: rescan this often */
	INSTALLER_SETTLE_MS = 200,	/* after an event, let a multi-step writer finish */
	INSTALLER_FIGHT_WRITES = 5,	/* at most this many re-adds ... */
	INSTALLER_FIGHT_WINDOW_S = 600, /* ... in this many seconds, then stop writing */
};

/* argv[0] is "install" / "uninstall". Exit status 0 when done, 1 when
 * refused, failed or given a wrong command line (the reason on stderr). */
int installer_install_command(int argc, char **argv);
int installer_uninstall_command(int argc, char **argv);

#endif
