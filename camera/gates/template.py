"""A PLC's per-container line, described by a template such as `{seq} {section} {cavity}`.

The fields are whole numbers; text between them must appear as written, any run of
spaces matching any run of spaces (PLCs pad their fields). A template without `{seq}`
leaves the numbering to the gate.
"""

from __future__ import annotations

import re
import string

FIELDS = ("seq", "section", "cavity")


class LineTemplate:
    def __init__(self, template: str) -> None:
        pattern, seen = [], set()
        for literal, name, spec, _ in string.Formatter().parse(template.strip()):
            pattern.append(r"\s+".join(re.escape(part) for part in re.split(r"\s+", literal)))
            if name is None:
                continue
            if name not in FIELDS or spec:
                raise ValueError(f"{{{name}}} is not a field of the gate's message; use {', '.join(FIELDS)}")
            if name in seen:
                raise ValueError(f"{{{name}}} appears twice in the gate's message")
            seen.add(name)
            pattern.append(rf"(?P<{name}>-?\d+)")
        if not seen:
            raise ValueError(f"the gate's message names no field; use some of {', '.join(FIELDS)}")
        self.template = template
        self._regex = re.compile(r"\s*" + "".join(pattern) + r"\s*")

    def parse(self, line: str) -> dict[str, int] | None:
        """The line's fields, or None when it does not have the template's form."""
        match = self._regex.fullmatch(line)
        if match is None:
            return None
        return {name: int(value) for name, value in match.groupdict().items()}
