"""A private Debian ActiveMQ for one test: its own temporary base directory, a free loopback
STOMP port, -Xmx128m, JMX and advisories off; stopped by its PID. Python stdlib only."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ACTIVEMQ_JAR = "/usr/share/activemq/bin/activemq.jar"

_CONFIG = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="{name}"
          dataDirectory="{data}" useJmx="false" advisorySupport="false" persistent="true">
    <persistenceAdapter><kahaDB directory="{data}/kahadb"/></persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>
    </transportConnectors>
  </broker>
</beans>
"""


def available():
    return os.path.exists(ACTIVEMQ_JAR) and shutil.which("java") is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """with Broker() as b: b.port, b.url ("tcp://127.0.0.1:PORT")."""

    def __init__(self, name="fx"):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="stampede-amq-")
        self.port = free_port()
        self.url = "tcp://127.0.0.1:%d" % self.port
        self.proc = None
        self.started_in_s = None

    def start(self, timeout=60):
        conf = os.path.join(self.dir, "conf")
        data = os.path.join(self.dir, "data")
        os.makedirs(conf)
        os.makedirs(data)
        with open(os.path.join(conf, "activemq.xml"), "w") as f:
            f.write(_CONFIG.format(name=self.name, data=data, port=self.port))
        self.log = open(os.path.join(self.dir, "broker.log"), "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["java", "-Xms64m", "-Xmx128m", "-XX:TieredStopAtLevel=1",
             "-Dactivemq.home=/usr/share/activemq", "-Dactivemq.base=" + self.dir,
             "-Dactivemq.conf=" + conf, "-Dactivemq.data=" + data,
             "-Djava.io.tmpdir=" + data,
             "-jar", ACTIVEMQ_JAR, "start", "xbean:file:" + os.path.join(conf, "activemq.xml")],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("activemq exited with %d: %s" % (self.proc.returncode, self.tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    self.started_in_s = time.monotonic() - t0
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("activemq did not open its port in %ds: %s" % (timeout, self.tail()))

    def tail(self):
        try:
            with open(os.path.join(self.dir, "broker.log"), "rb") as f:
                return f.read()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
