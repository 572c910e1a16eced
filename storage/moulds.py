"""Which mould made a container: an IS machine's section and cavity, written "3-1".

An IS (individual section) machine has 6-20 sections with 1-4 cavities each; every
container carries its cavity number embossed on the base, read at the cold end and
passed on by the PLC. Lines without a reader have none (None throughout). A simulated
line delivers its containers round-robin, section by section, each section's cavities
in turn, as a machine's conveyor does (`delivered`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_NAME = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class Mould(NamedTuple):
    section: int  # 1-based
    cavity: int  # 1-based, within the section

    def __str__(self) -> str:
        return f"{self.section}-{self.cavity}"


def parse_mould(text: str) -> Mould:
    """'3-1' -> Mould(3, 1); ValueError saying the expected form otherwise."""
    match = _NAME.match(str(text))
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"{text!r} is not a mould; write SECTION-CAVITY with numbers from 1, e.g. 3-1")
    return Mould(int(match[1]), int(match[2]))


def mould_name(section: int | None, cavity: int | None) -> str | None:
    """'3-1' for a container with both numbers, None for one without a mould reader."""
    if section is None or cavity is None:
        return None
    return str(Mould(section, cavity))


def delivered(seq: int, sections: int, cavities: int) -> Mould:
    """The mould of container `seq` (from 1) on a machine delivering round-robin."""
    index = (seq - 1) % (sections * cavities)
    return Mould(index // cavities + 1, index % cavities + 1)
