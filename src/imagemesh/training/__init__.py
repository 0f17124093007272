"""Training embedding networks with torch (the `train` extra) and exporting them to ONNX; run through `imagemesh train ...`."""
