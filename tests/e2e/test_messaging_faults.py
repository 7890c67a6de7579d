"""End to end, messaging faults (issue 17) against a real Debian ActiveMQ (tests/e2e/broker.py):
a broker that goes silent (SIGSTOP) is noticed by STOMP heart-beats and reconnected to after
SIGCONT, or is reconnect_exhausted with a short budget; STOMP over TLS (stomp+ssl) with a
test CA, and a certificate from another CA refused as `tls`; a wrong password is
`unauthorized`; a SEND the broker's authorization refuses is `send_rejected`."""

import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import broker  # noqa: E402
import stampede_testlib as lib  # noqa: E402


def heartbeat_scenario(url, budget, publish_after="8s", duration="12s"):
    """One durable subscriber (5 messages, 30 s to get them) and, after `publish_after`, one
    publisher of 5; heart-beats every 500 ms both ways, tolerance 2."""
    return f"""
        name: heartbeat
        target: http://127.0.0.1:9
        load: {{users: 2, duration: {duration}}}
        messaging:
          urls: [{url}]
          client_id: "hb-{{{{vu}}}}"
          heartbeat: {{send: 500ms, receive: 500ms, tolerance: 2}}
          reconnect: {{delay: 100ms, budget: {budget}}}
        flows:
          - name: subscriber
            users: 1
            steps:
              - subscribe: {{from: "topic://beat", durable: "s-{{{{vu}}}}", receive: 5,
                             timeout: 30s}}
              - think: 600s
          - name: publisher
            users: 1
            steps:
              - think: {publish_after}
              - loop: 5
                steps:
                  - publish: {{to: "topic://beat", body: "after the freeze"}}
              - think: 600s
        """


@unittest.skipUnless(broker.available() and shutil.which("openssl"),
                     "needs Debian's activemq and openssl (deploy/install-deps.sh)")
class MessagingFaultsTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def run_scenario(self, text, timeout=60):
        rc, out, err, context = lib.run_local(self.tmp, text, self.out(), timeout=timeout)
        return rc, lib.load_report(self.out()), context

    def test_a_frozen_broker_is_noticed_by_heartbeats_and_reconnected_after_it_thaws(self):
        freeze_s = 4.0
        with broker.Broker() as b:
            path = lib.write_scenario(self.tmp, heartbeat_scenario(b.url, "15s"))
            proc = lib.start_master(["--out", self.out(), "--quiet", path], self.tmp)
            time.sleep(3.0)  # the subscriber is connected and subscribed
            b.freeze()
            frozen_at = time.monotonic()
            time.sleep(freeze_s)
            b.thaw()
            frozen_for = time.monotonic() - frozen_at
            rc, out, err = lib.finish_master(proc, self.tmp, timeout=60)
            context = lib.describe(rc, out, err)
        report = lib.load_report(self.out())
        self.assertEqual(rc, 0, context)
        self.assertEqual(report["outcome"], "passed", report)
        steps = lib.steps_by_method(report)
        sub = steps["SUBSCRIBE"]["messaging"]
        # Without heart-beats nothing would notice: the TCP connection stays up through a
        # SIGSTOP, and after SIGCONT the same connection goes on (0 reconnects).
        self.assertGreaterEqual(sub["reconnects"], 1, sub)
        self.assertEqual(sub["consumed"], 5, sub)
        self.assertEqual(steps["PUBLISH"]["messaging"]["confirmed"], 5, steps["PUBLISH"])
        # Lost when noticed, back when the broker answered after the thaw: so the reconnect
        # took the freeze minus the time to notice it. Noticed within the window (its
        # heart-beat every 500 ms, times 2) plus a tick and a loaded machine's slack.
        took_s = sub["reconnect_ms"]["max"] / 1000
        window_s = 1.0
        print(f"\n  frozen {frozen_for:.2f}s; reconnect took {took_s:.2f}s "
              f"(so noticed {frozen_for - took_s:.2f}s after the freeze)")
        self.assertGreaterEqual(took_s, frozen_for - window_s - 0.7, sub)
        self.assertLessEqual(took_s, frozen_for + 2.0, sub)

    def test_a_frozen_broker_with_a_budget_shorter_than_the_freeze_is_reconnect_exhausted(self):
        with broker.Broker() as b:
            path = lib.write_scenario(self.tmp, heartbeat_scenario(b.url, "1s", duration="20s"))
            started = time.monotonic()
            proc = lib.start_master(["--out", self.out(), "--quiet", path], self.tmp)
            time.sleep(3.0)
            b.freeze()
            frozen_at_s = time.monotonic() - started
            try:
                rc, out, err = lib.finish_master(proc, self.tmp, timeout=30)
            finally:
                b.thaw()
            elapsed = time.monotonic() - started
            context = lib.describe(rc, out, err)
        report = lib.load_report(self.out())
        self.assertNotEqual(rc, 0, context)
        self.assertEqual(report["outcome"], "halted", report)
        self.assertEqual(report["halt"]["error_kind"], "reconnect_exhausted", report["halt"])
        detail = report["first_error"]["detail"]
        self.assertIn("no frame or heart-beat", detail, detail)
        # Noticed within the window (1 s), then the budget (1 s): long before the run's 20 s.
        self.assertLess(report["halt"]["at_s"], frozen_at_s + 1.0 + 1.0 + 2.5, report["halt"])
        self.assertLess(elapsed, 15, context)

    def test_open_model_publishers_with_heartbeats_end_with_the_run(self):
        # Publishers in the open model's pool keep their session between arrivals; at the end
        # of the run the pool's idle users must close it, or its heart-beat timer keeps the
        # load thread going (the run hung until interrupted).
        with broker.Broker() as b:
            text = f"""
                name: heartbeat-open
                target: http://127.0.0.1:9
                messaging:
                  urls: [{b.url}]
                  client_id: "ho-{{{{vu}}}}"
                  heartbeat: 1s
                flows:
                  - name: subscriber
                    load: {{users: 2, duration: 3s}}
                    steps:
                      - subscribe: {{from: "topic://ho", receive: 5, timeout: 10s}}
                  - name: publisher
                    load: {{rate: 20/s, duration: 3s}}
                    steps:
                      - publish: {{to: "topic://ho", body: "x", confirm: true}}
                """
            started = time.monotonic()
            rc, report, context = self.run_scenario(text, timeout=30)
            took = time.monotonic() - started
        print(f"\n  3 s of load with heart-beats: the master ended after {took:.1f} s")
        self.assertEqual(rc, 0, context)
        self.assertLess(took, 15, context)
        steps = lib.steps_by_method(report)
        published = steps["PUBLISH"]["messaging"]["confirmed"]
        self.assertEqual(published, steps["PUBLISH"]["requests"], steps["PUBLISH"])
        self.assertAlmostEqual(published, 60, delta=3, msg=steps["PUBLISH"])
        self.assertEqual(steps["SUBSCRIBE"]["errors"], 0, steps["SUBSCRIBE"])

    def tls_scenario(self, b, ca_name, client_cert=False):
        shutil.copy(b.pki[ca_name], os.path.join(self.tmp, "ca.pem"))
        tls = "{ca: ca.pem}"
        if client_cert:
            shutil.copy(b.pki["client_cert"], os.path.join(self.tmp, "client.pem"))
            shutil.copy(b.pki["client_key"], os.path.join(self.tmp, "client.key"))
            tls = "{ca: ca.pem, cert: client.pem, key: client.key}"
        return f"""
            name: tls
            target: http://127.0.0.1:9
            load: {{users: 2, duration: 4s}}
            messaging:
              urls: [{b.ssl_url.replace("ssl://", "stomp+ssl://")}]
              client_id: "t-{{{{vu}}}}"
              tls: {tls}
            flows:
              - name: subscriber
                users: 1
                steps:
                  - subscribe: {{from: "topic://secure", durable: "s-{{{{vu}}}}", receive: 10,
                                 timeout: 10s, expect: {{body_contains: "secret"}}}}
                  - think: 600s
              - name: publisher
                users: 1
                steps:
                  - think: 1500ms
                  - loop: 10
                    steps:
                      - publish: {{to: "topic://secure", body: "secret {{{{iteration}}}}"}}
                  - think: 600s
            """

    def test_a_round_trip_over_tls_with_the_test_ca(self):
        with broker.Broker(tls=True) as b:
            rc, report, context = self.run_scenario(self.tls_scenario(b, "ca"))
        self.assertEqual(rc, 0, context)
        self.assertEqual(report["outcome"], "passed", report)
        steps = lib.steps_by_method(report)
        self.assertEqual(steps["PUBLISH"]["messaging"]["confirmed"], 10, steps["PUBLISH"])
        self.assertEqual(steps["SUBSCRIBE"]["messaging"]["consumed"], 10, steps["SUBSCRIBE"])
        self.assertEqual(steps["SUBSCRIBE"]["errors"], 0, steps["SUBSCRIBE"])

    def test_a_certificate_from_another_ca_is_a_tls_error(self):
        with broker.Broker(tls=True) as b:
            rc, report, context = self.run_scenario(self.tls_scenario(b, "other_ca"))
        self.assertNotEqual(rc, 0, context)
        self.assertEqual(report["outcome"], "halted", report)
        self.assertEqual(report["halt"]["error_kind"], "tls", report["halt"])
        detail = report["first_error"]["detail"]
        self.assertIn("certificate verify failed", detail, detail)
        self.assertIn("stomp+ssl://127.0.0.1:", detail, detail)

    def test_a_broker_that_wants_a_client_certificate_gets_ours_or_refuses_the_session(self):
        with broker.Broker(client_auth=True) as b:
            rc, report, context = self.run_scenario(self.tls_scenario(b, "ca", client_cert=True))
            self.assertEqual(rc, 0, context)
            steps = lib.steps_by_method(report)
            self.assertEqual(steps["SUBSCRIBE"]["messaging"]["consumed"], 10, steps["SUBSCRIBE"])
            # Without one: refused, said as a TLS error at the first connect.
            rc, report, context = self.run_scenario(self.tls_scenario(b, "ca"))
        self.assertNotEqual(rc, 0, context)
        self.assertEqual(report["halt"]["error_kind"], "tls", report["first_error"])
        print(f"\n  without a client certificate: {report['first_error']['detail']}")

    def auth_scenario(self, b, password, topic):
        return f"""
            name: auth
            target: http://127.0.0.1:9
            load: {{users: 1, duration: 3s}}
            messaging:
              urls: [{b.url}]
              user: app
              password: {password}
            flows:
              - steps:
                  - publish: {{to: "topic://{topic}", body: "hello", confirm: true}}
            """

    def test_a_wrong_password_is_unauthorized(self):
        with broker.Broker(users={"app": "right"}) as b:
            rc, report, context = self.run_scenario(self.auth_scenario(b, "wrong", "open"))
        self.assertNotEqual(rc, 0, context)
        self.assertEqual(report["halt"]["error_kind"], "unauthorized", report["halt"])
        self.assertEqual(report["first_error"]["error_kind"], "unauthorized", report["first_error"])
        detail = report["first_error"]["detail"]
        self.assertIn("password is invalid", detail, detail)
        self.assertEqual(lib.steps_by_method(report)["PUBLISH"]["messaging"]["confirmed"], 0, report)

    def test_a_send_the_broker_does_not_authorize_is_send_rejected(self):
        with broker.Broker(users={"app": "right"}, writable_topics=["open"]) as b:
            # The same login may write elsewhere: the refusal is the destination's.
            rc, report, context = self.run_scenario(self.auth_scenario(b, "right", "open"))
            self.assertEqual(rc, 0, context)
            self.assertGreater(lib.steps_by_method(report)["PUBLISH"]["messaging"]["confirmed"], 0)
            rc, report, context = self.run_scenario(self.auth_scenario(b, "right", "locked"))
        self.assertNotEqual(rc, 0, context)
        self.assertEqual(report["halt"]["error_kind"], "send_rejected", report["halt"])
        first = report["first_error"]
        self.assertEqual(first["error_kind"], "send_rejected", first)
        # The broker's own words.
        self.assertIn("not authorized to write to: topic://locked", first["detail"], first)


if __name__ == "__main__":
    unittest.main(verbosity=2)
