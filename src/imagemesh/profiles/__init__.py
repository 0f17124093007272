"""Profiles: what a kind of collection's metadata looks like (fields, roles, labels, joins).

A profile is data plus small pure functions; it imports only ``imagemesh.core``. Today there
is one, :mod:`imagemesh.profiles.arxiv`; sources with their own fields (``jsonl``) make their
schema themselves.
"""
