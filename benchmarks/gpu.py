"""Labelling throughput on a GPU: tiles per second by model, precision and batch size.

Prints ``name: value`` lines, prefixed by model and precision (for example
``vit_b_32.bf16.``):

- ``encode_tiles_per_s_bN``: ``encode_image`` on tiles already preprocessed and copied
  to the device, at batch size N, with the device synchronised before the clock stops.
  Batch sizes double from 16 until the device runs out of memory or ``--max-batch``.
- ``saturating_batch_size``: the smallest batch size that reaches 95% of the best
  encode throughput; larger batches only cost memory.
- ``end_to_end_tiles_per_s``: ``open_views``, ``plan_tiles`` and ``Labeler.label_view``
  on an OME-TIFF on disk at the saturating batch size, so reading, tiling and
  preprocessing on the CPU are included.
- ``label_agreement_with_fp32``: fraction of tiles with the same cell type as at fp32.
- ``peak_memory_mb``: the most device memory torch held during the encode runs.

Models: the bundled ``builtin:demo`` (64 px tiles) and an untrained open_clip
ViT-B-32 (224 px tiles), whose cost is that of any ViT-B-32 CLIP. Precisions: fp32,
fp16 and bf16 (autocast), the ones the device supports.

Without a CUDA device the script prints that nothing was measured and exits with
status 0, so ``make bench`` runs everywhere. ``--device cpu --quick`` runs the same
measurements on the CPU, to check the script itself.

Usage: ``python benchmarks/gpu.py [--device cuda] [--quick] [--max-batch N] [--models demo,vit_b_32]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labeling import (  # noqa: E402 - the sibling benchmark script, found through the path set above
    REPO, demo_model, end_to_end, ready_tensors, vit_b_32_model, write_test_image,
)

from vlm_micro.labeling import LabelSettings, Labeler, load_vocabulary  # noqa: E402
from vlm_micro.labeling.zero_shot import encode_batch  # noqa: E402

SATURATION = 0.95  # share of the best throughput that counts as saturated
MODELS = {"demo": (demo_model, 2048), "vit_b_32": (vit_b_32_model, 4096)}  # model and test image side (px)
DEVICE_PATTERN = re.compile(r"cpu|cuda(:[0-9]+)?|mps")


def model_names(text: str) -> list[str]:
    """Parse ``--models``: a comma-separated subset of the keys of MODELS."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    allowed = ",".join(MODELS)
    if not names:
        raise argparse.ArgumentTypeError(f"no model given; use a comma-separated subset of {allowed}")
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model {unknown[0]!r}; use a comma-separated subset of {allowed}")
    return names


def device_name(text: str) -> str:
    """Parse ``--device``: cpu, cuda, cuda:N or mps."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid device {text!r}; use cpu, cuda, cuda:N (N a GPU index) or mps")
    return text


def check_device_present(parser: argparse.ArgumentParser, device: str) -> None:
    """Reject a GPU index or mps that this machine does not have.

    Plain cuda without a GPU is accepted, because main then reports that nothing was
    measured and exits with status 0, so `make bench` runs on any machine.
    """
    if device.startswith("cuda:") and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if int(device.split(":")[1]) >= count:
            parser.error(f"argument --device: {device} is not present, because only {count} CUDA device(s) are "
                         f"visible; use cuda:0 to cuda:{count - 1}")
    if device == "mps" and not torch.backends.mps.is_available():
        parser.error("argument --device: mps is not available on this machine "
                     "(torch.backends.mps.is_available() is False); use cpu or cuda")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=device_name, default="cuda",
                        help="torch device: cpu, cuda, cuda:N or mps (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="small image, batch sizes up to 64, one repeat")
    parser.add_argument("--max-batch", type=int, default=4096, help="largest batch size tried (default: 4096)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per timing, best kept (default: 3, quick: 1)")
    parser.add_argument("--models", type=model_names, default="demo,vit_b_32",
                        help="comma-separated subset of demo,vit_b_32 (default: both)")
    args = parser.parse_args(argv)
    check_device_present(parser, args.device)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.quick:
        args.max_batch = min(args.max_batch, 64)
    return args


def supported_precisions(device: str) -> list[str]:
    """Return the autocast precisions worth measuring on ``device``."""
    if device.startswith("cuda"):
        precisions = ["fp32", "fp16"]
        if torch.cuda.is_bf16_supported():
            precisions.append("bf16")
        return precisions
    return ["fp32", "bf16"]  # the pipeline runs fp16 requests on the CPU at fp32


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def encode_rate(loaded, tensors: torch.Tensor, batch_size: int, repeats: int) -> float:
    """Return the best tiles per second of encoding ``tensors`` (already on the device) in batches."""
    best = float("inf")
    with torch.inference_mode():
        encode_batch(loaded, tensors[:batch_size])  # warm-up: kernels and autocast caches
        for _ in range(repeats):
            synchronize(loaded.device)
            start = time.perf_counter()
            for first in range(0, len(tensors), batch_size):
                encode_batch(loaded, tensors[first:first + batch_size])
            synchronize(loaded.device)
            best = min(best, time.perf_counter() - start)
    return len(tensors) / best


def batch_sweep(loaded, tensors: torch.Tensor, max_batch: int, repeats: int) -> dict[int, float]:
    """Measure encode throughput at doubling batch sizes until memory runs out or ``max_batch``."""
    rates = {}
    batch_size = 16
    while batch_size <= max_batch:
        # At least two batches per run, so a batch larger than the tiles is not measured as smaller.
        count = max(len(tensors), 2 * batch_size)
        repeated = tensors.repeat((count + len(tensors) - 1) // len(tensors), 1, 1, 1)[:count]
        try:
            rates[batch_size] = encode_rate(loaded, repeated, batch_size, repeats)
        except torch.OutOfMemoryError:
            print(f"# batch size {batch_size} ran out of device memory", flush=True)
            break
        finally:
            del repeated
            if loaded.device.startswith("cuda"):
                torch.cuda.empty_cache()
        batch_size *= 2
    return rates


def saturating_batch_size(rates: dict[int, float]) -> int:
    best = max(rates.values())
    return min(size for size, rate in rates.items() if rate >= SATURATION * best)


def benchmark(prefix: str, loaded, path: Path, args, vocabulary) -> None:
    tile_size_px = loaded.tile_size_px or loaded.image_size
    loaded = dataclasses.replace(loaded, device=args.device)
    loaded.model.to(args.device)
    tensors = ready_tensors(path, loaded, tile_size_px)
    print(f"{prefix}.tiles: {len(tensors)}", flush=True)
    print(f"{prefix}.tile_size_px: {tile_size_px}", flush=True)
    settings = LabelSettings.from_dict({"text_cache": None})
    reference = None
    for precision in supported_precisions(args.device):
        name = f"{prefix}.{precision}"
        variant = dataclasses.replace(loaded, precision=precision)
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(args.device)
        rates = batch_sweep(variant, tensors.to(args.device), args.max_batch, args.repeats)
        if not rates:
            print(f"{name}.encode: no batch size fitted in device memory", flush=True)
            continue
        for batch_size, rate in rates.items():
            print(f"{name}.encode_tiles_per_s_b{batch_size}: {rate:.1f}", flush=True)
        chosen = saturating_batch_size(rates)
        print(f"{name}.saturating_batch_size: {chosen}", flush=True)
        if args.device.startswith("cuda"):
            print(f"{name}.peak_memory_mb: {torch.cuda.max_memory_allocated(args.device) / 2**20:.0f}", flush=True)
        labeler = Labeler(variant, vocabulary, settings)
        end_to_end(path, labeler, tile_size_px, chosen)  # warm-up
        start = time.perf_counter()
        labels = end_to_end(path, labeler, tile_size_px, chosen)
        print(f"{name}.end_to_end_tiles_per_s: {len(labels) / (time.perf_counter() - start):.1f}", flush=True)
        if reference is None:
            reference = labels["cell_type"].to_numpy()
        else:
            agreement = float((labels["cell_type"].to_numpy() == reference).mean())
            print(f"{name}.label_agreement_with_fp32: {agreement:.3f}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu: not available (torch.cuda.is_available() is False); nothing measured", flush=True)
        return 0
    # open_clip warns on the root logger that an untrained model has random weights, which is intended here.
    logging.basicConfig(level=logging.ERROR)
    if args.device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name(args.device)}", flush=True)
        print(f"device_memory_gb: {torch.cuda.get_device_properties(args.device).total_memory / 2**30:.1f}", flush=True)
    else:
        print(f"device: {args.device}", flush=True)
    print(f"torch: {torch.__version__}", flush=True)
    vocabulary = load_vocabulary(REPO / "config" / "labels.yaml")
    with tempfile.TemporaryDirectory(prefix="vlm-micro-gpu-") as tmp:
        for prefix in args.models:
            make_model, size_px = MODELS[prefix]
            size_px = 512 if args.quick else size_px
            path = write_test_image(Path(tmp), size_px)
            print(f"{prefix}.image_px: {size_px}", flush=True)
            loaded, description = make_model()
            print(f"{prefix}.model: {description}", flush=True)
            benchmark(prefix, loaded, path, args, vocabulary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
