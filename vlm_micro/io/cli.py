"""The ``vlm-micro inspect`` command: what a file contains and what the reader uses."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add the ``inspect`` subcommand."""
    parser = subparsers.add_parser(
        "inspect",
        help="show series, axes, shape, dtype, pixel size, channels and levels of an image file",
        description=(
            "Show what an image file holds (series, axes, shape, dtype, pixel size in um/px, "
            "channels, pyramid levels, label and macro images) and what the reader uses. "
            "Reads metadata only, no pixel data."
        ),
    )
    parser.add_argument("file", metavar="FILE", help="TIFF, OME-TIFF, ImageJ TIFF, SVS, PNG or JPEG file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--config", metavar="YAML", help="take the read settings from the read: section of this config file")
    parser.add_argument("--series", metavar="SERIES",
                        help="series selection to report: first, all, a series name or a 0-based index (default: the config's, else first)")
    parser.set_defaults(func=run_inspect)


def _settings(args):
    from vlm_micro.io.settings import ReadSettings

    section = {}
    if args.config:
        from vlm_micro.config import read_yaml

        section = dict(read_yaml(args.config).get("read") or {})
    if args.series is not None:
        section["series"] = int(args.series) if args.series.isdigit() else args.series
    return ReadSettings.from_dict(section)


def run_inspect(args: argparse.Namespace) -> int:
    """Print the inspection of one file; errors reach the dispatcher as VlmMicroError."""
    from vlm_micro.io.inspection import inspect_image

    info = inspect_image(args.file, _settings(args))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_summary(info))
    return 0


def _size_text(series: dict) -> str:
    size = series.get("pixel_size_um")
    if size is None:
        return "pixel size unknown (uncalibrated)"
    return f"pixel size {size:.4g} um/px ({series.get('pixel_size_source')})"


def _channel_text(channels: list[dict]) -> str:
    parts = []
    for channel in channels:
        name = channel.get("name") or f"channel {channel['index']}"
        parts.append(f"{name} {channel['color']}" if channel.get("color") else name)
    return ", ".join(parts)


def _series_lines(series: dict) -> list[str]:
    head = f"  [{series['index']}] {series['name']!r}: {series['role']}"
    if series["role"] != "image":
        return [f"{head}, {series['axes']} {tuple(series['shape'])} {series['dtype']} (not analysed)"]
    lines = [f"{head}, {series['axes']} {tuple(series['shape'])} {series['dtype']}, {_size_text(series)}"]
    levels = series.get("levels") or []
    if levels:
        native = sum(1 for level in levels if level["native"])
        # Width x height, as images.tsv and image viewers give sizes; level shapes are (rows, columns).
        shapes = ", ".join(f"{level['shape'][1]}x{level['shape'][0]}" for level in levels)
        lines.append(f"      levels: {len(levels)} ({native} in the file), width x height: {shapes}")
    if series.get("channels"):
        lines.append(f"      channels: {_channel_text(series['channels'])}")
    if series.get("problem"):
        lines.append(f"      cannot be read: {series['problem']}")
    return lines


def format_summary(info: dict) -> str:
    """Format the dict of :func:`inspect_image` as a readable multi-line summary."""
    lines = [
        f"file: {info['path']} ({info['format']}, {info['file_size_bytes']} bytes)",
        f"image series: {info['series']}",
    ]
    for series in info["series_list"]:
        lines.extend(_series_lines(series))
    choice = info["reader_choice"]
    lines.append(f"reader uses: series {choice['series']}, {choice['views']} view(s)")
    for item in choice["per_series"]:
        if "problem" in item:
            lines.append(f"  series {item['series']}: cannot be read: {item['problem']}")
            continue
        frames = item["frames"]
        if frames == [None]:
            frame_text = "no time axis"
        elif len(frames) > 1:
            frame_text = f"{len(frames)} frames"
        else:
            frame_text = f"frame {frames[0]}"
        projection = f", z {item['projection']} projection" if item["projection"] else ""
        colors = f", colours {', '.join(item['channel_colors'])}" if item.get("channel_colors") else ""
        lines.append(f"  series {item['series']}: {frame_text}{projection}, rendering {item['rendering']}{colors}")
    return "\n".join(lines)
