"""Conversion of trained Keras models to ONNX and TFLite (float32 and int8), verification and the manifest."""
