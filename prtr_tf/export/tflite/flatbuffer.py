"""Reading and rewriting TFLite flatbuffers with the schema of ai-edge-litert: the
operator list (`list_ops`), the outputs' names (`rename_outputs`) and the joining of
two converted models into one (`merge_network_and_readout`, what "int8_full" needs:
see `prtr_tf.export.tflite.convert`).
"""
import flatbuffers

CUSTOM = 32  # BuiltinOperator.CUSTOM in the TFLite schema


def schema():
    """The generated TFLite schema module (``ai_edge_litert.schema_py_generated``)."""
    from ai_edge_litert import schema_py_generated
    return schema_py_generated


def builtin_names():
    """{builtin operator code: name}."""
    return {v: k for k, v in vars(schema().BuiltinOperator).items() if not k.startswith("_")}


def load_bytes(path_or_bytes):
    """The model bytes of a .tflite path or of bytes."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    with open(path_or_bytes, "rb") as f:
        return f.read()


def unpack(flatbuffer):
    """The mutable object tree (``ModelT``) of a model."""
    s = schema()
    return s.ModelT.InitFromObj(s.Model.GetRootAsModel(bytearray(flatbuffer), 0))


def pack(model, size_hint=0):
    """A ``ModelT`` -> flatbuffer bytes (file identifier TFL3)."""
    builder = flatbuffers.Builder(int(size_hint) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(x):
    return x.decode() if isinstance(x, bytes) else x


def list_ops(flatbuffer):
    """Operator names used by a TFLite model; custom ops (Flex included) by their
    custom code, prefixed ``CUSTOM:``."""
    model = schema().Model.GetRootAsModel(bytearray(flatbuffer), 0)
    names = builtin_names()
    ops = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == CUSTOM:
            custom = code.CustomCode()
            ops.append("CUSTOM:" + (custom.decode() if custom else "?"))
        else:
            ops.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return ops


def rename_outputs(model, output_names):
    """Names the signature outputs ``output_0``, ``output_1``, ... of a ``ModelT`` (and
    their tensors) ``output_names[0]``, ``output_names[1]``, ..."""
    if len(model.signatureDefs or []) != 1:
        raise ValueError("expected exactly one signature in the converted model")
    sig = model.signatureDefs[0]
    graph = model.subgraphs[sig.subgraphIndex]
    for out in sig.outputs:
        key = _name(out.name)
        if not key.startswith("output_"):
            continue
        new = output_names[int(key[len("output_"):])]
        out.name = new
        graph.tensors[out.tensorIndex].name = new


def merge_network_and_readout(net_fb, net_output_names, readout_fb):
    """Joins two converted models into one: the network's outputs feed the readout's
    inputs (matched by name: the network's i-th signature output ``output_i`` is
    ``net_output_names[i]``, the readout's input of that name), the result has the
    network's input and the readout's outputs (still named ``output_i``).

    The readout's operators and tensors are appended to the network's main subgraph,
    its other subgraphs (WHILE/IF bodies) appended with their indices shifted, its
    buffers and operator codes appended (operator codes shared when equal).
    """
    net, ro = unpack(net_fb), unpack(readout_fb)
    if len(net.signatureDefs or []) != 1 or len(ro.signatureDefs or []) != 1:
        raise ValueError("expected exactly one signature in each model to merge")
    net_sig, ro_sig = net.signatureDefs[0], ro.signatureDefs[0]
    main = net.subgraphs[net_sig.subgraphIndex]

    net_out = {}
    for out in net_sig.outputs:
        key = _name(out.name)
        net_out[net_output_names[int(key[len("output_"):])]] = out.tensorIndex
    ro_main_index = ro_sig.subgraphIndex
    ro_main = ro.subgraphs[ro_main_index]
    inputs = {}
    for inp in ro_sig.inputs:
        key = _name(inp.name)
        if key not in net_out:
            raise ValueError(f"readout input {key!r} is not a network output "
                             f"({sorted(net_out)})")
        inputs[inp.tensorIndex] = net_out[key]
    if sorted(inputs) != sorted(int(i) for i in ro_main.inputs):
        raise ValueError("the readout's signature inputs are not its subgraph's inputs")

    def code_key(c):
        return (int(c.builtinCode), int(c.deprecatedBuiltinCode),
                _name(c.customCode) if c.customCode is not None else None, int(c.version))

    codes = {code_key(c): i for i, c in enumerate(net.operatorCodes)}
    code_map = []
    for c in ro.operatorCodes:
        if code_key(c) not in codes:
            net.operatorCodes.append(c)
            codes[code_key(c)] = len(net.operatorCodes) - 1
        code_map.append(codes[code_key(c)])
    buffer_offset = len(net.buffers)
    net.buffers.extend(ro.buffers)
    subgraph_map, next_index = {}, len(net.subgraphs)
    for i in range(len(ro.subgraphs)):
        if i == ro_main_index:
            subgraph_map[i] = net_sig.subgraphIndex
        else:
            subgraph_map[i], next_index = next_index, next_index + 1
    tensor_offset = len(main.tensors)

    def main_tensor(i):
        i = int(i)
        return -1 if i < 0 else inputs.get(i, i + tensor_offset)

    subgraph_fields = ("condSubgraphIndex", "bodySubgraphIndex", "thenSubgraphIndex",
                       "elseSubgraphIndex", "initSubgraphIndex", "decompositionSubgraphIndex")
    for i, sg in enumerate(ro.subgraphs):
        for t in sg.tensors:
            t.buffer = int(t.buffer) + buffer_offset
        for op in sg.operators:
            op.opcodeIndex = code_map[op.opcodeIndex]
            options = op.builtinOptions
            for field in subgraph_fields:
                if options is not None and hasattr(options, field):
                    setattr(options, field, subgraph_map[int(getattr(options, field))])
            if i == ro_main_index:
                for field in ("inputs", "outputs", "intermediates"):
                    values = getattr(op, field)
                    if values is not None:
                        setattr(op, field, [main_tensor(v) for v in values])
        if i != ro_main_index:
            net.subgraphs.append(sg)
    main.tensors.extend(ro_main.tensors)
    main.operators.extend(ro_main.operators)
    main.outputs = [main_tensor(v) for v in ro_main.outputs]
    for out in ro_sig.outputs:
        out.tensorIndex = main_tensor(out.tensorIndex)
    net_sig.outputs = ro_sig.outputs
    return pack(net, len(net_fb) + len(readout_fb))
