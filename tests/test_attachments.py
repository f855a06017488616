"""Evidence attachments (SPEC §13): upload, type and size rules, EXIF, thumbnails, read rules, check_evidence
on inspections, both stores (GridFS on MongoDB, fsynced files on SQLite), backups and the check command."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageFile

from scoring_service.domain.canonical import digest
from scoring_service.domain.timeutil import to_stored
from scoring_service.ops.backup import export_round, import_round, write_jsonl
from scoring_service.services.attachments import MAX_BYTES, analyse
from scoring_service.store import Outcome

from .conftest import inspection, make_app

URL = "/api/v1/attachments"
R = "/api/v1/rounds/r2018"
AT = "2018-09-12T01:00:00.000000Z"


# -- files ------------------------------------------------------------------------------------

def jpeg(size=(640, 480), color=(200, 40, 40), gps=None, taken=None, orientation=None, offset=None) -> bytes:
    """A JPEG, with EXIF capture time, GPS (decimal degrees given, written as degrees/minutes/seconds) and
    orientation when asked."""
    exif = Image.Exif()
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    if taken:
        details = exif.get_ifd(ExifTags.IFD.Exif)
        details[ExifTags.Base.DateTimeOriginal] = taken
        if offset:
            details[ExifTags.Base.OffsetTimeOriginal] = offset
    if gps:
        lat, lon = gps
        block = exif.get_ifd(ExifTags.IFD.GPSInfo)
        block[ExifTags.GPS.GPSLatitudeRef] = "N" if lat >= 0 else "S"
        block[ExifTags.GPS.GPSLatitude] = dms(abs(lat))
        block[ExifTags.GPS.GPSLongitudeRef] = "E" if lon >= 0 else "W"
        block[ExifTags.GPS.GPSLongitude] = dms(abs(lon))
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def dms(value: float) -> tuple[float, float, float]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    return float(degrees), float(minutes), round((value - degrees - minutes / 60) * 3600, 4)


def png(size=(50, 40), mode="RGB", color=(10, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color if mode != "1" else 0).save(out, "PNG", optimize=True)
    return out.getvalue()


def webp(size=(60, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (0, 200, 0)).save(out, "WEBP")
    return out.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def post_file(client, data, headers, content_type="image/jpeg", filename="photo.jpg", multipart=True):
    if multipart:
        return client.post(URL, data={"file": (io.BytesIO(data), filename, content_type)}, headers=headers,
                           content_type="multipart/form-data")
    return client.post(URL, data=data, headers={**headers, "Content-Type": content_type})


# -- analysis (no store) ----------------------------------------------------------------------

def test_exif_capture_time_gps_and_an_upright_thumbnail_without_metadata():
    data = jpeg((800, 400), gps=(41.80245, -123.4321), taken="2018:09:12 09:30:00", orientation=6, offset="+08:00")
    facts = analyse(data, "image/jpeg")
    assert facts.content_type == "image/jpeg" and (facts.width, facts.height) == (800, 400)
    assert facts.captured_at == "2018-09-12T09:30:00+08:00"
    assert facts.gps == pytest.approx({"lat": 41.80245, "lon": -123.4321}, abs=1e-6)
    thumb = Image.open(io.BytesIO(facts.thumbnail))
    assert thumb.format == "JPEG" and thumb.size == (160, 320)  # turned upright (orientation 6), at most 320
    assert len(thumb.getexif()) == 0 and "exif" not in thumb.info and "icc_profile" not in thumb.info
    assert b"Exif" not in facts.thumbnail


def test_malformed_exif_values_give_no_facts_but_the_file_is_taken():
    data = jpeg(gps=(91.5, 10.0), taken="not a date")  # a latitude beyond the pole
    facts = analyse(data)
    assert facts.content_type == "image/jpeg" and facts.captured_at is None and facts.gps is None
    assert analyse(jpeg()).gps is None and analyse(jpeg()).captured_at is None


def jpeg_with_a_mistyped_gps_tag(orientation=6) -> bytes:
    """A phone photo whose GPS block holds GPSDOP (a rational) written as text "E": Pillow reads it, but
    writing that EXIF back (as ImageOps.exif_transpose does) raises TypeError."""
    data = jpeg((800, 400), gps=(41.80245, 123.4321), orientation=orientation)
    entry = b"\x00\x03\x00\x02\x00\x00\x00\x02E\x00"  # GPSLongitudeRef, ASCII, 2 bytes, "E\0" (Pillow writes "MM")
    assert data.count(entry) == 1
    return data.replace(entry, b"\x00\x0b" + entry[2:])  # the same entry as tag 11, GPSDOP


def test_a_mistyped_exif_tag_still_gives_an_upright_thumbnail():
    facts = analyse(jpeg_with_a_mistyped_gps_tag())  # raised TypeError from Pillow's EXIF writer
    assert facts.gps is None  # no longitude reference left: no position
    thumb = Image.open(io.BytesIO(facts.thumbnail))
    assert thumb.size == (160, 320) and len(thumb.getexif()) == 0  # turned upright (orientation 6)
    assert Image.open(io.BytesIO(analyse(jpeg_with_a_mistyped_gps_tag(orientation=1)).thumbnail)).size == (320, 160)


def test_a_gps_reference_written_as_numbers_gives_no_position():
    data = jpeg((80, 40), gps=(41.80245, 123.4321), taken="2018:09:12 09:30:00")
    entry = b"\x00\x01\x00\x02\x00\x00\x00\x02N\x00"  # GPSLatitudeRef, ASCII, 2 bytes, "N\0"
    assert data.count(entry) == 1
    facts = analyse(data.replace(entry, b"\x00\x01\x00\x03" + entry[4:]))  # as SHORT × 2: read as (19968, 0)
    assert facts.gps is None and facts.captured_at == "2018-09-12T09:30:00"  # AttributeError (a 500) before
    assert Image.open(io.BytesIO(facts.thumbnail)).size == (80, 40)


def test_a_photo_with_a_mistyped_exif_tag_is_taken(client, keys, world):
    data = jpeg_with_a_mistyped_gps_tag()
    r = post_file(client, data, keys.header("district_heping"))
    assert r.status_code == 201, r.get_data(as_text=True)[:300]
    assert r.get_json()["sha256"] == sha(data) and r.get_json()["has_thumbnail"] is True
    thumb = client.get(f"{URL}/{sha(data)}/thumbnail", headers=keys.header("district_heping"))
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.data)).size == (160, 320)


def test_transparent_and_sixteen_bit_images_get_thumbnails():
    for data in (png(mode="RGBA", color=(0, 0, 0, 0)), png(mode="I;16", color=300), png((4000, 10), mode="1"),
                 webp()):
        thumb = Image.open(io.BytesIO(analyse(data).thumbnail))
        assert thumb.mode == "RGB" and max(thumb.size) <= 320
    transparent = Image.open(io.BytesIO(analyse(png(mode="RGBA", color=(0, 0, 0, 0))).thumbnail))
    assert transparent.getpixel((0, 0)) == (255, 255, 255)  # laid on white, not black


def test_damaged_files_are_refused_cleanly():
    """Bytes of images flipped, cut and inserted at random: each file is taken, or refused with a 415 or
    422 naming the file; nothing else escapes (a 500)."""
    import random

    from scoring_service.services.errors import ServiceError

    rng = random.Random(15)
    seeds = [jpeg((200, 150), gps=(41.8, 123.4), taken="2018:09:12 09:30:00"), png((120, 80)),
             png((60, 40), mode="RGBA", color=(1, 2, 3, 4)), png((30, 30), mode="P"), webp((80, 40))]
    seen = set()
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            kind = rng.random()
            if kind < 0.6:
                data[at] = rng.randrange(256)
            elif kind < 0.8:
                del data[at:at + rng.randint(1, 50)]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 20))
        try:
            analyse(bytes(data))
            seen.add("taken")
        except ServiceError as exc:
            assert exc.status in (415, 422) and list(exc.errors) == ["file"], exc.message
            seen.add(exc.status)
    assert seen == {"taken", 415, 422}


# -- upload -----------------------------------------------------------------------------------

def test_jpeg_with_exif_gps_is_stored_and_served(client, keys, world):
    data = jpeg((1000, 750), gps=(41.7967, 123.4290), taken="2018:09:12 09:30:00")
    agency = keys.header("agency_a")
    r = post_file(client, data, agency)
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["sha256"] == sha(data) and body["content_type"] == "image/jpeg" and body["size"] == len(data)
    assert (body["width"], body["height"]) == (1000, 750) and body["captured_at"] == "2018-09-12T09:30:00"
    assert body["gps"] == pytest.approx({"lat": 41.7967, "lon": 123.4290}, abs=1e-6)
    assert body["uploaded_by"] == keys.ids["agency_a"] and body["has_thumbnail"] is True
    assert body["url"] == f"{URL}/{sha(data)}" and body["thumbnail_url"] == f"{URL}/{sha(data)}/thumbnail"

    r = client.get(body["url"], headers=agency)
    assert r.status_code == 200 and r.data == data
    assert r.headers["Content-Type"] == "image/jpeg"
    assert r.headers["Content-Disposition"].startswith("inline")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["ETag"] == f'"{sha(data)}"'
    assert "private" in r.headers["Cache-Control"] and "max-age=31536000" in r.headers["Cache-Control"]
    again = client.get(body["url"], headers={**agency, "If-None-Match": f'"{sha(data)}"'})
    assert again.status_code == 304 and again.data == b""

    r = client.get(body["thumbnail_url"], headers=agency)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Content-Disposition"].startswith("inline")
    thumb = Image.open(io.BytesIO(r.data))
    assert thumb.size == (320, 240) and len(thumb.getexif()) == 0 and "exif" not in thumb.info

    # audited like every write
    events = client.get(f"/api/v1/audit?entity_id={sha(data)}", headers=keys.header("admin")).get_json()["items"]
    assert [(e["entity_type"], e["outcome"], e["status"]) for e in events] == [("attachment", "created", 201)]


def test_same_bytes_answer_200_with_the_first_record(client, keys, world):
    data = png()
    first = post_file(client, data, keys.header("agency_a"), "image/png", "a.png")
    assert first.status_code == 201
    again = post_file(client, data, keys.header("agency_a"), "image/png", multipart=False)
    assert again.status_code == 200 and again.get_json() == first.get_json()
    # another agency sending the same photo gets the same record and may read it from now on
    assert client.get(first.get_json()["url"], headers=keys.header("agency_b")).status_code == 403
    other = post_file(client, data, keys.header("agency_b"), "application/octet-stream", "x.bin")
    assert other.status_code == 200 and other.get_json()["uploaded_by"] == keys.ids["agency_a"]
    assert client.get(first.get_json()["url"], headers=keys.header("agency_b")).status_code == 200


@pytest.mark.parametrize("multipart", [True, False], ids=["multipart", "raw"])
def test_png_renamed_as_jpeg_is_refused_415(client, keys, world, multipart):
    r = post_file(client, png(), keys.header("agency_a"), "image/jpeg", "photo.jpg", multipart=multipart)
    assert r.status_code == 415
    body = r.get_json()
    assert "image/png" in body["errors"]["file"][0] and "image/jpeg" in body["errors"]["file"][0]
    assert client.get(f"{URL}/{sha(png())}", headers=keys.header("admin")).status_code == 404


@pytest.mark.parametrize("data, content_type", [
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),  # an image, but not a type taken
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "application/octet-stream"),
    (b"just some text", "application/octet-stream"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    (PDF, "image/png"),
], ids=["gif", "gif-undeclared", "text", "svg", "pdf-as-png"])
def test_other_files_are_refused_415(client, keys, world, data, content_type):
    r = post_file(client, data, keys.header("agency_a"), content_type, "x")
    assert r.status_code == 415 and "file" in r.get_json()["errors"], r.get_json()


def test_a_json_body_is_not_a_file(client, keys, world):
    r = client.post(URL, json={"file": "x"}, headers=keys.header("admin"))
    assert r.status_code == 415 and "file" in r.get_json()["errors"]


@pytest.mark.parametrize("multipart", [True, False], ids=["multipart", "raw"])
def test_ten_mib_and_one_byte_is_refused_413(client, keys, world, multipart):
    data = b"\xff\xd8" + bytes(MAX_BYTES - 1)
    r = post_file(client, data, keys.header("agency_a"), "image/jpeg", multipart=multipart)
    assert r.status_code == 413 and "file" in r.get_json()["errors"], r.get_json()
    # exactly 10 MiB passes the size rule (and is then judged by its bytes: not a decodable JPEG)
    r = post_file(client, data[:MAX_BYTES], keys.header("agency_a"), "image/jpeg", multipart=multipart)
    assert r.status_code in (415, 422), r.get_json()


def test_json_bodies_keep_their_2_mib_limit(client, keys, world):
    big = json.dumps({"responses": [], "padding": "x" * (2 * 1024 * 1024)})
    r = client.post(f"{R}/surveys/batch", data=big, content_type="application/json", headers=keys.header("admin"))
    assert r.status_code == 413
    # a JSON body to the upload route too: it is not parsed beyond 2 MiB
    r = client.post(URL, data=big, content_type="application/json", headers=keys.header("admin"))
    assert r.status_code == 413


def test_fifty_megapixel_png_is_refused_422_before_decoding(client, keys, world, monkeypatch):
    data = png((10_000, 5_000), mode="1")  # 50 Mpx, a few kilobytes
    assert len(data) < 100_000
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels decoded"))
    r = post_file(client, data, keys.header("agency_a"), "image/png", "big.png")
    assert r.status_code == 422
    assert "40 megapixels" in r.get_json()["errors"]["file"][0]
    assert client.get(f"{URL}/{sha(data)}", headers=keys.header("admin")).status_code == 404


def test_truncated_and_empty_files(client, keys, world):
    broken = jpeg((400, 300))[:300]
    r = post_file(client, broken, keys.header("agency_a"))
    assert r.status_code == 422 and "decoded" in r.get_json()["errors"]["file"][0]
    r = post_file(client, b"", keys.header("agency_a"), multipart=False)
    assert r.status_code == 422 and "file" in r.get_json()["errors"]


def test_multipart_takes_one_file_field_only(client, keys, world):
    agency = keys.header("agency_a")
    r = client.post(URL, data={"file": (io.BytesIO(png()), "a.png", "image/png"), "note": "x"}, headers=agency,
                    content_type="multipart/form-data")
    assert r.status_code == 422 and "note" in r.get_json()["errors"]
    r = client.post(URL, data={"photo": (io.BytesIO(png()), "a.png", "image/png")}, headers=agency,
                    content_type="multipart/form-data")
    assert r.status_code == 422 and "photo" in r.get_json()["errors"]
    r = client.post(URL, data={"file": [(io.BytesIO(png()), "a.png", "image/png"),
                                        (io.BytesIO(webp()), "b.webp", "image/webp")]},
                    headers=agency, content_type="multipart/form-data")
    assert r.status_code == 422 and "file" in r.get_json()["errors"]


def test_pdf_and_webp(client, keys, world):
    district = keys.header("district_heping")
    r = post_file(client, PDF, district, "application/pdf", "report.pdf")
    assert r.status_code == 201
    body = r.get_json()
    assert body["content_type"] == "application/pdf" and body["has_thumbnail"] is False
    assert body["width"] is None and body["thumbnail_url"] is None
    r = client.get(body["url"], headers=district)
    assert r.status_code == 200 and r.data == PDF and r.headers["Content-Type"] == "application/pdf"
    r = client.get(f"{body['url']}/thumbnail", headers=district)
    assert r.status_code == 404 and "thumbnail" in r.get_json()["message"]
    r = post_file(client, webp(), district, "image/webp", "x.webp", multipart=False)
    assert r.status_code == 201 and r.get_json()["content_type"] == "image/webp"


def test_malformed_and_unknown_hashes(client, keys, world):
    admin = keys.header("admin")
    r = client.get(f"{URL}/not-a-hash", headers=admin)
    assert r.status_code == 422 and "sha256" in r.get_json()["errors"]
    r = client.get(f"{URL}/{'A' * 64}/thumbnail", headers=admin)
    assert r.status_code == 422 and "sha256" in r.get_json()["errors"]
    assert client.get(f"{URL}/{'0' * 64}", headers=admin).status_code == 404


# -- read rules and check_evidence --------------------------------------------------------------

def upload(client, headers, data=None) -> str:
    data = data if data is not None else jpeg(color=tuple(os.urandom(3)))
    r = post_file(client, data, headers, "application/octet-stream", "photo")  # the bytes decide
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json()["sha256"]


def test_read_rules(client, keys, world):
    photo = upload(client, keys.header("agency_a"))

    def status(role, suffix=""):
        return client.get(f"{URL}/{photo}{suffix}", headers=keys.header(role)).status_code

    assert {role: status(role) for role in keys} == {
        "admin": 200, "leadership": 200, "agency_a": 200, "agency_b": 403, "kiosk_1": 403, "kiosk_2": 403,
        "district_heping": 403, "district_shenhe": 403}
    # named by agency A's inspection of a heping community: the heping district reads it, agency B still not
    c1 = world["communities"]["heping-001"]
    body = inspection(c1, check_evidence={"roads.surface": [photo]})
    r = client.post(f"{R}/inspections", json=body, headers=keys.header("agency_a"))
    assert r.status_code == 201, r.get_json()
    assert {role: status(role, "/thumbnail") for role in keys} == {
        "admin": 200, "leadership": 200, "agency_a": 200, "agency_b": 403, "kiosk_1": 403, "kiosk_2": 403,
        "district_heping": 200, "district_shenhe": 403}
    r = client.get(f"{URL}/{photo}", headers=keys.header("agency_b"))
    assert r.status_code == 403 and r.get_json()["code"] == 403
    # agency B cannot name agency A's photo in its own inspection either
    r = client.post(f"{R}/inspections", json=inspection(c1, check_evidence={"roads.surface": [photo]}),
                    headers=keys.header("agency_b"))
    assert r.status_code == 422 and photo in r.get_json()["errors"]["check_evidence"][0]


def test_check_evidence_is_stored_hashed_and_shown(app, client, keys, world):
    agency = keys.header("agency_a")
    first, second = upload(client, agency), upload(client, agency)
    c1 = world["communities"]["heping-001"]
    evidence = {"roads.surface": [second, first, second], "water.supply_pipes": []}
    body = inspection(c1, check_evidence=evidence)
    r = client.post(f"{R}/inspections", json=body, headers=agency)
    assert r.status_code == 201, r.get_json()
    view = r.get_json()
    assert view["check_evidence"] == {"roads.surface": [second, first]}  # repeats and empty lists dropped
    assert view["history"][0]["check_evidence"] == {"roads.surface": [second, first]}
    assert client.post(f"{R}/inspections", json=body, headers=agency).status_code == 200  # a replay
    r = client.post(f"{R}/inspections", json={**body, "check_evidence": {"roads.surface": [first]}}, headers=agency)
    assert r.status_code == 409  # other photos, other content
    store = app.extensions["scoring"].store
    refs = store.attachment_refs(first)
    assert refs == [{"sha256": first, "round_id": "r2018", "community_id": "heping-001", "district_id": "heping",
                     "agency_id": "agency-a", "source": "inspection", "source_id": body["inspection_id"]}]
    # an amendment names what its version holds; the refs of every version stay
    third = upload(client, agency)
    amended = {**body, "amend_reason": "复验", "check_evidence": {"water.drainage": [third]}}
    r = client.put(f"{R}/inspections/{body['inspection_id']}", json=amended, headers=agency)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["check_evidence"] == {"water.drainage": [third]}
    assert [v["check_evidence"] for v in r.get_json()["history"]] == [{"roads.surface": [second, first]},
                                                                      {"water.drainage": [third]}]
    assert {ref["sha256"] for ref in store.round_attachment_refs("r2018")} == {first, second, third}
    r = client.put(f"{R}/inspections/{body['inspection_id']}", json={**amended, "amend_reason": "再改"},
                   headers=agency)
    assert r.status_code == 200 and r.get_json()["check_evidence"] == {"water.drainage": [third]}
    # an amendment without it holds none
    without = {k: v for k, v in body.items() if k != "check_evidence"}
    r = client.put(f"{R}/inspections/{body['inspection_id']}", json={**without, "amend_reason": "去掉照片"},
                   headers=agency)
    assert r.get_json()["check_evidence"] == {} and len(r.get_json()["history"]) == 4


@pytest.mark.parametrize("evidence, fragment", [
    ({"roads.moonwalk": ["0" * 64]}, "roads.moonwalk"),
    ({"roads.surface": ["0" * 64]}, "no attachment this key may read"),
    ({"roads.surface": ["XYZ"]}, "check_evidence"),
    ({"roads.surface": [f"{n:064x}" for n in range(21)]}, "check_evidence"),
    ({"roads.surface": "0" * 64}, "check_evidence"),
], ids=["unknown-check", "unknown-hash", "malformed-hash", "too-many", "not-a-list"])
def test_bad_check_evidence_is_refused_naming_the_field(client, keys, world, evidence, fragment):
    r = client.post(f"{R}/inspections", json=inspection(world["communities"]["heping-001"], check_evidence=evidence),
                    headers=keys.header("agency_a"))
    assert r.status_code == 422
    errors = r.get_json()["errors"]
    assert list(errors) == ["check_evidence"] and fragment in json.dumps(errors)


def test_twenty_photos_on_a_check_are_taken(client, keys, world):
    agency = keys.header("agency_a")
    photos = [upload(client, agency, png((8, 8), color=(n, 0, 0))) for n in range(20)]
    r = client.post(f"{R}/inspections", json=inspection(world["communities"]["heping-001"],
                                                        check_evidence={"roads.surface": photos}), headers=agency)
    assert r.status_code == 201 and r.get_json()["check_evidence"]["roads.surface"] == photos


def test_a_version_without_check_evidence_hashes_as_before_it_existed(world, app):
    """Part-one replays stay replays: the content hash of a version without photos is the digest of exactly
    the fields it had before stages and check_evidence existed."""
    from scoring_service.domain.inspections import prepare_version
    from scoring_service.services.submissions import round_context

    c1 = world["communities"]["heping-001"]
    from datetime import datetime
    body = inspection(c1, notes="资料齐全", evidence=["https://evidence.example/1.jpg"])
    body["inspection_id"] = uuid.UUID(body["inspection_id"])
    body["inspected_at"] = datetime.fromisoformat(body["inspected_at"])
    with app.app_context():
        rc = round_context(app.extensions["scoring"], "r2018")
        for extra in ({}, {"check_evidence": {}}, {"check_evidence": {"roads.surface": []}}):
            version = prepare_version({**body, **extra}, rc, "agency-a", "k1")
            assert "check_evidence" not in version
            assert version["content_hash"] == digest({
                "inspection_id": str(body["inspection_id"]), "community_id": "heping-001", "agency_id": "agency-a",
                "inspector": body["inspector"], "inspected_at": to_stored(body["inspected_at"]),
                "checks": dict(sorted(body["checks"].items())), "notes": "资料齐全",
                "evidence": ["https://evidence.example/1.jpg"]})
        with_photo = prepare_version({**body, "check_evidence": {"roads.surface": ["0" * 64]}}, rc, "agency-a", "k1")
        assert with_photo["content_hash"] != version["content_hash"]


# -- stores -----------------------------------------------------------------------------------

def record_of(data: bytes, uploaded_by="k1", **fields) -> dict:
    return {"sha256": sha(data), "content_type": "image/png", "size": len(data), "width": 50, "height": 40,
            "captured_at": None, "gps": {"lat": 41.8, "lon": 123.4}, "uploaded_by": uploaded_by,
            "uploaded_at": AT, "has_thumbnail": True, **fields}


def ref_of(data: bytes, source="inspection", source_id="i1", round_id="R", district_id="heping",
           agency_id="agency-a") -> dict:
    return {"sha256": sha(data), "round_id": round_id, "community_id": "heping-001", "district_id": district_id,
            "agency_id": agency_id, "source": source, "source_id": source_id}


def test_store_attachments_contract(store):
    data, thumb = png(), b"thumbnail bytes"
    record = record_of(data)
    before = store.generation()
    assert store.put_attachment(record, data, thumb) is Outcome.CREATED
    assert store.generation() == before  # no score depends on a file
    assert store.get_attachment(sha(data)) == record
    assert store.attachment_bytes(sha(data)) == data
    assert store.attachment_bytes(sha(data), thumbnail=True) == thumb
    assert store.put_attachment(record_of(data, uploaded_by="k2"), data, thumb) is Outcome.DUPLICATE
    assert store.get_attachment(sha(data))["uploaded_by"] == "k1"  # the first record stays
    assert store.get_attachment("0" * 64) is None and store.attachment_bytes("0" * 64) is None
    pdf = record_of(PDF, content_type="application/pdf", width=None, height=None, gps=None, has_thumbnail=False)
    assert store.put_attachment(pdf, PDF, None) is Outcome.CREATED
    assert store.attachment_bytes(sha(PDF)) == PDF and store.attachment_bytes(sha(PDF), thumbnail=True) is None

    # grants: uploaders (both), then the district and agency of an inspection or of a rectification response
    assert store.attachment_access(sha(data), ["key:k1"]) and store.attachment_access(sha(data), ["key:k2"])
    assert not store.attachment_access(sha(data), ["key:k3", "district:heping", "agency:agency-a"])
    store.add_attachment_uploader(sha(data), "k3")
    store.add_attachment_uploader(sha(data), "k3")
    assert store.attachment_access(sha(data), ["key:k3"])
    refs = [ref_of(data), ref_of(data), ref_of(PDF, "rectification", "x:roads.surface", agency_id=None),
            ref_of(data, source_id="i2", round_id="S", district_id="shenhe", agency_id="agency-b")]
    # a rectification response's reference names the agency whose inspection opened the item: it reads them
    answered = ref_of(b"photo of the fix", "rectification", "r1", round_id="S", district_id="shenhe",
                      agency_id="agency-b")
    store.add_attachment_refs([answered])
    assert store.attachment_access(answered["sha256"], ["district:shenhe"])
    assert store.attachment_access(answered["sha256"], ["agency:agency-b"])
    assert not store.attachment_access(answered["sha256"], ["agency:agency-a", "district:heping"])
    store.add_attachment_refs(refs)
    store.add_attachment_refs(refs[:1])
    assert store.attachment_refs(sha(data)) == [refs[0], refs[3]]
    assert store.round_attachment_refs("R") == sorted([refs[0], refs[2]], key=lambda r: r["sha256"])
    assert store.round_attachment_refs("nope") == [] and store.attachment_refs("0" * 64) == []
    assert store.attachment_access(sha(data), ["district:heping"])
    assert store.attachment_access(sha(data), ["key:nobody", "agency:agency-a"])
    assert store.attachment_access(sha(data), ["agency:agency-b"]) and store.attachment_access(sha(data), ["district:shenhe"])
    assert store.attachment_access(sha(PDF), ["district:heping"])
    assert not store.attachment_access(sha(PDF), ["agency:agency-a"])  # a reference without an agency grants none
    assert not store.attachment_access(sha(PDF), [])


@pytest.mark.parametrize("database_url", [pytest.param("mongo", marks=pytest.mark.mongo)], indirect=True)
def test_mongo_keeps_the_bytes_in_gridfs(store, database_url):
    from pymongo import MongoClient

    data, thumb = os.urandom(600_000), b"\xff\xd8thumb"  # several chunks of 255 KiB
    assert store.put_attachment(record_of(data), data, thumb) is Outcome.CREATED
    db = MongoClient(database_url).get_default_database()
    files = list(db["attachments.files"].find({"filename": sha(data)}))
    assert len(files) == 1 and files[0]["length"] == len(data)
    chunks = list(db["attachments.chunks"].find({"files_id": files[0]["_id"]}).sort("n", 1))
    assert len(chunks) == 3 and b"".join(c["data"] for c in chunks) == data
    thumbs = list(db["attachment_thumbs.files"].find({"filename": sha(data)}))
    assert len(thumbs) == 1
    assert b"".join(c["data"] for c in db["attachment_thumbs.chunks"].find({"files_id": thumbs[0]["_id"]})) == thumb
    # the record holds no bytes; a second writer of the same bytes leaves no second copy in GridFS
    assert "data" not in db.attachment_records.find_one({"_id": sha(data)})
    assert store.put_attachment(record_of(data, uploaded_by="k2"), data, thumb) is Outcome.DUPLICATE
    assert db["attachments.files"].count_documents({"filename": sha(data)}) == 1


@pytest.mark.parametrize("database_url", [pytest.param("mongo", marks=pytest.mark.mongo)], indirect=True)
def test_mongo_writers_racing_on_new_bytes_leave_one_copy(store, monkeypatch):
    """Two writers both find no record: the second's insert of the record fails, and it deletes its files."""
    data = os.urandom(1000)
    real = type(store.db.attachment_records).find_one
    calls = []

    def nothing_yet(collection, *args, **kwargs):  # the second writer looked before the first wrote
        calls.append(1)
        return None if len(calls) <= 2 else real(collection, *args, **kwargs)

    assert store.put_attachment(record_of(data), data, None) is Outcome.CREATED
    monkeypatch.setattr(type(store.db.attachment_records), "find_one", nothing_yet)
    assert store.put_attachment(record_of(data, uploaded_by="k2"), data, None) is Outcome.DUPLICATE
    monkeypatch.undo()
    assert store.db["attachments.files"].count_documents({"filename": sha(data)}) == 1
    assert store.attachment_bytes(sha(data)) == data and store.attachment_access(sha(data), ["key:k2"])


def test_sqlite_writes_each_file_through_a_fsynced_temporary_file_and_a_rename(tmp_path, monkeypatch):
    from scoring_service.store import sqlite as sqlite_store

    store = sqlite_store.SQLiteStore(tmp_path / "instance" / "scoring.sqlite3")
    store.init()
    data, thumb = png(), b"thumb"
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(sqlite_store.os, "fsync", lambda fd: calls.append(("fsync", _fd_path(fd))) or real_fsync(fd))
    monkeypatch.setattr(sqlite_store.os, "replace",
                        lambda a, b: calls.append(("rename", Path(a).name, Path(b))) or real_replace(a, b))
    assert store.put_attachment(record_of(data), data, thumb) is Outcome.CREATED
    folder = tmp_path / "instance" / "attachments" / sha(data)[:2]
    final = folder / sha(data)
    assert final.read_bytes() == data and (folder / f"{sha(data)}.thumb.jpg").read_bytes() == thumb
    assert final.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [sha(data), f"{sha(data)}.thumb.jpg"]  # no temporary left
    # the file: written and fsynced under a temporary name, renamed, then its folder fsynced
    renames = [c for c in calls if c[0] == "rename"]
    assert renames[0][2] == final and renames[0][1] != final.name and renames[0][1].endswith(".tmp")
    first = calls.index(renames[0])
    assert calls[first - 1] == ("fsync", str(folder / renames[0][1]))
    assert calls[first + 1] == ("fsync", str(folder))
    # the new folders themselves were fsynced into their parents
    assert ("fsync", str(tmp_path / "instance")) in calls and ("fsync", str(folder.parent)) in calls
    store.close()


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_the_bytes_are_written_before_the_record(store, monkeypatch):
    """A write that fails while storing the bytes leaves no record that would name missing bytes."""
    data = png((9, 9))
    if hasattr(store, "blob_dir"):
        from scoring_service.store import sqlite as sqlite_store

        monkeypatch.setattr(sqlite_store.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(28, "disk full")))
        failure = sqlite_store.StoreError
    else:
        from gridfs import GridFSBucket
        from pymongo.errors import AutoReconnect

        def lost(*args, **kwargs):
            raise AutoReconnect("connection lost")

        monkeypatch.setattr(GridFSBucket, "upload_from_stream", lost)
        failure = AutoReconnect
    with pytest.raises(failure):
        store.put_attachment(record_of(data), data, b"t")
    monkeypatch.undo()
    assert store.get_attachment(sha(data)) is None
    assert store.put_attachment(record_of(data), data, b"t") is Outcome.CREATED  # a retry stores it whole
    assert store.attachment_bytes(sha(data)) == data


def test_an_older_sqlite_file_gains_the_attachment_tables(tmp_path):
    import sqlite3

    from scoring_service.store.sqlite import SQLiteStore

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "INSERT INTO meta VALUES ('schema_version', '1');")
    conn.close()
    store = SQLiteStore(path)
    store.init()
    data = png((3, 3))
    assert store.put_attachment(record_of(data), data, None) is Outcome.CREATED
    assert (tmp_path / "attachments" / sha(data)[:2] / sha(data)).read_bytes() == data


# -- backups and the check command ---------------------------------------------------------------

@pytest.fixture
def evidenced(client, keys, world):
    """An inspection of a heping community by agency A with two photos and a PDF on its checks."""
    agency = keys.header("agency_a")
    photo = jpeg((900, 600), gps=(41.8, 123.4), taken="2018:09:12 09:00:00")
    hashes = [upload(client, agency, photo), upload(client, agency, png()),
              post_file(client, PDF, agency, "application/pdf").get_json()["sha256"]]
    body = inspection(world["communities"]["heping-001"],
                      check_evidence={"roads.surface": hashes[:2], "water.supply_pipes": hashes[2:]})
    assert client.post(f"{R}/inspections", json=body, headers=agency).status_code == 201
    upload(client, agency)  # uploaded, never named: not the round's
    return {"hashes": hashes, "photo": photo}


def test_export_and_import_carry_the_attachments(app, client, keys, evidenced, tmp_path):
    buffer = io.StringIO()
    write_jsonl(export_round(app.extensions["scoring"].store, "r2018"), buffer)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    exported = [line["data"]["sha256"] for line in lines if line["type"] == "attachment"]
    assert exported == sorted(evidenced["hashes"])  # the named files only
    assert sum(line["type"] == "attachment_ref" for line in lines) == 3

    # restored into an empty store in another folder, the round serves the same files to the same readers
    target = make_app(str(tmp_path / "elsewhere" / "restored.sqlite3"), tmp_path / "elsewhere" / "instance")
    counts = import_round(target.extensions["scoring"].store, buffer.getvalue().splitlines())
    assert counts["attachment"] == 3 and counts["attachment_ref"] == 3
    tokens = {}
    from .conftest import add_key

    for role, scope in (("admin", {}), ("district", {"district_id": "heping"}), ("agency", {"agency_id": "agency-a"}),
                        ("agency", {"agency_id": "agency-b"})):
        tokens[f"{role}-{next(iter(scope.values()), '')}"] = {
            "Authorization": f"Bearer {add_key(target, role, 'x', **scope)[1]}"}
    restored = target.test_client()
    source_store = app.extensions["scoring"].store
    for sha256 in evidenced["hashes"]:
        r = restored.get(f"{URL}/{sha256}", headers=tokens["admin-"])
        assert r.status_code == 200 and r.data == source_store.attachment_bytes(sha256)
        assert restored.get(f"{URL}/{sha256}", headers=tokens["district-heping"]).status_code == 200
        assert restored.get(f"{URL}/{sha256}", headers=tokens["agency-agency-a"]).status_code == 200
        assert restored.get(f"{URL}/{sha256}", headers=tokens["agency-agency-b"]).status_code == 403
    photo = sha(evidenced["photo"])
    r = restored.get(f"{URL}/{photo}/thumbnail", headers=tokens["admin-"])
    assert r.data == source_store.attachment_bytes(photo, thumbnail=True)
    assert restored.get(f"{URL}/{photo}", headers=tokens["admin-"]).data == evidenced["photo"]
    view = restored.get(f"{R}/inspections/{source_store.current_inspections('r2018')[0]['inspection_id']}",
                        headers=tokens["admin-"]).get_json()
    assert view["check_evidence"]["roads.surface"] == evidenced["hashes"][:2]


def test_import_refuses_bytes_that_do_not_match_their_hash(app, client, keys, evidenced, tmp_path):
    from scoring_service.ops.backup import RestoreError

    buffer = io.StringIO()
    write_jsonl(export_round(app.extensions["scoring"].store, "r2018"), buffer)
    lines = buffer.getvalue().splitlines()
    at = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "attachment")
    record = json.loads(lines[at])
    record["data"]["body"] = "AAAA"
    lines[at] = json.dumps(record)
    target = make_app(str(tmp_path / "t" / "restored.sqlite3"), tmp_path / "t" / "instance")
    with pytest.raises(RestoreError, match="SHA-256"):
        import_round(target.extensions["scoring"].store, lines)


def test_check_attachments_finds_missing_and_changed_bytes(app, evidenced, database_url):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["check-attachments"])
    assert result.exit_code == 0, result.output
    assert "round r2018: 3 attachments named, 0 problems" in result.output
    store = app.extensions["scoring"].store
    photo, second, pdf = evidenced["hashes"]
    if hasattr(store, "blob_dir"):
        (store.blob_dir / photo[:2] / photo).unlink()
        (store.blob_dir / pdf[:2] / pdf).write_bytes(b"%PDF-changed")
        (store.blob_dir / second[:2] / f"{second}.thumb.jpg").unlink()
    else:
        from gridfs import GridFSBucket

        doc = store.db.attachment_records.find_one({"_id": photo})
        GridFSBucket(store.db, "attachments").delete(doc["file_id"])
        pdf_doc = store.db.attachment_records.find_one({"_id": pdf})
        store.db["attachments.chunks"].update_one({"files_id": pdf_doc["file_id"], "n": 0},
                                                  {"$set": {"data": b"%PDF-changed"}})
        store.db["attachments.files"].update_one({"_id": pdf_doc["file_id"]}, {"$set": {"length": 12}})
        GridFSBucket(store.db, "attachment_thumbs").delete(store.db.attachment_records.find_one({"_id": second})["thumb_id"])
    result = runner.invoke(args=["check-attachments", "--round", "r2018"])
    assert result.exit_code == 1
    problems = {json.loads(line)["sha256"]: json.loads(line)["problem"]
                for line in result.output.splitlines() if line.startswith("{")}
    assert problems == {photo: "bytes missing", pdf: "bytes do not match their SHA-256",
                        second: "thumbnail missing"}
    assert runner.invoke(args=["check-attachments", "--round", "nope"]).exit_code != 0
