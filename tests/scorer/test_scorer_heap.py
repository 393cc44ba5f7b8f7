"""The scorer's heap slack (glibc M_TOP_PAD), applied where the models load."""

from __future__ import annotations

import platform
import subprocess
import sys
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


def test_gc_prepared_for_serving_freezes_and_raises_the_young_threshold() -> None:
    # In a child process: freezing is process-wide and would outlast this test.
    code = (
        "import gc\n"
        "from spr.scorer.heap import GC_YOUNG_THRESHOLD, prepare_gc_for_serving\n"
        "older = gc.get_threshold()[1:]\n"
        "frozen = prepare_gc_for_serving()\n"
        "assert frozen > 1000 and frozen == gc.get_freeze_count(), frozen\n"
        "assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *older), gc.get_threshold()\n"
        "assert GC_YOUNG_THRESHOLD == 10_000\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
