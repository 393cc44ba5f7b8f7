"""``POST /get_reward``: the scorer as OpenRLHF's remote reward model (``--remote_rm_url``).

OpenRLHF posts ``{"query": [...], "prompts": [...], "labels": [...]}`` (one entry per rollout) and
reads ``rewards`` from the answer. Each label carries the rollout's region task as JSON
(:class:`spr.shared.reward_api.RewardTask`). Rollouts of one task are scored together, in chunks of at
most ``SPR_SCORER_MAX_CANDIDATES`` texts, through the same micro-batched path as ``POST /score``; the
shaping rule is :meth:`RewardValue.from_candidate`, the one ``spr.reward`` uses.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response
from spr.scorer.errors import InputError
from spr.scorer.router import json_body
from spr.scorer.serving import ScoreServing
from spr.shared.reward_api import (
    GetRewardRequest,
    GetRewardResponse,
    RewardTaskError,
    RewardValue,
)
from spr.shared.scoring_api import ErrorResponse

logger = logging.getLogger(__name__)

router = APIRouter()


@router.post(
    "/get_reward",
    response_model=GetRewardResponse,
    responses={
        401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
        413: {"model": ErrorResponse, "description": "Request body over the size limit."},
        422: {
            "model": ErrorResponse,
            "description": "Invalid input, e.g. a label that is no region task.",
        },
        503: {
            "model": ErrorResponse,
            "description": "Models not loaded yet, too many connections, or the decoded-pixel budget is "
            "exhausted (with Retry-After, seconds).",
        },
    },
    summary="Rewards for rollouts (OpenRLHF remote reward protocol); labels carry the region tasks",
    openapi_extra=json_body("GetRewardRequest"),
)
async def get_reward(request: Request) -> Response:
    serving: ScoreServing = request.app.state.serving
    body = await serving.parse(GetRewardRequest, await request.body())
    try:
        tasks = await serving.batched.run_cpu(body.tasks)
    except RewardTaskError as exc:
        raise InputError(exc.message, field=exc.field) from None
    responses = body.responses()
    # Rollouts of the same task (GRPO's group) share one image load and one region embedding.
    groups: dict[str, list[int]] = {}
    for index, (task, options) in enumerate(tasks):
        key = task.to_json() + options.model_dump_json(by_alias=True)
        groups.setdefault(key, []).append(index)
    chunks: list[list[int]] = []
    for indices in groups.values():
        step = serving.limits.max_candidates
        chunks.extend(indices[start : start + step] for start in range(0, len(indices), step))
    values: list[RewardValue | None] = [None] * len(body.query)

    async def score_chunk(indices: list[int]) -> None:
        task, options = tasks[indices[0]]
        score_request = task.score_request([responses[i] for i in indices], options)
        try:
            scored = await serving.score(score_request)
        except InputError as exc:
            # Name the first rollout of the chunk: its label is the task at fault.
            # The same error (a LimitError keeps its refusal reason for /metrics), re-pointed.
            exc.field = f"labels.{indices[0]}" + (f".{exc.field}" if exc.field else "")
            raise
        for index, candidate in zip(indices, scored.candidates, strict=True):
            values[index] = RewardValue.from_candidate(candidate, options)

    await asyncio.gather(*(score_chunk(chunk) for chunk in chunks))
    answer = GetRewardResponse.from_values([value for value in values if value is not None])
    return Response(answer.model_dump_json(), media_type="application/json")
