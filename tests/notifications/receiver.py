"""A local webhook receiver for tests: records every request and answers scripted statuses."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)  # answered in turn; then 200
    received: list[Received] = field(default_factory=list)
    answer_body: bytes = b"ok"
    url: str = ""

    def next_status(self) -> int:
        return self.statuses.pop(0) if self.statuses else 200


def start_receiver(receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            receiver.received.append(
                Received(headers={k.lower(): v for k, v in self.headers.items()}, body=body)
            )
            status = receiver.next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", receiver.url + "elsewhere")
            self.send_header("content-length", str(len(receiver.answer_body)))
            self.end_headers()
            self.wfile.write(receiver.answer_body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
