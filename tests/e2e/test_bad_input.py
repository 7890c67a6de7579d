"""End to end: bad scenarios and bad command lines are refused with exit 2, one clear line on
stderr (file:line:col where there is a location), no crash, and not a single request sent."""

import os
import re
import sys
import textwrap
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


if __name__ == "__main__":
    unittest.main()
