"""Interfaces and values every layer uses: Embedding, Index, MetadataFilter, MetadataSchema, Registry, errors, file helpers, keyword-search words. Imports nothing of imagemesh above it."""
