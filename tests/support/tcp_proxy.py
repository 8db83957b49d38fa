"""A TCP forwarder on 127.0.0.1 that a test can cut: every connection is refused or
dropped while it is down, as during an API server restart. It can also hold: connections
stay open and are accepted, but nothing crosses until it is released, as with an API server
that hangs (a request without a timeout waits for as long as it holds). TLS passes through
untouched (the API server's certificate names 127.0.0.1, whatever the port)."""

from __future__ import annotations

import contextlib
import socket
import threading

from modelcanary.process import free_ports


class TcpProxy:
    """Forwards 127.0.0.1:port to TARGET_PORT until stopped."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        (self.port,) = free_ports(1)
        self.lock = threading.Lock()
        self.connections: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.flowing = threading.Event()
        self.flowing.set()

    def hold(self) -> None:
        """Forward nothing more (either way) until `release`."""
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        self.thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self.thread.start()
        return self

    def cut(self) -> None:
        """Stop listening and drop every open connection."""
        listener, self.listener = self.listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self.thread is not None:
            self.thread.join(5)
        with self.lock:
            connections, self.connections = self.connections, []
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.flowing.set()  # held pumps go on, to the closed sockets, and end

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=_pump, args=(source, sink, self.flowing), daemon=True
                ).start()


def _pump(source: socket.socket, sink: socket.socket, flowing: threading.Event) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            flowing.wait()
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
