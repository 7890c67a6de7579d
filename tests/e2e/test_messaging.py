"""End to end, messaging (issue 17): virtual users publish and subscribe over STOMP 1.2 against
a real Debian ActiveMQ started by the test (tests/e2e/broker.py). Counts are checked against
an independent client (Debian's python3-stomp, run as /usr/bin/python3) that holds its own
durable subscription on the same topic."""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker  # noqa: E402
import stampede_testlib as lib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEM_PYTHON = "/usr/bin/python3"


def stomp_check(port, client_id, sub, topic, mode, *args):
    """Runs tests/e2e/stomp_check.py: {"messages": [...], "errors": [...]}."""
    out = subprocess.run([SYSTEM_PYTHON, os.path.join(HERE, "stomp_check.py"), str(port),
                          client_id, sub, topic, mode, *map(str, args)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"stomp_check failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def scenario(url, subscribers, publishers, per_publisher, topic="orders", client_id="c-{{vu}}",
             on_end="keep", receive=None, timeout="10s", duration="4s", reconnect="", pause="0s"):
    receive = receive if receive is not None else publishers * per_publisher
    return f"""
        name: messaging
        target: http://127.0.0.1:9
        load: {{users: {subscribers + publishers}, duration: {duration}}}
        messaging:
          protocol: stomp
          urls: [{url}]
          client_id: "{client_id}"
          {reconnect}
        flows:
          - name: subscriber
            users: {subscribers}
            steps:
              - subscribe: {{from: "topic://{topic}", durable: "sub-{{{{vu}}}}", ack: client,
                             receive: {receive}, timeout: {timeout}, on_end: {on_end},
                             expect: {{body_contains: "order"}}}}
              - think: 600s
          - name: publisher
            users: {publishers}
            steps:
              - think: 1500ms
              - loop: {per_publisher}
                steps:
                  - publish: {{to: "topic://{topic}", body: "order {{{{iteration}}}} of {{{{vu}}}}",
                               properties: {{region: eu}}, confirm: true, timeout: 5s}}
                  - think: {pause}
              - think: 600s
        """


@unittest.skipUnless(broker.available() and os.path.exists(SYSTEM_PYTHON),
                     "needs Debian's activemq and python3-stomp (deploy/install-deps.sh)")
class MessagingTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def test_round_trip_on_two_workers_every_message_once_per_subscriber(self):
        with broker.Broker() as b, lib.workers(2) as ws:
            print(f"\n  activemq started in {b.started_in_s:.1f}s")
            # The independent client's durable subscription exists before anything is sent.
            stomp_check(b.port, "pycheck", "pycheck", "orders", "create")
            path = lib.write_scenario(self.tmp, scenario(b.url, 2, 2, 10))
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=60)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            seen = stomp_check(b.port, "pycheck", "pycheck", "orders", "drain", 1.5)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        self.assertEqual(report["outcome"], "passed", report)
        self.assertEqual(report["warnings"], [], report)
        steps = lib.steps_by_method(report)
        pub, sub = steps["PUBLISH"], steps["SUBSCRIBE"]
        self.assertEqual(pub["requests"], 20, pub)
        self.assertEqual(pub["errors"], 0, pub)
        # Each of the 2 durable subscribers got each of the 20 messages exactly once: a
        # duplicate or a gap would be an error (message_duplicate / message_lost), a missing one
        # receive_timeout.
        self.assertEqual(sub["requests"], 40, sub)
        self.assertEqual(sub["errors"], 0, sub)
        m = sub["messaging"]
        self.assertEqual(m["consumed"], 40, m)
        self.assertEqual((m["stale"], m["redelivered"], m["reconnects"]), (0, 0, 0), m)
        self.assertEqual(pub["messaging"]["confirmed"], 20, pub)
        # End to end on the master's clock: positive, below the run, from the scheduled time
        # no shorter than from the send.
        for key in ("e2e_from_scheduled_ms", "e2e_from_sent_ms"):
            self.assertGreater(m[key]["min"], 0, m)
            self.assertLess(m[key]["max"], 4000, m)
        self.assertGreaterEqual(m["e2e_from_scheduled_ms"]["p50"], m["e2e_from_sent_ms"]["p50"], m)
        # The independent client saw the same 20 messages, stamped, from producers on both
        # workers (so every client id was unique across the cluster: the broker refuses a
        # second connection with an id in use).
        msgs = seen["messages"]
        self.assertEqual(seen["errors"], [], seen)
        keys = [(m["headers"]["stampede_src"], int(m["headers"]["stampede_seq"])) for m in msgs]
        self.assertEqual(len(keys), 20, keys)
        self.assertEqual(len(set(keys)), 20, keys)
        srcs = {src for src, _ in keys}
        self.assertEqual({s.split(".")[0] for s in srcs}, {"0", "1"}, srcs)
        for src in srcs:
            self.assertEqual(sorted(seq for s, seq in keys if s == src), list(range(1, 11)), keys)
        for m in msgs:
            self.assertTrue(m["body"].startswith("order "), m)
            self.assertEqual(m["headers"]["region"], "eu", m)
            self.assertLessEqual(int(m["headers"]["stampede_t_sched"]),
                                 int(m["headers"]["stampede_t_sent"]), m)
        e2e = sub["messaging"]["e2e_from_sent_ms"]
        print(f"  e2e latency p50 {e2e['p50']} ms, max {e2e['max']} ms;"
              f" publish (send->receipt) p50 {pub['messaging']['publish_ms']['p50']} ms")

    def test_client_id_clash_is_client_id_in_use(self):
        with broker.Broker() as b:
            text = f"""
                name: clash
                target: http://127.0.0.1:9
                load: {{users: 2, duration: 3s}}
                messaging:
                  urls: [{b.url}]
                  client_id: same
                  reconnect: {{delay: 100ms, budget: 1s}}
                flows:
                  - steps:
                      - subscribe: {{from: "topic://orders", receive: 1, timeout: 3s}}
                """
            rc, out, err, context = lib.run_local(self.tmp, text, self.out(), timeout=60)
        report = lib.load_report(self.out())
        self.assertNotEqual(rc, 0, context)
        self.assertEqual(report["outcome"], "halted", report)
        self.assertEqual(report["halt"]["reason"], "first_error", report["halt"])
        self.assertEqual(report["halt"]["error_kind"], "client_id_in_use", report["halt"])
        first = report["first_error"]
        self.assertIn("client id 'same' is in use", first["detail"], first)
        self.assertTrue(any("has no {{vu}}" in w for w in report["warnings"]), report["warnings"])
        # Retried within the budget (1 s) before it counted.
        self.assertGreaterEqual(report["halt"]["at_s"], 0.5, report["halt"])

    def test_durable_backlog_is_delivered_later_as_stale_and_unsubscribe_removes_it(self):
        with broker.Broker() as b:
            def run(text, name):
                rc, out, err, context = lib.run_local(self.tmp, text, self.out(name), timeout=60,
                                                      name=name + ".yaml")
                self.assertEqual(rc, 0, context)
                return lib.steps_by_method(lib.load_report(self.out(name)))

            # Run 1: user 0 subscribes durably (client c-0, subscription sub-0) and keeps it.
            run(scenario(b.url, 1, 1, 5), "first")
            # Run 2: only a publisher (user 0, now c-0 publishing): 5 messages wait in sub-0.
            publisher_only = f"""
                name: backlog
                target: http://127.0.0.1:9
                load: {{users: 1, duration: 2s}}
                messaging: {{urls: [{b.url}], client_id: "c-{{{{vu}}}}"}}
                flows:
                  - steps:
                      - loop: 5
                        steps:
                          - publish: {{to: "topic://orders", body: "order backlog"}}
                      - think: 600s
                """
            pub = run(publisher_only, "backlog")["PUBLISH"]
            self.assertEqual(pub["requests"], 5, pub)
            # Run 3: user 0 comes back to sub-0: the 5 of run 2 arrive first, counted as stale
            # (another run's), then the 5 of its own run; then it unsubscribes.
            third = run(scenario(b.url, 1, 1, 5, on_end="unsubscribe"), "third")["SUBSCRIBE"]
            self.assertEqual(third["requests"], 5, third)
            self.assertEqual(third["errors"], 0, third)
            self.assertEqual(third["messaging"]["stale"], 5, third)
            # Run 4: more published; sub-0 no longer exists, so a client that takes its name
            # now starts from nothing.
            run(publisher_only, "after")
            seen = stomp_check(b.port, "c-0", "sub-0", "orders", "drain", 1.5)
        self.assertEqual(seen["messages"], [], seen)


    def failover_pair(self):
        """A master and a standby on one shared KahaDB store: (master, standby), started."""
        store = os.path.join(self.tmp, "shared-kahadb")
        master = broker.Broker("fa", shared_store=store)
        standby = broker.Broker("fb", shared_store=store)
        self.addCleanup(lambda: (master.__exit__(), standby.__exit__()))
        master.start()
        standby.start(wait=False)
        # The standby loads its configuration, then waits for the store's lock (its log says no
        # more without a log4j setup): give it time to get there.
        deadline = time.monotonic() + 60
        while "Loading message broker" not in standby.tail():
            self.assertLess(time.monotonic(), deadline, standby.tail())
            self.assertIsNone(standby.proc.poll(), standby.tail())
            time.sleep(0.1)
        time.sleep(2.0)
        return master, standby

    def test_failover_to_the_standby_within_the_budget_with_exact_accounting(self):
        master, standby = self.failover_pair()
        per_publisher = 60
        text = scenario(f"{master.url}, {standby.url}", 1, 1, per_publisher, timeout="25s",
                        duration="12s",
                        reconnect="reconnect: {delay: 100ms, max_delay: 500ms, multiplier: 2, "
                                  "budget: 15s}", pause="50ms")
        path = lib.write_scenario(self.tmp, text)
        proc = lib.start_master(["--out", self.out(), "--quiet", path], self.tmp)
        time.sleep(3.0)  # the publisher has begun (after its 1.5 s pause)
        killed_at = time.monotonic()
        master.kill()
        standby.wait_port(timeout=30)
        takeover = time.monotonic() - killed_at
        rc, out, err = lib.finish_master(proc, self.tmp, timeout=60)
        context = lib.describe(rc, out, err)
        report = lib.load_report(self.out())
        steps = lib.steps_by_method(report)
        pub, sub = steps["PUBLISH"], steps["SUBSCRIBE"]
        print(f"\n  standby took over {takeover:.2f}s after the kill; reconnects: publish "
              f"{pub['messaging']['reconnects']}, subscribe {sub['messaging']['reconnects']}")
        if report["outcome"] != "passed":
            # The publisher was waiting for a receipt while the broker died (a JVM takes a
            # while to go): that message is in doubt, and said so; nothing else may go wrong,
            # and the halt comes before anyone could reconnect.
            self.assertEqual(report["halt"]["error_kind"], "send_in_doubt", context)
            self.assertEqual(pub["errors"], 1, pub)
            self.assertEqual(sub["errors"], 0, sub)
            print(f"  halted with send_in_doubt: {report['first_error']['detail']}")
            return
        # The subscriber reads all along: it lost the broker at the kill, and could not be
        # back (with its subscription) before the standby opened its port. The standby's port
        # was seen within 50 ms of opening; the reconnect delay is at most 500 ms.
        took = sub["messaging"]["reconnect_ms"]
        self.assertIsNotNone(took, sub)
        print(f"  subscriber's reconnect took {took['max']:.0f} ms")
        self.assertEqual(took["min"], took["max"], took)  # one reconnect
        self.assertGreaterEqual(took["max"] / 1000, takeover - 0.3, took)
        self.assertLessEqual(took["max"] / 1000, takeover + 2.5, took)
        self.assertEqual(rc, 0, context)
        self.assertGreaterEqual(sub["messaging"]["reconnects"], 1, sub)
        self.assertGreaterEqual(pub["messaging"]["reconnects"], 1, pub)
        self.assertEqual(pub["messaging"]["confirmed"], per_publisher, pub)
        # Every confirmed message was consumed once, or redelivered after the failover (the
        # broker had not seen its ACK): what the subscriber took twice is still in its durable
        # subscription, so the same client takes exactly that many now.
        redelivered = sub["messaging"]["redelivered"]
        self.assertEqual(sub["messaging"]["consumed"], per_publisher, sub)
        rest = stomp_check(standby.port, "c-0", "sub-0", "orders", "drain", 1.5)["messages"]
        self.assertEqual(len(rest), redelivered, (rest, sub))

    def test_a_budget_shorter_than_the_takeover_is_reconnect_exhausted(self):
        master, standby = self.failover_pair()
        text = f"""
            name: exhausted
            target: http://127.0.0.1:9
            load: {{users: 1, duration: 10s}}
            messaging:
              urls: [{master.url}, {standby.url}]
              client_id: "c-{{{{vu}}}}"
              reconnect: {{delay: 50ms, budget: 200ms}}
            flows:
              - steps:
                  - subscribe: {{from: "topic://orders", durable: "s-{{{{vu}}}}", receive: 1000,
                                 timeout: 30s}}
            """
        path = lib.write_scenario(self.tmp, text)
        proc = lib.start_master(["--out", self.out(), "--quiet", path], self.tmp)
        time.sleep(2.0)
        master.kill()
        rc, out, err = lib.finish_master(proc, self.tmp, timeout=60)
        context = lib.describe(rc, out, err)
        report = lib.load_report(self.out())
        self.assertNotEqual(rc, 0, context)
        self.assertEqual(report["outcome"], "halted", report)
        self.assertEqual(report["halt"]["error_kind"], "reconnect_exhausted", report["halt"])
        self.assertLess(report["halt"]["at_s"], 5, report["halt"])

    def test_end_to_end_latency_holds_across_workers_with_skewed_clocks(self):
        # Worker 0's clock runs 400 ms ahead, worker 1's 300 ms behind: stamps compared raw
        # would be 700 ms off. The master's offsets (measured at the handshake) put every stamp
        # on its clock, so loopback latency stays a few ms.
        with broker.Broker() as b, \
                lib.workers(1, extra_args=["--test-clock-skew", "400"]) as w0, \
                lib.workers(1, extra_args=["--test-clock-skew", "-300"]) as w1:
            hosts = os.path.join(self.tmp, "hosts.txt")
            with open(hosts, "w") as f:
                f.write(f"{w0.addresses()[0]}\n{w1.addresses()[0]}\n")
            path = lib.write_scenario(self.tmp, scenario(b.url, 2, 2, 10))
            rc, out, err = lib.run_master(
                ["--workers", hosts, "--out", self.out(), "--quiet", path], timeout=60)
            context = lib.describe(rc, out, err) + "\n" + w0.stderr() + w1.stderr()
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        offsets = sorted(round(w["clock_offset_ms"]) for w in report["workers"])
        self.assertEqual(len(offsets), 2, report["workers"])
        self.assertAlmostEqual(offsets[0], -300, delta=50)
        self.assertAlmostEqual(offsets[1], 400, delta=50)
        sub = lib.steps_by_method(report)["SUBSCRIBE"]["messaging"]
        self.assertEqual(sub["consumed"], 40, sub)
        for key in ("e2e_from_scheduled_ms", "e2e_from_sent_ms"):
            self.assertGreater(sub[key]["min"], 0, sub)
            self.assertLess(sub[key]["max"], 250, sub)
        bound = sub["clock_error_bound_ms"]
        # Each worker's bound is the largest over the run: the handshake's, or a re-measured
        # offset's during it.
        errors = sorted(max(w["clock_error_ms"], w["run_clock_error_ms"])
                        for w in report["workers"])
        self.assertAlmostEqual(bound, errors[0] + errors[1], places=6)
        self.assertGreater(bound, 0, sub)
        print(f"\n  offsets {offsets} ms; e2e p50 {sub['e2e_from_sent_ms']['p50']} ms, "
              f"error bound {bound:.3f} ms")

    def test_waiting_subscribers_end_with_the_run_not_at_their_timeout(self):
        with broker.Broker() as b:
            text = f"""
                name: idle
                target: http://127.0.0.1:9
                load: {{users: 3, duration: 2s}}
                messaging: {{urls: [{b.url}], client_id: "i-{{{{vu}}}}"}}
                flows:
                  - steps:
                      - subscribe: {{from: "topic://nothing", receive: 1, timeout: 60s}}
                """
            started = time.monotonic()
            rc, out, err, context = lib.run_local(self.tmp, text, self.out(), timeout=90)
            elapsed = time.monotonic() - started
        self.assertEqual(rc, 0, context)
        self.assertLess(elapsed, 10, context)
        sub = lib.steps_by_method(lib.load_report(self.out()))["SUBSCRIBE"]
        self.assertEqual((sub["requests"], sub["errors"], sub["cancelled"]), (0, 0, 3), sub)

if __name__ == "__main__":
    unittest.main(verbosity=2)
