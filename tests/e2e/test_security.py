"""End to end, the secure control plane (issue 5): CURVE keys made by `keygen`, a worker that
serves only the master holding the right key (and a master that accepts only listed worker keys),
a worker that will not listen on a non-loopback address without keys, `--allow-target`, and a
worker that survives 10,000 hostile frames on its control port and then serves a normal run.

Everything stays on 127.0.0.0/8, except that a worker binds 0.0.0.0 for a moment (nothing is
sent to it). Set STAMPEDE_FUZZ_SEED to replay a fuzz run."""

import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def scenario(url, users=2, duration="1s", name="e2e-security", path="/"):
    return lib.one_get_scenario(url, users, duration, name, path=path)


class SecurityTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def keys(self, name="keys"):
        return lib.make_keys(os.path.join(self.tmp, name))

    def run_ok(self, server, ws, master_args, name, duration="1s"):
        """A run that must pass: its totals must equal the lines nginx logged meanwhile."""
        before = lib.count_access_log_lines(server.access_log)
        path = lib.write_scenario(self.tmp, scenario(server.url, duration=duration, name=name),
                                  name=f"{name}.yaml")
        rc, out, err = lib.run_master([*master_args, "--workers", ws.hosts_file,
                                       "--out", self.out(name), "--quiet", path], timeout=30)
        context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        lines = lib.wait_access_log_stable(server.access_log) - before
        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        report = lib.load_report(self.out(name))
        self.assertEqual(report["outcome"], "passed", report)
        self.assertEqual(report["totals"]["errors"], 0, report["totals"])
        self.assertGreater(report["totals"]["requests"], 0, report["totals"])
        self.assertEqual(report["totals"]["requests"], lines,
                         f"totals.requests != nginx access-log lines\n{context}")
        self.assertEqual([w["state"] for w in report["workers"]], ["done"] * len(ws),
                         report["workers"])
        return report

    def run_refused(self, server, ws, master_args, hosts_file=None, expect="handshake refused"):
        """A run that must be refused at the handshake: exit 3 quickly, one line naming the
        worker, not one request at the target, and the worker still up."""
        path = lib.write_scenario(self.tmp, scenario(server.url, name="e2e-refused"),
                                  name="refused.yaml")
        started = time.monotonic()
        rc, out, err = lib.run_master([*master_args, "--workers", hosts_file or ws.hosts_file,
                                       "--quiet", path], timeout=30)
        elapsed = time.monotonic() - started
        context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        self.assertEqual(rc, 3, context)
        lib.assert_no_crash(self, err, context)
        self.assertLess(elapsed, 2.5, f"a refused handshake should fail fast\n{context}")
        lines = [line for line in err.splitlines()
                 if ws[0].address in line and expect in line]
        self.assertTrue(lines, f"stderr should name {ws[0].address} and say {expect!r}\n{context}")
        time.sleep(0.3)
        self.assertEqual(lib.count_access_log_lines(server.access_log), 0,
                         f"the target saw requests from a refused run\n{context}")
        self.assertTrue(ws[0].alive(), f"the worker died\n{context}")
        return err

    # ----------------------------------------------------------------------------------------

    def test_keygen_writes_a_key_pair_and_refuses_to_overwrite_it(self):
        keys_dir = os.path.join(self.tmp, "keys")
        for program in ("master", "worker"):
            rc, out, err = lib.keygen(program, keys_dir)
            self.assertEqual(rc, 0, f"{program} keygen: {out}{err}")
            secret = os.path.join(keys_dir, f"{program}.key")
            public = os.path.join(keys_dir, f"{program}.pub")
            self.assertEqual(stat.S_IMODE(os.stat(secret).st_mode), 0o600, secret)
            self.assertEqual(stat.S_IMODE(os.stat(public).st_mode), 0o644, public)
            lib.read_key(secret)
            lib.read_key(public)
        self.assertNotEqual(lib.read_key(os.path.join(keys_dir, "master.pub")),
                            lib.read_key(os.path.join(keys_dir, "worker.pub")))

        def contents():
            return {name: read(os.path.join(keys_dir, name))
                    for name in ("master.key", "master.pub")}

        first = contents()
        rc, out, err = lib.keygen("master", keys_dir)
        self.assertEqual(rc, 2, f"a second keygen without --force must refuse\n{out}{err}")
        self.assertIn("--force", err)
        self.assertEqual(err.strip().count("\n"), 0, f"one line expected: {err!r}")
        self.assertEqual(contents(), first, "a refused keygen changed the key files")

        rc, out, err = lib.keygen("master", keys_dir, force=True)
        self.assertEqual(rc, 0, out + err)
        second = contents()
        self.assertNotEqual(second["master.key"], first["master.key"])
        self.assertNotEqual(second["master.pub"], first["master.pub"])
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(keys_dir, "master.key")).st_mode),
                         0o600)

        # --name: another pair next to the first.
        rc, out, err = lib.keygen("worker", keys_dir, name="loadgen-2")
        self.assertEqual(rc, 0, out + err)
        self.assertTrue(os.path.exists(os.path.join(keys_dir, "loadgen-2.key")))
        self.assertTrue(os.path.exists(os.path.join(keys_dir, "loadgen-2.pub")))

    def test_right_keys_run_completes(self):
        keys = self.keys()
        with lib.nginx() as server, lib.workers(1, extra_args=keys.worker_args) as ws:
            # Master key, worker key, and --worker-keys DIR holding the worker's public key.
            self.run_ok(server, ws, ["--key", keys.master_key,
                                     "--worker-keys", keys.worker_keys_dir], "with-dir")
            # Only the master key: the worker checks the master's, the master checks nothing.
            self.run_ok(server, ws, ["--key", keys.master_key], "master-key-only")
            # The same worker authenticated by `key=` in the hosts file instead.
            ws.hosts_file = ws.write_hosts([f"{ws[0].address} key={keys.worker_public()}"],
                                           name="hosts-keyed.txt")
            self.run_ok(server, ws, ["--key", keys.master_key], "with-hosts-key")
            self.assertNotIn("refused peer", ws[0].stderr())

    def test_wrong_or_missing_master_key_is_refused_and_the_worker_keeps_serving(self):
        keys = self.keys()
        other = self.keys("other-keys")
        with lib.nginx() as server, lib.workers(1, extra_args=keys.worker_args) as ws:
            with self.subTest("wrong master key"):
                self.run_refused(server, ws, ["--key", other.master_key])
            with self.subTest("no key on the master"):
                self.run_refused(server, ws, [])
            log = ws[0].stderr()
            self.assertIn("refused peer", log, "the worker should log the refused peers")
            self.assertNotIn("serving master", log,
                             "a refused master got through to the worker's session")
            # Still serving: the right master runs at once.
            self.run_ok(server, ws, ["--key", keys.master_key], "after-refusals")

    def test_worker_key_not_allowed_by_the_master_is_refused(self):
        keys = self.keys()
        other = self.keys("other-keys")
        with lib.nginx() as server, lib.workers(1, extra_args=keys.worker_args) as ws:
            with self.subTest("--worker-keys without this worker's key"):
                self.run_refused(server, ws, ["--key", keys.master_key,
                                              "--worker-keys", other.worker_keys_dir],
                                 expect="not among the accepted worker keys")
            with self.subTest("hosts.txt key= of another worker"):
                hosts = ws.write_hosts([f"{ws[0].address} key={other.worker_public()}"],
                                       name="hosts-other-key.txt")
                self.run_refused(server, ws, ["--key", keys.master_key], hosts_file=hosts,
                                 expect="not among the accepted worker keys")
            with self.subTest("a refused worker hears nothing from the master"):
                # The master's ZAP handler refused this worker's key: no message of the master
                # (not even a Probe or the Stop it sends on its way out) may reach it.
                time.sleep(0.5)
                self.assertNotIn("serving master", ws[0].stderr(),
                                 "the worker received messages from a master that refused its "
                                 "key (the handshake completed after all)\n" + ws.stderr())
            self.run_ok(server, ws, ["--key", keys.master_key,
                                     "--worker-keys", keys.worker_keys_dir], "allowed-again")

    def test_non_loopback_listen_needs_keys(self):
        keys = self.keys()
        port = lib.free_port_any()
        proc = subprocess.run([lib.binary("worker"), "--listen", f"tcp://0.0.0.0:{port}"],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=10)
        context = lib.describe(proc.returncode, proc.stdout, proc.stderr)
        self.assertEqual(proc.returncode, 2, context)
        message = proc.stderr.strip()
        self.assertEqual(message.count("\n"), 0, f"one line expected\n{context}")
        self.assertIn("keygen", message, context)
        self.assertIn("--insecure", message, context)
        self.assertIn(f"0.0.0.0:{port}", message, context)
        self.assertTrue(lib.port_is_free(port), f"something listens on {port} after the refusal")
        with self.assertRaises(OSError):
            socket.create_connection((lib.LOOPBACK, port), timeout=1).close()

        # With the master's public key (or --insecure) it starts; nothing is sent to it.
        for extra in (["--master-key", keys.master_pub], keys.worker_args, ["--insecure"]):
            port = lib.free_port_any()
            log = os.path.join(self.tmp, f"worker-{port}.log")
            worker = lib.start_worker_process(
                ["--listen", f"tcp://0.0.0.0:{port}", "--threads", 1, *extra], log)
            try:
                deadline = time.monotonic() + 5
                while "listening on" not in read(log) and time.monotonic() < deadline:
                    if worker.poll() is not None:
                        break
                    time.sleep(0.02)
                text = read(log)
                self.assertIsNone(worker.poll(), f"worker {extra} exited:\n{text}")
                self.assertIn(f"listening on tcp://0.0.0.0:{port}", text)
                self.assertFalse(lib.port_is_free(port), f"worker {extra} does not listen")
            finally:
                worker.send_signal(signal.SIGTERM)
                rc = worker.wait(timeout=10)
            self.assertEqual(rc, 0, read(log))

        # A key file that holds no key is a usage error.
        bad = os.path.join(self.tmp, "bad.pub")
        with open(bad, "w") as f:
            f.write("not a key\n")
        proc = subprocess.run([lib.binary("worker"), "--listen", f"tcp://127.0.0.1:{port}",
                               "--master-key", bad], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=10)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn("bad.pub", proc.stderr)

    def test_allow_target_refuses_other_targets_before_any_request(self):
        with lib.nginx() as server, lib.fault_target_at("127.0.0.2") as elsewhere, \
                lib.workers(1, extra_args=["--allow-target", "127.0.0.1/32"]) as ws:
            path = lib.write_scenario(self.tmp, scenario(elsewhere.url, path="/ok",
                                                         name="e2e-elsewhere"))
            started = time.monotonic()
            rc, out, err = lib.run_master(["--workers", ws.hosts_file, "--quiet", path],
                                          timeout=30)
            elapsed = time.monotonic() - started
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            self.assertEqual(rc, 3, context)
            lib.assert_no_crash(self, err, context)
            self.assertLess(elapsed, 5, context)
            refusals = [line for line in err.splitlines()
                        if ws[0].address in line and "--allow-target" in line]
            self.assertTrue(refusals, f"stderr should name {ws[0].address} and mention "
                                      f"--allow-target\n{context}")
            self.assertIn("127.0.0.2", refusals[0], context)
            time.sleep(0.3)
            self.assertEqual(elsewhere.count(), 0, f"127.0.0.2 saw requests\n{context}")
            self.assertEqual(elsewhere.log_entries(), [], context)
            self.assertIn("refused a scenario", ws[0].stderr())
            self.assertTrue(ws[0].alive(), context)

            # The same worker, a target inside --allow-target: fine.
            self.run_ok(server, ws, [], "allowed-target")
            self.assertEqual(elsewhere.count(), 0)

    def test_fuzzed_control_port_then_a_normal_run(self):
        seed = int(os.environ.get("STAMPEDE_FUZZ_SEED", random.randrange(1, 2**31)))
        with lib.nginx() as server, lib.workers(1) as ws:
            started = time.monotonic()
            proc = subprocess.run(
                [lib.binary("control_fuzz"), "--endpoint", f"tcp://{ws[0].address}",
                 "--count", "10000", "--seed", str(seed)],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                timeout=60)
            elapsed = time.monotonic() - started
            context = (f"control_fuzz seed {seed} (replay with STAMPEDE_FUZZ_SEED={seed})\n" +
                       lib.describe(proc.returncode, proc.stdout, proc.stderr) + "\n" +
                       ws.stderr())
            print(f"\n  control_fuzz: 10000 messages, seed {seed}, {elapsed:.1f}s")
            self.assertTrue(ws[0].alive(), f"the worker died under fuzzing\n{context}")
            lib.assert_no_crash(self, ws[0].stderr(), context)
            self.assertEqual(proc.returncode, 0, context)
            self.assertRegex(proc.stdout, r"control_fuzz: 100\d\d messages", context)
            self.assertIn("answered Hello", proc.stdout, context)
            self.assertLess(elapsed, 30, context)
            self.assertEqual(lib.count_access_log_lines(server.access_log), 0,
                             "fuzzing made the worker send requests")

            report = self.run_ok(server, ws, [], "after-fuzz", duration="2s")
            self.assertEqual(report["control_messages_dropped"], 0, report)
            self.assertTrue(ws[0].alive(), ws.stderr())

    def test_hostile_bytes_at_a_keyed_worker(self):
        # Garbage and foreign handshakes (NULL, PLAIN, damaged CURVE greetings) at a worker that
        # wants keys: each is refused, and the right master is served afterwards.
        keys = self.keys()
        with lib.nginx() as server, lib.workers(1, extra_args=keys.worker_args) as ws:
            proc = subprocess.run(
                [lib.binary("control_fuzz"), "--endpoint", f"tcp://{ws[0].address}",
                 "--count", "300", "--seed", "5", "--no-oversize", "--no-check"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                timeout=30)
            context = lib.describe(proc.returncode, proc.stdout, proc.stderr) + ws.stderr()
            self.assertEqual(proc.returncode, 0, context)
            self.assertTrue(ws[0].alive(), context)
            self.assertIn("refused peer", ws[0].stderr(), context)
            self.assertNotIn("serving master", ws[0].stderr(), context)
            self.run_ok(server, ws, ["--key", keys.master_key], "keyed-after-fuzz")

    def test_refusal_reasons_are_valid_utf8(self):
        # Found by control_fuzz: a Refused reason must reach the master intact. A string field
        # holding invalid UTF-8 does not parse on the other side (proto3), so the master would
        # drop the refusal and wait for its deadline instead of printing why.
        with lib.workers(1) as ws:
            peer = lib.ZmtpDealer(ws[0].port)
            try:
                peer.send(lib.pb_envelope("probe", lib.pb_field(1, 1), seq=1))
                welcome = lib.pb_field(1, 0) + lib.pb_field(2, 1) + lib.pb_field(4, 3000)
                peer.send(lib.pb_envelope("welcome", welcome, run_id=7, seq=2))
                # Valid UTF-8 whose 60-byte cut in an error message falls inside a character.
                yaml = ("name: u\ntarget: http://127.0.0.1:9\n"
                        "load: {users: 1, duration: \"a" + "\u00e9" * 40 + "\"}\n"
                        "flows: [{name: f, steps: [{get: /}]}]\n")
                prepare = lib.pb_field(1, yaml) + lib.pb_field(2, "u.yaml") + lib.pb_field(4, 1)
                peer.send(lib.pb_envelope("prepare", prepare, run_id=7, seq=3))
                reason = None
                deadline = time.monotonic() + 5
                while reason is None and time.monotonic() < deadline:
                    frames = peer.recv(timeout=1)
                    if frames:
                        name, body = lib.pb_body(frames[-1])
                        if name == "refused":
                            reason = body.get(1, [b""])[0]
                peer.send(lib.pb_envelope("stop", b"", run_id=7, seq=4))
            finally:
                peer.close()
            self.assertIsNotNone(reason, "no Refused for an invalid scenario\n" + ws.stderr())
            self.assertIn(b"load.duration", reason)
            try:
                reason.decode("utf-8")
            except UnicodeDecodeError as e:
                self.fail(f"the worker's Refused reason is not valid UTF-8 ({e}): {reason!r}")
            self.assertNotIn("libprotobuf ERROR", ws[0].stderr())


if __name__ == "__main__":
    unittest.main()
