"""The naive Locust WebSocket client, kept to reproduce the finding in load/README.md.

    locust -f studies/naive_client/naive_locustfile.py --headless -u 100 -r 100 -t 20s \
        --host ws://127.0.0.1:8000

What people usually write: websocket-client in a greenlet per user, every user sending
once per second from when it spawned (lockstep), latency reported as a Locust request
event. Switches (environment variables) turn single causes off:
NAIVE_SKIP_UTF8=1 (no pure-Python UTF-8 validation), NAIVE_JITTER=1 (random phase),
NAIVE_LEAN_RECV=1 (read with load.inlocust.wire's one-recv-many-frames parser instead of
websocket-client's recv), NAIVE_NO_EVENTS=1 (no Locust request event per delivery).
At the end it logs the exact median of its own samples next to Locust's, and its CPU
per delivery.
"""

import json
import os
import random
import resource
import statistics
import time

import gevent
import websocket
from locust import User, constant_pacing, events, task

SKIP_UTF8 = os.environ.get("NAIVE_SKIP_UTF8") == "1"
LEAN_RECV = os.environ.get("NAIVE_LEAN_RECV") == "1"
NO_EVENTS = os.environ.get("NAIVE_NO_EVENTS") == "1"
JITTER = os.environ.get("NAIVE_JITTER") == "1"
ROOMS = 10
samples: list[float] = []
counter = iter(range(10**9))
cpu_at_start = [0.0]


@events.test_start.add_listener
def _(environment, **kwargs):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_at_start[0] = usage.ru_utime + usage.ru_stime


@events.test_stop.add_listener
def _(environment, **kwargs):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_at_start[0]
    entry = environment.stats.get("deliver", "WS")
    print(
        json.dumps(
            {
                "skip_utf8": SKIP_UTF8,
                "jitter": JITTER,
                "lean_recv": LEAN_RECV,
                "no_events": NO_EVENTS,
                "deliveries": len(samples),
                "exact_p50_ms": round(statistics.median(samples), 3) if samples else None,
                "locust_p50_ms": entry.get_response_time_percentile(0.5),
                "cpu_us_per_delivery": round(cpu * 1e6 / max(len(samples), 1), 1),
            }
        ),
        flush=True,
    )


class NaiveChatUser(User):
    wait_time = constant_pacing(1)

    def on_start(self):
        room = next(counter) % ROOMS
        host = self.host.removeprefix("ws://")
        self.ws = websocket.create_connection(
            f"{self.host}/ws/chat/naive-{room}/",
            origin=f"http://{host}",
            skip_utf8_validation=SKIP_UTF8,
        )
        self.receiver = gevent.spawn(self.receive)
        if JITTER:
            gevent.sleep(random.uniform(0, 1))

    def receive(self):
        if LEAN_RECV:  # the harness's way: one recv, parse every frame in it
            import sys
            from pathlib import Path

            sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
            from load.inlocust.wire import FrameParser

            parser = FrameParser()
            while True:
                data = self.ws.sock.recv(262144)
                now = time.time()
                for _, payload in parser.feed(data):
                    self.record(now, payload.decode())
        while True:
            text = self.ws.recv()
            self.record(time.time(), text)

    def record(self, now, text):
        latency_ms = (now - float(json.loads(text)["message"])) * 1000
        samples.append(latency_ms)
        if not NO_EVENTS:
            events.request.fire(
                request_type="WS",
                name="deliver",
                response_time=latency_ms,
                response_length=len(text),
                exception=None,
                context={},
            )

    @task
    def send(self):
        self.ws.send(json.dumps({"message": repr(time.time())}))

    def on_stop(self):
        self.receiver.kill()
        self.ws.close()
