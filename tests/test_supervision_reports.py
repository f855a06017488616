"""The 督办通报 (SPEC §11) as CSV, XLSX and PDF, from a hand-made report dict (no store).

The PDF is read back with Poppler's pdftotext and rendered with pdftoppm (``make test``
installs poppler-utils and fonts-wqy-microhei); SCORING_REQUIRE_PDF_TOOLS=1 (CI) turns a
missing tool or font into a failure instead of a skip.
"""

from __future__ import annotations

import copy
import csv
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from openpyxl import load_workbook

from scoring_service.reports import supervision
from scoring_service.reports.supervision import (
    PdfFontError, find_font, supervision_csv, supervision_pdf, supervision_xlsx)

from .conftest import skip_or_fail

REQUIRE = "SCORING_REQUIRE_PDF_TOOLS"
REASON_WORDS = ["逾期节点较多", "登记小区不足", "施工阶段检查未达合格", "整改逾期", "已验收但不合格"]


def _m(status, deadline=None, reached_on=None, **extra):
    return {"deadline": deadline, "reached_on": reached_on, "status": status, **extra}


def make_report() -> dict:
    deadlines = {"plan_approved": "2018-04-30", "residents_voted": "2018-04-30",
                 "illegal_structures_cleared": "2018-04-30", "contract_signed": "2018-04-30",
                 "works_completed": "2018-08-31", "accepted": "2018-09-30", "management_assigned": "2018-09-30"}
    communities = [
        {"community_id": "shenhe-001", "district_id": "shenhe", "name_zh": "五爱小区", "flags": [],
         "milestones": {"plan_approved": _m("on_time", "2018-04-30", "2018-04-20"),
                        "works_completed": _m("overdue", "2018-08-31", days_overdue=15),
                        "contract_signed": _m("overdue", "2018-04-30", days_overdue=138)}},
        {"community_id": "shenhe-002", "district_id": "shenhe", "name_zh": "青年大街<东>&小区",
         "flags": ["accepted_but_failing"],
         "milestones": {"accepted": _m("on_time", "2018-09-30", "2018-09-01"),
                        "management_assigned": _m("pending", "2018-09-30")}},
        {"community_id": "heping-001", "district_id": "heping", "name_zh": "南京街小区", "flags": [],
         "milestones": {"plan_approved": _m("late", "2018-04-30", "2018-05-03", days_late=3),
                        "works_started": _m("done", None, "2018-05-20")}},
    ]
    districts = [
        {"district_id": "shenhe", "name_zh": "沈河区", "quota": 10, "communities": 2, "progress": 41.5,
         "milestones_due": 5, "on_time": 2, "late": 0, "overdue": 2, "overdue_communities": 1, "warning": True,
         "reasons": [{"code": "overdue_milestones", "communities": ["shenhe-001"]},
                     {"code": "communities_missing", "communities": []},
                     {"code": "construction_below_pass", "communities": ["shenhe-001"]},
                     {"code": "rectifications_overdue", "communities": ["shenhe-002"]},
                     {"code": "accepted_but_failing", "communities": ["shenhe-002"]}]},
        {"district_id": "heping", "name_zh": "和平区", "quota": 1, "communities": 1, "progress": 97.25,
         "milestones_due": 5, "on_time": 0, "late": 1, "overdue": 0, "overdue_communities": 0, "warning": False,
         "reasons": []},
    ]
    return {"round_id": "shenyang-2018", "round_title": "2018年沈阳市老旧小区改造提质", "as_of": "2018-09-15",
            "deadlines": deadlines, "progress_rule": "milestones", "districts": districts,
            "communities": communities}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"{name} is not installed (make test installs Debian's poppler-utils)", REQUIRE)
    return path


def pdf_of(report: dict) -> bytes:
    try:
        find_font()
    except PdfFontError as exc:
        skip_or_fail(f"no CJK font ({exc})", REQUIRE)
    return supervision_pdf(report)


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "notice.pdf"
    path.write_bytes(pdf)
    return subprocess.run([tool("pdftotext"), "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True,
                          timeout=60).stdout.decode("utf-8")


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return pdf_of(make_report())


# ----------------------------------------------------------------------------- PDF

def test_pdf_text_holds_the_districts_the_warnings_in_words_and_the_communities(pdf, tmp_path):
    text = pdf_text(pdf, tmp_path)
    assert pdf.startswith(b"%PDF-")
    assert "老旧小区改造提质工作进度督办通报" in text
    assert "2018年沈阳市老旧小区改造提质" in text and "2018年9月15日" in text
    assert "沈河区" in text and "和平区" in text
    for words in REASON_WORDS:
        assert words in text, words
    assert "五爱小区" in text
    assert "青年大街<东>&小区" in text  # markup characters of a name printed as written
    assert "41.50" in text and "97.25" in text
    # the overdue community with its overdue milestones in Chinese and the days overdue
    assert "签订施工合同" in text and "工程竣工" in text and "138天" in text and "15天" in text


def test_pdf_lists_only_overdue_milestones_in_the_overdue_section(pdf, tmp_path):
    text = pdf_text(pdf, tmp_path)
    overdue = text.split("三、逾期未完成节点")[1].split("附：")[0]
    assert "五爱小区" in overdue and "签订施工合同" in overdue
    assert "南京街小区" not in overdue and "后续管理落实" not in overdue  # late and pending are not overdue


def test_pdf_districts_in_the_report_order_the_slowest_first(pdf, tmp_path):
    table = pdf_text(pdf, tmp_path).split("一、各区进度")[1].split("二、警示督办")[0]
    assert table.index("沈河区") < table.index("和平区")


def test_pdf_embeds_the_cjk_font(pdf, tmp_path):
    path = tmp_path / "notice.pdf"
    path.write_bytes(pdf)
    fonts = subprocess.run([tool("pdffonts"), str(path)], check=True, capture_output=True, text=True).stdout
    rows = fonts.splitlines()[2:]
    # every font embedded (a subset, with its Unicode map): none a printer must stand in for, not even Helvetica
    assert rows and all(row.split()[-5:-2] == ["yes", "yes", "yes"] for row in rows), fonts


def test_pdf_renders_to_a_printed_a4_page(pdf, tmp_path):
    path = tmp_path / "notice.pdf"
    path.write_bytes(pdf)
    subprocess.run([tool("pdftoppm"), "-png", "-r", "50", "-f", "1", "-l", "1", str(path), str(tmp_path / "page")],
                   check=True, timeout=60)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) == 1
    try:
        from PIL import Image
    except ImportError:  # Pillow comes with ReportLab; without it, at least a real image
        assert pages[0].stat().st_size > 5000
        return
    with Image.open(pages[0]) as image:
        width, height = image.size
        assert abs(width - 413) <= 2 and abs(height - 585) <= 2  # A4 at 50 dpi
        gray = image.convert("L")
        dark = sum(gray.histogram()[:128])  # pixels darker than mid-gray
    assert dark > 0.01 * width * height  # text and table lines drawn, not a blank page


def test_a_long_report_runs_over_pages_with_numbered_footers(tmp_path):
    report = make_report()
    many = [{"community_id": f"shenhe-{i:03d}", "district_id": "shenhe", "name_zh": f"长白{i}号小区", "flags": [],
             "milestones": {"contract_signed": _m("overdue", "2018-04-30", days_overdue=138)}}
            for i in range(100, 400)]
    report["communities"] += many
    report["districts"][0]["reasons"][0]["communities"] += [c["community_id"] for c in many]
    text = pdf_text(pdf_of(report), tmp_path).replace(" ", "")
    pages = text.split("\f")
    pages = [page for page in pages if page.strip()]
    assert len(pages) >= 3
    assert f"第1页共{len(pages)}页" in pages[0] and f"第{len(pages)}页共{len(pages)}页" in pages[-1]
    assert "长白399号小区" in text
    # the overdue table's header is printed again on the pages it runs over to
    assert sum("逾期未完成节点" in page and "逾期天数" in page for page in pages) >= 2


def test_pdf_without_warnings_or_overdue_says_so(tmp_path):
    report = make_report()
    for district in report["districts"]:
        district.update(warning=False, reasons=[], overdue=0, overdue_communities=0)
    for community in report["communities"]:
        for milestone in community["milestones"].values():
            if milestone["status"] == "overdue":
                milestone.update(status="pending", days_overdue=None)
    text = pdf_text(pdf_of(report), tmp_path)
    assert "本期无被警示督办的区" in text
    assert "无。" in text.split("三、逾期未完成节点")[1]
    for words in REASON_WORDS:
        assert words not in text


def test_names_fall_back_to_the_optional_name_maps_then_the_ids(tmp_path):
    report = make_report()
    del report["districts"][1]["name_zh"], report["communities"][0]["name_zh"], report["round_title"]
    report["district_names"] = {"heping": "和平备用区"}
    report["community_names"] = {"shenhe-001": "五爱备用小区"}
    del report["districts"][0]["name_zh"]
    text = pdf_text(pdf_of(report), tmp_path)
    assert "和平备用区" in text and "五爱备用小区" in text
    assert "shenhe" in text and "测评轮次：shenyang-2018" in text


# ----------------------------------------------------------------------------- font discovery

def test_the_font_setting_names_a_missing_file(monkeypatch):
    monkeypatch.setenv("SCORING_PDF_FONT", "/nonexistent/font.ttc")
    with pytest.raises(PdfFontError, match="SCORING_PDF_FONT"):
        supervision_pdf(make_report())


def test_no_font_anywhere_is_a_clear_error_naming_the_setting(monkeypatch):
    monkeypatch.delenv("SCORING_PDF_FONT", raising=False)
    monkeypatch.setattr(supervision, "FONT_PATHS", ("/nonexistent/a.ttc",))
    with pytest.raises(PdfFontError, match="SCORING_PDF_FONT") as caught:
        supervision_pdf(make_report())
    assert "fonts-wqy-microhei" in str(caught.value)


def test_a_file_that_is_not_a_truetype_font_is_refused_by_name(tmp_path, monkeypatch):
    fake = tmp_path / "fake.ttf"
    fake.write_bytes(b"not a font at all" * 10)
    monkeypatch.setenv("SCORING_PDF_FONT", str(fake))
    with pytest.raises(PdfFontError, match="SCORING_PDF_FONT.*fake.ttf"):
        supervision_pdf(make_report())


def test_a_font_without_chinese_glyphs_is_refused(monkeypatch):
    path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"  # fonts-dejavu-core, Latin only
    if not Path(path).exists():
        skip_or_fail(f"{path} not installed (Debian's fonts-dejavu-core)", REQUIRE)
    monkeypatch.setenv("SCORING_PDF_FONT", path)
    with pytest.raises(PdfFontError, match="no Chinese glyphs"):
        supervision_pdf(make_report())


def test_the_font_argument_wins_over_the_setting(monkeypatch, tmp_path):
    try:
        real = find_font()
    except PdfFontError as exc:
        skip_or_fail(f"no CJK font ({exc})", REQUIRE)
    monkeypatch.setenv("SCORING_PDF_FONT", "/nonexistent/font.ttc")
    assert supervision_pdf(make_report(), font_path=real).startswith(b"%PDF-")


# ----------------------------------------------------------------------------- CSV

def csv_blocks(data: bytes) -> dict[str, list[list[str]]]:
    """Caption → rows (headers first) of each block; blocks are separated by an empty row."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    blocks, caption = {"": []}, ""
    for row in rows:
        if not row:
            caption = None
        elif caption is None:
            caption = row[0]
            blocks[caption] = []
        else:
            blocks[caption].append(row)
    return blocks


def test_csv_is_utf8_with_bom_and_chinese_headers():
    data = supervision_csv(make_report())
    assert data.startswith("\ufeff".encode("utf-8"))
    blocks = csv_blocks(data)
    assert blocks[""][0] == ["老旧小区改造提质工作进度督办通报"]
    assert blocks[""][1][:6] == ["测评轮次", "2018年沈阳市老旧小区改造提质", "轮次编号", "shenyang-2018",
                                 "统计截至", "2018-09-15"]
    districts = blocks["一、各区进度"]
    assert districts[0] == ["区编号", "区名称", "计划改造数", "已登记小区数", "进度得分", "到期节点数", "按期完成",
                            "逾期完成", "逾期未完成", "逾期小区数", "是否警示", "警示原因"]
    assert districts[1][:5] == ["shenhe", "沈河区", "10", "2", "41.50"] and districts[1][10] == "是"
    assert districts[1][11] == "；".join(REASON_WORDS)
    assert districts[2][:2] == ["heping", "和平区"] and districts[2][10:] == ["否", ""]


def test_csv_warnings_name_each_community_a_reason_concerns():
    warnings = csv_blocks(supervision_csv(make_report()))["二、警示督办"]
    assert warnings[0] == ["区编号", "区名称", "警示原因", "说明", "小区编号", "小区名称"]
    pairs = [(row[2], row[4], row[5]) for row in warnings[1:]]
    assert pairs == [("逾期节点较多", "shenhe-001", "五爱小区"), ("登记小区不足", "", ""),
                     ("施工阶段检查未达合格", "shenhe-001", "五爱小区"),
                     ("整改逾期", "shenhe-002", "青年大街<东>&小区"),
                     ("已验收但不合格", "shenhe-002", "青年大街<东>&小区")]
    assert warnings[2][3] == "已登记2个小区，少于计划改造的10个，且方案审定截止日期已过"


def test_csv_overdue_milestones_in_order_with_days():
    overdue = csv_blocks(supervision_csv(make_report()))["三、逾期未完成节点"]
    assert overdue[0] == ["区编号", "区名称", "小区编号", "小区名称", "逾期未完成节点", "截止日期", "逾期天数"]
    assert overdue[1:] == [["shenhe", "沈河区", "shenhe-001", "五爱小区", "签订施工合同", "2018-04-30", "138"],
                           ["shenhe", "沈河区", "shenhe-001", "五爱小区", "工程竣工", "2018-08-31", "15"]]


def test_csv_escapes_names_a_spreadsheet_would_evaluate():
    report = make_report()
    report["districts"][0]["name_zh"] = "=HYPERLINK(\"http://x\")"
    report["communities"][0]["name_zh"] = "+1+1"
    blocks = csv_blocks(supervision_csv(report))
    assert blocks["一、各区进度"][1][1] == "'=HYPERLINK(\"http://x\")"
    assert blocks["三、逾期未完成节点"][1][3] == "'+1+1"


# ----------------------------------------------------------------------------- XLSX

def test_xlsx_has_the_three_sheets_with_chinese_headers():
    book = load_workbook(io.BytesIO(supervision_xlsx(make_report())))
    assert book.sheetnames == ["区进度", "警示督办", "逾期节点"]
    districts = [list(row) for row in book["区进度"].iter_rows(values_only=True)]
    assert districts[0][:5] == ["区编号", "区名称", "计划改造数", "已登记小区数", "进度得分"]
    assert districts[1][:5] == ["shenhe", "沈河区", 10, 2, "41.50"] and districts[1][10] == "是"
    warnings = [list(row) for row in book["警示督办"].iter_rows(values_only=True)]
    assert [row[2] for row in warnings[1:]] == REASON_WORDS
    assert warnings[1][4:] == ["shenhe-001", "五爱小区"]
    overdue = [list(row) for row in book["逾期节点"].iter_rows(values_only=True)]
    assert overdue[1] == ["shenhe", "沈河区", "shenhe-001", "五爱小区", "签订施工合同", "2018-04-30", 138]
    assert len(overdue) == 3


def test_xlsx_writes_text_as_text_never_a_formula():
    report = make_report()
    report["districts"][0]["name_zh"] = "=1+1"
    report["communities"][0]["name_zh"] = "五爱\x07小区"  # a control character XML cannot hold
    book = load_workbook(io.BytesIO(supervision_xlsx(report)))
    cell = book["区进度"]["B2"]
    assert cell.value == "=1+1" and cell.data_type == "s"
    assert book["逾期节点"]["D2"].value == "五爱\ufffd小区"


def test_reports_do_not_change_the_report_dict():
    report = make_report()
    before = copy.deepcopy(report)
    supervision_csv(report)
    supervision_xlsx(report)
    assert report == before
