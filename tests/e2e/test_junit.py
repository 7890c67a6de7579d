"""End to end (issue 14): junit.xml beside report.json. One testsuite per run; each threshold a
testcase with its verdict; the run's expectations a testcase, failed with the first error's
message and context when an error halted the run. Valid against tests/junit.xsd (xmllint), and
the schema is not vacuous: a broken file fails it."""

import os
import shutil
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

XSD = os.path.join(lib.SOURCE_DIR, "tests", "junit.xsd")
XMLLINT = shutil.which("xmllint")


def validate(path):
    """(ok, xmllint's output) for `path` against tests/junit.xsd."""
    done = subprocess.run([XMLLINT, "--noout", "--schema", XSD, path], capture_output=True,
                          text=True, timeout=30)
    return done.returncode == 0, done.stdout + done.stderr


def scenario(url, path, on_error, thresholds):
    lines = ["name: e2e-junit", f"target: {url}", "load:", "  users: 4", "  duration: 2s",
             "halt:", f"  on_error: {on_error}", "  thresholds:"]
    lines += [f"    - \"{t}\"" for t in thresholds]
    lines += ["flows:", "  - name: pool", "    steps:", f"      - get: {path}",
              "        name: fail-after"]
    return "\n".join(lines) + "\n"


@unittest.skipUnless(XMLLINT, "xmllint not installed (Debian libxml2-utils; install-deps.sh)")
class JunitTest(lib.TempDirTestCase, unittest.TestCase):
    def run_and_read(self, text):
        out_dir = os.path.join(self.tmp, "out")
        with lib.fault_target() as target:
            rc, out, err, context = lib.run_local(self.tmp, text.replace("URL", target.url),
                                                  out_dir)
        report = lib.load_report(out_dir)
        path = os.path.join(out_dir, "junit.xml")
        self.assertTrue(os.path.exists(path), context)
        ok, lint = validate(path)
        with open(path) as f:
            xml_text = f.read()
        self.assertTrue(ok, f"{lint}\n{xml_text}")
        return rc, report, ET.parse(path).getroot(), xml_text, context

    def test_a_halted_run_fails_its_expectations_with_the_first_error(self):
        rc, report, root, xml_text, context = self.run_and_read(scenario(
            "URL", "/fail-after/150", "first", ["p99 < 10s", "rps > 1000000"]))
        self.assertEqual(rc, 1, context)
        self.assertEqual(report["outcome"], "halted", context)
        suites = root.findall("testsuite")
        self.assertEqual(len(suites), 1, xml_text)
        suite = suites[0]
        self.assertEqual(suite.get("name"), "e2e-junit", xml_text)
        cases = suite.findall("testcase")
        # expectations + one per threshold, in the report's order.
        self.assertEqual([c.get("name") for c in cases],
                         ["expectations"] + [t["expr"] for t in report["thresholds"]], xml_text)
        self.assertEqual(suite.get("tests"), str(len(cases)), xml_text)
        expectations = cases[0]
        failure = expectations.find("failure")
        self.assertIsNotNone(failure, xml_text)
        first = report["first_error"]
        self.assertIn(first["url"], failure.get("message"), xml_text)
        self.assertIn("http_500", failure.get("message"), xml_text)
        self.assertEqual(failure.get("type"), "first_error", xml_text)
        # The context: step, status, the target's headers and body, as in report.json.
        self.assertIn(f"step \"{first['step']}\"", failure.text, xml_text)
        self.assertIn("status 500", failure.text, xml_text)
        self.assertIn(first["body"].strip(), failure.text, xml_text)
        self.assertIn("Server: stampede-fault-target", failure.text, xml_text)
        # Thresholds: each testcase fails exactly when report.json says it failed.
        for case, threshold in zip(cases[1:], report["thresholds"]):
            self.assertEqual(case.find("failure") is None, threshold["passed"], xml_text)
        self.assertEqual([t["passed"] for t in report["thresholds"]], [True, False], report)
        failures = sum(1 for c in cases if c.find("failure") is not None)
        self.assertEqual(suite.get("failures"), str(failures), xml_text)
        self.assertEqual(root.get("failures"), str(failures), xml_text)

    def test_a_passing_run_has_no_failure(self):
        rc, report, root, xml_text, context = self.run_and_read(scenario(
            "URL", "/ok", "first", ["p99 < 10s", "error_rate < 1%"]))
        self.assertEqual(rc, 0, context)
        suite = root.find("testsuite")
        self.assertEqual(suite.get("failures"), "0", xml_text)
        self.assertEqual(suite.get("errors"), "0", xml_text)
        self.assertEqual(len(suite.findall("testcase")), 3, xml_text)
        self.assertIsNone(suite.find("testcase/failure"), xml_text)
        self.assertIn(f"{report['totals']['requests']} requests, 0 errors",
                      suite.find("testcase/system-out").text, xml_text)

    def test_a_junit_xml_that_cannot_be_written_is_a_warning_and_exit_3(self):
        out_dir = os.path.join(self.tmp, "out")
        os.makedirs(out_dir)
        os.symlink("/dev/full", os.path.join(out_dir, "junit.xml.tmp"))
        with lib.fault_target() as target:
            rc, out, err, context = lib.run_local(self.tmp, scenario(
                target.url, "/ok", "first", ["p99 < 10s"]), out_dir)
        self.assertEqual(rc, 3, context)
        self.assertRegex(err, r"junit\.xml: cannot write: No space left on device; no report",
                         context)
        self.assertIn("(exit 3)", out, context)
        # report.json and the page are there; no half-written junit.xml is.
        self.assertEqual(sorted(os.listdir(out_dir)),
                         ["report.html", "report.json", "timeseries.csv"], context)
        # report.json was written again to say so.
        report = lib.load_report(out_dir)
        self.assertEqual(report["exit_code"], 3, context)
        self.assertTrue(any("junit.xml: cannot write" in w for w in report["warnings"]), report)
        self.assertNotIn("report: " + os.path.join(out_dir, "junit.xml"), out, context)
        self.assertIn("report: " + os.path.join(out_dir, "report.html"), out, context)

    def test_the_schema_refuses_what_jenkins_would_not_read(self):
        # A testcase without classname, and one with two verdicts: both invalid.
        for broken in ('<testsuites><testsuite name="s" tests="1"><testcase name="c"/>'
                       '</testsuite></testsuites>',
                       '<testsuites><testsuite name="s" tests="1"><testcase name="c" '
                       'classname="k"><failure/><error/></testcase></testsuite></testsuites>',
                       '<testsuite name="s"><testcase name="c" classname="k"/></testsuite>'):
            path = os.path.join(self.tmp, "broken.xml")
            with open(path, "w") as f:
                f.write(broken)
            ok, lint = validate(path)
            self.assertFalse(ok, f"xmllint accepted {broken}: {lint}")


if __name__ == "__main__":
    unittest.main()
