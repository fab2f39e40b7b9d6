"""Small ONNX models the tests build (test helpers; no library code uses them).

The "echo" model is the shape of a real third-party sentence-embedding export: its first output
merely echoes ``input_ids``, the second is the computation that matters (the ``echo_onnx`` fixture
in conftest.py writes it once per session).
"""
import numpy as np

SEQ = 8  # the sequence length the echo-model tests compile at (the model's seq axis is dynamic)
DIM = 8
VOCAB = 30522  # synthetic / tokenized ids reach 30000


def make_echo_onnx(path, seq=None):
    """input_ids, attention_mask -> (echo_ids = input_ids, embeddings = tanh(emb[ids] @ w) * mask)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((VOCAB, DIM)).astype("float32"), "emb"),
             numpy_helper.from_array(rng.standard_normal((DIM, DIM)).astype("float32"), "w"),
             numpy_helper.from_array(np.array([-1], dtype="int64"), "axis")]
    dims = ["batch", seq or "seq"]
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims)
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims)
    echo = helper.make_tensor_value_info("echo_ids", TensorProto.INT64, dims)
    emb = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, dims + [DIM])
    nodes = [helper.make_node("Identity", ["input_ids"], ["echo_ids"]),
             helper.make_node("Gather", ["emb", "input_ids"], ["gathered"]),
             helper.make_node("MatMul", ["gathered", "w"], ["projected"]),
             helper.make_node("Tanh", ["projected"], ["activated"]),
             helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["mask_f", "axis"], ["mask_u"]),
             helper.make_node("Mul", ["activated", "mask_u"], ["embeddings"])]
    model = helper.make_model(helper.make_graph(nodes, "echo-embed", [ids, mask], [echo, emb], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def ort_outputs(path, feed):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
