"""ONNX Runtime and LiteRT builds of the same shipped model give the same decisions on the same frames."""
from __future__ import annotations

from dataclasses import replace

import cv2
import pytest

from liveness_edge.runtime.manifest import Manifest
from liveness_edge.runtime.pipeline import LivenessPipeline, PipelineOptions
from runtime_helpers import nuaa_files, require_shipped_manifest


def decisions(manifest, options, frames):
    pipeline = LivenessPipeline.from_manifest(manifest, options)
    out = []
    for frame in frames:
        out.append([(f.decision, f.p_real) for f in pipeline.process(frame).faces])
    return out


@pytest.mark.data
@pytest.mark.parametrize("model", ["livenessnet", "mobilenetv3"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_backends_give_the_same_decisions(shared_data, model, precision):
    manifest = require_shipped_manifest()
    have = {(m.name, m.format, m.precision) for m in Manifest.load(manifest).models}
    if not {(model, "onnx", precision), (model, "tflite", precision)} <= have:
        pytest.skip(f"the manifest lacks {model} {precision} on both backends")
    frames = [cv2.imread(str(f)) for label in ("real", "spoof") for f in nuaa_files(shared_data, label, 12, 61)]
    base = PipelineOptions(running_mode="image", model=model, precision=precision)
    onnx = decisions(manifest, replace(base, backend="onnx"), frames)
    lite = decisions(manifest, replace(base, backend="tflite"), frames)
    assert [len(a) for a in onnx] == [len(b) for b in lite]  # the same detector boxes on both backends
    pairs = [(a, b) for fa, fb in zip(onnx, lite) for a, b in zip(fa, fb)]
    assert len(pairs) >= 20
    gap = max(abs(a[1] - b[1]) for a, b in pairs)
    same = sum(a[0] == b[0] for a, b in pairs) / len(pairs)
    if precision == "fp32":  # the same float graph: same scores, same decisions
        assert gap < 0.01 and same == 1.0, (gap, same)
    else:  # int8 is quantized separately per backend (scores drift by up to ~0.4 against Keras in the
        assert same >= 0.9, (gap, same)  # export verification): decisions may differ only at the band's edge
