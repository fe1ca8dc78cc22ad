"""Nothing a user owns is overwritten or deleted, and every bad input gets one clear line (issue 17).

Each case is run the way a user meets it: the CLI (in-process through run_cli, or in a fresh interpreter
where that matters) on files made for the case, with the bytes of every file around compared afterwards.
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO

from runtime import images
from runtime.command import run_cli
from runtime.headers import MAX_PIXELS
from runtime.upscale import main as upscale_main


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def upscale(capsys, model: Path, *args) -> tuple[int, str]:
    rc = run_cli(upscale_main, ["--model", str(model), "--threads", "1", *map(str, args)])
    return rc, capsys.readouterr().err


def errors_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def photo(h=24, w=32, seed=0) -> np.ndarray:
    """A small BGR picture with texture and a flat part."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[:, : w // 2] = (90, 120, 150)
    return img


def png_bytes(width: int, height: int, color_type: int = 2) -> bytes:
    """A PNG that claims width x height in its IHDR (a few bytes of pixel data: a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), photo())
    return src


# -- data loss ----------------------------------------------------------------------------------------------

def test_bitmap_or_stats_on_an_input_or_on_the_output_is_refused_before_anything_runs(capsys, tiny_model_dir,
                                                                                     folder):
    a, b = folder / "a.png", folder / "b.png"
    cv2.imwrite(str(b), photo(seed=1))
    before = snapshot(folder)
    cases = [(["-o", folder / "out.png", "--bitmap", a], "a.png: this input would be overwritten by the bitmap"),
             ([b, "--stats", b], "b.png: this input would be overwritten by the --stats file"),
             (["-o", folder / "o.png", "--bitmap", folder / "o.png"], "named as both the output of")]
    for args, message in cases:
        rc, err = upscale(capsys, tiny_model_dir, a, *args)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert snapshot(folder) == before


def test_json_outputs_never_replace_a_checkpoint_or_an_image(tmp_path, x2_checkpoint, benchmark_root):
    ckpt = tmp_path / "m.pt"
    shutil.copy(x2_checkpoint, ckpt)
    t91 = REPO.parent / "shared" / "data" / "train" / "T91"
    commands = [["adabm_deploy.evaluate", "--model", ckpt, "--data", benchmark_root / "Set5", "--json", ckpt],
                ["adabm_deploy.calibrate", ckpt, "--calib-dir", t91, "-o", ckpt]]
    for command in commands:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", *map(str, command)], capture_output=True, text=True)
        assert proc.returncode == 2 and "not a JSON file; refusing to replace it" in proc.stderr, proc.stderr
        assert time.perf_counter() - start < 30  # refused before the work, not after it
        assert ckpt.read_bytes() == x2_checkpoint.read_bytes()


def run_export(*args):
    return subprocess.run([sys.executable, "-m", "export", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO)


def test_export_force_replaces_only_a_model_directory_it_wrote(tmp_path, tiny_model_dir):
    """No checkpoint is needed to show the refusals: they come before any work."""
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("years of work")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "notes.txt").write_text("mine")
    sub = tmp_path / "sub"
    sub.mkdir()
    before = snapshot(tmp_path)
    for out, cwd, message in [(documents, REPO, "not a model directory written by this tool"),
                              (model, REPO, "holds files that are not part of the model (notes.txt)"),
                              (".", sub, "is the current directory or contains it"),
                              ("..", sub, "is the current directory or contains it")]:
        proc = subprocess.run([sys.executable, "-m", "export", str(tmp_path / "x.pt"), "-o", str(out), "--force"],
                              capture_output=True, text=True, cwd=cwd, env=os.environ | {"PYTHONPATH": str(REPO)})
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(tmp_path) == before


def test_two_inputs_on_one_output_are_refused_and_bitmaps_of_one_stem_stay_apart(capsys, tiny_model_dir, tmp_path):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "x.png"), photo())
    rc, err = upscale(capsys, tiny_model_dir, tmp_path / "d1" / "x.png", tmp_path / "d2" / "x.png",
                      "-o", tmp_path / "out")
    assert rc == 2 and "named as both the output of" in err and not (tmp_path / "out").exists()
    src = tmp_path / "same_stem"
    src.mkdir()
    for ext in (".bmp", ".tiff", ".webp"):
        cv2.imwrite(str(src / f"img{ext}"), photo())
    rc, err = upscale(capsys, tiny_model_dir, src, "-o", tmp_path / "sr", "--bitmap", tmp_path / "bits")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "bits").iterdir()) == \
        ["img_bmp_bits.png", "img_tiff_bits.png", "img_webp_bits.png"]
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["img_x4.bmp", "img_x4.tiff", "img_x4.webp"]


def test_a_users_file_named_like_an_output_is_kept_unless_overwrite(capsys, tiny_model_dir, folder):
    mine = folder / "a_x4.png"
    cv2.imwrite(str(mine), photo(96, 128, seed=7))
    before = mine.read_bytes()
    rc, err = upscale(capsys, tiny_model_dir, folder)
    assert rc == 0 and "skipped" in err and "a_x4.png already exists (--overwrite replaces it)" in err
    assert mine.read_bytes() == before
    rc, err = upscale(capsys, tiny_model_dir, folder, "--overwrite")  # declared: now it may be replaced
    assert rc == 0 and mine.read_bytes() != before and cv2.imread(str(mine)).shape == (96, 128, 3)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_sigterm_mid_write_leaves_no_temporary(tmp_path, suffix):
    """A 1024x1024 input takes seconds on the bundled model; the signal arrives while the output is staged."""
    src = tmp_path / f"big{suffix}"
    cv2.imwrite(str(src), cv2.resize(photo(), (1024, 1024)))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "runtime.upscale", str(src), "-o", str(out), "--threads", "1"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(out.glob(".*.tmp*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert list(out.glob(".*.tmp*")), "the output was never staged"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "terminated" in err
    assert list(out.iterdir()) == []


# -- decompression bombs, symlinks ----------------------------------------------------------------------------

def test_decompression_bombs_are_refused_from_the_header_and_the_batch_goes_on(capsys, tiny_model_dir, folder):
    (folder / "bomb.png").write_bytes(png_bytes(100000, 100000))
    (folder / "big.png").write_bytes(png_bytes(30000, 30000))
    assert (folder / "bomb.png").stat().st_size < 3000
    rc, err = upscale(capsys, tiny_model_dir, folder / "bomb.png", folder / "big.png", folder / "a.png",
                      "-o", folder / "out", "--stats", folder / "s.json")
    assert rc == 1 and len(errors_of(err)) == 2, err
    assert "100000x100000 is 10,000,000,000 pixels, over the limit of 33,554,432 (raise it with --max-pixels)" in err
    assert "30000x30000 is 900,000,000 pixels" in err
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a_x4.png"]
    stats = json.loads((folder / "s.json").read_text())
    assert len(stats["images"]) == 1 and len(stats["failed"]) == 2
    rc, err = upscale(capsys, tiny_model_dir, folder / "a.png", "-o", folder / "o.png", "--max-pixels", "100")
    assert rc == 1 and "24x32" not in err and "32x24 is 768 pixels, over the limit of 100" in err
    assert MAX_PIXELS == 1 << 25


def test_a_link_out_of_the_model_directory_is_refused(tmp_path, tiny_model_dir, capsys, folder):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(model / "int8_f+0.onnx", outside)
    (model / "int8_f+0.onnx").symlink_to(outside)  # same bytes, so the sha256 matches
    rc, err = upscale(capsys, model, folder / "a.png", "-o", tmp_path / "x.png")
    assert rc == 2 and "int8_f+0.onnx is a link to" in err and "outside the model directory" in err
    assert not (tmp_path / "x.png").exists()


# -- wrong results ------------------------------------------------------------------------------------------------

def test_a_jpeg_damaged_mid_stream_is_refused(capsys, tiny_model_dir, tmp_path):
    data = cv2.imencode(".jpg", cv2.resize(photo(), (256, 256)))[1].tobytes()
    mid = len(data) // 2
    (tmp_path / "damaged.jpg").write_bytes(data[:mid] + bytes(300) + data[mid + 300:])
    rc, err = upscale(capsys, tiny_model_dir, tmp_path / "damaged.jpg")
    assert rc == 1 and "damaged.jpg: damaged JPEG data (libjpeg: Corrupt JPEG data" in err
    assert not (tmp_path / "damaged_x4.jpg").exists()


def edited_manifest(tmp_path, source, **fields):
    model = tmp_path / f"model_{len(list(tmp_path.iterdir()))}"
    shutil.copytree(source, model)
    data = json.loads((model / "manifest.json").read_text())
    for key, value in fields.items():
        node = data
        *path, last = key.split("__")
        for part in path:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    (model / "manifest.json").write_text(json.dumps(data))
    return model


@pytest.mark.parametrize("fields,message", [
    (dict(scale=2), "maps 24x16 to 96x64, not x2 as the manifest says"),
    (dict(scale=0), "scale is 0, expected an integer from 1 to 16"),
    (dict(variants__0__layer_bits=[]), "variant -1 has no layer_bits"),
    (dict(patch_size=0), "patch_size is 0, expected an integer from 8"),
    (dict(complexity__thresholds=["10", "40"]), 'a complexity threshold is "10", expected a finite number'),
    (dict(complexity__thresholds=[float("-inf"), 40.0]), "a complexity threshold is -Infinity"),
    (dict(version="2"), 'manifest version "2" is not supported (this runtime reads versions 1, 2, 3)'),
    (dict(cheap_rung__threshold="5"), 'the cheap rung\'s threshold is "5", expected a finite number'),
])
def test_a_bad_manifest_exits_2_before_any_image_is_read(capsys, tiny_model_dir, folder, tmp_path, fields,
                                                           message):
    model = edited_manifest(tmp_path, tiny_model_dir, **fields)
    rc, err = upscale(capsys, model, folder / "a.png", "-o", tmp_path / "x.png", "--stats", tmp_path / "s.json")
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "s.json").exists()


# -- messages -----------------------------------------------------------------------------------------------------

def test_checkpoint_messages_are_whole_and_name_the_one_missing_key(tmp_path, x4_checkpoint):
    from adabm_deploy.models import load_network
    from runtime.errors import UserError
    (tmp_path / "notes.pt").write_text("a text file, not a checkpoint\n" * 20)
    with pytest.raises(UserError, match=r"notes.pt: not a PyTorch checkpoint \(neither the zip archive torch.save "
                                        r"writes nor a pickle\)$"):
        load_network(tmp_path / "notes.pt")
    state = torch.load(x4_checkpoint, weights_only=True)
    for key in ("body.15.body.0.weight", "body.16.weight", "body.3.body.2.bias"):
        torch.save({k: v for k, v in state.items() if k != key}, tmp_path / "one_less.pt")
        with pytest.raises(UserError, match=rf"1 missing key\(s\): {key.replace('.', '[.]')}$"):
            load_network(tmp_path / "one_less.pt")


def test_image_messages_name_the_real_problem(capsys, tiny_model_dir, tmp_path):
    (tmp_path / "text.png").write_text("just some words\n" * 10)
    (tmp_path / "zero.png").write_bytes(png_bytes(0, 0))
    rc, err = upscale(capsys, tiny_model_dir, tmp_path / "text.png", tmp_path / "zero.png")
    assert rc == 1 and len(err.strip().splitlines()) == 2, err  # one line each: no libpng noise
    assert "text.png: not a PNG file" in err and "zero.png: image has no pixels (0x0 in its header)" in err


class FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, path, mode):
        self.f = open(path, mode)

    def write(self, data):
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif", ".png"])
def test_a_full_disk_says_so_for_every_format(tmp_path, monkeypatch, suffix):
    from runtime.errors import UserError
    monkeypatch.setattr(images, "open", FullDisk, raising=False)
    with pytest.raises(UserError, match=rf"out{suffix}: cannot write \(No space left on device\)"):
        images.save(tmp_path / f"out{suffix}", photo())
    assert list(tmp_path.iterdir()) == []


def test_output_names_that_are_not_folders_and_unwritable_stats_fail_up_front(capsys, tiny_model_dir, folder):
    b = folder / "b.png"
    cv2.imwrite(str(b), photo(seed=2))
    before = snapshot(folder.parent)
    cases = [([folder / "a.png", "-o", folder / "out.gif"], "out.gif: cannot write .gif files"),
             ([folder / "a.png", b, "-o", folder / "two.png"], "names one file, but there are 2 inputs"),
             ([folder / "a.png", "--stats", folder / "nowhere" / "s.json"], "s.json: output folder does not exist"),
             ([folder / "a.png", "--stats", folder], "is a folder, not a file to write JSON to"),
             ([folder / "a.png", "-o", folder / "x.png", "--stats", b.with_suffix(".keep.png")], None)]
    cv2.imwrite(str(b.with_suffix(".keep.png")), photo(seed=3))
    before = snapshot(folder.parent)
    for args, message in cases:
        rc, err = upscale(capsys, tiny_model_dir, *args)
        message = message or "exists and is not a JSON file"
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert snapshot(folder.parent) == before


def test_the_calibration_set_is_checked_and_small_sets_are_announced(tmp_path):
    from adabm_deploy.calibrate import Settings, check_calibration_set
    from runtime.errors import UserError
    said = []
    notices = check_calibration_set([np.zeros((20, 20, 3), np.uint8)] * 5, Settings(), tmp_path, said.append)
    assert said == notices and len(said) == 2
    assert "5 images, fewer than the 100" in said[0] and "patches are 20x20, smaller than the 96x96" in said[1]
    with pytest.raises(UserError, match="smallest image is 10 px"):
        check_calibration_set([np.zeros((10, 30, 3), np.uint8)] * 100, Settings(), tmp_path, said.append)


@pytest.mark.parametrize("module", ["export", "adabm_deploy.calibrate", "adabm_deploy.evaluate"])
def test_commands_that_need_torch_say_how_to_install_it(module):
    code = f"import sys; sys.modules['torch'] = None; import runpy; runpy.run_module({module!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: python -m {module} needs torch, which this install lacks: pip install torch==2.13.0 && "
        "pip install 'adabm-deploy[calib]'"]


def test_gray_alpha_stays_gray_alpha_and_a_gif_is_its_first_frame(capsys, tiny_model_dir, tmp_path):
    gray = photo()[:, :, 0]
    alpha = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1))
    la = tmp_path / "la.png"
    with open(la, "wb") as f:  # OpenCV writes no gray + alpha PNG; the runtime's own encoder does
        from runtime.png import PngStream
        png = PngStream(f, 24, 32, 2, np.uint8)
        png.write(np.dstack([gray, alpha]))
        png.close()
    assert cv2.imencode(".gif", photo())[0]
    (tmp_path / "anim.gif").write_bytes(cv2.imencode(".gif", photo())[1].tobytes())
    rc, err = upscale(capsys, tiny_model_dir, la, tmp_path / "anim.gif")
    assert rc == 0, err
    out = (tmp_path / "la_x4.png").read_bytes()
    assert out[25] == 4  # IHDR colour type 4: gray + alpha
    assert cv2.imread(str(tmp_path / "la_x4.png"), cv2.IMREAD_UNCHANGED)[:, :, 3].shape == (96, 128)
    assert cv2.imread(str(tmp_path / "anim_x4.png")).shape == (96, 128, 3)


# -- the property: whatever the flags, nothing that existed changes unless the run declared it -------------------

def _user_files(root: Path) -> dict[str, Path]:
    """A folder of good and bad inputs, and files of the user's that a careless run could hit."""
    src, other = root / "in", root / "other"
    (src / "sub").mkdir(parents=True)
    other.mkdir()
    cv2.imwrite(str(src / "g1.png"), photo(16, 20, 1))
    cv2.imwrite(str(src / "g2.jpg"), photo(20, 16, 2))
    cv2.imwrite(str(src / "sub" / "g3.webp"), photo(12, 12, 3))
    cv2.imwrite(str(src / "g1_x4.png"), photo(8, 8, 4))  # the user's own file, named like an output
    data = cv2.imencode(".png", photo())[1].tobytes()
    (src / "cut.png").write_bytes(data[: len(data) // 2])
    (src / "text.png").write_text("not an image")
    (src / "bomb.png").write_bytes(png_bytes(70000, 70000))
    (src / "notes.txt").write_text("notes")
    cv2.imwrite(str(other / "photo.png"), photo(10, 10, 5))
    (other / "report.json").write_text('{"mine": true}')
    (root / "out").mkdir()
    cv2.imwrite(str(root / "out" / "g1_x4.png"), photo(8, 8, 6))
    return {"folder": src, "g1": src / "g1.png", "g2": src / "g2.jpg", "photo": other / "photo.png",
            "json": other / "report.json", "out_dir": root / "out", "new_png": root / "new.png",
            "new_json": root / "s.json", "bits_dir": root / "bits", "bits_png": root / "bits.png",
            "user_x4": src / "g1_x4.png"}


def _complete(path: Path) -> bool:
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
            return True
        except ValueError:
            return False
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is not None


def test_no_pre_existing_file_changes_unless_it_is_a_declared_complete_output(tiny_model_dir, tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    targets = ["g1", "g2", "photo", "json", "out_dir", "new_png", "new_json", "bits_dir", "bits_png", "folder",
               "user_x4"]
    inputs = st.sampled_from([["g1"], ["g1"], ["g2"], ["folder"], ["g1", "g2"], ["folder", "photo"], ["g2", "photo"]])

    # benign choices repeated, so that about half the runs get past planning and write
    output = st.sampled_from([None, None, "out_dir", "out_dir", "new_png", *targets])
    bitmap = st.sampled_from([None, None, None, "bits_dir", "bits_png", *targets])
    stats = st.sampled_from([None, None, None, "new_json", "json", *targets])

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(inputs=inputs, output=output, bitmap=bitmap, stats=stats, overwrite=st.booleans())
    def run(inputs, output, bitmap, stats, overwrite):
        root = tmp_path_factory.mktemp("prop")
        files = _user_files(root)
        before = snapshot(root)
        argv = [str(files[i]) for i in inputs]
        for flag, value in (("-o", output), ("--bitmap", bitmap), ("--stats", stats)):
            if value is not None:
                argv += [flag, str(files[value])]
        argv += ["--overwrite"] if overwrite else []
        with open(os.devnull, "w") as null:
            stdout, stderr = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = null
            try:
                rc = run_cli(upscale_main, ["--model", str(tiny_model_dir), "--threads", "1", *argv])
            finally:
                sys.stdout, sys.stderr = stdout, stderr
        assert rc in (0, 1, 2)
        assert not [p for p in root.rglob(".*") if ".tmp" in p.name], "a temporary was left behind"
        declared = {files[v] for v in (output, bitmap, stats) if v is not None and files[v].suffix}
        # an input is never an output, whatever the flags say (the scanned folder: all but outputs' names)
        protected = {files[i] for i in inputs} | {p for p in files["folder"].rglob("*") if "_x4." not in p.name
                                                  and "folder" in inputs}
        for path, data in before.items():
            if path.exists() and path.read_bytes() == data:
                continue
            assert rc != 2, f"{path} changed although the run was refused"
            assert path.exists(), f"{path} was deleted"
            assert path not in protected, f"the input {path} was overwritten ({argv})"
            derived = overwrite and ("_x4." in path.name or path.name.endswith("_bits.png"))
            assert path in declared or derived, f"{path} changed but was not a declared output ({argv})"
            assert _complete(path), f"{path} was replaced by an incomplete file"

    run()


def test_the_model_directory_in_use_is_protected_as_inputs_are(capsys, tiny_model_dir, tmp_path):
    """--stats on the model's calibration artifact or manifest, or outputs into the model directory, are refused
    before any image is read, and the model is left as it was."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = snapshot(model)
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), photo())
    for args in (["--stats", model / "calibration.json"], ["--stats", model / "manifest.json", "--overwrite"],
                 ["-o", model], ["-o", model / "a_x4.png"], ["--bitmap", model / "bits.png"]):
        rc, err = upscale(capsys, model, src, *args)
        assert rc == 2 and "is in the model directory in use" in err, (args, err)
        assert snapshot(model) == before, args


def test_earlier_outputs_anywhere_in_a_scanned_folder_are_not_upscaled_again(capsys, tiny_model_dir, tmp_path):
    """After `runtime.upscale in -o in/out --bitmap in/bits`, a later run over `in` knows in/out/a_x4.png and
    in/bits/a_bits.png for outputs of this tool (not only an output beside its input) and upscales a.png alone."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), photo())
    assert upscale(capsys, tiny_model_dir, src, "-o", src / "out", "--bitmap", src / "bits")[0] == 0
    assert (src / "out" / "a_x4.png").is_file() and (src / "bits" / "a_bits.png").is_file()
    rc, err = upscale(capsys, tiny_model_dir, src, "-o", tmp_path / "again")
    assert rc == 0, err
    assert sorted(p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*.png")) == \
        ["a_x4.png"], err
    assert "not taken as an input" in err


def test_a_suffix_with_a_path_separator_is_one_line(capsys, tiny_model_dir, tmp_path):
    """--suffix /x was a ValueError traceback from pathlib."""
    src = tmp_path / "a.png"
    cv2.imwrite(str(src), photo())
    for suffix in ("/x", "a/b", "\\x"):
        rc, err = upscale(capsys, tiny_model_dir, src, "--suffix", suffix)
        assert rc == 2 and errors_of(err) == [f"error: suffix {suffix!r}: must be part of a file name, without a "
                                               "path separator"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# -- inputs checked as what they are before they are read ------------------------------------------------------

def test_a_fifo_or_a_device_is_refused_before_it_is_read_and_the_run_goes_on(capsys, tiny_model_dir, folder):
    """A FIFO named x.png hung the CLI forever; a link to /dev/zero named .png was read whole into memory."""
    os.mkfifo(folder / "x.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    rc, err = upscale(capsys, tiny_model_dir, folder / "x.png", folder / "zero.png", folder / "a.png",
                      "-o", folder / "out")
    assert rc == 1 and errors_of(err) == [f"error: {folder / 'x.png'}: a FIFO, not a file to read",
                                          f"error: {folder / 'zero.png'}: a device, not a file to read"], err
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a_x4.png"]
    rc, err = upscale(capsys, tiny_model_dir, folder, "-o", folder / "out2")  # a scan lists what it skipped
    assert rc == 0 and f"skipped {folder / 'x.png'}: a FIFO, not a file to read" in err, err
    assert f"skipped {folder / 'zero.png'}: a link (scans do not follow links" in err
    assert sorted(p.name for p in (folder / "out2").iterdir()) == ["a_x4.png"]


def test_a_file_too_big_for_the_pixel_limit_is_refused_from_its_size_before_it_is_read(
        capsys, tiny_model_dir, folder, monkeypatch):
    """A 4 GB file named .png was read whole (MemoryError traceback) before any header check; now its size is
    compared with what --max-pixels admits (8 bytes a pixel plus 16 MiB of metadata) before a byte is read."""
    from runtime.headers import max_file_bytes
    big = folder / "huge.png"
    with open(big, "wb") as f:  # sparse: 4 GiB on paper, nothing on disk
        f.write(png_bytes(64, 64))
        f.truncate(4 << 30)
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: (reads.append(str(p)), real_open(p, *a, **k))[1])
    rc, err = upscale(capsys, tiny_model_dir, big, folder / "a.png", "-o", folder / "out")
    limit = max_file_bytes(MAX_PIXELS)
    assert rc == 1 and errors_of(err) == [f"error: {big}: over {limit:,} bytes, more than an image of at most "
                                          f"{MAX_PIXELS:,} pixels takes (raise --max-pixels)"], err
    assert limit == MAX_PIXELS * 8 + (16 << 20) and str(big) not in reads
    assert (folder / "out" / "a_x4.png").is_file()


def test_a_link_in_a_scanned_folder_is_listed_as_skipped_and_a_named_link_is_followed(capsys, tiny_model_dir,
                                                                                      tmp_path):
    src, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    src.mkdir()
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "b.png"), photo(seed=1))
    cv2.imwrite(str(src / "a.png"), photo())
    (src / "b.png").symlink_to(elsewhere / "b.png")
    (src / "loop").symlink_to(src)  # a scan that followed links would walk this forever
    stats = tmp_path / "s.json"
    rc, err = upscale(capsys, tiny_model_dir, src, "-o", tmp_path / "out", "--stats", stats)
    assert rc == 0, err
    skipped = json.loads(stats.read_text())["skipped"]
    assert sorted(skipped) == sorted([
        f"skipped {src / 'b.png'}: a link (scans do not follow links; name the file to upscale it)",
        f"skipped {src / 'loop'}: a link to a folder (scans do not follow links; name it to scan it)"]), skipped
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x4.png"]
    rc, err = upscale(capsys, tiny_model_dir, src / "b.png", "-o", tmp_path / "b_out.png")
    assert rc == 0 and (tmp_path / "b_out.png").is_file(), err


@pytest.mark.parametrize("name", ["pages.tiff", "anim.png", "anim.webp"])
def test_extra_frames_or_pages_are_named_in_the_skipped_list(capsys, tiny_model_dir, tmp_path, name):
    frames = [photo(seed=k) for k in range(3)]
    for frame, colour in zip(frames, [(90, 120, 150), (200, 40, 40), (40, 200, 40)]):
        frame[:, :16] = colour  # the flat half tells the frames apart
    path = tmp_path / name
    if name.endswith(".tiff"):
        assert cv2.imwritemulti(str(path), frames)
    else:
        animation = cv2.Animation()
        animation.frames, animation.durations = frames, [100] * 3
        assert cv2.imwriteanimation(str(path), animation)
    stats = tmp_path / "s.json"
    rc, err = upscale(capsys, tiny_model_dir, path, "-o", tmp_path / "out.png", "--stats", stats)
    line = f"skipped 2 more frames or pages of {path}: only the first is upscaled"
    assert rc == 0 and line in err, err
    assert json.loads(stats.read_text())["skipped"] == [line]
    out = cv2.imread(str(tmp_path / "out.png")).astype(float)
    away = [np.abs(out[:, 8:56] - f[:, 2:14].mean((0, 1))).mean() for f in frames]
    assert away[0] < 0.6 * min(away[1:]), away  # the first frame, not another


@pytest.mark.parametrize("fixed,rc,maps", [((16, 16), 2, "24x16 to 64x64"), ((16, 24), 1, "32x24 to 96x64")])
def test_a_graph_whose_output_does_not_follow_the_input_size_is_one_line(capsys, tiny_model_dir, folder, tmp_path,
                                                                         fixed, rc, maps):
    """A graph with a fixed output size (x4 for one input size only) was a broadcast traceback in the tiling. Now
    the probe (16 x 24, not square) stops it before any image (exit 2), and a graph that passes the probe is
    caught on its first window (the image fails, exit 1); both name the graph and the sizes, nothing is written."""
    import hashlib

    import onnx
    from onnx import TensorProto, helper
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    m = json.loads((model / "manifest.json").read_text())
    scale = m["scale"]
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 3, fixed[0] * scale, fixed[1] * scale])
    graph = helper.make_graph([helper.make_node("Resize", ["lr", "", "", "sizes"], ["sr"], mode="nearest")], "fixed",
                              [helper.make_tensor_value_info("lr", TensorProto.FLOAT, [None, 3, None, None])],
                              [helper.make_tensor_value_info("sr", TensorProto.FLOAT, [None, 3, None, None])], [sizes])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), model / m["fp32"]["file"])
    m["fp32"]["sha256"] = hashlib.sha256((model / m["fp32"]["file"]).read_bytes()).hexdigest()
    (model / "manifest.json").write_text(json.dumps(m))
    code, err = upscale(capsys, model, folder / "a.png", "-o", tmp_path / "x.png", "--variant", "fp32")
    assert code == rc and errors_of(err) == [f"error: {model}: damaged model directory (fp32.onnx maps {maps}, not "
                                             f"x{scale} as the manifest says)"], err
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_an_unexpected_exception_on_one_input_fails_that_input_only(capsys, tiny_model_dir, folder, monkeypatch):
    """Any exception other than the tool's own error type while one image (or video) was processed aborted the
    whole run with a traceback; now that input fails in one line naming it (exit 1) and the others are written."""
    from runtime import api
    cv2.imwrite(str(folder / "b.png"), photo(seed=1))
    cv2.imwrite(str(folder / "c.png"), photo(seed=2))
    (folder / "clip.mp4").write_bytes(b"not decoded: upscale_video is replaced below")
    real_decode = images.decode

    def decode(data, path, max_pixels):
        if path.name == "b.png":
            raise RuntimeError("decoder bug")
        if path.name == "c.png":
            raise MemoryError
        return real_decode(data, path, max_pixels)

    def video(job, upscaler, show):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(images, "decode", decode)
    monkeypatch.setattr(api, "upscale_video", video)
    rc, err = upscale(capsys, tiny_model_dir, folder, "-o", folder / "out")
    assert rc == 1 and sorted(errors_of(err)) == [
        f"error: {folder / 'b.png'}: failed (RuntimeError: decoder bug)",
        f"error: {folder / 'c.png'}: out of memory while upscaling it",
        f"error: {folder / 'clip.mp4'}: failed (OSError: [Errno 5] Input/output error)"], err
    assert "Traceback" not in err
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a_x4.png"]


@pytest.mark.parametrize("denied", ["manifest.json", "int8_f+0.onnx", "the folder"])
def test_a_model_directory_the_system_will_not_let_us_read_is_one_line(capsys, tiny_model_dir, folder, tmp_path,
                                                                      monkeypatch, denied):
    """An unreadable manifest, graph or folder was a PermissionError traceback. (Tests may run as root, whom
    chmod does not stop, so the system's refusal is simulated where Python asks for the bytes.)"""
    from pathlib import Path as P
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    target = model if denied == "the folder" else model / denied
    real_read_bytes, real_read_text, real_is_dir = P.read_bytes, P.read_text, P.is_dir

    def refuse(real):
        def method(self, *args, **kwargs):
            if self == target or (denied == "the folder" and self.parent == target):
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *args, **kwargs)
        return method

    monkeypatch.setattr(P, "read_bytes", refuse(real_read_bytes))
    monkeypatch.setattr(P, "read_text", refuse(real_read_text))
    monkeypatch.setattr(P, "is_dir", refuse(real_is_dir))
    rc, err = upscale(capsys, model, folder / "a.png", "-o", tmp_path / "x.png")
    name = target if denied == "the folder" else model / denied
    assert rc == 2 and errors_of(err) == [f"error: {name}: cannot read the model directory (Permission denied)"], err
    assert not (tmp_path / "x.png").exists()


def test_an_unreadable_file_in_a_scan_is_listed_as_skipped_and_a_named_one_fails(capsys, tiny_model_dir, folder,
                                                                                monkeypatch):
    """(Tests may run as root, whom permissions do not stop: the system's answer is simulated.)"""
    import runtime.headers
    cv2.imwrite(str(folder / "locked.png"), photo(seed=3))
    real_access = os.access
    monkeypatch.setattr(runtime.headers.os, "access",
                        lambda p, mode: False if Path(p).name == "locked.png" else real_access(p, mode))
    stats = folder.parent / "s.json"
    rc, err = upscale(capsys, tiny_model_dir, folder, "-o", folder.parent / "out", "--stats", stats)
    assert rc == 0 and json.loads(stats.read_text())["skipped"] == [
        f"skipped {folder / 'locked.png'}: cannot read (permission denied)"], err
    rc, err = upscale(capsys, tiny_model_dir, folder / "locked.png", "-o", folder.parent / "x.png")
    assert rc == 1 and errors_of(err) == [f"error: {folder / 'locked.png'}: cannot read (permission denied)"], err
    assert sorted(p.name for p in (folder.parent / "out").iterdir()) == ["a_x4.png"]
