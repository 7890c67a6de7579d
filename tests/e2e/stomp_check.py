"""An independent STOMP client (Debian's python3-stomp, run as /usr/bin/python3) for the
messaging tests: it creates or drains a durable topic subscription and prints what it got as
JSON. Usage: stomp_check.py PORT CLIENT_ID SUB_NAME TOPIC (create | drain SECONDS)."""

import json
import sys
import threading
import time

import stomp


class Collector(stomp.ConnectionListener):
    def __init__(self):
        self.messages = []
        self.errors = []
        self.lock = threading.Lock()

    def on_message(self, frame):
        with self.lock:
            self.messages.append({"headers": dict(frame.headers), "body": frame.body})

    def on_error(self, frame):
        self.errors.append(frame.body)


def main():
    port, client_id, sub_name, topic, mode = sys.argv[1:6]
    conn = stomp.Connection12([("127.0.0.1", int(port))])
    listener = Collector()
    conn.set_listener("c", listener)
    conn.connect(wait=True, headers={"client-id": client_id})
    conn.subscribe(destination="/topic/" + topic, id="1", ack="auto",
                   headers={"activemq.subscriptionName": sub_name, "receipt": "r1"})
    if mode == "drain":
        seconds = float(sys.argv[6])
        # Until no message came for `seconds`.
        last = time.monotonic()
        count = -1
        while time.monotonic() - last < seconds:
            time.sleep(0.1)
            with listener.lock:
                if len(listener.messages) != count:
                    count = len(listener.messages)
                    last = time.monotonic()
    else:
        time.sleep(0.5)  # the receipt: the subscription exists
    conn.disconnect()
    print(json.dumps({"messages": listener.messages, "errors": listener.errors}))


if __name__ == "__main__":
    main()
