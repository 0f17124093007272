"""arXiv source packages -> figures with captions and paper metadata.

* :mod:`.extract` -- safe extraction (tar/zip/gzip, nested archives, limits);
* :mod:`.latex` -- main files, ``\\input``, figures, sub-figures, captions, labels,
  ``\\graphicspath`` and pdflatex-style file resolution (pylatexenc);
* :mod:`.ghostscript` -- EPS/PS rasterisation in a sandboxed Ghostscript;
* :mod:`.metadata` -- ids from package names, ``.abs`` records, the snapshot;
* :mod:`.package` -- :func:`ingest_package`, the pure per-package step;
* :mod:`.raster_pool` -- a package's PostScript figures in parallel, under one time budget;
* :mod:`.ingest` -- :func:`ingest_arxiv`, parallel + resumable orchestration into a collection.
"""

from imagemesh.ingest.sources.arxiv_src.extract import ExtractError, ExtractLimits, extract_package
from imagemesh.ingest.sources.arxiv_src.package import IngestLimits, ingest_package

__all__ = ["ExtractError", "ExtractLimits", "IngestLimits", "extract_package", "ingest_package", "ingest_arxiv"]


def __getattr__(name: str):  # lazy: the orchestrator imports the build machinery
    if name == "ingest_arxiv":
        from imagemesh.ingest.sources.arxiv_src.ingest import ingest_arxiv

        return ingest_arxiv
    raise AttributeError(name)
