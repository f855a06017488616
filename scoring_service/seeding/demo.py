"""A realistic demo of the 2018 round (120 communities, two agencies, ~36k survey responses, the works'
milestones) and of the 2019 aftercare round over the same communities (~10k responses, a handful fallen
back: 前治后乱), both made by one generator (:func:`seed_answers`).

Deterministic (fixed seed). Everything goes through the same checks and
store calls as the API, so the demo exercises the real path.
"""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime, timedelta, timezone

import numpy as np

from ..domain import milestones as ms
from ..domain.inspections import prepare_version
from .reference import SHENYANG_2018_DISTRICTS
from ..services.attachments import inspection_refs
from ..services.context import ServiceState
from ..services.keys import Principal
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


def pending_inspection(communities: list[dict]) -> set[str]:
    """A few communities still waiting for the agencies' inspection (their works ran late)."""
    return {c["community_id"] for c in communities[5::29]}


def illegal_structures_found(communities: list[dict]) -> set[str]:
    """Communities whose inspection found illegal structures not removed (a veto)."""
    return {c["community_id"] for c in communities[11::53]}


def _likert(rng: np.random.Generator, quality: float, size: int) -> np.ndarray:
    """Answers 1..5 centred on a community's quality (0–100)."""
    centre = 1 + 4 * (quality - 20) / 80
    return np.clip(np.rint(rng.normal(centre, 0.8, size)), 1, 5).astype(int)


def demo_quality(rng: np.random.Generator, communities: list[dict]) -> dict[str, float]:
    """Each community's quality (0–100) in the 2018 acceptance round: the first draws of its generator."""
    return {c["community_id"]: float(np.clip(rng.normal(81, 8), 45, 99)) for c in communities}


def _share_points(rng: np.random.Generator, top: float, quality: float) -> float:
    """Points of an ordinary check: a share of ``top`` around the quality, in half points."""
    share = np.clip(rng.normal(quality / 100, 0.08), 0, 1)
    return float(np.round(share * top * 2) / 2)


def acceptance_points(vetoed: set[str], defects: dict[str, tuple[str, float]] | None = None):
    """Check points of the 2018 acceptance inspections: illegal structures not removed where
    :func:`illegal_structures_found` says so (a veto), e-bike charging sometimes not applicable.
    Failed checks are those planned (``defects``: community → (check code, share of its points), see
    ``seeding.rectifications``); any other check scores at least its fail limit (SPEC §13), so the
    rectification ledger has a moderate number of items. The draws are the same either way."""
    from .rectifications import half_points_below, lowest_pass

    defects = defects or {}

    def points(rng: np.random.Generator, community_id: str, check: dict, quality: float):
        top = check["max_points"]
        if check.get("critical"):
            return 0 if community_id in vetoed and check["code"] == "illegal_structures.removed" else top
        if check["code"] == "parking.ebike_charging" and rng.random() < 0.15:
            return "na"
        drawn = _share_points(rng, top, quality)
        planned = defects.get(community_id)
        if planned is not None and planned[0] == check["code"]:
            return half_points_below(top, planned[1])
        return max(drawn, lowest_pass(top))
    return points


def acceptance_sample(rng: np.random.Generator, community: dict) -> tuple[int, int]:
    """Resident and public answers of the 2018 round: most communities hear from half or more of their
    households, about one in eight from too few (insufficient_sample) or from nearly all."""
    share = rng.uniform(0.04, 1.0) if rng.random() < 0.12 else rng.uniform(0.45, 0.8)
    return int(max(3, round(community["households"] * share))), int(rng.integers(0, 12))


def seed_demo(s: ServiceState, round_: dict, rubric, communities: list[dict], seed: int = 2018) -> dict:
    """Inspections and responses for every community of the 2018 round."""
    from .rectifications import defect_plan, inspection_photos

    rng = np.random.default_rng(seed)
    for agency_id, name in AGENCIES:
        s.store.put_agency({"agency_id": agency_id, "name": name})
    points = acceptance_points(illegal_structures_found(communities), defect_plan(communities, seed))
    return seed_answers(s, round_, rubric, communities, rng, demo_quality(rng, communities),
                        start=datetime(2018, 9, 3, 9, 0, tzinfo=CST), pending=pending_inspection(communities),
                        points=points, sample=acceptance_sample,
                        evidence=inspection_photos(s, rubric, communities))


def seed_answers(s: ServiceState, round_: dict, rubric, communities: list[dict], rng: np.random.Generator,
                 quality: dict, *, start: datetime, points, sample, pending: set[str] = frozenset(),
                 prefix: str = "", stage: str | None = None, evidence=None) -> dict:
    """The agencies' inspections and the residents' and public's answers of every community of a round,
    made around each community's quality and stored through the checks the API uses.

    ``quality``: community_id → a quality 0–100, or an array of one per rubric item plus one for the
    overall answer. ``points(rng, community_id, check, quality)`` scores a check, ``sample(rng, community)``
    says how many resident and public answers; communities in ``pending`` are not inspected yet.
    Inspections happen in the 20 days from ``start``, answers in its 25 days; ids are uuid5 names of
    ``prefix`` and the community (the 2018 round's without a prefix), ``stage`` the inspections' stage.
    ``evidence(community_id, agency_id, checks, inspected_at)``, when given, returns an inspection's
    check_evidence (photos it uploaded; it draws nothing from ``rng``).
    """
    store = s.store
    ctx = RoundContext(round=round_, rubric=rubric, load_community=store.get_community,
                       secret_key=s.secret_key, future_tolerance=timedelta(minutes=10))
    counts = {"inspections": 0, "responses": 0}
    n_items = len(rubric.item_codes)

    for community in communities:
        cid = community["community_id"]
        q = quality[cid]
        item_quality = (lambda k: q) if np.isscalar(q) else (lambda k: float(q[k]))
        for a, (agency_id, _) in enumerate(AGENCIES):
            if cid in pending or (a == 1 and rng.random() < 0.3):
                continue
            checks = {}
            for k, item in enumerate(rubric.items):
                if not rubric.applies(item, community):
                    continue
                for check in item["checks"]:
                    checks[check["code"]] = points(rng, cid, check, item_quality(k))
            data = {
                "inspection_id": uuid.uuid5(NS, f"{prefix}{cid}/{agency_id}"),
                "community_id": cid,
                "inspector": ("王建国", "李淑华", "张志强", "刘晓东")[int(rng.integers(0, 4))],
                "inspected_at": start + timedelta(days=int(rng.integers(0, 20)), hours=int(rng.integers(0, 8))),
                "checks": checks,
                "notes": "现场检查，资料齐全。",
                "evidence": [],
            }
            if stage is not None:
                data["stage"] = stage
            photos = evidence(cid, agency_id, checks, data["inspected_at"]) if evidence is not None else {}
            if photos:
                data["check_evidence"] = photos
            version = prepare_version(data, ctx, agency_id, key_id="seed")
            store.add_inspection({"inspection_id": version["inspection_id"], "round_id": round_["round_id"],
                                  "community_id": cid, "agency_id": agency_id, "versions": [version]})
            if photos:  # the district and the agency read them (as the API's inspection write grants)
                store.add_attachment_refs(inspection_refs(round_["round_id"], version["inspection_id"], community,
                                                          agency_id, [h for hs in photos.values() for h in hs]))
            counts["inspections"] += 1

        n_res, n_pub = sample(rng, community)
        records = []
        for r in range(n_res + n_pub):
            public = r >= n_res
            levels = _likert(rng, q, n_items + 1)
            answers = {}
            for k, item in enumerate(rubric.items):
                if rubric.applies(item, community) and rng.random() > 0.05:
                    answers[item["code"]] = int(levels[k])
            data = {
                "response_id": uuid.uuid5(NS, f"{prefix}{cid}/response/{r}"),
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


# -- milestones (SPEC §11) -----------------------------------------------------------

#: the district that falls behind in the demo: enough of its communities have an overdue milestone at
#: the round's as-of date to trip the ``overdue_milestones`` warning (警示督办)
SLOW_DISTRICT = "sujiatun"
SEED_PRINCIPAL = Principal(key_id="seed", role="admin", name="演示数据")


def _day(rng: np.random.Generator, first: date, last: date) -> date:
    """A day between ``first`` and ``last``, both included."""
    return first + timedelta(days=int(rng.integers(0, (last - first).days + 1)))


def _after(rng: np.random.Generator, earliest: date, low: int, high: int) -> date:
    return earliest + timedelta(days=int(rng.integers(low, high + 1)))


def _votes(rng: np.random.Generator, households: int, passing: bool = True) -> dict:
    """A residents' vote on the renovation plan. A passing one: at least two thirds take part and a
    majority of them approve; a failing one: fewer than two thirds take part."""
    eligible = households
    if passing:
        participants = max(-(-2 * eligible // 3), int(eligible * rng.uniform(0.70, 0.95)))
        in_favour = max(participants // 2 + 1, int(participants * rng.uniform(0.78, 0.97)))
    else:
        participants = int(eligible * rng.uniform(0.50, 0.62))
        in_favour = int(participants * rng.uniform(0.70, 0.90))
    return {"eligible_households": eligible, "participants": participants, "in_favour": in_favour}


def _management_mode(rng: np.random.Generator, community: dict) -> str:
    small = community["households"] < 200
    return "self_managed" if rng.random() < (0.6 if small else 0.15) else "property_company"


def milestone_plan(communities: list[dict], as_of: date, warning_share: float = 0.2,
                   seed: int = 2018) -> list[tuple[str, str, dict]]:
    """The demo's milestone records, (community_id, code, body) in the order they are recorded, with the
    body as the API takes it (``reached_on`` a date) and later corrections carrying ``changed_reason``.

    Most communities keep the notice's timeline (方案审定、居民表决、拆违、签约 by 30 April; works from
    April, completed by 31 August; acceptance and management by 30 September). About a fifth run late on
    one step. The communities still waiting for inspection ran behind: their works finished late or not at
    all, and one of them failed its residents' vote (fewer than two thirds took part). Those whose
    inspection found illegal structures are not accepted, except one in :data:`SLOW_DISTRICT` that the
    district recorded as accepted anyway (accepted_but_failing). :data:`SLOW_DISTRICT` also has enough
    overdue communities at ``as_of`` to be warned. Late dates fall on or before ``as_of``.
    """
    rng = np.random.default_rng([seed, 11])
    waiting = sorted(pending_inspection(communities))
    found = illegal_structures_found(communities)
    failed_vote = waiting[-1]
    not_completed = waiting[1] if len(waiting) > 1 else None
    slow = [c["community_id"] for c in communities
            if c["district_id"] == SLOW_DISTRICT and c["community_id"] not in found | set(waiting)]
    quota = sum(c["district_id"] == SLOW_DISTRICT for c in communities)
    needed = max(1, math.ceil(warning_share * quota))
    slow_overdue = [slow[i] for i in sorted(rng.choice(len(slow), size=min(needed, len(slow)), replace=False))]
    # late acceptance and management fall in the first days of October, seen at as_of
    late_by = min(as_of, date(2018, 10, 8))
    late_kinds = ["plan", "contract", "cleared", "completed"]
    if late_by >= date(2018, 10, 1):
        late_kinds += ["accepted", "management"]
    plan: list[tuple[str, str, dict]] = []
    corrections: list[tuple[str, str, dict]] = []
    corrected, switched = 0, False

    for community in communities:
        cid = community["community_id"]
        dates: dict[str, date] = {}
        notes: dict[str, str] = {}
        late = str(rng.choice(late_kinds)) if rng.random() < 0.22 else None
        dates["plan_approved"] = (_day(rng, date(2018, 5, 2), date(2018, 5, 10)) if late == "plan"
                                  else _day(rng, date(2018, 3, 5), date(2018, 4, 18)))
        dates["residents_voted"] = _after(rng, dates["plan_approved"], 2, 9)
        dates["illegal_structures_cleared"] = (_day(rng, date(2018, 5, 2), date(2018, 5, 20)) if late == "cleared"
                                               else _day(rng, date(2018, 3, 15), date(2018, 4, 27)))
        signed_after = max(dates["plan_approved"], dates["residents_voted"])
        dates["contract_signed"] = (max(_day(rng, date(2018, 5, 3), date(2018, 5, 25)), signed_after)
                                    if late == "contract" else _after(rng, signed_after, 1, 3))
        # works from April (先拆违后改造: after the clearing and the contract)
        dates["works_started"] = _after(rng, max(dates["contract_signed"], dates["illegal_structures_cleared"],
                                                 date(2018, 3, 31)), 1, 12)
        dates["works_completed"] = (_day(rng, date(2018, 9, 3), date(2018, 9, 18)) if late == "completed"
                                    else _day(rng, date(2018, 6, 20), date(2018, 8, 28)))
        dates["accepted"] = (_day(rng, date(2018, 10, 1), late_by) if late == "accepted"
                             else _day(rng, date(2018, 9, 24), date(2018, 9, 30)))
        dates["management_assigned"] = (_day(rng, date(2018, 10, 1), late_by) if late == "management"
                                        else _day(rng, date(2018, 9, 10), date(2018, 9, 30)))
        if rng.random() < 0.35:
            dates["settled"] = _day(rng, date(2018, 11, 5), date(2018, 12, 28))
        votes = _votes(rng, community["households"])
        mode = _management_mode(rng, community)

        if cid == failed_vote:
            # the vote failed: the works could not be contracted, nothing after it happened
            votes = _votes(rng, community["households"], passing=False)
            notes["residents_voted"] = "参与表决户数不足三分之二，表决未通过，需重新公示后组织表决"
            dates = {code: dates[code] for code in ("plan_approved", "residents_voted", "illegal_structures_cleared")}
        elif cid == not_completed:
            dates["contract_signed"] = _day(rng, date(2018, 5, 21), date(2018, 5, 30))
            dates["works_started"] = _after(rng, max(dates["contract_signed"], dates["illegal_structures_cleared"]),
                                            10, 20)
            notes["works_started"] = "施工合同签订滞后，开工推迟"
            dates = {code: d for code, d in dates.items() if code in ms.CODES[:5]}
        elif cid in waiting:
            # completed late, not yet accepted (the agencies have not inspected it)
            dates["works_completed"] = _day(rng, date(2018, 9, 10), date(2018, 9, 20))
            for code in ("accepted", "settled"):
                dates.pop(code, None)
        elif cid in found:
            dates.pop("settled", None)
            if community["district_id"] != SLOW_DISTRICT:
                dates.pop("accepted")  # the inspection found illegal structures: not accepted
            else:
                dates["accepted"] = date(2018, 9, 28)
                notes["accepted"] = "区政府组织验收通过"
        elif cid in slow_overdue[:1]:
            dates.pop("management_assigned")  # no property company found yet (后续管理未落实)
        elif cid in slow_overdue:
            dates["works_completed"] = _day(rng, date(2018, 9, 14), date(2018, 9, 21))
            dates.pop("accepted")  # completed late, acceptance not yet organised
        if "accepted" not in dates or "management_assigned" not in dates:
            dates.pop("settled", None)

        for code in ms.CODES:
            if code not in dates:
                continue
            body: dict = {"reached_on": dates[code]}
            if notes.get(code):
                body["note"] = notes[code]
            if code == "residents_voted":
                body["votes"] = votes
            if code == "management_assigned":
                body["management_mode"] = mode
            ordinary = late is None and cid not in waiting + slow_overdue and cid not in found
            if code == "works_completed" and ordinary and corrected < 2 and rng.random() < 0.1:
                # entered wrongly at first, corrected later from the completion record
                corrected += 1
                plan.append((cid, code, {**body, "reached_on": _after(rng, dates[code], 3, 6)}))
                corrections.append((cid, code, {**body, "changed_reason": "按竣工验收备案表更正竣工日期"}))
                continue
            if code == "management_assigned" and ordinary and mode == "property_company" and not switched \
                    and community["households"] < 400:
                # self-managed at first, then the owners chose a property company
                switched = True
                first = {**body, "reached_on": _after(rng, dates[code], -12, -6), "management_mode": "self_managed"}
                plan.append((cid, code, first))
                corrections.append((cid, code, {**body, "note": "业主大会决定选聘物业服务企业",
                                                "changed_reason": "管理方式由自治管理改为物业管理"}))
                continue
            plan.append((cid, code, body))
    return plan + corrections


def seed_milestones(s: ServiceState, round_id: str, communities: list[dict], seed: int = 2018) -> dict:
    """Record the demo's milestones (:func:`milestone_plan`) through the service the API uses, so every
    rule holds (order, votes, management mode, no future date). Replays write nothing."""
    from ..services.milestones import record_milestone
    from ..services.rounds import get_round

    settings = ms.round_settings(get_round(s, round_id))
    as_of = settings.progress_as_of or date(2018, 10, 8)
    counts = {"created": 0, "duplicate": 0}
    for community_id, code, body in milestone_plan(communities, as_of, settings.warning_share, seed):
        outcome, _ = record_milestone(s, round_id, community_id, code, body, SEED_PRINCIPAL)
        counts[outcome.value] = counts.get(outcome.value, 0) + 1
    return counts


# -- the 2019 aftercare round (SPEC §15) -----------------------------------------------------

#: communities picked at random to fall back (前治后乱), beside those whose management was never assigned
BACKSLIDERS = 5


def aftercare_plan(communities: list[dict], scored: set[str], unmanaged: set[str], rubric,
                   seed: int = 2019) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """Each community's quality a year after acceptance, per item of the aftercare rubric plus one for the
    overall answer, and the communities that fall back with the two compared items that fall most.

    Most communities are kept up about as well as they were accepted (their 2018 quality, a point or two
    either way). Those with a composite in 2018 (``scored``) and no 后续管理落实 (``unmanaged``) fall
    back, and :data:`BACKSLIDERS` more picked at random: two of the items that continue 2018 items
    (``compares_to``) lose about 40 points, every other item about 12. Wherever management was never
    assigned, the management item is about 30 points lower.
    """
    rng = np.random.default_rng([seed, 15])
    base = demo_quality(np.random.default_rng(2018), communities)  # the 2018 round's qualities
    codes = rubric.item_codes
    compared = [i["code"] for i in rubric.items if i.get("compares_to")]
    weights = rubric.weights / rubric.weights.sum()
    communities = sorted(communities, key=lambda c: c["community_id"])  # the same plan in any order
    falling = sorted(c for c in unmanaged if c in scored)
    candidates = [c["community_id"] for c in communities if c["community_id"] in scored - unmanaged]
    falling += [candidates[i] for i in sorted(rng.choice(len(candidates), size=BACKSLIDERS, replace=False))]
    quality, fell = {}, {}
    for community in communities:
        cid = community["community_id"]
        items = np.full(len(codes), base[cid] + float(np.clip(rng.normal(0.5, 1.5), -2.5, 3.5)))
        if cid in unmanaged and "management" in codes:
            items[codes.index("management")] -= 30
        if cid in falling:
            worst = tuple(str(code) for code in rng.choice(compared, size=2, replace=False))
            items -= [rng.uniform(36, 44) if code in worst else rng.uniform(10, 14) for code in codes]
            fell[cid] = worst
        items = np.clip(items, 5, 99)
        quality[cid] = np.append(items, float(weights @ items))  # the overall answer follows the items
    return quality, fell


def aftercare_points(rng: np.random.Generator, community_id: str, check: dict, quality: float):
    """Check points of an aftercare inspection: safety checks kept, the rest around the item's quality."""
    return check["max_points"] if check.get("critical") else _share_points(rng, check["max_points"], quality)


def aftercare_sample(rng: np.random.Generator, community: dict) -> tuple[int, int]:
    """Resident and public answers of the aftercare round: 12–22 % of households, enough for the sample rule."""
    return int(max(10, round(community["households"] * rng.uniform(0.12, 0.22)))), int(rng.integers(0, 6))


def unmanaged_communities(s: ServiceState, round_id: str, communities: list[dict]) -> set[str]:
    """The communities without a reached 后续管理落实 (management_assigned) in the round."""
    managed = {m["community_id"] for m in s.store.current_milestones(round_id)
               if m["code"] == "management_assigned" and ms.effective_reach(m) is not None}
    return {c["community_id"] for c in communities} - managed


def seed_aftercare(s: ServiceState, round_: dict, rubric, acceptance_round_id: str, communities: list[dict],
                   seed: int = 2019) -> dict:
    """Aftercare-stage inspections and answers of the 2019 aftercare round (:func:`aftercare_plan`), made
    by :func:`seed_answers` in September 2019; the communities with a composite come from the published
    acceptance round."""
    from ..services.results import round_results

    scores = round_results(s, acceptance_round_id).scores
    scored = {cid for cid, breakdown in scores.items() if breakdown["composite"] is not None}
    quality, _ = aftercare_plan(communities, scored, unmanaged_communities(s, acceptance_round_id, communities),
                                rubric, seed)
    return seed_answers(s, round_, rubric, communities, np.random.default_rng([seed, 16]), quality,
                        start=datetime(2019, 9, 2, 9, 0, tzinfo=CST), points=aftercare_points,
                        sample=aftercare_sample, prefix=f"{round_['round_id']}/", stage="aftercare")
