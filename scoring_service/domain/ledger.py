"""Funding ledger (SPEC §12): the city's 1:1 subsidy, its 30 % / 50 % / 20 % tranches, holds and refunds.

Pure rules over integer fen (1 yuan = 100 fen): every division is a floor division of non-negative
integers, so no float ever touches money. Dates are :class:`datetime.date` in China time.

A worked example — an approved budget of 1,000,001 fen, non-independent land:

>>> s = subsidy(1_000_001)              # the city's half; the odd fen is the district's
>>> s
500000
>>> cumulative_shares(s, s)             # 30 %, 80 %, 100 % of S
(150000, 400000, 500000)
>>> tranche_amounts((150000, 400000, 500000), {})
[150000, 250000, 100000]

Tranche 1 was paid at 150,000; the budget is then raised to 1,200,000 (S = 600,000): tranche 2
absorbs the difference, and settling lower than the approval turns tranche 3 into a refund.

>>> tranche_amounts(cumulative_shares(600_000, 600_000), {1: 150_000})
[150000, 330000, 120000]
>>> tranche_amounts(cumulative_shares(600_000, final_subsidy(1_200_000, 700_000)), {1: 150_000, 2: 330_000})
[150000, 330000, -130000]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .canonical import digest

LAND_CATEGORIES = ("non_independent", "independent")
LAND_CATEGORY_NAMES = {"non_independent": "原土地非独立操作区", "independent": "独立操作区"}
#: tranche statuses (SPEC §12)
STATUSES = ("paid", "not_due", "held", "due", "not_applicable")
STATUS_NAMES = {"paid": "已拨付", "not_due": "未到拨付节点", "held": "暂缓拨付", "due": "应拨付",
                "not_applicable": "不适用"}
#: why a reached tranche is held
HOLD_REASONS = ("district_match_missing", "acceptance_failed")
HOLD_REASON_NAMES = {"district_match_missing": "区级配套资金未同步到位", "acceptance_failed": "验收未通过"}
#: the fields of a funding record (SPEC §12), in the order of the contract
FUNDING_FIELDS = ("land_category", "approved_budget_fen", "settled_budget_fen", "district_funds_in_place_fen")
#: what a district key may change (the others are the admin's)
DISTRICT_FIELDS = ("district_funds_in_place_fen",)


@dataclass(frozen=True)
class Tranche:
    number: int
    milestone: str
    #: cumulative share of the subsidy paid once this tranche is paid, in percent
    cumulative_pct: int
    name_zh: str


TRANCHES = (
    Tranche(1, "contract_signed", 30, "第一笔（签订施工合同，30%）"),
    Tranche(2, "works_completed", 80, "第二笔（工程竣工，50%）"),
    Tranche(3, "settled", 100, "第三笔（结算审核完成，20%）"),
)
BY_NUMBER = {t.number: t for t in TRANCHES}


# -- the subsidy ------------------------------------------------------------------------

def subsidy(approved_budget_fen: int) -> int:
    """S: the city's half of a 1:1 split of the approved budget; an odd fen is the district's.

    >>> subsidy(101), subsidy(100), subsidy(1), subsidy(0)
    (50, 50, 0, 0)
    """
    return approved_budget_fen // 2


def final_subsidy(approved_budget_fen: int, settled_budget_fen: int) -> int:
    """S_final: half of the lower of the approved and the settled budget (settlement can lower the
    subsidy, never raise it).

    >>> final_subsidy(1_000, 801), final_subsidy(1_000, 5_000)
    (400, 500)
    """
    return min(approved_budget_fen, settled_budget_fen) // 2


def cumulative_shares(s: int, s_final: int) -> tuple[int, int, int]:
    """(cum₁, cum₂, cum₃) = (⌊S × 30 / 100⌋, ⌊S × 80 / 100⌋, S_final).

    >>> cumulative_shares(333, 333)
    (99, 266, 333)
    >>> cumulative_shares(333, 200)
    (99, 266, 200)
    """
    return (s * 30 // 100, s * 80 // 100, s_final)


def tranche_amounts(cumulative: Sequence[int], paid: Mapping[int, int]) -> list[int]:
    """amount_k = cum_k − Σ_{j<k} amount_j, where a paid tranche's amount is the amount paid.

    Tranches 1 and 2 never take money back (a negative difference counts 0 and is recovered at
    settlement); tranche 3 may be negative: money the district owes back. Whatever was paid, the
    amounts add up to cum₃:

    >>> tranche_amounts((300, 800, 1000), {1: 360})
    [360, 440, 200]
    >>> tranche_amounts((30, 80, 100), {1: 300, 2: 100})
    [300, 100, -300]
    >>> tranche_amounts((30, 80, 100), {1: 300})
    [300, 0, -200]
    """
    amounts: list[int] = []
    for k, cum in enumerate(cumulative, start=1):
        if k in paid:
            amount = paid[k]
        else:
            amount = cum - sum(amounts)
            if k < len(cumulative):
                amount = max(0, amount)
        amounts.append(amount)
    return amounts


# -- a community's ledger ---------------------------------------------------------------

@dataclass(frozen=True)
class Funding:
    """The current funding record of a community (SPEC §12)."""

    land_category: str
    approved_budget_fen: int
    settled_budget_fen: int | None
    district_funds_in_place_fen: int

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Funding:
        return cls(*(record.get(name) for name in FUNDING_FIELDS))


@dataclass(frozen=True)
class Payment:
    """A recorded disbursement of one tranche."""

    amount_fen: int
    paid_on: date
    disbursement_id: str | None = None
    voucher: str | None = None


@dataclass(frozen=True)
class TrancheState:
    tranche: int
    milestone: str
    #: None without a funding record; 0 when not applicable
    amount_fen: int | None
    status: str
    reasons: tuple[str, ...] = ()
    payment: Payment | None = None


@dataclass(frozen=True)
class CommunityLedger:
    #: S_final once settled, else S; None without a funding record
    subsidy_fen: int | None
    settled: bool
    tranches: tuple[TrancheState, ...] = field(default_factory=tuple)

    def tranche(self, number: int) -> TrancheState:
        return self.tranches[number - 1]


def is_failing(grade: str | None) -> bool:
    """Acceptance failed for the last tranche: the community's grade is ``fail`` or there is none."""
    return grade is None or grade == "fail"


def community_ledger(funding: Funding | None, reached: Mapping[str, date | None],
                     payments: Mapping[int, Payment], grade: str | None, t: date) -> CommunityLedger:
    """The subsidy and the three tranches of one community at ``t``.

    ``reached``: milestone code → the date it counts as reached (None: not reached); a date after
    ``t`` counts as not reached. ``payments``: tranche → its disbursement; one paid after ``t``
    does not count at ``t``. ``grade``: the community's current grade (None: not graded).

    Status of tranche *k*: ``paid`` when a disbursement counts; ``not_applicable`` on independent
    land; ``not_due`` before its milestone; ``held`` with ``district_match_missing`` when the
    district's funds in place are below cum_k, and for tranche 3 ``acceptance_failed`` when the
    grade is ``fail`` or missing; ``due`` otherwise.

    >>> f = Funding("non_independent", 1_000_001, None, 150_000)
    >>> at = date(2018, 9, 1)
    >>> led = community_ledger(f, {"contract_signed": date(2018, 4, 20), "works_completed": date(2018, 8, 1)},
    ...                        {}, "good", at)
    >>> [(s.amount_fen, s.status, s.reasons) for s in led.tranches]
    [(150000, 'due', ()), (250000, 'held', ('district_match_missing',)), (100000, 'not_due', ())]
    >>> community_ledger(None, {}, {}, None, at).tranche(1)
    TrancheState(tranche=1, milestone='contract_signed', amount_fen=None, status='not_due', reasons=(), payment=None)
    """
    def at_t(day: date | None) -> bool:
        return day is not None and day <= t

    if funding is None:
        return CommunityLedger(None, False, tuple(TrancheState(tr.number, tr.milestone, None, "not_due")
                                                  for tr in TRANCHES))
    counted = {k: p for k, p in payments.items() if at_t(p.paid_on)}
    if funding.land_category == "independent":
        return CommunityLedger(0, False, tuple(
            TrancheState(tr.number, tr.milestone, counted[tr.number].amount_fen, "paid", (), counted[tr.number])
            if tr.number in counted else TrancheState(tr.number, tr.milestone, 0, "not_applicable")
            for tr in TRANCHES))
    s = subsidy(funding.approved_budget_fen)
    settled = at_t(reached.get("settled")) and funding.settled_budget_fen is not None
    s_final = final_subsidy(funding.approved_budget_fen, funding.settled_budget_fen) if settled else s
    cumulative = cumulative_shares(s, s_final)
    amounts = tranche_amounts(cumulative, {k: p.amount_fen for k, p in counted.items()})
    states = []
    for tr, cum, amount in zip(TRANCHES, cumulative, amounts):
        if tr.number in counted:
            states.append(TrancheState(tr.number, tr.milestone, amount, "paid", (), counted[tr.number]))
            continue
        if not at_t(reached.get(tr.milestone)):
            states.append(TrancheState(tr.number, tr.milestone, amount, "not_due"))
            continue
        reasons = []
        if funding.district_funds_in_place_fen < cum:
            reasons.append("district_match_missing")
        if tr.number == 3 and is_failing(grade):
            reasons.append("acceptance_failed")
        states.append(TrancheState(tr.number, tr.milestone, amount, "held" if reasons else "due", tuple(reasons)))
    return CommunityLedger(s_final, settled, tuple(states))


@dataclass
class Totals:
    """The sums of a set of communities (those with a funding record)."""

    subsidy_fen: int = 0
    paid_fen: int = 0
    due_fen: int = 0
    held_fen: int = 0
    refund_due_fen: int = 0

    def add(self, ledger: CommunityLedger) -> None:
        """paid sums paid amounts (a refund received counts negative); due and held sum positive
        amounts with that status; refund_due sums −amount₃ of a negative tranche 3 that is due.

        >>> t = Totals()
        >>> t.add(CommunityLedger(90, True, (TrancheState(1, "contract_signed", 30, "paid"),
        ...                                  TrancheState(2, "works_completed", 80, "held"),
        ...                                  TrancheState(3, "settled", -20, "due"))))
        >>> t
        Totals(subsidy_fen=90, paid_fen=30, due_fen=0, held_fen=80, refund_due_fen=20)
        """
        if ledger.subsidy_fen is None:
            return
        self.subsidy_fen += ledger.subsidy_fen
        for state in ledger.tranches:
            amount = state.amount_fen or 0
            if state.status == "paid":
                self.paid_fen += amount
            elif state.status == "due" and amount > 0:
                self.due_fen += amount
            elif state.status == "held" and amount > 0:
                self.held_fen += amount
            if state.tranche == 3 and state.status == "due" and amount < 0:
                self.refund_due_fen += -amount

    def as_dict(self) -> dict[str, int]:
        return {"subsidy_fen": self.subsidy_fen, "paid_fen": self.paid_fen, "due_fen": self.due_fen,
                "held_fen": self.held_fen, "refund_due_fen": self.refund_due_fen}


# -- the round's money ------------------------------------------------------------------

@dataclass(frozen=True)
class RoundMoney:
    #: the city's budget for the round's subsidies and rewards (None: not set)
    city_budget_fen: int | None
    #: the reserve for rewards (以奖代补): the round's reward pool
    reward_pool_fen: int


def round_money(round_: Mapping[str, Any]) -> RoundMoney:
    """A round's money fields; ``city_budget_fen`` is optional (absent: None)."""
    return RoundMoney(round_.get("city_budget_fen"), int((round_.get("reward") or {}).get("pool_fen", 0)))


def uncommitted(money: RoundMoney, committed_subsidy_fen: int) -> int | None:
    """city budget − committed subsidies − reward pool (None without a city budget).

    >>> uncommitted(RoundMoney(1_000, 100), 950), uncommitted(RoundMoney(None, 100), 950)
    (-50, None)
    """
    if money.city_budget_fen is None:
        return None
    return money.city_budget_fen - committed_subsidy_fen - money.reward_pool_fen


# -- funding records --------------------------------------------------------------------

def funding_hash(record: Mapping[str, Any]) -> str:
    """What makes two funding versions the same record (an identical PUT writes nothing)."""
    return digest({name: record.get(name) for name in FUNDING_FIELDS})


def changed_fields(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The funding fields ``new`` changes (all of them when there is no current record).

    >>> changed_fields({"land_category": "independent", "approved_budget_fen": 5, "settled_budget_fen": None,
    ...                 "district_funds_in_place_fen": 0},
    ...                {"land_category": "independent", "approved_budget_fen": 6, "district_funds_in_place_fen": 9})
    ['approved_budget_fen', 'district_funds_in_place_fen']
    """
    if current is None:
        return list(FUNDING_FIELDS)
    return [name for name in FUNDING_FIELDS if current.get(name) != new.get(name)]


def final_fields(paid_tranches: Sequence[int]) -> tuple[str, ...]:
    """Fields that can no longer change once tranches were paid (paid is final): the land category
    after any payment, and both budgets once tranche 3 settled the account.

    >>> final_fields([]), final_fields([1]), final_fields([1, 2, 3])
    ((), ('land_category',), ('land_category', 'approved_budget_fen', 'settled_budget_fen'))
    """
    if 3 in paid_tranches:
        return ("land_category", "approved_budget_fen", "settled_budget_fen")
    if paid_tranches:
        return ("land_category",)
    return ()


def disbursement_hash(record: Mapping[str, Any]) -> str:
    """What makes two disbursements with one id the same (a replay) rather than a conflict."""
    return digest({name: record.get(name) for name in ("round_id", "community_id", "tranche", "amount_fen",
                                                       "paid_on", "voucher")})


def yuan(fen: int) -> str:
    """Exact yuan with two decimals from integer fen.

    >>> yuan(123456), yuan(-5), yuan(0)
    ('1234.56', '-0.05', '0.00')
    """
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"
