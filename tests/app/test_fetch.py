"""The fetcher is the security boundary: every refusal here must happen before any connection."""
import io
import socket

import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from app.errors import ApiError
from app.fetch import decode, fetch
from app.image_formats import sniff

from .servers import encoded_photo, garment_photo, png_bomb

NO_ALLOW_LIST = Settings(fetch_read_timeout=1.0, fetch_connect_timeout=1.0, fetch_deadline=3.0)
LOOPBACK_ALLOWED = NO_ALLOW_LIST.replace(fetch_allow_private="127.0.0.0/8")


def refused(url, settings, code):
    with pytest.raises(ApiError) as raised:
        fetch(url, settings)
    assert raised.value.code == code, raised.value.detail
    return raised.value


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.jpg", "http://10.0.0.1/x.jpg", "http://172.16.5.4/x.jpg", "http://172.31.255.1/x.jpg",
    "http://192.168.1.1/x.jpg", "http://169.254.169.254/latest/meta-data/", "http://[::1]/x.jpg",
    "http://[::ffff:127.0.0.1]/x.jpg", "http://[::ffff:10.0.0.1]/x.jpg", "http://2130706433/x.jpg",
    "http://0177.0.0.1/x.jpg", "http://0x7f.1/x.jpg", "http://0.0.0.0/x.jpg", "http://[fe80::1]/x.jpg",
    "http://224.0.0.1/x.jpg", "http://100.64.0.1/x.jpg", "http://[fc00::1]/x.jpg", "http://240.0.0.1/x.jpg",
    "http://images.example.com/x.jpg",  # a public-looking name that resolves to 10.20.30.40
    "http://mixed.example.com/x.jpg",  # one public and one private address: refused
])
def test_private_and_special_addresses_are_refused_without_connecting(url, network_guard):
    refused(url, NO_ALLOW_LIST, "blocked_address")
    assert network_guard.attempts == []


def test_loopback_is_refused_without_the_allow_list_even_when_it_serves(image_server, network_guard):
    hits_before = len(image_server.httpd.hits)  # the server is shared with earlier tests
    refused(image_server.url("/shirt.jpg"), NO_ALLOW_LIST, "blocked_address")
    assert network_guard.attempts == [] and image_server.httpd.hits[hits_before:] == []


def test_allow_listed_loopback_is_fetched(image_server):
    fetched = fetch(image_server.url("/shirt.jpg"), LOOPBACK_ALLOWED)
    assert fetched.data == image_server.photo and len(fetched.sha256) == 64


def test_allow_list_does_not_open_ipv4_mapped_ipv6(network_guard):
    refused("http://[::ffff:127.0.0.1]/x.jpg", LOOPBACK_ALLOWED, "blocked_address")
    assert network_guard.attempts == []


def test_redirects_are_followed_and_every_hop_is_checked(image_server, network_guard):
    assert fetch(image_server.url("/redirect"), LOOPBACK_ALLOWED).data == image_server.photo
    refused(image_server.url("/redirect-private"), LOOPBACK_ALLOWED, "blocked_address")
    refused(image_server.url("/redirect-metadata"), LOOPBACK_ALLOWED, "blocked_address")
    assert all(a == "127.0.0.1" for a in network_guard.attempts)


def test_redirect_loops_stop_after_three_hops(image_server, network_guard):
    error = refused(image_server.url("/loop"), LOOPBACK_ALLOWED, "fetch_failed")
    assert "redirects" in error.detail and len(network_guard.attempts) == 4


@pytest.mark.parametrize("url", ["ftp://example.com/x.jpg", "file:///etc/passwd", "gopher://x", "http://",
                                 "http://user:pw@cdn.example.com/x.jpg", "http://cdn.example.com:99999/x", "not a url"])
def test_malformed_urls(url, network_guard):
    refused(url, NO_ALLOW_LIST, "invalid_url")
    assert network_guard.attempts == []


def test_unknown_host_is_a_fetch_failure():
    refused("http://no-such-host.invalid/x.jpg", NO_ALLOW_LIST, "fetch_failed")


@pytest.mark.parametrize("path", ["/big-declared", "/big-streamed"])
def test_bodies_over_the_cap_are_refused(image_server, path):
    refused(image_server.url(path), LOOPBACK_ALLOWED, "too_large")


def test_a_server_that_never_answers_times_out(image_server):
    refused(image_server.url("/slow"), LOOPBACK_ALLOWED, "fetch_timeout")


def test_a_refused_connection_is_a_fetch_failure_not_a_timeout():
    with socket.socket() as closed:  # a loopback port that nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    error = refused(f"http://127.0.0.1:{port}/x.jpg", LOOPBACK_ALLOWED, "fetch_failed")
    assert "NewConnectionError" in error.detail


def test_http_errors_are_fetch_failures(image_server):
    error = refused(image_server.url("/gone"), LOOPBACK_ALLOWED, "fetch_failed")
    assert error.extra["upstream_status"] == 410


def test_decompression_bomb_is_refused_not_decoded():
    with pytest.raises(ApiError) as raised:
        decode(png_bomb(), Settings())
    assert raised.value.code == "image_too_large"


def test_truncated_jpeg_is_not_an_image():
    data = garment_photo()
    with pytest.raises(ApiError) as raised:
        decode(data[: len(data) // 3], Settings())
    assert raised.value.code == "not_an_image"


def test_content_is_sniffed_not_trusted():
    with pytest.raises(ApiError) as raised:
        decode(b"<html>hello</html>", Settings())
    assert raised.value.code == "unsupported_media_type"


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize("image, fmt", [
    (Image.new("P", (8, 6)), "PNG"), (Image.new("RGBA", (8, 6), (255, 0, 0, 0)), "PNG"),
    (Image.new("CMYK", (8, 6)), "JPEG"), (Image.new("L", (8, 6)), "JPEG"),
    (Image.fromarray(np.full((6, 8), 60000, np.uint16)), "PNG"), (Image.new("RGB", (8, 6)), "WEBP"),
])
def test_every_mode_becomes_rgb(image, fmt):
    array = decode(_encode(image, fmt), Settings())
    assert array.shape == (6, 8, 3) and array.dtype == np.uint8


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    assert decode(_encode(image, "JPEG", exif=exif), Settings()).shape == (40, 20, 3)


def test_animated_gif_uses_its_first_frame():
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode(data, Settings())[5, 5, 0] > 200


# ---- formats: what phones save (HEIC) and image CDNs send (AVIF) ----------------------------------------

@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_decode_like_the_jpeg_they_were_made_from(fmt):
    jpeg = decode(garment_photo(), Settings()).astype(np.int16)
    other = decode(encoded_photo(fmt, quality=90), Settings()).astype(np.int16)
    assert other.shape == jpeg.shape and np.abs(other - jpeg).mean() < 3


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_refusals(fmt):
    data = encoded_photo(fmt, quality=90)
    for broken in (data[: len(data) // 2], data[:40]):
        with pytest.raises(ApiError) as raised:
            decode(broken, Settings())
        assert raised.value.code == "not_an_image"
    with pytest.raises(ApiError) as raised:
        decode(data, Settings(max_image_pixels=300 * 400 - 1))
    assert raised.value.code == "image_too_large"


@pytest.mark.parametrize("head, expected", [
    (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heicmiaf", "heif"),
    (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "heif"),
    (b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1miafMA1B", "avif"),
    (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "avif"),  # an AVIF brand anywhere wins
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", None),  # an MP4 video
    (b"\x00\x00\xff\xffftypheic\x00\x00\x00\x00", None),  # a box longer than the data
])
def test_iso_media_files_are_told_apart_by_their_brands(head, expected):
    assert sniff(head + bytes(64)) == expected


def test_a_video_is_an_unsupported_media_type():
    with pytest.raises(ApiError) as raised:
        decode(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(256), Settings())
    assert raised.value.code == "unsupported_media_type"


def test_image_formats_narrows_what_is_decoded():
    settings = Settings().replace(image_formats="jpeg, png")
    assert decode(garment_photo(), settings).shape == (400, 300, 3)
    for fmt in ("AVIF", "HEIF", "WEBP"):
        with pytest.raises(ApiError) as raised:
            decode(encoded_photo(fmt), settings)
        assert raised.value.code == "unsupported_media_type" and raised.value.detail == "the content is not JPEG, PNG"
    with pytest.raises(ValueError, match="unknown"):
        Settings.from_env({"IMAGE_FORMATS": "jpeg,svg"})


def test_a_negotiating_server_is_asked_for_the_formats_we_decode(image_server):
    fetched = fetch(image_server.url("/negotiated"), LOOPBACK_ALLOWED)
    assert sniff(fetched.data) == "avif" and fetched.content_type == "image/avif"
    jpeg_only = LOOPBACK_ALLOWED.replace(image_formats="jpeg,png")
    assert sniff(fetch(image_server.url("/negotiated"), jpeg_only).data) == "jpeg"


def test_a_multi_picture_jpeg_decodes_its_first_picture():
    # MPO (a JPEG with more pictures after it, as some phones save): Pillow's JPEG reader opens it.
    frames = [Image.new("RGB", (40, 30), (255, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 255))]
    data = _encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    assert decode(data, Settings())[5, 5, 0] > 200
