"""Keras -> ONNX (tf2onnx), ONNX static int8 quantization (ONNX Runtime), and the BlazeFace .tflite -> ONNX."""
from __future__ import annotations

import logging
import warnings
import tempfile
from pathlib import Path

import numpy as np

from .options import OnnxQuantOptions
from .tools import quiet_output


def keras_to_onnx(model, path: str | Path, opset: int) -> None:
    """Write ``model`` as ONNX with a fixed (1, H, W, 3) float32 NHWC input named like the Keras input."""
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    name = model.inputs[0].name.split(":")[0]
    spec = [tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name=name)]
    with quiet_output():
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(path))


def tflite_to_onnx(src: str | Path, dst: str | Path, opset: int) -> None:
    """Convert a float .tflite (the BlazeFace detectors) so detection can run on ONNX Runtime too."""
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    with quiet_output(), warnings.catch_warnings():
        # tf2onnx reads the .tflite with tf.lite.Interpreter, which TensorFlow flags as deprecated on every use
        warnings.filterwarnings("ignore", ".*tf.lite.Interpreter is deprecated", UserWarning)
        tf2onnx.convert.from_tflite(str(src), opset=opset, output_path=str(dst))


class _Reader:
    """The ``CalibrationDataReader`` protocol over an array of model inputs, one at a time."""

    def __init__(self, input_name: str, inputs: np.ndarray) -> None:
        self._items = iter([{input_name: x[None].astype(np.float32)} for x in inputs])

    def get_next(self) -> dict | None:
        return next(self._items, None)

    def rewind(self) -> None:
        raise NotImplementedError


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, inputs: np.ndarray, options: OnnxQuantOptions) -> None:
    """Static int8: shape inference and graph clean-up first (``quant_pre_process``), per-channel affines
    turned into depthwise 1x1 convolutions, MinMax calibration on ``inputs``, then ``quantize_static`` with
    ``options``; optionally a uint8 graph input (see ``_uint8_input``)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp, quiet_output():
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        graph = onnx.load(str(pre))
        if options.affine_as_conv:
            affine_as_depthwise_conv(graph)
            onnx.save(graph, str(pre))
        input_name = graph.graph.input[0].name
        exclude = [n.name for n in graph.graph.node if n.op_type in options.exclude_op_types]
        if options.float_convs:
            exclude += stem_nodes(graph, options.float_convs)
        quantize_static(
            str(pre),
            str(out_path),
            _Reader(input_name, inputs),
            quant_format=QuantFormat[options.quant_format],
            activation_type=QuantType[options.activation_type],
            weight_type=QuantType[options.weight_type],
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            nodes_to_exclude=exclude,
        )
    if options.uint8_input:
        _uint8_input(out_path)


def stem_nodes(model, convs: int = 1) -> list[str]:
    """Names of the nodes from the input up to and including the ``convs``-th Conv (kept in float)."""
    names, seen = [], 0
    for node in model.graph.node:
        names.append(node.name)
        seen += node.op_type == "Conv"
        if seen == convs:
            break
    return names


def affine_as_depthwise_conv(model) -> int:
    """Rewrite ``Add(Mul(x, a), b)`` with per-channel constants a, b of shape (1, C, 1, 1) on an NCHW tensor
    as one depthwise 1x1 ``Conv`` (weights a, bias b); returns how many were rewritten.

    Exact (a 1x1 convolution has no padding). It matters for a BatchNormalization that follows a ReLU (as in
    LivenessNet), which no converter can fold into a convolution: int8 ONNX Runtime runs the broadcast
    QLinearMul/QLinearAdd pair several times slower than a depthwise QLinearConv doing the same arithmetic
    (LivenessNet int8 went from 1.5x slower than float32 to faster than it).
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    rewritten = 0
    for mul in list(graph.node):
        if mul.op_type != "Mul" or mul.input[1] not in consts:
            continue
        after = users.get(mul.output[0], [])
        if len(after) != 1 or after[0].op_type != "Add" or after[0].input[0] != mul.output[0]:
            continue
        add = after[0]
        if add.input[1] not in consts:
            continue
        a = numpy_helper.to_array(consts[mul.input[1]])
        b = numpy_helper.to_array(consts[add.input[1]])
        if a.ndim != 4 or a.shape[0] != 1 or a.shape[2:] != (1, 1) or b.shape != a.shape:
            continue
        channels = a.shape[1]
        weight = numpy_helper.from_array(a.reshape(channels, 1, 1, 1).astype(np.float32), f"{mul.name}_dw_weight")
        bias = numpy_helper.from_array(b.reshape(channels).astype(np.float32), f"{mul.name}_dw_bias")
        graph.initializer.extend([weight, bias])
        conv = helper.make_node("Conv", [mul.input[0], weight.name, bias.name], [add.output[0]],
                                name=f"{mul.name}_as_depthwise", group=channels, kernel_shape=[1, 1])
        index = list(graph.node).index(mul)
        graph.node.remove(mul)
        graph.node.remove(add)
        graph.node.insert(index, conv)
        rewritten += 1
    onnx.checker.check_model(model)
    return rewritten


def _uint8_input(path: str | Path) -> None:
    """Make the graph input uint8 when the first node quantizes it with scale 1 and zero point 0 (what the
    0..255 edge images in the calibration set guarantee): that QuantizeLinear is then the identity on camera
    bytes, so it is removed and the bytes feed the first integer op directly. Left alone otherwise."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    name = graph.input[0].name
    users = [n for n in graph.node if name in n.input]
    if len(users) != 1 or users[0].op_type != "QuantizeLinear":
        return
    q = users[0]
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    scale, zero = consts.get(q.input[1]), consts.get(q.input[2]) if len(q.input) > 2 else None
    if scale is None or zero is None or zero.dtype != np.uint8 or float(scale) != 1.0 or int(zero) != 0:
        return
    for node in graph.node:
        node.input[:] = [name if i == q.output[0] else i for i in node.input]
    graph.node.remove(q)
    graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    onnx.save(model, str(path))
