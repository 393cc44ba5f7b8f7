"""The scorer's heap slack (glibc M_TOP_PAD), applied where the models load."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from spr.scorer import loading
from spr.scorer.heap import set_heap_top_pad
from spr.scorer.settings import ScorerSettings

glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)


@glibc
def test_glibc_takes_the_pad() -> None:
    assert set_heap_top_pad(64 * 1024 * 1024) is True
    assert set_heap_top_pad(128 * 1024) is True  # glibc's own default again


def test_zero_changes_nothing() -> None:
    assert set_heap_top_pad(0) is False


def test_loading_the_scorer_applies_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    asked: list[int] = []
    monkeypatch.setattr(loading, "set_heap_top_pad", lambda pad: asked.append(pad) or True)
    settings = ScorerSettings(
        data_root=tmp_path, scorer_semantic_model="none", scorer_auth="none", scorer_heap_top_pad_mb=16
    )
    loading.load_scorer(settings)
    assert asked == [16 * 1024 * 1024]
    assert ScorerSettings.model_fields["scorer_heap_top_pad_mb"].default == 64


def test_an_out_of_range_pad_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from spr.shared.settings import SettingsError

    monkeypatch.setenv("SPR_SCORER_SEMANTIC_MODEL", "none")
    monkeypatch.setenv("SPR_SCORER_AUTH", "none")
    monkeypatch.setenv("SPR_SCORER_HEAP_TOP_PAD_MB", "-1")
    with pytest.raises(SettingsError, match="SPR_SCORER_HEAP_TOP_PAD_MB"):
        ScorerSettings.from_env()
