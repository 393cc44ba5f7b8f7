"""Pair selection (docs/METHOD.md, step 5); the queue's PreferencePair is built on the schema
(:meth:`spr.shared.scoring_api.PairResult.to_preference_pair`).

chosen = the refined text with the highest total (the text as written when refinement is off or left
it unchanged); rejected = the text as written with the lowest total; a pair only when
``chosen - rejected >= min_margin`` and the two texts differ. One pair per region.
"""

from __future__ import annotations

from collections.abc import Sequence

from spr.scorer.responses import pair_result
from spr.shared.scoring_api import CandidateScore, PairResult

SKIP_MARGIN = "margin too small"
SKIP_IDENTICAL = "chosen and rejected texts are identical"
SKIP_NO_CANDIDATES = "no candidates"
# Margins are differences of float sums: a hand-computed margin equal to min_margin must still count.
_MARGIN_EPS = 1e-9


def select_pair(
    scored: Sequence[CandidateScore], texts: Sequence[str], min_margin: float
) -> tuple[PairResult | None, str | None]:
    """chosen = best refined total (best as written without refinement), rejected = worst as written.

    ``texts`` are the candidates' texts as written, in the order of ``scored``. Ties go to the
    earliest candidate. Returns the pair, or None and the reason it was skipped.
    """
    if not scored:
        return None, SKIP_NO_CANDIDATES

    def chosen_side(i: int) -> tuple[float, bool, str]:
        refined = scored[i].refined
        if refined is None:
            return scored[i].score, False, texts[i]
        # A refined text identical to its original is not a refinement: report it as written.
        return refined.score, refined.text != texts[i], refined.text

    best = max(range(len(scored)), key=lambda i: (chosen_side(i)[0], -i))
    worst = min(range(len(scored)), key=lambda i: (scored[i].score, i))
    chosen_score, chosen_refined, chosen_text = chosen_side(best)
    rejected = scored[worst]
    margin = chosen_score - rejected.score
    if chosen_text == texts[worst]:
        return None, SKIP_IDENTICAL
    if margin + _MARGIN_EPS < min_margin:
        return None, SKIP_MARGIN
    # Made unvalidated (spr.scorer.responses): ids, texts and totals are the scored candidates' own.
    chosen = (scored[best].id, chosen_refined, chosen_text, chosen_score)
    return pair_result(chosen, (rejected.id, texts[worst], rejected.score), margin), None
