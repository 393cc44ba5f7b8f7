"""The synthetic-world benchmark (issue 7, part 2): does SPR make a model trained here localize better?

Coloured shapes with exact ground truth (:mod:`spr.shared.datasets.synthetic`), region tasks by the
paper's rule, referring expressions with spatial relations, a small Qwen2-VL trained from scratch by
SFT (the baseline), SPR through the real pipeline, and `spr eval` metrics on held-out splits.

Modules: :mod:`.expressions` (REC expressions), :mod:`.world` (the splits on disk), :mod:`.sft_data`
and :mod:`.sft` (the supervised baseline), :mod:`.clip_train` (the scorer's CLIP, trained on crops),
:mod:`.spr_stage` (SPR through the demo's stage processes), :mod:`.chosen` (the SFT-on-chosen
ablation arm), :mod:`.sizes` (smoke / default), :mod:`.run` (a run and its results files),
:mod:`.run_report` (RESULTS.md from the results), :mod:`.cli` (`spr bench shapes`).
"""
