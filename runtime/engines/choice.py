"""Which engine runs a model on this machine: the one named, or with `auto` the fastest, measured here.

No CPU list is written down anywhere: which engine is faster depends on the CPU (OpenVINO runs int8 convs on
AMX where ONNX Runtime's stop at the VNNI peak; without AMX they were at parity), the model and the threads.
So `auto` times one full window of the graph the run will use on each installed engine that the model
directory has a form for, each in its own layout (calls at once x threads per call), compares windows per
second, and keeps the answer per CPU model, core count, model directory (its manifest's sha256), graph,
threads and engine versions in the user's cache folder, so the probe runs once per machine and model. A probe
during which other work took more than OTHER_WORK_LIMIT of the cores decides this run only and is not kept:
other work slows the engines unequally (CARN-M x2 here: OpenVINO 61.4 windows/s against ONNX Runtime's 26.7 on
idle cores, 15.2 against 15.8 beside a test run), and a cache would keep that moment's answer for good.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..cpu import cpu_model, int8_extensions, other_work
from ..errors import UserError
from ..manifest import MANIFEST, Manifest, sha256_bytes
from . import ENGINES, Engine, installed, open_engine
from .base import cache_folder

AUTO = "auto"
CHOICES = (AUTO, *ENGINES)
DEFAULT_VARIABLE = "ADABM_DEPLOY_ENGINE"  # the engine when none is named (a fleet pins one); unset: auto
PREFERRED = "onnxruntime"  # the reference engine, kept unless another is faster by more than MARGIN
MARGIN = 0.05
PROBE_RUNS = 3
OTHER_WORK_LIMIT = 0.25  # share of the cores other work may take during a probe that is kept
CACHE_FILE = "engine-choice.json"


@dataclass(frozen=True)
class Choice:
    engine: Engine
    how: str  # "named", "only one installed", "probed", "cached", or "probed beside other work (...)"
    windows_per_second: dict[str, float]  # per engine, from the probe (empty when none ran)
    hint: str = ""  # what would make this machine faster, if anything

    def describe(self) -> str:
        rates = ", ".join(f"{name} {rate:.1f}" for name, rate in self.windows_per_second.items())
        return (f"engine: {self.engine.name} ({self.how}" + (f"; windows/s {rates}" if rates else "") + ")"
                + (f"; {self.hint}" if self.hint else ""))


def fastest(windows_per_second: dict[str, float]) -> str:
    """The engine with the highest rate; the preferred one unless another beats it by more than MARGIN."""
    best = max(windows_per_second, key=windows_per_second.__getitem__)
    preferred = windows_per_second.get(PREFERRED)
    if preferred is not None and windows_per_second[best] <= preferred * (1 + MARGIN):
        return PREFERRED
    return best


def cache_path() -> Path:
    return cache_folder() / CACHE_FILE


def cache_key(model: Manifest, factor: int | None, cores: int, candidates: list[str]) -> str:
    from importlib.metadata import version
    versions = ",".join(f"{name} {version(ENGINES[name][2])}" for name in candidates)
    return (f"{cpu_model()}|{os.cpu_count()} cpus|{cores} cores|{sha256_bytes(model.root / MANIFEST)}|"
            f"graph {factor}|{versions}")


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}


def _remember(path: Path, key: str, entry: dict) -> None:
    """Best effort: a cache that cannot be written costs a probe next time, nothing else."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**_read_cache(path), key: entry})
    except (OSError, UserError):
        pass


def windows_per_second(engine: Engine, factor: int | None, side: int, cores: int) -> float:
    """The engine's throughput on full windows in its own layout: `calls` windows run at once (as the pipeline
    runs them, so that what concurrent calls cost each other is measured too), windows / seconds."""
    calls, per_call = engine.layout(cores)
    engine.threads = per_call
    window = np.random.default_rng(0).uniform(0, 255, (1, 3, side, side)).astype(np.float32)
    with ThreadPoolExecutor(calls) as pool:
        def round_seconds() -> float:
            start = time.perf_counter()
            list(pool.map(lambda _: engine.run(factor, window), range(calls)))
            return time.perf_counter() - start
        round_seconds()  # compile and first allocations, untimed
        seconds = [round_seconds() for _ in range(PROBE_RUNS)]
    return calls / float(np.median(seconds))


def default() -> str:
    return os.environ.get(DEFAULT_VARIABLE) or AUTO


def laid_out(name: str, model: Manifest, cores: int) -> Engine:
    """The engine of that name, its compiled graphs set to the threads per call its layout gives `cores`."""
    engine = open_engine(name, model)
    engine.threads = engine.layout(cores)[1]
    return engine


def choose(name: str | None, model: Manifest, factor: int | None, side: int, cores: int) -> Choice:
    """The engine for `model` on this machine: `name` (None: $ADABM_DEPLOY_ENGINE, else auto), or with auto the
    fastest installed engine whose form the directory holds (probed once, then cached). The engine comes back
    laid out for `cores` cores."""
    name = name or default()
    if name not in CHOICES:
        raise UserError(f"engine {name!r}: choose from {', '.join(CHOICES)}")
    if name != AUTO:
        return Choice(laid_out(name, model, cores), "named", {})
    candidates = [e for e in installed() if e in model.engines]
    if not candidates:
        raise UserError(f"{model.root}: no installed engine runs it (it holds {', '.join(model.engines)}; "
                        f"installed: {', '.join(installed()) or 'none'})")
    if len(candidates) == 1:
        missing = "openvino" not in installed() and "openvino" in model.engines and "AMX-INT8" in int8_extensions()
        hint = f"this CPU has AMX-INT8, which {ENGINES['openvino'][3]} puts to use" if missing else ""
        return replace(choose(candidates[0], model, factor, side, cores), how="only one installed", hint=hint)
    path, key = cache_path(), cache_key(model, factor, cores, candidates)
    entry = _read_cache(path).get(key)
    if isinstance(entry, dict) and entry.get("engine") in candidates:
        return Choice(laid_out(entry["engine"], model, cores), "cached",
                      {k: float(v) for k, v in entry.get("windows_per_second", {}).items()})
    engines = {e: open_engine(e, model) for e in candidates}
    with other_work() as share:
        rates = {e: windows_per_second(engine, factor, side, cores) for e, engine in engines.items()}
    best = fastest(rates)
    for e, engine in engines.items():
        if e != best:
            engine.close()
    if share and share[0] > OTHER_WORK_LIMIT:
        return Choice(engines[best], f"probed beside other work ({share[0]:.0%} of the cores), not kept", rates)
    _remember(path, key, {"engine": best, "windows_per_second": {k: round(v, 2) for k, v in rates.items()},
                          "measured": time.strftime("%Y-%m-%d %H:%M:%S")})
    return Choice(engines[best], "probed", rates)
