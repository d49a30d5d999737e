/* DEL tombstones: written when the supervisor cannot be reached, so that it
 * releases the attachment when it starts (docs/cni-contract.md 4.2 step 4). */
#ifndef TSCNI_CNI_TOMBSTONE_H
#define TSCNI_CNI_TOMBSTONE_H

/* Writes <state_dir>/tombstones/record_key_filename(network, container_id,
 * ifname) atomically (mode 0600) holding a Tombstone record; netns_path may be
 * NULL. Missing directories are created with mode 0700. Returns 0 or a
 * negative errno. */
int tombstone_write(const char *state_dir, const char *network, const char *container_id,
		    const char *ifname, const char *netns_path, const char *interface_name);

#endif
