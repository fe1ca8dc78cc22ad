"""`python -m runtime.batch INPUT... -o OUT`: upscale a folder or a list of URIs of images on a Dask cluster.

Dask (dask.distributed, the `batch` extra) rather than Ray: it is pure Python with a small install beside
ONNX Runtime, a local cluster starts in a second (the tests start one on loopback), and a real cluster is a
scheduler address (`--scheduler tcp://host:8786`) with `dask worker tcp://host:8786 --nthreads 1` on each
machine. Every worker process loads the model once and keeps it (one set of ONNX Runtime sessions per worker,
warmed on one full-size window before the job starts);
each image is one task that reads its input (a local path, or any URI fsspec opens: file://, s3://, https://),
upscales it and writes the output atomically under OUT (a folder every worker sees). The run is planned first
like runtime.upscale's: outputs that exist are skipped unless --overwrite, so a job stopped half-way resumes
where it was; an image that fails is reported and the job goes on. --report writes every record and failure.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Sequence

from tqdm import tqdm

from .api import DEFAULT_MODEL, SuperResolver
from .atomic import check_json_target, write_json
from .command import run_cli
from .engines.choice import AUTO, CHOICES, DEFAULT_VARIABLE, default
from .errors import UserError
from .files import extra_pages, process
from .headers import max_file_bytes, oversized, regular_file
from .images import INPUT_SUFFIXES
from .jobs import Job, collect, keep_out_of_model, output_name, plan

_MODELS: dict[tuple, SuperResolver] = {}  # per worker process: one model, sessions and threads, kept


def _dask():
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UserError("the batch job needs Dask, which this install lacks: pip install 'adabm-deploy[batch]'") \
            from None
    return Client, LocalCluster, as_completed


def is_uri(text: str) -> bool:
    return "://" in text


def read_uri(job: Job, max_pixels: int) -> bytes:
    """The bytes at a URI, at most max_file_bytes(max_pixels) of them (a local file:// is checked to be a
    regular file first)."""
    limit = max_file_bytes(max_pixels)
    import fsspec
    if job.uri.startswith("file://") and (why := regular_file(Path(job.uri[len("file://"):]))) is not None:
        raise UserError(f"{job.uri}: {why}")
    try:
        with fsspec.open(job.uri) as f:
            data = f.read(limit + 1)
    except (OSError, ValueError, ImportError) as exc:
        raise UserError(f"{job.uri}: cannot read ({exc})") from None
    if len(data) > limit:
        raise oversized(job.uri, max_pixels)
    return data


def worker_model(model: str, options: dict) -> SuperResolver:
    """The worker process's model: loaded (validated, sessions made, graphs probed) once, then kept."""
    key = (model, tuple(sorted(options.items())))
    if key not in _MODELS:
        _MODELS[key] = SuperResolver(model, **options)
    return _MODELS[key]


def warm(model: str, options: dict) -> None:
    worker_model(model, options).warm_up()


def run_one(job: Job, model: str, options: dict) -> tuple[dict | None, str | None]:
    """A task: (record, None) or (None, error line), run on a worker."""
    sr = worker_model(model, options)
    records, failures = process([job], sr.upscaler, max_pixels=sr.max_pixels,
                                read=(lambda j: read_uri(j, sr.max_pixels)) if job.uri else None)
    if not records:
        return None, failures[0]
    return records[0] | {"worker": os.getpid()}, None


def plan_uris(uris: list[str], output: Path, suffix: str, overwrite: bool, claimed: dict[Path, str]
              ) -> tuple[list[Job], list[str]]:
    """Jobs for URIs (outputs named after the URI's file name, under `output`), skips for existing outputs.
    `claimed`: outputs the local inputs already write (-> their source); a URI naming one of them is refused."""
    jobs, skipped, seen = [], [], dict(claimed)
    for uri in uris:
        name = PurePosixPath(uri.split("://", 1)[1]).name
        if Path(name).suffix.lower() not in INPUT_SUFFIXES:
            raise UserError(f"{uri}: not an image name (supported: {', '.join(sorted(INPUT_SUFFIXES))})")
        target = output / output_name(Path(name), suffix)
        if target in seen:
            raise UserError(f"{target}: named as both the output of {seen[target]} and of {uri}")
        seen[target] = uri
        if target.exists() and not overwrite:
            skipped.append(f"skipped {uri}: {target} already exists (--overwrite replaces it)")
        else:
            jobs.append(Job(Path(name), target, uri=uri))
    return jobs, skipped


def connect(Client, scheduler: str | None, cluster):
    """A client of the --scheduler (or of the local cluster); an address that cannot be reached within Dask's
    connect timeout (distributed.comm.timeouts.connect, 30 s by default) is one line, exit 2."""
    if cluster is not None:
        return Client(cluster)
    try:
        return Client(scheduler)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--scheduler {scheduler}: cannot reach it ({reason})") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runtime.batch", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", type=str, metavar="INPUT", help="image files or folders")
    p.add_argument("--list", type=Path, help="a text file of image URIs or paths, one per line")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (seen by every worker)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory (seen by every worker)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    p.add_argument("--workers", type=int, default=1,
                   help="local cluster: worker processes (default one, on all cores: its engine lays them out)")
    p.add_argument("--threads", type=int, default=0, help="cores per worker (0: all of its machine's)")
    p.add_argument("--engine", choices=CHOICES,
                   help="inference engine; auto: each worker runs the fastest on its own machine (timed once, "
                        f"cached); default: ${DEFAULT_VARIABLE} here, else auto")
    p.add_argument("--suffix", help="output name suffix (default: _x<scale>)")
    p.add_argument("--overwrite", action="store_true", help="redo images whose output exists")
    p.add_argument("--report", type=Path, help="write every record and failure (JSON)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    Client, LocalCluster, as_completed = _dask()
    if args.report:
        check_json_target(args.report)
    lines = [line.strip() for line in args.list.read_text().splitlines()] if args.list else []
    items = args.inputs + [line for line in lines if line and not line.startswith("#")]
    if not items:
        raise UserError("no inputs (give files, folders or --list)")
    uris = [i for i in items if is_uri(i)]  # file:// too: read through fsspec like any remote store
    local = [Path(i) for i in items if not is_uri(i)]
    # the model is validated (and its scale read) here, before a worker starts
    engine = args.engine or default()
    # auto is decided by each worker on its own machine; here a named engine is checked against the model
    with SuperResolver(args.model, threads=1, suffix=args.suffix,
                       engine="onnxruntime" if engine == AUTO else engine) as probe:
        suffix, model = probe.suffix, str(probe.manifest.root.resolve())
    keep_out_of_model(args.output, Path(model), "the outputs")
    args.output.mkdir(parents=True, exist_ok=True)
    found = collect(local, suffix, lambda m: print(m, file=sys.stderr), [args.output])
    planned = plan(found.inputs, found.own_outputs, args.output, suffix, overwrite=args.overwrite,
                   model=Path(model))
    remote_jobs, remote_skipped = plan_uris(uris, args.output, suffix, args.overwrite,
                                            {job.target: str(job.source) for job in planned.jobs})
    skipped = found.skipped + planned.skipped + remote_skipped
    for line in planned.notes + skipped:
        print(line, file=sys.stderr)
    failed = list(found.errors)
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    options = {"threads": args.threads, "suffix": suffix, "engine": engine}
    started = time.perf_counter()
    cluster = None
    if not args.scheduler:
        import dask
        # no dashboard, so no use for the workers' statistical profiler (it samples their stacks every 10 ms)
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=max(args.workers, 1), threads_per_worker=1,
                                   processes=True, host="127.0.0.1", dashboard_address=None)
    records = []
    try:
        # the tasks by their importable name: run as `python -m`, this module is __main__, whose functions
        # would travel by value with a fresh model cache each
        from runtime import batch as tasks
        with connect(Client, args.scheduler, cluster) as client:
            client.run(tasks.warm, model, options)  # every worker loads its model at once
            start = time.perf_counter()  # the job's own time, from running workers with their models
            futures = [client.submit(tasks.run_one, job, model, options, pure=False)
                       for job in planned.jobs + remote_jobs]
            bar = tqdm(total=len(futures), desc="images", unit="img", disable=not sys.stderr.isatty())
            for future in as_completed(futures):
                try:
                    record, error = future.result()
                except Exception as exc:  # a worker that died, a task that raised: reported, the job goes on
                    record, error = None, f"{type(exc).__name__}: {exc}"
                if record is not None:
                    records.append(record)
                    if (line := extra_pages(record)) is not None:
                        skipped.append(line)
                        print(line, file=sys.stderr)
                    print(f"{record['input']} -> {record['output']} ({record['seconds']:.2f} s, {record['engine']})")
                else:
                    failed.append(error)
                    print(f"error: {error}", file=sys.stderr)
                bar.update()
            bar.close()
            workers = len(client.scheduler_info()["workers"])
    finally:
        if cluster is not None:
            cluster.close()
    seconds = time.perf_counter() - start
    print(f"{len(records)} written, {len(skipped)} skipped, {len(failed)} failed in {seconds:.1f} s on {workers} "
          f"workers ({len(records) / seconds / max(workers, 1):.3f} images/s per worker; cluster start and "
          f"model load {start - started:.1f} s)", file=sys.stderr)
    if args.report:
        write_json(args.report, {"model": model, "workers": workers, "seconds": round(seconds, 3),
                                 "startup_seconds": round(start - started, 3),
                                 "images": records, "skipped": skipped, "failed": failed})
    return 1 if failed else 0


def console() -> None:
    """The `adabm-batch` console script."""
    sys.exit(run_cli(main))


if __name__ == "__main__":
    console()
