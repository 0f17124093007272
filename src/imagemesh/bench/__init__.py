"""Filtered-kNN benchmark (``imagemesh bench``): the query planner against exact search,
Annoy, FAISS HNSW / IVF / IVF-PQ, LanceDB's own vector search (pre- and post-filter) and
naive post-filtering, on synthetic clustered data (100k and 1M x 128 with Zipf-like
metadata) and the real embeddings of the demo collection.

Every number is measured in one process on one thread (FAISS OpenMP and BLAS limited to
1, LanceDB's CPU pool to 1) as the median of repetitions; recall@10 is against the exact
filtered ground truth. Run ``imagemesh bench --help``; results go to ``benchmarks/results/``. The load test, the
switch-memory probe and the embedding throughput benchmark are sub-commands
(:mod:`imagemesh.bench.commands`). Import :mod:`imagemesh.bench.runner` for ``BenchConfig`` /
``run_benchmark``.
"""
