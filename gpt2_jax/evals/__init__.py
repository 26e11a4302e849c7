"""The GPT-2 paper's zero-shot evaluation suite (Table 3, CoQA, Winograd, CNN/DailyMail, WMT-14,
Natural Questions) and the §4 overlap analysis.

`run_eval` (runner.py) evaluates one model on tasks in `paper` or `harness` mode; `overlap_report`
(overlap.py) measures test-set 8-gram overlap with a training corpus; `download` (fetch.py) fetches the
official test files into the data dir. Submodules are imported on first use.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"run_eval": "runner", "TASKS": "runner", "MODES": "runner", "overlap_report": "overlap",
            "download": "fetch"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"gpt2_jax.evals.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gpt2_jax.evals' has no attribute {name!r}")


__all__ = list(_EXPORTS)
