"""The image formats the service takes, told apart by their leading bytes (a Content-Type is never trusted).

HEIC is what iPhones save and AVIF what image CDNs send to clients that accept it; both are ISO
base-media files ("ftyp" box) whose brands say which. `IMAGE_FORMATS` narrows the list (a smaller
decoder surface for an operator who never sees TIFF or HEIC); the fetcher asks servers for these.
"""
from __future__ import annotations

# name -> the media types it travels as (the first is the one asked for).
MEDIA_TYPES = {
    "jpeg": ("image/jpeg",), "png": ("image/png",), "webp": ("image/webp",), "avif": ("image/avif",),
    "heif": ("image/heic", "image/heif"), "gif": ("image/gif",), "bmp": ("image/bmp",), "tiff": ("image/tiff",),
}
ALL_FORMATS = tuple(MEDIA_TYPES)

_SIGNATURES = {
    b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"GIF87a": "gif", b"GIF89a": "gif",
    b"BM": "bmp", b"II*\x00": "tiff", b"MM\x00*": "tiff",
}
_AVIF_BRANDS = {b"avif", b"avis"}
# HEVC-coded HEIF (heic/heix/hevc/hevx and their multi-image forms) and the generic image brands.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def sniff(data: bytes) -> str | None:
    """The format `data` starts as, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return _iso_media_format(data)
    return next((name for magic, name in _SIGNATURES.items() if data.startswith(magic)), None)


def _iso_media_format(data: bytes) -> str | None:
    # ftyp box: size, "ftyp", major brand, minor version, compatible brands. AVIF files list mif1 too,
    # so an AVIF brand anywhere wins.
    size = int.from_bytes(data[:4], "big")
    if size < 16 or size > len(data):
        return None
    brands = {data[8:12]} | {data[offset:offset + 4] for offset in range(16, size - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    return None  # an MP4 video, a QuickTime file


def parse_formats(value: str) -> tuple[str, ...]:
    """`IMAGE_FORMATS`: comma-separated names from ALL_FORMATS."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in value.split(",") if name.strip()))
    unknown = [name for name in names if name not in MEDIA_TYPES]
    if unknown or not names:
        raise ValueError(f"IMAGE_FORMATS: unknown {unknown or 'empty list'}; choose from {', '.join(ALL_FORMATS)}")
    return names


def accept_header(formats: tuple[str, ...]) -> str:
    # The formats we decode, then anything at a low weight: a server that negotiates picks one of ours,
    # and a strict one does not answer 406 to a name it lacks (what it sends instead is sniffed).
    return ",".join(MEDIA_TYPES[name][0] for name in formats) + ",*/*;q=0.1"


_DISPLAY_NAMES = {"webp": "WebP", "heif": "HEIC/HEIF"}


def describe(formats: tuple[str, ...]) -> str:
    """The formats as people name them, for error messages: "JPEG, PNG, WebP"."""
    return ", ".join(_DISPLAY_NAMES.get(name, name.upper()) for name in formats)
