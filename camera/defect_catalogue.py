"""The glass-container defect catalogue: families, their names, what they look like, where.

The catalogue itself is data, `camera/defect_catalogue.yaml`, so that quality staff can
add a synonym without touching code; this module reads it once and checks it. A family
is one kind of defect as inspection staff name it: a canonical name (the label class),
synonyms used on other lines and in other plants, a one-line visual description (the
language training samples from these), the zones of the container it occurs in, the
drawing that renders it (a function of camera/synth_defects.py) and its sources.
Non-defects that must pass (water drops, dust, embossing, label shadows; mould seams are
drawn on every container) are rendered as distractors and never labelled.

Terminology follows the usual glass-container defect vocabulary, as used in (titles
only, cited from memory; no copy was at hand while writing the catalogue): the Glass
Packaging Institute's "Glass Container Defects: Causes and Remedies"; British Glass's
defect manuals; Emhart Glass's "Glass Container Defects" handbook (the IS-machine
forming view); AGR International's defect identification guides; C. W. Parmelee's
"Glass defects" chapters and ASTM C162 "Standard Terminology of Glass and Glass
Products" for stone, seed, blister, cord and check. The descriptions paraphrase the
appearance in transmitted light; none is a quotation. Zones: finish (the rim and
threads), shoulder (with the neck), body, heel and base.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from camera import synth_defects as d
from camera.errors import CameraError

CATALOGUE_FILE = Path(__file__).with_name("defect_catalogue.yaml")
ZONES = ("finish", "shoulder", "body", "heel", "base")
GENERIC_PROMPT = "defect"  # the class-agnostic prompt every family also answers to

Drawing = Callable[[np.random.Generator], d.DefectPatch]


@dataclass(frozen=True)
class Family:
    name: str  # the label class
    synonyms: tuple[str, ...]
    description: str
    zones: tuple[str, ...]
    draw: Drawing
    source: str

    @property
    def prompts(self) -> tuple[str, ...]:
        """Every text that names this family: name, synonyms, description."""
        return (self.name, *self.synonyms, self.description)


def _drawing(name: str, where: str) -> Drawing:
    draw = getattr(d, str(name), None)
    if not callable(draw) or str(name).startswith("_"):
        raise CameraError(f"{where}: no drawing {name!r} in camera/synth_defects.py")
    return draw


def _zones(zones: list, where: str) -> tuple[str, ...]:
    unknown = [z for z in zones if z not in ZONES]
    if not zones or unknown:
        raise CameraError(f"{where}: zones must be some of {', '.join(ZONES)}, got {zones}")
    return tuple(zones)


def _drawing_digest(data: dict) -> str:
    """A short hash of what the renderer reads from the catalogue: every family's and
    distractor's name, zones and drawing, in order. Synonyms, descriptions and sources
    change no pixel, so editing them keeps older synthetic recipes renderable."""
    drawn = [[[e["name"], e["zones"], e["drawing"]] for e in data[part]] for part in ("families", "distractors")]
    return hashlib.sha256(json.dumps(drawn).encode()).hexdigest()[:12]


def load_catalogue(path: Path = CATALOGUE_FILE) -> tuple[str, tuple[Family, ...], dict[str, tuple[Drawing, tuple[str, ...]]]]:
    """(drawing digest, families, distractors) from the catalogue file, each entry checked."""
    data = yaml.safe_load(Path(path).read_text())
    sources = data["sources"]
    families = []
    for entry in data["families"]:
        where = f"{Path(path).name}: family {entry.get('name')!r}"
        unknown = [s for s in entry["sources"] if s not in sources]
        if unknown:
            raise CameraError(f"{where}: unknown sources {unknown}; known: {', '.join(sources)}")
        families.append(Family(entry["name"], tuple(entry["synonyms"]), entry["description"],
                               _zones(entry["zones"], where), _drawing(entry["drawing"], where),
                               "; ".join(sources[s] for s in entry["sources"])))
    distractors = {}
    for entry in data["distractors"]:
        where = f"{Path(path).name}: distractor {entry['name']!r}"
        distractors[entry["name"]] = (_drawing(entry["drawing"], where), _zones(entry["zones"], where))
    return _drawing_digest(data), tuple(families), distractors


DIGEST, FAMILIES, DISTRACTORS = load_catalogue()

BY_NAME = {family.name: family for family in FAMILIES}
NAMES = tuple(BY_NAME)


def family(name: str) -> Family:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown defect family {name!r}; known: {', '.join(NAMES)}") from None


def zone_rows(zone: str, shape) -> tuple[float, float]:
    """Canonical rows of a zone of `shape` (a BottleShape) where a defect's centre may sit."""
    heel_top = shape.base - shape.heel_h
    return {"finish": (shape.top + 2, shape.top + shape.finish_h * 0.8),
            "shoulder": (shape.neck_end - (shape.neck_end - shape.top - shape.finish_h) * 0.5, shape.shoulder_end),
            "body": (shape.shoulder_end, heel_top),
            "heel": (heel_top, shape.base - shape.base_thick * 0.5),
            "base": (shape.base - shape.base_thick, shape.base - 3)}[zone]
