"""End to end, the halt proof (issue 10): `halt.requests_sent_after_first_error` counts what
the cluster really sent after the first error, checked against the fault target's own log.

Several worker daemons load the target at full speed; after a warm-up, worker 0's requests
answer 500 and the others' never do: worker 0 halts at once, the others keep sending until the
master's Halt reaches them. On loopback that takes well under a millisecond, and on a busy
two-core machine the halt's own work (worker 0, the master, every control thread) often starves
the load threads for all of it, so that nobody sends after the first error at all: an honest 0
that proves nothing. The master therefore reaches the workers through a relay that holds its
bytes for CONTROL_DELAY_S once the handshake is over (a control plane across a WAN): the Halt
arrives that much later, the others send for that long, and the clock offsets were measured
before the delay, so their error bound stays that of loopback. The report's figure (each worker's send stamps counted against the
first error's moment, put on its clock with its measured offset) must be above 0 and match what
the target received after that moment (`halt.first_error_monotonic_ns`): master, workers and
target run on one host and stamp with the same CLOCK_MONOTONIC.

Tolerance. A worker stamps a send just before it writes the request; the target stamps receipt
once it has read it, later. The two counts differ by
* requests sent before the moment and received after it: in flight at the moment, so at most
  one per virtual user other than the failing one (users - 1), whatever the machine's load;
* requests sent after the moment that the target never read (cancelled by the halt before
  their bytes went out): at most `halt.cancelled`;
* sends closer to the moment than the clock error bound, which may fall on either side: at most
  the cluster's request rate times twice `clock_error_ms` (about nothing on loopback).
So: -cancelled - slack <= target - report <= users - 1 + slack.

STAMPEDE_HALT_PROOF_WORKERS (e.g. "3,8") and STAMPEDE_HALT_PROOF_RUNS repeat it for figures.
"""

import os
import socket
import sys
import textwrap
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

USERS_PER_WORKER = 6
WARM_UP = 2000  # requests of each user before its first /fail-after: past DELAY_AFTER_S
CONTROL_DELAY_S = 0.02     # master -> worker bytes, once the relay has been up this long:
DELAY_AFTER_S = 0.2        # the handshake (clock samples) is over by then on loopback


class DelayRelay:
    """Forwards 127.0.0.1:port to a worker daemon's port. Bytes from the master to the worker
    are held CONTROL_DELAY_S once DELAY_AFTER_S has passed since the connection was accepted;
    the other direction is not delayed. Loopback only; stopped by close()."""

    def __init__(self, worker_port):
        self.worker_port = worker_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((lib.LOOPBACK, 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.sockets = [self.listener]
        self.delayed_from_ns = None  # time.monotonic_ns() from which the delay applies
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection((lib.LOOPBACK, self.worker_port))
            self.sockets += [client, server]
            accepted = time.monotonic()
            self.delayed_from_ns = time.monotonic_ns() + int(DELAY_AFTER_S * 1e9)
            threading.Thread(target=self._pipe, args=(client, server, accepted),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, None), daemon=True).start()

    def _pipe(self, source, sink, delayed_after):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if delayed_after is not None and time.monotonic() - delayed_after > DELAY_AFTER_S:
                    time.sleep(CONTROL_DELAY_S)  # holds what follows too: order is kept
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


def target_count_from(entries, moment_ns):
    """Requests the target received at or after `moment_ns` (its steady clock)."""
    return sum(1 for e in entries if e[5] >= moment_ns)


class HaltProofTest(lib.TempDirTestCase, unittest.TestCase):
    def run_once(self, worker_count, run):
        users = USERS_PER_WORKER * worker_count
        with lib.fault_target() as target, lib.workers(worker_count) as ws:
            relays = [DelayRelay(d.port) for d in ws.daemons]
            self.addCleanup(lambda: [r.close() for r in relays])
            hosts = ws.write_hosts([f"{lib.LOOPBACK}:{r.port}" for r in relays],
                                   name=f"relayed-{worker_count}-{run}.txt")
            path = lib.write_scenario(self.tmp, textwrap.dedent(f"""\
                name: e2e-halt-proof
                target: {target.url}
                load:
                  users: {users}
                  duration: 20s
                halt:
                  on_error: first
                flows:
                  - name: pool
                    steps:
                      - loop: {WARM_UP}
                        steps:
                          - get: /ok
                            name: ok
                      # Worker 0: /fail-after/0, its first one fails. The others: a limit of
                      # millions that the run never reaches.
                      - get: "/fail-after/{{{{worker_index}}}}000000"
                        name: fail-after
                """), name=f"proof-{worker_count}-{run}.yaml")
            out_dir = os.path.join(self.tmp, f"out-{worker_count}-{run}")
            rc, out, err = lib.run_master(["--workers", hosts, "--out", out_dir,
                                           path], timeout=60)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            # Let the target write its last lines (answers to requests already read).
            time.sleep(0.3)
            entries = target.log_entries_ns()

        self.assertEqual(rc, 1, context)
        lib.assert_no_crash(self, err, context)
        report = lib.load_report(out_dir)
        halt = lib.assert_halted(self, report, 1, "first_error")
        self.assertEqual(report["first_error"]["status"], 500, report["first_error"])
        self.assertEqual(halt["worker"], report["first_error"]["worker"], halt)

        measured = halt["requests_sent_after_first_error"]
        moment_ns = halt["first_error_monotonic_ns"]
        self.assertIsInstance(moment_ns, int, halt)
        # time.monotonic_ns() is CLOCK_MONOTONIC too: the error came once the Halt was delayed.
        delayed_from = max(r.delayed_from_ns or 0 for r in relays)
        self.assertGreater(moment_ns, delayed_from,
                           "the first error came before the control-plane delay began: "
                           "raise WARM_UP")
        logged = target_count_from(entries, moment_ns)
        failures = [e for e in entries if e[4] == 500]
        self.assertTrue(failures, "the target never answered 500")
        # The failing response left the target before the worker saw it: the moment is after it.
        first_500 = min(failures, key=lambda e: e[5])
        self.assertGreaterEqual(moment_ns, first_500[6] - 1e6 * halt["clock_error_ms"], halt)
        per_worker = {w["id"]: (w["requests_sent_after_first_error"], w["stop_ms"])
                      for w in report["workers"]}
        rate = report["totals"]["rps"]
        slack = int(rate * 2 * halt["clock_error_ms"] / 1000) + 1
        low, high = -halt["cancelled"] - slack, users - 1 + slack
        print(f"\n  {worker_count} workers, {users} users: requests_sent_after_first_error "
              f"{measured}, target from that moment {logged} (allowed difference {low}..{high}),"
              f" cancelled {halt['cancelled']}, clock_error_ms {halt['clock_error_ms']:.4f}, "
              f"all_stopped_ms {halt['all_stopped_ms']:.2f}, per worker (sent, stop_ms) "
              f"{per_worker}")
        self.assertEqual(len(report["workers"]), worker_count, report["workers"])
        for w in report["workers"]:
            self.assertIsNotNone(w["requests_sent_after_first_error"], w)
            self.assertIsNotNone(w["stop_ms"], w)
        # The other workers sent until the Halt reached them: a real, non-zero count ...
        self.assertGreater(measured, 0, halt)
        # ... that matches the target's count (see the module docstring for the tolerance).
        self.assertGreaterEqual(logged - measured, low, f"report {measured} vs target {logged}")
        self.assertLessEqual(logged - measured, high, f"report {measured} vs target {logged}")
        # The clock error bound is that of loopback round trips: well under a millisecond.
        self.assertLess(halt["clock_error_ms"], 5, halt)
        # The console says it too.
        self.assertIn(f"requests sent after the first error: {measured} ", out, out)
        return measured, logged

    def test_sends_after_the_first_error_match_the_targets_count(self):
        counts = [int(n) for n in os.environ.get("STAMPEDE_HALT_PROOF_WORKERS", "3").split(",")]
        runs = int(os.environ.get("STAMPEDE_HALT_PROOF_RUNS", "1"))
        for worker_count in counts:
            for run in range(runs):
                with self.subTest(workers=worker_count, run=run):
                    self.run_once(worker_count, run)


# wire.HaltReason (proto/stampede.proto)
HALT_REASON_FIRST_ERROR = 1
HALT_REASON_LOST = 8


class HaltReasonTest(lib.TempDirTestCase, unittest.TestCase):
    """The worker acts on Halt.reason: the master speaks to one worker daemon by hand here."""

    def start_run(self, peer, target_url, run_id):
        """Probe, Welcome (offset 0: one host, one clock), Prepare, Start now: a running worker
        loading the target. Returns the next sequence number."""
        peer.send(lib.pb_envelope("probe", lib.pb_field(1, time.monotonic_ns()), seq=1))
        welcome = lib.pb_field(1, 0) + lib.pb_field(2, 1) + lib.pb_field(4, 3000)
        peer.send(lib.pb_envelope("welcome", welcome, run_id=run_id, seq=2))
        yaml = (f"name: reasons\ntarget: {target_url}\nload: {{users: 2, duration: 20s}}\n"
                "flows: [{name: f, steps: [{get: /ok}]}]\n")
        prepare = lib.pb_field(1, yaml) + lib.pb_field(2, "reasons.yaml") + lib.pb_field(4, 2)
        peer.send(lib.pb_envelope("prepare", prepare, run_id=run_id, seq=3))
        self.assertEqual(self.wait_for(peer, "ready", 5), {}, "no Ready")
        start = lib.pb_field(1, time.monotonic_ns() + 20_000_000)
        peer.send(lib.pb_envelope("start", start, run_id=run_id, seq=4))
        return 5

    def wait_for(self, peer, wanted, timeout):
        """The body fields of the next `wanted` message, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = peer.recv(timeout=max(0.05, deadline - time.monotonic()))
            if frames:
                name, body = lib.pb_body(frames[-1])
                if name == wanted:
                    return body
        return None

    def test_a_halt_on_an_error_ends_with_a_final_that_counts_from_its_moment(self):
        with lib.fault_target() as target, lib.workers(1) as ws:
            peer = lib.ZmtpDealer(ws[0].port)
            try:
                seq = self.start_run(peer, target.url, 11)
                time.sleep(0.5)
                moment_ns = time.monotonic_ns() - 200_000_000  # 200 ms ago: counted backwards
                halt = (lib.pb_field(2, HALT_REASON_FIRST_ERROR) +
                        lib.pb_field(3, moment_ns))
                peer.send(lib.pb_envelope("halt", halt, run_id=11, seq=seq))
                final = self.wait_for(peer, "final", 5)
            finally:
                peer.close()
            time.sleep(0.2)
            logged = sum(1 for e in target.log_entries_ns() if e[5] >= moment_ns)
            context = ws.stderr()
        self.assertIsNotNone(final, "no Final after a Halt\n" + context)
        self.assertIn(5, final, f"the Final has no sent_after_first_error: {final}")
        sent = lib.pb_decode(final[5][0])
        counted = sent.get(1, [0])[0]
        # 2 users: at most one request each in flight at the moment, one cancelled each.
        self.assertGreater(counted, 0, sent)
        self.assertLessEqual(abs(logged - counted), 2, (counted, logged))

    def test_a_worker_declared_lost_stops_and_is_free_at_once_without_a_final(self):
        with lib.fault_target() as target, lib.workers(1) as ws:
            peer = lib.ZmtpDealer(ws[0].port)
            try:
                seq = self.start_run(peer, target.url, 12)
                time.sleep(0.3)
                peer.send(lib.pb_envelope("halt", lib.pb_field(2, HALT_REASON_LOST), run_id=12,
                                          seq=seq))
                final = self.wait_for(peer, "final", 1.5)
            finally:
                peer.close()
            time.sleep(0.2)
            before = target.count()
            # Another master is served at once: no Busy.
            other = lib.ZmtpDealer(ws[0].port)
            try:
                other.send(lib.pb_envelope("probe", lib.pb_field(1, time.monotonic_ns()), seq=1))
                frames = other.recv(timeout=3)
            finally:
                other.close()
            time.sleep(0.3)
            after = target.count()
            logged = ws[0].stderr()
        self.assertIsNone(final, "a worker declared lost sent a Final")
        self.assertIn("declared this worker lost", logged)
        self.assertIsNotNone(frames, "no answer to the next master's Probe")
        self.assertEqual(lib.pb_body(frames[-1])[0], "hello", lib.pb_body(frames[-1]))
        self.assertEqual(after, before, "the lost worker kept loading the target")


if __name__ == "__main__":
    unittest.main()
