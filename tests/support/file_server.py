"""A static file server on 127.0.0.1 (a free port), as an object store's HTTP endpoint
would serve a model repository: every file as `application/octet-stream`. It keeps the
paths it was asked for (`served`)."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any


class _Handler(SimpleHTTPRequestHandler):
    content_type = "application/octet-stream"
    served: list[str]

    def send_head(self) -> Any:
        self.served.append(self.path)
        return super().send_head()

    def guess_type(self, path: Any) -> str:
        return self.content_type

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class FileServer:
    """Serves ROOT over HTTP while in a `with` block; `url` is its base URL."""

    def __init__(self, root: Path, content_type: str = "application/octet-stream") -> None:
        self.served: list[str] = []
        handler = type(
            "Handler", (_Handler,), {"content_type": content_type, "served": self.served}
        )
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
