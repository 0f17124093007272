"""arXiv ingest fidelity on the real-world corpus (issue 13); same as ``imagemesh bench fidelity``.

    python benchmarks/fidelity.py [--corpus tests/data/fidelity] [--out benchmarks/results] [--workers 2]

The logic is in :mod:`imagemesh.bench.fidelity`; results go to ``benchmarks/results/fidelity.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imagemesh.bench.fidelity import main

if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=root / "tests" / "data" / "fidelity")
    ap.add_argument("--out", type=Path, default=root / "benchmarks" / "results")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default=None, help="comma-separated package ids")
    a = ap.parse_args()
    main(a.corpus, a.out, workers=a.workers, only=[s for s in (a.only or "").split(",") if s] or None)
