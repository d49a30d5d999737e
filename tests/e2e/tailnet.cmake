# e2e tailnet (tests/e2e/tailnet.sh): pods join a tailnet served by
# tests/testcontrol through the real plugin and supervisor --control-url.
foreach(mode https http restarts badcontrol badkey nolite)
	tscni_test(NAME tailnet_${mode} LABEL e2e TIMEOUT 120
		COMMAND bash ${E2E_DIR}/tailnet.sh ${mode})
endforeach()

# e2e pod<->pod (tests/e2e/podpod.sh): two pods on one node reach each other
# over ts0 through their workers' data planes; a policy allowing only tcp:80.
tscni_test(NAME podpod LABEL e2e TIMEOUT 180 COMMAND bash ${E2E_DIR}/podpod.sh)
