#!/usr/bin/env python3
"""The drill's stand-in for Slack: an incoming webhook, the Web API of a Slack app,
and its users' button presses, answered and sent the way Slack does.

  POST /api/chat.postMessage, /api/chat.update   the Web API: answers
                     {"ok": true, "channel", "ts"} (a new ts per message) when the
                     bot token is sent as `Authorization: Bearer xoxb-…`, else
                     {"ok": false, "error": "not_authed"}; recorded
  POST /press        presses a button as Slack would: JSON {"to": the interactions
                     URL, "secret": the signing secret, "user", "action_id", "value",
                     "message_ts"}; the block_actions payload, form-encoded, signed
                     (v0 HMAC-SHA256 over "v0:{timestamp}:{body}"), with a
                     response_url back here; answers {"status": rollwarden's status}
  POST /<any other path>  recorded, answered 200 `ok` (the incoming webhook, the
                     response_urls)
  GET  /messages     every recorded POST, oldest first, as a JSON array: {"path",
                     "content_type", "authorization" (present or not), "body" (JSON
                     when it parses)}

Each POST is also appended to --record (one JSON object a line) so that the drill's
logs keep it. Python 3.11 standard library only.
"""

import argparse
import hashlib
import hmac
import itertools
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--record", help="append each POST here as a JSON line")
    args = parser.parse_args()

    messages = []
    lock = threading.Lock()
    timestamps = itertools.count(1)

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
            if self.path == "/press":
                self.reply(200, json.dumps({"status": self.press(body)}), "application/json")
                return
            authorization = self.headers.get("Authorization") or ""
            message = {
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "authorization": authorization.startswith("Bearer xoxb-"),
                "body": body,
            }
            with lock:
                messages.append(message)
                if args.record:
                    with open(args.record, "a") as f:
                        f.write(json.dumps(message) + "\n")
            if self.path.startswith("/api/"):
                if not message["authorization"]:
                    answer = {"ok": False, "error": "not_authed"}
                else:
                    channel = body.get("channel") if isinstance(body, dict) else None
                    ts = body.get("ts") if isinstance(body, dict) else None
                    answer = {
                        "ok": True,
                        "channel": channel,
                        "ts": ts or "1767225500.%06d" % next(timestamps),
                    }
                self.reply(200, json.dumps(answer), "application/json")
                return
            self.reply(200, "ok", "text/plain")

        def press(self_, spec):
            """Sends what Slack sends when spec["user"] presses a button."""
            host, port = self_.server.server_address[:2]
            user = spec["user"]
            payload = {
                "type": "block_actions",
                "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T0DRILL"},
                "api_app_id": "A0DRILL",
                "token": "legacy-verification-token",
                "container": {"type": "message", "message_ts": spec.get("message_ts", ""),
                              "channel_id": "C0DRILL", "is_ephemeral": False},
                "channel": {"id": "C0DRILL", "name": "drill"},
                "response_url": "http://%s:%d/actions/T0DRILL/%s" % (host, port, user),
                "trigger_id": "1.2.3",
                "actions": [{"type": "button", "block_id": "rollwarden_approval",
                             "action_id": spec["action_id"], "value": spec["value"],
                             "action_ts": "%.6f" % time.time()}],
            }
            data = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
            timestamp = str(int(time.time()))
            base = b"v0:" + timestamp.encode() + b":" + data
            signature = "v0=" + hmac.new(spec["secret"].encode(), base, hashlib.sha256).hexdigest()
            request = urllib.request.Request(spec["to"], data=data, method="POST", headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Slack-Request-Timestamp": timestamp,
                "X-Slack-Signature": signature,
            })
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as err:
                return err.code

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
