"""ONNX Runtime models: what each computes lives here, how it runs (providers, threads) in
:mod:`countenance.vision.onnx.runtime`. Nothing is loaded at import."""
