"""A raw-socket HTTP server on 127.0.0.1 that plays canned answers, byte for byte (for tests).

Tests of the transport's strictness need answers no well-behaved server library would
send (bad chunk sizes, conflicting lengths, bodies cut short): this server reads one
request head per answer and writes the scripted bytes, then closes the connection or
keeps it open (``hold``) so that a client waiting for more hangs unless it refuses,
or (``keep_alive``) reads the next request on the same connection. It records every
request head it received, and the client port it came from.

An answer is either bytes, sent at once, or a script: a list of steps played in order,
each bytes (sent), a float (seconds to wait: a slow server) or :data:`CLOSE` (close the
connection there, as a server closing an idle keep-alive connection does).
:func:`drip` makes the script of a server trickling an answer out.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence

__all__ = ["CLOSE", "Answer", "RawServer", "drip"]

#: A script step: close the connection now (the answer, if any, ends here).
CLOSE = None
#: What a :class:`RawServer` plays for one request.
Answer = bytes | Sequence[bytes | float | None]


def drip(data: bytes, piece: int, pause: float) -> list[bytes | float]:
    """The script of sending ``data`` ``piece`` bytes at a time, ``pause`` seconds apart."""
    steps: list[bytes | float] = []
    for start in range(0, len(data), piece):
        if start:
            steps.append(pause)
        steps.append(data[start : start + piece])
    return steps


class RawServer:
    """Serves ``answers`` in turn (one per request); after the last, repeats it."""

    def __init__(self, answers: Sequence[Answer], hold: float = 0.0, keep_alive: bool = False) -> None:
        self.answers = answers
        self.hold = hold
        self.keep_alive = keep_alive
        self.heads: list[bytes] = []
        #: The body (Content-Length framed) of each request in ``heads``.
        self.bodies: list[bytes] = []
        #: The client's port for each request in ``heads``.
        self.ports: list[int] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._served = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            if self._stop.is_set():  # the wake-up connection of __exit__
                conn.close()
                break
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        port = conn.getpeername()[1]
        with conn:
            buffer = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = _content_length(head)
                    while len(buffer) < length:
                        data = conn.recv(65536)
                        if not data:
                            return
                        buffer += data
                    body, buffer = buffer[:length], buffer[length:]
                    with self._lock:
                        self.heads.append(head)
                        self.bodies.append(body)
                        self.ports.append(port)
                        answer = self.answers[min(self._served, len(self.answers) - 1)]
                        self._served += 1
                    if not self._play(conn, answer):
                        return
                    if not self.keep_alive:
                        break
                if self.hold:
                    self._stop.wait(self.hold)
            except OSError:
                return

    def _play(self, conn: socket.socket, answer: Answer) -> bool:
        """Send one answer; False if its script closed the connection."""
        if isinstance(answer, bytes):
            conn.sendall(answer)
            return True
        for step in answer:
            if step is CLOSE:
                return False
            if isinstance(step, float):
                if self._stop.wait(step):
                    return False
            else:
                conn.sendall(step)
        return True

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # Wake the accept() at once rather than after its 0.2 s poll: tests open
        # thousands of these servers.
        try:
            socket.create_connection(self._sock.getsockname()[:2], timeout=1).close()
        except OSError:
            pass
        self._thread.join(timeout=5)
        self._sock.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0
