"""A small HTTP proxy in front of the real vLLM server, to inject the faults a real server rarely shows:
a body that is not JSON, an answer without logprobs, a replica that dies mid-request. It speaks real
HTTP on a real socket (http.server) and forwards to vLLM with httpx; only the fault is made up."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

Mode = Literal["pass", "garbage", "no_logprobs", "dead"]


class FaultProxy:
    def __init__(self, upstream: str, mode: Mode = "pass"):
        self.upstream = upstream
        self.mode: Mode = mode
        self.served = 0  # completions forwarded and answered
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                if proxy.mode == "dead":
                    self.close_connection = True
                    self.connection.close()  # the client sees the connection drop, no answer
                    return
                resp = httpx.request(
                    method,
                    proxy.upstream + self.path,
                    content=data,
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                if proxy.mode == "dead":  # killed while the request ran upstream
                    self.close_connection = True
                    self.connection.close()
                    return
                body = resp.content
                if self.path.endswith("/completions") and resp.status_code == 200:
                    if proxy.mode == "garbage":
                        body = b'{"choices": [{"text": "{\\"category\\": ' + b"\x00not json"
                    elif proxy.mode == "no_logprobs":
                        doc = json.loads(body)
                        for choice in doc["choices"]:
                            choice["logprobs"] = None
                        body = json.dumps(doc).encode()
                    proxy.served += 1
                self._answer(resp.status_code, body)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
