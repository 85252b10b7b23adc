#!/usr/bin/env python3
"""The drill's demo workload: a tiny HTTP service that serves itself synthetic traffic
and exposes Prometheus metrics, and whose health can be switched at runtime.

Metrics (GET /metrics, Prometheus text format):
  http_requests_total{code}                 requests served, by status code
  http_request_duration_seconds{le}         request latency histogram
  pg_up                                     1 while its database answers (the probe
                                            postgres_exporter would run), else 0
  data_integrity_corrupt_rows               rows its consistency check finds corrupt

Control (POST, no body):
  /bad, /good          serve errors (--bad-error-ratio, 30 %) and slow answers
                       (--bad-latency, ~0.6 s; 0 keeps them fast), or behave
  /database/down, /database/up
  /corrupt, /repair    corrupt three rows, or repair them all
  /bad-version/V       from now on version V is bad here (as --bad-version V): a
                       following workload that runs V turns bad at once
GET /state answers the switches as JSON.

With --follow URL (a Deployment or an Argo Rollout as JSON, polled every 0.3 s) and --bad-version V, the
workload behaves like the version its Deployment runs: it turns bad when the
Deployment's image tag becomes V and good when it becomes any other tag. That is how
the drill ships a bad build and sees the rollback heal it. Without --bad-version, a
following workload runs any version well until POST /bad-version/V: a build whose bug
shows in one region only (its traffic, its data), and only later.

Python 3.11 standard library only.
"""

import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.bad = False
        self.database_up = True
        self.corrupt_rows = 0
        self.version = None
        self.bad_versions = set()  # versions that fail here (--bad-version, /bad-version/V)
        self.requests = {}  # code -> count; a code appears with its first request
        self.buckets = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, code, seconds):
        with self.lock:
            self.requests[code] = self.requests.get(code, 0) + 1
            for i, le in enumerate(BUCKETS):
                if seconds <= le:
                    self.buckets[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self):
        with self.lock:
            lines = [
                "# HELP http_requests_total Requests served, by status code.",
                "# TYPE http_requests_total counter",
            ]
            for code in sorted(self.requests):
                lines.append(f'http_requests_total{{code="{code}"}} {self.requests[code]}')
            lines += [
                "# HELP http_request_duration_seconds Request latency.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for le, count in zip(BUCKETS, self.buckets):
                lines.append(f'http_request_duration_seconds_bucket{{le="{le}"}} {count}')
            lines += [
                f'http_request_duration_seconds_bucket{{le="+Inf"}} {self.latency_count}',
                f"http_request_duration_seconds_sum {self.latency_sum:.6f}",
                f"http_request_duration_seconds_count {self.latency_count}",
                "# HELP pg_up Whether the service's database answers.",
                "# TYPE pg_up gauge",
                f"pg_up {1 if self.database_up else 0}",
                "# HELP data_integrity_corrupt_rows Rows the consistency check finds corrupt.",
                "# TYPE data_integrity_corrupt_rows gauge",
                f"data_integrity_corrupt_rows {self.corrupt_rows}",
            ]
            return "\n".join(lines) + "\n"

    def snapshot(self):
        with self.lock:
            return {
                "bad": self.bad,
                "database_up": self.database_up,
                "corrupt_rows": self.corrupt_rows,
                "version": self.version,
                "bad_versions": sorted(self.bad_versions),
                "requests": dict(self.requests),
            }


def make_handler(state, args):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # the traffic would drown the drill's log
            pass

        def reply(self, code, body, content_type="application/json"):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/metrics":
                self.reply(200, state.render(), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                self.reply(200, "ok\n", "text/plain")
            elif self.path == "/state":
                self.reply(200, json.dumps(state.snapshot()))
            elif self.path == "/api/work":
                started = time.monotonic()
                with state.lock:
                    bad = state.bad
                if bad:
                    if args.bad_latency > 0:
                        time.sleep(random.uniform(0.75, 1.33) * args.bad_latency)
                    else:
                        time.sleep(random.uniform(0.004, 0.03))
                    code = 500 if random.random() < args.bad_error_ratio else 200
                else:
                    time.sleep(random.uniform(0.004, 0.03))
                    code = 200
                state.observe(str(code), time.monotonic() - started)
                self.reply(code, '{"worked": true}' if code == 200 else '{"error": "boom"}')
            else:
                self.reply(404, '{"error": "not found"}')

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            switches = {
                "/bad": ("bad", True),
                "/good": ("bad", False),
                "/database/down": ("database_up", False),
                "/database/up": ("database_up", True),
                "/corrupt": ("corrupt_rows", 3),
                "/repair": ("corrupt_rows", 0),
            }
            prefix = "/bad-version/"
            with state.lock:
                if self.path in switches:
                    name, value = switches[self.path]
                    setattr(state, name, value)
                elif self.path.startswith(prefix) and len(self.path) > len(prefix):
                    version = self.path[len(prefix):]
                    state.bad_versions.add(version)
                    if state.version == version:
                        state.bad = True
                else:
                    self.reply(404, '{"error": "not found"}')
                    return
            log(args, f"{self.path}: {json.dumps(state.snapshot())}")
            self.reply(200, json.dumps(state.snapshot()))

    return Handler


def log(args, message):
    print(f"{time.strftime('%H:%M:%S')} workload {args.name}: {message}", flush=True)


def traffic(port, rate):
    """One client: `rate` requests a second at most, forever."""
    url = f"http://127.0.0.1:{port}/api/work"
    while True:
        started = time.monotonic()
        try:
            urllib.request.urlopen(url, timeout=5).read()
        except Exception:  # a 500 is an answer too; the server counted it
            pass
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - started)))


def follow(state, args):
    """Behave like the version the Deployment at args.follow runs."""
    seen = None
    while True:
        try:
            with urllib.request.urlopen(args.follow, timeout=2) as answer:
                deployment = json.load(answer)
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            version = image.rsplit(":", 1)[-1]
            # An aborted Argo Rollout serves its stable version while its template
            # still names the aborted one.
            if deployment.get("kind") == "Rollout" and deployment.get("status", {}).get("abort"):
                version, image = "stable", f"{image} (aborted: the stable version serves)"
            if version != seen:
                seen = version
                with state.lock:
                    state.version = version
                    state.bad = version in state.bad_versions
                    bad = state.bad
                log(args, f"runs {image}: {'bad' if bad else 'good'}")
        except Exception as error:  # the fake API may not be up yet
            if seen is not None:
                log(args, f"cannot read {args.follow}: {error}")
        time.sleep(0.3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="workload")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=4.0, help="requests/s per client")
    parser.add_argument("--bad-error-ratio", type=float, default=0.3)
    parser.add_argument("--bad-latency", type=float, default=0.6, help="seconds; 0: fast")
    parser.add_argument("--follow", help="URL of the Deployment (JSON) to follow")
    parser.add_argument("--bad-version", action="append", default=[])
    args = parser.parse_args()

    state = State()
    state.bad_versions.update(args.bad_version)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state, args))
    server.daemon_threads = True
    port = server.server_address[1]
    for _ in range(args.clients):
        threading.Thread(target=traffic, args=(port, args.rate), daemon=True).start()
    if args.follow:
        threading.Thread(target=follow, args=(state, args), daemon=True).start()
    if args.port_file:
        with open(args.port_file + ".partial", "w") as f:
            f.write(str(port))
        os.replace(args.port_file + ".partial", args.port_file)
    log(args, f"listening on 127.0.0.1:{port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
