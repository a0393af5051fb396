"""Untrusted SavedModels: check a graph's ops before anything in it runs.

`tf.saved_model.load` and the serving signature run whatever ops the file holds: a SavedModel
can read and write files (ReadFile, WriteFile, SaveV2), call Python, or print. A `.keras` file
is protected by Keras's safe_mode; this is the SavedModel's equivalent. Two checks, both on the
protocol buffer alone:
- nowhere in the file: ops that touch files, Python, the network or the terminal (a floor that
  includes `saved_model_cli scan`'s denylist: ReadFile, WriteFile, PrintV2);
- on every path that loading and serving execute (the signatures, the init op, the functions
  the object graph restores with): only stateless ops and the few stateful ones a classifier
  needs (variables, function calls, random numbers). The saver's own SaveV2 is not on them.
`--trust-model` skips both (and says so). TFLite and ONNX need no such check: LiteRT runs
builtin ops only (no Flex or custom op is registered here) and onnxruntime only the standard
ONNX domains.
"""

from __future__ import annotations

from pathlib import Path

from tfvision_cli.errors import TfvisionError

DENIED = frozenset(
    {
        # files
        "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "LoadAndRemapMatrix",
        "Save", "SaveSlices", "Restore", "RestoreSlice",
        "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "TFRecordReader",
        "TFRecordReaderV2", "TextLineReader", "TextLineReaderV2", "WholeFileReader",
        "WholeFileReaderV2", "LMDBReader", "IdentityReader", "IdentityReaderV2",
        "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
        "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset",
        "SaveDataset", "SaveDatasetV2", "LoadDataset", "SnapshotDataset", "SnapshotDatasetV2",
        "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "GenerateVocabRemapping",
        "DecodeProtoV2", "EncodeProto",
        # Python
        "PyFunc", "PyFuncStateless", "EagerPyFunc",
        # the terminal, logs and summaries
        "Print", "PrintV2", "CreateSummaryFileWriter", "CreateSummaryDbWriter",
        "WriteSummary", "WriteRawProtoSummary", "ImportEvent", "FlushSummaryWriter",
        # the network and debuggers
        "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
        "DebugNumericSummary", "DebugNumericSummaryV2", "_Send", "_Recv", "_HostSend",
        "_HostRecv", "Send", "Recv", "RpcCall", "Rpc", "TryRpc", "CollectiveReduce",
        "CollectiveReduceV2", "CollectiveGather", "CollectiveGatherV2", "CollectiveBcastSend",
        "CollectiveBcastRecv", "CollectiveBcastSendV2", "CollectiveBcastRecvV2",
    }
)  # fmt: skip

STATEFUL_ALLOWED = frozenset(
    {
        "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp",
        "AssignSubVariableOp", "VarIsInitializedOp", "DisableCopyOnRead", "DestroyResourceOp",
        "ResourceGather", "StatefulPartitionedCall", "PartitionedCall", "If", "While", "Case",
        "NoOp", "Placeholder", "RandomUniform", "RandomUniformInt", "RandomStandardNormal",
        "TruncatedNormal", "StatelessRandomUniformV2", "RngReadAndSkip",
        "RngBitGenerator", "StatelessRandomGetKeyCounter", "Assert",
    }
)  # fmt: skip


def check_savedmodel(path: Path) -> None:
    """Raise TfvisionError naming the ops that make the SavedModel at path unsafe to run."""
    problems = sorted(unsafe_ops(Path(path)))
    if problems:
        more = f" and {len(problems) - 6} more" if len(problems) > 6 else ""
        shown = ", ".join(problems[:6]) + more
        raise TfvisionError(
            f"{path} is refused: its graph holds ops that a classifier does not need and that "
            f"could read or write files, run Python or reach the network ({shown}); nothing of "
            "it was run",
            hint="if you trust whoever made it, --trust-model runs it anyway",
        )


def unsafe_ops(path: Path) -> set[str]:
    """The ops that make the SavedModel folder at path unsafe ('op' or 'op (where)')."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    sm = saved_model_pb2.SavedModel()
    try:
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as e:  # protobuf's DecodeError and friends
        raise TfvisionError(f"{path} is not a readable SavedModel ({type(e).__name__})") from None
    bad: set[str] = set()
    for meta_graph in sm.meta_graphs:
        graph = meta_graph.graph_def
        library = {f.signature.name: f for f in graph.library.function}
        every = [n.op for n in graph.node] + [n.op for f in library.values() for n in f.node_def]
        bad.update(op for op in every if op in DENIED)
        for op in _reachable_ops(meta_graph, library):
            if op in DENIED or op in STATEFUL_ALLOWED:
                continue
            op_def = op_def_registry.get(op)
            if op_def is None:
                bad.add(f"{op} (unknown to TensorFlow)")
            elif op_def.is_stateful:
                bad.add(op)
    return bad


def _reachable_ops(meta_graph, library: dict) -> set[str]:
    """Ops on the paths that loading and serving execute."""
    graph = meta_graph.graph_def
    nodes = {n.name: n for n in graph.node}
    node_queue = [
        t.name.split(":")[0].lstrip("^")
        for sig in meta_graph.signature_def.values()
        for t in sig.outputs.values()
    ]
    func_queue = []
    for obj in meta_graph.object_graph_def.nodes:
        func_queue += list(obj.function.concrete_functions)
        if obj.bare_concrete_function.concrete_function_name:
            func_queue.append(obj.bare_concrete_function.concrete_function_name)
        for saveable in obj.saveable_objects.values():
            func_queue += [saveable.save_function, saveable.restore_function]
    ops: set[str] = set()
    seen_nodes: set[str] = set()
    while node_queue:
        name = node_queue.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        ops.add(node.op)
        node_queue += [i.split(":")[0].lstrip("^") for i in node.input]
        func_queue += _called(node)
    seen_funcs: set[str] = set()
    while func_queue:
        fname = func_queue.pop()
        if fname in seen_funcs or fname not in library:
            continue
        seen_funcs.add(fname)
        for node in library[fname].node_def:
            ops.add(node.op)
            func_queue += _called(node)
            if node.op in library:  # a function called directly as an op
                func_queue.append(node.op)
    return ops


def _called(node) -> list[str]:
    names = []
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names += [f.name for f in attr.list.func]
    return names
