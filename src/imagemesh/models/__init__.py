"""``Embedding`` implementations (``raw``, ``imagenet``) and the code that exports networks to ONNX.

Inference always runs in ONNX Runtime; torch is only needed by the export/training
scripts (optional ``train`` extra).
"""
