"""One deadline for the whole fetch: whatever the server does (slow DNS, a connect that never completes,
headers or a body trickled one byte at a time, a chain of slow redirects), fetch() ends within
FETCH_DEADLINE + 1 s, with the image or `fetch_timeout`. Every server here is on 127.0.0.1 and stops
with its test."""
import socket
import time

import pytest

from app import fetch as fetch_module
from app.config import Settings
from app.errors import ApiError
from app.fetch import fetch

from .servers import RawServer, garment_photo, trickle

DEADLINE = 2.0
# Per-operation timeouts far above the deadline: only the deadline can end these fetches in time.
SETTINGS = Settings(fetch_connect_timeout=30.0, fetch_read_timeout=30.0,
                    fetch_deadline=DEADLINE).replace(fetch_allow_private="127.0.0.0/8")
PHOTO = garment_photo()


def timed_out(url, settings=SETTINGS):
    start = time.monotonic()
    with pytest.raises(ApiError) as raised:
        fetch(url, settings)
    elapsed = time.monotonic() - start
    assert raised.value.code == "fetch_timeout", raised.value.detail
    assert elapsed <= settings.fetch_deadline + 1, f"the fetch took {elapsed:.2f} s"
    return elapsed


def head(length: int | None = None, status: str = "200 OK", extra: str = "") -> bytes:
    lines = f"HTTP/1.1 {status}\r\nContent-Type: image/jpeg\r\n{extra}"
    if length is not None:
        lines += f"Content-Length: {length}\r\n"
    return (lines + "Connection: close\r\n\r\n").encode()


def test_trickled_headers_end_at_the_deadline():
    script = lambda conn, stopped: trickle(conn, stopped, head(len(PHOTO)) * 50, 0.1)  # noqa: E731
    with RawServer(script) as server:
        timed_out(server.url())


def test_trickled_body_with_a_length_ends_at_the_deadline():
    def script(conn, stopped):
        conn.sendall(head(len(PHOTO)))
        trickle(conn, stopped, PHOTO, 0.1)
    with RawServer(script) as server:
        timed_out(server.url())


def test_trickled_body_without_a_length_is_not_taken_for_a_short_image():
    def script(conn, stopped):  # no Content-Length: a cut-short body would otherwise look complete
        conn.sendall(head(None) + PHOTO[:100])
        trickle(conn, stopped, PHOTO[100:], 0.1)
    with RawServer(script) as server:
        timed_out(server.url())


def test_a_chain_of_slow_redirects_shares_one_deadline():
    def script(conn, stopped):  # each hop alone is well inside the deadline; four of them are not
        if not stopped.wait(0.8):
            conn.sendall(head(0, "302 Found", "Location: /next\r\n"))
    with RawServer(script) as server:
        timed_out(server.url("/first"), SETTINGS.replace(fetch_max_redirects=5))
        assert server.connections <= 4


def test_a_server_that_accepts_and_never_answers():
    with RawServer(lambda conn, stopped: stopped.wait(30)) as server:
        timed_out(server.url())


def test_a_connect_that_never_completes():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # a full accept queue: further SYNs are dropped, so connect() hangs
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        timed_out(f"http://127.0.0.1:{port}/x.jpg")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_slow_dns_counts_against_the_deadline(monkeypatch):
    def slow_resolve(host, port):
        time.sleep(DEADLINE + 2)
        return ["127.0.0.1"]
    monkeypatch.setattr(fetch_module, "resolve", slow_resolve)
    timed_out("http://cdn.example.com/x.jpg")


def test_a_slow_but_steady_body_inside_the_deadline_is_fetched():
    def script(conn, stopped):
        conn.sendall(head(len(PHOTO)))
        for start in range(0, len(PHOTO), 2000):  # small pieces with pauses: many reads, one image
            if stopped.wait(0.02):
                return
            conn.sendall(PHOTO[start:start + 2000])
    with RawServer(script) as server:
        assert fetch(server.url(), SETTINGS).data == PHOTO


def test_socket_timeouts_follow_the_time_left():
    deadline = fetch_module.Deadline(1.0)
    try:
        timeout = deadline.timeout(30.0, 30.0)
        assert timeout.connect_timeout <= 1.0 and timeout.read_timeout <= 1.0
        time.sleep(0.5)
        assert deadline.timeout(30.0, 30.0).read_timeout <= 0.5
        assert deadline.timeout(0.1, 0.2).read_timeout == 0.2  # a shorter configured timeout still applies
    finally:
        deadline.close()
