"""A loopback wire-protocol proxy that lets the real ``redshift_connector`` driver talk to a local PostgreSQL.

For tests only. The driver cannot connect to PostgreSQL directly because it sends Redshift-only startup parameters
(``client_protocol_version``, ``driver_version``, …) that PostgreSQL rejects as unknown settings, and it parses the
reported ``server_version`` strictly (``16.4 (Debian …)`` is not a version it accepts). The proxy:

* answers an SSLRequest / GSSENCRequest with ``N`` (declines encryption: everything stays on 127.0.0.1);
* rewrites the StartupMessage, keeping only the parameters PostgreSQL understands;
* rewrites the ParameterStatus ``server_version`` to the value Redshift reports (``8.0.2``);
* otherwise forwards bytes unchanged in both directions.

The upstream PostgreSQL must use trust authentication for the connecting user (no password exchange is relayed
specially; a password message would be forwarded as is). Every thread is a daemon and the proxy shuts itself down
after ``lifetime`` seconds at the latest, so a failing test cannot leave it running.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608
KEPT_STARTUP_PARAMETERS = {b"user", b"database", b"application_name", b"options", b"client_encoding"}
REDSHIFT_SERVER_VERSION = b"8.0.2"


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data.extend(chunk)
    return bytes(data)


def rewrite_startup(body: bytes) -> bytes:
    """The StartupMessage body (after the length) with only PostgreSQL's own parameters; returns the whole message."""
    protocol = struct.unpack("!i", body[:4])[0]
    fields = body[4:].split(b"\x00")
    pairs = [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2) if fields[i]]
    kept = b"".join(k + b"\x00" + v + b"\x00" for k, v in pairs if k in KEPT_STARTUP_PARAMETERS) + b"\x00"
    payload = struct.pack("!i", protocol) + kept
    return struct.pack("!i", len(payload) + 4) + payload


def rewrite_server_message(kind: bytes, body: bytes) -> bytes:
    """A backend message, with ParameterStatus ``server_version`` replaced by the value Redshift reports."""
    if kind == b"S" and body.startswith(b"server_version\x00"):
        body = b"server_version\x00" + REDSHIFT_SERVER_VERSION + b"\x00"
    return kind + struct.pack("!i", len(body) + 4) + body


class RedshiftProxy:
    """Listens on 127.0.0.1 (a free port) and relays each client to ``upstream`` with the rewrites above."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432), lifetime: float = 600.0) -> None:
        self.upstream = upstream
        self.deadline = time.monotonic() + lifetime
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.connections = 0
        self.startup_parameters: list[dict[str, str]] = []  # what the driver sent, for assertions
        self._thread = threading.Thread(target=self._accept_loop, name="redshift-proxy", daemon=True)

    def start(self) -> RedshiftProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _track(self, sock: socket.socket) -> socket.socket:
        # A relay that waits for more bytes before sending (Nagle) meets the peer's delayed ACK: ~40 ms a message.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept_loop(self) -> None:
        while not self._stopped.is_set() and time.monotonic() < self.deadline:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            client.settimeout(None)
            self.connections += 1
            threading.Thread(target=self._serve, args=(self._track(client),), daemon=True).start()
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _serve(self, client: socket.socket) -> None:
        try:
            while True:
                length = struct.unpack("!i", _read_exactly(client, 4))[0]
                body = _read_exactly(client, length - 4)
                code = struct.unpack("!i", body[:4])[0]
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    client.sendall(b"N")
                    continue
                break
            server = self._track(socket.create_connection(self.upstream, timeout=10))
            server.settimeout(None)
            if code == PROTOCOL_3:
                fields = body[4:].split(b"\x00")
                self.startup_parameters.append({fields[i].decode(): fields[i + 1].decode()
                                                for i in range(0, len(fields) - 1, 2) if fields[i]})
                server.sendall(rewrite_startup(body))
            else:  # a CancelRequest, forwarded verbatim
                server.sendall(struct.pack("!i", length) + body)
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            self._server_to_client(server, client)
        except (ConnectionError, OSError):
            pass
        finally:
            for sock in (client,):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _server_to_client(self, server: socket.socket, client: socket.socket) -> None:
        """Parse backend messages until the first ReadyForQuery (where ``server_version`` is reported), then pipe."""
        while True:
            kind = _read_exactly(server, 1)
            length = struct.unpack("!i", _read_exactly(server, 4))[0]
            body = _read_exactly(server, length - 4)
            client.sendall(rewrite_server_message(kind, body))
            if kind in (b"Z", b"E"):
                break
        self._pipe(server, client)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def running_proxy(upstream: tuple[str, int] = ("127.0.0.1", 5432), lifetime: float = 600.0) -> Iterator[RedshiftProxy]:
    proxy = RedshiftProxy(upstream, lifetime).start()
    try:
        yield proxy
    finally:
        proxy.stop()
