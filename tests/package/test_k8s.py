#!/usr/bin/env python3
"""The Kubernetes manifests in deploy/k8s/ (no cluster here: checked, not applied).

    python3 tests/package/test_k8s.py BUILD_DIR

1. Validates every object against the Kubernetes OpenAPI schemas with the npm package
   kubernetes-models (installed by npm into BUILD_DIR/k8s-validate, never into the source
   tree), and refuses keys that the schemas do not know (a misspelt field).
2. Checks them against the real binaries and image: the image is the tag deploy/build-image.sh
   gives (stampede:VERSION); each command is a binary that deploy/collect-libs.sh puts in the
   image; every flag is in that binary's --help, and the binary accepts the whole argument
   list (ARGS --help exits 0: an unknown or malformed option exits 2).
3. Checks the wiring of reverse mode: the master Job's --listen port is its container port and
   the Service's; the workers dial that Service and port; the Deployment's replicas equal
   --expect-workers; the scenario and key paths are files of the mounted ConfigMap and Secret
   (the worker gets master.pub only); resource requests and pod anti-affinity are there; the
   scenario in the ConfigMap passes `master --dry-run` (target replaced by 127.0.0.1).
4. Rehearses the run on loopback: the master with the Job's arguments and the workers with the
   Deployment's, as many as its replicas, only the addresses and file paths swapped for local
   ones (listen and dial 127.0.0.1, keys from keygen, --allow-target 127.0.0.1/32), plus
   --dry-run: every value is then parsed for real, the workers dial in, the CURVE handshake
   completes, and the master prints the plan for all of them (no load is sent).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pkglib

NPM_PACKAGES = ["kubernetes-models@5.1.0", "yaml@2.9.1"]


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: test_k8s.py BUILD_DIR")
    build = os.path.abspath(sys.argv[1])
    source = pkglib.SOURCE_DIR
    k8s = os.path.join(source, "deploy", "k8s")
    pkglib.run(["cmake", "--build", build, "--target", "master", "worker"])

    modules = os.path.join(build, "k8s-validate")
    if not os.path.isdir(os.path.join(modules, "node_modules", "kubernetes-models")):
        os.makedirs(modules, exist_ok=True)
        pkglib.run(["npm", "install", "--prefix", modules, "--no-audit", "--no-fund",
                    "--silent", *NPM_PACKAGES])
    files = sorted(os.path.join(k8s, f) for f in os.listdir(k8s) if f.endswith(".yaml"))
    validated = subprocess.run(
        ["node", os.path.join(os.path.dirname(__file__), "validate_k8s.mjs"), *files],
        capture_output=True, text=True, env=dict(os.environ, NODE_PATH=os.path.join(
            modules, "node_modules")))
    assert validated.returncode == 0, f"schema validation failed:\n{validated.stderr}"
    objects = [entry["object"] for entry in json.loads(validated.stdout)]
    print(f"{len(objects)} objects in {len(files)} files valid against the Kubernetes schemas")

    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    for kind in ("Job", "Service", "Deployment", "ConfigMap", "Secret"):
        assert len(by_kind.get(kind, [])) == 1, f"expected one {kind}: {by_kind.get(kind)}"
    job, service, deployment = by_kind["Job"][0], by_kind["Service"][0], by_kind["Deployment"][0]
    configmap, secret = by_kind["ConfigMap"][0], by_kind["Secret"][0]

    version = re.search(r"project\(stampede VERSION ([0-9.]+)",
                        open(os.path.join(source, "CMakeLists.txt")).read()).group(1)
    tmp = tempfile.mkdtemp(prefix="stampede-k8s-")
    try:
        root = os.path.join(tmp, "root")
        pkglib.run(["bash", os.path.join(source, "deploy", "collect-libs.sh"), root,
                    os.path.join(build, "bin", "master"), os.path.join(build, "bin", "worker")])
        built = {"/usr/bin/stampede-master": os.path.join(build, "bin", "master"),
                 "/usr/bin/stampede-worker": os.path.join(build, "bin", "worker")}
        master = check_container(job, "/usr/bin/stampede-master", version, root, built)
        worker = check_container(deployment, "/usr/bin/stampede-worker", version, root, built)
        check_wiring(job, service, deployment, configmap, secret, master, worker)
        check_scenario(configmap, built["/usr/bin/stampede-master"], tmp)
        rehearse(master, worker, deployment["spec"]["replicas"], configmap, built, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("test_k8s: 1 passed, 0 failed")


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def flags(args):
    """{--name: value or None} of an argument list written --name=value."""
    out = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            out[name] = value or None
    return out


def check_container(obj, path, version, root, built):
    containers = pod_spec(obj)["containers"]
    assert len(containers) == 1, containers
    container = containers[0]
    label = f"{obj['kind']} {obj['metadata']['name']}"
    assert container["image"] == f"stampede:{version}", \
        f"{label}: image {container['image']}, but deploy/build-image.sh tags stampede:{version}"
    assert container["command"] == [path], f"{label}: command {container['command']}"
    assert os.path.isfile(os.path.join(root, path.lstrip("/"))), \
        f"{label}: {path} is not in the image's root (deploy/collect-libs.sh)"
    binary = built[path]
    help_text = pkglib.run([binary, "--help"]).stdout
    args = container["args"]
    for name in flags(args):
        assert re.search(rf"(^|\s){re.escape(name)}\b", help_text), \
            f"{label}: {name} is not an option of {path} (--help)"
    # The binary parses the whole list; --help then exits 0 before anything runs.
    parsed = subprocess.run([binary, *args, "--help"], capture_output=True, text=True)
    assert parsed.returncode == 0, f"{label}: {path} refuses its args: {parsed.stderr}"
    requests = container.get("resources", {}).get("requests", {})
    assert "cpu" in requests and "memory" in requests, f"{label}: no resource requests"
    assert pod_spec(obj)["securityContext"]["runAsNonRoot"] is True, label
    return container


def mounted_file(spec, container, path, label):
    """The (volume, key) that provides file `path` in `container`, from a mount + items."""
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            source = volume.get("secret") or volume.get("configMap")
            relative = path[len(prefix):]
            items = source.get("items")
            if items is None:
                return volume, relative
            for item in items:
                if item["path"] == relative:
                    return volume, item["key"]
            raise AssertionError(f"{label}: {path}: the volume {volume['name']} has no such item")
    raise AssertionError(f"{label}: {path} is on no mounted volume")


def check_wiring(job, service, deployment, configmap, secret, master, worker):
    master_flags, worker_flags = flags(master["args"]), flags(worker["args"])
    listen = re.fullmatch(r"tcp://0\.0\.0\.0:(\d+)", master_flags["--listen"] or "")
    assert listen, f"master --listen {master_flags.get('--listen')}: expected tcp://0.0.0.0:PORT"
    port = int(listen.group(1))
    ports = {p["name"]: p["containerPort"] for p in master.get("ports", [])}
    [service_port] = service["spec"]["ports"]
    assert ports.get(service_port["targetPort"]) == port, (ports, service_port)
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), \
        f"the Service selects {service['spec']['selector']}, the master pod has {labels}"
    expected_dial = f"tcp://{service['metadata']['name']}:{service_port['port']}"
    assert worker_flags.get("--master") == expected_dial, \
        f"workers dial {worker_flags.get('--master')}, the master's Service is {expected_dial}"
    expect = int(master_flags["--expect-workers"])
    assert deployment["spec"]["replicas"] == expect, \
        f"replicas {deployment['spec']['replicas']} != --expect-workers {expect}"

    # Keys: the master's secret half only in the master; the worker gets master.pub.
    volume, key = mounted_file(pod_spec(job), master, master_flags["--key"], "master --key")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"] and key == "master.key"
    volume, key = mounted_file(pod_spec(deployment), worker, worker_flags["--master-key"],
                               "worker --master-key")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"] and key == "master.pub"
    worker_secret_keys = {item["key"] for v in pod_spec(deployment)["volumes"] if "secret" in v
                          for item in v["secret"].get("items", [{"key": "*all*"}])}
    assert worker_secret_keys == {"master.pub"}, f"the worker mounts {worker_secret_keys}"
    assert set(secret.get("stringData", secret.get("data", {}))) == {"master.key", "master.pub"}

    scenario_args = [a for a in master["args"] if not a.startswith("-")]
    assert len(scenario_args) == 1, master["args"]
    volume, key = mounted_file(pod_spec(job), master, scenario_args[0], "master scenario")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"], volume
    assert key in configmap["data"], (key, list(configmap["data"]))

    anti = pod_spec(deployment)["affinity"]["podAntiAffinity"]
    terms = [t.get("podAffinityTerm", t) for t in
             anti.get("preferredDuringSchedulingIgnoredDuringExecution", []) +
             anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])]
    worker_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert any(t["topologyKey"] == "kubernetes.io/hostname" and all(
        worker_labels.get(k) == v for k, v in t["labelSelector"]["matchLabels"].items())
        for t in terms), f"no anti-affinity that spreads the workers over nodes: {anti}"
    print(f"reverse mode wired: master --listen :{port}, Service "
          f"{service['metadata']['name']}:{service_port['port']}, {expect} workers dial it")


def check_scenario(configmap, master_binary, tmp):
    for name, text in configmap["data"].items():
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(text)
        # The target is replaced so that the dry run resolves no name and sends nothing.
        pkglib.run([master_binary, "--dry-run", "--quiet", "--set",
                    "target=http://127.0.0.1:9", path])
        print(f"ConfigMap {name}: master --dry-run accepts it")


def rehearse(master, worker, replicas, configmap, built, tmp):
    keys = os.path.join(tmp, "keys")
    pkglib.run([built["/usr/bin/stampede-master"], "keygen", "--out", keys])
    [(name, text)] = configmap["data"].items()
    scenario = os.path.join(tmp, "rehearsal-" + name)
    with open(scenario, "w") as f:
        f.write(text)
    port = pkglib.lib.free_port()
    local = {"--listen": f"tcp://127.0.0.1:{port}", "--key": f"{keys}/master.key",
             "--out": os.path.join(tmp, "out"), "--master": f"tcp://127.0.0.1:{port}",
             "--master-key": f"{keys}/master.pub", "--allow-target": "127.0.0.1/32"}

    def localise(args):
        out = []
        for arg in args:
            name, _, _ = arg.partition("=")
            if arg.startswith("--") and name in local:
                out.append(f"{name}={local[name]}")
            elif not arg.startswith("-"):
                out.append(scenario)
            else:
                out.append(arg)
        return out

    workers = []
    log = os.path.join(tmp, "workers.log")
    try:
        with open(log, "w") as err:
            for _ in range(replicas):
                workers.append(subprocess.Popen(
                    [built["/usr/bin/stampede-worker"], *localise(worker["args"]),
                     "--threads=1"], stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                    start_new_session=True))
        args = [*localise(master["args"]), "--dry-run", "--set=target=http://127.0.0.1:9"]
        result = subprocess.run([built["/usr/bin/stampede-master"], *args], capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
        context = (f"master {args}: exit {result.returncode}\n{result.stdout[-2000:]}\n"
                   f"{result.stderr[-2000:]}\n--- workers\n{open(log).read()[-2000:]}")
        assert result.returncode == 0, context
        rows = [line for line in result.stdout.splitlines()
                if re.match(r"\s*\d+\s+dialled-in-\d+\s", line)]
        assert len(rows) == replicas, f"expected {replicas} workers in the plan\n{context}"
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
            proc.wait(timeout=10)
    print(f"rehearsal on 127.0.0.1: the Job's master and {replicas} workers with the "
          f"Deployment's args joined (CURVE) and planned the run")


if __name__ == "__main__":
    main()
