"""Record the golden metric tables: every smoke config run on tiny-random.

    python tests/golden/record.py            # all smoke configs
    python tests/golden/record.py news-smoke # one

Each ``tests/golden/<config>.parquet`` holds the run's ``metrics.parquet`` (key
columns, ``value``, ``ci_low``, ``ci_high``). ``tests/test_golden.py`` reruns the
same configs and asserts equal tables, so a refactor that changes a number fails.
A deliberate change of a number (a fix) re-records the file in its own commit,
saying why.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
#: Smoke configs (all on tiny-random) with the overrides that keep them quick.
SMOKE_CONFIGS = {
    "preference-smoke": ("configs/scpl/preference-smoke.yaml", []),
    "news-smoke": ("configs/scpl/news-smoke.yaml", []),
    "math-smoke": ("configs/scpl/math-smoke.yaml", []),
    "gender-smoke": ("configs/inheritance/gender-smoke.yaml", []),
    "mitigations-smoke": ("configs/inheritance/mitigations-smoke.yaml", ["seeds=[0]"]),
}
KEYS = ["generation", "condition", "seed", "group", "metric"]
VALUES = ["value", "ci_low", "ci_high"]


def run_smoke(name: str, out: Path) -> pd.DataFrame:
    """The metric table of smoke config ``name``, run into ``out``."""
    import torch

    from biasloop.config import load_config
    from biasloop.runner.experiment import start_run

    path, overrides = SMOKE_CONFIGS[name]
    config = load_config(ROOT / path, ["model.name=tiny-random", "run.progress=false", *overrides])
    # One torch thread, recording and testing alike: float sums taken in another order
    # can flip a sampled token once training has moved the model, and then every later
    # number of the run moves with it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = start_run(config, out=out)
    finally:
        torch.set_num_threads(threads)
    return comparable(pd.read_parquet(store.root / "metrics.parquet"))


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Key and value columns, rows in key order (columns a later version adds are left out)."""
    extra = [c for c in ("bias_ratio", "bias_type", "round", "task") if c in frame.columns]
    keys = KEYS + extra
    return frame[keys + VALUES].sort_values(keys, kind="stable").reset_index(drop=True)


def main(names: list[str]) -> None:
    for name in names or list(SMOKE_CONFIGS):
        with tempfile.TemporaryDirectory() as folder:
            table = run_smoke(name, Path(folder) / "run")
        table.to_parquet(GOLDEN / f"{name}.parquet", index=False)
        print(f"{name}: {len(table)} rows")


if __name__ == "__main__":
    main(sys.argv[1:])
