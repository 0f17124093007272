"""Sources turn input data into :class:`SourceItem` lists (image file + metadata).

``figures_csv``: a CSV of arXiv figures (the format of ``shared/data/arxiv-figures``).
arXiv source packages are their own issue and plug in the same way.
"""

from .base import SourceItem, SourceProblem, load_source

__all__ = ["SourceItem", "SourceProblem", "load_source"]
