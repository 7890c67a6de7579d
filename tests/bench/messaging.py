"""Messages per client CPU-second over STOMP against a private Debian ActiveMQ (issue 17).

    STAMPEDE_BIN=build/bin python3 tests/bench/messaging.py [DURATION_S]

Runs the master with its embedded worker (one load thread) and reads its CPU time from
getrusage(RUSAGE_CHILDREN): (1) publishers with receipts, flat out; (2) the same plus topic
subscribers (fan-out), whose extra CPU is the consume cost. Figures are rough on a shared
machine; the broker, not the client, is usually the limit here."""

import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import broker  # noqa: E402

BIN = os.environ.get("STAMPEDE_BIN", "build/bin")


def run(url, publishers, subscribers, duration):
    flows = f"""
      - name: publisher
        users: {publishers}
        steps:
          - think: 1s
          - loop: 1000000
            steps:
              - publish: {{to: "topic://bench", body: "order {{{{iteration}}}}", confirm: true}}
    """
    if subscribers:
        flows = f"""
      - name: subscriber
        users: {subscribers}
        steps:
          - subscribe: {{from: "topic://bench", receive: 100, timeout: 5s}}
    """ + flows
    text = textwrap.dedent(f"""
    name: bench
    target: http://127.0.0.1:9
    load: {{users: {publishers + subscribers}, duration: {duration}s}}
    messaging: {{urls: [{url}], client_id: "b-{{{{vu}}}}"}}
    flows:
    """) + textwrap.indent(textwrap.dedent(flows), "")
    d = tempfile.mkdtemp(prefix="stampede-bench-")
    path = os.path.join(d, "s.yaml")
    with open(path, "w") as f:
        f.write(text)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([os.path.join(BIN, "master"), "--threads", "1", "--quiet", "--out", d, path],
                   check=False, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(os.path.join(d, "report.json")) as f:
        report = json.load(f)
    steps = {s["method"]: s for s in report["steps"]}
    return cpu, steps, report["outcome"]


def main():
    duration = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with broker.Broker("bench") as b:
        cpu, steps, outcome = run(b.url, 4, 0, duration)
        published = steps["PUBLISH"]["requests"]
        pub_rate = published / cpu
        print(f"publish with receipts: {published} in {duration - 1}s, client CPU {cpu:.2f}s: "
              f"{pub_rate:.0f} msg per CPU-second; send->receipt p50 "
              f"{steps['PUBLISH']['messaging']['publish_ms']['p50']} ms ({outcome})")
        cpu, steps, outcome = run(b.url, 4, 4, duration)
        published = steps["PUBLISH"]["requests"]
        consumed = steps["SUBSCRIBE"]["requests"]
        consume_cpu = max(1e-6, cpu - published / pub_rate)
        print(f"consume (4 topic subscribers): {consumed} consumed, {published} published, "
              f"client CPU {cpu:.2f}s, of it consume ~{consume_cpu:.2f}s: "
              f"{consumed / consume_cpu:.0f} msg per CPU-second; e2e p50 "
              f"{steps['SUBSCRIBE']['messaging']['e2e_from_sent_ms']['p50']} ms ({outcome})")


if __name__ == "__main__":
    main()
