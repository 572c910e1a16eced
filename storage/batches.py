"""Captured batches: a folder of views + manifest.json (+ labels.json), the layout in docs/storage.md ("Captured batches").

`export_batch` writes one from the database and the image store (`edge capture export`);
`read_batch` is what replay, retraining and the camera batch driver read, so the report
and the cameras agree on what a batch holds. The reader never trusts the folder: a
missing or corrupt image, a view named outside the folder (absolute, `..`, a symbolic
link out of it), a seq or view that is not a whole number, a manifest that does not
parse, labels with unknown classes or boxes outside the image are each left out and
named in `Batch.skipped`, and the rest of the batch is still usable.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from tqdm import tqdm

from storage.db import STORED, Container, Database, View
from storage.errors import StorageError
from storage.files import OutsideRoot, atomic_write, inside, read_image
from storage.labels import LabelledImage, LabelSet, found_inside, read_coco, write_coco
from storage.names import parse_view_stem, view_stem
from storage.records import parse_utc, utc_now

FORMAT = "edge-batch/1"
MAX_SEQ = 2**63 - 1  # the database's BigInteger
_VIEW_SUFFIXES = (".png", ".jpg", ".jpeg")  # a views/ folder without a manifest: these are views


@dataclass
class BatchView:
    view: int
    camera_id: str
    file: Path  # absolute
    t_capture: datetime | None = None

    def load(self) -> np.ndarray:
        """The view's pixels, BGR uint8."""
        image = read_image(self.file)
        if image is None:
            raise StorageError(f"{self.file}: missing or not a readable image")
        return image


@dataclass
class BatchContainer:
    seq: int
    t_gate: datetime | None
    decision: str | None
    model_version: str | None
    views: list[BatchView] = field(default_factory=list)


@dataclass
class Batch:
    root: Path
    line: str | None
    created: datetime | None
    containers: list[BatchContainer]
    labels: LabelSet | None  # None: the batch carries no labels
    skipped: list[str] = field(default_factory=list)  # one line per thing left out, and why

    def labels_for(self, seq: int, view: int) -> LabelledImage | None:
        """The labelled boxes of one view, or None where the view was not labelled."""
        if self.labels is None:
            return None
        name = view_stem(seq, view)
        return next((img for img in self.labels.images if Path(img.file).stem == name), None)


def view_file(seq: int, view: int, suffix: str) -> str:
    return f"views/{view_stem(seq, view)}{suffix}"


# -- export --------------------------------------------------------------------------------

@dataclass
class ExportReport:
    containers: int = 0
    views: int = 0
    labelled_views: int = 0
    skipped: list[str] = field(default_factory=list)


def export_batch(db: Database, data_dir: Path, out: Path, line_id: str, *, since: datetime | None = None,
                 until: datetime | None = None, seqs: set[int] | None = None,
                 classes: list[str] | None = None) -> ExportReport:
    """Copy the selected containers' stored views into a new batch folder `out`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StorageError(f"{out} exists and is not empty; name a new folder for the batch")
    query = select(Container).options(selectinload(Container.views).selectinload(View.labels)) \
        .order_by(Container.t_gate, Container.id)
    if since is not None:
        query = query.where(Container.t_gate >= since)
    if until is not None:
        query = query.where(Container.t_gate < until)
    if seqs is not None:
        query = query.where(Container.seq.in_(sorted(seqs)))
    report = ExportReport()
    manifest, labelled = [], []
    with db.session() as session:
        rows = session.scalars(query).all()
        if not rows:
            raise StorageError("no container matches the selection; check --from/--to or --containers")
        (out / "views").mkdir(parents=True, exist_ok=True)
        seen: set[int] = set()
        for c in tqdm(rows, desc="export", unit="container", disable=len(rows) < 50):
            if c.seq in seen:
                report.skipped.append(f"container {c.seq} at {c.t_gate.isoformat()}: sequence number "
                                      "already exported (seq restarted); narrow --from/--to")
                continue
            views = []
            for v in c.views:
                if v.image_state != STORED:
                    continue
                relative = view_file(c.seq, v.view, Path(v.image_file).suffix)
                try:
                    shutil.copyfile(Path(data_dir) / v.image_file, out / relative)
                except OSError as exc:
                    report.skipped.append(f"container {c.seq} view {v.view}: {v.image_file} unreadable ({exc})")
                    continue
                views.append({"view": v.view, "camera_id": v.camera_id, "file": relative,
                              "t_capture": v.t_capture.isoformat() if v.t_capture else None})
                if v.labelled:
                    labelled.append(_labelled_image(out, relative, c.seq, v))
            if not views:
                report.skipped.append(f"container {c.seq}: no stored image (not kept by the policy or purged)")
                continue
            seen.add(c.seq)
            manifest.append({"seq": c.seq, "t_gate": c.t_gate.isoformat(), "decision": c.decision,
                             "model_version": c.model_version.version if c.model_version else None,
                             "views": views})
            report.views += len(views)
    if labelled:
        names = classes or sorted({n for img in labelled for n in img.classes})
        write_coco(out / "labels.json", labelled, names)
    with atomic_write(out / "manifest.json", fsync=False) as fh:
        json.dump({"format": FORMAT, "line": line_id, "created": utc_now().isoformat(), "containers": manifest},
                  fh, indent=1)
    report.containers, report.labelled_views = len(manifest), len(labelled)
    return report


def _labelled_image(root: Path, relative: str, seq: int, view: View) -> LabelledImage:
    height, width = cv2.imread(str(root / relative), cv2.IMREAD_UNCHANGED).shape[:2]
    return LabelledImage(file=relative, width=width, height=height,
                         boxes=np.array([lb.box for lb in view.labels], np.float32).reshape(-1, 4),
                         classes=[lb.class_name for lb in view.labels], container_seq=seq, view=view.view)


# -- read ----------------------------------------------------------------------------------

def read_batch(path: Path, classes: list[str] | None = None, check_images: bool = True) -> Batch:
    """Read a batch folder; what cannot be used is named in `skipped`, never raised nor logged
    (the caller shows it: `edge replay` echoes it and writes it into its report).

    `classes` (the model's vocabulary) drops labels of other classes; `check_images`
    decodes every view so a corrupt file is found here rather than mid-replay.
    """
    root = Path(path)
    if not root.is_dir():
        raise StorageError(f"{root} is not a batch folder (expected manifest.json and views/)")
    skipped: list[str] = []
    line = created = None
    try:
        document = json.loads(inside(root, "manifest.json").read_text(encoding="utf-8"))
        if not isinstance(document, dict) or not isinstance(document.get("containers"), list):
            raise ValueError("no 'containers' list")
        if document.get("format") != FORMAT:
            skipped.append(f"manifest.json: format {document.get('format')!r}, expected {FORMAT!r}; read anyway")
        line, created = document.get("line"), _parse_time(document.get("created"))
        entries = document["containers"]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        skipped.append(f"manifest.json: does not parse ({exc}); containers rebuilt from the views/ file names "
                       "(no gate times, decisions or camera ids)")
        entries = _entries_from_files(root)

    sizes: dict[str, tuple[int, int]] = {}
    containers: list[BatchContainer] = []
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        try:
            seq = whole_number(entry["seq"], MAX_SEQ)
            views_in = entry["views"]
            if not isinstance(views_in, list):
                raise TypeError("views is not a list")
        except (KeyError, TypeError, ValueError):
            skipped.append(f"manifest.json container #{i}: needs a whole-number 'seq' (0 to {MAX_SEQ}) "
                           f"and a 'views' list, got {_shown(entry)}; skipped")
            continue
        if seq in seen:
            skipped.append(f"manifest.json container #{i}: seq {seq} appears twice; the second is skipped")
            continue
        seen.add(seq)
        container = BatchContainer(seq=seq, t_gate=_parse_time(entry.get("t_gate")),
                                   decision=entry.get("decision"), model_version=entry.get("model_version"))
        for v in views_in:
            batch_view = _read_view(root, seq, v, check_images, sizes, skipped)
            if batch_view is not None:
                container.views.append(batch_view)
        if container.views:
            containers.append(container)
        else:
            skipped.append(f"container {seq}: no usable view; skipped")
    labels = _read_labels(root, classes, sizes, skipped) if (root / "labels.json").exists() else None
    return Batch(root=root, line=line, created=created, containers=containers, labels=labels, skipped=skipped)


def _read_view(root: Path, seq: int, v, check_images: bool, sizes: dict, skipped: list[str]) -> BatchView | None:
    try:
        view, file = whole_number(v["view"], 5), v["file"]
        if not isinstance(file, str):
            raise TypeError("file is not a string")
    except (KeyError, TypeError, ValueError):
        skipped.append(f"container {seq}: view entry {_shown(v)} needs 'view' (0-5) and 'file'; skipped")
        return None
    full = found_inside(root, file, f"container {seq} view {view}", skipped)
    if full is None:
        return None
    if check_images:
        image = read_image(full, cv2.IMREAD_UNCHANGED)
        if image is None:
            skipped.append(f"container {seq} view {view}: {file} is corrupt (does not decode); skipped")
            return None
        sizes[Path(file).as_posix()] = (image.shape[1], image.shape[0])
    return BatchView(view=view, camera_id=str(v.get("camera_id") or ""), file=full,
                     t_capture=_parse_time(v.get("t_capture")))


def _read_labels(root: Path, classes: list[str] | None, sizes: dict, skipped: list[str]) -> LabelSet | None:
    try:
        labels = read_coco(inside(root, "labels.json"))
    except (OutsideRoot, StorageError) as exc:
        skipped.append(f"labels.json: {exc}; the batch is read without labels")
        return None
    skipped.extend(f"labels.json: {line}" for line in labels.skipped)
    known = set(classes) if classes is not None else None
    for image in labels.images:
        actual = sizes.get(image.file)
        if actual is not None and actual != (image.width, image.height):
            skipped.append(f"labels.json: {image.file} is {actual[0]}x{actual[1]}, labels say "
                           f"{image.width}x{image.height}; its boxes skipped")
            image.boxes, image.classes = np.zeros((0, 4), np.float32), []
        if known is None:
            continue
        keep = [i for i, name in enumerate(image.classes) if name in known]
        for i in set(range(len(image.classes))) - set(keep):
            skipped.append(f"labels.json: {image.file}: class {image.classes[i]!r} is not in the vocabulary "
                           f"{sorted(known)}; box skipped")
        image.boxes, image.classes = image.boxes[keep], [image.classes[i] for i in keep]
    if known is not None:
        labels.classes = [c for c in labels.classes if c in known]
    return labels


def whole_number(value, highest: int) -> int:
    """A manifest's seq or view: an int (or its digits as text) from 0 to `highest`, else ValueError.

    int() alone would take 2.7 as 2, true as 1, and raise OverflowError for 1e400.
    """
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= highest:
        raise ValueError(f"not a whole number from 0 to {highest}")
    return value


def _shown(value) -> str:
    """A manifest entry in a skipped line, cut short: a hostile one can be any size."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _entries_from_files(root: Path) -> list[dict]:
    by_seq: dict[int, list[dict]] = {}
    folder = root / "views"
    for file in sorted(folder.iterdir()) if folder.is_dir() else []:
        parsed = parse_view_stem(file.stem) if file.suffix in _VIEW_SUFFIXES else None
        if parsed:
            by_seq.setdefault(parsed[0], []).append({"view": parsed[1], "file": f"views/{file.name}"})
    return [{"seq": seq, "views": views} for seq, views in sorted(by_seq.items())]


def _parse_time(value) -> datetime | None:
    try:
        return parse_utc(value)
    except (TypeError, ValueError):
        return None


def replay_store(data_dir: Path, name: str) -> tuple[str, Path]:
    """A replay's own database URL and data folder (<data_dir>/replays/<name>/), apart from the line's."""
    folder = Path(data_dir) / "replays" / name
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'edge.db'}", folder
