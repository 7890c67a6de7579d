"""Messages per client CPU-second over STOMP against a private Debian ActiveMQ (issue 17).

    STAMPEDE_BIN=build/bin python3 tests/bench/messaging.py [DURATION_S]

Runs the master with its embedded worker (one load thread) and reads its CPU time from
getrusage(RUSAGE_CHILDREN): (1) publishers with receipts, flat out; (2) the same plus topic
subscribers (fan-out), whose extra CPU is the consume cost; (3) for comparison, on the same
broker in the same run, ActiveMQ's bundled `activemq producer` (OpenWire, persistent: each send
waits for the broker, as a receipt does) and `activemq consumer`, with their JVM's CPU time
the same way (JVM start-up included, so give it enough messages). Figures are rough on a
shared machine; the broker, not the client, is usually the limit here."""

import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time

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


def activemq_tool(args):
    """Runs `activemq producer|consumer ARGS` (Debian's jar): (client CPU s, wall s, output)."""
    # Its counts go to log4j, which has no configuration of its own here.
    log4j = os.path.join(tempfile.mkdtemp(prefix="stampede-bench-"), "log4j.properties")
    with open(log4j, "w") as f:
        f.write("log4j.rootLogger=INFO, out\n"
                "log4j.appender.out=org.apache.log4j.ConsoleAppender\n"
                "log4j.appender.out.layout=org.apache.log4j.PatternLayout\n"
                "log4j.appender.out.layout.ConversionPattern=%m%n\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(["java", "-Xmx256m", "-Dactivemq.home=/usr/share/activemq",
                          "-Dlog4j.configuration=file:" + log4j, "-jar", broker.ACTIVEMQ_JAR,
                          *args], capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, out.stdout + out.stderr


def compare_with_activemq_tools(b, count):
    """Publish `count` persistent messages with 4 producer threads, then consume them from a
    queue with 4 consumer threads: messages per client CPU-second of each JVM."""
    per_thread = count // 4
    common = ["--brokerUrl", b.openwire_url, "--destination", "queue://benchjava",
              "--parallelThreads", "4", "--messageCount", str(per_thread)]
    # The JVM's start-up and a connection, measured apart: one message, produced and consumed.
    one = ["--brokerUrl", b.openwire_url, "--destination", "queue://benchjava-startup",
           "--messageCount", "1"]
    startup = (activemq_tool(["producer", *one])[0] + activemq_tool(["consumer", *one])[0]) / 2
    cpu, wall, out = activemq_tool(["producer", *common, "--persistent", "true",
                                    "--textMessageSize", "16"])
    produced = out.count("Produced: %d messages" % per_thread) * per_thread
    print(f"activemq producer (OpenWire, persistent, 4 threads): {produced} in {wall:.1f}s, "
          f"client CPU {cpu:.2f}s: {produced / cpu:.0f} msg per CPU-second; less the JVM's "
          f"start-up ({startup:.2f}s): {produced / max(1e-3, cpu - startup):.0f}")
    cpu, wall, out = activemq_tool(["consumer", *common])
    consumed = out.count("Consumed: %d messages" % per_thread) * per_thread
    print(f"activemq consumer (4 threads): {consumed} in {wall:.1f}s, client CPU {cpu:.2f}s: "
          f"{consumed / cpu:.0f} msg per CPU-second; less the JVM's start-up: "
          f"{consumed / max(1e-3, cpu - startup):.0f}")
    if produced != 4 * per_thread or consumed != 4 * per_thread:
        print("  (the tool did not report every message; its output ends: %s)" % out[-400:])


def main():
    duration = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with broker.Broker("bench", openwire=True) as b:
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
        compare_with_activemq_tools(b, int(os.environ.get("BENCH_JAVA_MESSAGES", "20000")))


if __name__ == "__main__":
    main()
