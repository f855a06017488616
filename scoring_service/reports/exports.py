"""CSV (UTF-8 with BOM, so Excel shows Chinese) and XLSX exports with Chinese headers."""

from __future__ import annotations

import csv
import io
import re

from ..domain.ledger import yuan

FLAG_LABELS = {
    "pending_inspection": "待专业测评",
    "pending_survey": "待居民测评",
    "insufficient_sample": "样本量不足",
    "satisfaction_below_acceptance": "满意率未达验收标准",
    "satisfaction_outlier_low": "满意率显著偏低",
    "satisfaction_outlier_high": "满意率显著偏高",
    "backsliding": "前治后乱（较验收下降10分及以上）",
    "management_missing": "后续管理未落实",
}


def flag_label(flag: str, check_texts: dict[str, str] | None = None) -> str:
    """A flag in plain Chinese (``veto:<check>`` names the check)."""
    if flag.startswith("veto:"):
        code = flag[5:]
        return f"一票否决：{(check_texts or {}).get(code, code)}"
    return FLAG_LABELS.get(flag, flag)


def _num(value):
    return "" if value is None else value


def community_table(ranking: dict, check_texts: dict[str, str]) -> tuple[list[str], list[list]]:
    headers = ["排名", "区内排名", "小区编号", "小区名称", "所属区", "综合得分", "等级", "提示"]
    rows = [
        [_num(r["rank"]), _num(r["rank_in_district"]), r["community_id"], r["name_zh"], r["district_id"],
         _num(r["composite"]), r.get("grade_zh") or "", "；".join(flag_label(f, check_texts) for f in r["flags"])]
        for r in ranking["communities"] + ranking.get("unranked", [])
    ]
    return headers, rows


def district_table(ranking: dict) -> tuple[list[str], list[list]]:
    headers = ["排名", "区编号", "区名称", "综合指数", "质量得分", "进度得分", "计划数", "已评定数",
               "优秀", "良好", "合格", "不合格", "良好及以上占比"]
    rows = [
        [r["rank"], r["district_id"], r.get("name_zh") or "", r["index"], r["quality"], r["progress"], r["quota"],
         r["graded"], r["grade_counts"].get("excellent", 0), r["grade_counts"].get("good", 0),
         r["grade_counts"].get("pass", 0), r["grade_counts"].get("fail", 0), r["share_good_or_better"]]
        for r in ranking["districts"]
    ]
    return headers, rows


def rewards_table(rewards: dict) -> tuple[list[str], list[list]]:
    headers = ["类别", "编号", "名称", "奖励金额（分）", "奖励金额（元）"]
    rows = [["区", d["district_id"], d.get("name_zh") or "", d["amount_fen"], yuan(d["amount_fen"])]
            for d in rewards["districts"]]
    rows += [["小区", c["community_id"], c.get("name_zh") or "", c["amount_fen"], yuan(c["amount_fen"])]
             for c in rewards["communities"]]
    if rewards["unallocated_fen"]:
        rows.append(["未分配", "", "", rewards["unallocated_fen"], yuan(rewards["unallocated_fen"])])
    return headers, rows


#: a text cell starting with one of these is evaluated by spreadsheets (OWASP, "CSV Injection")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def csv_cell(value):
    """A cell a spreadsheet shows as written: text that would start a formula gets a leading ``'``.

    Numbers, and text that is just a number (``-12.50``), stay numbers.
    """
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER_TEXT.fullmatch(value):
        return "'" + value
    return value


def to_csv(headers: list[str], rows: list[list]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([csv_cell(v) for v in headers])
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def new_workbook():
    """An empty openpyxl workbook. openpyxl is imported here, when a workbook is asked for: importing it
    costs every gunicorn worker some 8 MB, and workbooks are a rare download."""
    from openpyxl import Workbook

    return Workbook()


def to_xlsx(title: str, headers: list[str], rows: list[list]) -> bytes:
    workbook = new_workbook()
    fill_sheet(workbook.active, title, headers, rows)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def fill_sheet(sheet, title: str, headers: list[str], rows: list[list]) -> None:
    """One table on ``sheet``: bold frozen headers, text cells as text, fitted column widths."""
    from openpyxl.styles import Font

    sheet.title = title[:31]
    sheet.append(headers)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append([_xlsx_value(v) for v in row])
    for row in sheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text, even when it starts with "=": never a formula
    sheet.freeze_panes = "A2"
    for column, header in zip(sheet.columns, headers):
        width = max([len(str(header)) * 2] + [len(str(c.value or "")) for c in column])
        sheet.column_dimensions[column[0].column_letter].width = min(60, width + 2)


def _xlsx_value(value):
    """Control characters XML cannot hold are shown as U+FFFD instead of failing the export."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", value) if isinstance(value, str) else value
