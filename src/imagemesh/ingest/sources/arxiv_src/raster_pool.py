"""Rasterise a package's PostScript figures in parallel under one time budget.

Ghostscript runs as a child process with its own wall-clock timeout (60 s by default),
so a package with several looping EPS files used to take 60 s per file, in series. Here
those files go to a small thread pool (the threads only wait on Ghostscript), and the
whole package gets one budget: a file starts only while budget remains, its Ghostscript
timeout is cut to the time left, and a file not finished when the budget runs out is
reported as skipped with that reason. Results are kept on disk (fast PNG) under the
package's temporary folder, not in memory, so a package of many figures stays small.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from imagemesh.media.images import ImageLoadError

__all__ = ["PrerenderedFigures", "BUDGET_REASON"]

#: Start of the reason given for a file the package's budget left no time for.
BUDGET_REASON = "skipped: the package's rasterisation time budget"

#: ``render(path, timeout_seconds) -> image``; raises :class:`ImageLoadError`.
Render = Callable[[Path, float], Image.Image]


@dataclass(frozen=True)
class _Done:
    png: Path | None
    reason: str | None


class PrerenderedFigures:
    """Rasterise ``files`` (paths under ``src``) in ``workers`` threads within ``budget`` s.

    Args:
        files: package-relative paths to render ahead of the per-record loop.
        src: the extraction folder.
        cache: an empty folder for the rendered images (removed with the package's tmp).
        render: renders one file with a timeout (seconds); raises :class:`ImageLoadError`.
        workers: threads (>= 1).
        budget: wall-clock seconds for all of ``files`` together.
    """

    def __init__(self, files: list[str], src: Path, cache: Path, render: Render, *, workers: int, budget: float) -> None:
        self.budget = budget
        self._done: dict[str, _Done] = {}
        if not files:
            return
        cache.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + budget

        def one(n: int, rel: str) -> _Done:
            left = deadline - time.monotonic()
            if left <= 0.05:
                return _Done(None, f"{BUDGET_REASON} ({budget:g} s) ran out before it was started")
            try:
                img = render(src / rel, left)
            except ImageLoadError as e:
                if time.monotonic() >= deadline - 0.05 and "timed out" in e.reason:
                    return _Done(None, f"{BUDGET_REASON} ({budget:g} s) ran out while it was rendered")
                return _Done(None, e.reason)
            out = cache / f"{n:05d}.png"
            img.save(out, format="PNG", compress_level=1)
            return _Done(out, None)

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rasterise") as pool:
            futures = {rel: pool.submit(one, n, rel) for n, rel in enumerate(files)}
            for rel, fut in futures.items():
                self._done[rel] = fut.result()

    def __contains__(self, rel: object) -> bool:
        return rel in self._done

    def load(self, rel: str) -> Image.Image:
        """The rendered image of ``rel`` (RGB).

        Raises:
            ImageLoadError: it failed, or the budget left no time for it (the reason says which).
        """
        d = self._done[rel]
        if d.png is None:
            raise ImageLoadError(rel, d.reason or "not rendered")
        with Image.open(d.png) as img:
            img.load()
            return img.convert("RGB")
