"""The model optimization pipeline: one source ONNX model -> optimized variants, measured,
selected per hardware profile.

Entry point: ``controller.optimize.pipeline.build_model``. Building blocks: ``source`` (inputs and
checks), ``onnx_variants`` / ``tflite_variants`` (builders), ``evaluate`` (measurements),
``select`` (pure per-profile choice).
"""
