"""Prompt texts for training: a family's name, synonyms or description, sampled per step.

With `prompts="catalogue"` each step shows the model, for every class, one of the texts
camera/defect_catalogue.py gives that family (a class outside the catalogue keeps its
name), so it learns the language around a defect, not five fixed vectors. What ships
is the ensemble: each class's prompt embeddings averaged and normalised again.
A share of steps (`generic_share`) instead prompts one generic "defect" with every box
labelled by it, so that the word covers all families (class-agnostic detection).
`name_share` keeps the canonical name on that share of class prompts and spreads the rest
over synonyms and description: uniform sampling cost the five classic classes 0.03 AP
(docs/training.md), because the shipped ensemble sits nearest the name.
Sampling is seeded by (seed, step), so a resumed run sees the same prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camera.defect_catalogue import BY_NAME, GENERIC_PROMPT

PROMPT_MODES = ("names", "catalogue")


def class_prompts(name: str, mode: str) -> tuple[str, ...]:
    family = BY_NAME.get(name)
    return family.prompts if mode == "catalogue" and family else (name,)


def _normalised(rows: np.ndarray) -> np.ndarray:
    return (rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


class PromptBank:
    """Every class's prompt embeddings, encoded once (TextEncoder caches them on disk too)."""

    def __init__(self, vocabulary: Sequence[str], encode, mode: str = "names", generic_share: float = 0.0,
                 name_share: float | None = None) -> None:
        if mode not in PROMPT_MODES:
            raise ValueError(f"prompts must be one of {', '.join(PROMPT_MODES)}, got {mode!r}")
        if not 0 <= generic_share < 1:
            raise ValueError(f"generic_share must be within 0..1 (1 excluded), got {generic_share}")
        if name_share is not None and not 0 <= name_share <= 1:
            raise ValueError(f"name_share must be within 0..1, got {name_share}")
        self.generic_share, self.name_share = generic_share, name_share
        texts = [class_prompts(name, mode) for name in vocabulary] + [(GENERIC_PROMPT,)]
        flat = [text for group in texts for text in group]
        rows = _normalised(np.asarray(encode(flat), np.float32))
        bounds = np.cumsum([0, *map(len, texts)])
        *self.rows, self.generic = [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self.varies = generic_share > 0 or any(len(r) > 1 for r in self.rows)

    def ensemble(self) -> np.ndarray:
        """(C, D): each class's prompts averaged as training drew them, normalised: what the package ships."""
        return _normalised(np.stack([(self._weights(len(r)) @ r).astype(np.float32) for r in self.rows]))

    def _weights(self, n: int) -> np.ndarray:
        """How often training draws each of a class's n texts (row 0 is the name)."""
        if self.name_share is None or n == 1:
            return np.full(n, 1 / n)
        return np.array([self.name_share] + [(1 - self.name_share) / (n - 1)] * (n - 1))

    def sample(self, seed: int, step: int) -> tuple[np.ndarray, bool]:
        """This step's prompts: (C, D), one per class, or (1, D) "defect" and True (every box is it)."""
        rng = np.random.default_rng([seed % 2**32, step, 0x70])
        if rng.random() < self.generic_share:
            return self.generic, True
        return np.stack([r[rng.choice(len(r), p=self._weights(len(r)))] for r in self.rows]), False
