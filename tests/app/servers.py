"""A local HTTP server (127.0.0.1 only) that serves good and hostile responses to the fetcher."""
from __future__ import annotations

import io
import json
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image, ImageDraw


STREET_PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "clothing-co-parsing" / "photos"


def held_out_street_photo(pipeline) -> Path:
    """A real street photo the committed detector never saw in training (the last of its validation split):
    what a test needs where garments must be found (a drawn picture is not one the detector has to know)."""
    split = json.loads((pipeline.detector.bundle_dir / "split.json").read_text())
    return STREET_PHOTOS / f"{max(split['val']):04d}.jpg"


def garment_photo(colour=(200, 30, 40), size=(300, 400), seed: int = 0) -> bytes:
    image = Image.new("RGB", size, (245, 245, 245))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.rectangle((w * 0.25, h * 0.2, w * 0.75, h * 0.6), fill=colour)  # body of a top
    draw.rectangle((w * 0.1, h * 0.2, w * 0.25, h * 0.35), fill=colour)  # sleeves
    draw.rectangle((w * 0.75, h * 0.2, w * 0.9, h * 0.35), fill=colour)
    draw.rectangle((w * 0.3, h * 0.62, w * 0.7, h * 0.95), fill=(30, 40, 90 + seed % 100))  # trousers
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def encoded_photo(fmt: str, colour=(200, 30, 40), **options) -> bytes:
    """garment_photo's picture in another format (AVIF, HEIF, WebP, ...)."""
    with Image.open(io.BytesIO(garment_photo(colour))) as image:
        out = io.BytesIO()
        image.save(out, fmt, **options)
    return out.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)  # only a few rows: the header alone is the bomb
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class Handler(BaseHTTPRequestHandler):
    routes: dict = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.posts.append((self.path, dict(self.headers), body))
        status = self.server.post_statuses.pop(0) if self.server.post_statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.server.hits.append(self.path)
        path = self.path.split("?")[0]
        route = self.routes.get(path) or next((r for prefix, r in self.routes.items()
                                                if prefix.endswith("/") and path.startswith(prefix)), None)
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        route(self)


def send(handler, body: bytes, content_type: str = "image/jpeg", status: int = 200, length: bool = True):
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client hung up on purpose (byte cap)


def redirect(location: str):
    def route(handler):
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return route


def endless(handler):
    """30 MB without a Content-Length: the cap must be enforced while streaming."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.end_headers()
    chunk = b"\xff\xd8\xff" + b"\x00" * (1024 * 1024 - 3)
    try:
        for _ in range(30):
            handler.wfile.write(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass


def negotiated(handler):
    """An image CDN: AVIF to a client that accepts it, else JPEG (the same picture)."""
    if "image/avif" in handler.headers.get("Accept", ""):
        send(handler, encoded_photo("AVIF", quality=80), "image/avif")
    else:
        send(handler, garment_photo(), "image/jpeg")


def never_answers(handler):
    time.sleep(5)


def numbered_photo(handler):
    """/img/<n>.jpg: a distinct photo per n, after an optional ?delay=seconds."""
    name = handler.path.split("?")[0].rsplit("/", 1)[-1]
    if "delay=" in handler.path:
        time.sleep(float(handler.path.split("delay=")[1].split("&")[0]))
    n = int(name.split(".")[0])
    send(handler, garment_photo(((n * 37) % 255, (n * 91) % 255, (n * 53) % 255), seed=n))


class LocalServer:
    def __init__(self):
        self.photo = garment_photo()
        self.flaky_failures: dict[str, int] = {}

        def flaky(handler):
            """503 for the first N requests of each ?key=, then the photo."""
            key = handler.path.split("key=")[-1]
            remaining = self.flaky_failures.get(key, 0)
            if remaining:
                self.flaky_failures[key] = remaining - 1
                send(handler, b"busy", "text/plain", status=503)
            else:
                send(handler, garment_photo((10, 150, 150), seed=hash(key) % 97))

        routes = {
            "/shirt.jpg": lambda h: send(h, self.photo),
            "/blue.jpg": lambda h: send(h, garment_photo((30, 60, 200), seed=1)),
            "/same-shirt.jpg": lambda h: send(h, self.photo),
            "/redirect": redirect("/shirt.jpg"),
            "/redirect-private": redirect("http://10.1.2.3/secret.jpg"),
            "/redirect-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
            "/loop": redirect("/loop"),
            "/big-declared": lambda h: send(h, b"\xff\xd8\xff" + b"\x00" * (30 * 1024 * 1024)),
            "/big-streamed": endless,
            "/slow": never_answers,
            "/bomb.png": lambda h: send(h, png_bomb(), "image/png"),
            "/truncated.jpg": lambda h: send(h, self.photo[: len(self.photo) // 3]),
            "/page.html": lambda h: send(h, b"<html><body>not an image</body></html>", "image/jpeg"),
            "/empty.jpg": lambda h: send(h, b""),
            "/gone": lambda h: send(h, b"", status=410),
            "/unavailable": lambda h: send(h, b"down", "text/plain", status=503),
            "/flaky": flaky,
            "/negotiated": negotiated,
            "/img/": numbered_photo,
            "/hook": lambda h: send(h, b""),
        }
        handler = type("RoutedHandler", (Handler,), {"routes": routes})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.hits = []
        self.httpd.posts = []  # (path, headers, body) of every POST (webhooks)
        self.httpd.post_statuses = []  # statuses to answer the next POSTs with, then 200
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class RawServer:
    """A TCP server on 127.0.0.1 that runs `script(connection, stopped)` for each connection: for answers
    no well-behaved HTTP server gives (headers or bodies trickled a byte at a time). `stopped` is set when
    the server closes, so every script ends with the test."""

    def __init__(self, script):
        import socket

        self.script, self.stopped = script, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path: str = "/x.jpg") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(connection,), daemon=True).start()

    def _run(self, connection):
        with connection:
            try:
                connection.settimeout(10)
                connection.recv(65536)  # the request
                self.script(connection, self.stopped)
            except OSError:
                pass  # the client hung up: what a deadline does

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        import socket

        self.stopped.set()
        try:  # wakes the thread blocked in accept()
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()


def trickle(connection, stopped, data: bytes, interval: float) -> None:
    """Send `data` one byte every `interval` seconds (each byte alone resets a per-read timeout)."""
    for byte in data:
        if stopped.wait(interval):
            return
        connection.sendall(bytes([byte]))


class TcpProxy:
    """127.0.0.1:port -> 127.0.0.1:target_port. stop() closes the listener and cuts every connection, as a
    dependency that goes down does; start() listens on the same port again, as it does when it returns.
    Lets tests take PostgreSQL or Redis away for real without stopping the shared servers."""

    def __init__(self, target_port: int):
        import socket

        self.target = ("127.0.0.1", target_port)
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.listener = None
        self.sockets: list = []
        self.lock = threading.Lock()

    def url_port(self) -> int:
        return self.port

    def start(self):
        import socket

        self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def _accept(self, listener):
        import socket

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass

    def stop(self):
        import socket

        if self.listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone leaves the port listening
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
