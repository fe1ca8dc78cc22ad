"""Videos: `python -m runtime.upscale clip.mp4` writes clip_x4.mp4 (also .mkv, .webm, .mov).

Frames are decoded, upscaled and encoded one at a time (memory is one frame in and one out, whatever the
length), with PyAV (FFmpeg's libraries, the `video` extra). The video stream is re-encoded at the input's
frame rate and time base, with its colour primaries, transfer, matrix and range kept; audio, subtitle and data
streams are copied packet for packet. The output is written to a hidden temporary file and renamed when
complete, like every other output. A file cut off mid-stream decodes what it has without an error; what was
decoded is compared with what the header declares, and a video that falls short is refused, not written shorter.

A phone's portrait clip is stored sideways with a display rotation (a 90-degree display matrix): its frames are
upscaled as stored and the output carries the same rotation, so players and phones show it upright exactly as
they show the input (rather than turning the pixels: the stored frames stay as the camera wrote them).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import staged
from .errors import UserError
from .jobs import VIDEO_SUFFIXES, Job
from .pipeline import NonFiniteOutput, Upscaler

__all__ = ["VIDEO_SUFFIXES", "upscale_video"]
# encoder per container: H.264 near-transparent (CRF 16) where the container takes it, VP9 for WebM
ENCODERS = {".webm": ("libvpx-vp9", {"crf": "20", "b": "0", "deadline": "good", "cpu-used": "5"}),
            "*": ("libx264", {"crf": "16", "preset": "medium"})}


def _av():
    try:
        import av
    except ImportError:
        raise UserError("videos need PyAV, which this install lacks: pip install 'adabm-deploy[video]'") from None
    return av


def upscale_video(job: Job, upscaler: Upscaler, show: bool = False) -> dict:
    """Upscale job.source's first video stream into job.target; returns the stats record."""
    av = _av()
    start = time.perf_counter()
    try:
        source = av.open(str(job.source))
    except (av.error.FFmpegError, OSError) as exc:
        raise UserError(f"{job.source}: cannot open as a video ({exc})") from None
    with source:
        video = next((s for s in source.streams if s.type == "video"), None)
        if video is None:
            raise UserError(f"{job.source}: no video stream")
        codec, options = ENCODERS.get(job.target.suffix.lower(), ENCODERS["*"])
        s = upscaler.scale
        rotation = _display_rotation(av, job.source, video.index)
        job.target.parent.mkdir(parents=True, exist_ok=True)
        with staged(job.target) as tmp:
            frames = _transcode(av, source, video, tmp, codec, options, s, upscaler, show, job, rotation)
    seconds = time.perf_counter() - start
    return {"input": str(job.source), "output": str(job.target), "engine": upscaler.engine.name, "frames": frames,
            "rotation": rotation,
            "lr_size": [video.codec_context.width, video.codec_context.height], "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 3) if seconds else None, "codec": codec}


def _display_rotation(av, path: Path, index: int) -> int:
    """The display rotation of the stream's first frame in degrees (0 without a display matrix); read apart, as
    the output's header, written before the first frame is decoded, must carry it."""
    try:
        with av.open(str(path)) as probe:
            frame = next(probe.decode(probe.streams[index]), None)
    except av.error.FFmpegError as exc:
        raise UserError(f"{path}: damaged video data at frame 0 ({exc})") from None
    return int(round(frame.rotation)) if frame is not None and frame.rotation else 0


def _transcode(av, source, video, tmp: Path, codec: str, options: dict, s: int, upscaler: Upscaler, show: bool,
               job: Job, rotation: int) -> int:
    ctx = video.codec_context
    with av.open(str(tmp), "w") as out:
        encoded = out.add_stream(codec, rate=video.average_rate or video.guessed_rate, options=options)
        encoded.width, encoded.height = ctx.width * s, ctx.height * s
        if rotation:
            encoded.set_display_rotation(rotation)
        encoded.pix_fmt = "yuv420p"
        encoded.time_base = video.time_base
        for key in ("color_primaries", "color_trc", "colorspace", "color_range"):
            setattr(encoded.codec_context, key, getattr(ctx, key))
        copied = {}
        for stream in source.streams:
            if stream is not video and stream.type in ("audio", "subtitle", "data"):
                try:
                    copied[stream.index] = out.add_stream_from_template(stream)
                except (ValueError, av.error.FFmpegError) as exc:
                    raise UserError(f"{job.source}: its {stream.type} stream cannot be copied into "
                                    f"{job.target.suffix} ({exc})") from None
        n, end, stream_end = 0, 0.0, 0.0  # where the video's frames end; where any stream's packets end
        with tqdm(total=video.frames or None, desc=job.source.name, unit="frame", disable=not show) as bar:
            for packet in _packets(av, source, job, lambda: n):
                if packet.pts is not None and packet.time_base is not None:
                    stream_end = max(stream_end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                if packet.stream.index in copied:
                    if packet.dts is not None:
                        packet.stream = copied[packet.stream.index]
                        out.mux(packet)
                    continue
                if packet.stream is not video:
                    continue
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    raise UserError(f"{job.source}: damaged video data at frame {n} ({exc})") from None
                for frame in decoded:
                    try:
                        upscaled = _upscaled(av, frame, upscaler, encoded)
                    except NonFiniteOutput as exc:
                        raise UserError(f"{job.source}: frame {n}: {exc}") from None
                    out.mux(encoded.encode(upscaled))
                    n += 1
                    end = max(end, (frame.time or 0.0) + _interval(video))
                    bar.update()
        out.mux(encoded.encode(None))
    if n == 0:
        raise UserError(f"{job.source}: no frames decoded")
    if (short := _shortfall(source, video, n, end, stream_end)) is not None:
        raise UserError(f"{job.source}: truncated or damaged video ({short}); nothing written")
    return n


def _packets(av, source, job: Job, frames_so_far):
    """The container's packets; a demuxer error (data cut off or damaged) names the frame it stopped at."""
    packets = source.demux()
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            raise UserError(f"{job.source}: damaged video data at frame {frames_so_far()} ({exc})") from None
        yield packet


def _interval(video) -> float:
    rate = video.average_rate or video.guessed_rate
    return float(1 / rate) if rate else 0.0


# Decoded video may end this much before the declared end (a last frame's display time, edit lists, rounding).
END_SLACK_FRAMES, END_SLACK_SECONDS = 2, 0.25


def _shortfall(source, video, n: int, end: float, stream_end: float) -> str | None:
    """Why what was decoded falls short of what the container declares, or None: fewer frames than its frame
    count, video ending before the stream's duration, or every stream ending before the file's duration (an MKV
    declares only that). A file cut off mid-stream decodes what it has without an error, so this comparison is
    what tells a truncated video from a short one."""
    if video.frames and n < video.frames:
        return f"{n} of the {video.frames} frames its header lists decoded"
    slack = max(END_SLACK_FRAMES * _interval(video), END_SLACK_SECONDS)
    if video.duration is not None and video.time_base is not None:
        declared = float(((video.start_time or 0) + video.duration) * video.time_base)
        if end + slack < declared:
            return f"frames end at {end:.2f} s of the {declared:.2f} s its header declares"
    elif source.duration is not None:
        declared = (source.duration + (source.start_time or 0)) / 1_000_000
        if max(end, stream_end) + slack < declared:
            return f"its streams end at {max(end, stream_end):.2f} s of the {declared:.2f} s its header declares"
    return None


def _upscaled(av, frame, upscaler: Upscaler, encoded):
    rgb = frame.to_ndarray(format="rgb24")
    sr, _ = upscaler.upscale_rgb(rgb, np.uint8)
    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(sr), format="rgb24")
    out = out.reformat(format="yuv420p", dst_colorspace=frame.colorspace or None)
    for key in ("color_primaries", "color_trc", "colorspace", "color_range"):
        setattr(out, key, getattr(frame, key))
    out.pts, out.time_base = frame.pts, frame.time_base
    return out
