"""Locust side of tests/bench/halt_latency.sh: a cluster-wide stop on the first failure, done the
way a Locust user does it (the usual recipe: a worker-side request listener sends a custom message,
the master's handler calls runner.quit()).

    locust -f halt_locustfile.py --master --headless --expect-workers 8 -u 16 -r 1000 ...
    locust -f halt_locustfile.py --worker --master-host 127.0.0.1 --master-port P   (x 8)

HALT_OUT (a directory) receives one JSON file per process with the timestamps the bench needs
(time.time(), one machine, one clock):

  worker-PID.json  first_failure: when this worker's first failing response was seen, in its
                   request listener; stopping: when it got the master's quit (test_stopping);
                   stopped: when its users' greenlets were all stopped (test_stop)
  master.json      message_received: when the master's handler got the first "halt" message;
                   t_fail: that message's failure time; quit_sent_first / quit_sent_last: when
                   the master sent the first and the last "quit" to a worker

The timing instrumentation (a wrapper around the master's send_to_client that notes when "quit"
goes out, files written at test_stop / quitting) is not part of the recipe; it only observes.
HALT_PATH is the request path (default /fail-after/2000).
"""

import json
import os
import time

import locust.runners
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner, WorkerRunner

# Debian's python3-locust 2.12.1-1 ships an empty version string (locust/_version.py), and a
# worker announces itself with it: the master then refuses every worker as "An old (pre 2.0)
# worker tried to connect", so distributed mode does not work out of the box. Give the runners
# module (master and workers alike) a version before any worker says hello.
if not locust.runners.__version__:
    locust.runners.__version__ = "2.12.1"

OUT = os.environ.get("HALT_OUT", ".")
PATH = os.environ.get("HALT_PATH", "/fail-after/2000")

_env = {}
_worker = {"pid": os.getpid(), "first_failure": None, "stopping": None, "stopped": None,
           "failures_seen": 0}
_master = {"message_received": None, "t_fail": None, "from_pid": None, "quit_sent_first": None,
           "quit_sent_last": None, "halt_messages": 0}


def _dump(name, record):
    tmp = os.path.join(OUT, name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, os.path.join(OUT, name))


class FailAfter(FastHttpUser):
    wait_time = constant(0)

    @task
    def hit(self):
        self.client.get(PATH, name="fail-after")


# --- the recipe -------------------------------------------------------------------------------

@events.request.add_listener
def on_request(exception=None, **kwargs):
    if exception is None:
        return
    _worker["failures_seen"] += 1
    if _worker["first_failure"] is not None:
        return
    now = time.time()
    _worker["first_failure"] = now
    runner = _env["environment"].runner
    if isinstance(runner, WorkerRunner):
        runner.send_message("halt", {"t_fail": now, "pid": os.getpid()})


def on_halt_message(environment, msg, **kwargs):
    _master["halt_messages"] += 1
    if _master["message_received"] is not None:
        return
    _master["message_received"] = time.time()
    _master["t_fail"] = msg.data.get("t_fail")
    _master["from_pid"] = msg.data.get("pid")
    environment.runner.quit()


@events.init.add_listener
def on_init(environment, **kwargs):
    _env["environment"] = environment
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message("halt", on_halt_message)
        _observe_quit_sends(environment.runner)


# --- observation only -------------------------------------------------------------------------

def _observe_quit_sends(runner):
    server = runner.server
    send = server.send_to_client

    def timed_send(msg):
        result = send(msg)
        if getattr(msg, "type", None) == "quit":
            now = time.time()
            if _master["quit_sent_first"] is None:
                _master["quit_sent_first"] = now
            _master["quit_sent_last"] = now
        return result

    server.send_to_client = timed_send


@events.test_stopping.add_listener
def on_test_stopping(environment, **kwargs):
    if isinstance(environment.runner, WorkerRunner) and _worker["stopping"] is None:
        _worker["stopping"] = time.time()


@events.test_stop.add_listener
def on_test_stop(environment, **kwargs):
    if isinstance(environment.runner, WorkerRunner):
        if _worker["stopped"] is None:
            _worker["stopped"] = time.time()
        _dump(f"worker-{os.getpid()}.json", _worker)


@events.quitting.add_listener
def on_quitting(environment, **kwargs):
    if isinstance(environment.runner, MasterRunner):
        _dump("master.json", _master)
    elif isinstance(environment.runner, WorkerRunner):
        _dump(f"worker-{os.getpid()}.json", _worker)
