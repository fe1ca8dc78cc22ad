"""Compare two ONNX consumers (two runtimes, two CPUs) op by op on an exported INT8 graph.

Over a whole network two correct consumers differ by a few LSB: a value on a rounding boundary flips by one
and the following requantizations spread the flip. Comparing every integer tensor recomputed from the *same*
integer inputs isolates each op instead. `exposing` makes every integer tensor (each activation
DequantizeLinear's input) a graph output; `fed_externally` also makes every such DequantizeLinear read its
tensor from a graph input, so one consumer recomputes each op from another consumer's values.

    python -m export.probe dump MODEL.onnx LR.png A.npz               # integer tensors, this machine
    python -m export.probe dump MODEL.onnx LR.png B.npz --from A.npz  # each op from A's inputs, elsewhere
    python -m export.probe compare A.npz B.npz                        # exit 1 if any op is off by > 1 LSB
"""
from __future__ import annotations

from adabm_deploy.extras import require  # first: a runtime-only install gets the install line, not a traceback

require(__name__, "python -m export.probe", ("onnx",))

import argparse
import io
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from runtime.atomic import write_bytes
from runtime.command import run_cli
from runtime.errors import UserError

FED = ".fed"  # suffix of the graph inputs that replace integer tensors


def integer_tensors(model: onnx.ModelProto) -> list[str]:
    """Activation tensors in their integer form: the inputs of DequantizeLinear that are not constants."""
    consts = {i.name for i in model.graph.initializer}
    return list(dict.fromkeys(n.input[0] for n in model.graph.node
                              if n.op_type == "DequantizeLinear" and n.input[0] not in consts))


def exposing(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` with `names` (uint8 tensors) as extra graph outputs."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.UINT8, None) for n in names)
    return out


def fed_externally(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """`exposing(model, names)` where every DequantizeLinear of a named tensor reads graph input name + FED."""
    out = exposing(model, names)
    wanted = set(names)
    for node in out.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in wanted:
            node.input[0] += FED
    out.graph.input.extend(helper.make_tensor_value_info(n + FED, TensorProto.UINT8, None) for n in names)
    return out


def ort_outputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run with ONNX Runtime at full optimization (the fused integer kernels a user gets)."""
    import onnxruntime as ort

    from runtime.engines.onnxruntime import session_options
    sess = ort.InferenceSession(model.SerializeToString(), session_options(0), providers=["CPUExecutionProvider"])
    return dict(zip((o.name for o in sess.get_outputs()), sess.run(None, feeds)))


def op_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names: list[str]) -> dict[str, int]:
    """Largest |a - b| per integer tensor (in LSB)."""
    return {n: int(np.abs(a[n].astype(np.int32) - b[n].astype(np.int32)).max()) for n in names}


def dump(model_path: Path, image: Path, out: Path, reference: Path | None) -> None:
    from adabm_deploy.images import read_rgb
    try:
        model = onnx.load(model_path)
    except Exception as exc:  # missing file, or protobuf's own decode errors
        raise UserError(f"{model_path}: cannot load an ONNX model ({str(exc).splitlines()[0]})") from None
    names = integer_tensors(model)
    if not names:
        raise UserError(f"{model_path}: no DequantizeLinear of an activation: not a QDQ INT8 graph")
    x = read_rgb(image).transpose(2, 0, 1)[None].astype(np.float32)
    feeds = {model.graph.input[0].name: x}
    if reference is None:
        values = ort_outputs(exposing(model, names), feeds)
    else:
        ref = load_npz(reference)
        missing = [n for n in names if n not in ref]
        if missing:
            raise UserError(f"{reference}: lacks {len(missing)} integer tensors of {model_path} (another model?)")
        values = ort_outputs(fed_externally(model, names), feeds | {n + FED: ref[n] for n in names})
    buf = io.BytesIO()
    np.savez_compressed(buf, **values)
    write_bytes(out, buf.getbuffer())
    print(f"wrote {out}: {len(names)} integer tensors")


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            return dict(data)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None


def compare(a_path: Path, b_path: Path) -> int:
    a, b = load_npz(a_path), load_npz(b_path)
    names = [n for n in a if n in b and a[n].dtype == np.uint8]
    if not names:
        raise UserError(f"{a_path}, {b_path}: no integer tensors in common")
    diffs = op_differences(a, b, names)
    exact = np.mean([np.mean(a[n] == b[n]) for n in names])
    worst = max(diffs, key=diffs.get)
    print(f"{len(names)} integer tensors: max |diff| {diffs[worst]} LSB ({worst}), "
          f"{100 * exact:.4f}% of values identical")
    return 0 if diffs[worst] <= 1 else 1


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.probe", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="run ONNX Runtime and save every integer tensor")
    d.add_argument("model", type=Path)
    d.add_argument("image", type=Path, help="LR input image")
    d.add_argument("output", type=Path, help=".npz to write")
    d.add_argument("--from", dest="reference", type=Path,
                   help="another dump: compute each op from its integer inputs instead of this run's own")
    c = sub.add_parser("compare", help="largest difference per integer tensor between two dumps")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args(argv)
    if args.command == "dump":
        dump(args.model, args.image, args.output, args.reference)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(run_cli(main))
