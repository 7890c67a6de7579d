"""End to end, messaging accounting (issue 17): loss and duplicates on queues judged by the
master over competing consumers on 2 workers, clock offsets re-measured during the run, and
same-worker pairs as the exact reference. Against a real Debian ActiveMQ started by the test
(tests/e2e/broker.py); counts checked against an independent client (Debian's python3-stomp,
run as /usr/bin/python3) that drains or steals from the queue."""

import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker  # noqa: E402
import headless_chromium  # noqa: E402
import stampede_testlib as lib  # noqa: E402

SYSTEM_PYTHON = "/usr/bin/python3"

# The independent client: takes up to COUNT messages from a queue (acking each, prefetch 1),
# or, with COUNT 0, every message there until none came for a second; prints them as JSON.
QUEUE_CLIENT = r'''
import json, sys, threading, time
import stomp
port, queue, count, wait_s = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
taken, lock, done = [], threading.Lock(), threading.Event()
class Listener(stomp.ConnectionListener):
    def on_message(self, frame):
        with lock:
            if count and len(taken) >= count:
                return  # not acked: the broker gives it to another consumer
            taken.append({"src": frame.headers.get("stampede_src"),
                          "seq": int(frame.headers.get("stampede_seq", 0))})
            conn.ack(frame.headers["ack"])
            if count and len(taken) == count:
                done.set()
conn = stomp.Connection12([("127.0.0.1", port)])
conn.set_listener("l", Listener())
conn.connect(wait=True)
conn.subscribe(destination="/queue/" + queue, id="1", ack="client-individual",
               headers={"activemq.prefetchSize": "1"})
if count:
    done.wait(wait_s)
else:
    last, seen = time.monotonic(), -1
    while time.monotonic() - last < wait_s:
        time.sleep(0.1)
        with lock:
            if len(taken) != seen:
                seen, last = len(taken), time.monotonic()
conn.disconnect()
print(json.dumps(taken))
'''


def queue_scenario(url, consumers, producers, per_producer, pause="20ms", duration="7s",
                   queue="work", first="1500ms"):
    return f"""
        name: queues
        target: http://127.0.0.1:9
        load: {{users: {consumers + producers}, duration: {duration}}}
        messaging:
          protocol: stomp
          urls: [{url}]
          client_id: "q-{{{{vu}}}}"
        flows:
          - name: consumer
            users: {consumers}
            steps:
              - subscribe: {{from: "queue://{queue}", ack: client, prefetch: 1, receive: 1,
                             timeout: 30s}}
          - name: producer
            users: {producers}
            steps:
              - think: {first}
              - loop: {per_producer}
                steps:
                  - publish: {{to: "queue://{queue}", body: "job {{{{iteration}}}}",
                               confirm: true, timeout: 5s}}
                  - think: {pause}
              - think: 600s
        """


@unittest.skipUnless(broker.available() and os.path.exists(SYSTEM_PYTHON),
                     "needs Debian's activemq and python3-stomp (deploy/install-deps.sh)")
class MessagingAccountingTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def queue_client(self, port, queue, count, wait_s):
        """Starts the independent client: the Popen (its stdout is the JSON)."""
        script = os.path.join(self.tmp, "queue_client.py")
        with open(script, "w") as f:
            f.write(QUEUE_CLIENT)
        return subprocess.Popen([SYSTEM_PYTHON, script, str(port), queue, str(count),
                                 str(wait_s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def collect(self, proc, timeout=60):
        out, err = proc.communicate(timeout=timeout)
        self.assertEqual(proc.returncode, 0, err[-2000:])
        return json.loads(out)

    def test_competing_consumers_on_two_workers_take_every_message_once(self):
        with broker.Broker() as b, lib.workers(2) as ws:
            path = lib.write_scenario(self.tmp, queue_scenario(b.url, 4, 2, 40))
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=90)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            # What is left on the queue, seen by another client: nothing.
            left = self.collect(self.queue_client(b.port, "work", 0, 1.5))
        self.assertEqual(rc, 0, context)
        self.assertEqual(left, [], left)
        report = lib.load_report(self.out())
        self.assertEqual(report["outcome"], "passed", context)
        steps = lib.steps_by_method(report)
        pub, sub = steps["PUBLISH"], steps["SUBSCRIBE"]
        self.assertEqual((pub["requests"], pub["errors"]), (80, 0), pub)
        m = sub["messaging"]
        self.assertEqual(m["consumed"], 80, m)
        self.assertEqual((m["lost"], m["duplicate"], m["in_flight_at_end"]), (0, 0, 0), m)
        self.assertEqual(sub["errors"], 0, sub)
        # Producers and consumers on both workers: both kinds of pair, adding up.
        same, cross = m["e2e_same_worker_ms"], m["e2e_cross_worker_ms"]
        self.assertGreater(same["count"], 0, m)
        self.assertGreater(cross["count"], 0, m)
        self.assertEqual(same["count"] + cross["count"], 80, m)
        # The console and report.html name them too.
        self.assertRegex(out, rf"same worker \(exact\)\s+{same['count']} ")
        self.assertRegex(out, rf"cross worker\s+{cross['count']} ")
        self.assertIn("queues: lost 0, duplicate 0, in flight at the end 0", out)
        if headless_chromium.find_chromium():
            with headless_chromium.Chromium() as browser:
                browser.load("file://" + os.path.join(self.out(), "report.html"))
                rows = browser.evaluate('[...document.querySelectorAll("#messaging tbody tr")]'
                                        '.map((tr) => [...tr.children].map((td) => td.textContent))')
                errors = browser.console_errors()
            self.assertEqual(errors, [], rows)
            self.assertEqual([r[1] for r in rows], ["from the send, all",
                                                    "same worker (exact reference)",
                                                    "cross worker"], rows)
            self.assertEqual([r[2] for r in rows],
                             ["80", str(same["count"]), str(cross["count"])], rows)
        print(f"\n  e2e same worker p50 {same['p50']} ms, cross p50 {cross['p50']} ms, "
              f"bound {m['clock_error_bound_ms']:.3f} ms")

    def test_messages_a_side_consumer_steals_are_exactly_the_lost_ones(self):
        stolen_count = 5
        with broker.Broker() as b, lib.workers(2) as ws:
            # The thief subscribes first and takes 5 of the first messages, then leaves.
            thief = self.queue_client(b.port, "work", stolen_count, 30)
            time.sleep(0.5)
            path = lib.write_scenario(self.tmp, queue_scenario(b.url, 4, 2, 40, pause="40ms"))
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=90)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            stolen = self.collect(thief)
            left = self.collect(self.queue_client(b.port, "work", 0, 1.5))
        self.assertEqual(len(stolen), stolen_count, stolen)
        self.assertEqual(left, [], left)
        report = lib.load_report(self.out())
        self.assertEqual(rc, 1, context)
        self.assertEqual(report["outcome"], "failed", context)
        steps = lib.steps_by_method(report)
        pub, sub = steps["PUBLISH"], steps["SUBSCRIBE"]
        self.assertEqual((pub["requests"], pub["errors"]), (80, 0), pub)
        m = sub["messaging"]
        self.assertEqual(m["lost"], stolen_count, m)
        self.assertEqual(m["duplicate"], 0, m)
        self.assertEqual(m["consumed"], 80 - stolen_count, m)
        self.assertEqual(sub["errors_by_kind"].get("message_lost"), stolen_count, sub)
        first = report["first_error"]
        self.assertEqual(first["error_kind"], "message_lost", first)
        self.assertIn(f"{stolen_count} confirmed messages were never consumed", first["detail"])
        # The first gap it names (producers in order, then numbers) is a stolen message.
        src = min(s["src"] for s in stolen)
        seq = min(s["seq"] for s in stolen if s["src"] == src)
        print(f"\n  stolen {[(s['src'], s['seq']) for s in stolen]}; {first['detail']}")
        self.assertRegex(first["detail"], rf"first messages? {seq}(\.\.\d+)? of producer {src} ")

    def test_a_backlog_the_consumers_had_not_reached_is_left_on_the_queue_not_lost(self):
        # One consumer at about 10/s behind two producers at about 40/s each: most messages are
        # still on the queue at the end. They are not lost: the independent client drains them.
        with broker.Broker() as b:
            path = lib.write_scenario(self.tmp, f"""
                name: backlog
                target: http://127.0.0.1:9
                load: {{users: 3, duration: 5s}}
                messaging: {{protocol: stomp, urls: [{b.url}], client_id: "q-{{{{vu}}}}"}}
                flows:
                  - name: consumer
                    users: 1
                    steps:
                      - subscribe: {{from: "queue://work", ack: client, prefetch: 1, receive: 1,
                                     timeout: 30s}}
                      - think: 100ms
                  - name: producer
                    users: 2
                    steps:
                      - think: 1s
                      - loop: 60
                        steps:
                          - publish: {{to: "queue://work", body: "job", confirm: true,
                                       timeout: 5s}}
                          - think: 20ms
                      - think: 600s
                """)
            rc, out, err = lib.run_master(["--out", self.out(), path], timeout=60)
            context = lib.describe(rc, out, err)
            left = self.collect(self.queue_client(b.port, "work", 0, 1.5))
        self.assertEqual(rc, 0, context)
        steps = lib.steps_by_method(lib.load_report(self.out()))
        pub, m = steps["PUBLISH"], steps["SUBSCRIBE"]["messaging"]
        self.assertEqual((pub["requests"], pub["errors"]), (120, 0), pub)
        self.assertEqual((m["lost"], m["duplicate"]), (0, 0), m)
        self.assertGreater(len(left), 40, "the consumer was meant to fall behind\n" + context)
        self.assertEqual(m["queued_at_end"] + m["in_flight_at_end"], len(left), m)
        self.assertEqual(m["consumed"] + len(left), 120, m)
        self.assertIn(f"left on the queue {m['queued_at_end']}", out)
        print(f"\n  consumed {m['consumed']}, left on the queue {len(left)} (report: queued "
              f"{m['queued_at_end']}, in flight {m['in_flight_at_end']})")

    def test_end_to_end_latency_holds_while_a_worker_clock_drifts(self):
        # Worker 0's clock is 300 ms ahead and runs 2 % fast: over this run its offset moves by
        # 100 ms or more, so an offset taken only at the handshake would put its stamps that far
        # off. Re-measured on every heartbeat (with the drift), cross-worker latency stays
        # within the reported bound of the same-worker reference. Producers start after 3 s:
        # the drift is measured from two samples a second apart, and reaches the worker a
        # heartbeat later; until then the offset is taken as constant.
        with broker.Broker() as b, \
                lib.workers(1, extra_args=["--test-clock-skew", "300",
                                           "--test-clock-drift", "20000"]) as w0, \
                lib.workers(1) as w1:
            hosts = os.path.join(self.tmp, "hosts.txt")
            with open(hosts, "w") as f:
                f.write(f"{w0.addresses()[0]}\n{w1.addresses()[0]}\n")
            path = lib.write_scenario(
                self.tmp, queue_scenario(b.url, 4, 2, 60, pause="40ms", duration="8s",
                                         first="3s"))
            rc, out, err = lib.run_master(
                ["--workers", hosts, "--out", self.out(), "--quiet", path], timeout=90)
            context = lib.describe(rc, out, err) + "\n" + w0.stderr() + w1.stderr()
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        workers = {w["id"]: w for w in report["workers"]}
        drifting = workers[0]
        # The offset measured at the handshake, and re-measured since: it moved with the drift.
        self.assertAlmostEqual(drifting["clock_offset_ms"], 300, delta=60, msg=drifting)
        moved = drifting["clock_offset_end_ms"] - drifting["clock_offset_ms"]
        self.assertGreater(moved, 60, drifting)
        self.assertAlmostEqual(drifting["clock_drift_ppm"], 20000, delta=2000, msg=drifting)
        self.assertAlmostEqual(workers[1]["clock_drift_ppm"], 0, delta=2000, msg=workers[1])
        m = lib.steps_by_method(report)["SUBSCRIBE"]["messaging"]
        self.assertEqual(m["consumed"], 120, m)
        same, cross = m["e2e_same_worker_ms"], m["e2e_cross_worker_ms"]
        bound = m["clock_error_bound_ms"]
        self.assertGreater(same["count"], 10, m)
        self.assertGreater(cross["count"], 10, m)
        # The bound is tight enough to mean something: well below what the drift moved.
        self.assertGreater(bound, 0, m)
        self.assertLess(bound, moved / 3, (m, drifting))
        # A wrong offset shifts every message of one direction by the same amount (one way
        # up, the other way below zero, clamped): the middle and the bulk of the cross-worker
        # figures sit within the bound of the reference's (with a few ms for a loaded
        # machine's scheduling; a lone slow message is latency, not clock, so not the max).
        slack_ms = 5.0
        for key in ("p50", "p90", "mean"):
            self.assertLessEqual(abs(cross[key] - same[key]), bound + slack_ms, (key, m))
        print(f"\n  offset {drifting['clock_offset_ms']:.1f} -> "
              f"{drifting['clock_offset_end_ms']:.1f} ms (drift "
              f"{drifting['clock_drift_ppm']:.0f} ppm); bound {bound:.3f} ms; e2e same p50 "
              f"{same['p50']} max {same['max']}, cross p50 {cross['p50']} min {cross['min']} "
              f"max {cross['max']} ms")


if __name__ == "__main__":
    unittest.main(verbosity=2)
