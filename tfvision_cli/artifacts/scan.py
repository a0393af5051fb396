"""Untrusted SavedModels: check a graph's ops against an allow-list before anything in it runs.

`tf.saved_model.load` and the serving signature run whatever ops the file holds: a SavedModel
can read and write files (ReadFile, WriteFile, SaveV2), call Python, print, or run a graph kept
inside a string constant (DatasetFromGraph). A `.keras` file is protected by Keras's safe_mode;
this is the SavedModel's equivalent, on the protocol buffer alone, before TensorFlow loads it.

An allow-list, not a deny-list: every op anywhere in the file (its graph and every function of
its library) must be one a classifier needs (ALLOWED: arithmetic, activations, convolutions,
pooling, normalisation, shapes and indexing, control flow, function calls, variables, random
numbers, image decoding and resizing). An op tfvision did not think of is refused by name. The
checkpoint ops are the one exception, and only where loading needs them:
- RestoreV2 (reads the SavedModel's own variables) only on the saver's restore path;
- SaveV2 and MergeV2Checkpoints (write a checkpoint) only on the saver's save path, which
  loading never runs;
and neither on any path that loading or serving does run: the signatures (the init op's too),
every collection (TF1 loaders run `saved_model_main_op`, `legacy_init_op`, ...), the functions
the object graph restores with. `--trust-model` skips the check (and says so). TFLite and ONNX
need none: LiteRT runs builtin ops only (no Flex or custom op is registered here) and
onnxruntime only the standard ONNX domains.
"""

from __future__ import annotations

from pathlib import Path

from tfvision_cli.errors import TfvisionError
from tfvision_cli.text import first_few

# What a Keras classifier's SavedModel holds (every registered model, keras.applications nets,
# mixed precision) and what the image_bytes signature decodes with; see
# tests/test_untrusted.py for the models this list is checked against.
_ALLOWED_BY_KIND = {
    "graph plumbing, functions, control flow": """
        Const Identity IdentityN NoOp Placeholder PlaceholderWithDefault StopGradient
        PartitionedCall StatefulPartitionedCall If StatelessIf While StatelessWhile Case
        StatelessCase Switch Merge Enter Exit NextIteration LoopCond _Arg _Retval Assert
        CheckNumerics EnsureShape PreventGradient Snapshot
    """,
    "variables": """
        VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp
        VarIsInitializedOp DisableCopyOnRead DestroyResourceOp ResourceGather VariableV2
        Variable Assign IsVariableInitialized
    """,
    "arithmetic and comparison": """
        Add AddV2 AddN Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod TruncateDiv
        Mod Neg Abs Sign Square Sqrt Rsqrt Reciprocal Inv Pow Exp Expm1 Log Log1p Floor Ceil
        Round Rint Maximum Minimum SquaredDifference Erf Erfc Tanh Sigmoid Sin Cos Tan Atan
        Atan2 Equal NotEqual Less LessEqual Greater GreaterEqual LogicalAnd LogicalOr
        LogicalNot IsNan IsInf IsFinite Select SelectV2 ClipByValue Cast Bitcast ZerosLike
        OnesLike Fill Range LinSpace BiasAdd BiasAddV1 MatMul BatchMatMul BatchMatMulV2
        BatchMatMulV3 Einsum Cumsum Cumprod Sum Prod Mean Max Min ArgMax ArgMin All Any
        L2Loss TopKV2 InTopKV2
    """,
    "activations and normalisation": """
        Relu Relu6 Elu Selu LeakyRelu Softplus Softsign Softmax LogSoftmax FusedBatchNorm
        FusedBatchNormV2 FusedBatchNormV3
    """,
    "convolutions and pooling": """
        Conv2D Conv3D Conv DepthwiseConv2dNative Conv2DBackpropInput MaxPool MaxPoolV2
        AvgPool MaxPool3D AvgPool3D
    """,
    "shapes and indexing": """
        Shape ShapeN Size Rank Reshape Squeeze ExpandDims Transpose ConcatV2 Concat Pack
        Unpack Split SplitV Slice StridedSlice Gather GatherV2 GatherNd ScatterNd Tile Pad
        PadV2 MirrorPad BroadcastTo BroadcastArgs BroadcastGradientArgs Reverse ReverseV2
        OneHot Where TensorScatterUpdate MatrixBandPart DepthToSpace SpaceToDepth
        SpaceToBatchND BatchToSpaceND
    """,
    "recurrent layers (tf.while_loop over a TensorList)": """
        TensorListReserve TensorListFromTensor TensorListGetItem TensorListSetItem
        TensorListStack TensorListLength TensorListElementShape
    """,
    "random numbers (dropout and noise layers; never reached at inference)": """
        RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal
        StatelessRandomUniformV2 StatelessRandomNormalV2 StatelessRandomUniformIntV2
        StatelessTruncatedNormalV2 StatelessRandomGetKeyCounter
        StatelessRandomGetKeyCounterAlg StatelessRandomGetAlg RngReadAndSkip RngBitGenerator
        StatelessRandomUniform StatelessRandomNormal
    """,
    "images: decoding (from bytes a caller sends, never from a file) and resizing": """
        DecodeImage DecodePng DecodeJpeg DecodeBmp DecodeGif ResizeBilinear
        ResizeNearestNeighbor ResizeBicubic ResizeArea ScaleAndTranslate RGBToHSV HSVToRGB
        AdjustContrastv2 ExtractJpegShape DecodeRaw Substr
    """,
    "strings that name checkpoint shards (no file access of their own)": """
        StringJoin ShardedFilename StaticRegexFullMatch
    """,
}
ALLOWED = frozenset(op for ops in _ALLOWED_BY_KIND.values() for op in ops.split())

RESTORE_OPS = frozenset({"RestoreV2"})
SAVE_OPS = frozenset({"SaveV2", "MergeV2Checkpoints"})


def check_savedmodel(path: Path) -> None:
    """Raise TfvisionError naming the ops that make the SavedModel at path unsafe to run."""
    problems = sorted(unsafe_ops(Path(path)))
    if problems:
        shown = first_few(problems, 6)
        raise TfvisionError(
            f"{path} is refused: its graph holds ops that tfvision does not allow in a "
            f"classifier ({shown}); nothing of it was run",
            hint="if you trust whoever made it, --trust-model runs it anyway",
        )


def unsafe_ops(path: Path) -> set[str]:
    """The ops that make the SavedModel folder at path unsafe: 'Op' for an op that is allowed
    nowhere, 'Op (on the path loading runs)' for a checkpoint op outside its own path."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as e:  # protobuf's DecodeError and friends
        raise TfvisionError(f"{path} is not a readable SavedModel ({type(e).__name__})") from None
    bad: set[str] = set()
    for meta_graph in sm.meta_graphs:
        bad |= _meta_graph_problems(meta_graph)
    return bad


def _meta_graph_problems(meta_graph) -> set[str]:
    graph = meta_graph.graph_def
    library = {f.signature.name: f for f in graph.library.function}
    every = {n.op for n in graph.node} | {n.op for f in library.values() for n in f.node_def}
    every -= set(library)  # a function called as an op is checked through its body
    checkpoint = RESTORE_OPS | SAVE_OPS
    bad = {op for op in every if op not in ALLOWED and op not in checkpoint}
    run = _reachable(graph, library, _run_roots(meta_graph))
    bad |= {f"{op} (on the path loading runs)" for op in run & checkpoint}
    saver = meta_graph.saver_def
    restore = _reachable(graph, library, ([_node(saver.restore_op_name)], []))
    bad |= {f"{op} (on the restore path)" for op in restore & SAVE_OPS}
    return bad


def _node(tensor_name: str) -> str:
    return tensor_name.split(":")[0].lstrip("^")


def _run_roots(meta_graph) -> tuple[list[str], list[str]]:
    """(graph nodes, library functions) that loading or serving may run: every signature's
    outputs (the init op's signature too), every collection's nodes, the object graph's
    functions and the functions it saves and restores with."""
    nodes = [
        _node(t.name)
        for sig in meta_graph.signature_def.values()
        for t in (*sig.outputs.values(), *sig.inputs.values())
    ]
    for collection in meta_graph.collection_def.values():
        nodes += [_node(name) for name in collection.node_list.value]
        nodes += [_node(b.decode("utf-8", "replace")) for b in collection.bytes_list.value]
    funcs = []
    for obj in meta_graph.object_graph_def.nodes:
        funcs += list(obj.function.concrete_functions)
        if obj.bare_concrete_function.concrete_function_name:
            funcs.append(obj.bare_concrete_function.concrete_function_name)
        for saveable in obj.saveable_objects.values():
            funcs += [saveable.save_function, saveable.restore_function]
    return nodes, funcs


def _reachable(graph, library: dict, roots: tuple[list[str], list[str]]) -> set[str]:
    """The ops that running the roots can execute: the nodes they depend on, and every
    function those nodes call (through attributes or as ops), recursively."""
    nodes = {n.name: n for n in graph.node}
    node_queue, func_queue = list(roots[0]), list(roots[1])
    ops: set[str] = set()
    seen_nodes: set[str] = set()
    while node_queue:
        name = node_queue.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        ops.add(node.op)
        node_queue += [_node(i) for i in node.input]
        func_queue += _called(node, library)
    seen_funcs: set[str] = set()
    while func_queue:
        fname = func_queue.pop()
        if fname in seen_funcs or fname not in library:
            continue
        seen_funcs.add(fname)
        for node in library[fname].node_def:
            ops.add(node.op)
            func_queue += _called(node, library)
    return ops - set(library)


def _called(node, library: dict) -> list[str]:
    """The functions a node runs: its function-valued attributes, or itself as an op."""
    names = [node.op] if node.op in library else []
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names += [f.name for f in attr.list.func]
    return names
