"""A tiny stand-in for the appliance's HTTP side, run inside a test namespace.

GET serves files under ROOT (scripts/hosts, scripts/<host>.sh); POST
/api/installs/<host> records the JSON body with the client address; every
request is appended to EVENTS as one JSON line.
usage: python bootimage_httpd.py ADDRESS PORT ROOT EVENTS
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ADDRESS, PORT, ROOT, EVENTS = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])


def record(event: dict) -> None:
    with open(EVENTS, "a") as fh:
        fh.write(json.dumps(event) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        path = (ROOT / self.path.lstrip("/")).resolve()
        ok = path.is_file() and ROOT.resolve() in path.parents
        record({"method": "GET", "path": self.path, "client": self.client_address[0], "status": 200 if ok else 404})
        body = path.read_bytes() if ok else b"not found\n"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body, error = json.loads(raw), None
        except ValueError as exc:
            body, error = None, f"{exc}: {raw[:200]!r}"
        record({"method": "POST", "path": self.path, "client": self.client_address[0],
                "content_type": self.headers.get("Content-Type"), "body": body, "error": error})
        self.send_response(200 if error is None else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()


ThreadingHTTPServer((ADDRESS, PORT), Handler).serve_forever()
