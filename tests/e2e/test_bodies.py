"""End to end, response bodies (issue 11, points 1 and 3): a target that declares a huge
Content-Length and then goes silent does not wedge the run (the request times out, or fails at
once with `body_too_large` when the step reads the body); a download larger than `http.max_body`
passes when nothing reads it, with every byte counted; an endless body nobody reads keeps the
master's memory small. Each on both engines, against a small Python target on 127.0.0.1 that
counts what it sends."""

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

ENGINES = ("beast", "curl")
SIZE_HEAD = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n"


class BodyTarget:
    """Routes: /huge-length (declares 10^12 bytes, sends 3, then nothing), /endless (a chunked
    body without end), /size/N (N bytes of 'x'). Keep-alive; one thread per connection.
    `completed` counts finished /size responses and `sent` the bytes of all of them."""

    def __init__(self):
        self.listener = socket.create_server((lib.LOOPBACK, 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://{lib.LOOPBACK}:{self.port}"
        self.lock = threading.Lock()
        self.completed = 0
        self.sent = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stopping = True
        self.listener.close()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        pending = b""
        try:
            while not self.stopping:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                head, pending = pending.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode()
                if path == "/huge-length":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nabc")
                    while conn.recv(65536):  # silent until the client goes
                        pass
                    return
                if path == "/endless":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    chunk = b"10000\r\n" + b"e" * 65536 + b"\r\n"
                    while not self.stopping:
                        conn.sendall(chunk)
                    return
                size = int(path[len("/size/"):])
                head = SIZE_HEAD.format(size).encode()
                conn.sendall(head)
                piece = b"x" * (1 << 20)
                left = size
                while left > 0:
                    conn.sendall(piece[:min(left, len(piece))])
                    left -= min(left, len(piece))
                with self.lock:
                    self.completed += 1
                    self.sent += len(head) + size
        except OSError:
            return
        finally:
            conn.close()


class PeakMemory:
    """Polls a process's VmHWM (peak resident set, bytes) until it exits."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        while True:
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except OSError:
                return
            time.sleep(0.02)


def scenario(url, engine, path, users, duration, timeout, on_error="first", expect=None,
             max_body=None):
    lines = ["name: e2e-bodies", f"target: {url}", "load:", f"  users: {users}",
             f"  duration: {duration}", "halt:", f"  on_error: {on_error}", "http:",
             f"  engine: {engine}", f"  timeout: {timeout}"]
    if max_body:
        lines.append(f"  max_body: {max_body}")
    lines += ["flows:", "  - name: f", "    steps:", f"      - get: {path}", "        name: body"]
    if expect:
        lines.append(f"        expect: {expect}")
    return "\n".join(lines) + "\n"


class BodiesTest(lib.TempDirTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.target = BodyTarget()
        self.addCleanup(self.target.close)

    def run_scenario(self, text, name, timeout=30):
        out_dir = os.path.join(self.tmp, name)
        started = time.monotonic()
        rc, out, err, context = lib.run_local(self.tmp, text, out_dir, timeout=timeout,
                                              name=name + ".yaml")
        elapsed = time.monotonic() - started
        lib.assert_no_crash(self, err, context)
        return rc, lib.load_report(out_dir), elapsed, context

    def test_a_huge_content_length_then_silence_does_not_wedge_the_run(self):
        for engine in ENGINES:
            with self.subTest(engine=engine):
                # Nothing reads the body: it is counted as it comes, until http.timeout.
                rc, report, elapsed, context = self.run_scenario(
                    scenario(self.target.url, engine, "/huge-length", 1, "3s", "1s"),
                    f"unread-{engine}")
                self.assertEqual(rc, 1, context)
                halt = lib.assert_halted(self, report, 1, "first_error")
                self.assertEqual(halt["error_kind"], "timeout", halt)
                self.assertLess(elapsed, 6, context)

                # The step reads it: over http.max_body at once, whatever the timeout.
                rc, report, elapsed, context = self.run_scenario(
                    scenario(self.target.url, engine, "/huge-length", 1, "3s", "20s",
                             expect="{body_contains: abc}"), f"read-{engine}")
                self.assertEqual(rc, 1, context)
                halt = lib.assert_halted(self, report, 1, "first_error")
                self.assertEqual(halt["error_kind"], "body_too_large", halt)
                self.assertLess(halt["at_s"], 1.0, halt)
                first = report["first_error"]
                self.assertEqual(first["error_kind"], "body_too_large", first)
                self.assertIn("http.max_body", first["detail"], first)
                # The head did arrive: the report shows what the target declared.
                self.assertEqual(lib.headers_as_dict(first["headers"]).get("content-length"),
                                 "1000000000000", first)
                self.assertLess(elapsed, 6, context)

    def test_a_download_over_max_body_passes_when_nothing_reads_it(self):
        size = 8 << 20
        for engine in ENGINES:
            with self.subTest(engine=engine):
                with self.target.lock:
                    self.target.completed = self.target.sent = 0
                rc, report, _, context = self.run_scenario(
                    scenario(self.target.url, engine, f"/size/{size}", 2, "2s", "5s",
                             max_body="1MiB"), f"download-{engine}")
                self.assertEqual(rc, 0, context)
                totals = report["totals"]
                self.assertEqual(totals["errors"], 0, totals)
                self.assertGreater(totals["requests"], 2, totals)
                time.sleep(0.2)  # the target counts a response once its last send returned
                with self.target.lock:
                    self.assertEqual(totals["requests"], self.target.completed, totals)
                    self.assertEqual(totals["bytes_in"], self.target.sent, totals)

                rc, report, _, context = self.run_scenario(
                    scenario(self.target.url, engine, f"/size/{size}", 2, "2s", "5s",
                             max_body="1MiB", expect="{body_contains: x}"), f"read-{engine}")
                self.assertEqual(rc, 1, context)
                halt = lib.assert_halted(self, report, 1, "first_error")
                self.assertEqual(halt["error_kind"], "body_too_large", halt)

    def test_an_endless_body_nobody_reads_keeps_the_master_small(self):
        for engine in ENGINES:
            with self.subTest(engine=engine):
                text = scenario(self.target.url, engine, "/endless", 5, "3s", "1500ms",
                                on_error="never")
                path = lib.write_scenario(self.tmp, text, name=f"endless-{engine}.yaml")
                out_dir = os.path.join(self.tmp, f"endless-{engine}")
                proc = lib.start_master(["--out", out_dir, "--quiet", path], self.tmp)
                memory = PeakMemory(proc.pid)
                rc, out, err = lib.finish_master(proc, self.tmp, 20)
                context = lib.describe(rc, out, err)
                memory.thread.join(1)
                self.assertEqual(rc, 0, context)
                report = lib.load_report(out_dir)
                totals = report["totals"]
                print(f"\n{engine}: endless body, 5 users: master VmHWM "
                      f"{memory.peak / 2**20:.0f} MiB, {totals['bytes_in'] / 2**20:.0f} MiB "
                      f"received", file=sys.stderr)
                # Every request ran to its timeout, streaming all the while.
                self.assertEqual(set(totals["errors_by_kind"]), {"timeout"}, totals)
                self.assertGreater(totals["bytes_in"], 200 << 20, totals)
                self.assertLess(memory.peak, 150 << 20, totals)


if __name__ == "__main__":
    unittest.main()
