"""The paper's zero-shot protocol on the catalogue: train on base families, prompt held-out ones by name.

For each of K rotated splits (held-out families: every K-th catalogue family, offset by
the split number) it trains a model on the base families only (views showing a held-out
family are left out; `--prompts catalogue`, 15% of steps prompt only "defect"), then
evaluates the held-out families on unseen containers prompted by their names only:
per-family AP50 and class-agnostic recall (IoU >= 0.5), overall and per family. Then the line's figure: container
escape rate at 1% false rejects on unseen containers whose only defects are held-out
families, with the model prompted by its base names plus the held-out names, and by its
base names alone, each also with the generic "defect" added. Every stage (and each escape
arm, kept in `escape.json`) is skipped when its output exists and training resumes from
its checkpoint, so re-running after a kill continues (nohup-friendly).

With `--init PACKAGE` each split fine-tunes that model, as scripts/train_catalogue.sh does
for the shipped one; the families it was trained on are then always base families (a
model that has seen a family cannot be asked to find it unseen), and the splits rotate over
the others.

    python -m engines.training.leave_families_out WORK [--splits 3 --containers 400 --steps 4000]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from camera.defect_catalogue import GENERIC_PROMPT, NAMES
from camera.synth_dataset import SynthRecipe, write_dataset
from engines.config import EngineConfig
from engines.package import ModelPackage
from engines.training.evaluate import EVAL_THRESHOLD, Containers, line_metrics, pct, predict_all

log = logging.getLogger(__name__)


def held_out(split: int, splits: int, seen: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every `splits`-th catalogue family from `split` on, among those the starting model has not `seen`."""
    return tuple(n for n in NAMES if n not in seen)[split::splits]


def escape_vocabularies(base: tuple[str, ...], novel: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The prompts the escape figure is measured with: with and without the held-out names,
    each also with the generic "defect" that training prompts on a share of its steps."""
    return {"with held-out names": base + novel, "base names only": base,
            f"with held-out names + {GENERIC_PROMPT}": base + novel + (GENERIC_PROMPT,),
            f"base names + {GENERIC_PROMPT}": base + (GENERIC_PROMPT,)}


def held_out_escape(package: ModelPackage, data: Path, vocabularies: dict[str, tuple[str, ...]],
                    engine_config: EngineConfig, data_dir: Path, target_fr: float = 0.01) -> dict:
    """Container escape and false-reject rates at `target_fr`, once per prompted vocabulary.

    Every labelled box counts, named in the vocabulary or not: these containers' defects
    are held-out families, and a line must reject them whatever it was told to look for.
    """
    from engines.runtimes import load_engine
    from engines.training.datasets import load_labels, require_images

    labels = load_labels(data)
    require_images(labels, f"held-out escape set {data}")
    figures = {}
    for tag, vocabulary in vocabularies.items():
        engine = load_engine(package, engine_config, Path(data_dir) / "cache", vocabulary=vocabulary,
                             score_floor=EVAL_THRESHOLD, data_dir=Path(data_dir))
        try:
            detections = predict_all(engine.infer, labels, batch=6)
        finally:
            engine.close()
        containers = Containers.build(labels, detections, vocabulary, any_defect=True)
        at_target = line_metrics(containers, vocabulary, {}, engine_config.default_threshold, target_fr)["at_target"]
        figures[tag] = {**at_target, "vocabulary": list(vocabulary)}
    return figures


def run(work: Path, splits: int, containers: int, test_containers: int, escape_containers: int, steps: int,
        crop: int, batch: int, imgsz: int, threads: int, model: str, seed: int, generic_share: float,
        runtime: str, init: Path | None = None, name_share: float | None = None, lr: float = 2e-3) -> dict:
    from engines.training.retrain import evaluate_package
    from engines.training.train import TrainConfig, train

    work.mkdir(parents=True, exist_ok=True)
    data, test = work / "train", work / "test"
    for folder, count, s in ((data, containers, seed), (test, test_containers, seed + 1)):
        if not (folder / "annotations.json").is_file():
            write_dataset(folder, SynthRecipe(containers=count, seed=s, classes=NAMES, catalogue="full"))
    seen = ModelPackage.load(init).vocabulary if init else ()  # the start model's families stay base
    results = {}
    for k in range(splits):
        novel = held_out(k, splits, seen)
        base = tuple(n for n in NAMES if n not in novel)
        out, split_file = work / f"split{k}", work / f"split{k}.json"
        out.mkdir(exist_ok=True)
        split_file.write_text(json.dumps({"base": list(base), "novel": list(novel)}))
        package_dir = out / f"base{k}"
        if not (package_dir / "manifest.json").is_file():
            train(TrainConfig(data=data, out=out, model=model, epochs=10_000, max_steps=steps, crop=crop,
                              batch=batch, imgsz=imgsz, threads=threads, split=split_file, prompts="catalogue",
                              generic_share=generic_share, name_share=name_share, init=init, lr=lr,
                              save_every=100, val_every=10_000, version=f"base{k}", seed=seed,
                              resume=(out / "last.pt").is_file()))
        engine_config = EngineConfig(runtime=runtime, imgsz=imgsz, threads=threads)
        metrics_file = out / "novel_metrics.json"
        if not metrics_file.is_file():
            metrics = evaluate_package(ModelPackage.load(package_dir), test, engine_config, work / "data",
                                       split=split_file)
            metrics_file.write_text(json.dumps(metrics, indent=1, default=str))
        metrics = json.loads(metrics_file.read_text())
        escape_file, escape_set = out / "escape.json", work / f"escape{k}"
        escape = json.loads(escape_file.read_text()) if escape_file.is_file() else {}
        package = ModelPackage.load(package_dir)
        missing = {tag: vocabulary for tag, vocabulary in escape_vocabularies(package.vocabulary, novel).items()
                   if tag not in escape}
        if missing:
            if not (escape_set / "annotations.json").is_file():  # only held-out families drawn
                write_dataset(escape_set, SynthRecipe(containers=escape_containers, seed=seed + 10 + k,
                                                      classes=novel, catalogue="full"))
            escape.update(held_out_escape(package, escape_set, missing, engine_config, work / "data"))
            escape_file.write_text(json.dumps(escape, indent=1))
        results[k] = {"novel": list(novel), "ap50": metrics["ap50"], "per_class_ap50": metrics["per_class_ap50"],
                      "agnostic_recall50": metrics["agnostic_recall50"],
                      "per_class_recall50": metrics["per_class_recall50"], "escape": escape}
        log.info("split %d held out %s: AP50 %.3f, class-agnostic recall %.1f%%; escape at 1%% false rejects: %s",
                 k, ", ".join(novel), metrics["ap50"], 100 * metrics["agnostic_recall50"],
                 "; ".join(f"{pct(figures['escape_rate'])} {tag}" for tag, figures in escape.items()))
    (work / "summary.json").write_text(json.dumps(results, indent=1))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path)
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--containers", type=int, default=400)
    parser.add_argument("--test-containers", type=int, default=100)
    parser.add_argument("--escape-containers", type=int, default=200,
                        help="per split, drawn with held-out families only (30%% defect-free)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="rtvp-n")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--generic-share", type=float, default=0.15)
    parser.add_argument("--name-share", type=float, default=None,
                        help="share of class prompts by name (default: name, synonyms, description alike)")
    parser.add_argument("--init", type=Path, default=None,
                        help="fine-tune this model package per split; its families are never held out")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--runtime", default="onnxruntime", help="for the evaluation (torch: no ONNX export)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    results = run(**{k: v for k, v in vars(args).items()})
    for k, r in results.items():
        recall = r["per_class_recall50"]
        per = ", ".join(f"{n} n/a" if v is None else f"{n} {v:.3f} / {pct(recall[n])}"
                        for n, v in r["per_class_ap50"].items())
        print(f"split {k}: AP50 {r['ap50']:.3f}  class-agnostic recall {100 * r['agnostic_recall50']:.1f}%  (AP50 / recall: {per})"
              f"  escape at 1% false rejects: {pct(r['escape']['with held-out names']['escape_rate'])} with the "
              f"held-out names, {pct(r['escape']['base names only']['escape_rate'])} without")


if __name__ == "__main__":
    main()
