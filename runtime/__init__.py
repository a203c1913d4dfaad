"""Everything a device needs to run detection plus liveness. Imports no TensorFlow, Keras or tf2onnx."""
