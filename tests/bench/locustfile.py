"""Locust side of tests/bench/throughput.sh: FastHttpUser, one task, no think time.

Run by the bench as
    locust -f locustfile.py --headless -u N -r N -t 10s --host http://127.0.0.1:PORT --only-summary
in one process (no --processes), pinned to one core like every other tool in the bench.
"""

from locust import FastHttpUser, constant, task


class Bench(FastHttpUser):
    wait_time = constant(0)

    @task
    def root(self):
        self.client.get("/", name="/")
