"""Alertmanager webhook sink: a TEST FIXTURE of the Molecule scenario, not part of the collection.

molecule/default/tasks/alert_sink.yml installs it on the test host as alert-sink.service,
listening on loopback. Every POSTed JSON body (one Alertmanager notification) is appended as
one line to a JSON-lines file and answered with 200, so that tests/test_alerting.py can read
which notifications (firing, resolved) really arrived. Python's standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 4 * 1024 * 1024


class SinkHandler(BaseHTTPRequestHandler):
    """Appends each JSON body it is sent to SinkHandler.out_path."""

    out_path = ""
    lock = threading.Lock()

    def do_POST(self):  # pylint: disable=invalid-name
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.answer(411, "Content-Length required\n")
            return
        if length < 0 or length > MAX_BODY:
            self.answer(413, "body too large\n")
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            self.answer(400, "body is not JSON\n")
            return
        # Re-serialised without indentation: one notification per line, whatever its layout.
        line = json.dumps(body, separators=(",", ":"))
        with self.lock, open(self.out_path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.answer(200, "ok\n")

    def do_GET(self):  # pylint: disable=invalid-name
        if self.path == "/-/healthy":
            self.answer(200, "ok\n")
        else:
            self.answer(404, "POST notifications here\n")

    def answer(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        # To stderr, i.e. the unit's journal.
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9099)
    parser.add_argument("--out", required=True, help="JSON-lines file the bodies are appended to")
    args = parser.parse_args()
    SinkHandler.out_path = args.out
    # The file exists from the start: an empty file means "nothing received yet".
    with open(args.out, "a", encoding="utf-8"):
        pass
    server = ThreadingHTTPServer((args.listen, args.port), SinkHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
