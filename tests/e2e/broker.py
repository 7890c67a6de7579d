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
    <persistenceAdapter>{store}</persistenceAdapter>
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


# A store that two brokers share, as a master and a standby: the first to lock it serves; the
# other opens no port until the lock is free, trying every second.
_SHARED_STORE = ('<kahaDB directory="{path}" lockKeepAlivePeriod="0"><locker>'
                 '<shared-file-locker lockAcquireSleepInterval="1000"/></locker></kahaDB>')


class Broker:
    """with Broker() as b: b.port, b.url ("tcp://127.0.0.1:PORT").

    shared_store: a KahaDB directory shared with another Broker (a failover pair); then
    start(wait=False) starts a standby without waiting for its port."""

    def __init__(self, name="fx", shared_store=None):
        self.name = name
        self.shared_store = shared_store
        self.dir = tempfile.mkdtemp(prefix="stampede-amq-")
        self.port = free_port()
        self.url = "tcp://127.0.0.1:%d" % self.port
        self.proc = None
        self.started_in_s = None

    def start(self, timeout=60, wait=True):
        conf = os.path.join(self.dir, "conf")
        data = os.path.join(self.dir, "data")
        os.makedirs(conf)
        os.makedirs(data)
        with open(os.path.join(conf, "activemq.xml"), "w") as f:
            store = (_SHARED_STORE.format(path=self.shared_store) if self.shared_store
                     else '<kahaDB directory="%s/kahadb"/>' % data)
            f.write(_CONFIG.format(name=self.name, data=data, port=self.port, store=store))
        self.log = open(os.path.join(self.dir, "broker.log"), "wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["java", "-Xms64m", "-Xmx128m", "-XX:TieredStopAtLevel=1",
             "-Dactivemq.home=/usr/share/activemq", "-Dactivemq.base=" + self.dir,
             "-Dactivemq.conf=" + conf, "-Dactivemq.data=" + data,
             "-Djava.io.tmpdir=" + data,
             "-jar", ACTIVEMQ_JAR, "start", "xbean:file:" + os.path.join(conf, "activemq.xml")],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if not wait:
            return self
        return self.wait_port(timeout, t0)

    def wait_port(self, timeout=60, t0=None):
        t0 = t0 if t0 is not None else time.monotonic()
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

    def kill(self):
        """SIGKILL by PID: a crash, for failover."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

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
