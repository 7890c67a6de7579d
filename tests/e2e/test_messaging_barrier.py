"""End to end, the messaging start barrier (issue 17): topic subscribers (closed model, a load:
of their own) and open-model publishers start together on 2 workers against a real Debian
ActiveMQ (tests/e2e/broker.py). With the barrier every subscription is confirmed before the
first publish, so each subscriber consumes every message exactly once; with
`start_barrier: off` the same run loses the first messages to the subscribers still subscribing.
Counts are checked against an independent client (python3-stomp, tests/e2e/stomp_check.py)."""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker  # noqa: E402
import stampede_testlib as lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"
SUBSCRIBERS = 8   # cluster-wide: 4 per worker
RATE = 150        # publishes per second, cluster-wide, open model
SECONDS = 3       # of publishing; the subscribers stay 4 s longer to drain
# The subscribers ramp up while the publishers publish from the start: without the barrier the
# late ones miss what came before them, every time (with no ramp the race loses 0 to ~12 of
# 3600 deliveries, too rare to prove anything). With it, each user's subscription is confirmed
# before the start, ramp or not, and its messages wait for it.
RAMP = "1s"


def stomp_check(port, client_id, sub, topic, mode, *args):
    out = subprocess.run([SYSTEM_PYTHON, os.path.join(HERE, "stomp_check.py"), str(port),
                          client_id, sub, topic, mode, *map(str, args)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"stomp_check failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def scenario(url, topic, barrier):
    return f"""
        name: barrier
        target: http://127.0.0.1:9
        messaging:
          protocol: stomp
          urls: [{url}]
          client_id: "b-{{{{vu}}}}"
          start_barrier: {barrier}
        flows:
          - name: subscriber
            load: {{users: {SUBSCRIBERS}, ramp: {RAMP}, duration: {SECONDS + 4}s}}
            steps:
              - subscribe: {{from: "topic://{topic}", durable: "s-{{{{vu}}}}", ack: auto,
                             receive: 1000000, timeout: 60s}}
          - name: publisher
            load: {{rate: {RATE}/s, duration: {SECONDS}s}}
            steps:
              - publish: {{to: "topic://{topic}", body: "tick {{{{iteration}}}}",
                           confirm: true, timeout: 5s}}
        """


@unittest.skipUnless(broker.available() and os.path.exists(SYSTEM_PYTHON),
                     "needs Debian's activemq and python3-stomp (deploy/install-deps.sh)")
class StartBarrierTest(lib.TempDirTestCase, unittest.TestCase):
    def run_once(self, b, ws, topic, barrier):
        stomp_check(b.port, "pycheck-" + topic, "pycheck", topic, "create")
        path = lib.write_scenario(self.tmp, scenario(b.url, topic, barrier), name=topic + ".yaml")
        out_dir = os.path.join(self.tmp, topic)
        rc, out, err = lib.run_master(["--workers", ws.hosts_file, "--out", out_dir, path],
                                      timeout=90)
        context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        seen = stomp_check(b.port, "pycheck-" + topic, "pycheck", topic, "drain", 1.5)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        steps = lib.steps_by_method(report)
        return report, steps["PUBLISH"], steps["SUBSCRIBE"], seen, out, context

    def test_subscribers_confirmed_before_publishers_consume_every_message(self):
        with broker.Broker() as b, lib.workers(2) as ws:
            report, pub, sub, seen, out, context = self.run_once(b, ws, "prices", "30s")
        published = pub["requests"]
        self.assertEqual(pub["errors"], 0, pub)
        self.assertAlmostEqual(published, RATE * SECONDS, delta=5, msg=pub)
        # The independent client saw exactly what the report says was published.
        self.assertEqual(seen["errors"], [], seen)
        keys = {(m["headers"]["stampede_src"], int(m["headers"]["stampede_seq"]))
                for m in seen["messages"]}
        self.assertEqual(len(seen["messages"]), published, context)
        self.assertEqual(len(keys), published, context)
        # Every subscriber got every message once: no message_lost, no duplicate.
        self.assertEqual(sub["errors"], 0, sub)
        self.assertEqual(sub["requests"], SUBSCRIBERS * published, sub)
        self.assertEqual(sub["messaging"]["consumed"], SUBSCRIBERS * published, sub)
        # The barrier: reported, with every subscription in it.
        m = report["messaging"]
        self.assertEqual(m["start_barrier_subscriptions"], SUBSCRIBERS, m)
        self.assertGreater(m["start_barrier_seconds"], 0, m)
        self.assertLess(m["start_barrier_seconds"], 30, m)
        self.assertRegex(out, rf"start barrier: {SUBSCRIBERS} subscriptions confirmed on 2 "
                              r"workers in \d+\.\d+s")
        print(f"\n  start barrier {m['start_barrier_seconds'] * 1000:.0f} ms for {SUBSCRIBERS} "
              f"subscriptions; {published} published, {sub['requests']} consumed")

    def test_without_the_barrier_the_first_messages_are_lost(self):
        # The proof that the test above can fail: the same run with the barrier off.
        with broker.Broker() as b, lib.workers(2) as ws:
            report, pub, sub, seen, out, context = self.run_once(b, ws, "quotes", "off")
        published = pub["requests"]
        self.assertNotIn("messaging", report)
        self.assertEqual(len(seen["messages"]), published, context)
        missed = SUBSCRIBERS * published - sub["requests"]
        print(f"\n  barrier off: {published} published, {missed} deliveries missed by the "
              f"{SUBSCRIBERS} subscribers")
        self.assertGreater(missed, 0, sub)


if __name__ == "__main__":
    unittest.main()
