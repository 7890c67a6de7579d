"""End to end: docs/scenario.schema.json and the loader agree. Every example in config/examples
is valid under the schema and loads with `master --dry-run`; bad scenarios that a schema can
see (unknown keys, wrong types, values out of range) are refused by both, at the same place; and
the complete example in docs/scenario.md passes both. Needs python3-yaml and python3-jsonschema.
"""

import glob
import json
import os
import re
import sys
import unittest
from unittest import mock

import jsonschema
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

SCHEMA_PATH = os.path.join(lib.SOURCE_DIR, "docs", "scenario.schema.json")
EXAMPLES_DIR = os.path.join(lib.SOURCE_DIR, "config", "examples")
BAD_DIR = os.path.join(lib.SOURCE_DIR, "tests", "unit", "bad_scenarios")
DOC_PATH = os.path.join(lib.SOURCE_DIR, "docs", "scenario.md")

# Bad scenarios whose fault is in the shape of the document, which a schema can describe. The
# others need the loader's knowledge (templates, captures in order, CSV files, YAML syntax).
SCHEMA_DETECTABLE = [
    "01-unknown-key-did-you-mean.yaml", "02-unknown-nested-key-did-you-mean.yaml",
    "03-unknown-key-no-suggestion.yaml", "04-users-string.yaml", "05-name-list.yaml",
    "06-negative-duration.yaml", "07-garbage-duration.yaml", "08-zero-duration.yaml",
    "09-weight-zero.yaml", "10-empty-flows.yaml", "11-step-two-methods.yaml",
    "12-step-no-method.yaml", "13-bad-target-scheme.yaml", "17-status-ok.yaml",
    "18-load-rate-zero.yaml", "20-expect-body-contains-empty.yaml", "24-missing-name.yaml",
    "25-missing-users.yaml", "27-loop-zero.yaml", "28-halt-on-error-typo.yaml",
    "29-http-engine-unknown.yaml", "31-http-version-3.yaml", "32-patch-form-list.yaml",
    "35-status-out-of-range.yaml", "36-keep-alive-not-bool.yaml",
    "37-step-key-did-you-mean.yaml", "38-body-and-json.yaml", "41-data-feeder-not-mapping.yaml",
    "43-variable-shadows-builtin.yaml", "44-think-exp-zero-mean.yaml", "46-headers-list.yaml",
    "49-status-empty-list.yaml", "50-steps-in-request.yaml", "51-missing-flows.yaml",
    "52-users-float.yaml", "53-step-is-string.yaml", "55-halt-count-zero.yaml",
    "60-on-worker-lost-typo.yaml", "61-stages-with-users.yaml", "63-max-in-flight-closed.yaml",
    "64-rate-bad-unit.yaml", "65-users-and-rate.yaml", "73-capture-json-path-invalid.yaml",
    "77-expect-json-map-value.yaml", "78-expect-header-list-value.yaml",
    "79-tls-cert-without-key.yaml", "80-http2-with-beast.yaml", "81-form-and-body.yaml",
    "82-head-with-body.yaml", "83-query-list.yaml", "84-step-timeout-zero.yaml",
    "85-think-exp-no-unit.yaml", "86-stage-hold-zero.yaml", "89-iterations-zero.yaml",
    "90-max-in-flight-zero.yaml", "93-feeder-order-typo.yaml", "96-capture-two-kinds.yaml",
    "98-stage-to-float.yaml", "99-follow-redirects-not-bool.yaml", "100-max-latency-zero.yaml",
    "101-rate-negative.yaml", "104-stage-key-did-you-mean.yaml", "105-on-exhausted-typo.yaml",
    "106-expect-header-bad-name.yaml", "107-hold-stage-with-to.yaml",
    "110-duration-with-stages.yaml", "111-rate-without-duration.yaml",
    "112-capture-name-builtin.yaml", "113-feeder-split-typo.yaml",
    "114-expect-body-contains-list.yaml", "115-rate-without-unit.yaml",
    "153-capacity-slo-error-rate.yaml", "154-capacity-confirm-range.yaml",
    "155-capacity-unknown-key.yaml",
]

EXPECT_LINE = re.compile(r"^# expect: (\d+):(\d+): ([^:]*): (.*)$")


def key_path(parts):
    """A jsonschema path as the loader writes key paths: load.users, flows[0].steps[1]."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def error_paths(error):
    """Where an error is, as key paths; for unknown and missing keys, the keys themselves."""
    base = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        return [key_path(base + [k]) for k in error.instance if k not in known]
    if error.validator == "required" and isinstance(error.instance, dict):
        return [key_path(base + [k]) for k in error.validator_value if k not in error.instance]
    return [key_path(base)]


def all_errors(errors):
    for error in errors:
        yield error
        yield from all_errors(error.context or [])


def within(path, ancestor):
    return path == ancestor or path.startswith(ancestor + ".") or path.startswith(ancestor + "[")


class SchemaTest(lib.TempDirTestCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SCHEMA_PATH, encoding="utf-8") as f:
            cls.schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(cls.schema)
        cls.validator = jsonschema.Draft202012Validator(cls.schema)

    def schema_errors(self, path):
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
        return list(self.validator.iter_errors(document))

    def assert_loads(self, path):
        rc, out, err = lib.run_master(["--dry-run", path], timeout=60)
        context = lib.describe(rc, out, err)
        self.assertEqual(rc, 0, f"{path} does not load\n{context}")
        lib.assert_no_crash(self, err, context)

    def test_every_example_is_valid_and_loads(self):
        examples = sorted(glob.glob(os.path.join(EXAMPLES_DIR, "*.yaml")))
        self.assertGreaterEqual(len(examples), 6, examples)
        for path in examples:
            with self.subTest(example=os.path.basename(path)):
                errors = [f"{key_path(e.absolute_path)}: {e.message}"
                          for e in self.schema_errors(path)]
                self.assertEqual(errors, [], f"{path} is not valid under the schema")
                self.assert_loads(path)

    def test_shape_errors_are_refused_by_schema_and_loader_alike(self):
        for name in SCHEMA_DETECTABLE:
            path = os.path.join(BAD_DIR, name)
            with self.subTest(bad=name):
                with open(path, encoding="utf-8") as f:
                    match = EXPECT_LINE.match(f.readline().rstrip("\n"))
                self.assertIsNotNone(match, f"{name} has no '# expect:' line")
                line, col, expected_path = match.group(1), match.group(2), match.group(3)

                errors = list(all_errors(self.schema_errors(path)))
                self.assertTrue(errors, f"the schema accepts {name}")
                found = [p for e in errors for p in error_paths(e)]
                # The schema must see the problem at the loader's key, or at a key around it
                # (a oneOf over step kinds reports the step).
                self.assertTrue(
                    any(within(expected_path, p) and (p or not expected_path) for p in found),
                    f"{name}: the loader refuses {expected_path!r}, the schema only {found}")

                rc, out, err = lib.run_master(["--dry-run", path], timeout=30)
                context = lib.describe(rc, out, err)
                self.assertEqual(rc, 2, context)
                lib.assert_no_crash(self, err, context)
                lines = err.strip().splitlines()
                self.assertEqual(len(lines), 1, context)
                where = f"{name}:{line}:{col}: " + (f"{expected_path}: " if expected_path else "")
                self.assertIn(where, lines[0], context)

    def test_the_complete_example_in_the_docs_is_valid_and_loads(self):
        with open(DOC_PATH, encoding="utf-8") as f:
            doc = f.read()
        blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
        complete = [b for b in blocks if b.startswith("name:") and "flows:" in b and "data:" in b]
        self.assertTrue(complete, "docs/scenario.md has no complete example with data:")
        text = complete[0]
        # The files it names, next to it.
        pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        for name in re.findall(r"\b(?:ca|cert|key): ([\w.-]+)", text):
            with open(os.path.join(self.tmp, name), "w", encoding="utf-8") as f:
                f.write(pem)
        for name in re.findall(r"\bcsv: ([\w.-]+)", text):
            with open(os.path.join(self.tmp, name), "w", encoding="utf-8") as f:
                f.write("user,password\nalice,pw1\nbob,pw2\n")
        path = lib.write_scenario(self.tmp, text, name="complete.yaml")
        errors = [f"{key_path(e.absolute_path)}: {e.message}" for e in self.schema_errors(path)]
        self.assertEqual(errors, [], "the docs' example is not valid under the schema")
        # env() is read by the master: give the example's variable a value.
        with mock.patch.dict(os.environ, {"API_TOKEN": "t0ken"}):
            self.assert_loads(path)


if __name__ == "__main__":
    unittest.main()
