"""A real HTTP proxy in front of Orthanc that fails on purpose: the first N matching requests get
an HTTP 503 (or every request for one resource gets a 500), and every request is counted.

There is no switch in Orthanc to make it answer 5xx, so this small server is the local
counterpart of a flaky gateway; everything it forwards is served by the real Orthanc.
"""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

#: hop-by-hop headers (RFC 9110 7.6.1) and the body framing this proxy sets itself
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
        "content-length", "content-encoding"}


class FlakyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.fail_first = 0  # number of WADO-RS instance GETs answered 503 before forwarding
        self.always_fail: set[str] = set()  # SOP Instance UIDs whose WADO-RS GET always gets 500
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []  # upstream failures (answered 502)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                is_wado = self.command == "GET" and "/studies/" in self.path and "/instances/" in self.path
                status = None
                with proxy._lock:
                    proxy.counts["wado" if is_wado else self.command.lower()] += 1
                    if is_wado and any(uid in self.path for uid in proxy.always_fail):
                        status = 500
                    elif is_wado and proxy.fail_first > 0:
                        proxy.fail_first -= 1
                        status = 503
                if status is not None:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
                try:
                    r = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30)
                except requests.RequestException as exc:
                    proxy.errors.append(repr(exc))
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
