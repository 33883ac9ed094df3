"""Safe image download: the service's security boundary.

Every address a URL's host resolves to is checked before any connection, and the connection goes to
the checked address itself (the Host header and TLS SNI carry the name), so a DNS answer that changes
between check and connect cannot reach a private network. Each redirect hop is checked again.
Bodies are streamed under a byte cap, then sniffed and decoded with Pillow's pixel limit.

One deadline covers the whole fetch (DNS, every hop's connect, headers and body): socket timeouts
never exceed the time left, and a watchdog shuts the socket down when the deadline passes, because a
server that trickles one byte per second resets a per-read timeout forever.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import ipaddress
import socket
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urljoin, urlsplit

import numpy as np
import urllib3
from PIL import Image, UnidentifiedImageError

from common.images import converts_colour, to_rgb_array

from .config import Settings
from .errors import ApiError
from .image_formats import accept_header, describe, sniff

REDIRECTS = {301, 302, 303, 307, 308}
READ_CHUNK = 16 * 1024  # small reads: the deadline is checked between them
# getaddrinfo has no timeout of its own: lookups run here and are waited for only as long as time is left.
_RESOLVER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="resolve")


@dataclasses.dataclass
class FetchedImage:
    data: bytes
    url: str | None
    content_type: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# ---- address policy ----------------------------------------------------------------------------------

def address_allowed(address: str, settings: Settings) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if any(ip in network for network in settings.fetch_allow_private):
        return True
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped or ip.sixtofour or ip.teredo):
        return False  # an IPv4 address wearing IPv6 clothes: refuse rather than reason about it
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback
                                 or ip.is_link_local or ip.is_private)


def resolve(host: str, port: int) -> list[str]:
    """All addresses of `host` (tests replace this to keep every packet on the machine)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def checked_address(host: str, port: int, settings: Settings, deadline: "Deadline | None" = None) -> str:
    try:
        if deadline is None:
            addresses = resolve(host, port)
        else:
            addresses = _RESOLVER.submit(resolve, host, port).result(timeout=max(deadline.left(), 0.001))
    except FutureTimeout:
        raise deadline.error()
    except (socket.gaierror, UnicodeError) as error:
        raise ApiError("fetch_failed", f"cannot resolve {host!r}: {error}")
    if not addresses:
        raise ApiError("fetch_failed", f"{host!r} has no address")
    blocked = [a for a in addresses if not address_allowed(a, settings)]
    if blocked:
        raise ApiError("blocked_address", f"{host!r} resolves to a non-public address ({blocked[0]})")
    return addresses[0]


def parse_url(url: str) -> tuple[str, str, int, str]:
    if not isinstance(url, str) or len(url) > 4096:
        raise ApiError("invalid_url", "image_url must be a string of at most 4096 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise ApiError("invalid_url", str(error))
    if parts.scheme not in ("http", "https"):
        raise ApiError("invalid_url", "only http and https URLs are fetched")
    if not parts.hostname:
        raise ApiError("invalid_url", "the URL has no host")
    if parts.username or parts.password:
        raise ApiError("invalid_url", "credentials in URLs are not accepted")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), target


# ---- transport -----------------------------------------------------------------------------------------

class Deadline:
    """The one clock of a fetch. `timeout()` gives socket timeouts capped by the time left; at the deadline
    a timer shuts down every socket the fetch opened, which wakes any blocked read or handshake at once.
    Each socket is watched through a duplicate descriptor that this object owns, so a descriptor number
    reused elsewhere after the connection closed is never touched."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._watched: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        return self.end - time.monotonic()

    def error(self) -> ApiError:
        return ApiError("fetch_timeout", f"the download took longer than {self.seconds:g} s")

    def check(self) -> None:
        if self.expired or self.left() <= 0:
            raise self.error()

    def timeout(self, connect: float, read: float) -> urllib3.Timeout:
        left = max(self.left(), 0.001)
        return urllib3.Timeout(connect=min(connect, left), read=min(read, left))

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            duplicate = sock.dup()
            self._watched.append(duplicate)
            if self.expired:
                self._shutdown(duplicate)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed by the peer

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._watched:
                self._shutdown(sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._watched:
                sock.close()
            self._watched.clear()


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    deadline: Deadline | None = None

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        if self.deadline is not None:
            self.deadline.watch(sock)
        return sock


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    deadline: Deadline | None = None

    def _new_conn(self) -> socket.socket:  # the raw socket, before the TLS handshake
        sock = super()._new_conn()
        if self.deadline is not None:
            self.deadline.watch(sock)
        return sock


def open_pool(scheme: str, address: str, port: int, host: str, settings: Settings,
              deadline: Deadline | None = None) -> urllib3.HTTPConnectionPool:
    """A connection pool pinned to the checked `address`; TLS still verifies the certificate for `host`.
    With a `deadline`, its timeouts follow the time left and its sockets are shut down when it passes."""
    if deadline is None:
        timeout = urllib3.Timeout(connect=settings.fetch_connect_timeout, read=settings.fetch_read_timeout)
    else:
        timeout = deadline.timeout(settings.fetch_connect_timeout, settings.fetch_read_timeout)
    if scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED")
        pool.ConnectionCls = type("Connection", (_WatchedHTTPSConnection,), {"deadline": deadline})
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
        pool.ConnectionCls = type("Connection", (_WatchedHTTPConnection,), {"deadline": deadline})
    return pool


def _read_capped(response, settings: Settings, deadline: Deadline) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > settings.fetch_max_bytes:
        raise ApiError("too_large", f"the server announced {int(declared)} bytes; the limit is {settings.fetch_max_bytes}")
    body = io.BytesIO()
    for chunk in response.stream(READ_CHUNK, decode_content=True):
        body.write(chunk)
        if body.tell() > settings.fetch_max_bytes:
            raise ApiError("too_large", f"the body exceeds {settings.fetch_max_bytes} bytes")
        deadline.check()
    return body.getvalue()


def timed_out(error: BaseException) -> bool:
    """Whether a connection error was the server's silence. urllib3 files a refused or unreachable
    connection (NewConnectionError) under its TimeoutError too, though it failed at once."""
    return (isinstance(error, (urllib3.exceptions.TimeoutError, socket.timeout))
            and not isinstance(error, urllib3.exceptions.NewConnectionError))


def fetch(url: str, settings: Settings) -> FetchedImage:
    """Download `url` (following checked redirects) within `settings.fetch_deadline` seconds, whatever
    the server does: the answer is the image, or an ApiError (`fetch_timeout` once the deadline passes)."""
    deadline = Deadline(settings.fetch_deadline)
    try:
        return _fetch(url, settings, deadline)
    finally:
        deadline.close()


def _fetch(url: str, settings: Settings, deadline: Deadline) -> FetchedImage:
    current = url
    for _hop in range(settings.fetch_max_redirects + 1):
        scheme, host, port, target = parse_url(current)
        address = checked_address(host, port, settings, deadline)
        deadline.check()
        pool = open_pool(scheme, address, port, host, settings, deadline=deadline)
        try:
            response = pool.urlopen("GET", target, redirect=False, preload_content=False,
                                    headers={"Host": host if port in (80, 443) else f"{host}:{port}",
                                             "User-Agent": settings.user_agent, "Accept": accept_header(settings.image_formats)})
            try:
                deadline.check()
                if response.status in REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise ApiError("fetch_failed", f"redirect {response.status} without a Location")
                    current = urljoin(current, location)
                    continue
                if response.status != 200:
                    raise ApiError("fetch_failed", f"the image server answered HTTP {response.status}",
                                   upstream_status=response.status)
                data = _read_capped(response, settings, deadline)
                deadline.check()  # a body cut short by the watchdog is not an image
                return FetchedImage(data, url, response.headers.get("Content-Type"))
            finally:
                response.release_conn()
        except ApiError:
            raise
        except (urllib3.exceptions.HTTPError, OSError) as error:
            if deadline.expired:  # the watchdog closed the socket: that, not the server, ended the read
                raise deadline.error()
            cause = getattr(error, "reason", None) or error
            if timed_out(cause):
                raise ApiError("fetch_timeout", f"no answer from {host} in time ({type(cause).__name__})")
            raise ApiError("fetch_failed", f"download from {host} failed: {type(cause).__name__}")
        finally:
            pool.close()
    raise ApiError("fetch_failed", f"more than {settings.fetch_max_redirects} redirects")


# ---- decoding ------------------------------------------------------------------------------------------

def decode(data: bytes, settings: Settings) -> np.ndarray:
    """Bytes -> HxWx3 uint8 sRGB: sniffed, pixel-limited, EXIF-rotated, colour profile applied, first frame."""
    if not data:
        raise ApiError("not_an_image", "the body is empty")
    image_format = sniff(data)
    if image_format not in settings.image_formats:
        raise ApiError("unsupported_media_type", f"the content is not {describe(settings.image_formats)}")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _open(data, image_format) as image:
                width, height = image.size
                if width * height > settings.max_image_pixels:
                    raise ApiError("image_too_large", f"{width}x{height} pixels; the limit is {settings.max_image_pixels}")
                image.seek(0)
                image.load()
                return to_rgb_array(image)
        except ApiError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ApiError("image_too_large", str(error))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
            raise ApiError("not_an_image", f"the image could not be decoded: {error}")



def colour_converted(data: bytes, settings: Settings) -> bool:
    """Whether decoding these bytes converts their colours (a profile other than sRGB), from the header
    alone; False for anything decode() would refuse (it says why)."""
    image_format = sniff(data)
    if image_format not in settings.image_formats:
        return False
    try:
        with _open(data, image_format) as image:
            return converts_colour(image)
    except Exception:  # noqa: BLE001 - decode() reports what is wrong with the bytes
        return False


def _open(data: bytes, image_format: str) -> Image.Image:
    # Only the sniffed format's decoder may read the bytes: no other plugin gets a guess at them.
    return Image.open(io.BytesIO(data), formats=[image_format.upper()])
