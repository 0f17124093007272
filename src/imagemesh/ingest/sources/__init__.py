"""Sources turn input data into :class:`SourceItem` lists (image file + metadata) with a schema.

Registered through the ``imagemesh.sources`` entry-point group (see ``pyproject.toml``):

* ``figures_csv``: a CSV of arXiv figures (the format of ``shared/data/arxiv-figures``);
* ``jsonl``: a folder of images plus ``metadata.jsonl`` whose own fields become the schema;
* arXiv source packages (:mod:`imagemesh.ingest.sources.arxiv_src`) go through ``imagemesh ingest arxiv``.
"""

from imagemesh.ingest.sources.base import Source, SourceData, SourceItem, SourceProblem, load_source

__all__ = ["Source", "SourceData", "SourceItem", "SourceProblem", "load_source"]
