"""End to end: bad scenarios and bad command lines are refused with exit 2, one clear line on
stderr (file:line:col where there is a location), no crash, and not a single request sent."""

import os
import re
import subprocess
import sys
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402


class BadInputTest(lib.TempDirTestCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # One target for every case: whatever any case sends shows up in its /count.
        cls._target_cm = lib.fault_target()
        cls.target = cls._target_cm.__enter__()

    @classmethod
    def tearDownClass(cls):
        cls._target_cm.__exit__(None, None, None)

    def setUp(self):
        super().setUp()
        self.out_dir = os.path.join(self.tmp, "out")

    def tearDown(self):
        self.assertEqual(self.target.count(), 0, "a refused run sent requests to the target")
        super().tearDown()

    def valid_scenario(self):
        return textwrap.dedent(f"""\
            name: bad-input
            target: {self.target.url}
            load:
              users: 2
              duration: 1s
            flows:
              - name: only
                steps:
                  - get: /ok
            """)

    def run_refused(self, args):
        rc, out, err = lib.run_master(args, timeout=30)
        context = lib.describe(rc, out, err)
        self.assertEqual(rc, 2, context)
        for marker in lib.CRASH_MARKERS:
            self.assertNotIn(marker, err, context)
        self.assertTrue(err.strip(), f"no message on stderr\n{context}")
        return err, context

    def assert_scenario_refused(self, path, line=None, col=None, also=()):
        """Refused with one stderr line naming the file; `line`/`col` when the error has a place."""
        err, context = self.run_refused(["--out", self.out_dir, path])
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, f"expected one line on stderr\n{context}")
        message = lines[0]
        name = os.path.basename(path)
        self.assertIn(name, message, context)
        if line is not None:
            match = re.search(re.escape(name) + r":(\d+):(\d+): ", message)
            self.assertIsNotNone(match, f"no {name}:line:col: in the message\n{context}")
            self.assertEqual(int(match.group(1)), line, f"line\n{context}")
            if col is not None:
                self.assertEqual(int(match.group(2)), col, f"column\n{context}")
        for text in also:
            self.assertIn(text, message, context)
        return message

    def test_missing_file(self):
        path = os.path.join(self.tmp, "no-such-scenario.yaml")
        self.assert_scenario_refused(path)

    def test_empty_file(self):
        path = lib.write_scenario(self.tmp, "", name="empty.yaml")
        self.assert_scenario_refused(path)

    def test_invalid_yaml(self):
        path = lib.write_scenario(self.tmp, textwrap.dedent(f"""\
            name: broken-yaml
            target: {self.target.url}
            load: {{users: 2, duration: 1s
            flows:
              - name: only
                steps:
                  - get: /ok
            """), name="invalid-yaml.yaml")
        err, context = self.run_refused(["--out", self.out_dir, path])
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, f"expected one line on stderr\n{context}")
        # The parser decides where it noticed the problem; it must give some line:col.
        self.assertRegex(lines[0], re.escape("invalid-yaml.yaml") + r":\d+:\d+: ", context)

    def test_unknown_key(self):
        text = self.valid_scenario().replace("  duration: 1s", "  duraton: 1s")
        path = lib.write_scenario(self.tmp, text, name="unknown-key.yaml")
        # Line 5, column 3 (1-based): the misspelt key.
        self.assert_scenario_refused(path, line=5, col=3, also=("duraton",))

    def test_wrong_type(self):
        text = self.valid_scenario().replace("  users: 2", "  users: many")
        path = lib.write_scenario(self.tmp, text, name="wrong-type.yaml")
        self.assert_scenario_refused(path, line=4, also=("load.users",))

    def test_wrong_type_deep_in_a_flow(self):
        text = self.valid_scenario() + "        expect: {status: ok}\n"
        path = lib.write_scenario(self.tmp, text, name="wrong-status.yaml")
        self.assert_scenario_refused(path, line=10, also=("flows[0].steps[0].expect.status",))

    def test_unknown_cli_flag(self):
        path = lib.write_scenario(self.tmp, self.valid_scenario(), name="valid.yaml")
        self.run_refused(["--no-such-flag", "--out", self.out_dir, path])

    def test_bad_cli_value(self):
        path = lib.write_scenario(self.tmp, self.valid_scenario(), name="valid.yaml")
        self.run_refused(["--threads", "lots", "--out", self.out_dir, path])

    def test_no_scenario_given(self):
        self.run_refused(["--out", self.out_dir])

    def assert_prompt(self, started, what):
        # Milliseconds when nothing is wrong; seconds of slack for a loaded machine. Today's
        # failures take gigabytes and many seconds, or never end.
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 5.0, f"{what} took {elapsed:.1f}s")

    def test_alias_bomb_in_a_json_body(self):
        # 30 levels of 10 aliases: 10^30 nodes once expanded, in 2 KB of YAML.
        lines = self.valid_scenario().splitlines()[:-1] + [
            "      - post: /ok", "        json:", "          a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"          a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
                  for i in range(1, 30)]
        text = "\n".join(lines) + "\n"
        path = lib.write_scenario(self.tmp, text, name="alias-bomb.yaml")
        self.assertLess(os.path.getsize(path), 4096)
        started = time.monotonic()
        # Aliases of a0..a3 repeat 12,330 nodes; each *a3 adds 11,111: the 8th on line 15 (a4),
        # at column 55, goes past 100,000.
        self.assert_scenario_refused(path, line=15, col=55,
                                     also=("aliases repeat more than 100000 nodes",))
        self.assert_prompt(started, "the alias bomb")

    def test_dev_zero_is_not_a_scenario(self):
        started = time.monotonic()
        message = self.assert_scenario_refused("/dev/zero", also=("not a file",))
        self.assertTrue(message.startswith("/dev/zero: "), message)
        self.assert_prompt(started, "/dev/zero")

    def test_endless_pipe_stops_at_the_size_limit(self):
        # A pipe is read (process substitution is handy), but only up to the limit.
        fifo = os.path.join(self.tmp, "endless.yaml")
        os.mkfifo(fifo)
        writer = subprocess.Popen(["sh", "-c", f"exec cat /dev/zero > '{fifo}'"],
                                  stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            started = time.monotonic()
            rc, out, err = lib.run_master(["--out", self.out_dir, fifo], timeout=30)
        finally:
            writer.kill()
            writer.wait()
        context = lib.describe(rc, out, err)
        self.assertEqual(rc, 2, context)
        self.assertEqual(len(err.strip().splitlines()), 1, context)
        self.assertIn("more than 16 MiB, over the 16 MiB limit for a scenario file", err, context)
        self.assert_prompt(started, "an endless pipe")

    def test_users_beyond_what_fits(self):
        text = self.valid_scenario().replace("  users: 2", "  users: 10000000")
        path = lib.write_scenario(self.tmp, text, name="users-too-large.yaml")
        started = time.monotonic()
        self.assert_scenario_refused(path, line=4, col=10,
                                     also=("load.users: too large: at most 1000000",))
        self.assert_prompt(started, "users: 10000000")

    def test_users_beyond_one_worker(self):
        # Within the per-run limit, above what the one (embedded) worker holds.
        text = self.valid_scenario().replace("  users: 2", "  users: 150000")
        path = lib.write_scenario(self.tmp, text, name="users-one-worker.yaml")
        self.assert_scenario_refused(path, also=("150000 virtual users on one worker",
                                                 "more than the 100000 a worker holds"))

    def test_control_characters_in_names_are_escaped(self):
        text = self.valid_scenario().replace("name: bad-input", 'name: "evil\\e]0;owned\\a"')
        text = text.replace("- name: only", '- name: "flow\\e[2J"')
        path = lib.write_scenario(self.tmp, text, name="escapes.yaml")
        rc, out, err = lib.run_master(["--dry-run", path], timeout=30)
        context = lib.describe(rc, out, err)
        self.assertEqual(rc, 0, context)
        self.assertNotIn("\x1b", out + err, context)
        self.assertNotIn("\x07", out + err, context)
        self.assertIn('plan: "evil\\x1b]0;owned\\x07"', out, context)
        self.assertIn('flow "flow\\x1b[2J"', out, context)


class RefusedHandshakeLogTest(lib.TempDirTestCase, unittest.TestCase):
    def test_worker_names_the_endpoint_and_the_key_mismatch(self):
        keys = lib.make_keys(os.path.join(self.tmp, "keys"))
        other = lib.make_keys(os.path.join(self.tmp, "other-keys"))
        with lib.fault_target() as target, lib.workers(1, extra_args=keys.worker_args) as ws:
            path = lib.write_scenario(self.tmp, lib.one_get_scenario(
                target.url, users=1, duration="1s", name="wrong-key", path="/ok"))
            rc, out, err = lib.run_master(["--key", other.master_key, "--workers", ws.hosts_file,
                                           "--quiet", path], timeout=30)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            self.assertEqual(rc, 3, context)
            deadline = time.monotonic() + 5
            while "refused peer" not in ws[0].stderr() and time.monotonic() < deadline:
                time.sleep(0.05)
            refusals = [line for line in ws[0].stderr().splitlines() if "refused peer" in line]
            self.assertEqual(target.count(), 0, context)
        # Both sides use keys, only the keys differ; and the endpoint in ZeroMQ's event is the
        # worker's own, so the line says a peer connected to it rather than naming it as the peer.
        self.assertTrue(refusals, context)
        self.assertEqual(refusals[0].split(": ", 1)[1],
                         f"refused peer connecting to tcp://{ws[0].address}: key mismatch: the peer "
                         "does not hold the key this side expects (or it uses no keys)", context)


class HostileTextTest(lib.TempDirTestCase, unittest.TestCase):
    """What a scenario may legitimately hold but must not send or print raw."""

    def test_non_ascii_url_is_sent_percent_encoded(self):
        with lib.fault_target() as target:
            text = textwrap.dedent(f"""\
                name: utf-8-url
                target: {target.url}
                load: {{users: 1, duration: 5s, iterations: 3}}
                flows:
                  - name: only
                    steps:
                      - get: /café/ü?q=ä
                        expect: {{status: 404}}
                """)
            rc, out, err, context = lib.run_local(self.tmp, text, os.path.join(self.tmp, "out"))
            self.assertEqual(rc, 0, context)
            targets = [entry[3] for entry in target.log_entries()]
        # The target's own log: every request arrived encoded (UTF-8 bytes as %XX).
        self.assertEqual(targets, ["/caf%C3%A9/%C3%BC?q=%C3%A4"] * 3, context)


if __name__ == "__main__":
    unittest.main()
