"""Reference data from the city's 2018 notice (SPEC §9)."""

from __future__ import annotations

from ..domain.milestones import DEADLINES_2018

#: (district_id, 中文名, English name, 2018 quota)
SHENYANG_2018_DISTRICTS = (
    ("heping", "和平区", "Heping District", 52),
    ("shenhe", "沈河区", "Shenhe District", 16),
    ("tiexi", "铁西区（含经济技术开发区）", "Tiexi District (incl. Economic and Technological Development Zone)", 7),
    ("huanggu", "皇姑区", "Huanggu District", 19),
    ("dadong", "大东区", "Dadong District", 10),
    ("hunnan", "浑南区", "Hunnan District", 2),
    ("yuhong", "于洪区", "Yuhong District", 2),
    ("shenbei", "沈北新区", "Shenbei New District", 5),
    ("sujiatun", "苏家屯区", "Sujiatun District", 7),
)

SHENYANG_2018_ROUND = {
    "round_id": "shenyang-2018",
    "year": 2018,
    "rubric_id": "shenyang-2018",
    "title": "沈阳市2018年老旧小区改造提质验收测评",
    "opens_at": "2018-09-01T00:00:00+08:00",
    "closes_at": "2018-09-30T23:59:59+08:00",
    # Reward pool reserved from the city's 6.93亿元 (SPEC §9): 3000万元 here.
    "reward": {"pool_fen": 3_000_000_000, "district_share_pct": 40, "top_districts": 3},
    # the city's 6.93亿元 (SPEC §9, §12): its half of the non-independent budgets plus the reward pool
    "city_budget_fen": 69_300_000_000,
    # the notice's deadlines (SPEC §11); district progress from the milestones
    "milestone_deadlines": dict(DEADLINES_2018),
    "progress_rule": "milestones",
    # supervision figures of this past round are read as of the first working day after the
    # acceptance deadline (30 September) and the National Day holiday, when every deadline has
    # passed: not today's date, at which every unrecorded milestone would be years overdue
    "progress_as_of": "2018-10-08",
}

#: the year after: the 2018 renovations evaluated again for lasting management (长效管理, SPEC §15), with
#: the aftercare rubric; quotas default to the covered communities per district. No reward pool: the
#: notice's 以奖代补 rewards the renovation itself.
SHENYANG_2019_AFTERCARE_ROUND = {
    "round_id": "shenyang-2019-aftercare",
    "year": 2019,
    "kind": "aftercare",
    "covers_years": [2018],
    "rubric_id": "shenyang-aftercare",
    "title": "沈阳市2019年老旧小区改造长效管理测评",
    "opens_at": "2019-09-01T00:00:00+08:00",
    "closes_at": "2019-09-30T23:59:59+08:00",
    "reward": {"pool_fen": 0, "district_share_pct": 0, "top_districts": 0},
}
