"""The 督办通报 (supervision notice, SPEC §11) as CSV, XLSX and a printable A4 PDF in Chinese.

Every function takes the report dict of ``GET /rounds/{r}/supervision``
(``round_id, as_of, deadlines, progress_rule, districts, communities``) and may use these
optional keys when present: ``round_title`` (the round's title), ``district_names``
{district_id: name} and ``community_names`` {community_id: name} (fallbacks for rows without
``name_zh``). District rows are printed in the report's order (the slowest first).

The PDF is drawn by ReportLab with a TrueType CJK font found at run time: the file named by
the setting ``SCORING_PDF_FONT`` (or the ``font_path`` argument), else the first of
:data:`FONT_PATHS` that exists. ReportLab reads TrueType outlines only, so OpenType/CFF
fonts such as Noto Sans CJK (``fonts-noto-cjk``) cannot be used; Debian's
``fonts-wqy-microhei`` (installed by ``make run`` and ``make test``) can.
"""

from __future__ import annotations

import csv
import io
import os
import re
import threading
from collections.abc import Iterable
from xml.sax.saxutils import escape

from ..domain.milestones import MILESTONES
from .exports import csv_cell, fill_sheet, new_workbook

TITLE = "老旧小区改造提质工作进度督办通报"

#: SPEC §11, in order
#: Chinese milestone names (SPEC §11), from the one table in domain/milestones.py
MILESTONE_NAMES = {m.code: m.name_zh for m in MILESTONES}
REASON_LABELS = {
    "overdue_milestones": "逾期节点较多",
    "communities_missing": "登记小区不足",
    "construction_below_pass": "施工阶段检查未达合格",
    "rectifications_overdue": "整改逾期",
    "accepted_but_failing": "已验收但不合格",
}
PROGRESS_RULES = {
    "milestones": "按改造节点完成情况计算",
    "graded_share": "按已评定小区数占计划数计算",
}

#: Standard places of TrueType CJK fonts, tried in order when ``SCORING_PDF_FONT`` is unset.
FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # Debian/Ubuntu fonts-wqy-microhei
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian/Ubuntu fonts-wqy-zenhei
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",  # Fedora wqy-microhei-fonts
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",  # Arch wqy-microhei
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",  # Fedora wqy-zenhei-fonts
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # Debian/Ubuntu fonts-arphic-uming
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # Debian/Ubuntu fonts-droid-fallback
    "C:/Windows/Fonts/simhei.ttf",  # Windows 黑体
)
FONT_SETTING = "SCORING_PDF_FONT"


class PdfFontError(RuntimeError):
    """No usable CJK font: the message names the setting ``SCORING_PDF_FONT``."""


# ----------------------------------------------------------------------------- shared shaping

def _district_name(row: dict, report: dict) -> str:
    return row.get("name_zh") or (report.get("district_names") or {}).get(row["district_id"]) or row["district_id"]


def _community_names(report: dict) -> dict[str, str]:
    names = dict(report.get("community_names") or {})
    for row in report.get("communities") or []:
        if row.get("name_zh"):
            names[row["community_id"]] = row["name_zh"]
    return names


def _community_label(community_id: str, names: dict[str, str]) -> str:
    name = names.get(community_id)
    return f"{name}（{community_id}）" if name and name != community_id else community_id


def milestone_name(code: str) -> str:
    return MILESTONE_NAMES.get(code, code)


def reason_label(code: str) -> str:
    return REASON_LABELS.get(code, code)


def reason_text(code: str, district: dict) -> str:
    """The reason explained in one plain Chinese sentence."""
    concerned = next((len(r.get("communities") or []) for r in district.get("reasons") or [] if r["code"] == code), 0)
    quota = district.get("quota", 0)
    if code == "overdue_milestones":
        return f"{district.get('overdue_communities', concerned)}个小区有逾期未完成的节点（计划改造{quota}个）"
    if code == "communities_missing":
        return f"已登记{district.get('communities', 0)}个小区，少于计划改造的{quota}个，且方案审定截止日期已过"
    if code == "construction_below_pass":
        return f"{concerned}个小区施工阶段专业检查得分低于合格线"
    if code == "rectifications_overdue":
        return f"{concerned}个小区有整改事项逾期未完成"
    if code == "accepted_but_failing":
        return f"{concerned}个小区已完成验收，但测评等级为不合格或尚未评定"
    return ""


def _progress(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _yes_no(flag) -> str:
    return "是" if flag else "否"


def _milestone_order(codes: Iterable[str]) -> list[str]:
    known = list(MILESTONE_NAMES)
    return sorted(codes, key=lambda c: (known.index(c) if c in known else len(known), c))


def overdue_items(report: dict) -> list[tuple[dict, dict, list[tuple[str, dict]]]]:
    """(district row, community row, [(code, milestone)] overdue) by report district order, then community id."""
    rank = {d["district_id"]: i for i, d in enumerate(report.get("districts") or [])}
    districts = {d["district_id"]: d for d in report.get("districts") or []}
    items = []
    for community in report.get("communities") or []:
        milestones = community.get("milestones") or {}
        overdue = [(code, milestones[code]) for code in _milestone_order(milestones)
                   if milestones[code].get("status") == "overdue"]
        if overdue:
            district = districts.get(community["district_id"], {"district_id": community["district_id"]})
            items.append((district, community, overdue))
    items.sort(key=lambda item: (rank.get(item[1]["district_id"], len(rank)), item[1]["district_id"],
                                 item[1]["community_id"]))
    return items


def district_table(report: dict) -> tuple[list[str], list[list]]:
    headers = ["区编号", "区名称", "计划改造数", "已登记小区数", "进度得分", "到期节点数", "按期完成", "逾期完成",
               "逾期未完成", "逾期小区数", "是否警示", "警示原因"]
    rows = [
        [d["district_id"], _district_name(d, report), d.get("quota"), d.get("communities"), _progress(d.get("progress")),
         d.get("milestones_due"), d.get("on_time"), d.get("late"), d.get("overdue"), d.get("overdue_communities"),
         _yes_no(d.get("warning")), "；".join(reason_label(r["code"]) for r in d.get("reasons") or [])]
        for d in report.get("districts") or []
    ]
    return headers, rows


def warning_table(report: dict) -> tuple[list[str], list[list]]:
    """One row for each community a reason concerns (one row without a community when it concerns none)."""
    headers = ["区编号", "区名称", "警示原因", "说明", "小区编号", "小区名称"]
    names = _community_names(report)
    rows = []
    for d in report.get("districts") or []:
        for reason in d.get("reasons") or []:
            head = [d["district_id"], _district_name(d, report), reason_label(reason["code"]),
                    reason_text(reason["code"], d)]
            communities = reason.get("communities") or []
            rows += [head + [c, names.get(c, "")] for c in communities] or [head + ["", ""]]
    return headers, rows


#: a district's rectification counts (SPEC §13) in the notice: (field, heading)
RECTIFICATION_COLUMNS = (
    ("open", "待整改"),
    ("submitted", "已整改待复验"),
    ("reopened", "复验未通过"),
    ("verified", "复验通过"),
    ("overdue", "整改逾期"),
    ("median_days_to_verification", "整改至复验通过用时中位数（天）"),
)


def _days(value) -> str:
    """A median of days: whole days as such, a half as .5; none as a dash."""
    if value is None:
        return "—"
    return f"{value:g}"


def has_rectifications(report: dict) -> bool:
    """Whether the report's district rows carry rectification counts (reports made before §13 do not)."""
    return any("rectifications" in d for d in report.get("districts") or [])


def rectification_table(report: dict) -> tuple[list[str], list[list]]:
    """The districts' rectification items at the as-of date, in the report's order."""
    headers = ["区编号", "区名称", *(heading for _, heading in RECTIFICATION_COLUMNS)]
    rows = []
    for d in report.get("districts") or []:
        counts = d.get("rectifications") or {}
        rows.append([d["district_id"], _district_name(d, report),
                     *(counts.get(name, 0) for name, _ in RECTIFICATION_COLUMNS[:-1]),
                     _days(counts.get("median_days_to_verification"))])
    return headers, rows


def overdue_table(report: dict) -> tuple[list[str], list[list]]:
    headers = ["区编号", "区名称", "小区编号", "小区名称", "逾期未完成节点", "截止日期", "逾期天数"]
    names = _community_names(report)
    rows = [
        [c["district_id"], _district_name(d, report), c["community_id"], names.get(c["community_id"], ""),
         milestone_name(code), m.get("deadline") or "", m.get("days_overdue")]
        for d, c, overdue in overdue_items(report) for code, m in overdue
    ]
    return headers, rows


# ----------------------------------------------------------------------------- CSV and XLSX

def supervision_csv(report: dict) -> bytes:
    """The notice as one CSV (UTF-8 with BOM): a caption, then the district, warning and overdue tables."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def rows(values: list[list]) -> None:
        writer.writerows([csv_cell(v) for v in row] for row in values)

    rows([[TITLE], ["测评轮次", report.get("round_title") or report["round_id"], "轮次编号", report["round_id"],
                    "统计截至", report["as_of"], "进度口径", PROGRESS_RULES.get(report.get("progress_rule"), "")]])
    sections = [("一、各区进度", district_table(report)), ("二、警示督办", warning_table(report)),
                ("三、逾期未完成节点", overdue_table(report))]
    if has_rectifications(report):
        sections.append(("四、整改情况", rectification_table(report)))
    for caption, (headers, table) in sections:
        rows([[], [caption], headers])
        rows(table)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def supervision_xlsx(report: dict) -> bytes:
    """The notice as a workbook: sheets 区进度, 警示督办 and 逾期节点 (text cells as text)."""
    workbook = new_workbook()
    fill_sheet(workbook.active, "区进度", *district_table(report))
    fill_sheet(workbook.create_sheet(), "警示督办", *warning_table(report))
    fill_sheet(workbook.create_sheet(), "逾期节点", *overdue_table(report))
    if has_rectifications(report):
        fill_sheet(workbook.create_sheet(), "整改情况", *rectification_table(report))
    subtitle = f"{report.get('round_title') or report['round_id']} · 统计截至 {report['as_of']}"
    workbook.properties.title = TITLE
    workbook.properties.subject = subtitle
    for sheet in workbook.worksheets:  # printed pages say what they are
        sheet.oddHeader.center.text = f"{TITLE} — {sheet.title}"
        sheet.oddHeader.right.text = f"统计截至 {report['as_of']}"
        sheet.oddFooter.center.text = "第 &P 页 共 &N 页"
        sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
        sheet.print_title_rows = "1:1"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- PDF

_FONTS: dict[str, str] = {}
_FONT_LOCK = threading.Lock()
#: ReportLab keeps module-level state (font registry, TTF subsets); one document is built at a time
_RENDER_LOCK = threading.Lock()


def find_font(font_path: str | None = None) -> str:
    """The CJK font file to use: ``font_path``, else ``SCORING_PDF_FONT``, else the first of FONT_PATHS."""
    chosen = font_path or os.environ.get(FONT_SETTING)
    if chosen:
        if not os.path.isfile(chosen):
            raise PdfFontError(f"{FONT_SETTING}={chosen!r}: no such font file")
        return chosen
    for path in FONT_PATHS:
        if os.path.isfile(path):
            return path
    raise PdfFontError(
        f"no Chinese (CJK) TrueType font found for the PDF report; install Debian's fonts-wqy-microhei "
        f"or set {FONT_SETTING} to a .ttf/.ttc file with Chinese glyphs (looked in: {', '.join(FONT_PATHS)})")


def _register_font(path: str) -> str:
    """Register ``path`` with ReportLab once; its font name."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    with _FONT_LOCK:
        if path in _FONTS:
            return _FONTS[path]
        name = f"ScoringCJK{len(_FONTS)}"
        try:
            font = TTFont(name, path, subfontIndex=0)
        except (TTFError, OSError) as exc:
            raise PdfFontError(f"{FONT_SETTING}: cannot use font {path!r} ({exc}); it must be a TrueType "
                               ".ttf/.ttc font (OpenType/CFF fonts such as Noto Sans CJK are not supported)") from exc
        if not all(ord(ch) in font.face.charToGlyph for ch in "督办通报区"):
            raise PdfFontError(f"{FONT_SETTING}: font {path!r} has no Chinese glyphs")
        pdfmetrics.registerFont(font)
        _FONTS[path] = name
        return name


def _date_zh(value: str | None) -> str:
    match = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", value or "")
    if not match:
        return value or ""
    year, month, day = match.groups()
    return f"{year}年{int(month)}月{int(day)}日"


def supervision_pdf(report: dict, *, font_path: str | None = None) -> bytes:
    """The notice as a printable A4 PDF in Chinese (see the module docstring for the font)."""
    font = _register_font(find_font(font_path))
    with _RENDER_LOCK:
        return _build_pdf(report, font)


def _build_pdf(report: dict, font: str) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_CENTER
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    def style(name, size, leading=None, **kw):
        return ParagraphStyle(name, fontName=font, fontSize=size, leading=leading or size * 1.45,
                              wordWrap="CJK", **kw)

    title_style = style("title", 18, 26, alignment=TA_CENTER, spaceAfter=4)
    sub_style = style("sub", 10.5, alignment=TA_CENTER, textColor=colors.HexColor("#333333"))
    h_style = style("h", 13, 20, spaceBefore=10, spaceAfter=4)
    h2_style = style("h2", 11, 17, spaceBefore=6, spaceAfter=2)
    body = style("body", 10, 15)
    note = style("note", 8.5, 12, textColor=colors.HexColor("#444444"), spaceBefore=3)
    cell = style("cell", 9, 12)
    cell_c = style("cellc", 9, 12, alignment=TA_CENTER)
    head = style("head", 9, 12, alignment=TA_CENTER)

    def p(text, st=body):
        return Paragraph(escape(str(text)), st)

    grid = [("FONTNAME", (0, 0), (-1, -1), font), ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e6e6")), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("TOPPADDING", (0, 0), (-1, -1), 2.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]

    def tables(header: list, rows: list[list], widths: list[float], extra=lambda start, chunk: []) -> list:
        """Long tables in chunks (ReportLab splits a huge table slowly), the header repeated on every page."""
        if not rows:
            return [p("无。")]
        out = []
        for start in range(0, len(rows), 200):
            chunk = rows[start:start + 200]
            t = Table([header] + chunk, colWidths=widths, repeatRows=1)
            t.setStyle(TableStyle(grid + extra(start, chunk)))
            out.append(t)
        return out

    names = _community_names(report)
    districts = report.get("districts") or []
    story = [p(TITLE, title_style),
             p(f"测评轮次：{report.get('round_title') or report['round_id']}"
               + (f"（{report['round_id']}）" if report.get("round_title") else ""), sub_style),
             p(f"统计截至：{_date_zh(report['as_of'])}　　进度口径："
               f"{PROGRESS_RULES.get(report.get('progress_rule'), report.get('progress_rule') or '')}", sub_style),
             Spacer(1, 6 * mm)]

    warned = [d for d in districts if d.get("warning")]
    overdue = overdue_items(report)
    story.append(p(f"截至{_date_zh(report['as_of'])}，共{len(districts)}个区纳入督办统计，其中{len(warned)}个区"
                   f"被警示督办，{len(overdue)}个小区有逾期未完成的改造节点。各区进度按由慢到快排列。", body))

    # 一、各区进度
    story.append(p("一、各区进度", h_style))
    header = [p(h, head) for h in ("区", "计划数", "已登记", "进度得分", "按期完成", "逾期完成", "逾期未完成",
                                   "逾期小区", "是否警示")]
    rows = [[p(_district_name(d, report), cell), p(d.get("quota", ""), cell_c), p(d.get("communities", ""), cell_c),
             p(_progress(d.get("progress")), cell_c), p(d.get("on_time", ""), cell_c), p(d.get("late", ""), cell_c),
             p(d.get("overdue", ""), cell_c), p(d.get("overdue_communities", ""), cell_c),
             p(_yes_no(d.get("warning")), cell_c)] for d in districts]

    def warned_rows(start, chunk):
        return [("BACKGROUND", (0, i + 1), (-1, i + 1), colors.HexColor("#fde2e2"))
                for i, d in enumerate(districts[start:start + len(chunk)]) if d.get("warning")]

    story += tables(header, rows, [26 * mm, 16 * mm, 16 * mm, 18 * mm, 18 * mm, 18 * mm, 22 * mm, 18 * mm, 18 * mm], warned_rows)
    story.append(p("注：按期完成、逾期完成、逾期未完成按“小区×节点”计数；进度得分满分100分；"
                   "被警示的区所在行以浅红色标出。", note))

    # 二、警示督办
    story.append(p("二、警示督办", h_style))
    if not warned:
        story.append(p("本期无被警示督办的区。"))
    for d in warned:
        block = [p(f"{_district_name(d, report)}（{len(d.get('reasons') or [])}项）", h2_style)]
        for number, reason in enumerate(d.get("reasons") or [], 1):
            line = f"{number}. {reason_label(reason['code'])}：{reason_text(reason['code'], d)}。"
            communities = reason.get("communities") or []
            if communities:  # no closing 。: the wrapper would put it alone on a line after "（id）"
                line += "涉及小区：" + "、".join(_community_label(c, names) for c in communities)
            block.append(Paragraph(escape(line), style(f"r{number}", 10, 15, leftIndent=4 * mm)))
        small = sum(len(r.get("communities") or []) for r in d.get("reasons") or []) < 40
        story += [KeepTogether(block)] if small else block  # a long list may run over pages

    # 三、逾期未完成节点
    story.append(p("三、逾期未完成节点", h_style))
    header = [p(h, head) for h in ("区", "小区", "逾期未完成节点", "截止日期", "逾期天数")]
    rows = [[p(_district_name(d, report), cell), p(_community_label(c["community_id"], names), cell),
             Paragraph("<br/>".join(escape(milestone_name(code)) for code, _ in items), cell),
             Paragraph("<br/>".join(escape(m.get("deadline") or "") for _, m in items), cell_c),
             Paragraph("<br/>".join(escape(f"{m.get('days_overdue', '')}天") for _, m in items), cell_c)]
            for d, c, items in overdue]
    story += tables(header, rows, [24 * mm, 48 * mm, 58 * mm, 24 * mm, 18 * mm],
                    lambda start, chunk: [("VALIGN", (0, 0), (-1, -1), "TOP")])

    # 四、整改情况
    if has_rectifications(report):
        story.append(p("四、整改情况", h_style))
        headers, table = rectification_table(report)
        header = [p(h, head) for h in ["区", *headers[2:]]]
        rows = [[p(row[1], cell), *(p(value, cell_c) for value in row[2:])] for row in table]
        story += tables(header, rows, [26 * mm, 20 * mm, 24 * mm, 22 * mm, 20 * mm, 20 * mm, 32 * mm])
        story.append(p("注：整改事项由验收阶段专业检查中未达标的检查项生成；“整改逾期”指截至统计日超过整改期限仍未复验通过的"
                       "事项（含已整改待复验的事项）；用时中位数按复验通过的事项计算，无复验通过事项的区以“—”表示。", note))

    # 附：节点及截止日期
    deadlines = report.get("deadlines") or {}
    story.append(p("附：改造节点及截止日期", h_style))
    rows = [[p(i, cell_c), p(milestone_name(code), cell), p(deadlines.get(code) or "无", cell_c)]
            for i, code in enumerate(_milestone_order(set(MILESTONE_NAMES) | set(deadlines)), 1)]
    story += tables([p(h, head) for h in ("序号", "节点", "截止日期")], rows, [14 * mm, 100 * mm, 30 * mm])

    as_of = _date_zh(report["as_of"])

    class NumberedCanvas(Canvas):
        """Footer "第 x 页 共 y 页" on every page (pages are kept until the count is known)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages = []

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(font, 8.5)
                self.setFillColor(colors.HexColor("#444444"))
                self.drawString(18 * mm, 10 * mm, f"{TITLE} · 统计截至{as_of}")
                self.drawRightString(A4[0] - 18 * mm, 10 * mm, f"第 {self._pageNumber} 页 共 {len(self._pages)} 页")
                super().showPage()
            super().save()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=TITLE, author="老旧小区改造提质测评服务",
                            subject=f"{report.get('round_title') or report['round_id']} 统计截至{as_of}",
                            lang="zh-CN", invariant=1,
                            initialFontName=font)  # no Helvetica for a printer to stand in for
    doc.build(story, canvasmaker=NumberedCanvas)
    return buffer.getvalue()
