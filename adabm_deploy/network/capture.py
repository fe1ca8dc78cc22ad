"""Capture an FP32 PyTorch model as a network.graph.Graph with torch.fx.

torch.fx traces the module's Python forward symbolically, keeping calls to leaf modules (convs, batch norms,
activations, shuffles) as nodes named by their module path: exactly the names of the checkpoint's keys, which
the roles, the calibration artifact and every error message use. A module called more than once (CARN-M's
shared residual blocks) gives one node per call, the k-th named `<module>@k`: each call site has its own
activations and so its own quantization points. (torch.export would give an ATen-level
graph with functionalised, decomposed ops and no module names, and needs example shapes; these networks are
straight-line code that fx traces as written.) The trace is then normalised: batch norms and constant scales
fold into the conv before them, 1x1 diagonal convs at the image ends become per-channel affines (mean
shifts), the network's own pixel range is wrapped so that every graph maps RGB 0..255 to RGB 0..255.
Anything else is refused with the module and op that the tool cannot quantize.
"""
from __future__ import annotations

import operator
from collections import Counter

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from runtime.errors import UserError

from .graph import Graph, Node

LEAVES = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.PixelShuffle, nn.Upsample, nn.Identity)
SUPPORTED = ("conv (stride 1, same padding, any groups), batch norm after a conv, ReLU, PReLU, LeakyReLU, add, "
             "concat, constant scale after a conv, pixel shuffle, nearest upsample")
_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_RELU = {F.relu, torch.relu}


class _Tracer(fx.Tracer):
    """Leaf modules as above; records the module each node was made in, and each module call's output."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = [""]
        self.outputs: list[tuple[str, fx.Node]] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES)

    def call_module(self, m, forward, args, kwargs):
        name = self.path_of_module(m)
        self.stack.append(name)
        try:
            out = super().call_module(m, forward, args, kwargs)
        finally:
            self.stack.pop()
        if isinstance(out, fx.Proxy):
            self.outputs.append((name, out.node))
        return out

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["scope"] = self.stack[-1]
        return node


class _Refused(Exception):
    def __init__(self, module: str, what: str):
        super().__init__(f"module {module or '(top level)'}: {what}")


def _op_name(target) -> str:
    return getattr(target, "__name__", str(target))


def capture(model: nn.Module, source: str, role, features, pixel_range: float, scale: int,
            n_colors: int = 3) -> Graph:
    """role(conv name) -> its quantization role; features(name, module) -> whether its output feeds SKT."""
    tracer = _Tracer()
    try:
        fx_graph = tracer.trace(model)
    except Exception as exc:  # data-dependent control flow, an op fx cannot proxy
        where = tracer.stack[-1] or "(top level)"
        raise UserError(f"{source}: cannot capture the network as a graph (module {where}: "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    modules = dict(model.named_modules())
    try:
        nodes, names = _convert(fx_graph, modules, role)
        graph = Graph(nodes, names[_output_of(fx_graph)], n_colors=n_colors, scale=scale)
        _fold(graph)
        _mean_shifts(graph)
        _pixel_range(graph, pixel_range)
        _merge_affines(graph)
    except _Refused as exc:
        raise UserError(f"{source}: cannot quantize {exc} (supported: {SUPPORTED})") from None
    graph.features = [names[node] for name, node in tracer.outputs
                      if features(name, modules[name]) and names.get(node) in graph.nodes]
    return graph


def _output_of(fx_graph: fx.Graph) -> fx.Node:
    out = next(n for n in fx_graph.nodes if n.op == "output").args[0]
    if not isinstance(out, fx.Node):
        raise UserError("the network must return one tensor")
    return out


def _convert(fx_graph: fx.Graph, modules: dict[str, nn.Module], role) -> tuple[dict[str, Node], dict]:
    nodes: dict[str, Node] = {}
    names: dict[fx.Node, str] = {}  # fx node -> graph node name (an identity maps to its input's)
    used: Counter = Counter()
    calls: Counter = Counter()

    def unique(base: str) -> str:
        used[base] += 1
        return base if used[base] == 1 else f"{base}_{used[base] - 1}"

    def call_site(module: str) -> str:
        calls[module] += 1
        return module if calls[module] == 1 else f"{module}@{calls[module]}"

    def add(fx_node: fx.Node, node: Node) -> None:
        nodes[node.name] = node
        names[fx_node] = node.name

    for n in fx_graph.nodes:
        scope = n.meta.get("scope", "")
        where = scope + "." if scope else ""
        tensors = [a for a in n.args if isinstance(a, fx.Node)]
        if n.op == "placeholder":
            if any(v.op == "input" for v in nodes.values()):
                raise _Refused(scope, "a second input (the network must take one image)")
            add(n, Node("input", "input"))
        elif n.op == "output":
            continue
        elif n.op == "call_module":
            m = modules[n.target]
            ins = tuple(names[a] for a in tensors)
            site = call_site(n.target)
            if isinstance(m, nn.Identity):
                names[n] = ins[0]
            elif isinstance(m, nn.Conv2d):
                k = m.kernel_size[0]
                if (m.stride != (1, 1) or m.dilation != (1, 1) or m.kernel_size != (k, k)
                        or k % 2 == 0 or m.padding != (k // 2, k // 2) or m.padding_mode != "zeros"):
                    raise _Refused(n.target, f"Conv2d with kernel {m.kernel_size}, stride {m.stride}, padding "
                                             f"{m.padding}, dilation {m.dilation}, groups {m.groups}")
                bias = m.bias.detach().clone() if m.bias is not None else torch.zeros(m.out_channels)
                add(n, Node(site, "conv", ins, m.weight.detach().clone(), bias, role=role(n.target),
                            module=n.target, groups=m.groups))
            elif isinstance(m, nn.BatchNorm2d):
                add(n, Node(site, "batch_norm", ins, module=n.target))
                nodes[site].bn = m  # folded below
            elif isinstance(m, nn.ReLU):
                add(n, Node(site, "relu", ins, module=n.target))
            elif isinstance(m, nn.PReLU):
                add(n, Node(site, "prelu", ins, m.weight.detach().clone(), module=n.target))
            elif isinstance(m, nn.LeakyReLU):
                add(n, Node(site, "leaky_relu", ins, slope=float(m.negative_slope), module=n.target))
            elif isinstance(m, nn.PixelShuffle):
                add(n, Node(site, "pixel_shuffle", ins, factor=m.upscale_factor, module=n.target))
            elif isinstance(m, nn.Upsample):
                add(n, _upsample(site, ins, m.mode, m.scale_factor, m.size))
            else:
                raise _Refused(n.target, f"op {type(m).__name__}")
        elif n.op in ("call_function", "call_method"):
            target = n.target
            ins = tuple(names[a] for a in tensors)
            numbers = [a for a in n.args if isinstance(a, (int, float)) and not isinstance(a, bool)]
            if target in _ADD or target in ("add", "add_"):
                if len(ins) != 2 or numbers or n.kwargs.get("alpha", 1) != 1:
                    raise _Refused(scope, "an add of a constant (only tensor + tensor)")
                add(n, Node(unique(f"{where}add"), "add", ins, module=scope))
            elif target in _MUL or target in ("mul", "mul_"):
                if len(ins) != 1 or len(numbers) != 1:
                    raise _Refused(scope, "a product of two tensors (only a tensor times a constant)")
                add(n, Node(unique(f"{where}scale"), "scale", ins, slope=float(numbers[0]), module=scope))
            elif target in _RELU or target in ("relu", "relu_"):
                add(n, Node(unique(f"{where}relu"), "relu", ins, module=scope))
            elif target is F.leaky_relu:
                slope = n.kwargs.get("negative_slope", n.args[1] if len(n.args) > 1 else 0.01)
                add(n, Node(unique(f"{where}leaky_relu"), "leaky_relu", ins, slope=float(slope), module=scope))
            elif target is torch.cat:
                parts = n.args[0]
                dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
                if dim != 1 or not all(isinstance(p, fx.Node) for p in parts):
                    raise _Refused(scope, f"concat along dim {dim} (only channels, dim 1)")
                add(n, Node(unique(f"{where}concat"), "concat", tuple(names[p] for p in parts), module=scope))
            elif target in (F.pixel_shuffle, torch.pixel_shuffle):
                r = n.args[1] if len(n.args) > 1 else n.kwargs["upscale_factor"]
                add(n, Node(unique(f"{where}pixel_shuffle"), "pixel_shuffle", ins, factor=int(r), module=scope))
            elif target is F.interpolate:
                add(n, _upsample(unique(f"{where}upsample"), ins, n.kwargs.get("mode", "nearest"),
                                 n.kwargs.get("scale_factor"), n.kwargs.get("size")))
            else:
                raise _Refused(scope, f"op {_op_name(target)}")
        else:  # get_attr: a parameter used outside a module call
            raise _Refused(scope, f"a {n.op} of {n.target}")
    return nodes, names


def _upsample(name: str, ins: tuple[str, ...], mode, factor, size) -> Node:
    if mode != "nearest" or size is not None or factor is None or float(factor) != int(factor):
        raise _Refused(name, f"interpolation mode {mode!r} / scale {factor} / size {size} (only nearest, an "
                             "integer factor)")
    return Node(name, "upsample", ins, factor=int(factor), module=name)


def _replace(graph: Graph, old: str, new: str) -> None:
    """Consumers of `old` read `new`; `old` is removed."""
    for n in graph.nodes.values():
        n.inputs = tuple(new if i == old else i for i in n.inputs)
    if graph.output == old:
        graph.output = new
    del graph.nodes[old]


def _fold(graph: Graph) -> None:
    """Batch norms and constant scales into the conv they follow (its only consumer)."""
    for node in list(graph.nodes.values()):
        if node.op not in ("batch_norm", "scale"):
            continue
        conv = graph.nodes[node.inputs[0]]
        if conv.op != "conv" or graph.sole_consumer(conv.name) is not node:
            what = "batch norm" if node.op == "batch_norm" else "constant scale"
            raise _Refused(node.module, f"a {what} that does not follow a conv directly")
        if node.op == "batch_norm":
            bn = node.bn
            gain = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
                1 / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias.detach() if bn.affine else 0) - bn.running_mean * gain
        else:
            gain, shift = torch.full((conv.weight.shape[0],), node.slope), torch.zeros(conv.weight.shape[0])
        conv.weight = conv.weight * gain.view(-1, 1, 1, 1)
        conv.bias = conv.bias * gain + shift
        _replace(graph, node.name, conv.name)


def _mean_shifts(graph: Graph) -> None:
    """A 1x1 conv with a diagonal colour-to-colour weight next to the image input or output is a mean shift:
    per-channel affine, kept in float at the ends of the graph."""
    for node in list(graph.nodes.values()):
        if (node.op != "conv" or node.groups != 1 or node.weight.shape[-1] != 1
                or node.weight.shape[0] != node.weight.shape[1]):
            continue
        w = node.weight[:, :, 0, 0]
        at_end = graph.nodes[node.inputs[0]].op == "input" or node.name == graph.output
        if at_end and w.shape[0] == graph.n_colors and torch.equal(w, torch.diag(torch.diag(w))):
            node.op, node.weight, node.role = "affine", torch.diag(w).clone(), ""


def _pixel_range(graph: Graph, pixel_range: float) -> None:
    """Every graph maps RGB 0..255 to RGB 0..255: a network trained on 0..1 gets x / 255 in front and x 255
    behind (merged into its mean shifts below)."""
    if pixel_range == 255.0:
        return
    c = graph.n_colors
    into = Node("pixel_range.in", "affine", ("input",), torch.full((c,), pixel_range / 255.0), torch.zeros(c))
    for n in graph.nodes.values():
        n.inputs = tuple("pixel_range.in" if i == "input" else i for i in n.inputs)
    out = Node("pixel_range.out", "affine", (graph.output,), torch.full((c,), 255.0 / pixel_range),
               torch.zeros(c))
    items = list(graph.nodes.items())
    graph.nodes = dict(items[:1] + [(into.name, into)] + items[1:] + [(out.name, out)])
    graph.output = out.name


def _merge_affines(graph: Graph) -> None:
    """affine(affine(x)) -> one affine, where the first has no other consumer."""
    for node in list(graph.nodes.values()):
        if node.op != "affine" or node.name not in graph.nodes:
            continue
        first = graph.nodes[node.inputs[0]]
        if first.op == "affine" and graph.sole_consumer(first.name) is node:
            node.weight, node.bias = first.weight * node.weight, first.bias * node.weight + node.bias
            node.inputs = first.inputs
            del graph.nodes[first.name]
