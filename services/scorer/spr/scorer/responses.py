"""The scorer's answer objects (:mod:`spr.shared.scoring_api`) built from its own results, unvalidated.

Every value here comes from the scorer's code: parsed phrases and boxes (checked by the parser),
S_loc and IoUs (floats in [0, 1] by construction), totals (floats), candidate ids and texts (from
validated input). Validating them again was a quarter of a localization-only request's scoring CPU
(about 60 model ``__init__`` calls per 8 candidates), so they are made with
:func:`spr.shared.trusted.trusted`, field for field what validation would give; ``model_dump_json``
of the result is byte-identical. Boxes from the detector are the exception: they come from a model
(or a caller of ``Scorer.finish``), so their matches are validated as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from spr.shared.boxes import Localization
from spr.shared.schemas import BoxT, ParseProblem, Phrase, Size
from spr.shared.scoring_api import (
    CandidateScore,
    LocalizationMatch,
    LocalizationResult,
    PairChosen,
    PairRejected,
    PairResult,
    RefinedScore,
    ScoreResponse,
    SemanticScore,
)
from spr.shared.trusted import check_trustable, trusted

check_trustable(LocalizationMatch, ("object", "phrase", "box", "source", "iou"))
check_trustable(LocalizationResult, ("score", "matches"))
check_trustable(SemanticScore, ("crop", "local", "score"))
check_trustable(RefinedScore, ("text", "localization", "score"))
check_trustable(CandidateScore, ("id", "phrases", "problems", "semantic", "localization", "score", "refined"))
check_trustable(PairChosen, ("id", "refined", "text", "score"))
check_trustable(PairRejected, ("id", "text", "score"))
check_trustable(PairResult, ("chosen", "rejected", "margin"))
check_trustable(ScoreResponse, ("image_size", "candidates", "pair", "pair_skipped_reason"))


def localization_result(
    result: Localization, preds: Sequence[BoxT], owners: Sequence[int], text_boxes: int
) -> LocalizationResult:
    """S_loc and its matches; ``preds[:text_boxes]`` are the text's parsed boxes (phrase ``owners[j]``),
    the rest the detector's (validated: their boxes are not ours)."""
    matches: list[LocalizationMatch] = []
    for m in result.matches:
        j = m.pred
        if j < text_boxes:
            fields = {"object": m.gt, "phrase": owners[j], "box": preds[j], "source": "text", "iou": m.iou}
            matches.append(trusted(LocalizationMatch, fields))
        else:
            matches.append(
                LocalizationMatch(object=m.gt, phrase=owners[j], box=preds[j], source="detector", iou=m.iou)
            )
    return trusted(LocalizationResult, {"score": result.score, "matches": matches})


def semantic_score(crop: float, local: float, score: float) -> SemanticScore:
    return trusted(SemanticScore, {"crop": crop, "local": local, "score": score})


def refined_score(text: str, localization: LocalizationResult, score: float) -> RefinedScore:
    return trusted(RefinedScore, {"text": text, "localization": localization, "score": score})


def candidate_score(
    cand_id: str,
    phrases: list[Phrase],
    problems: list[ParseProblem],
    semantic: SemanticScore | None,
    localization: LocalizationResult,
    score: float,
    refined: RefinedScore | None,
) -> CandidateScore:
    """One candidate's scores; ``phrases`` and ``problems`` (the parse's own lists) are not copied."""
    fields = {
        "id": cand_id,
        "phrases": phrases,
        "problems": problems,
        "semantic": semantic,
        "localization": localization,
        "score": score,
        "refined": refined,
    }
    return trusted(CandidateScore, fields)


def pair_result(
    chosen: tuple[str, bool, str, float], rejected: tuple[str, str, float], margin: float
) -> PairResult:
    """The pair from (id, refined, text, total) of the chosen side and (id, text, total) of the rejected."""
    cid, refined, ctext, cscore = chosen
    rid, rtext, rscore = rejected
    return trusted(
        PairResult,
        {
            "chosen": trusted(PairChosen, {"id": cid, "refined": refined, "text": ctext, "score": cscore}),
            "rejected": trusted(PairRejected, {"id": rid, "text": rtext, "score": rscore}),
            "margin": margin,
        },
    )


def score_response(
    image_size: Size, candidates: list[CandidateScore], pair: PairResult | None, reason: str | None
) -> ScoreResponse:
    fields = {"image_size": image_size, "candidates": candidates, "pair": pair, "pair_skipped_reason": reason}
    return trusted(ScoreResponse, fields)
