"""A validator for the GeoJSON structure that QuPath imports (File > Import objects).

It checks the parts of a FeatureCollection that QuPath reads when it imports objects.
Every feature is a Feature with a Polygon geometry whose rings are closed lists of at
least four [x, y] positions of finite numbers. Its properties contain an objectType
that QuPath defines, a classification with a name and an [r, g, b] colour of integers
0-255, numeric measurements and a boolean isLocked.
"""

from __future__ import annotations

import math
import numbers

QUPATH_OBJECT_TYPES = {"annotation", "detection", "tile", "cell", "tma_core"}


def validate_feature_collection(document) -> list[str]:
    """Return every problem found in a parsed GeoJSON document, or an empty list when it is valid."""
    problems = []
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        return ["top level must be an object with type FeatureCollection"]
    features = document.get("features")
    if not isinstance(features, list):
        return ["features must be a list"]
    for index, feature in enumerate(features):
        problems += [f"feature {index}: {problem}" for problem in validate_feature(feature)]
    return problems


def validate_feature(feature) -> list[str]:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return ["must be an object with type Feature"]
    problems = validate_geometry(feature.get("geometry"))
    properties = feature.get("properties")
    if not isinstance(properties, dict):
        return problems + ["properties must be an object"]
    return problems + validate_properties(properties)


def validate_geometry(geometry) -> list[str]:
    if not isinstance(geometry, dict):
        return ["geometry must be an object"]
    if geometry.get("type") != "Polygon":
        return [f"geometry type {geometry.get('type')!r} is not Polygon"]
    rings = geometry.get("coordinates")
    if not isinstance(rings, list) or not rings:
        return ["Polygon coordinates must be a non-empty list of rings"]
    problems = []
    for ring_index, ring in enumerate(rings):
        problems += [f"ring {ring_index}: {problem}" for problem in validate_ring(ring)]
    return problems


def validate_ring(ring) -> list[str]:
    if not isinstance(ring, list) or len(ring) < 4:
        return ["a linear ring needs at least 4 positions"]
    for position in ring:
        if (not isinstance(position, list) or len(position) != 2
                or not all(_is_finite_number(value) for value in position)):
            return [f"position {position!r} is not [x, y] with finite numbers"]
    if ring[0] != ring[-1]:
        return ["ring is not closed (first and last positions differ)"]
    return []


def validate_properties(properties: dict) -> list[str]:
    problems = []
    if properties.get("objectType") not in QUPATH_OBJECT_TYPES:
        problems.append(f"objectType {properties.get('objectType')!r} is not one QuPath knows")
    classification = properties.get("classification")
    if not isinstance(classification, dict):
        problems.append("classification must be an object")
    else:
        if not isinstance(classification.get("name"), str) or not classification["name"]:
            problems.append("classification.name must be a non-empty string")
        color = classification.get("color")
        if (not isinstance(color, list) or len(color) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in color)):
            problems.append(f"classification.color {color!r} is not [r, g, b] with integers 0-255")
    measurements = properties.get("measurements", {})
    if not isinstance(measurements, dict):
        problems.append("measurements must be an object of name to number")
    else:
        for name, value in measurements.items():
            if not _is_finite_number(value):
                problems.append(f"measurement {name!r} is {value!r}, not a finite number")
    if "isLocked" in properties and not isinstance(properties["isLocked"], bool):
        problems.append("isLocked must be true or false")
    return problems


def _is_finite_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
