# e2e tailnet (tests/e2e/tailnet.sh): pods join a tailnet served by
# tests/testcontrol through the real plugin and supervisor --control-url.
foreach(mode https http restarts badcontrol badkey nolite)
	tscni_test(NAME tailnet_${mode} LABEL e2e TIMEOUT 120
		COMMAND bash ${E2E_DIR}/tailnet.sh ${mode})
endforeach()

# e2e pod<->pod (tests/e2e/podpod.sh): two pods on one node reach each other
# over ts0 through their workers' data planes; a policy allowing only tcp:80.
tscni_test(NAME podpod LABEL e2e TIMEOUT 180 COMMAND bash ${E2E_DIR}/podpod.sh)
# The same with every offload off (TUN vnet header/TSO/USO, UDP GSO and GRO):
# the fallback path end to end, whatever CI's fallback run selects.
tscni_test(NAME podpod_fallback LABEL e2e TIMEOUT 180 COMMAND bash ${E2E_DIR}/podpod.sh
	ENV TSCNI_FORCE_FALLBACK=all)

# e2e interop (tests/e2e/wgo_interop.sh): a pod's worker and Debian's
# wireguard-go, the peer registered in testcontrol and reaching the worker
# through the real netmap path (supervisor and testcontrol in a node netns).
tscni_test(NAME wgo_interop LABEL e2e TIMEOUT 300 COMMAND bash ${E2E_DIR}/wgo_interop.sh)

# e2e policy (tests/e2e/policy.sh): testcontrol's policy allows only
# tag:web -> the pod's port 80.
tscni_test(NAME policy LABEL e2e TIMEOUT 180 COMMAND bash ${E2E_DIR}/policy.sh)
tscni_test(NAME wgo_interop_fallback LABEL e2e TIMEOUT 300
	COMMAND bash ${E2E_DIR}/wgo_interop.sh ENV TSCNI_FORCE_FALLBACK=all)

# e2e DERP (tests/e2e/derp.sh): two pods with every UDP datagram dropped
# reach each other through testcontrol's DERP regions; home region failover.
tscni_test(NAME derp LABEL e2e TIMEOUT 240 COMMAND bash ${E2E_DIR}/derp.sh)

# e2e endpoints (tests/e2e/endpoints.sh): a pod's endpoints follow the node's
# addresses (netlink), never name denied interfaces, and take their port from
# --udp-port-range; a full range fails ADD saying so.
tscni_test(NAME endpoints LABEL e2e TIMEOUT 180 COMMAND bash ${E2E_DIR}/endpoints.sh)

# e2e two nodes (tests/e2e/twonode.sh): five pods on two nodes, one behind a
# NAT, each node its own supervisor; direct paths, DERP under hard NATs, a
# DERP restart and a home region failover. Heavy (50 MB streams): alone.
tscni_test(NAME twonode LABEL e2e TIMEOUT 420 COMMAND bash ${E2E_DIR}/twonode.sh)
set_tests_properties(e2e.twonode PROPERTIES RUN_SERIAL TRUE)

# e2e netcheck (tests/e2e/netcheck.sh): the supervisor's node-wide netcheck;
# one region's STUN dropped, three pods make the other one home; one probe
# set per node, not per pod.
tscni_test(NAME netcheck LABEL e2e TIMEOUT 300 COMMAND bash ${E2E_DIR}/netcheck.sh)

# e2e routes (tests/e2e/routes.sh): ts0 carries exactly the tailnet's peers
# (and quad-100), never the pod's cluster network inside 100.64.0.0/10;
# joins and leaves, subnet routes with --accept-routes and --route-deny,
# the supervisor away, --route-all.
tscni_test(NAME routes LABEL e2e TIMEOUT 240 COMMAND bash ${E2E_DIR}/routes.sh)

# e2e MagicDNS (tests/e2e/dns.sh): a pod resolving through quad-100 (UDP,
# TCP, IPv4 and IPv6): tailnet names, short names, reverse lookups,
# forwarding and split DNS through the worker, REFUSED, a peer that left.
tscni_test(NAME dns LABEL e2e TIMEOUT 180 COMMAND bash ${E2E_DIR}/dns.sh)

# e2e IPv6 underlay (tests/e2e/v6underlay.sh): two nodes that reach each
# other only over IPv6; their pods find a direct IPv6 path (disco and
# WireGuard over [2001:db8:...]:port) and move 20 MB over it.
tscni_test(NAME v6underlay LABEL e2e TIMEOUT 180 COMMAND bash ${E2E_DIR}/v6underlay.sh)
