"""Wire schemas: strict (unknown fields and bad boxes rejected with the field named) and JSON round-trip."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from spr.shared.schemas import (
    AnnotatedObject,
    Candidate,
    CandidateGroup,
    ImageRef,
    PairSide,
    Phrase,
    PreferencePair,
    PromptRecord,
    Provenance,
    RegionTask,
    Scores,
    Size,
)


def _task() -> RegionTask:
    region = (10.0, 20.0, 200.0, 180.0)
    return RegionTask(
        task_id=RegionTask.make_id("synthetic", "images/0.png", region),
        image=ImageRef(path="images/0.png", width=256, height=256),
        region=region,
        objects=[AnnotatedObject(label="red circle", box=(12.0, 30.0, 60.0, 80.0))],
        source="synthetic",
    )


def _group() -> CandidateGroup:
    phrase = Phrase(text="a red circle", span=(0, 12), boxes=[(12.0, 30.0, 60.0, 80.0)], box_spans=[(13, 40)])
    return CandidateGroup(
        task=_task(),
        model_id="tiny",
        format="qwen25vl",
        resized_size=Size(width=252, height=252),
        canonical_prompt="Describe the region.",
        prompts=[PromptRecord(prompt_id="box-v1", type="box", text="Describe the region.", images=1)],
        candidates=[
            Candidate(
                id="c0",
                prompt_id="box-v1",
                prompt_type="box",
                sample_index=0,
                seed=7,
                text="a red circle [...]",
                phrases=[phrase],
                tokens=12,
            )
        ],
    )


def _pair() -> PreferencePair:
    task = _task()
    side = PairSide(
        candidate_id="c0", text="t", scores=Scores(semantic=0.2, localization=0.5, total=0.26), refined=True
    )
    return PreferencePair(
        pair_id=PreferencePair.make_id(task.task_id),
        task_id=task.task_id,
        image=task.image,
        region=task.region,
        objects=task.objects,
        format="ferret",
        prompt="Describe the region.",
        chosen=side,
        rejected=side.model_copy(update={"refined": False}),
        margin=0.0,
        provenance=Provenance(generator_model="tiny", scorer_settings_hash="abc"),
    )


@pytest.mark.parametrize("make", [_task, _group, _pair])
def test_json_round_trip(make: object) -> None:
    model = make()  # type: ignore[operator]
    again = type(model).model_validate_json(model.model_dump_json())
    assert again == model


def test_deterministic_ids() -> None:
    assert _task().task_id == _task().task_id
    assert RegionTask.make_id("s", "a.png", (0, 0, 1, 1)) != RegionTask.make_id("s", "b.png", (0, 0, 1, 1))
    assert _pair().pair_id == PreferencePair.make_id(_task().task_id)
    assert _group().group_id == f"g-{_task().task_id}"


def test_unknown_fields_are_rejected_with_their_name() -> None:
    data = _task().model_dump(mode="json")
    data["colour"] = "red"
    with pytest.raises(ValidationError, match="colour"):
        RegionTask.model_validate(data)


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((50.0, 10.0, 20.0, 40.0), "inverted"),
        ((10.0, 10.0, 10.0, 40.0), "empty or inverted"),
        ((0.0, 0.0, float("nan"), 4.0), "finite"),
    ],
)
def test_bad_boxes_name_the_field_and_the_rule(box: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        AnnotatedObject(label="x", box=box)  # type: ignore[arg-type]
    text = str(info.value)
    assert ("box" in text and message in text and "x1 < x2" in text) or "finite" in text


def test_phrase_needs_one_span_per_box() -> None:
    with pytest.raises(ValidationError, match="same length"):
        Phrase(text="a", span=(0, 1), boxes=[(0.0, 0.0, 1.0, 1.0)], box_spans=[])


def test_sizes_and_counts_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="width"):
        ImageRef(path="a.png", width=0, height=10)
    with pytest.raises(ValidationError, match="images"):
        PromptRecord(prompt_id="p", type="box", text="t", images=3)
