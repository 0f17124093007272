"""Queries over an open collection: Collection, filters evaluated once (Selection), the filtered-kNN planner, sampling, facets, suggestions, near-duplicate collapse, upload embedding."""
