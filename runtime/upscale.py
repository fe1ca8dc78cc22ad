"""`python -m runtime.upscale INPUT...`: super-resolve images and videos with an exported model on CPU
inference engines (no torch).

Each LR image is cut into cells of at most --patch pixels; each cell's gradient density picks its rung (the
cheap bicubic rung, or the INT8 variant of the manifest's thresholds), cells run with --overlap pixels of
context on the inference engine (--engine; auto: the fastest here), and the outputs are cross-faded into one
image written beside the input (or under -o) with a suffix. A bad image is reported on one line and skipped;
the exit code is 1 if any image failed. A thin layer over runtime.api.SuperResolver.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .api import DEFAULT_MODEL, DEFAULT_OVERLAP, SuperResolver
from .command import run_cli
from .engines.choice import CHOICES, DEFAULT_VARIABLE
from .headers import MAX_PIXELS
from .pipeline import VARIANTS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runtime.upscale", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image or video files, or folders (recursive)")
    p.add_argument("-o", "--output", type=Path,
                   help="output file (one input) or folder; default: beside each input")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory from python -m export")
    p.add_argument("--patch", type=int, help="LR cell size for routing and tiling (default: the manifest's, 96)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="LR context pixels per side, cross-faded")
    p.add_argument("--threads", type=int, default=0,
                   help="cores to use (0: all), laid out as the engine runs fastest")
    p.add_argument("--engine", choices=CHOICES,
                   help="inference engine; auto: the fastest installed one on this machine (timed once, cached); "
                        f"default: ${DEFAULT_VARIABLE}, else auto")
    p.add_argument("--variant", choices=VARIANTS, default="auto",
                   help="auto: route each cell by complexity; or force one INT8 variant, or the FP32 graph")
    p.add_argument("--no-cheap-rung", action="store_true",
                   help="run the network on every cell, also those the model's cheap rung would upscale bicubically")
    p.add_argument("--suffix", help="output name suffix (default: _x<scale>)")
    p.add_argument("--stats", type=Path, help="write per-image latency, cells per variant and FAB (JSON)")
    p.add_argument("--bitmap", type=Path,
                   help="write the per-cell bit-factor overlay (a file for one input, else a folder of "
                        "<name>_bits.png)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing <name>_x4.* outputs (default: skip inputs whose output exists)")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help=f"refuse inputs whose header claims more pixels (default {MAX_PIXELS:,})")
    return p.parse_args(argv)



def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with SuperResolver(args.model, patch=args.patch, overlap=args.overlap, threads=args.threads,
                       variant=args.variant, cheap_rung=not args.no_cheap_rung, max_pixels=args.max_pixels,
                       suffix=args.suffix, engine=args.engine) as sr:
        s = sr.scale
        print(sr.choice.describe(), flush=True)

        def announce(record: dict) -> None:
            w, h = record["lr_size"]
            what = (f"{record['frames']} frames, {record['fps']:.2f} frames/s" if "frames" in record else
                    f"{record['seconds']:.2f} s, cells {record['cells']}"
                    + (f", FAB {record['fab']:.2f}" if record.get("fab") is not None else ""))
            print(f"{record['input']} -> {record['output']} ({w}x{h} -> {w * s}x{h * s}, {what})")

        run = sr.upscale_files(args.inputs, args.output, overwrite=args.overwrite, bitmap=args.bitmap,
                               stats=args.stats, show=sys.stderr.isatty(), on_done=announce,
                               on_error=lambda m: print(f"error: {m}", file=sys.stderr),
                               say=lambda m: tqdm.write(m, file=sys.stderr))
    return 1 if run.failed else 0


def console() -> None:
    """The `adabm-upscale` console script."""
    sys.exit(run_cli(main))


if __name__ == "__main__":
    console()
