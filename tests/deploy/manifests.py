#!/usr/bin/env python3
"""deploy.manifests: deploy/ as kubectl renders it, checked offline.

1. `kubectl kustomize deploy/` renders the base; `kubectl label --local`
   turns every object into JSON (no cluster: both work without one).
2. Typed decode: `kubectl set env --local` decodes each object with a pod
   template into the Kubernetes Go types and prints it back; a field the
   types do not know is dropped there, so every field of the input must come
   back (a misspelt `mountPropagaton` fails here). A copy with such a typo
   must fail the same comparison (the check can fail).
3. Structure: the objects and namespace; every container's image carries the
   registry placeholder and IfNotPresent; no privileged: true, capabilities
   dropped to a named list that holds what supervisor/proc_limits.c checks at
   start; hostPID, hostNetwork, system-node-critical; the host paths of
   docs/design.md §5 with /run/netns HostToContainer (and /etc/machine-id,
   which the supervisor's state records carry); every volumeMount has
   a volume and every volume is used; probes on 127.0.0.1:<the ConfigMap's
   metrics port>/healthz; every $(VAR) in args comes from the container's
   env and every ConfigMap/Secret key named exists; the auth key file lies in
   the Secret's volume.
4. Flags: every --flag of the supervisor container is one the built
   supervisor's --help lists; the installer's flags are checked against
   `install --help` when the binary has that command, else against the
   interface agreed for it (issue 14 item 4).
5. deploy/uninstall/ (a DaemonSet running the installer's uninstall): the
   same typed decode and container checks, its flags, and the same host
   paths mounted where the install container has them.
6. The plugin keys of plugin-conf.json, run through the real plugin (CNI
   STATUS against a socket that does not exist): code 50 (supervisor
   unavailable) means the configuration parsed; a bad key gives code 7.

Usage: manifests.py SOURCE_DIR BUILD_DIR. Prints "ok - ..." / "FAIL - ..."
lines and "N passed, N failed"; exit 1 on any failure.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC, BUILD = sys.argv[1], sys.argv[2]
SUP = os.path.join(BUILD, "supervisor", "tailscale-cni-supervisor")
PLUGIN = os.path.join(BUILD, "cni", "tailscale-cni")
NAMESPACE = "tailscale-cni"
IMAGE_PREFIX = "ghcr.io/OWNER/tailscale-cni:"
# Host paths the DaemonSet must mount (docs/design.md §5, issue 14 item 3).
HOST_PATHS = ["/opt/cni/bin", "/etc/cni/net.d", "/var/lib/tailscale-cni",
              "/run/tailscale-cni", "/run/netns", "/opt/tailscale-cni", "/dev/net/tun",
              "/etc/machine-id"]
# Fields of the DaemonSet and the Kubernetes minor version that added them.
NEWER_FIELDS = {".securityContext.appArmorProfile": 30}

passed = failed = 0


def check(cond, desc):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {desc}")
    else:
        failed += 1
        print(f"FAIL - {desc}")
    return cond


def finish():
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


def kubectl(*args, stdin=None):
    env = dict(os.environ, KUBECONFIG=os.devnull)
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                          env=env)


def json_stream(text):
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.extend(obj["items"] if obj.get("kind") == "List" else [obj])


def lost_fields(given, typed, path=""):
    """Paths in given that typed does not hold with the same value."""
    if isinstance(given, dict):
        if not isinstance(typed, dict):
            return [path]
        return [p for k, v in given.items()
                for p in ([f"{path}.{k}"] if k not in typed else
                          lost_fields(v, typed[k], f"{path}.{k}"))]
    if isinstance(given, list):
        # set env appends one variable to each env list: a prefix suffices.
        if not isinstance(typed, list) or len(typed) < len(given):
            return [path]
        return [p for i, (a, b) in enumerate(zip(given, typed))
                for p in lost_fields(a, b, f"{path}[{i}]")]
    return [] if given == typed else [path]


def kubectl_minor():
    r = kubectl("version", "--client", "-o", "json")
    try:
        return int(re.match(r"\d+", json.loads(r.stdout)["clientVersion"]["minor"]).group())
    except (ValueError, KeyError, AttributeError):
        return 0


def typed_roundtrip(obj):
    """obj decoded into the Go types and printed back, or None."""
    r = kubectl("set", "env", "--local", "-f", "-", "-o", "json", "TSCNI_TYPED_DECODE=1",
                stdin=json.dumps(obj))
    if r.returncode != 0:
        print(f"# kubectl set env --local: {r.stderr.strip()[:300]}")
        return None
    return json.loads(r.stdout)


def long_flags(text):
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


def args_flags(args):
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def render(sub):
    """The objects of `kubectl kustomize SRC/sub`, as JSON; finish() on failure."""
    r = kubectl("kustomize", os.path.join(SRC, sub))
    if not check(r.returncode == 0, f"kubectl kustomize {sub}/ renders"):
        print("# " + r.stderr.strip()[:500])
        finish()
    r = kubectl("label", "--local", "-f", "-", "-o", "json", "tscni.io/validated=1",
                stdin=r.stdout)
    if not check(r.returncode == 0,
                 f"every object of {sub}/ decodes (kubectl label --local)"):
        print("# " + r.stderr.strip()[:500])
        finish()
    objs = json_stream(r.stdout)
    for o in objs:
        o["metadata"].get("labels", {}).pop("tscni.io/validated", None)
    return objs


def typed_check(ds):
    """ds decodes into the Go types with no field lost."""
    typed = typed_roundtrip(ds)
    lost = lost_fields(ds, typed) if typed else ["(no decode)"]
    # Fields newer than this kubectl's types (Debian 12's kubernetes-client
    # is 1.20) are named, not failed.
    minor = kubectl_minor()
    newer = [p for p in lost if any(p.endswith(f) and minor < v
                                    for f, v in NEWER_FIELDS.items())]
    for p in newer:
        print(f"# {p}: newer than kubectl 1.{minor}'s types, not checked")
    lost = [p for p in lost if p not in newer]
    check(not lost, f"{ds['metadata']['name']}: decodes into the Kubernetes types with no "
          "field lost" + (f" (lost: {', '.join(lost[:5])})" if lost else ""))


def container_checks(c, need_caps=True):
    """What every container of ours must be: the image placeholder, the pull
    policy, not privileged, capabilities dropped (to a named list when
    need_caps), resources bounded."""
    check(c.get("image", "").startswith(IMAGE_PREFIX),
          f"{c['name']}: image {c.get('image')} has the registry placeholder")
    check(c.get("imagePullPolicy") == "IfNotPresent",
          f"{c['name']}: imagePullPolicy IfNotPresent")
    sc = c.get("securityContext", {})
    caps = sc.get("capabilities", {})
    check(sc.get("privileged") is not True, f"{c['name']}: not privileged")
    check(caps.get("drop") == ["ALL"] and (caps.get("add") or not need_caps),
          f"{c['name']}: capabilities dropped to {caps.get('add', [])}")
    res = c.get("resources", {})
    check(all(k in res.get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory")),
          f"{c['name']}: cpu and memory requests and limits")


def mounts_check(pod):
    """Every volumeMount has a volume and every volume is mounted; returns
    the volumes by name."""
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    used = set()
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        for m in c.get("volumeMounts", []):
            used.add(m["name"])
            check(m["name"] in vols, f"{c['name']}: mount {m['mountPath']} has a volume")
    check(set(vols) == used, f"every volume is mounted ({sorted(set(vols) - used)} unused)")
    return vols


def main():
    # --- 1. render -------------------------------------------------------
    if not check(shutil.which("kubectl"), "kubectl is installed (scripts/install-deps.sh)"):
        finish()
    objs = render("deploy")
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
    check(kinds == ["ConfigMap/tailscale-cni", "DaemonSet/tailscale-cni",
                    "Namespace/tailscale-cni", "Secret/tailscale-cni-auth",
                    "ServiceAccount/tailscale-cni"], f"the objects: {', '.join(kinds)}")
    check(all(o["metadata"].get("namespace") == NAMESPACE for o in objs
              if o["kind"] != "Namespace"), f"every namespaced object is in {NAMESPACE}")
    by_kind = {o["kind"]: o for o in objs}
    ds, cm, secret, sa = (by_kind.get(k) for k in
                          ("DaemonSet", "ConfigMap", "Secret", "ServiceAccount"))
    if not (ds and cm and secret and sa):
        finish()

    # --- 2. typed decode ----------------------------------------------------
    typed_check(ds)
    bad = copy.deepcopy(ds)
    bad["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0][
        "mountPropagaton"] = "HostToContainer"
    typed_bad = typed_roundtrip(bad)
    check(typed_bad is not None and lost_fields(bad, typed_bad),
          "a misspelt field (mountPropagaton) is caught by the same comparison")

    # --- 3. structure -------------------------------------------------------
    pod = ds["spec"]["template"]["spec"]
    inits, ctrs = pod.get("initContainers", []), pod.get("containers", [])
    every = inits + ctrs
    names = [c["name"] for c in every]
    check(names == ["install", "supervisor", "install-watch"],
          f"containers: init install, then supervisor and install-watch ({names})")
    for c in every:
        container_checks(c)
    sup = next((c for c in ctrs if c["name"] == "supervisor"), None)
    if not sup:
        finish()
    src = open(os.path.join(SRC, "supervisor", "proc_limits.c")).read()
    needed = set(re.findall(r'\{CAP_([A-Z_]+), "CAP_', src))
    added = set(sup["securityContext"]["capabilities"]["add"])
    check(len(needed) >= 5 and needed <= added,
          f"supervisor: adds every capability proc_limits.c checks ({sorted(needed)})")
    check(pod.get("hostPID") is True and pod.get("hostNetwork") is True,
          "hostPID and hostNetwork")
    check(pod.get("priorityClassName") == "system-node-critical",
          "priorityClassName system-node-critical")
    check(pod.get("serviceAccountName") == sa["metadata"]["name"] and
          pod.get("automountServiceAccountToken") is False and
          sa.get("automountServiceAccountToken") is False,
          "the ServiceAccount is used and no API token is mounted")

    vols = mounts_check(pod)
    host = {v["hostPath"]["path"]: n for n, v in vols.items() if "hostPath" in v}
    for p in HOST_PATHS:
        check(p in host, f"host path {p} is a volume")
    sup_mounts = {m["name"]: m for m in sup.get("volumeMounts", [])}
    netns = sup_mounts.get(host.get("/run/netns"), {})
    check(netns.get("mountPropagation") == "HostToContainer" and
          netns.get("mountPath") == "/run/netns",
          "supervisor: /run/netns with HostToContainer propagation")
    for p in ["/var/lib/tailscale-cni", "/run/tailscale-cni", "/dev/net/tun",
              "/etc/machine-id"]:
        check(sup_mounts.get(host.get(p), {}).get("mountPath") == p,
              f"supervisor: {p} at the same path")

    data = cm.get("data", {})
    listen = data.get("metrics-listen", "")
    mhost, _, mport = listen.rpartition(":")
    check(mhost == "127.0.0.1" and mport.isdigit(),
          f"ConfigMap metrics-listen is 127.0.0.1:PORT ({listen})")
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        g = sup.get(kind, {}).get("httpGet", {})
        check(g.get("host") == "127.0.0.1" and str(g.get("port")) == mport and
              g.get("path") == "/healthz",
              f"supervisor {kind}: GET http://{g.get('host')}:{g.get('port')}{g.get('path')}")

    for c in every:
        env = {e["name"]: e for e in c.get("env", [])}
        for var in re.findall(r"\$\(([A-Z_]+)\)", " ".join(c.get("args", []))):
            check(var in env, f"{c['name']}: $({var}) in args is in its env")
        for e in env.values():
            ref = e.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                check(ref["name"] == cm["metadata"]["name"] and ref["key"] in data,
                      f"{c['name']}: env {e['name']} from ConfigMap key {ref['key']}")
    sargs = sup.get("args", [])
    env = {e["name"]: e for e in sup.get("env", [])}

    def arg(flag):
        return sargs[sargs.index(flag) + 1] if flag in sargs[:-1] else None

    ml = arg("--metrics-listen") or ""
    mref = env.get(ml[2:-1], {}).get("valueFrom", {}).get("configMapKeyRef", {})
    check(mref.get("key") == "metrics-listen",
          f"supervisor: --metrics-listen comes from the ConfigMap's metrics-listen ({ml})")
    key_file = arg("--auth-key-file") or ""
    auth = next((m for m in sup.get("volumeMounts", [])
                 if key_file.startswith(m["mountPath"] + "/")), None)
    secret_vol = vols.get(auth["name"], {}).get("secret", {}) if auth else {}
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    check(secret_vol.get("secretName") == secret["metadata"]["name"] and
          os.path.basename(key_file) in secret_keys,
          f"--auth-key-file {key_file} is key {os.path.basename(key_file)} of the Secret")
    ca = data.get("ca-file", "")
    containerfile = open(os.path.join(SRC, "deploy", "Containerfile")).read()
    check(ca.startswith("/etc/tailscale-cni/config/") or ca in containerfile,
          f"ConfigMap ca-file {ca} is made by the Containerfile or lies in the ConfigMap")

    # --- 4. flags -----------------------------------------------------------
    r = subprocess.run([SUP, "--help"], capture_output=True, text=True)
    helped = long_flags(r.stdout)
    check(r.returncode == 0 and "--state-dir" in helped,
          f"the built supervisor prints its --help ({len(helped)} flags)")
    check(sargs[:1] == ["run"], "supervisor: the run command")
    for f in sorted(args_flags(sargs)):
        check(f in helped, f"supervisor: {f} is in the supervisor's --help")
    ri = subprocess.run([SUP, "install", "--help"], capture_output=True, text=True)
    install_flags = long_flags(ri.stdout + ri.stderr)
    origin = "its install --help"
    check(ri.returncode == 0 and "--worker-dir" in install_flags,
          f"the built supervisor prints install --help ({len(install_flags)} flags)")
    for c in every:
        a = c.get("args", [])
        if a[:1] != ["install"]:
            continue
        for f in sorted(args_flags(a)):
            check(f in install_flags, f"{c['name']}: {f} is in {origin}")
        wd = a[a.index("--worker-dir") + 1] if "--worker-dir" in a[:-1] else None
        wm = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == wd), None)
        hp = vols.get(wm["name"], {}).get("hostPath", {}).get("path") if wm else None
        check(wd is not None and hp == wd,
              f"{c['name']}: --worker-dir {wd} is the same path on the host ({hp}): "
              "the wrapper the installer writes names it")
        check(("--watch" in a) == (c in ctrs),
              f"{c['name']}: --watch only in the long-running container")

    # --- 5. uninstall: deploy/uninstall/ --------------------------------------
    ru = subprocess.run([SUP, "uninstall", "--help"], capture_output=True, text=True)
    uninstall_flags = long_flags(ru.stdout + ru.stderr)
    uorigin = "its uninstall --help"
    uobjs = render("deploy/uninstall")
    ukinds = [f"{o['kind']}/{o['metadata']['name']}" for o in uobjs]
    check(ukinds == ["DaemonSet/tailscale-cni-uninstall"], f"uninstall objects: {ukinds}")
    uds = uobjs[0]
    typed_check(uds)
    check(uds["metadata"].get("namespace") == NAMESPACE, f"uninstall: in {NAMESPACE}")
    upod = uds["spec"]["template"]["spec"]
    check(upod.get("serviceAccountName") == sa["metadata"]["name"] and
          upod.get("automountServiceAccountToken") is False,
          "uninstall: the same ServiceAccount, no token")
    uinit = upod.get("initContainers", [])
    uargs = uinit[0].get("args", []) if uinit else []
    check([c["name"] for c in uinit] == ["uninstall"] and uargs[:1] == ["uninstall"],
          "uninstall: an init container runs the installer's uninstall")
    for c in uinit + upod.get("containers", []):
        container_checks(c, need_caps=c in uinit)
    for f in sorted(args_flags(uargs)):
        check(f in uninstall_flags, f"uninstall: {f} is in {uorigin}")
    uvols = mounts_check(upod)
    for name, v in uvols.items():
        check("hostPath" in v and v["hostPath"] == vols.get(name, {}).get("hostPath"),
              f"uninstall: volume {name} is the base's host path "
              f"{v.get('hostPath', {}).get('path')}")
    base_mounts = {m["name"]: m["mountPath"] for c in inits for m in c.get("volumeMounts", [])}
    for m in uinit[0].get("volumeMounts", []) if uinit else []:
        check(base_mounts.get(m["name"]) == m["mountPath"],
              f"uninstall: {m['name']} at {m['mountPath']}, where install has it")

    # --- 5b. components/oauth: per-pod keys through an OAuth client ------------
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(os.path.join(SRC, "deploy"), os.path.join(tmp, "deploy"))
        with open(os.path.join(tmp, "deploy", "kustomization.yaml"), "a") as f:
            f.write("components:\n  - components/oauth\n")
        r = kubectl("kustomize", os.path.join(tmp, "deploy"))
    check(r.returncode == 0, "deploy/ with components/oauth renders")
    r = kubectl("label", "--local", "-f", "-", "-o", "json", "tscni.io/validated=1",
                stdin=r.stdout) if r.returncode == 0 else r
    oobjs = json_stream(r.stdout) if r.returncode == 0 else []
    ods = next((o for o in oobjs if o["kind"] == "DaemonSet"), None)
    ocm = next((o for o in oobjs if o["kind"] == "ConfigMap"), {})
    osec = next((o for o in oobjs if o["kind"] == "Secret"), {})
    osup = next((c for c in (ods or {}).get("spec", {}).get("template", {}).get("spec", {})
                 .get("containers", []) if c["name"] == "supervisor"), {})
    oargs = osup.get("args", [])
    for f in sorted(args_flags(oargs)):
        check(f in helped, f"oauth: {f} is in the supervisor's --help")
    check("--auth-key-file" not in oargs and "--oauth-client-id" in oargs and
          "--key-tags" in oargs, "oauth: --oauth-client-id and --key-tags replace --auth-key-file")
    sf = oargs[oargs.index("--oauth-client-secret-file") + 1] \
        if "--oauth-client-secret-file" in oargs[:-1] else ""
    okeys = set(osec.get("stringData", {})) | set(osec.get("data", {}))
    check(sf.startswith("/etc/tailscale-cni/auth/") and os.path.basename(sf) in okeys and
          "authkey" not in okeys,
          f"oauth: the secret file {sf} is a key of the Secret ({sorted(okeys)})")
    oenv = {e["name"]: e for e in osup.get("env", [])}
    for var in re.findall(r"\$\(([A-Z_]+)\)", " ".join(oargs)):
        ref = oenv.get(var, {}).get("valueFrom", {}).get("configMapKeyRef", {})
        check(var == "NODE_NAME" or ref.get("key") in ocm.get("data", {}),
              f"oauth: $({var}) comes from ConfigMap key {ref.get('key')}")

    # --- 6. plugin keys -------------------------------------------------------
    try:
        conf = json.loads(data.get("plugin-conf.json", ""))
    except ValueError as e:
        check(False, f"plugin-conf.json is JSON ({e})")
        finish()
    check(conf.get("type") == "tailscale-cni", "plugin-conf.json: type tailscale-cni")
    with tempfile.TemporaryDirectory() as tmp:
        def status(c):
            c = dict(c, cniVersion="1.1.0", name="k8s-pod-network",
                     socketPath=os.path.join(tmp, "absent.sock"))
            p = subprocess.run([PLUGIN], input=json.dumps(c), capture_output=True, text=True,
                               env={"CNI_COMMAND": "STATUS", "CNI_PATH": "/opt/cni/bin",
                                    "PATH": "/usr/bin:/bin"})
            try:
                return json.loads(p.stdout).get("code")
            except ValueError:
                return None
        code = status(conf)
        check(code == 50, f"plugin-conf.json parses in the real plugin (STATUS code {code}, "
              "50 = supervisor unavailable)")
        code = status(dict(conf, selection="everything"))
        check(code == 7, f"a bad plugin key is refused by the same run (code {code})")
    finish()


main()
