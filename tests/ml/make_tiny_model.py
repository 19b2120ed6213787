#!/usr/bin/env python3
"""make_tiny_model.py — writes the tiny ONNX image-embedding models the
embed-model loader tests run (tests/unit/test_ml.c), with Debian's
python3-onnx: fixed weights, so every run writes the same bytes.

  tiny.onnx      input "pixels" float32 [1,3,32,32] -> Conv 3->8 (3x3,
                 stride 2) -> Relu -> GlobalAveragePool -> Flatten -> Gemm
                 8->16 -> output "embedding" [1,16]. Also a second output
                 "features" (the 8 pooled values).
  tiny_dyn.onnx  the same graph with symbolic batch/height/width and
                 outputs of symbolic shape [n, d], so the loader must find the length
                 by running it.

  half.onnx      a float16 graph as converters write them (what the
                 ISNet model is): input "x" float32 [1,2,4,4] -> Cast to
                 float16 -> Mul by "k" (float16 [1,2,1,1], raw_data) ->
                 Add "b" (float16 [1], stored in int32_data) -> Concat
                 with itself on axis 1 -> Cast to float32 -> output "y"
                 [1,4,4,4]. k = (1/3, -2.5) and b = 0.1 as
                 float16; src/ml/onnx_fp32.c widens it to float32.

  expected.txt   the L2-normalised "embedding" of tiny.onnx for the 32x32
                 test pattern pixel(x, y, c) = (x * 7 + y * 13 + c * 50) %
                 256, normalised with MEAN and STD below, computed here with
                 numpy (an independent reference for the C loader's layout
                 and normalisation): 16 numbers, one a line.

Usage: make_tiny_model.py OUT_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(dynamic):
    rng = np.random.RandomState(20240601)
    w = rng.uniform(-1.0, 1.0, size=(8, 3, 3, 3)).astype(np.float32)
    b = rng.uniform(-0.1, 0.1, size=(8,)).astype(np.float32)
    # Positive bias after the Relu so no image maps to the zero vector.
    g = rng.uniform(-1.0, 1.0, size=(16, 8)).astype(np.float32)
    gb = rng.uniform(0.5, 1.0, size=(16,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "conv_w"),
        numpy_helper.from_array(b, "conv_b"),
        numpy_helper.from_array(g, "fc_w"),
        numpy_helper.from_array(gb, "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["pixels", "conv_w", "conv_b"], ["c"],
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["embedding"],
                         transB=1),
    ]
    if dynamic:
        inp = helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                            ["n", 3, "h", "w"])
        outs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", "d"]),
                helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", "f"])]
    else:
        inp = helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                            [1, 3, 32, 32])
        outs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 16]),
                helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 8])]
    graph = helper.make_graph(nodes, "tiny_embed", [inp], outs, inits)
    model = helper.make_model(graph, producer_name="pixmill-tests",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


MEAN = np.array([0.5, 0.4, 0.3], np.float32)
STD = np.array([0.2, 0.25, 0.3], np.float32)


def reference(model):
    """Runs tiny.onnx's graph with numpy on the test pattern."""
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    y, x = np.mgrid[0:32, 0:32]
    img = np.stack([(x * 7 + y * 13 + c * 50) % 256 for c in range(3)])
    img = (img.astype(np.float32) / 255.0 - MEAN[:, None, None]) / STD[:, None, None]
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    conv = np.zeros((8, 16, 16), np.float64)
    for o in range(8):
        for i in range(16):
            for j in range(16):
                patch = pad[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
                conv[o, i, j] = (patch * w["conv_w"][o]).sum() + w["conv_b"][o]
    feat = np.maximum(conv, 0).mean(axis=(1, 2))
    emb = w["fc_w"].astype(np.float64) @ feat + w["fc_b"]
    return emb / np.linalg.norm(emb)


def build_half():
    k = numpy_helper.from_array(np.array([1 / 3, -2.5], np.float16).reshape(1, 2, 1, 1), "k")
    # make_tensor stores the float16 bits of 0.1 in int32_data
    b = helper.make_tensor("b", TensorProto.FLOAT16, [1], [0.1])
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
        helper.make_node("Mul", ["xh", "k"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        # Concat has a float16 CPU kernel, so ONNX Runtime really rounds
        # to float16 here (it computes Mul and Add in float32)
        helper.make_node("Concat", ["a", "a"], ["yh"], axis=1),
        helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes, "half", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])], [k, b],
        value_info=[helper.make_tensor_value_info("xh", TensorProto.FLOAT16, [1, 2, 4, 4])])
    model = helper.make_model(graph, producer_name="pixmill-tests",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, dyn in (("tiny.onnx", False), ("tiny_dyn.onnx", True)):
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(build(dyn).SerializeToString())
        os.replace(tmp, os.path.join(out, name))
    with open(os.path.join(out, "half.onnx"), "wb") as f:
        f.write(build_half().SerializeToString())
    with open(os.path.join(out, "expected.txt"), "w") as f:
        f.write("".join("%.8f\n" % v for v in reference(build(False))))


if __name__ == "__main__":
    main()
