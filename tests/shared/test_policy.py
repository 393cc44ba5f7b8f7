"""Policy versions: adapter hashing, publishing to a round folder, the spr:policy board on real Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from spr.shared.policy import (
    POLICY_KEY,
    PolicyBoard,
    PolicyError,
    adapter_hash,
    publish_adapter,
    read_policy_file,
)
from spr.shared.schemas import CandidateGroup, PolicyVersion, Provenance


def adapter(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_hash_follows_the_files(tmp_path: Path) -> None:
    first = adapter_hash(adapter(tmp_path / "a", b"weights-1"))
    assert first == adapter_hash(adapter(tmp_path / "b", b"weights-1"))  # content, not location
    assert first != adapter_hash(adapter(tmp_path / "c", b"weights-2"))
    with pytest.raises(PolicyError, match=r"no adapter_config\.json"):
        adapter_hash(tmp_path)


def test_publish_copies_to_the_round_folder(tmp_path: Path) -> None:
    source = adapter(tmp_path / "trained", b"w")
    version = publish_adapter(source, tmp_path / "policies", round_=3, model_id="base")
    target = tmp_path / "policies" / "round-003"
    assert version.adapter_dir == str(target.resolve()) and version.round == 3
    assert (target / "adapter_model.safetensors").read_bytes() == b"w"
    assert version.adapter_hash == adapter_hash(target)  # the recorded version is not hashed
    assert read_policy_file(target) == version
    assert read_policy_file(source) is None
    assert version.key == f"r3-{version.adapter_hash}"
    assert not list((tmp_path / "policies").glob(".*partial"))
    with pytest.raises(PolicyError, match="round >= 1"):
        publish_adapter(source, tmp_path / "policies", round_=0, model_id="base")


def test_board_announces_forward_only(redis_url: str) -> None:
    board = PolicyBoard.from_url(redis_url)
    assert board.current() is None
    two = PolicyVersion(model_id="m", round=2, adapter_hash="h2", adapter_dir="/p/2")
    one = PolicyVersion(model_id="m", round=1, adapter_hash="h1", adapter_dir="/p/1")
    assert board.announce(two)
    assert not board.announce(one)  # a late publisher of an older round changes nothing
    assert board.current() == two
    redis.Redis.from_url(redis_url).set(POLICY_KEY, b"garbage")
    with pytest.raises(PolicyError, match="does not hold a PolicyVersion"):
        board.current()
    board.close()


def test_policy_fields_are_optional_on_the_wire() -> None:
    old = Provenance.model_validate({"generator_model": "g", "scorer_settings_hash": "s"})
    assert old.policy is None  # pairs written before policies existed still load
    assert "policy" in CandidateGroup.model_fields and CandidateGroup.model_fields["policy"].default is None
    assert PolicyVersion(model_id="m", round=0).key == "r0-base"
