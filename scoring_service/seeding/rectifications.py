"""The demo round's rectification items (整改台账, SPEC §13; issue 15 item 6).

The agencies' acceptance inspections of the 2018 demo find a moderate number of defects: about one
community in eight has one ordinary check below the fail limit (:func:`defect_plan`) in every
inspection made of it (both inspectors saw it), and the communities whose illegal structures were not
removed fail that critical check (the veto). Every other check the demo draws scores at least the fail
limit (``demo.acceptance_points``). Each failing check carries the inspector's photo (整改前).

Then, before the round's as-of date (8 October 2018), the districts answer with photos of the fix
(整改后) and the agencies re-inspect by amending their inspections (复验), which verifies the items —
except: one answer the re-inspection finds still short (reopened), one answer still waiting for its
re-inspection (submitted), one defect nobody has answered (open), and the vetoed communities' illegal
structures, still standing. Those are overdue at the as-of date (every item opened by 22 September is due
by 7 October), and warn their districts (rectifications_overdue).

Photos are small JPEGs drawn by Pillow at seed time (the community's name, the check and 整改前 / 整改后 /
复验 when a Chinese font is found, else shapes alone), stored through the attachment path the API uses.
Everything goes through the services the API uses (upload, response, amendment), so every rule holds.
Deterministic: the same seed gives the same plan, photos and records, and replays add nothing.
"""

from __future__ import annotations

import hashlib
import io
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from fractions import Fraction
from functools import lru_cache

import numpy as np
from PIL import ExifTags, Image, ImageDraw, ImageFont

from ..domain import rectification as rx
from ..services import attachments
from ..services.context import ServiceState
from ..services.keys import Principal
from .demo import AGENCIES, CST, illegal_structures_found, pending_inspection

NS = uuid.UUID("0c3e6a1d-5b7f-4e29-8d14-6a2f9b3c2018")
#: the round's as-of date (SPEC §11): everything of the story happens on or before it
AS_OF = date(2018, 10, 8)
#: share of the inspected communities (veto aside) with a planned defect
DEFECT_SHARE = 0.13
#: the ordinary checks a planned defect fails: what the inspector found, what the district did
DEFECTS = {
    "roads.surface": ("路面多处坑洼破损", "破损路面已铣刨，重新摊铺沥青"),
    "roads.curbs": ("边石松动、方砖缺失", "边石已重新砌筑，缺失方砖已补铺"),
    "water.drainage": ("雨后庭院积水，雨水口堵塞", "已疏通雨水管道，增设两处雨水口"),
    "lighting.stairwell": ("部分单元楼道灯不亮", "已更换声控节能灯具"),
    "lighting.yard": ("庭院照明存在盲区", "已增设三盏庭院灯"),
    "greenery.maintained": ("绿地黄土裸露", "已补植草坪并安排养护"),
    "wiring.no_flying_wires": ("楼间仍有私拉飞线", "飞线已拆除，线路入盒规整"),
    "parking.bays": ("车位标线缺失，停放无序", "已重新施划车位标线"),
    "facilities.refuse_rooms": ("垃圾箱破损，未密闭", "已更换密闭式垃圾箱"),
    "facilities.fitness": ("健身器材未安装到位", "健身器材和休闲座椅已安装"),
    "cleanliness.public_areas": ("楼道内堆放杂物", "楼道杂物已全部清理"),
    "cleanliness.repainted": ("部分楼道墙面未粉刷", "楼道墙面已粉刷完毕"),
}
VETO_CHECK = "illegal_structures.removed"
VETO_FINDING = "私搭乱建未拆除"
#: photo colours of what they show
COLOURS = {"整改前": (178, 84, 62), "整改后": (64, 140, 92), "复验": (58, 104, 166)}
PHOTO_SIZE = (480, 360)


def seed_principal(role: str, ref: str) -> Principal:
    """The key a demo record is made with: an agency's or a district's."""
    if role == "agency":
        return Principal(key_id=f"seed-{ref}", role="agency", name="演示数据（测评机构）", agency_id=ref)
    return Principal(key_id=f"seed-{ref}", role="district", name="演示数据（区级）", district_id=ref)


def defect_plan(communities: list[dict], seed: int = 2018) -> dict[str, tuple[str, float]]:
    """The planned defects: community → (check code, share of the check's points it scores, below the
    fail limit). About :data:`DEFECT_SHARE` of the communities inspected without a veto, one check each.

    >>> from .demo import demo_communities
    >>> plan = defect_plan(demo_communities(np.random.default_rng(2018)))
    >>> 12 <= len(plan) <= 18 and all(code in DEFECTS and share < 0.6 for code, share in plan.values())
    True
    """
    rng = np.random.default_rng([seed, 17])
    skipped = pending_inspection(communities) | illegal_structures_found(communities)
    eligible = sorted(c["community_id"] for c in communities if c["community_id"] not in skipped)
    if not eligible:
        return {}
    n = max(1, round(DEFECT_SHARE * len(eligible)))
    chosen = sorted(str(c) for c in rng.choice(eligible, size=min(n, len(eligible)), replace=False))
    codes = sorted(DEFECTS)
    return {cid: (codes[int(rng.integers(len(codes)))], float(rng.uniform(0.2, 0.45))) for cid in chosen}


def half_points_below(top: float, share: float) -> float:
    """``share`` of ``top`` in half points, rounded down."""
    return math.floor(Fraction(str(share)) * Fraction(str(top)) * 2) / 2


def lowest_pass(top: float, threshold: float = rx.DEFAULT_THRESHOLD) -> float:
    """The lowest half point that does not fail a check of ``top`` points (exactly the limit is no fail)."""
    return math.ceil(Fraction(str(threshold)) * Fraction(str(top)) * 2) / 2


def highest_fail(top: float, threshold: float = rx.DEFAULT_THRESHOLD) -> float:
    """The highest half point that still fails a check of ``top`` points."""
    return lowest_pass(top, threshold) - 0.5


# -- photos ------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _font_path() -> str | None:
    from ..reports.supervision import PdfFontError, find_font

    try:
        return find_font()
    except PdfFontError:
        return None


@lru_cache(maxsize=4)
def _font(size: int):
    path = _font_path()
    return ImageFont.truetype(path, size) if path else None


def photo(kind: str, lines: tuple[str, ...], taken: datetime) -> bytes:
    """A small JPEG of a scene (buildings on the ground, placed by the text's hash) in the colour of
    ``kind`` (整改前, 整改后, 复验), captioned with ``kind`` and ``lines`` when a Chinese font is found (else
    a mark: a cross before, a tick after), with ``taken`` as its EXIF capture time (China time)."""
    width, height = PHOTO_SIZE
    h = hashlib.sha256("\n".join((kind, *lines, taken.isoformat())).encode()).digest()
    base = COLOURS[kind]
    image = Image.new("RGB", PHOTO_SIZE, tuple(min(255, c + 60) for c in base))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, int(height * 0.62), width, height), fill=tuple(max(0, c - 40) for c in base))  # ground
    for k in range(3):  # buildings
        left = 20 + k * 150 + h[k] % 40
        top = 60 + h[k + 3] % 90
        draw.rectangle((left, top, left + 90 + h[k + 6] % 30, int(height * 0.62)), fill=(236, 228, 214),
                       outline=(90, 90, 90), width=2)
        for row in range(top + 14, int(height * 0.62) - 20, 26):
            for col in range(left + 12, left + 80, 24):
                draw.rectangle((col, row, col + 12, row + 12), fill=(120, 150, 180))
    font, small = _font(28), _font(18)
    if font is not None:
        draw.rectangle((0, height - 104, width, height), fill=(0, 0, 0))
        draw.text((16, height - 98), kind, font=font, fill=(255, 230, 120))
        draw.text((110, height - 92), taken.strftime("%Y-%m-%d"), font=small, fill=(255, 255, 255))
        for k, line in enumerate(lines[:2]):
            draw.text((16, height - 60 + 26 * k), line, font=small, fill=(255, 255, 255))
    elif kind == "整改前":
        draw.line((width - 90, 20, width - 30, 80), fill=(200, 0, 0), width=10)
        draw.line((width - 90, 80, width - 30, 20), fill=(200, 0, 0), width=10)
    else:
        draw.line((width - 95, 50, width - 70, 78, width - 25, 18), fill=(0, 160, 0), width=10)
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif).update({ExifTags.Base.DateTimeOriginal: taken.strftime("%Y:%m:%d %H:%M:%S"),
                                            ExifTags.Base.OffsetTimeOriginal: "+08:00"})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80, exif=exif)
    return out.getvalue()


def upload_photo(s: ServiceState, principal: Principal, kind: str, lines: tuple[str, ...], taken: datetime) -> str:
    """Draw and store a photo through the upload path the API uses; its SHA-256."""
    _, view = attachments.upload(s, photo(kind, lines, taken), "image/jpeg", principal)
    return view["sha256"]


def inspection_photos(s: ServiceState, rubric, communities: list[dict]) -> Callable[..., dict]:
    """The check_evidence of a demo inspection: the inspector's photo (整改前) of every check that fails,
    uploaded as the agency (``seed_answers``'s ``evidence``)."""
    names = {c["community_id"]: c["name_zh"] for c in communities}
    agency_names = dict(AGENCIES)
    rule = rx.FailRule(rubric, rx.DEFAULT_THRESHOLD)

    def evidence(community_id: str, agency_id: str, checks: Mapping, inspected_at: datetime) -> dict:
        photos = {}
        for code, value in sorted(checks.items()):
            if rule.fails(code, value):
                finding = DEFECTS[code][0] if code in DEFECTS else VETO_FINDING if code == VETO_CHECK else \
                    rubric.checks[code].get("text_zh") or code
                lines = (f"{names.get(community_id, community_id)}　{finding}", agency_names.get(agency_id, agency_id))
                photos[code] = [upload_photo(s, seed_principal("agency", agency_id), "整改前", lines, inspected_at)]
        return photos

    return evidence


# -- the districts' answers and the re-inspections ---------------------------------------------

def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, 0, tzinfo=CST)


def story_plan(items: list[dict], communities: list[dict], seed: int = 2018) -> dict[str, str]:
    """What happens to each planned defect's community by the as-of date: ``verified`` (answered and
    re-inspected), ``reopened`` (answered, the re-inspection still fails it), ``submitted`` (answered, not
    re-inspected yet) or ``open`` (not answered). The reopened and the submitted one are communities with
    one inspection (so one item); the vetoed communities (not planned) stay open."""
    defects = defect_plan(communities, seed)
    by_community: dict[str, int] = {}
    for item in items:
        by_community[item["community_id"]] = by_community.get(item["community_id"], 0) + 1
    planned = sorted(c for c in by_community if c in defects)
    rng = np.random.default_rng([seed, 18])
    single = [str(c) for c in rng.permutation([c for c in planned if by_community[c] == 1])]
    stories = dict.fromkeys(planned, "verified")
    for cid, story in zip(single, ("reopened", "submitted")):
        stories[cid] = story
    rest = [c for c in planned if stories[c] == "verified"]
    if len(rest) > 1:
        stories[rest[int(rng.integers(len(rest)))]] = "open"
    return stories


def _amend(s: ServiceState, round_id: str, inspection_id: str, code: str, value: float, when: datetime,
           reason: str, photo_hash: str) -> None:
    from ..services.submissions import amend_inspection

    stored = s.store.get_inspection(round_id, inspection_id)
    current = stored["versions"][-1]
    evidence = {k: list(v) for k, v in (current.get("check_evidence") or {}).items()}
    evidence[code] = [photo_hash]
    data = {"inspection_id": inspection_id, "community_id": stored["community_id"],
            "inspector": current["inspector"], "inspected_at": when, "checks": {**current["checks"], code: value},
            "notes": current.get("notes"), "evidence": list(current.get("evidence") or []),
            "check_evidence": evidence, "amend_reason": reason}
    amend_inspection(s, round_id, inspection_id, data, seed_principal("agency", stored["agency_id"]))


def seed_rectifications(s: ServiceState, round_id: str, communities: list[dict], seed: int = 2018) -> dict:
    """The districts' answers (with photos) and the agencies' re-inspections (复验) of the demo's failed
    checks (:func:`story_plan`), through the services the API uses; the round must be open. Replays add
    nothing (ids and photos are the same)."""
    from ..services import rectification
    from ..services.rounds import get_round

    round_ = get_round(s, round_id)
    rubric = s.rubric(round_["rubric_id"])
    items = rectification.rectifications(s, round_id, None, as_of=AS_OF)["items"]
    stories = story_plan(items, communities, seed)
    defects = defect_plan(communities, seed)
    names = {c["community_id"]: c["name_zh"] for c in communities}
    rng = np.random.default_rng([seed, 19])
    counts = {"items": len(items), "responses": 0, "re_inspections": 0}
    for community_id, story in sorted(stories.items()):
        if story == "open":
            continue
        code = defects[community_id][0]
        mine = [i for i in items if i["community_id"] == community_id and i["check_code"] == code]
        top = rubric.checks[code]["max_points"]
        finding, fix = DEFECTS[code]
        opened = max(date.fromisoformat(i["opened_on"]) for i in mine)
        if story == "submitted":  # answered late, the re-inspection not yet made
            fixed_on = min(AS_OF - timedelta(days=3), max(opened + timedelta(days=16), date(2018, 10, 3)))
        else:
            fixed_on = min(opened + timedelta(days=int(rng.integers(2, 8))), date(2018, 10, 4))
        district = seed_principal("district", mine[0]["district_id"])
        lines = (f"{names[community_id]}　{fix}", rubric.checks[code].get("text_zh") or code)
        after = [upload_photo(s, district, "整改后", (*lines[:1], f"{lines[1]}（{k + 1}）"), _at(fixed_on, 10 + k))
                 for k in range(1 + int(rng.integers(0, 2)))]
        for item in mine:
            body = {"response_id": uuid.uuid5(NS, f"{item['id']}/response/1"), "fixed_on": fixed_on,
                    "note": f"{fix}。", "evidence": after}
            rectification.respond(s, round_id, item["id"], body, district)
            counts["responses"] += 1
        if story == "submitted":
            continue
        for item in mine:  # each agency re-inspects its own inspection
            day = min(fixed_on + timedelta(days=int(rng.integers(1, 4))), AS_OF - timedelta(days=1))
            when = _at(day, 9 + int(rng.integers(0, 7)))
            if story == "reopened":  # better, still short of the limit
                value = highest_fail(top)
                reason, caption = f"复验：{finding}，整改未到位", f"{names[community_id]}　整改未到位"
            else:
                value, reason = float(top), f"复验：{fix}，整改到位"
                caption = f"{names[community_id]}　整改到位"
            agency = item["agency_id"]
            evidence = upload_photo(s, seed_principal("agency", agency), "复验",
                                    (caption, dict(AGENCIES).get(agency, agency)), when)
            _amend(s, round_id, item["inspection_id"], code, value, when, reason, evidence)
            counts["re_inspections"] += 1
    return counts
