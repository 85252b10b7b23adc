#!/usr/bin/env python3
"""The drill's stand-in for a Slack incoming webhook: it answers every POST the way
Slack does (200, body `ok`) and records it.

  POST /<any path>   recorded: {"path", "content_type", "body" (JSON when it parses)}
  GET  /messages     every recorded POST, oldest first, as a JSON array

Each POST is also appended to --record (one JSON object a line) so that the drill's
logs keep it. Python 3.11 standard library only.
"""

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--record", help="append each POST here as a JSON line")
    args = parser.parse_args()

    messages = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("slack: " + (fmt % a) + "\n")

        def reply(self, code, body, content_type):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/messages":
                with lock:
                    self.reply(200, json.dumps(messages), "application/json")
            else:
                self.reply(404, "no_service", "text/plain")

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            text = raw.decode("utf-8", "replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = text
            message = {
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "body": body,
            }
            with lock:
                messages.append(message)
                if args.record:
                    with open(args.record, "a") as f:
                        f.write(json.dumps(message) + "\n")
            self.reply(200, "ok", "text/plain")

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.port_file:
        with open(args.port_file + ".partial", "w") as f:
            f.write(str(server.server_address[1]))
        os.replace(args.port_file + ".partial", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
