"""Requirement matching (SearchDatasets): which datasets fulfil a job's data requirement, the
best one, and why each other candidate was rejected.

A dataset fulfils a requirement when its category matches, its format satisfies the required
one (any format of the category when none is required), it is SEALED, and its domain contains
the requirement's domain. Among those, the tightest superset wins (least excess coverage), then
the newest.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from dmod.services.datasets import access, convert, domain_codec, names, store
from dmod.services.datasets.domains import Domain, excess, shortfalls
from dmod.services.datasets.formats import CATEGORY_OF, category_name, format_name, format_satisfies
from dmod.services.runtime.errors import InvalidArgument
from dmod.v1 import datasets_pb2, domain_pb2

MAX_CANDIDATES = 5000  # datasets examined per search (newest first)
MAX_REPORTED = 200  # candidates listed in the response


@dataclass(frozen=True)
class Requirement:
    category: int
    data_format: int
    domain: Domain
    owner: str


@dataclass
class Verdict:
    row: object
    reasons: list[str]
    looseness: float = math.inf

    @property
    def accepted(self) -> bool:
        return not self.reasons


def parse_requirement(pb: domain_pb2.DataRequirement) -> Requirement:
    violations = []
    if pb.category not in domain_pb2.DataCategory.values():
        violations.append(("requirement.category", "unknown category"))
    if pb.data_format not in domain_pb2.DataFormat.values():
        violations.append(("requirement.data_format", "unknown data format"))
    category = pb.category or CATEGORY_OF.get(pb.data_format, 0)
    if not category and not pb.data_format:
        violations.append(("requirement.category", "a category or a data format is required"))
    if violations:
        raise InvalidArgument(violations)
    return Requirement(category, pb.data_format, domain_codec.from_proto(pb.domain, "requirement.domain"), pb.owner)


def evaluate(req: Requirement, row) -> Verdict:
    reasons = []
    if req.category and row["category"] != req.category:
        reasons.append(f"category {category_name(row['category'])} is not {category_name(req.category)}")
    if not format_satisfies(req.data_format, row["data_format"]):
        reasons.append(f"format {format_name(row['data_format'])} does not satisfy {format_name(req.data_format)}")
    if row["state"] != store.SEALED:
        reasons.append("dataset is OPEN (only SEALED datasets are used by jobs)")
    have = convert.dataset_domain(row)
    reasons += shortfalls(have, req.domain)
    verdict = Verdict(row, reasons)
    if verdict.accepted:
        verdict.looseness = excess(have, req.domain)
    return verdict


def rank(verdicts: list[Verdict]) -> list[Verdict]:
    """Accepted first (tightest, then newest), then rejected (newest first)."""
    def key(v: Verdict):
        return (not v.accepted, v.looseness if v.accepted else 0.0, -v.row["create_time"].timestamp())
    return sorted(verdicts, key=key)


async def search(pool, request: datasets_pb2.SearchDatasetsRequest) -> datasets_pb2.SearchDatasetsResponse:
    req = parse_requirement(request.requirement)
    caller = access.caller()
    async with pool.acquire() as conn:
        # Candidates: datasets the caller may read. Without an owner, an admin's search stays
        # within what is the admin's own, shared with it or public (not every user's data).
        viewer = await access.visible_filter(conn) if req.owner else \
            access.reader_names(caller, await access.groups_of(conn, caller.user))
        rows = await store.search_candidates(conn, category=req.category, owner=req.owner, viewer=viewer,
                                             limit=MAX_CANDIDATES)
    ranked = rank([evaluate(req, row) for row in rows])
    accepted = [v for v in ranked if v.accepted]
    response = datasets_pb2.SearchDatasetsResponse()
    if accepted:
        response.best.CopyFrom(convert.dataset(accepted[0].row))
    for i, v in enumerate(ranked[:MAX_REPORTED]):
        reasons = v.reasons
        if v.accepted and i > 0:
            reasons = [(f"fulfils the requirement; ranked {i + 1} of {len(accepted)} (covers more than needed or is "
                       "older than the best)")]
        response.candidates.add(dataset=names.dataset_name(v.row["id"]), accepted=v.accepted, reasons=reasons)
    return response
