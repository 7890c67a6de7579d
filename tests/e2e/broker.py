"""A private Debian ActiveMQ for one test: its own temporary base directory, a free loopback
STOMP port, -Xmx128m, JMX and advisories off; stopped by its PID. Python stdlib only.

Optional: users with passwords (simpleAuthenticationPlugin) and the only topics they may write
to (authorizationPlugin); a stomp+ssl connector with a test CA made by openssl; freeze() and
thaw() (SIGSTOP, SIGCONT) for a broker that goes silent without closing anything."""

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
    {plugins}{ssl_context}
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:{port}"/>{ssl_connector}{openwire}
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


_SSL_CONTEXT = """
    <sslContext><sslContext keyStore="file:{keystore}" keyStorePassword="{password}"
                            keyStoreType="PKCS12"{trust}/></sslContext>"""
_SSL_TRUST = ' trustStore="file:{truststore}" trustStorePassword="{password}" trustStoreType="PKCS12"'
_SSL_CONNECTOR = """
      <transportConnector name="stomp+ssl" uri="stomp+ssl://127.0.0.1:{port}{query}"/>"""


_OPENWIRE_CONNECTOR = """
      <transportConnector name="openwire" uri="tcp://127.0.0.1:{port}"/>"""


def _auth_plugins(users, writable_topics):
    """Every user in group "users", which may do anything but write to topics other than
    writable_topics (None: every topic). ActiveMQ grants what any matching entry grants, so
    ">" itself must not grant the write."""
    everyone = writable_topics is None
    entries = ['<authorizationEntry queue=">" read="users" write="users" admin="users"/>',
               '<authorizationEntry topic=">" read="users" write="%s" admin="users"/>'
               % ("users" if everyone else "nobody")]
    entries += ['<authorizationEntry topic="%s" read="users" write="users" admin="users"/>' % t
                for t in writable_topics or ()]
    accounts = "".join('<authenticationUser username="%s" password="%s" groups="users"/>' % u
                       for u in sorted(users.items()))
    return ("<plugins><simpleAuthenticationPlugin><users>%s</users></simpleAuthenticationPlugin>"
            "<authorizationPlugin><map><authorizationMap><authorizationEntries>%s"
            "</authorizationEntries></authorizationMap></map></authorizationPlugin></plugins>"
            % (accounts, "".join(entries)))


def make_test_pki(directory, host="127.0.0.1", password="changeit"):
    """A CA and a server certificate for `host`, signed by it, with openssl, and a client
    certificate signed by it: returns {"ca": ca.pem, "other_ca": a CA that signed nothing here,
    "keystore": server.p12, "truststore": the CA for the broker (PKCS12, by keytool),
    "client_cert": client.pem, "client_key": client.key}."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=stampede test " + ca, "-keyout", ca + ".key", "-out", ca + ".pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + host, "-keyout",
        "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:%s\n" % host)
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    run("pkcs12", "-export", "-in", "server.pem", "-inkey", "server.key", "-name", "broker",
        "-passout", "pass:" + password, "-out", "server.p12")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=stampede client", "-keyout",
        "client.key", "-out", "client.csr")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "client.pem")
    subprocess.run(["keytool", "-importcert", "-noprompt", "-storetype", "PKCS12", "-keystore",
                    "trust.p12", "-storepass", password, "-alias", "ca", "-file", "ca.pem"],
                   cwd=directory, check=True, capture_output=True)
    return {name: os.path.join(directory, file) for name, file in
            (("ca", "ca.pem"), ("other_ca", "other-ca.pem"), ("keystore", "server.p12"),
             ("truststore", "trust.p12"), ("client_cert", "client.pem"),
             ("client_key", "client.key"))}


class Broker:
    """with Broker() as b: b.port, b.url ("tcp://127.0.0.1:PORT").

    shared_store: a KahaDB directory shared with another Broker (a failover pair); then
    start(wait=False) starts a standby without waiting for its port.
    users: {"name": "password"}: logins required; writable_topics: the only topics those
    users may write to (None: all). tls: also a stomp+ssl connector, b.ssl_url ("ssl://127.0.0.1:PORT"), with the
    certificates in b.pki (make_test_pki); client_auth: that connector (tls implied) asks for
    a client certificate signed by the test CA. openwire: also an OpenWire connector,
    b.openwire_url (for ActiveMQ's own `activemq producer`/`consumer` tools)."""

    def __init__(self, name="fx", shared_store=None, users=None, writable_topics=None,
                 tls=False, openwire=False, client_auth=False):
        self.name = name
        self.shared_store = shared_store
        self.users = users
        self.writable_topics = writable_topics
        self.tls = tls or client_auth
        self.client_auth = client_auth
        self.pki = None
        self.ssl_port = None
        self.ssl_url = None
        self.frozen = False
        self.openwire_port = free_port() if openwire else None
        self.openwire_url = ("tcp://127.0.0.1:%d" % self.openwire_port) if openwire else None
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
            plugins = _auth_plugins(self.users, self.writable_topics) if self.users else ""
            ssl_context = ssl_connector = ""
            if self.tls:
                pki_dir = os.path.join(self.dir, "pki")
                os.makedirs(pki_dir)
                self.pki = make_test_pki(pki_dir)
                self.ssl_port = free_port()
                self.ssl_url = "ssl://127.0.0.1:%d" % self.ssl_port
                trust = (_SSL_TRUST.format(truststore=self.pki["truststore"], password="changeit")
                         if self.client_auth else "")
                ssl_context = _SSL_CONTEXT.format(keystore=self.pki["keystore"],
                                                  password="changeit", trust=trust)
                ssl_connector = _SSL_CONNECTOR.format(
                    port=self.ssl_port, query="?needClientAuth=true" if self.client_auth else "")
            f.write(_CONFIG.format(name=self.name, data=data, port=self.port, store=store,
                                   plugins=plugins, ssl_context=ssl_context,
                                   ssl_connector=ssl_connector,
                                   openwire=_OPENWIRE_CONNECTOR.format(port=self.openwire_port)
                                   if self.openwire_port else ""))
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
                for port in (self.port, self.ssl_port) if self.ssl_port else (self.port,):
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        pass
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

    def freeze(self):
        """SIGSTOP by PID: the broker stays connected but says nothing (a hung JVM)."""
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        if self.frozen and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self):
        self.thaw()
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
