"""The glass-container defect catalogue: families, their names, what they look like, where.

A family is one kind of defect as inspection staff name it. It has a canonical name
(the label class), synonyms used on other lines and in other plants, a one-line visual
description (the language training samples from these), the zones of the container it
occurs in and the drawing that renders it (camera/synth_defects.py). Non-defects that
must pass (water drops, dust, embossing, label shadows; mould seams are drawn on every
container) are rendered as distractors and never labelled.

Terminology follows the usual glass-container defect vocabulary, as used in (titles
only, cited from memory; no copy was at hand while writing this):
- "Glass Container Defects: Causes and Remedies", Glass Packaging Institute (GPI);
- the "Glass Defects" / container defect manuals of British Glass;
- Emhart Glass, "Glass Container Defects" handbook (the IS-machine forming view);
- AGR International, container inspection and defect identification guides;
- C. W. Parmelee, "Glass defects" chapters; ASTM C162 "Standard Terminology of Glass
  and Glass Products" for stone, seed, blister, cord, check.
The descriptions are short paraphrases of the appearance in transmitted light, not
quotations. Zone names: finish (the rim and threads), shoulder (with the neck), body,
heel and base.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from camera import synth_defects as d

CATALOGUE_VERSION = "1"
ZONES = ("finish", "shoulder", "body", "heel", "base")
GENERIC_PROMPT = "defect"  # the class-agnostic prompt every family also answers to


@dataclass(frozen=True)
class Family:
    name: str  # the label class
    synonyms: tuple[str, ...]
    description: str
    zones: tuple[str, ...]
    draw: Callable[[np.random.Generator], d.DefectPatch]
    source: str

    @property
    def prompts(self) -> tuple[str, ...]:
        """Every text that names this family: name, synonyms, description."""
        return (self.name, *self.synonyms, self.description)


GPI, BG, EMHART, AGR, ASTM = ("GPI, Glass Container Defects: Causes and Remedies", "British Glass defect manual",
                              "Emhart Glass, Glass Container Defects handbook", "AGR International defect guide",
                              "ASTM C162 terminology")

FAMILIES: tuple[Family, ...] = (
    # The paper's five classes: same drawings as the classic renderer.
    Family("oil", ("swab mark", "oil mark", "lubricant smear", "dope mark"),
           "translucent brown blotchy smear 15-70 px, often with a drip, low contrast, on body or shoulder",
           ("body", "shoulder"), d.oil, f"{GPI}; {EMHART}"),
    Family("black spot", ("carbon", "carbon inclusion", "dirt inclusion", "black speck"),
           "opaque black round dot 3-14 px, high contrast, anywhere in the wall",
           ("body", "shoulder", "heel"), d.black_spot, f"{BG}; {AGR}"),
    Family("bubble", ("blister", "air bubble", "large seed"),
           "dark-rimmed oval with a bright centre 3-14 px, stretched along the container, body or shoulder",
           ("body", "shoulder"), d.bubble, f"{ASTM}; {GPI}"),
    Family("plastering thread", ("lap", "glass thread", "fold", "wrinkle thread"),
           "long thin curved dark line 30-150 px with a faint bright edge, fused onto the body",
           ("body", "shoulder"), d.plastering_thread, f"{EMHART}; {BG}"),
    Family("quenched grain", ("crizzle", "chill checks", "washboard checks"),
           "cluster of tiny crack-like dark and glinting specks 7-28 px across, from uneven cooling",
           ("body", "shoulder", "heel"), d.quenched_grain, f"{GPI}; {EMHART}"),
    # The rest of the catalogue.
    Family("stone", ("unmelted batch", "refractory stone", "devitrification stone", "inclusion"),
           "grey-white opaque grain 3-12 px, often with small bright cracks radiating from it",
           ("body", "heel", "base"), d.stone, f"{ASTM}; {BG}; {GPI}"),
    Family("seeds", ("seed", "fine seed", "small bubbles", "gas inclusions"),
           "cluster of tiny dark-ringed bubbles 1-4 px each, faint, in the body wall",
           ("body", "shoulder"), d.seeds, f"{ASTM}; {GPI}"),
    Family("bird swing", ("birdswing", "bird cage", "glass string inside"),
           "long straight thin glass thread 50-180 px stretched across the inside from wall to wall",
           ("body", "shoulder"), d.bird_swing, f"{GPI}; {EMHART}; {AGR}"),
    Family("check", ("crack", "shoulder check", "neck check", "body check"),
           "short jagged dark line 10-45 px with a bright reflecting edge, any angle, shoulder or body",
           ("shoulder", "body"), d.check, f"{GPI}; {AGR}"),
    Family("heel check", ("heel crack", "bottom check", "heel tap"),
           "jagged crack 12-40 px running around the heel, dark with a bright edge",
           ("heel",), d.horizontal_check, f"{GPI}; {AGR}"),
    Family("split finish", ("finish check", "split lip", "crack in finish", "vertical check"),
           "crack 8-30 px running down from the rim through the finish, thin dark line with a glint",
           ("finish",), d.vertical_check, f"{GPI}; {EMHART}; {AGR}"),
    Family("chipped finish", ("chip", "broken finish", "nicked rim", "flake"),
           "shell-shaped notch 6-22 px missing from the rim, brighter than the glass with a dark edge",
           ("finish",), d.chip, f"{GPI}; {AGR}"),
    Family("unfilled finish", ("short finish", "underfilled finish", "incomplete finish"),
           "part of the rim or thread missing, a soft brighter patch 18-50 px on the finish",
           ("finish",), d.unfilled, f"{GPI}; {EMHART}"),
    Family("overpress", ("finish fin", "fin on finish", "overpressed finish"),
           "thin sharp fin of glass 10-45 px standing on the top of the rim, dark with a glint",
           ("finish",), lambda rng: d.fin(rng, angle=float(rng.normal(0, 0.15))), f"{EMHART}; {GPI}"),
    Family("line over finish", ("line-over-finish", "LOF", "rim line", "seam over finish"),
           "fine line 10-45 px across the top of the finish at the mould parting",
           ("finish",), lambda rng: d.fin(rng, angle=float(np.pi / 2 + rng.normal(0, 0.3))), f"{GPI}; {AGR}"),
    Family("heavy bottom", ("thick bottom", "uneven bottom", "slugged bottom", "wedged bottom"),
           "wide soft darker lens 40-120 px in the base glass, low contrast",
           ("base",), d.heavy_bottom, f"{EMHART}; {GPI}"),
    Family("cord", ("ream", "striae", "glass cord", "knot"),
           "faint wavy parallel refracting streaks 30-110 px, low contrast, in the body",
           ("body", "shoulder"), d.cord, f"{ASTM}; {BG}"),
)

# Non-defects that must pass: drawn with their zones, never labelled.
DISTRACTORS: dict[str, tuple[Callable[[np.random.Generator], d.DefectPatch], tuple[str, ...]]] = {
    "water drop": (d.water_drop, ("body", "shoulder", "heel")),
    "dust": (d.dust, ("body", "shoulder", "finish", "heel")),
    "embossing": (d.embossing, ("heel", "shoulder", "body")),
    "label shadow": (d.label_shadow, ("body",)),
}

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
