"""Evidence attachments (SPEC §13): photos and PDFs named by the SHA-256 of their bytes.

The type is decided from the bytes: Pillow identifies JPEG, PNG and WebP (its other decoders are never
tried), a PDF by its ``%PDF-`` header. An image's size is read from its header and checked against
:data:`MAX_PIXELS` before any pixel is decoded; then its EXIF capture time and GPS position are read and
a JPEG thumbnail of at most :data:`THUMBNAIL_PX` pixels is made, carrying no metadata at all.

Who reads a file: admin and leadership keys; the keys that uploaded it; a district key when a record of its
district (an inspection or a rectification response) names it; an agency key when its own inspection names
it, or a response to an item its own inspection opened (the inspector verifies the fix). Those grants are kept by the store beside the references (:func:`store.base.attachment_grants`).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..domain.timeutil import now_stored
from ..store import Outcome, Store
from .context import ServiceState
from .errors import Forbidden, Invalid, NotFound, TooLarge, UnsupportedType
from .keys import Principal

MIB = 1024 * 1024
#: largest file taken (SPEC §13); JSON bodies elsewhere keep the app's MAX_CONTENT_LENGTH
MAX_BYTES = 10 * MIB
#: largest image taken, in pixels (width × height), checked before decoding
MAX_PIXELS = 40_000_000
#: a thumbnail's longer side at most
THUMBNAIL_PX = 320
THUMBNAIL_TYPE = "image/jpeg"

SHA256_PATTERN = r"^[0-9a-f]{64}(?!\n)$"
_SHA256 = re.compile(SHA256_PATTERN)

#: Pillow format → content type; no other decoder of Pillow is ever tried on an upload
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
#: what Pillow names the formats it opens: a phone's JPEG with several pictures (MPF) opens as "MPO"
FORMAT_TYPES = {**IMAGE_TYPES, "MPO": "image/jpeg"}
PDF = "application/pdf"
CONTENT_TYPES = (*IMAGE_TYPES.values(), PDF)
#: declared types that name no type: the bytes alone decide
UNDECLARED = ("", "application/octet-stream")
#: other names clients give the accepted types
ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", PDF: "pdf"}

#: what a broken image file raises in Pillow while it is decoded
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
#: what malformed EXIF raises while it is read (it is then ignored: the file is still taken)
EXIF_ERRORS = (*DECODE_ERRORS, TypeError, KeyError, IndexError, ZeroDivisionError, OverflowError)

#: roles that read every attachment
READ_ALL = ("admin", "leadership")


# -- reading a file --------------------------------------------------------------------------

@dataclass(frozen=True)
class Analysis:
    """What the bytes of an accepted file are."""

    content_type: str
    width: int | None = None
    height: int | None = None
    captured_at: str | None = None
    gps: dict | None = None
    thumbnail: bytes | None = None


def declared_type(value: str | None) -> str | None:
    """The type a client declared, normalised; None when it declared none. 415 for a type never taken."""
    value = (value or "").split(";")[0].strip().lower()
    if value in UNDECLARED:
        return None
    value = ALIASES.get(value, value)
    if value not in CONTENT_TYPES:
        raise UnsupportedType(f"file: type {value} is not taken; send JPEG, PNG, WebP or PDF",
                              {"file": [f"type {value} is not taken; send {', '.join(CONTENT_TYPES)}"]})
    return value


def _refuse_type(message: str):
    raise UnsupportedType(f"file: {message}", {"file": [message]})


def check_declared(declared: str | None, actual: str) -> None:
    """415 when the declared type is not the one the bytes are."""
    if declared is not None and declared != actual:
        _refuse_type(f"declared {declared} but the bytes are {actual}")


def analyse(data: bytes, declared: str | None = None) -> Analysis:
    """Decide the type from the bytes and read what an image says of itself; refuse what is not taken
    (415), an image over :data:`MAX_PIXELS` or that cannot be decoded (422)."""
    try:
        image = Image.open(io.BytesIO(data), formats=tuple(IMAGE_TYPES))
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: refused before decoding
        raise _too_many_pixels(None) from None
    except UnidentifiedImageError:
        image = None
    except DECODE_ERRORS:  # identified, but its header is broken
        raise Invalid.field("file", "the image cannot be decoded") from None
    if image is None:
        if data.startswith(b"%PDF-"):
            check_declared(declared, PDF)
            return Analysis(PDF)
        _refuse_type("not a JPEG, PNG, WebP or PDF file" + (f" (declared {declared})" if declared else ""))
    with image:
        content_type = FORMAT_TYPES[image.format]
        check_declared(declared, content_type)
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise _too_many_pixels((width, height))
        captured_at, gps = exif_facts(image)
        try:
            thumbnail = make_thumbnail(image)
        except Image.DecompressionBombError:
            raise _too_many_pixels((width, height)) from None
        except DECODE_ERRORS:
            raise Invalid.field("file", "the image cannot be decoded") from None
    return Analysis(content_type, width, height, captured_at, gps, thumbnail)


def _too_many_pixels(size: tuple[int, int] | None) -> Invalid:
    what = f"{size[0]} × {size[1]} pixels" if size else "too many pixels"
    return Invalid.field("file", f"image of {what}; at most {MAX_PIXELS // 1_000_000} megapixels are taken")


def make_thumbnail(image: Image.Image) -> bytes:
    """A JPEG of at most :data:`THUMBNAIL_PX` × :data:`THUMBNAIL_PX`, upright, without any metadata
    (no EXIF, no GPS, no ICC profile, no comments). JPEGs are decoded at a reduced scale (Pillow's draft)."""
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))  # decodes (reduced) and shrinks in place
    upright = _upright(image)  # the orientation the camera recorded
    if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
        rgba = upright.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))
    else:
        flat = upright.convert("RGB")
    clean = Image.frombytes("RGB", flat.size, flat.tobytes())  # pixels only: nothing of the original's info
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=80, optimize=True)
    return out.getvalue()


#: EXIF Orientation → the turn that makes the picture upright (Pillow's ImageOps.exif_transpose's table)
ORIENTATION_TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                     4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                     7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation says. Pillow's ``exif_transpose`` also writes the EXIF back
    without that tag, which raises on a malformed other tag (a GPS tag of the wrong type: TypeError, a 500
    for the upload); the thumbnail keeps no metadata, so the turn alone is made then (none when even the
    Orientation cannot be read)."""
    try:
        return ImageOps.exif_transpose(image)
    except EXIF_ERRORS:
        try:
            orientation = image.getexif().get(ExifTags.Base.Orientation)
        except EXIF_ERRORS:
            return image
        turn = ORIENTATION_TURNS.get(orientation) if isinstance(orientation, int) else None
        return image.transpose(turn) if turn is not None else image


def exif_facts(image: Image.Image) -> tuple[str | None, dict | None]:
    """The EXIF capture time (``DateTimeOriginal``, with ``OffsetTimeOriginal`` when recorded; else the
    camera's local time without a zone) and GPS position in decimal degrees; None for what is absent or
    malformed."""
    try:
        exif = image.getexif()
        details = exif.get_ifd(ExifTags.IFD.Exif)
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except EXIF_ERRORS:
        return None, None
    return _capture_time(details), _position(gps_ifd)


def _capture_time(details: Mapping) -> str | None:
    raw = details.get(ExifTags.Base.DateTimeOriginal)
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.strptime(raw.strip("\x00 ").strip(), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    text = moment.isoformat()
    offset = details.get(ExifTags.Base.OffsetTimeOriginal)
    if isinstance(offset, str) and re.fullmatch(r"[+-](0\d|1[0-4]):[0-5]\d", offset.strip("\x00 ")):
        text += offset.strip("\x00 ")
    return text


def _position(gps: Mapping) -> dict | None:
    try:
        lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef), "N", "S")
        lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef), "E", "W")
    except EXIF_ERRORS:
        return None
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return {"lat": round(lat, 7), "lon": round(lon, 7)}


def _degrees(dms, ref, positive: str, negative: str) -> float | None:
    if not isinstance(dms, tuple) or len(dms) != 3:
        return None
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    if not isinstance(ref, str):  # a reference of another EXIF type (numbers): no hemisphere
        return None
    ref = ref.strip("\x00 ").upper()
    if ref not in (positive, negative):
        return None
    degrees, minutes, seconds = (float(part) for part in dms)
    value = degrees + minutes / 60 + seconds / 3600
    if not math.isfinite(value):
        return None
    return -value if ref == negative else value


# -- use cases -----------------------------------------------------------------------------

def attachment_view(record: Mapping) -> dict:
    """An attachment as the API shows it, with where its bytes and thumbnail are read."""
    sha256 = record["sha256"]
    url = f"/api/v1/attachments/{sha256}"
    return {
        **{k: record.get(k) for k in ("sha256", "content_type", "size", "width", "height", "captured_at", "gps",
                                      "uploaded_by", "uploaded_at", "has_thumbnail")},
        "url": url,
        "thumbnail_url": f"{url}/thumbnail" if record.get("has_thumbnail") else None,
    }


def upload(ctx: ServiceState, data: bytes, declared: str | None, principal: Principal) -> tuple[Outcome, dict]:
    """Store one file: CREATED, or DUPLICATE with the record already stored when the same bytes were
    uploaded before (the caller may then read it too). 413 over :data:`MAX_BYTES`, 415 for a type not
    taken or not the declared one, 422 for an empty file, too many pixels or an image that cannot be
    decoded."""
    if len(data) > MAX_BYTES:
        raise TooLarge(f"file: larger than {MAX_BYTES} bytes (10 MiB)",
                       {"file": [f"larger than {MAX_BYTES} bytes (10 MiB)"]})
    if not data:
        raise Invalid.field("file", "is empty")
    declared = declared_type(declared)
    sha256 = hashlib.sha256(data).hexdigest()
    existing = ctx.store.get_attachment(sha256)
    if existing is not None:  # the same bytes: nothing to read again
        check_declared(declared, existing["content_type"])
        ctx.store.add_attachment_uploader(sha256, principal.key_id)
        return Outcome.DUPLICATE, attachment_view(existing)
    facts = analyse(data, declared)
    record = {"sha256": sha256, "content_type": facts.content_type, "size": len(data), "width": facts.width,
              "height": facts.height, "captured_at": facts.captured_at, "gps": facts.gps,
              "uploaded_by": principal.key_id, "uploaded_at": now_stored(),
              "has_thumbnail": facts.thumbnail is not None}
    outcome = ctx.store.put_attachment(record, data, facts.thumbnail)
    stored = record if outcome is Outcome.CREATED else ctx.store.get_attachment(sha256)
    return outcome, attachment_view(stored)


def grants_of(principal: Principal) -> list[str]:
    """The grants (:func:`store.base.attachment_grants`) a key holds."""
    grants = [f"key:{principal.key_id}"]
    if principal.role == "district" and principal.district_id:
        grants.append(f"district:{principal.district_id}")
    if principal.role == "agency" and principal.agency_id:
        grants.append(f"agency:{principal.agency_id}")
    return grants


def may_read(store: Store, principal: Principal, sha256: str) -> bool:
    if principal.role in READ_ALL:
        return True
    if principal.role not in ("agency", "district"):  # only they (and admins) upload or are granted
        return False
    return store.attachment_access(sha256, grants_of(principal))


def check_sha256(sha256: str, field: str = "sha256") -> None:
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise Invalid.field(field, "must be a SHA-256: 64 lowercase hexadecimal digits")


def readable_attachment(ctx: ServiceState, principal: Principal, sha256: str) -> dict:
    """The record of a file the caller may read: 422 for a malformed hash, 404 unknown, 403 not readable."""
    check_sha256(sha256)
    record = ctx.store.get_attachment(sha256)
    if record is None:
        raise NotFound("attachment", sha256)
    if not may_read(ctx.store, principal, sha256):
        raise Forbidden("this key may not read this attachment: it is read by admin and leadership keys, its "
                        "uploader, the district of a record that names it and the agency of an inspection that "
                        "names it or whose inspection opened the rectification item it answers")
    return record


def read_file(ctx: ServiceState, principal: Principal, sha256: str, thumbnail: bool = False) -> tuple[dict, bytes]:
    """A readable file's record and bytes (or thumbnail's: 404 for a PDF, which has none)."""
    record = readable_attachment(ctx, principal, sha256)
    if thumbnail and not record.get("has_thumbnail"):
        raise NotFound("thumbnail of attachment", sha256)
    data = ctx.store.attachment_bytes(sha256, thumbnail=thumbnail)
    if data is None:  # the store writes bytes before records: only lost files get here
        raise NotFound("bytes of attachment", sha256)
    return record, data


def check_readable(ctx: ServiceState, principal: Principal, hashes: Iterable[str], field: str) -> None:
    """Invalid (422) naming ``field`` unless every hash names an attachment ``principal`` may read
    (SPEC §13). Unknown and unreadable are answered alike, so a hash tells nothing of files one may not see."""
    errors = []
    for sha256 in dict.fromkeys(hashes):
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            errors.append(f"{sha256!r} is not a SHA-256 (64 lowercase hexadecimal digits)")
        elif ctx.store.get_attachment(sha256) is None or not may_read(ctx.store, principal, sha256):
            errors.append(f"{sha256}: no attachment this key may read")
    if errors:
        raise Invalid(f"{field}: {errors[0]}", {field: errors})


def inspection_refs(round_id: str, inspection_id: str, community: Mapping, agency_id: str,
                    hashes: Iterable[str]) -> list[dict]:
    """The references of an inspection's ``check_evidence`` (source ``inspection``, one per hash)."""
    return [{"sha256": sha256, "round_id": round_id, "community_id": community["community_id"],
             "district_id": community.get("district_id"), "agency_id": agency_id, "source": "inspection",
             "source_id": inspection_id} for sha256 in dict.fromkeys(hashes)]


# -- maintenance -----------------------------------------------------------------------------

def check_round_files(store: Store, round_id: str) -> list[dict]:
    """Every attachment a round's records name must have its record, its bytes with that very SHA-256 and,
    when it has one, its thumbnail: the problems found (``scoring-service check-attachments``)."""
    problems = []
    refs: dict[str, list[dict]] = {}
    for ref in store.round_attachment_refs(round_id):
        refs.setdefault(ref["sha256"], []).append(ref)
    for sha256, named_by in sorted(refs.items()):
        where = sorted({f"{r['source']}:{r['source_id']}" for r in named_by})
        record = store.get_attachment(sha256)
        data = None if record is None else store.attachment_bytes(sha256)
        if record is None:
            problem = "no record"
        elif data is None:
            problem = "bytes missing"
        elif hashlib.sha256(data).hexdigest() != sha256:
            problem = "bytes do not match their SHA-256"
        elif record.get("has_thumbnail") and store.attachment_bytes(sha256, thumbnail=True) is None:
            problem = "thumbnail missing"
        else:
            continue
        problems.append({"round_id": round_id, "sha256": sha256, "problem": problem, "named_by": where})
    return problems
