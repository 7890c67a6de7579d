"""End to end, multi-host (issue 3): one worker per network namespace, master in the root
namespace, all over veth links created by this test; then one link is cut mid-run and the master
reports that worker lost.

Topology (a /28 of 10.231.0.0/16 chosen from the pid, checked to be unused; BASE = its first
address):

    root namespace                                   namespace stp<pid>a / stp<pid>b
    stp<pid>ar  BASE+1/30  <-- veth -->  stp<pid>an  BASE+2/30   worker --listen BASE+2:7700
    stp<pid>br  BASE+5/30  <-- veth -->  stp<pid>bn  BASE+6/30   worker --listen BASE+6:7700
    BASE+9/32 on stp<pid>br: fault_target (the scenario's one target URL)

Each namespace routes BASE+9/32 via its veth peer; the root namespace owns that address, so the
kernel delivers to it whichever veth a packet came in on (no forwarding, no ip_forward). Cutting
link a (`ip link set stp<pid>ar down`) therefore leaves the target reachable from namespace b.

Nothing is sent to any address outside 127.0.0.0/8 and the addresses created here. Every
process, namespace and veth is removed at the end, also on failure. Where namespaces cannot be
created (not root, no iproute2, no permission), the tests are skipped, not failed.
"""

import http.client
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

HEARTBEAT_TIMEOUT_S = 3.0   # the master's default --heartbeat-timeout
WORKER_PORT = 7700
SUPERNET = ipaddress.ip_network("10.231.0.0/16")


def _ip(*args, check=True, netns=None):
    """Run `ip ARGS` (inside `netns` when given): CompletedProcess; raises on failure if check."""
    cmd = ["ip"] + (["netns", "exec", netns, "ip"] if netns else []) + [str(a) for a in args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()}")
    return result


def _used_ipv4_networks():
    out = _ip("-4", "-o", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all",
                                                          check=False).stdout
    nets = []
    for token in out.split():
        try:
            nets.append(ipaddress.ip_network(token, strict=False))
        except ValueError:
            pass
    return nets


def _pick_block():
    """A /28 of 10.231.0.0/16 that no address or route on this host overlaps (pid-based start,
    so that concurrent runs of this file pick different blocks)."""
    used = [n for n in _used_ipv4_networks() if n.version == 4 and n != ipaddress.ip_network(
        "0.0.0.0/0")]
    blocks = list(SUPERNET.subnets(new_prefix=28))
    start = os.getpid() % len(blocks)
    for i in range(len(blocks)):
        block = blocks[(start + i) % len(blocks)]
        if not any(block.overlaps(n) for n in used):
            return block
    raise RuntimeError("no free /28 in 10.231.0.0/16")


class NetnsLab:
    """Two namespaces, each with a veth link to the root namespace, and a shared target address.

    `.create()` builds it, `.destroy()` removes every namespace and veth it created (and is
    safe to call after a partial create)."""

    def __init__(self):
        pid = os.getpid()
        self.names = [f"stp{pid}a", f"stp{pid}b"]
        self.root_links = [f"{n}r" for n in self.names]
        self.ns_links = [f"{n}n" for n in self.names]
        self.block = None
        self.root_addrs = []
        self.ns_addrs = []
        self.target_addr = None
        self.created_ns = []
        self.created_links = []

    def create(self):
        self.block = _pick_block()
        base = self.block.network_address
        self.root_addrs = [str(base + 1), str(base + 5)]
        self.ns_addrs = [str(base + 2), str(base + 6)]
        self.target_addr = str(base + 9)
        for i, ns in enumerate(self.names):
            _ip("netns", "add", ns)
            self.created_ns.append(ns)
            _ip("link", "set", "lo", "up", netns=ns)
            _ip("link", "add", self.root_links[i], "type", "veth", "peer", "name",
                self.ns_links[i])
            self.created_links.append(self.root_links[i])
            _ip("link", "set", self.ns_links[i], "netns", ns)
            for path in (f"/proc/sys/net/ipv6/conf/{self.root_links[i]}/disable_ipv6",):
                try:
                    with open(path, "w") as f:   # keep the links IPv4-only (best effort)
                        f.write("1\n")
                except OSError:
                    pass
            _ip("addr", "add", f"{self.root_addrs[i]}/30", "dev", self.root_links[i])
            _ip("link", "set", self.root_links[i], "up")
            _ip("addr", "add", f"{self.ns_addrs[i]}/30", "dev", self.ns_links[i], netns=ns)
            _ip("link", "set", self.ns_links[i], "up", netns=ns)
            _ip("route", "add", f"{self.target_addr}/32", "via", self.root_addrs[i], netns=ns)
        # The target's address lives on link b's root side: link a is the one a test cuts.
        _ip("addr", "add", f"{self.target_addr}/32", "dev", self.root_links[1])

    def cut(self, i):
        """Take link i down on the root side: time.monotonic() of the cut."""
        at = time.monotonic()
        _ip("link", "set", self.root_links[i], "down")
        return at

    def destroy(self):
        problems = []
        for link in self.created_links:
            r = _ip("link", "del", link, check=False)
            if r.returncode != 0 and "Cannot find device" not in r.stderr:
                problems.append(f"ip link del {link}: {r.stderr.strip()}")
        self.created_links = []
        for ns in self.created_ns:
            r = _ip("netns", "del", ns, check=False)
            if r.returncode != 0:
                problems.append(f"ip netns del {ns}: {r.stderr.strip()}")
        self.created_ns = []
        if problems:
            raise AssertionError("cleanup failed: " + "; ".join(problems))

    def leftovers(self):
        """Namespaces or links of this lab still present (should be none after destroy)."""
        ns_list = _ip("netns", "list", check=False).stdout
        links = _ip("-o", "link", "show", check=False).stdout
        return ([n for n in self.names if n in ns_list.split()] +
                [l for l in self.root_links if f" {l}@" in links or f" {l}:" in links])


def _skip_reason():
    if os.geteuid() != 0:
        return "network namespaces need root (run as root to include the multi-host tests)"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"stp{os.getpid()}p"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return f"cannot create a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    veth = f"stp{os.getpid()}v"
    r = subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return f"cannot create a veth pair here: {r.stderr.strip()}"
    subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=10)
    return None


class MultiHostTest(lib.TempDirTestCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = _skip_reason()
        if reason:
            raise unittest.SkipTest(f"multi-host tests skipped: {reason}")

    def setUp(self):
        super().setUp()
        self.lab = NetnsLab()
        self.addCleanup(self._destroy_lab)   # runs after the process cleanups registered later
        try:
            self.lab.create()
        except RuntimeError as e:
            if "Operation not permitted" in str(e) or "Permission denied" in str(e):
                raise unittest.SkipTest(f"multi-host tests skipped: {e}")
            raise
        self.target_port = None
        self._start_target()
        self.workers = [self._start_worker(i) for i in range(2)]
        self.hosts_file = os.path.join(self.tmp, "hosts.txt")
        with open(self.hosts_file, "w") as f:
            f.write("# one worker per network namespace\n")
            for addr in self.lab.ns_addrs:
                f.write(f"{addr}:{WORKER_PORT}\n")

    def _destroy_lab(self):
        self.lab.destroy()
        left = self.lab.leftovers()
        self.assertEqual(left, [], f"left behind: {left}")

    # -- processes ---------------------------------------------------------------------------

    def _stop(self, proc, label):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def _start_target(self):
        workdir = os.path.join(self.tmp, "target")
        os.makedirs(workdir)
        port_file = os.path.join(workdir, "port")
        self.target_log = os.path.join(workdir, "requests.log")
        stderr_path = os.path.join(workdir, "stderr")
        with open(stderr_path, "w") as err:
            proc = subprocess.Popen(
                [lib.binary("fault_target"), "--host", self.lab.target_addr, "--port", "0",
                 "--log", self.target_log, "--port-file", port_file],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        self.addCleanup(self._stop, proc, "fault_target")
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if proc.poll() is not None or time.monotonic() > deadline:
                with open(stderr_path) as f:
                    raise AssertionError(f"fault_target did not start on "
                                         f"{self.lab.target_addr}:\n{f.read()}")
            time.sleep(0.02)
        time.sleep(0.05)
        with open(port_file) as f:
            self.target_port = int(f.read().strip())
        self.target_url = f"http://{self.lab.target_addr}:{self.target_port}"

    def target_count(self):
        conn = http.client.HTTPConnection(self.lab.target_addr, self.target_port, timeout=5)
        try:
            conn.request("GET", "/count")
            response = conn.getresponse()
            body = response.read().decode()
            self.assertEqual(response.status, 200, body)
            return int(body.strip())
        finally:
            conn.close()

    def _start_worker(self, i):
        ns = self.lab.names[i]
        endpoint = f"tcp://{self.lab.ns_addrs[i]}:{WORKER_PORT}"
        stderr_path = os.path.join(self.tmp, f"worker-{ns}.log")
        with open(stderr_path, "w") as err:
            # `ip netns exec` execs the worker in place: the Popen's pid is the worker's.
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, lib.binary("worker"), "--listen", endpoint,
                 "--insecure", "--threads", "1"],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        self.addCleanup(self._stop, proc, f"worker in {ns}")
        deadline = time.monotonic() + 10
        while True:
            with open(stderr_path) as f:
                text = f.read()
            if "listening on" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker in {ns} did not start ({endpoint}):\n{text}")
            time.sleep(0.02)
        return lib.WorkerDaemon(proc, WORKER_PORT, stderr_path)

    def workers_log(self):
        return "\n".join(f"--- worker in {ns} ({addr}) rc={w.proc.poll()}\n{w.stderr()[-2000:]}"
                         for ns, addr, w in zip(self.lab.names, self.lab.ns_addrs, self.workers))

    def scenario(self, duration, on_worker_lost="halt", name="e2e-multihost"):
        return (f"name: {name}\n"
                f"target: {self.target_url}\n"
                f"load:\n  users: 4\n  duration: {duration}\n"
                f"halt:\n  on_worker_lost: {on_worker_lost}\n"
                f"flows:\n"
                f"  - name: main\n"
                f"    think: 10ms\n"
                f"    steps:\n"
                f"      - get: \"/ok?w={{{{worker_index}}}}\"\n"
                f"        name: ok\n")

    # -- tests -------------------------------------------------------------------------------

    def test_one_worker_per_namespace_exact_totals(self):
        duration_s = 4
        path = lib.write_scenario(self.tmp, self.scenario(f"{duration_s}s"))
        out_dir = os.path.join(self.tmp, "out")
        before = self.target_count()
        started = time.monotonic()
        rc, out, err = lib.run_master(["--workers", self.hosts_file, "--out", out_dir, "--quiet",
                                       path], timeout=30)
        elapsed = time.monotonic() - started
        time.sleep(0.1)
        after = self.target_count()
        context = lib.describe(rc, out, err) + "\n" + self.workers_log()
        print(f"\n  2 namespaces: exit {rc} after {elapsed:.1f}s, target saw {after - before}")

        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["outcome"], "passed", report)
        self.assertGreaterEqual(report["duration_s"], duration_s - 0.1, report)
        workers = {w["address"]: w for w in report["workers"]}
        self.assertEqual(set(workers), {f"{a}:{WORKER_PORT}" for a in self.lab.ns_addrs},
                         report["workers"])
        for w in workers.values():
            self.assertEqual(w["state"], "done", w)
            self.assertEqual(w["users"], 2, w)
            self.assertGreater(w["requests"], 0, w)
            self.assertEqual(w["errors"], 0, w)
        totals = report["totals"]
        self.assertEqual(totals["errors"], 0, totals)
        self.assertEqual(sum(w["requests"] for w in workers.values()), totals["requests"],
                         report["workers"])
        self.assertEqual(after - before, totals["requests"], (after - before, totals))
        # Each worker's requests, as the target logged them (worker index in the query).
        with open(self.target_log) as f:
            targets = [line.split()[3] for line in f if len(line.split()) >= 5]
        for w in workers.values():
            self.assertEqual(sum(1 for t in targets if t.endswith(f"w={w['id']}")),
                             w["requests"], w)

    def test_cut_link_is_a_lost_worker(self):
        cut_after_s = 1.5
        duration_s = 10
        path = lib.write_scenario(self.tmp, self.scenario(f"{duration_s}s", on_worker_lost="halt",
                                                          name="e2e-multihost-cut"))
        out_dir = os.path.join(self.tmp, "out")
        rc, out, err, cut, ended = lib.run_master_and_act(
            ["--workers", self.hosts_file, "--out", out_dir, "--quiet", path], self.tmp,
            cut_after_s, lambda: self.lab.cut(0), duration_s + 15, "the cut")
        context = lib.describe(rc, out, err) + "\n" + self.workers_log()
        detected = ended - cut
        lost_address = f"{self.lab.ns_addrs[0]}:{WORKER_PORT}"
        kept_address = f"{self.lab.ns_addrs[1]}:{WORKER_PORT}"
        print(f"\n  link to {self.lab.names[0]} cut: master exited {detected:.2f}s after the cut")

        self.assertIsNotNone(rc, f"master did not exit\n{context}")
        self.assertEqual(rc, 3, context)
        lib.assert_no_crash(self, err, context)
        # Lost within the heartbeat timeout (+1 s slack), not before one could tell.
        self.assertLessEqual(detected, HEARTBEAT_TIMEOUT_S + 1.0, context)
        self.assertGreaterEqual(detected, HEARTBEAT_TIMEOUT_S - 1.1, context)
        self.assertIn(lost_address, err, context)
        self.assertIn("lost", err, context)
        report = lib.load_report(out_dir)
        lib.assert_halted(self, report, 3, "worker_lost")
        workers = {w["address"]: w for w in report["workers"]}
        self.assertEqual(set(workers), {lost_address, kept_address}, report["workers"])
        self.assertEqual(workers[lost_address]["state"], "lost", workers[lost_address])
        self.assertGreater(workers[lost_address]["requests"], 0, workers[lost_address])
        self.assertEqual(workers[kept_address]["state"], "done", workers[kept_address])
        self.assertGreater(workers[kept_address]["requests"], 0, workers[kept_address])
        self.assertEqual(sum(w["requests"] for w in workers.values()),
                         report["totals"]["requests"], report["workers"])
        self.assertLess(report["duration_s"], cut_after_s + HEARTBEAT_TIMEOUT_S + 2, report)
        for w in self.workers:
            self.assertTrue(w.alive(), f"a worker died\n{context}")


if __name__ == "__main__":
    unittest.main()
