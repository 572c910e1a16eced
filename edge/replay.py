"""`edge replay`: a captured batch through the line's own path, and a report on what it decided.

The batch is played by the camera batch driver through the same station, ZeroMQ stages,
engines and decision rules as `edge run`, into a database of its own
(<data_dir>/replays/<name>/), never the line's, and with the reject output on a
pseudo-terminal as PLC lines (a replay never touches the real ejector). Deadlines are lifted
(travel time of REPLAY_TRAVEL_MS), so a slow PC changes how long a replay takes, not
what it decides. The report compares the decisions with those recorded in the batch,
with a second model (--compare), and with the batch's labels where it has them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from storage.draw import Mark, draw
from storage.names import parse_view_stem, view_stem
from storage.stats import Stats, line_stats

log = logging.getLogger(__name__)

REPLAY_TRAVEL_MS = 600_000.0
REPLAY_HWM = 600  # frames queued per socket: a replay waits rather than drops (~1 GB at most)
MAX_PICTURES = 60


@dataclass
class Outcome:
    """What one model decided on the batch, read back from its replay database."""

    model: str
    decisions: dict[int, tuple[str, str]] = field(default_factory=dict)  # seq -> (decision, reason)
    versions: set[str] = field(default_factory=set)
    detections: dict[tuple[int, int], list[dict]] = field(default_factory=dict)  # (seq, view) -> dets
    cameras: dict[tuple[int, int], str] = field(default_factory=dict)  # (seq, view) -> camera id
    stats: Stats = field(default_factory=Stats)  # storage/stats.py's tally of the replay database
    database: str = ""


def replay_config(config, batch: Path, package_path: Path, data_dir: Path):
    """The line's config, with batch cameras, this model, its own data folder and a pty reject output."""
    from edge.config import AppConfig

    raw = config.model_dump(mode="json")
    raw["cameras"] = [{"id": c["id"], "driver": "batch", "view": c["view"], "bank": c["bank"],
                       "path": str(batch), "width": c["width"], "height": c["height"]} for c in raw["cameras"]]
    raw["gate"] = {"driver": "simulated"}
    raw["line"].update(travel_time_ms=REPLAY_TRAVEL_MS, late_result="reject")
    raw["engine"]["model"] = str(package_path)
    raw["storage"].update(data_dir=str(data_dir), database=f"sqlite:///{data_dir / 'edge.db'}",
                          keep_images="none")
    # A PLC line per container on a pty: decisions leave at once, so the replay does not
    # wait out the lifted deadlines for timed pulses that no ejector will see.
    raw["reject"] = {"driver": "plc", "port": "pty"}
    raw["metrics"] = {"address": "127.0.0.1:0"}
    raw["pipeline"] = {"workers": raw["pipeline"]["workers"], "hwm": REPLAY_HWM}
    return AppConfig.model_validate(raw)


def run_replay(config, batch: Path, model: str, name: str, echo=log.info) -> Outcome:
    """Play `batch` through the pipeline with `model`; return what it decided."""
    from edge.supervisor import Supervisor
    from storage.batches import replay_store
    from engines.registry import Registry

    package = Registry(config.data_dir).resolve(model)
    _, folder = replay_store(config.data_dir, name)
    replay = replay_config(config, batch, package.path, folder)
    echo(f"replaying {batch} with model {package.version} into {folder}")
    Supervisor(replay, echo=echo).run()
    outcome = read_outcome(folder / "edge.db", model)
    outcome.database = str(folder / "edge.db")
    return outcome


def read_outcome(db_path: Path, model: str) -> Outcome:
    """The replay database's decisions and detections, and storage's own tally of them."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from storage.db import Container, View, open_database

    out = Outcome(model)
    db = open_database(f"sqlite:///{db_path}")
    try:
        with db.session() as session:
            query = select(Container).options(selectinload(Container.views).selectinload(View.detections))
            for container in session.scalars(query):
                out.decisions[container.seq] = (container.decision, container.reason)
                if container.model_version is not None:
                    out.versions.update(container.model_version.version.split(","))
                for view in container.views:
                    out.cameras[(container.seq, view.view)] = view.camera_id
                    out.detections[(container.seq, view.view)] = [
                        {"class": d.class_name, "score": d.score, "box": [d.x1, d.y1, d.x2, d.y2]}
                        for d in view.detections]
        out.stats = line_stats(db)
    finally:
        db.close()
    return out


# -- report ----------------------------------------------------------------------------------

def _rate(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f} %)" if d else "0/0"


def _summary(outcome: Outcome) -> list[str]:
    stats = outcome.stats
    lines = [f"### Model `{outcome.model}` (versions: {', '.join(sorted(outcome.versions)) or '?'})", "",
             f"- containers: {stats.containers}, rejected: {_rate(stats.rejected, stats.containers)}",
             f"- database: `{outcome.database}`", ""]
    for title, counts in (("reason", stats.by_reason), ("class", stats.by_class), ("camera", stats.by_camera)):
        lines += [f"| rejects by {title} | containers |", "|---|---|"]
        lines += [f"| {k} | {n} |" for k, n in sorted(counts.items())] or ["| (none) | 0 |"]
        lines.append("")
    return lines


def _against_capture(batch, outcome: Outcome) -> tuple[list[str], int]:
    recorded = {c.seq: c.decision for c in batch.containers if c.decision}
    if not recorded:
        return ["The batch records no decisions of its own.", ""], 0
    same = [s for s, d in recorded.items() if outcome.decisions.get(s, (None,))[0] == d]
    differ = sorted(set(recorded) - set(same))
    lines = [f"- `{outcome.model}` vs the decisions recorded at capture: same on {_rate(len(same), len(recorded))}"]
    if differ:
        lines.append(f"- differ on containers: {', '.join(map(str, differ[:50]))}")
    return lines + [""], len(differ)


def _agreement(batch, a: Outcome, b: Outcome, out_dir: Path, vocabulary: tuple[str, ...]) -> list[str]:
    seqs = sorted(set(a.decisions) & set(b.decisions))
    differ = [s for s in seqs if a.decisions[s][0] != b.decisions[s][0]]
    lines = ["## Agreement between the models", "",
             f"- same decision on {_rate(len(seqs) - len(differ), len(seqs))} containers",
             f"- `{a.model}` rejects, `{b.model}` passes: {sum(a.decisions[s][0] == 'reject' for s in differ)}",
             f"- `{b.model}` rejects, `{a.model}` passes: {sum(b.decisions[s][0] == 'reject' for s in differ)}", ""]
    if not differ:
        return lines
    lines += [f"Views where they disagree: tags `A` are `{a.model}`'s detections, `B` `{b.model}`'s, "
              "`label` the batch's labels; one colour per class.", ""]
    files = {(c.seq, v.view): v.file for c in batch.containers for v in c.views}
    pictures = out_dir / "images"
    pictures.mkdir(parents=True, exist_ok=True)
    shown = 0
    for seq in differ:
        lines.append(f"### Container {seq}: `{a.model}` {a.decisions[seq][0]} ({a.decisions[seq][1]}), "
                     f"`{b.model}` {b.decisions[seq][0]} ({b.decisions[seq][1]})")
        for view in range(6):
            da, db_ = a.detections.get((seq, view), []), b.detections.get((seq, view), [])
            if bool(da) == bool(db_) or (seq, view) not in files or shown >= MAX_PICTURES:
                continue
            image = cv2.imread(str(files[(seq, view)]), cv2.IMREAD_COLOR)
            if image is None:
                continue
            marks = [Mark(d["box"], d["class"], d["score"], prefix) for prefix, found in (("A", da), ("B", db_))
                     for d in found]
            label = batch.labels_for(seq, view)
            if label is not None:
                marks += [Mark(box, name, prefix="label") for box, name in zip(label.boxes.tolist(), label.classes)]
            name = f"{view_stem(seq, view)}.jpg"
            cv2.imwrite(str(pictures / name), draw(image, marks, vocabulary))
            lines.append(f"![container {seq} view {view}](images/{name})")
            shown += 1
        lines.append("")
    return lines


def _labels(batch, outcome: Outcome, vocabulary: tuple[str, ...]) -> list[str]:
    """COCO AP on the labelled views, and the container escape rate (defective but passed)."""
    from engines.detections import Detections
    from engines.training.evaluate import coco_metrics

    images = batch.labels.images
    index = {name: i for i, name in enumerate(vocabulary)}
    dets = []
    defective: set[int] = set()
    for img in images:
        seq, view = img.container_seq, img.view
        if seq is None or view is None:
            seq, view = parse_view_stem(Path(img.file).stem)
        if len(img.classes):
            defective.add(seq)
        found = [d for d in outcome.detections.get((seq, view), []) if d["class"] in index]
        dets.append(Detections(np.array([d["box"] for d in found], np.float32).reshape(-1, 4),
                               np.array([d["score"] for d in found], np.float32),
                               np.array([index[d["class"]] for d in found], np.int64), vocabulary))
    metrics = coco_metrics(batch.labels, dets, vocabulary)
    labelled = {s for s in outcome.decisions if any(
        (img.container_seq == s) or Path(img.file).stem.startswith(f"{s:06d}_") for img in images)}
    escaped = [s for s in defective if outcome.decisions.get(s, ("pass",))[0] == "pass"]
    false_rejects = [s for s in labelled - defective if outcome.decisions.get(s, ("",))[0] == "reject"]
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in metrics["per_class"].items() if v is not None)
    return [f"- `{outcome.model}`: COCO AP {metrics['ap']:.3f}, AP50 {metrics['ap50']:.3f} "
            f"({metrics['gt_boxes']} labelled boxes, {metrics['detections']} detections at the line's "
            f"thresholds); per class: {per_class or '-'}",
            f"- escape rate (defective containers passed): {_rate(len(escaped), len(defective))}; "
            f"false rejects: {_rate(len(false_rejects), len(labelled - defective))}", ""]


def write_report(out_dir: Path, batch, outcomes: list[Outcome], vocabulary: tuple[str, ...]) -> Path:
    """report.md (+ images/) readable without the tool; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Replay report", "",
             f"- batch: `{batch.root}` (line {batch.line or '?'}, {len(batch.containers)} containers)",
             f"- written: {datetime.now(timezone.utc).isoformat(timespec='seconds')} UTC", ""]
    if batch.skipped:
        lines += ["## Skipped from the batch", ""] + [f"- {s}" for s in batch.skipped] + [""]
    lines += ["## Decisions", ""]
    for outcome in outcomes:
        lines += _summary(outcome)
    lines += ["## Against the captured run", ""]
    for outcome in outcomes:
        lines += _against_capture(batch, outcome)[0]
    if len(outcomes) == 2:
        lines += _agreement(batch, outcomes[0], outcomes[1], out_dir, vocabulary)
    if batch.labels is not None and batch.labels.images:
        lines += ["## Against the labels", ""]
        for outcome in outcomes:
            lines += _labels(batch, outcome, vocabulary)
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
