"""``Index`` implementations: ``exact`` (reference), ``annoy``, ``faiss``.

Each registers through the ``imagemesh.backends`` entry-point group (see pyproject.toml).
"""
