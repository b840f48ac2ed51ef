#!/usr/bin/env python3
"""receiver.py - a stand-in for a CDash server's submit.php, on 127.0.0.1.

It stores every file CTest sends (HTTP PUT or POST, as ctest_submit does:
submit.php?project=P&FileName=F&MD5=M...) into a folder, with the query it
came with, and answers as CDash does, so CTest's submission path runs end to
end without a server. `--fail` makes it answer 500, to prove a failed
submission is noticed. Used by test_cdash.py; run alone to look at what a
dashboard script sends:

  python3 tests/cdash/receiver.py --dir /tmp/got --port 8080
  ctest -DLEAKLAB_CDASH_URL="http://127.0.0.1:8080/submit.php?project=leaklab" -S ctest/dashboard.cmake
"""
import argparse
import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self, folder, fail=False, port=0):
        super().__init__(("127.0.0.1", port), Handler)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fail = fail
        self.received = []   # [{"method", "path", "query", "file", "bytes"}]
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/submit.php?project=leaklab"

    def start(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet: the test prints what arrived
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _store(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        body = self._body() if self.command in ("PUT", "POST") else b""
        server = self.server
        name = Path(query.get("FileName") or f"request-{len(server.received)}").name
        with server.lock:
            if body:
                (server.folder / name).write_bytes(body)
            server.received.append({"method": self.command, "path": url.path, "query": query,
                                    "file": name if body else None, "bytes": len(body)})
            (server.folder / "received.json").write_text(json.dumps(server.received, indent=1) + "\n")
        if server.fail:
            return self._answer(500, "<cdash><status>ERROR</status><message>receiver told to fail</message></cdash>")
        md5 = hashlib.md5(body).hexdigest()
        self._answer(200, f'<cdash version="3.0.0"><status>OK</status><message></message>'
                          f"<md5>{md5}</md5><buildId>1</buildId></cdash>\n")

    do_PUT = do_POST = do_GET = _store


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, type=Path, help="where received files go")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--fail", action="store_true", help="answer every request with HTTP 500")
    args = parser.parse_args()
    server = Receiver(args.dir, args.fail, args.port)
    print(f"receiving on {server.url}; files go to {args.dir}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
