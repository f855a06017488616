"""The funding ledger (资金台账, SPEC §12) as CSV and XLSX with Chinese headers.

Both take the ledger dict of ``GET /rounds/{r}/ledger`` and optional ``community_names``
{community_id: name}. Money is shown in yuan with two decimals, computed exactly from integer fen:
text such as ``1234.56`` in the CSV, and in the workbook a number written as that exact decimal
(never a binary float on the way) with the format ``#,##0.00``.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from ..domain import ledger as lg
from ..domain.milestones import BY_CODE
from .exports import csv_cell, fill_sheet, new_workbook

TITLE = "老旧小区改造市级补助资金台账"
MONEY_FORMAT = "#,##0.00"
ORDINALS = {1: "第一笔", 2: "第二笔", 3: "第三笔"}


def money(fen: int | None) -> Decimal | str:
    """Yuan with two decimals, exact (empty for null)."""
    return "" if fen is None else Decimal(lg.yuan(fen))


def summary_table(ledger: dict, district_id: str | None = None) -> tuple[list[str], list[list]]:
    """The round's money; with ``district_id`` the totals are that district's (the commitment of the
    city's budget stays city-wide)."""
    totals = ledger["totals"]
    names = {d["district_id"]: d.get("name_zh") for d in ledger["districts"]}
    scope = f"（{names.get(district_id) or district_id}）" if district_id else ""
    rows = [
        ["市级资金预算", money(ledger["city_budget_fen"])],
        ["以奖代补预留资金（奖励资金池）", money(ledger["reward_pool_fen"])],
        ["已承诺市级补贴（全市）", money(ledger["committed_subsidy_fen"])],
        ["未承诺资金", money(ledger["uncommitted_fen"])],
        ["是否超额承诺", "是" if ledger["over_committed"] else "否"],
        [f"市级补贴合计{scope}", money(totals["subsidy_fen"])],
        [f"已拨付{scope}", money(totals["paid_fen"])],
        [f"应拨付{scope}", money(totals["due_fen"])],
        [f"暂缓拨付{scope}", money(totals["held_fen"])],
        [f"应退回{scope}", money(totals["refund_due_fen"])],
    ]
    return ["项目", "金额（元）"], rows


def district_table(ledger: dict) -> tuple[list[str], list[list]]:
    headers = ["区编号", "区名称", "市级补贴（元）", "已拨付（元）", "应拨付（元）", "暂缓拨付（元）", "应退回（元）"]
    rows = [[d["district_id"], d.get("name_zh") or "", money(d["subsidy_fen"]), money(d["paid_fen"]),
             money(d["due_fen"]), money(d["held_fen"]), money(d["refund_due_fen"])] for d in ledger["districts"]]
    return headers, rows


def community_table(ledger: dict, community_names: dict[str, str | None] | None = None) -> tuple[list[str], list[list]]:
    names = community_names or {}
    headers = ["小区编号", "小区名称", "所属区", "土地类别", "批复预算（元）", "结算审定金额（元）",
               "区级资金到位（元）", "市级补贴（元）"]
    for tranche in lg.TRANCHES:
        ordinal = ORDINALS[tranche.number]
        headers += [f"{ordinal}（{BY_CODE[tranche.milestone].name_zh}）金额（元）", f"{ordinal}状态",
                    f"{ordinal}暂缓原因", f"{ordinal}拨付日期"]
    rows = []
    for c in ledger["communities"]:
        row = [c["community_id"], names.get(c["community_id"]) or "", c["district_id"],
               lg.LAND_CATEGORY_NAMES.get(c["land_category"], "") if c["land_category"] else "未登记",
               money(c["approved_budget_fen"]), money(c["settled_budget_fen"]),
               money(c["district_funds_in_place_fen"]), money(c["subsidy_fen"])]
        for t in c["tranches"]:
            row += [money(t["amount_fen"]), lg.STATUS_NAMES[t["status"]],
                    "；".join(lg.HOLD_REASON_NAMES[r] for r in t["reasons"]), t.get("paid_on") or ""]
        rows.append(row)
    return headers, rows


def _caption(ledger: dict, round_title: str | None) -> list[str]:
    return ["测评轮次", round_title or ledger["round_id"], "轮次编号", ledger["round_id"], "统计截至", ledger["as_of"]]


def ledger_csv(ledger: dict, community_names: dict[str, str | None] | None = None,
               round_title: str | None = None, district_id: str | None = None) -> bytes:
    """One CSV (UTF-8 with BOM): a caption, then the summary, district and community tables."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def rows(values: list[list]) -> None:
        writer.writerows([csv_cell(str(v) if isinstance(v, Decimal) else v) for v in row] for row in values)

    rows([[TITLE], _caption(ledger, round_title)])
    if ledger["over_committed"]:
        rows([["警示：市级资金已超额承诺", money(-ledger["uncommitted_fen"])]])
    for caption, (headers, table) in (("一、资金汇总", summary_table(ledger, district_id)),
                                      ("二、各区资金", district_table(ledger)),
                                      ("三、小区拨付明细", community_table(ledger, community_names))):
        rows([[], [caption], headers])
        rows(table)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def ledger_xlsx(ledger: dict, community_names: dict[str, str | None] | None = None,
                round_title: str | None = None, district_id: str | None = None) -> bytes:
    """A workbook with sheets 资金汇总, 各区资金 and 小区拨付明细; money cells are numbers in yuan
    shown with two decimals, text cells are text."""
    workbook = new_workbook()
    fill_sheet(workbook.active, "资金汇总", *summary_table(ledger, district_id))
    fill_sheet(workbook.create_sheet(), "各区资金", *district_table(ledger))
    fill_sheet(workbook.create_sheet(), "小区拨付明细", *community_table(ledger, community_names))
    workbook.properties.title = TITLE
    workbook.properties.subject = f"{round_title or ledger['round_id']} · 统计截至 {ledger['as_of']}"
    for sheet in workbook.worksheets:
        for row in sheet.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, Decimal):
                    cell.number_format = MONEY_FORMAT
        sheet.oddHeader.center.text = f"{TITLE} — {sheet.title}"
        sheet.oddHeader.right.text = f"统计截至 {ledger['as_of']}"
        sheet.page_setup.paperSize = sheet.PAPERSIZE_A4
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
