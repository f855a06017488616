"""A realistic demo of the 2018 round: 120 communities, two agencies, ~36k survey responses.

Deterministic (fixed seed). Everything goes through the same checks and
store calls as the API, so the demo exercises the real path.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np

from ..domain.inspections import prepare_version
from .reference import SHENYANG_2018_DISTRICTS
from ..services.context import ServiceState
from ..domain.surveys import RoundContext, prepare_response
from ..domain.timeutil import to_stored

CST = timezone(timedelta(hours=8))
NAME_HEADS = ("南湖", "北陵", "太原", "三好", "西塔", "长白", "砂山", "五里河", "万柳", "文化", "新华", "青年",
              "滑翔", "保工", "兴华", "重工", "黄河", "昆山", "珠江", "辽河", "泰山", "华山", "长江", "鸭绿江",
              "东陵", "望花", "二台子", "小河沿", "大什字", "小北", "光荣", "团结", "和睦", "幸福", "安乐",
              "惠工", "北市", "南塔", "八一", "五爱")
NAME_TAILS = ("小区", "花园", "里", "家园", "新村", "社区")
AGENCIES = (("liaoning-qa", "辽宁建设工程质量检测中心"), ("shenyang-survey", "沈阳城市规划设计研究院测评中心"))
NS = uuid.UUID("6f1d2b8e-3c43-4c7b-9a51-2f0b0d0d2018")


def demo_communities(rng: np.random.Generator) -> list[dict]:
    communities = []
    used: set[str] = set()
    for district_id, name_zh, _, quota in SHENYANG_2018_DISTRICTS:
        for n in range(1, quota + 1):
            while True:
                name = f"{rng.choice(NAME_HEADS)}{rng.choice(NAME_TAILS)}"
                if name not in used:
                    break
                name = f"{name}{rng.integers(1, 9)}期"
                if name not in used:
                    break
            used.add(name)
            households = int(np.clip(rng.lognormal(np.log(420), 0.6), 60, 2400))
            built = int(rng.integers(1978, 2000))
            communities.append({
                "community_id": f"{district_id}-{n:03d}",
                "name_zh": name,
                "district_id": district_id,
                "households": households,
                "renovation_year": 2018,
                "has_elevator": bool(rng.random() < 0.25),
                "heating_retrofit": bool(rng.random() < 0.7),
                "address": f"沈阳市{name_zh}{name}",
                "built_year": built,
            })
    return communities


def _likert(rng: np.random.Generator, quality: float, size: int) -> np.ndarray:
    """Answers 1..5 centred on a community's quality (0–100)."""
    centre = 1 + 4 * (quality - 20) / 80
    return np.clip(np.rint(rng.normal(centre, 0.8, size)), 1, 5).astype(int)


def seed_demo(s: ServiceState, round_: dict, rubric, communities: list[dict], seed: int = 2018) -> dict:
    """Inspections and responses for every community of the round."""
    rng = np.random.default_rng(seed)
    store = s.store
    for agency_id, name in AGENCIES:
        store.put_agency({"agency_id": agency_id, "name": name})
    ctx = RoundContext(round=round_, rubric=rubric, load_community=store.get_community,
                       secret_key=s.secret_key, future_tolerance=timedelta(minutes=10))
    start = datetime(2018, 9, 3, 9, 0, tzinfo=CST)
    quality = {c["community_id"]: float(np.clip(rng.normal(81, 8), 45, 99)) for c in communities}
    pending = {c["community_id"] for c in communities[5::29]}  # a few still waiting for inspection
    vetoed = {c["community_id"] for c in communities[11::53]}  # illegal structures not removed
    counts = {"inspections": 0, "responses": 0}
    n_items = len(rubric.item_codes)

    for community in communities:
        cid = community["community_id"]
        q = quality[cid]
        for a, (agency_id, _) in enumerate(AGENCIES):
            if cid in pending or (a == 1 and rng.random() < 0.3):
                continue
            checks = {}
            for item in rubric.items:
                if not rubric.applies(item, community):
                    continue
                for check in item["checks"]:
                    top = check["max_points"]
                    if check.get("critical"):
                        ok = not (cid in vetoed and check["code"] == "illegal_structures.removed")
                        checks[check["code"]] = top if ok else 0
                    elif check["code"] == "parking.ebike_charging" and rng.random() < 0.15:
                        checks[check["code"]] = "na"
                    else:
                        share = np.clip(rng.normal(q / 100, 0.08), 0, 1)
                        checks[check["code"]] = float(np.round(share * top * 2) / 2)
            data = {
                "inspection_id": uuid.uuid5(NS, f"{cid}/{agency_id}"),
                "community_id": cid,
                "inspector": ("王建国", "李淑华", "张志强", "刘晓东")[int(rng.integers(0, 4))],
                "inspected_at": start + timedelta(days=int(rng.integers(0, 20)), hours=int(rng.integers(0, 8))),
                "checks": checks,
                "notes": "现场检查，资料齐全。",
                "evidence": [],
            }
            version = prepare_version(data, ctx, agency_id, key_id="seed")
            store.add_inspection({"inspection_id": version["inspection_id"], "round_id": round_["round_id"],
                                  "community_id": cid, "agency_id": agency_id, "versions": [version]})
            counts["inspections"] += 1

        # Residents answer at ~50–90 % of households' tenth… most communities meet the sample rule.
        share = rng.uniform(0.04, 1.0) if rng.random() < 0.12 else rng.uniform(0.45, 0.8)
        n_res = int(max(3, round(community["households"] * share)))
        n_pub = int(rng.integers(0, 12))
        records = []
        for r in range(n_res + n_pub):
            public = r >= n_res
            levels = _likert(rng, q, n_items + 1)
            answers = {}
            for k, item in enumerate(rubric.items):
                if rubric.applies(item, community) and rng.random() > 0.05:
                    answers[item["code"]] = int(levels[k])
            data = {
                "response_id": uuid.uuid5(NS, f"{cid}/response/{r}"),
                "community_id": cid,
                "respondent_type": "public" if public else "resident",
                "channel": "online" if public else ("kiosk", "paper", "door_to_door")[int(rng.integers(0, 3))],
                "household_ref": None if public or rng.random() < 0.3 else f"{rng.integers(1, 40)}-{r}",
                "submitted_at": start + timedelta(days=int(rng.integers(0, 25)), minutes=int(rng.integers(0, 600))),
                "answers": answers,
                "overall": int(levels[-1]),
                "comment": None,
            }
            record = prepare_response(data, ctx, key_id="seed")
            # as if uploaded when answered: anomaly flags go by the receive time (SPEC §14), and a
            # whole demo received in one second would be one burst
            record["received_at"] = to_stored(data["submitted_at"] + timedelta(seconds=5))
            records.append(record)
        for i in range(0, len(records), 1000):
            outcomes = store.add_responses(round_["round_id"], records[i:i + 1000], n_items)
            counts["responses"] += sum(o.value == "created" for o in outcomes)
    return counts
