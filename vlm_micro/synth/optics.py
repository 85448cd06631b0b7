"""Image formation: tissue maps to a fluorescence or brightfield image.

Fluorescence: emission from the nuclear stain is blurred by the point spread function,
scaled by an uneven excitation field, counted as photons (Poisson noise), converted to
camera units with an offset and read noise, and clipped to uint16.

Brightfield: stain concentrations times optical density (OD) vectors give the OD per
RGB channel, as in the Beer-Lambert law. The transmitted light is an uneven lamp field
times ``10 ** -OD`` plus Gaussian camera noise, clipped to uint8. H&E uses haematoxylin and
eosin; the IHC variant uses a lighter haematoxylin counterstain and DAB on a
cytokeratin-like marker of epithelial and tumour cells.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from vlm_micro.synth.anomalies import block_slices
from vlm_micro.synth.tissue import TissueMaps, noise_field

log = logging.getLogger(__name__)

# OD vectors (R, G, B) per unit concentration. H&E: the reference matrix HERef of the
# Macenko stain normaliser in torchstain. IHC: the haematoxylin and DAB rows of
# skimage.color.rgb_from_hed (scikit-image 0.26).
STAIN_VECTORS = {
    "he_hematoxylin": (0.5626, 0.7201, 0.4062),
    "he_eosin": (0.2159, 0.8012, 0.5581),
    "ihc_hematoxylin": (0.65, 0.70, 0.29),
    "ihc_dab": (0.27, 0.57, 0.78),
    "debris": (0.52, 0.58, 0.63),
}

# Fluorescence camera: photons per unit DNA density, camera units (ADU) per photon,
# offset near 19/255 of the range as in widefield nuclear-stain images.
PHOTONS_PER_DNA = 1200.0
ADU_PER_PHOTON = 16.0
CAMERA_OFFSET_ADU = 4900.0
READ_NOISE_ADU = 60.0
UINT16_MAX = 65535


def illumination_field(rng: np.random.Generator, shape: tuple[int, int], falloff: float) -> np.ndarray:
    """Return a smooth field near 1: radial vignetting of depth ``falloff`` from an off-centre
    optical axis, times a slow random modulation of about 5 %."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    centre = rng.uniform(0.3, 0.7, 2) * shape
    radius2 = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (0.5 * max(shape)) ** 2
    coarse = rng.normal(0.0, 1.0, (4, 4)).astype(np.float32)
    slow = ndimage.zoom(coarse, (shape[0] / 4, shape[1] / 4), order=3, mode="nearest")[: shape[0], : shape[1]]
    return (1.0 - falloff * np.clip(radius2, 0, 2) / 2) * (1.0 + 0.05 * slow / 2)


def _blur_blocks(image: np.ndarray, blocks, block_px: int, sigma: float) -> None:
    """Blur each listed block of ``image`` in place, reading a margin around it."""
    pad = int(np.ceil(3 * sigma))
    for row, col in blocks:
        rows, cols = block_slices(row, col, block_px)
        y0, x0 = max(rows.start - pad, 0), max(cols.start - pad, 0)
        crop = image[y0 : rows.stop + pad, x0 : cols.stop + pad]
        sigmas = (sigma, sigma) + (0,) * (crop.ndim - 2)
        blurred = ndimage.gaussian_filter(crop, sigmas)
        image[rows, cols] = blurred[rows.start - y0 : rows.stop - y0, cols.start - x0 : cols.stop - x0]


def _scale_blocks(image: np.ndarray, blocks, block_px: int, gains) -> None:
    for (row, col), gain in zip(blocks, gains):
        image[block_slices(row, col, block_px)] *= gain


def _overexpose_block(rng, block: np.ndarray, clip_photons: float) -> None:
    """Over-expose a block of photon counts in place, so its nuclei clip and its background rises.

    The gain puts the 99th percentile of the block at 1.6-2.4 times the clip level, so the
    bright parts of its nuclei end up at the maximum value. Stray light adds 15-25 % of the
    clip level everywhere in the block.
    """
    gain = rng.uniform(1.6, 2.4) * clip_photons / max(float(np.percentile(block, 99.0)), 1.0)
    block *= float(np.clip(gain, 1.0, 20.0))
    block += rng.uniform(0.15, 0.25) * clip_photons


def render_fluorescence(rng, maps: TissueMaps, artefacts: dict, block_px: int) -> np.ndarray:
    """Render a single-channel nuclear stain image, (rows, columns) uint16.

    ``artefacts`` maps ``out_of_focus`` and ``saturation`` to lists of (row, column) blocks.
    """
    emission = maps.dna * (1.0 - 0.65 * maps.nucleolus)
    # Weak autofluorescence of cytoplasm and of collagen, which also emits in the nuclear-stain channel.
    emission += (0.06 * maps.cytoplasm + 0.12 * maps.stroma) * (1.0 - maps.clear)
    emission += 1.4 * maps.debris_bright
    emission *= 1.0 - 0.8 * np.clip(maps.debris_dark, 0, 1)
    emission = ndimage.gaussian_filter(emission, rng.uniform(0.7, 1.2))
    _blur_blocks(emission, artefacts.get("out_of_focus", []), block_px, rng.uniform(2.0, 3.0))

    exposure = rng.uniform(0.75, 1.25)
    field = illumination_field(rng, emission.shape, rng.uniform(0.15, 0.35))
    photons = exposure * PHOTONS_PER_DNA * field * emission + rng.uniform(30.0, 70.0) * field
    clip_photons = (UINT16_MAX - CAMERA_OFFSET_ADU) / ADU_PER_PHOTON
    for row, col in artefacts.get("saturation", []):
        _overexpose_block(rng, photons[block_slices(row, col, block_px)], clip_photons)

    counts = rng.poisson(photons).astype(np.float32)
    offset = CAMERA_OFFSET_ADU * rng.uniform(0.93, 1.07)
    adu = counts * ADU_PER_PHOTON + offset + rng.normal(0.0, READ_NOISE_ADU, counts.shape).astype(np.float32)
    return np.clip(np.round(adu), 0, UINT16_MAX).astype(np.uint16)


def _stain_vector(rng, name: str) -> np.ndarray:
    """Return the OD vector of stain ``name``, perturbed per image for stain variation."""
    vector = np.asarray(STAIN_VECTORS[name], dtype=np.float32) + rng.normal(0.0, 0.03, 3).astype(np.float32)
    vector = np.clip(vector, 0.02, None)
    return vector / np.linalg.norm(vector)


def stain_concentrations(rng, maps: TissueMaps, stain: str) -> dict[str, np.ndarray]:
    """Return per-stain concentration maps for ``stain`` ('he' or 'ihc')."""
    keep = 1.0 - maps.clear
    debris = 1.7 * np.clip(maps.debris_dark, 0, None) + 0.35 * maps.debris_bright
    if stain == "he":
        hema = rng.uniform(0.65, 0.85) * (maps.dna + 0.45 * maps.nucleolus + maps.cytoplasm_hema * keep)
        eosin = rng.uniform(0.75, 1.2) * (
            (maps.cytoplasm + maps.stroma) * keep + 0.5 * maps.membrane + 0.25 * maps.nucleolus
        )
        return {"he_hematoxylin": hema, "he_eosin": eosin, "debris": debris}
    hema = rng.uniform(0.25, 0.35) * (maps.dna + 0.3 * maps.nucleolus + 0.5 * maps.cytoplasm_hema * keep)
    hema += 0.06 * (maps.stroma + 0.3 * maps.cytoplasm) * keep  # pale blue-grey counterstain of the matrix
    dab = rng.uniform(0.8, 1.2) * maps.marker * keep
    return {"ihc_hematoxylin": hema, "ihc_dab": dab, "debris": debris}


def render_brightfield(rng, maps: TissueMaps, stain: str, artefacts: dict, block_px: int) -> np.ndarray:
    """Render a stained brightfield image, (rows, columns, 3) uint8, by the Beer-Lambert law."""
    concentrations = stain_concentrations(rng, maps, stain)
    optical_density = np.zeros(maps.dna.shape + (3,), dtype=np.float32)
    for name, concentration in concentrations.items():
        optical_density += concentration[..., None] * _stain_vector(rng, name)
    optical_density = ndimage.gaussian_filter(optical_density, (rng.uniform(0.6, 1.0),) * 2 + (0,))
    _blur_blocks(optical_density, artefacts.get("out_of_focus", []), block_px, rng.uniform(2.0, 3.0))

    lamp = np.array([0.965, 0.955, 0.955], dtype=np.float32) * rng.uniform(0.97, 1.02, 3).astype(np.float32)
    field = illumination_field(rng, maps.dna.shape, rng.uniform(0.04, 0.1))
    transmitted = lamp * field[..., None] * np.power(10.0, -optical_density, dtype=np.float32)
    saturated = artefacts.get("saturation", [])
    _scale_blocks(transmitted, saturated, block_px, rng.uniform(1.5, 2.0, len(saturated)))

    transmitted += rng.normal(0.0, 0.012, transmitted.shape).astype(np.float32)
    return np.clip(np.round(transmitted * 255.0), 0, 255).astype(np.uint8)


def chromatin_noise(rng, shape) -> tuple[np.ndarray, np.ndarray]:
    """Return the fine and coarse chromatin texture fields of a field of view."""
    return noise_field(rng, shape, 0.7), noise_field(rng, shape, 1.6)
