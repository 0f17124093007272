"""Building collections: sources, the decode -> embed -> chunk pipeline, adding embeddings, Ray Data."""
