"""Retraining on the line's own samples, and the evaluation that decides whether it goes live.

The active model is fine-tuned on new labelled views mixed with a replay share of the
data it was trained on (so old defects are not forgotten). The new and the active
model are then evaluated on the same held-out set, through the same Engine path the
line uses. The new version is always registered; it becomes active only when it is
not worse on escape rate (at the false-reject target) and on AP, or when forced.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engines.config import EngineConfig
from engines.engine import class_thresholds
from engines.errors import EngineError
from engines.package import ModelPackage
from engines.training.datasets import (load_labels, read_split, require_images, restrict,
                                       split_containers)
from engines.training.evaluate import EVAL_THRESHOLD, evaluate, pct, stored_thresholds
from engines.training.progress import ProgressFile
from storage.labels import LabelledImage, LabelSet, container_key
from engines.registry import Registry, new_version

log = logging.getLogger(__name__)


def zero_shot_set(labels: LabelSet, split_path: Path) -> tuple[LabelSet, tuple[str, ...]]:
    """The unseen pool: views with a novel defect plus defect-free views, novel boxes only."""
    split = read_split(split_path)
    novel = set(split.novel)
    kept = [im for im in labels.images if not im.classes or novel & set(im.classes)]
    return restrict(replace(labels, images=kept), split.novel), split.novel


def evaluate_package(package: ModelPackage, data: Path | LabelSet, engine_config: EngineConfig, data_dir: Path, *,
                     vocabulary: Sequence[str] | None = None, split: Path | None = None, target_fr: float = 0.01,
                     calibrate: bool = False, batch: int = 6, progress: bool = False) -> dict:
    """COCO and line figures of a package on labelled views, through engines.runtimes.load_engine."""
    from engines.runtimes import load_engine

    labels = load_labels(data) if isinstance(data, (str, Path)) else data
    if split is not None:
        labels, vocab = zero_shot_set(labels, split)
    else:
        vocab = tuple(vocabulary) if vocabulary else package.vocabulary
        labels = restrict(labels, vocab)
    require_images(labels, f"evaluation set {data if isinstance(data, (str, Path)) else labels.root}")
    configured = class_thresholds(vocab, engine_config, package.thresholds)
    engine = load_engine(package, engine_config, Path(data_dir) / "cache", vocabulary=vocab,
                         score_floor=EVAL_THRESHOLD, data_dir=Path(data_dir))
    try:
        metrics, containers = evaluate(engine.infer, labels, vocab, configured=dict(zip(vocab, configured.tolist())),
                                       default_threshold=engine_config.default_threshold, target_fr=target_fr,
                                       batch=batch, progress=progress)
    finally:
        engine.close()
    if calibrate:
        thresholds = stored_thresholds(containers.calibrate(target_fr))
        named = {n: float(t) for n, t in zip(vocab, thresholds)}
        metrics["calibrated"] = {**containers.rates(thresholds), "thresholds": named}
        package.update(thresholds={**package.thresholds, **named},
                       calibration={"target_false_reject_rate": target_fr, "data": str(data),
                                    **{k: metrics["calibrated"][k] for k in ("escape_rate", "false_reject_rate")}})
    return metrics


@dataclass
class RetrainResult:
    package: ModelPackage
    new: dict  # held-out figures of the new model
    active: dict  # the same for the model that was active
    promoted: bool
    reason: str
    stopped: bool = False  # training ended on --max-minutes before its last step


def not_worse(new: dict, old: dict) -> tuple[bool, str]:
    """Promotion rule: escape rate at the false-reject target, then AP, neither worse."""
    new_escape, old_escape = new["at_target"]["escape_rate"], old["at_target"]["escape_rate"]
    if new_escape is not None and old_escape is not None and new_escape > old_escape:
        return False, f"escape rate {pct(new_escape)} is worse than the active model's {pct(old_escape)}"
    if new["ap"] < old["ap"]:
        return False, f"AP {new['ap']:.3f} is worse than the active model's {old['ap']:.3f}"
    return True, (f"AP {new['ap']:.3f} >= {old['ap']:.3f}, escape rate {pct(new_escape)} <= {pct(old_escape)} "
                  f"(at false rejects <= {pct(new['at_target']['target_false_reject_rate'])})")


def replay_recipes(active: ModelPackage) -> dict[str, dict]:
    """Source -> synthetic recipe, for every earlier source the manifest knows how to render."""
    info = active.manifest.get("data") or {}
    recipes = dict(info.get("recipes") or {})
    if info.get("train") and info.get("recipe"):
        recipes[info["train"]] = info["recipe"]
    return recipes


def replay_sets(active: ModelPackage, data_dir: Path) -> list[tuple[str, LabelSet]]:
    """The data the active model (and its ancestors) learnt from: found, or rendered again.

    A synthetic source whose folder is gone (a fresh install has the shipped model but
    not its training images) is rendered from its recorded recipe into
    `<data>/retrain/replay/<recipe hash>`, once; later retrains reuse it.
    """
    from camera.synth_dataset import SynthRecipe, regenerate

    info = active.manifest.get("data") or {}
    recipes = replay_recipes(active)
    sources = [info.get("train"), *(info.get("replay") or [])]
    found = []
    for source in dict.fromkeys(s for s in sources if s):
        if Path(source).exists():
            found.append((source, load_labels(source)))
        elif source in recipes:
            recipe = SynthRecipe.from_dict(recipes[source])
            key = hashlib.sha256(json.dumps(recipe.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
            folder = Path(data_dir) / "retrain" / "replay" / key
            log.warning("earlier training data %s is gone; rendering it again from its recipe (%d containers, "
                        "seed %d, renderer %s) into %s", source, recipe.containers, recipe.seed, recipe.renderer,
                        folder)
            found.append((source, load_labels(regenerate(recipe, folder))))
        else:
            log.warning("earlier training data %s is gone and has no recorded recipe; it cannot be replayed", source)
    return found


def retrain(samples: LabelSet, source: str, registry: Registry, engine_config: EngineConfig, data_dir: Path, *,
            out: Path, epochs: int = 10, crop: int = 320, batch: int = 8, lr: float = 5e-4,
            replay_share: float = 0.5, holdout: LabelSet | None = None, holdout_share: float = 0.2,
            target_fr: float = 0.01, force: bool = False, seed: int = 0, progress: bool = True,
            threads: int | None = None, max_minutes: float | None = None) -> RetrainResult:
    """Fine-tune the active model on `samples` (+ replay), compare on one held-out set, register.

    `max_minutes` bounds the training: it stops after the step that passes it and still
    evaluates and compares. `<data>/retrain/progress.json` follows the run throughout.
    """
    version = new_version(f"rtvp-{registry.active().arch.get('scale', 'n')}-ft")
    report = ProgressFile(data_dir, version)
    report.update("prepare", force=True, message="preparing data")
    try:
        result = _retrain(samples, source, registry, engine_config, data_dir, report, out=out, epochs=epochs,
                          crop=crop, batch=batch, lr=lr, replay_share=replay_share, holdout=holdout,
                          holdout_share=holdout_share, target_fr=target_fr, force=force, seed=seed,
                          progress=progress, threads=threads, max_minutes=max_minutes, version=version)
    except BaseException as exc:
        report.update("failed", state="failed", message=str(exc) or type(exc).__name__)
        raise
    state = "stopped" if result.stopped else "done"
    message = (f"stopped on the {max_minutes:g}-minute budget; " if result.stopped else "") + result.reason
    report.update("compare", state=state, message=f"{result.package.version} "
                  f"{'activated' if result.promoted else 'not activated'}: {message}")
    return result


def _retrain(samples: LabelSet, source: str, registry: Registry, engine_config: EngineConfig, data_dir: Path,
             report: ProgressFile, *, out: Path, epochs: int, crop: int, batch: int, lr: float,
             replay_share: float, holdout: LabelSet | None, holdout_share: float, target_fr: float, force: bool,
             seed: int, progress: bool, threads: int | None, max_minutes: float | None,
             version: str) -> RetrainResult:
    from engines.training.train import TrainConfig, train

    active = registry.active()
    vocabulary = tuple(dict.fromkeys([*active.vocabulary, *samples.classes]))
    samples = restrict(samples, vocabulary)
    require_images(samples, f"new samples {source}")
    earlier = replay_sets(active, data_dir)
    if holdout is None:
        samples, new_held = split_containers(samples, holdout_share, seed)
        held = [(samples.root, image) for image in new_held.images]
        for _, labels in earlier:  # the held-out set also checks that old defects are still found
            _, old_held = split_containers(restrict(labels, vocabulary), holdout_share, seed)
            held += [(labels.root, image) for image in old_held.images[:len(new_held.images)]]
        holdout = _rooted(held, vocabulary)
    holdout = restrict(holdout, vocabulary)
    require_images(samples, f"new samples {source} (after holding out {holdout_share:.0%})")
    require_images(holdout, "held-out set")

    rng = np.random.default_rng(seed)
    pool = [(labels.root, image) for _, labels in earlier for image in restrict(labels, vocabulary).images]
    n_replay = min(len(pool), round(len(samples.images) * replay_share / max(1e-9, 1 - replay_share)))
    mixed = [(samples.root, image) for image in samples.images] + [pool[i] for i in rng.permutation(len(pool))[:n_replay]]
    train_set = _rooted(mixed, vocabulary)
    log.info("fine-tuning %s on %d new views + %d replayed, held-out set %d views", active.version,
             len(samples.images), n_replay, len(holdout.images))

    scale = active.arch.get("scale", "n")
    cfg = TrainConfig(data=Path(source), out=out, model=f"rtvp-{scale}", epochs=epochs, imgsz=engine_config.imgsz,
                      crop=crop, batch=batch, lr=lr, warmup_epochs=0.5, init=active.path, parent=active.version,
                      version=version, seed=seed, target_fr=target_fr, progress=progress,
                      replay=tuple(name for name, _ in earlier), val=None, threads=threads, max_minutes=max_minutes,
                      recipes={name: recipe for name, recipe in replay_recipes(active).items()
                               if name in dict(earlier)})
    result = train(cfg, data=(train_set, holdout, vocabulary), progress_file=report)

    report.update("evaluate", force=True, message="evaluating the new and the active model on the held-out set")
    new = evaluate_package(result.package, holdout, engine_config, data_dir, vocabulary=vocabulary, target_fr=target_fr)
    old = evaluate_package(active, holdout, engine_config, data_dir, vocabulary=vocabulary, target_fr=target_fr)
    promoted, reason = not_worse(new, old)
    result.package.update(metrics={**result.package.manifest.get("metrics", {}), "holdout": new,
                                   "parent_on_holdout": old})
    registered = registry.register(result.package.path)
    if promoted or force:
        registry.activate(registered.version)
        if not promoted:
            log.warning("--force: %s activated although %s", registered.version, reason)
    log.info("%s %s: %s", registered.version, "promoted" if promoted else "not promoted", reason)
    return RetrainResult(registered, new, old, promoted or force, reason, result.stopped)


def _rooted(items: list[tuple[Path, LabelledImage]], vocabulary: tuple[str, ...]) -> LabelSet:
    """One LabelSet over images from several folders (absolute file paths, root '/').

    Containers are renumbered per (folder, container), so that two sources' container 7
    stay two containers in the line figures.
    """
    numbers: dict = {}
    images = []
    for root, image in items:
        key = (str(root), container_key(image))
        images.append(replace(image, file=str((Path(root) / image.file).resolve()), container_id=None,
                              container_seq=numbers.setdefault(key, len(numbers))))
    if not images:
        raise EngineError("no training images after mixing new samples and replay")
    return LabelSet(root=Path("/"), images=images, classes=list(vocabulary))
