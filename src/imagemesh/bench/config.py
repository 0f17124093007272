"""What ``imagemesh bench`` runs: :class:`BenchConfig`, the contenders, k and the random filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["K", "RANDOM_FILTERS", "BenchConfig", "CONTENDERS"]

K = 10

#: Random filters: name -> fraction of rows kept (over a uniform ``shard`` column in [0, 10000)).
RANDOM_FILTERS = {"100%": 10_000, "10%": 1_000, "1%": 100, "0.1%": 10, "0.01%": 1}


@dataclass
class BenchConfig:
    """What to run.

    Attributes:
        sizes: synthetic dataset sizes (rows of 128-d vectors).
        demo: also run on the real demo collection's embeddings.
        contenders: contender names (default: all; see :data:`CONTENDERS`).
        queries: queries per dataset.
        budget_s: time budget of one repetition of one measurement (queries stop early).
        reps: repetitions (median reported).
        out: results folder (JSON, markdown, PNG).
        work: scratch folder for indices and LanceDB tables.
        quick: small sweeps.
        seed: data seed.
    """

    sizes: list[int] = field(default_factory=lambda: [100_000])
    demo: bool = True
    contenders: list[str] | None = None
    queries: int = 200
    budget_s: float = 1.0
    reps: int = 3
    out: Path = Path("benchmarks/results")
    work: Path = Path("benchmarks/.work")
    quick: bool = False
    seed: int = 0
    build_threads: int = 2
    reuse: bool = False  # reuse FAISS index files already in ``work`` (build figures then come from the run that built them)


CONTENDERS = ["planner", "exact", "hnsw", "hnsw-post", "ivf", "ivfpq", "annoy", "annoy-post", "lance-pre", "lance-post"]
