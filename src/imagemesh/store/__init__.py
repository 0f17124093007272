"""The collection on disk: manifest, the one writer (VersionWriter), the reader, integrity checks and repair, PCA and 2-D map files."""
