"""Checkpoints of every architecture load strictly from their original key layouts and are captured as graphs
that compute exactly what the module computes."""
import pickle
import re

import pytest
import torch
from torch import nn

from adabm_deploy.models import load_network
from adabm_deploy.models.edsr import EDSR, EDSRConfig, infer_config
from adabm_deploy.network.capture import capture
from adabm_deploy.network.graph import run
from benchmarks import zoo
from runtime.errors import UserError

W, WB = ("weight",), ("weight", "bias")
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def keys(prefix: str, names=WB) -> list[str]:
    return [f"{prefix}.{n}" for n in names]


# The key layout each original code writes, for the small configs tests/zoo.py saves (read from EDSR-PyTorch's
# edsr.py / rdn.py, AdaBM's edsr.py / srresnet.py, CARN-pytorch's carn.py / carn_m.py / ops.py, Real-ESRGAN's
# srvgg_arch.py).
ORIGINAL_KEYS = {
    "edsr": keys("sub_mean") + keys("head.0") + [k for i in range(2) for c in (0, 2) for k in keys(f"body.{i}.body.{c}")]
    + keys("body.2") + keys("tail.0.0") + keys("tail.0.2") + keys("tail.1") + keys("add_mean"),
    "edsr_adabm": keys("sub_mean") + keys("head.0") + [k for i in range(2) for c in (1, 2)
                                                       for k in keys(f"body.{i}.conv{c}")]
    + keys("body.2") + keys("tail.0.0") + keys("tail.0.2") + keys("tail.1") + keys("add_mean"),
    "rdn": keys("SFENet1") + keys("SFENet2") + [k for d in range(2) for c in range(2)
                                                for k in keys(f"RDBs.{d}.convs.{c}.conv.0")]
    + [k for d in range(2) for k in keys(f"RDBs.{d}.LFF")] + keys("GFF.0") + keys("GFF.1") + keys("UPNet.0")
    + keys("UPNet.2") + keys("UPNet.4"),
    "srresnet": keys("head.0", W) + keys("head.1", W)
    + [k for i in range(2) for k in keys(f"body.{i}.conv1", W) + keys(f"body.{i}.bn1", BN) + keys(f"body.{i}.act", W)
       + keys(f"body.{i}.conv2", W) + keys(f"body.{i}.bn2", BN)]
    + keys("body.2", W) + keys("body.3", BN) + keys("tail.0.0", W) + keys("tail.0.2", W) + keys("tail.0.3", W)
    + keys("tail.0.5", W) + keys("tail.1", W),
    "carn": keys("sub_mean.shifter") + keys("add_mean.shifter") + keys("entry")
    + [k for b in (1, 2, 3) for j in (1, 2, 3) for c in (0, 2) for k in keys(f"b{b}.b{j}.body.{c}")]
    + [k for b in (1, 2, 3) for j in (1, 2, 3) for k in keys(f"b{b}.c{j}.body.0")]
    + [k for j in (1, 2, 3) for k in keys(f"c{j}.body.0")] + keys("upsample.up.body.0") + keys("upsample.up.body.3")
    + keys("exit"),
    "carn_m": keys("sub_mean.shifter") + keys("add_mean.shifter") + keys("entry")
    + [k for b in (1, 2, 3) for c in (0, 2, 4) for k in keys(f"b{b}.b1.body.{c}")]
    + [k for b in (1, 2, 3) for j in (1, 2, 3) for k in keys(f"b{b}.c{j}.body.0")]
    + [k for j in (1, 2, 3) for k in keys(f"c{j}.body.0")] + keys("upsample.up.body.0") + keys("upsample.up.body.3")
    + keys("exit"),
    "srvgg": [k for i in range(0, 9, 2) for k in keys(f"body.{i}")] + [f"body.{i}.weight" for i in range(1, 8, 2)],
}
PIXEL_RANGE = {"carn": 1.0, "carn_m": 1.0, "srvgg": 1.0}
ROLES = {"edsr": {"adaptive": 4, "outer": 5}, "edsr_adabm": {"adaptive": 4, "outer": 5},
         "rdn": {"adaptive": 6, "fixed": 2, "outer": 5}, "srresnet": {"adaptive": 4, "outer": 5},
         "carn": {"adaptive": 18, "fixed": 12, "outer": 4}, "carn_m": {"adaptive": 27, "fixed": 12, "outer": 4},
         "srvgg": {"adaptive": 3, "outer": 2}}


def saved_keys(path) -> list[str]:
    state = torch.load(path, weights_only=True)
    return sorted(state.get("params_ema", state))


@pytest.mark.parametrize("kind", sorted(ORIGINAL_KEYS))
def test_each_architecture_loads_its_original_layout_and_its_graph_is_the_module(kind, tmp_path):
    path = zoo.save(kind, tmp_path, 4)
    assert saved_keys(path) == sorted(ORIGINAL_KEYS[kind])
    net = load_network(path)
    assert net.scale == 4
    x = torch.rand(1, 3, 11, 13) * 255
    r = PIXEL_RANGE.get(kind, 255.0)
    with torch.no_grad():
        expected = net.module(x * r / 255) * 255 / r
        assert torch.allclose(run(net.graph, x), expected, atol=2e-3), kind
    assert {op for op in (n.op for n in net.graph.nodes.values())} <= {
        "input", "conv", "relu", "prelu", "add", "concat", "pixel_shuffle", "upsample", "affine"}
    roles = {}
    for conv in net.graph.convs():
        roles[conv.role] = roles.get(conv.role, 0) + 1
    assert roles == ROLES[kind]
    assert net.graph.features  # the SKT loss has block outputs to compare


def test_reference_checkpoints_load_with_inferred_architecture(x4_checkpoint, x2_checkpoint):
    x4 = load_network(x4_checkpoint)
    assert (x4.architecture.name, x4.layout) == ("EDSR", "EDSR-PyTorch edsr")
    assert x4.config == {"n_blocks": 16, "n_feats": 64, "scale": 4, "n_colors": 3, "res_scale": 1.0}
    assert sum(p.numel() for n, p in x4.module.named_parameters() if "mean" not in n) == 1_517_571
    x2 = load_network(x2_checkpoint)
    assert (x2.config["n_blocks"], x2.config["n_feats"], x2.scale) == (8, 64, 2)
    # the mean shift is read from the file (the two references use different means), kept as an affine
    sd = torch.load(x4_checkpoint, map_location="cpu", weights_only=True)
    assert torch.equal(x4.graph.nodes["sub_mean"].bias, sd["sub_mean.bias"])
    assert len(x4.graph.features) == 16 and len(x4.graph.convs()) == 37


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_any_scale_round_trips(tmp_path, scale):
    net = load_network(zoo.save("edsr", tmp_path, scale))
    x = torch.rand(1, 3, 5, 6) * 255
    with torch.no_grad():
        assert run(net.graph, x).shape[-2:] == (5 * scale, 6 * scale)
        assert torch.allclose(run(net.graph, x), net.module(x), atol=1e-3)


def test_adabm_layout_drops_the_authors_quantizer_state(tmp_path):
    path = zoo.save("edsr_adabm", tmp_path, 2)
    state = torch.load(path, weights_only=True)
    state |= {"body.0.conv1.lower_a": torch.tensor([-1.0]), "body.0.conv1.measure_layer": torch.tensor([0.0]),
              "measure_l": torch.tensor([10.0])}
    torch.save(state, path)
    net = load_network(path)
    assert net.layout == "AdaBM edsr" and "body.0.body.0" in net.graph.nodes


def test_full_edsr_shape_implies_res_scale_0_1_folded_into_the_conv():
    meta = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    state = {"head.0.weight": meta(256, 3, 3, 3), "tail.0.0.weight": meta(1024, 256, 3, 3),
             "tail.0.2.weight": meta(1024, 256, 3, 3), "body.32.weight": meta(256, 256, 3, 3)}
    state.update({f"body.{i}.body.0.weight": meta(256, 256, 3, 3) for i in range(32)})
    cfg = infer_config(state, "full")
    assert (cfg.n_blocks, cfg.n_feats, cfg.scale, cfg.res_scale) == (32, 256, 4, 0.1)
    model = EDSR(EDSRConfig(2, 8, 2, res_scale=0.1)).eval()
    graph = capture(model, "x", lambda n: "outer", lambda n, m: False, 255.0, 2)
    assert not [n for n in graph.nodes.values() if n.op == "scale"]
    assert torch.allclose(graph.nodes["body.0.body.2"].weight, model.body[0].body[2].weight * 0.1)


def test_batch_norm_is_folded_into_its_conv(tmp_path):
    net = load_network(zoo.save("srresnet", tmp_path, 2))
    assert "batch_norm" not in {n.op for n in net.graph.nodes.values()}
    x = torch.rand(1, 3, 8, 8) * 255
    with torch.no_grad():
        assert torch.allclose(run(net.graph, x), net.module(x), atol=2e-3)


def test_wrappers_are_unwrapped_ema_first(tmp_path):
    path = zoo.save("srvgg", tmp_path, 2)
    ema = torch.load(path, weights_only=True)["params_ema"]
    plain = {k: torch.zeros_like(v) for k, v in ema.items()}
    torch.save({"params": plain, "params_ema": ema}, path)
    assert torch.equal(load_network(path).graph.nodes["body.0"].weight, ema["body.0.weight"])
    torch.save({"state_dict": ema, "epoch": 3}, path)
    assert torch.equal(load_network(path).graph.nodes["body.0"].weight, ema["body.0.weight"])


def test_a_multi_scale_carn_needs_a_scale(tmp_path):
    path = zoo.save("carn_multi", tmp_path, 4)
    with pytest.raises(UserError, match=r"multi-scale CARN \(x2, x3, x4\): choose one with --scale"):
        load_network(path)
    for scale in (2, 3, 4):
        assert load_network(path, scale).scale == scale
    with pytest.raises(UserError, match="not x8"):
        load_network(path, 8)


@pytest.mark.parametrize("damage,expected", [
    (lambda sd: sd.pop("body.1.body.2.bias"), "1 missing key(s): body.1.body.2.bias"),
    (lambda sd: sd.__setitem__("body.0.body.0.bias", torch.zeros(9)), "1 mis-shaped key(s): body.0.body.0.bias"),
])
def test_strict_loading_refuses_damaged_checkpoints(tmp_path, damage, expected):
    path = zoo.save("edsr", tmp_path, 2)
    sd = torch.load(path, weights_only=True)
    damage(sd)
    torch.save(sd, path)
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_network(path)


def test_an_unknown_layout_names_the_closest_architecture_and_the_keys(tmp_path):
    path = zoo.save("rdn", tmp_path, 2)
    sd = torch.load(path, weights_only=True)
    sd["RDBs.0.attention.qkv.weight"] = torch.zeros(3)
    torch.save(sd, path)
    with pytest.raises(UserError, match=r"not a known checkpoint layout; closest is RDN \(EDSR-PyTorch rdn: \d+ of "
                                        r"\d+ keys match\); keys it has beyond RDN: RDBs.0.attention.qkv.weight$"):
        load_network(path)


def test_the_official_carn_m_loads_as_released_with_one_node_per_call_of_its_shared_blocks():
    """carn_m.pth of CARN-pytorch, unchanged: grouped 3x3 convs (groups 4) and one efficient residual block per
    cascading block, called three times. Each call is its own node (`<module>@k`), with its own quantization
    points; the graph computes what the module does at each scale and the FP32 model reproduces the paper
    (x4 Set5 31.92 dB: we measure 31.88; Set14 28.42: 28.42)."""
    from conftest import shared_path

    from adabm_deploy.data import open_benchmark
    from adabm_deploy.evaluate import evaluate_set, fp32_upscaler
    path = shared_path("weights", "carn_m.pth")
    x = torch.rand(1, 3, 12, 14) * 255
    for scale in (2, 3, 4):
        net = load_network(path, scale)
        assert (net.architecture.name, net.config["groups"], net.config["upsample_groups"]) == ("CARN-M", 4, 4)
        with torch.no_grad():
            assert torch.allclose(run(net.graph, x), net.module(x / 255) * 255, atol=2e-3), scale
        calls = [n.name for n in net.graph.convs() if n.module == "body.b2.b1.body.0"]
        assert calls == ["body.b2.b1.body.0", "body.b2.b1.body.0@2", "body.b2.b1.body.0@3"]
        assert {n.groups for n in net.graph.convs() if n.name.startswith(("body.b1.b1.body.2", "upsample"))} == {4}
        assert len(net.graph.features) == 9  # each call of each shared block feeds the SKT loss
    set5 = evaluate_set(fp32_upscaler(net), open_benchmark(shared_path("data", "benchmark", "Set5"), 4),
                        progress=False)
    assert set5.psnr_y == pytest.approx(31.88, abs=0.02)


def test_a_near_miss_says_what_differs_grouped_convs_or_an_extra_block(tmp_path):
    """CARN's layout with grouped 3x3 convs (and then one key more), and CARN-M with a fourth block: each refusal
    names the difference, not only a count of matching keys."""
    path = zoo.save("carn", tmp_path, 2)
    state = torch.load(path, weights_only=True)
    for key in [k for k in state if re.fullmatch(r"b\d\.b\d\.body\.[02]\.weight", k)]:
        state[key] = state[key][:, :4].clone()
    torch.save(state, path)
    with pytest.raises(UserError, match=r"CARN \(official CARN-pytorch carn\) layout: 18 mis-shaped key\(s\): .*; 18 "
                                        r"grouped convs \(body.b1.b1.body.0.weight: 4 input channels of 16, groups=4\) "
                                        r"where the architecture has dense ones$"):
        load_network(path)
    state["b1.b1.body.4.weight"] = torch.zeros(16, 16, 1, 1)
    torch.save(state, path)
    with pytest.raises(UserError, match=r"closest is CARN \(.*: 70 of 71 keys match\); keys it has beyond CARN: "
                                        r"b1.b1.body.4.weight; 18 grouped convs"):
        load_network(path)
    path = zoo.save("carn_m", tmp_path, 2)
    state = torch.load(path, weights_only=True)
    state["b4.b1.body.0.weight"] = state["b1.b1.body.0.weight"]
    torch.save(state, path)
    with pytest.raises(UserError, match=r"closest is CARN-M \(.*: 52 of 53 keys match\); keys it has beyond CARN-M: "
                                        r"b4.b1.body.0.weight$"):
        load_network(path)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        a = self.conv(x)
        return torch.softmax(a, dim=1) * x


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 3, 3, padding=1)
        self.attn = _Attention()

    def forward(self, x):
        return self.attn(self.head(x))


def test_an_op_the_tool_cannot_quantize_is_named_with_its_module():
    with pytest.raises(UserError, match=r"cannot quantize module attn: op softmax \(supported:"):
        capture(_Net(), "net.pt", lambda n: "outer", lambda n, m: False, 255.0, 1)


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned_by_checkpoint",))


def test_pickle_from_a_stranger_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"head.0.weight": _Exploit()}))
    with pytest.raises(UserError, match="refused, it holds Python objects besides tensors"):
        load_network(path)
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_non_checkpoint_and_missing_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError, match="x.png: not a PyTorch checkpoint"):
        load_network(tmp_path / "x.png")
    with pytest.raises(UserError, match="nope.pt: checkpoint not found"):
        load_network(tmp_path / "nope.pt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError) as info:  # IMDN, PAN, RFDN were "closest is SRVGGNetCompact (0 of 92 keys match)"
        load_network(tmp_path / "foreign.pt")
    assert str(info.value) == f"{tmp_path / 'foreign.pt'}: not a checkpoint of a supported architecture (EDSR, RDN, " \
        "SRResNet, CARN, CARN-M, SRVGGNetCompact): none of its 1 keys belongs to one (it has foo)"


@pytest.mark.parametrize("damage,expected", [
    (lambda t: t.view(-1).__setitem__(0, float("nan")), "1 of 2304 values are not finite"),
    (lambda t: t.view(-1).__setitem__(slice(0, 2), float("inf")), "2 of 2304 values are not finite"),
    ("sparse", "a sparse_coo tensor"),
])
def test_calibrate_evaluate_and_export_refuse_non_finite_or_sparse_weights_naming_the_tensor(
        tmp_path, capsys, damage, expected):
    from adabm_deploy import calibrate, evaluate
    from export import __main__ as export
    from runtime.command import run_cli
    path = zoo.save("edsr", tmp_path, 2)
    sd = torch.load(path, weights_only=True)
    key = "body.0.body.0.weight"  # 16 x 16 x 3 x 3 in the zoo's EDSR
    sd[key] = sd[key].clone()
    if damage == "sparse":
        sd[key] = sd[key].to_sparse()
    else:
        damage(sd[key])
    torch.save(sd, path)
    data = tmp_path / "empty"
    data.mkdir()
    for main, argv in ((calibrate.main, [str(path), "--calib-dir", str(data), "-o", str(tmp_path / "a.json")]),
                       (evaluate.main, ["--model", str(path), "--data", str(data)]),
                       (export.main, [str(path), "--calib-dir", str(data), "-o", str(tmp_path / "m")])):
        assert run_cli(main, argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}: {key}: ") and expected in err and "\n" not in err, err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "m").exists()
