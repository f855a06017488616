"""Survey-link posters (SPEC §14): an A4 sheet for a courtyard wall or a WeChat group.

``poster_pdf(link)`` (ReportLab, vector) and ``poster_png(link)`` (Pillow, 1240 × 1754 px,
A4 at 150 dpi) draw the same layout: a big title, the community's and the district's names,
the QR code of the link's URL (made by segno, drawn module by module with its quiet zone),
short instructions in Chinese, the round's dates in China time and the URL in small print.

``link`` holds ``url, community_name, district_name, round_title, opens_at, closes_at``
(ISO 8601 times; ``community_id`` stands in for a missing community name). The CJK font is
the one the 督办通报 uses (:func:`scoring_service.reports.supervision.find_font`: the
``font_path`` argument, else the setting ``SCORING_PDF_FONT``, else a standard place);
:class:`~scoring_service.reports.supervision.PdfFontError` when there is none.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

import segno

from ..domain.timeutil import CHINA
from .supervision import _RENDER_LOCK, _register_font, find_font

__all__ = ["poster_pdf", "poster_png", "poster_dates", "PNG_SIZE", "TITLE"]

TITLE = "请为我们小区的改造打分"
SCAN_LINE = "微信扫一扫，参与测评"
INSTRUCTIONS_HEADING = "参与方式"
INSTRUCTIONS = (
    "用微信或手机相机扫描上方二维码。",
    "本小区住户请选择“本小区居民”，并填写楼栋、单元和门牌号（如7-3-501）；"
    "不住在本小区的请选择“社会公众”。",
    "按页面提示逐项打分，最后作总体评价，约需2分钟。每户限填一次。",
)
FOOTNOTE = "无需下载应用，无需注册。"

#: the page in millimetres and the PNG in pixels (A4 at 150 dpi)
PAGE_W, PAGE_H = 210.0, 297.0
PNG_SIZE = (1240, 1754)
PNG_DPI = 150
MARGIN = 16.0
#: the QR code's quiet zone in modules (ISO/IEC 18004 asks for 4)
QUIET_ZONE = 4

ACCENT = (0xB0, 0x1E, 0x23)  # 中国红, the band and the dates
INK = (0x1A, 0x1A, 0x1A)
GREY = (0x55, 0x55, 0x55)
BOX = (0xF4, 0xF1, 0xEA)
WHITE = (0xFF, 0xFF, 0xFF)
BLACK = (0, 0, 0)

#: characters that may not start a line (标点禁则)
_NO_LINE_START = set("，。、；：？！）》」』”’…—%,.;:?!)]}")
#: characters that may not end a line
_NO_LINE_END = set("（《「『“‘([{")
#: a run of Latin letters and digits (kept on one line when it fits), or one other character
_TOKENS = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*|.", re.S)


# ----------------------------------------------------------------------------- content

def _china_date(value: str | None, *, closing: bool = False):
    if not value:
        return None
    when = datetime.fromisoformat(value)
    if when.tzinfo is None:  # stored times are UTC
        when = when.replace(tzinfo=timezone.utc)
    local = when.astimezone(CHINA)
    if closing and local.time() == time(0, 0) and local.microsecond == 0:
        # a round that closes at 00:00 China time ends with the day before
        local -= timedelta(microseconds=1)
    return local.date()


def poster_dates(opens_at: str | None, closes_at: str | None) -> str:
    """The round's dates in China time, e.g. ``2018年9月1日—9月30日`` ("" when neither is known)."""
    start, end = _china_date(opens_at), _china_date(closes_at, closing=True)

    def full(d):
        return f"{d.year}年{d.month}月{d.day}日"

    if start and end:
        if start == end:
            return full(start)
        tail = f"{end.month}月{end.day}日" if end.year == start.year else full(end)
        return f"{full(start)}—{tail}"
    if end:
        return f"{full(end)}前"
    if start:
        return f"{full(start)}起"
    return ""


# ----------------------------------------------------------------------------- layout (millimetres)

@dataclass(frozen=True)
class _Rect:
    x: float
    y: float  # top
    w: float
    h: float
    fill: tuple[int, int, int]


@dataclass(frozen=True)
class _Text:
    x: float  # left edge, or centre when centred
    baseline: float
    text: str
    size: float  # em size in mm
    color: tuple[int, int, int]
    centred: bool = True


@dataclass(frozen=True)
class _Qr:
    x: float
    y: float
    size: float  # the whole symbol with its quiet zone
    matrix: tuple  # rows of 0/1 without the quiet zone


Measure = Callable[[str, float], float]


def _wrap(text: str, size: float, width: float, measure: Measure) -> list[str]:
    """Lines of ``text`` no wider than ``width``: Chinese wraps at any character, a run of Latin
    letters and digits (``7-3-501``) stays whole unless it is wider than a line (a URL), and no
    line starts with closing or ends with opening punctuation (标点禁则)."""
    tokens: list[str] = []
    for token in _TOKENS.findall(text):
        tokens.extend(token if len(token) > 1 and measure(token, size) > width else [token])
    lines: list[str] = []
    line: list[str] = []
    for token in tokens:
        if line and measure("".join(line) + token, size) > width:
            carry: list[str] = []
            if token[0] in _NO_LINE_START:
                if len(line) > 1 and line[-1][0] not in _NO_LINE_START:
                    carry.append(line.pop())  # the last character goes down with the punctuation
                else:
                    line.append(token)  # else the punctuation hangs past the edge
                    continue
            while len(line) > 1 and line[-1][-1] in _NO_LINE_END:
                carry.insert(0, line.pop())
            lines.append("".join(line).rstrip())
            line = carry
            if token == " " and not line:
                continue
        line.append(token)
    if line:
        lines.append("".join(line))
    return lines


def _fit(text: str, sizes: Iterator[float], width: float, max_lines: int, measure: Measure) -> tuple[float, list[str]]:
    """The largest size at which ``text`` fits in ``max_lines`` lines (else the smallest size)."""
    size, lines = 0.0, []
    for size in sizes:
        lines = _wrap(text, size, width, measure)
        if len(lines) <= max_lines:
            break
    return size, lines


def _steps(start: float, stop: float, step: float = 0.5) -> Iterator[float]:
    value = start
    while value >= stop - 1e-9:
        yield value
        value -= step


def _layout(link: dict, measure: Measure) -> list:
    """Everything on the poster, top to bottom, in millimetres from the top-left corner."""
    url = str(link.get("url") or "")
    if not url:
        raise ValueError("link has no url")
    community = str(link.get("community_name") or link.get("community_id") or "")
    district = str(link.get("district_name") or "")
    round_title = str(link.get("round_title") or "")
    dates = poster_dates(link.get("opens_at"), link.get("closes_at"))
    width = PAGE_W - 2 * MARGIN
    cx = PAGE_W / 2
    ops: list = []

    # the red band with the title and the round
    size, lines = _fit(TITLE, _steps(13.0, 7.0), width, 1, measure)
    band_h = 40.0 if round_title else 30.0
    ops.append(_Rect(0, 0, PAGE_W, band_h, ACCENT))
    ops.append(_Text(cx, 21.0, lines[0] if len(lines) == 1 else TITLE, size, WHITE))
    if round_title:
        rsize, rlines = _fit(round_title, _steps(5.5, 3.5, 0.25), width, 1, measure)
        ops.append(_Text(cx, 33.0, rlines[0] + ("…" if len(rlines) > 1 else ""), rsize, WHITE))
    y = band_h + 6.0

    # the community, big, and its district
    csize, clines = _fit(community, _steps(12.0, 7.0), width, 2, measure)
    if len(clines) > 3:  # keep room for a QR code a phone reads from a few steps away
        clines = clines[:2] + [_wrap(clines[2], csize, width - measure("…", csize), measure)[0] + "…"]
    for line in clines:
        y += csize * 1.05
        ops.append(_Text(cx, y, line, csize, INK))
        y += csize * 0.25
    if district:
        dsize, dlines = _fit(district, _steps(7.0, 4.5), width, 1, measure)
        for line in dlines:
            y += dsize * 1.25
            ops.append(_Text(cx, y, line, dsize, GREY))
    y += 3.0

    # the bottom part, laid out from the page's foot upwards, so the QR code gets what is left
    isize, hsize, line_gap = 4.6, 5.4, 1.45
    number_w = measure("3．", isize)
    item_lines = [_wrap(text, isize, width - 12.0 - number_w, measure) for text in INSTRUCTIONS]
    box_h = 7.0 + hsize * 1.3 + sum(len(ls) for ls in item_lines) * isize * line_gap + 5.0
    foot_size = 3.4
    foot_lines = _wrap(FOOTNOTE, foot_size, width, measure)
    bottom = PAGE_H - 10.0 - len(foot_lines) * foot_size * 1.4
    date_size = 6.0
    date_block = date_size * 1.9 if dates else 0.0
    box_top = bottom - 3.0 - box_h - date_block
    url_size = 3.2
    url_lines = _wrap(url, url_size, width, measure)
    under_qr = 2.0 + 5.2 * 1.35 + len(url_lines) * url_size * 1.35 + 2.0
    room = box_top - 3.0 - y - under_qr
    qr_size = max(60.0, min(120.0, room))
    y += max(0.0, room - qr_size) / 2  # what the QR code leaves goes above and below it

    qr = segno.make(url, error="m", micro=False)
    matrix = tuple(tuple(row) for row in qr.matrix)
    ops.append(_Qr(cx - qr_size / 2, y, qr_size, matrix))
    y += qr_size + 2.0 + 5.2 * 1.05
    ops.append(_Text(cx, y, SCAN_LINE, 5.2, INK))
    y += 5.2 * 0.3
    for line in url_lines:
        y += url_size * 1.35
        ops.append(_Text(cx, y, line, url_size, GREY))

    # the instructions in a tinted box, the dates under it, the footnote at the foot
    y = box_top
    ops.append(_Rect(MARGIN, y, width, box_h, BOX))
    y += 5.0 + hsize
    ops.append(_Text(MARGIN + 6.0, y, INSTRUCTIONS_HEADING, hsize, ACCENT, centred=False))
    y += hsize * 0.3
    for number, lines in enumerate(item_lines, 1):
        for i, line in enumerate(lines):
            y += isize * line_gap
            if i == 0:
                ops.append(_Text(MARGIN + 6.0, y, f"{number}．", isize, INK, centred=False))
            ops.append(_Text(MARGIN + 6.0 + number_w, y, line, isize, INK, centred=False))
    y = box_top + box_h
    if dates:
        y += date_size * 1.55
        ops.append(_Text(cx, y, f"测评时间：{dates}", date_size, ACCENT))
    y = bottom
    for line in foot_lines:
        y += foot_size * 1.4
        ops.append(_Text(cx, y, line, foot_size, GREY))
    return ops


def _dark_runs(matrix: tuple) -> Iterator[tuple[int, int, int]]:
    """(row, first column, length) of each run of dark modules, quiet zone included in the indexes."""
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                yield r + QUIET_ZONE, start + QUIET_ZONE, c - start
            else:
                c += 1


# ----------------------------------------------------------------------------- PDF

def poster_pdf(link: dict, *, font_path: str | None = None) -> bytes:
    """The poster as a one-page A4 PDF (vector QR code, embedded CJK font subset)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfgen.canvas import Canvas

    font = _register_font(find_font(font_path))
    pt = mm  # 1 mm in points

    def measure(text: str, size: float) -> float:
        return stringWidth(text, font, size * pt) / pt

    with _RENDER_LOCK:
        ops = _layout(link, measure)
        buffer = io.BytesIO()
        canvas = Canvas(buffer, pagesize=A4, invariant=1, initialFontName=font, lang="zh-CN")
        community = str(link.get("community_name") or link.get("community_id") or "")
        canvas.setTitle(f"{TITLE}：{community}")
        canvas.setAuthor("老旧小区改造提质测评服务")
        canvas.setSubject(str(link.get("round_title") or ""))
        height = A4[1]

        def rgb(color):
            return tuple(v / 255 for v in color)

        for op in ops:
            if isinstance(op, _Rect):
                canvas.setFillColorRGB(*rgb(op.fill))
                canvas.rect(op.x * pt, height - (op.y + op.h) * pt, op.w * pt, op.h * pt, stroke=0, fill=1)
            elif isinstance(op, _Text):
                canvas.setFillColorRGB(*rgb(op.color))
                canvas.setFont(font, op.size * pt)
                draw = canvas.drawCentredString if op.centred else canvas.drawString
                draw(op.x * pt, height - op.baseline * pt, op.text)
            else:
                modules = len(op.matrix) + 2 * QUIET_ZONE
                unit = op.size / modules * pt
                left, top = op.x * pt, height - op.y * pt
                canvas.setFillColorRGB(*rgb(WHITE))
                canvas.rect(left, top - modules * unit, modules * unit, modules * unit, stroke=0, fill=1)
                canvas.setFillColorRGB(*rgb(BLACK))
                path = canvas.beginPath()
                for row, col, length in _dark_runs(op.matrix):
                    path.rect(left + col * unit, top - (row + 1) * unit, length * unit, unit)
                canvas.drawPath(path, stroke=0, fill=1)
        canvas.showPage()
        canvas.save()
        return buffer.getvalue()


# ----------------------------------------------------------------------------- PNG

def poster_png(link: dict, *, font_path: str | None = None) -> bytes:
    """The poster as a PNG of A4 at 150 dpi (1240 × 1754 px); QR modules are whole pixels."""
    from PIL import Image, ImageDraw, ImageFont

    path = find_font(font_path)
    scale = PNG_SIZE[0] / PAGE_W  # pixels per millimetre
    fonts: dict[int, ImageFont.FreeTypeFont] = {}

    def font(size: float) -> ImageFont.FreeTypeFont:
        px = max(1, round(size * scale))
        if px not in fonts:
            fonts[px] = ImageFont.truetype(path, px, index=0)
        return fonts[px]

    def measure(text: str, size: float) -> float:
        return font(size).getlength(text) / scale

    ops = _layout(link, measure)
    image = Image.new("RGB", PNG_SIZE, WHITE)
    draw = ImageDraw.Draw(image)
    for op in ops:
        if isinstance(op, _Rect):
            draw.rectangle([round(op.x * scale), round(op.y * scale),
                            round((op.x + op.w) * scale) - 1, round((op.y + op.h) * scale) - 1], fill=op.fill)
        elif isinstance(op, _Text):
            draw.text((op.x * scale, op.baseline * scale), op.text, fill=op.color, font=font(op.size),
                      anchor="ms" if op.centred else "ls")
        else:
            modules = len(op.matrix) + 2 * QUIET_ZONE
            unit = max(1, int(op.size * scale) // modules)  # whole pixels per module
            side = unit * modules
            left = round((op.x + op.size / 2) * scale) - side // 2
            top = round(op.y * scale) + (round(op.size * scale) - side) // 2
            draw.rectangle([left, top, left + side - 1, top + side - 1], fill=WHITE)
            for row, col, length in _dark_runs(op.matrix):
                draw.rectangle([left + col * unit, top + row * unit,
                                left + (col + length) * unit - 1, top + (row + 1) * unit - 1], fill=BLACK)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(PNG_DPI, PNG_DPI), optimize=True)
    return buffer.getvalue()
