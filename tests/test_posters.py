"""Survey-link posters (SPEC §14) from a hand-made link dict (no store).

The QR code is decoded back with zbar's ``zbarimg`` from the PNG and from the PDF rendered by
Poppler's ``pdftoppm``; the text is read with ``pdftotext`` (``make test`` installs
zbar-tools, poppler-utils and fonts-wqy-microhei; SCORING_REQUIRE_PDF_TOOLS=1 (CI) turns a
missing tool or font into a failure instead of a skip).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import segno
from PIL import Image

from scoring_service.reports import posters
from scoring_service.reports.posters import poster_dates, poster_pdf, poster_png
from scoring_service.reports.supervision import PdfFontError, find_font

from .conftest import skip_or_fail

REQUIRE = "SCORING_REQUIRE_PDF_TOOLS"
#: a link URL as services/survey_links.py makes it: l_<16 hex>.<secret>, the secret 43 characters long
URL = "https://pingjia.shenyang.example.gov.cn/s/l_3f9a0c1d2e4b5a69.Zx9_kQ-3mVb7Lr2TnW8yPc4HdJf6GsAa1UeXo5NiBtE"


def make_link(**changes) -> dict:
    link = {"url": URL, "community_name": "五爱小区", "district_name": "沈河区",
            "round_title": "2018年沈阳市老旧小区改造提质", "opens_at": "2018-08-31T16:00:00.000000Z",
            "closes_at": "2018-09-30T15:59:59.000000Z", "community_id": "shenhe-001"}
    link.update(changes)
    return link


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed (make test installs Debian's {package})", REQUIRE)
    return path


@pytest.fixture(scope="module", autouse=True)
def cjk_font():
    try:
        return find_font()
    except PdfFontError as exc:
        skip_or_fail(f"no CJK font ({exc})", REQUIRE)


def decode_qr(png: Path) -> list[str]:
    """Every QR code zbar finds in the image, as text."""
    run = subprocess.run([tool("zbarimg", "zbar-tools"), "--raw", "-q", "-Sdisable", "-Sqrcode.enable", str(png)],
                         capture_output=True, timeout=60)
    assert run.returncode == 0, f"zbarimg found no code (exit {run.returncode}): {run.stderr!r}"
    return run.stdout.decode("utf-8").splitlines()


def render_pdf(pdf: bytes, tmp_path: Path) -> Path:
    source = tmp_path / "poster.pdf"
    source.write_bytes(pdf)
    subprocess.run([tool("pdftoppm", "poppler-utils"), "-png", "-r", "150", str(source), str(tmp_path / "page")],
                   check=True, capture_output=True, timeout=60)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1, pages
    return pages[0]


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    source = tmp_path / "text.pdf"
    source.write_bytes(pdf)
    run = subprocess.run([tool("pdftotext", "poppler-utils"), "-enc", "UTF-8", str(source), "-"],
                         check=True, capture_output=True, timeout=60)
    return run.stdout.decode("utf-8")


def flat(text: str) -> str:
    """Text without the line breaks and spaces that wrapping adds."""
    return re.sub(r"\s+", "", text)


# ----------------------------------------------------------------------------- the QR code

def test_png_qr_code_decodes_to_the_link_url(tmp_path):
    png = poster_png(make_link())
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == posters.PNG_SIZE == (1240, 1754)
    assert round(image.info["dpi"][0]) == 150
    path = tmp_path / "poster.png"
    path.write_bytes(png)
    assert decode_qr(path) == [URL]


def test_pdf_qr_code_decodes_to_the_link_url(tmp_path):
    pdf = poster_pdf(make_link())
    assert pdf.startswith(b"%PDF")
    page = render_pdf(pdf, tmp_path)
    with Image.open(page) as image:  # A4 at 150 dpi
        assert abs(image.size[0] - 1240) <= 2 and abs(image.size[1] - 1754) <= 2
    assert decode_qr(page) == [URL]


def test_qr_code_is_large_with_a_quiet_zone(tmp_path):
    """Read from a printed A4 on a wall: at least 8 cm wide and white for 4 modules around it."""
    image = Image.open(io.BytesIO(poster_png(make_link()))).convert("L")
    pixels = image.load()
    # the QR code's dark modules are the only black pixels; text is dark grey or on the band
    left, top, right, bottom = image.point(lambda v: 255 if v == 0 else 0).getbbox()
    right, bottom = right - 1, bottom - 1
    side_px = right - left + 1
    assert side_px / 150 * 25.4 >= 80  # millimetres when printed at 150 dpi
    module = side_px / segno.make(URL, error="m").symbol_size(border=0)[0]
    quiet = round(4 * module)
    for x in range(left - quiet, right + quiet + 1, 3):
        for y in (top - quiet, top - 1, bottom + 1, bottom + quiet):
            assert pixels[x, y] == 255, (x, y)
    for y in range(top - quiet, bottom + quiet + 1, 3):
        for x in (left - quiet, left - 1, right + 1, right + quiet):
            assert pixels[x, y] == 255, (x, y)


def test_short_and_long_urls_decode(tmp_path):
    for i, url in enumerate(["http://127.0.0.1:8000/s/l_0000000000000000.x",
                             "https://example.org/scoring/s/l_ffffffffffffffff." + "A-_z9" * 30]):
        path = tmp_path / f"p{i}.png"
        path.write_bytes(poster_png(make_link(url=url)))
        assert decode_qr(path) == [url]


# ----------------------------------------------------------------------------- the text

def test_pdf_shows_names_instructions_and_dates(tmp_path):
    text = flat(pdf_text(poster_pdf(make_link()), tmp_path))
    for words in ("请为我们小区的改造打分", "五爱小区", "沈河区", "2018年沈阳市老旧小区改造提质",
                  "“本小区居民”", "楼栋、单元和门牌号", "“社会公众”", "每户限填一次", "约需2分钟",
                  "测评时间：2018年9月1日—9月30日", URL):
        assert words in text, words


def test_name_with_markup_characters_renders_as_text(tmp_path):
    name = "青年大街<东>&小区 <b>x</b> &amp;"
    link = make_link(community_name=name, district_name="和平<区>&")
    text = flat(pdf_text(poster_pdf(link), tmp_path))
    assert flat(name) in text and "和平<区>&" in text
    path = tmp_path / "poster.png"
    path.write_bytes(poster_png(link))
    assert decode_qr(path) == [URL]


def test_long_community_name_wraps_inside_the_page(tmp_path):
    name = "沈阳市沈河区五爱街道青年大街东侧原第一机床厂职工宿舍及周边零散楼院合并改造片区"
    pdf = poster_pdf(make_link(community_name=name))
    assert flat(name) in flat(pdf_text(pdf, tmp_path))
    assert decode_qr(render_pdf(pdf, tmp_path)) == [URL]
    # every line fits between the margins
    lines = posters._wrap(name, 12.0, 10 * 12.0, lambda text, size: len(text) * size)
    assert "".join(lines) == name and all(len(line) <= 10 for line in lines)


def test_missing_names_fall_back(tmp_path):
    link = make_link(community_name=None, district_name=None, round_title=None)
    text = flat(pdf_text(poster_pdf(link), tmp_path))
    assert "shenhe-001" in text and "请为我们小区的改造打分" in text
    with pytest.raises(ValueError):
        poster_png(make_link(url=""))


def test_wrap_keeps_numbers_whole_and_punctuation_off_line_starts():
    def measure(text, size):
        return len(text) * size

    assert posters._wrap("门牌号（如7-3-501）；谢谢", 1, 8, measure) == ["门牌号（如", "7-3-501）；", "谢谢"]
    assert posters._wrap("一二三，。四", 1, 3, measure) == ["一二", "三，。", "四"]
    assert posters._wrap("一二（三四", 1, 3, measure) == ["一二", "（三四"]
    url = "http://a.example/s/l_0123"
    assert "".join(posters._wrap(url, 1, 6, measure)) == url


# ----------------------------------------------------------------------------- dates

@pytest.mark.parametrize("opens, closes, shown", [
    ("2018-08-31T16:00:00.000000Z", "2018-09-30T15:59:59.000000Z", "2018年9月1日—9月30日"),
    ("2018-09-01T00:00:00+08:00", "2018-09-30T23:59:59+08:00", "2018年9月1日—9月30日"),
    # a round closing at 00:00 China time ends with the day before
    ("2018-08-31T16:00:00Z", "2018-09-30T16:00:00Z", "2018年9月1日—9月30日"),
    ("2018-12-01T00:00:00+08:00", "2019-01-15T12:00:00+08:00", "2018年12月1日—2019年1月15日"),
    ("2018-09-01T02:00:00Z", "2018-09-01T10:00:00Z", "2018年9月1日"),
    (None, "2018-09-30T15:59:59Z", "2018年9月30日前"),
    (None, None, ""),
])
def test_dates_in_china_time(opens, closes, shown):
    assert poster_dates(opens, closes) == shown


@pytest.mark.parametrize("name", ["五爱小区", "沈阳市沈河区五爱街道青年大街东侧原第一机床厂职工宿舍及周边零散楼院合并改造片区" * 2])
def test_layout_stays_on_the_page_without_overlaps(name):
    """With the PDF's own font metrics: every line inside the page, nothing drawn over the QR code."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    font = posters._register_font(find_font())

    def measure(text, size):
        return stringWidth(text, font, size * 72 / 25.4) * 25.4 / 72

    ops = posters._layout(make_link(community_name=name, round_title="2018年沈阳市老旧小区改造提质" * 3), measure)
    (qr,) = [op for op in ops if isinstance(op, posters._Qr)]
    assert qr.size >= 80 and qr.x >= posters.MARGIN and qr.x + qr.size <= posters.PAGE_W - posters.MARGIN
    for op in ops:
        if isinstance(op, posters._Text):
            width = measure(op.text, op.size)
            left = op.x - width / 2 if op.centred else op.x
            assert 0 <= left and left + width <= posters.PAGE_W, op
            assert op.size <= op.baseline <= posters.PAGE_H - 5, op
            top = op.baseline - op.size
            assert op.baseline <= qr.y or top >= qr.y + qr.size, op
        elif isinstance(op, posters._Rect):
            assert op.y + op.h <= qr.y or op.y >= qr.y + qr.size, op
    names = [op.text for op in ops if isinstance(op, posters._Text) and op.color == posters.INK and op.size >= 7]
    assert len(names) <= 3 and "".join(names).rstrip("…") in name
