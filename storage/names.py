"""The name of one view of one container: `<seq, six digits>_v<view>`, as in `000123_v4`.

Captured batches, `edge synth` datasets, the image store and `edge replay`'s pictures
all name a view's file this way, and batch reading, replay and label import recognise
it, so the name is formatted and parsed here and nowhere else.
"""

from __future__ import annotations

import re

# The stem's pattern, for callers that look for it inside a longer name (label imports).
VIEW_STEM = r"(\d+)_v([0-5])"
_WHOLE = re.compile(VIEW_STEM)


def view_stem(seq: int, view: int) -> str:
    """`000123_v4`: a file name without its suffix."""
    return f"{seq:06d}_v{view}"


def parse_view_stem(stem: str) -> tuple[int, int] | None:
    """(seq, view) of a name `view_stem` made (any number of digits), or None for any other name."""
    match = _WHOLE.fullmatch(stem)
    return (int(match[1]), int(match[2])) if match else None
