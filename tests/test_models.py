import pickle

import pytest
import torch

from adabm_deploy.errors import UserError
from adabm_deploy.models import EDSR, EDSRConfig, infer_config, load_edsr


def n_params(model):
    """Parameter count as the weights README states it: the two fixed mean shifts not included."""
    return sum(p.numel() for n, p in model.named_parameters() if "mean" not in n)


def save_small(tmp_path, cfg, rename=None, name="m.pt"):
    model = EDSR(cfg)
    state = model.state_dict()
    if rename:
        state = {rename(k): v for k, v in state.items()}
    path = tmp_path / name
    torch.save(state, path)
    return model, path


def test_reference_checkpoints_load_with_inferred_architecture(x4_checkpoint, x2_checkpoint):
    x4 = load_edsr(x4_checkpoint)
    assert (x4.cfg.n_blocks, x4.cfg.n_feats, x4.cfg.scale, x4.cfg.res_scale) == (16, 64, 4, 1.0)
    assert n_params(x4) == 1_517_571
    x2 = load_edsr(x2_checkpoint)
    assert (x2.cfg.n_blocks, x2.cfg.n_feats, x2.cfg.scale) == (8, 64, 2)
    assert n_params(x2) == 779_011
    # The mean shift is read from the file: the x4 model must subtract exactly sub_mean.bias.
    sd = torch.load(x4_checkpoint, map_location="cpu", weights_only=True)
    assert torch.equal(x4.sub_mean.bias, sd["sub_mean.bias"])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_any_scale_block_count_and_width_round_trip(tmp_path, scale):
    cfg = EDSRConfig(n_blocks=3, n_feats=8, scale=scale)
    model, path = save_small(tmp_path, cfg)
    loaded = load_edsr(path)
    assert loaded.cfg == cfg
    x = torch.rand(1, 3, 5, 6) * 255
    assert torch.equal(loaded(x), model.eval()(x))
    assert loaded(x).shape[-2:] == (5 * scale, 6 * scale)


def test_adabm_conv1_conv2_naming_is_accepted(tmp_path):
    cfg = EDSRConfig(n_blocks=2, n_feats=8, scale=2)
    rename = lambda k: k.replace(".body.0.", ".conv1.").replace(".body.2.", ".conv2.") if k.startswith("body.") else k
    model, path = save_small(tmp_path, cfg, rename)
    x = torch.rand(1, 3, 4, 4) * 255
    assert torch.equal(load_edsr(path)(x), model.eval()(x))


def test_full_edsr_shape_implies_res_scale_0_1():
    meta = lambda *s: torch.empty(*s, device="meta")
    state = {"head.0.weight": meta(256, 3, 3, 3), "tail.0.0.weight": meta(1024, 256, 3, 3),
             "tail.0.2.weight": meta(1024, 256, 3, 3)}
    state.update({f"body.{i}.body.0.weight": meta(256, 256, 3, 3) for i in range(32)})
    cfg = infer_config(state, "full")
    assert (cfg.n_blocks, cfg.n_feats, cfg.scale, cfg.res_scale) == (32, 256, 4, 0.1)


@pytest.mark.parametrize("damage,expected", [
    (lambda sd: sd.pop("body.1.body.2.bias"), "1 missing key(s): body.1.body.2.bias"),
    (lambda sd: sd.__setitem__("body.0.extra", torch.zeros(1)), "1 unexpected key(s): body.0.extra"),
    (lambda sd: sd.__setitem__("body.0.body.0.bias", torch.zeros(9)), "1 mis-shaped key(s): body.0.body.0.bias"),
])
def test_strict_loading_refuses_damaged_checkpoints(tmp_path, damage, expected):
    sd = EDSR(EDSRConfig(n_blocks=2, n_feats=8, scale=2)).state_dict()
    damage(sd)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_edsr(tmp_path / "bad.pt")


class _Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch pwned_by_checkpoint",))


def test_pickle_from_a_stranger_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"head.0.weight": _Exploit()}))
    with pytest.raises(UserError, match="refused, it holds Python objects besides tensors"):
        load_edsr(path)
    assert not (tmp_path / "pwned_by_checkpoint").exists()


def test_non_checkpoint_and_missing_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UserError, match="x.png: not a PyTorch checkpoint"):
        load_edsr(tmp_path / "x.png")
    with pytest.raises(UserError, match="nope.pt: checkpoint not found"):
        load_edsr(tmp_path / "nope.pt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not an EDSR checkpoint"):
        load_edsr(tmp_path / "foreign.pt")
