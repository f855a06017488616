"""Evidence attachments (SPEC §13): upload a photo or PDF, read it and its thumbnail."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from marshmallow import fields, validate

from ..extensions import state
from ..services import attachments
from ..services.attachments import ALIASES, CONTENT_TYPES, MAX_BYTES, SHA256_PATTERN, THUMBNAIL_TYPE
from ..store import Outcome
from .auth import current_principal, require
from .common import Blueprint, note_audit
from .errors import abort, field_error
from .result_schemas import COUNT, Body, nullable, nullable_object, required

blp = Blueprint("attachments", __name__, url_prefix="/api/v1/attachments",
                description="Evidence attachments: photos (JPEG, PNG, WebP) and PDFs named by their SHA-256")

#: room for a multipart body's boundaries and part headers around a file of MAX_BYTES
MULTIPART_OVERHEAD = 64 * 1024
#: the bodies POST /attachments takes (besides application/json, which every write route lets through
#: to its view; here it answers 415 like any other type that is not a file's)
BODY_TYPES = ("multipart/form-data", "application/octet-stream", *CONTENT_TYPES, *ALIASES)
#: a year: a file never changes under its hash
CACHE_CONTROL = "private, max-age=31536000, immutable"


def body_limit(mimetype: str) -> int | None:
    """The request-size limit of an upload (``api.check_request_body``): a file of MAX_BYTES, in a
    multipart body with its overhead, or raw (one byte more, so a chunked body of exactly 10 MiB passes).
    None for JSON, which keeps the app's limit (it is parsed before the view refuses it)."""
    if mimetype == "application/json":
        return None
    return MAX_BYTES + (MULTIPART_OVERHEAD if mimetype == "multipart/form-data" else 1)


BINARY = {"type": "string", "format": "binary"}
REQUEST_BODY = {
    "required": True,
    "description": "one file of at most 10 MiB: a multipart form with the field `file`, or the raw bytes with "
                   "their type. The bytes decide the type; a declared type that disagrees answers 415 "
                   "(`application/octet-stream` declares none).",
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": BINARY}, "required": ["file"],
                       "additionalProperties": False},
        },
        **{content_type: {"schema": BINARY} for content_type in (*CONTENT_TYPES, "application/octet-stream")},
    },
}


class GpsSchema(Body):
    lat = required(fields.Float, validate=validate.Range(min=-90, max=90))
    lon = required(fields.Float, validate=validate.Range(min=-180, max=180))


class AttachmentSchema(Body):
    sha256 = required(fields.String, validate=validate.Regexp(SHA256_PATTERN),
                      metadata={"description": "SHA-256 of the bytes (hex): the attachment's id"})
    content_type = required(fields.String, validate=validate.OneOf(CONTENT_TYPES))
    size = required(fields.Integer, validate=validate.Range(min=1, max=MAX_BYTES))
    width = nullable(fields.Integer, validate=COUNT, metadata={"description": "images only"})
    height = nullable(fields.Integer, validate=COUNT, metadata={"description": "images only"})
    captured_at = nullable(fields.String, metadata={
        "description": "EXIF DateTimeOriginal: the camera's local time (with its offset when OffsetTimeOriginal "
                       "was recorded); null when the file has none"})
    gps = nullable_object(GpsSchema, metadata={"description": "EXIF GPS position in decimal degrees (south and "
                                                              "west negative); null when the file has none"})
    uploaded_by = nullable(fields.String, metadata={"description": "key id of the first uploader"})
    uploaded_at = required(fields.String)
    has_thumbnail = required(fields.Boolean, metadata={"description": "images have a JPEG thumbnail; PDFs none"})
    url = required(fields.String)
    thumbnail_url = nullable(fields.String)


@blp.route("")
class Attachments(MethodView):
    @require("agency", "district", "admin")
    @blp.doc(requestBody=REQUEST_BODY)
    @blp.response(201, AttachmentSchema)
    @blp.alt_response(200, schema=AttachmentSchema, description="the same bytes were uploaded before: their record")
    def post(self):
        """Upload a photo (JPEG, PNG, WebP) or PDF of at most 10 MiB, named by the SHA-256 of its bytes. Images
        over 40 megapixels are refused (422); an image's EXIF capture time and GPS position are returned, and a
        JPEG thumbnail of at most 320 px without any metadata is made."""
        data, declared = upload_body()
        outcome, view = attachments.upload(state(), data, declared, current_principal())
        note_audit("attachment", view["sha256"], outcome.value, content_type=view["content_type"], size=view["size"])
        return view, 201 if outcome is Outcome.CREATED else 200


def upload_body() -> tuple[bytes, str | None]:
    """The file's bytes and declared type: the multipart field ``file`` (nothing else), or the raw body."""
    if request.mimetype != "multipart/form-data":
        return request.get_data(cache=False), request.mimetype
    unknown = sorted(set(request.form) | (set(request.files) - {"file"}))
    if unknown:
        abort(422, message=f"unknown form fields: {', '.join(unknown)}",
              errors={name: ["Unknown field."] for name in unknown})
    files = request.files.getlist("file")
    if len(files) != 1:
        field_error("file", "send exactly one file in the form field 'file'")
    return files[0].stream.read(MAX_BYTES + 1), files[0].mimetype


FILE_RESPONSES = {content_type: {"schema": BINARY} for content_type in CONTENT_TYPES}
READ_DESCRIPTION = ("Admin and leadership keys, the uploader, a district key when a record of its district (an "
                    "inspection or a rectification response) names the file, an agency key when its own inspection "
                    "names it or a response to a rectification item its own inspection opened does; others 403. Cached privately for a year under the ETag (the hash); If-None-Match "
                    "answers 304.")


def serve(sha256: str, thumbnail: bool) -> Response:
    record, data = attachments.read_file(state(), current_principal(), sha256, thumbnail)
    content_type = THUMBNAIL_TYPE if thumbnail else record["content_type"]
    name = f"{sha256}-thumbnail.jpg" if thumbnail else f"{sha256}.{attachments.EXTENSIONS[content_type]}"
    response = Response(data, mimetype=content_type, headers={
        "Content-Disposition": f'inline; filename="{name}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": CACHE_CONTROL,
        "Vary": "Authorization",
    })
    response.set_etag(sha256)
    return response.make_conditional(request)


@blp.route("/<sha256>")
class Attachment(MethodView):
    @require("admin", "leadership", "agency", "district")
    @blp.doc(description=READ_DESCRIPTION, responses={"200": {"description": "the file", "content": FILE_RESPONSES},
                                                      "304": {"description": "not modified (If-None-Match)"}})
    def get(self, sha256):
        """The file, with its stored type, ``Content-Disposition: inline`` and ``X-Content-Type-Options: nosniff``."""
        return serve(sha256, thumbnail=False)


@blp.route("/<sha256>/thumbnail")
class Thumbnail(MethodView):
    @require("admin", "leadership", "agency", "district")
    @blp.doc(description=READ_DESCRIPTION + " A PDF has no thumbnail (404).",
             responses={"200": {"description": "JPEG, at most 320 px, no metadata",
                                "content": {THUMBNAIL_TYPE: {"schema": BINARY}}},
                        "304": {"description": "not modified (If-None-Match)"}})
    def get(self, sha256):
        """The image's JPEG thumbnail (at most 320 × 320 px, upright, no EXIF)."""
        return serve(sha256, thumbnail=True)
