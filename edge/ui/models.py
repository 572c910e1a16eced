"""What the station needs from the model registry: vocabulary, thresholds, figures per version."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge.ui.queries import Thresholds
from engines.errors import EngineError
from storage.errors import StorageError
from engines.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class ModelFacts:
    version: str | None
    vocabulary: list[str]
    thresholds: Thresholds


def active_facts(registry: Registry, engine_config) -> ModelFacts:
    """The active model's classes and the thresholds the line applies (config first, then the
    package's calibration, then the default), as engines.engine.class_thresholds does."""
    manifest: dict = {}
    version = registry.active_version()
    if version is not None:
        try:
            manifest = registry.get(version).manifest
        except (StorageError, EngineError) as exc:
            log.warning("active model %s cannot be read (%s)", version, exc)
    by_class = {**(manifest.get("thresholds") or {}), **engine_config.thresholds}
    vocabulary = list(manifest.get("vocabulary") or engine_config.thresholds)
    return ModelFacts(version, vocabulary, Thresholds(by_class, engine_config.default_threshold))


def figures(row: dict) -> dict[str, str]:
    """The headline figures of a registry row (`Registry.list()`), formatted for a table."""
    metrics = row.get("metrics") or {}
    val = metrics.get("val") if isinstance(metrics.get("val"), dict) else metrics
    shown = {}
    for key in ("ap", "ap50"):
        if isinstance(val.get(key), (int, float)):
            shown[key.upper()] = f"{val[key]:.3f}"
    target = val.get("at_target") or {}
    for key, label in (("escape_rate", "escape"), ("false_reject_rate", "false reject")):
        if isinstance(target.get(key), (int, float)):
            shown[label] = f"{100 * target[key]:.1f} %"
    return shown
