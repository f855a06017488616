"""The JSON documents leadership reads (SPEC §6): score breakdowns, rankings, rewards,
shaped lazily from live results or served from a published snapshot."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cached_property
from itertools import chain

import numpy as np

from ..domain import rounds as kinds
from ..domain.canonical import array_length, array_pieces, canonical_bytes, split_at
from ..scoring import round_rate, round_score
from ..scoring.engine import InspectionInputs, SurveyCounts, community_order
from .round_inputs import Reference


def _plain(values: np.ndarray) -> list:
    """Array → nested Python lists with NaN as None (for JSON)."""
    def fix(v):
        return [fix(x) for x in v] if isinstance(v, list) else (None if v != v else v)

    return fix(values.tolist())


#: the community ranking's arrays (keys of ``community_ranking``), kept as their rows' JSON
RANKING_ARRAYS = ("communities", "unranked")
#: rows of the community ranking per piece of its streamed JSON
RANKING_ROWS_PER_PIECE = 1000


class SectionCache:
    """Canonical JSON bytes of each section, encoded once per results object; the community ranking as
    its rows' JSON, sent in pieces (a national ranking is never joined whole, nor held as row dicts)."""

    def section_bytes(self, name: str) -> bytes:
        cache = self.__dict__.setdefault("_bytes", {})
        if name not in cache:
            cache[name] = canonical_bytes(getattr(self, name))
        return cache[name]

    def _ranking_parts(self) -> tuple[dict, dict[str, Iterable[dict]]]:
        """The community ranking without its arrays, and its arrays' rows (those it has), by key."""
        ranking = self.community_ranking
        return ({key: value for key, value in ranking.items() if key not in RANKING_ARRAYS},
                {key: ranking[key] for key in RANKING_ARRAYS if key in ranking})

    def ranking_stream(self) -> tuple[int, Iterator[bytes]]:
        """Length and pieces of ``canonical_bytes(self.community_ranking)``: each row's JSON is made once
        and kept (not the rows themselves), and the pieces are joined as they are sent."""
        kept = self.__dict__.get("_ranking_kept")
        if kept is None:
            head, arrays = self._ranking_parts()
            if not arrays:
                body = canonical_bytes(head)
                return len(body), iter((body,))
            segments = split_at(head, *arrays)
            kept = self.__dict__["_ranking_kept"] = (
                segments, [[canonical_bytes(row) for row in arrays[key]] for key in sorted(arrays)])
        segments, rows = kept
        # the arrays in the order of their keys in the JSON, each between two segments (the last one's
        # closing segment after it)
        afters = [b""] * (len(rows) - 1) + [segments[-1]]
        length = sum(array_length(segments[i], afters[i], rows[i]) for i in range(len(rows)))
        return length, chain.from_iterable(array_pieces(segments[i], afters[i], rows[i], RANKING_ROWS_PER_PIECE)
                                           for i in range(len(rows)))


class LiveResults(SectionCache):
    """Results computed from the store's current statistics."""

    published = False
    snapshot_sha256 = None

    def __init__(self, round_, rubric, reference: Reference, inspections: InspectionInputs, residents: SurveyCounts,
                 public: SurveyCounts, scores, districts, rewards, aftercare: dict | None = None):
        self.round_id = round_["round_id"]
        self.reward_rule = round_.get("reward", {})
        self.rubric = rubric
        self.communities = reference.communities
        self.inputs = reference.inputs
        self.district_names = reference.district_names
        self.inspections = inspections
        self.residents, self.public = residents, public  # kept for the evidence analyses
        self.raw = scores
        self.districts_raw = districts
        self.rewards_raw = rewards
        self.position = {cid: i for i, cid in enumerate(self.inputs.ids)}
        self.labels = rubric.grade_labels
        # rounded once, as plain Python values
        self.composite = _plain(round_score(scores.composite))
        self.rank = [int(r) if r > 0 else None for r in scores.rank.tolist()]
        self.rank_in_district = [int(r) if r > 0 else None for r in scores.rank_in_district.tolist()]
        #: an aftercare round's (SPEC §15) community_id → Baseline; None in an acceptance round, whose rows
        #: carry no baseline keys
        self.aftercare = aftercare

    def _aftercare_fields(self, c: int) -> tuple[dict, list[str]]:
        """The ``baseline`` and ``change`` keys of an aftercare row and its 前治后乱 flags."""
        if self.aftercare is None:
            return {}, []
        base = self.aftercare[self.inputs.ids[c]]
        change = kinds.baseline_change(self.composite[c], base.composite)
        flags = (["backsliding"] if kinds.backslid(change) else []) + (
            ["management_missing"] if base.management_missing else [])
        return {"baseline": base.composite, "change": change}, flags

    def _row(self, c: int) -> dict:
        community = self.communities[c]
        grade = self.raw.grade[c]
        extra, flags = self._aftercare_fields(c)
        return {
            "community_id": community["community_id"],
            "name_zh": community["name_zh"],
            "district_id": community["district_id"],
            "composite": self.composite[c],
            "grade": grade,
            "grade_zh": self.labels.get(grade) if grade else None,
            "rank": self.rank[c],
            "rank_in_district": self.rank_in_district[c],
            "flags": self.raw.flags[c] + flags if flags else self.raw.flags[c],
            **extra,
        }

    def breakdown(self, community_id: str) -> dict | None:
        """The score breakdown of SPEC §6 for one community."""
        c = self.position.get(community_id)
        if c is None:
            return None
        sc, codes, applicable = self.raw, self.rubric.item_codes, self.inputs.applicable[c]

        def items(values: np.ndarray) -> dict:
            rounded = _plain(round_score(values[c]))
            return {code: rounded[k] for k, code in enumerate(codes) if applicable[k]}

        def score(x: float):
            return None if np.isnan(x) else float(round_score(float(x)))

        def rate(x: float):
            return None if np.isnan(x) else float(round_rate(float(x)))

        row = self._row(c)
        return {
            "round_id": self.round_id,
            "community_id": community_id,
            "name_zh": row["name_zh"],
            "district_id": row["district_id"],
            "households": int(self.communities[c]["households"]),
            "professional": {
                "score": score(sc.professional[c]),
                "items": items(sc.professional_items),
                "agencies": sorted(self.inspections.agencies[c]),
            },
            "resident": {
                "score": score(sc.resident[c]),
                "items": items(sc.resident_items),
                "responses": int(sc.resident_responses[c]),
                "required_responses": int(sc.required_responses[c]),
                "satisfaction_rate": rate(sc.satisfaction_rate[c]),
                "satisfaction_ci95": None if np.isnan(sc.satisfaction_low[c])
                else [rate(sc.satisfaction_low[c]), rate(sc.satisfaction_high[c])],
            },
            "public": None if sc.public_responses[c] == 0 else {
                "score": score(sc.public[c]),
                "items": items(sc.public_items),
                "responses": int(sc.public_responses[c]),
            },
            "composite": row["composite"],
            "grade": row["grade"],
            "grade_zh": row["grade_zh"],
            "flags": row["flags"],
            "rank": row["rank"],
            "rank_in_district": row["rank_in_district"],
            **{k: row[k] for k in ("baseline", "change") if k in row},
        }

    @cached_property
    def scores(self) -> dict[str, dict]:
        return {cid: self.breakdown(cid) for cid in self.inputs.ids}

    def _ranking_rows(self) -> dict[str, Iterator[dict]]:
        """The community ranking's rows, made as they are asked for: ranked in order, then the unranked
        by community id."""
        order = community_order(self.inputs, self.raw).tolist()
        return {
            "communities": (self._row(c) for c in order),
            "unranked": (self._row(c) for c in sorted(range(len(self.communities)),
                                                      key=lambda i: self.inputs.ids[i]) if self.rank[c] is None),
        }

    @cached_property
    def community_ranking(self) -> dict:
        return {"round_id": self.round_id, "published": False,
                **{key: list(rows) for key, rows in self._ranking_rows().items()}}

    def _ranking_parts(self) -> tuple[dict, dict[str, Iterable[dict]]]:
        if "community_ranking" in self.__dict__:  # already made for another answer (a district's, CSV)
            return super()._ranking_parts()
        return {"round_id": self.round_id, "published": False}, self._ranking_rows()

    @cached_property
    def district_ranking(self) -> dict:
        d = self.districts_raw
        index, quality, progress = (_plain(round_score(x)) for x in (d.index, d.quality, d.progress))
        share = _plain(round_rate(d.share_good_or_better))
        return {
            "round_id": self.round_id,
            "published": False,
            "districts": [
                {
                    "district_id": d.district_ids[i],
                    "name_zh": self.district_names.get(d.district_ids[i]),
                    "rank": int(d.rank[i]),
                    "index": index[i],
                    "quality": quality[i],
                    "progress": progress[i],
                    "quota": int(d.quota[i]),
                    "graded": int(d.graded[i]),
                    "grade_counts": d.grade_counts[i],
                    "share_good_or_better": share[i],
                }
                for i in d.order.tolist()
            ],
        }

    @cached_property
    def rewards(self) -> dict:
        r = self.rewards_raw
        return {
            "round_id": self.round_id,
            "published": False,
            "pool_fen": r.pool_fen,
            "district_pool_fen": r.district_pool_fen,
            "community_pool_fen": r.community_pool_fen,
            "districts": [
                {"district_id": d, "name_zh": self.district_names.get(d), "amount_fen": amount}
                for d, amount in sorted(r.districts.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "communities": [
                {**{k: row[k] for k in ("community_id", "name_zh", "district_id", "grade")}, "amount_fen": amount}
                for cid, amount in sorted(r.communities.items(), key=lambda kv: (-kv[1], kv[0]))
                for row in (self._row(self.position[cid]),)
            ],
            "unallocated_fen": r.unallocated_fen,
        }
class PublishedResults(SectionCache):
    """Results frozen in a round's snapshot; served identically on every request."""

    published = True

    def __init__(self, snapshot: bytes, sha256: str):
        body = json.loads(snapshot)
        self.round_id = body["round_id"]
        self.snapshot_sha256 = sha256
        self.scores = body["scores"]
        self.community_ranking = body["community_ranking"]
        self.district_ranking = {**body["district_ranking"], "snapshot_sha256": sha256}
        self.rewards = body["rewards"]
        #: rank intervals frozen at publication (absent in snapshots published before they were added)
        self.uncertainty = body.get("uncertainty")

    def breakdown(self, community_id: str) -> dict | None:
        return self.scores.get(community_id)


Results = LiveResults | PublishedResults
