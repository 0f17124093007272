"""The arXiv profile: the schema of arXiv figure collections, the taxonomy, metadata records.

See :mod:`imagemesh.profiles.arxiv.profile` (schema, metadata merge, search text, facet
labels) and :mod:`imagemesh.profiles.arxiv.records` (ids, taxonomy, snapshot records).
"""

from imagemesh.profiles.arxiv.profile import ARXIV_SCHEMA, IMAGES_ARROW_SCHEMA, compose_search_text, facet_labels, load_records, merge_record
from imagemesh.profiles.arxiv.records import ArxivId, MetadataRecord, Taxonomy, parse_arxiv_id, read_snapshot

__all__ = [
    "ARXIV_SCHEMA", "IMAGES_ARROW_SCHEMA", "compose_search_text", "facet_labels", "load_records", "merge_record",
    "ArxivId", "MetadataRecord", "Taxonomy", "parse_arxiv_id", "read_snapshot",
]
