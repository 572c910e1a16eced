"""Labelled images on disk: COCO JSON and YOLO text labels, written and read back.

Datasets come from the synthetic renderer (`edge synth`), from captured batches and,
later, from operators. Readers never trust a file: each box or image that cannot be
used (unknown class, outside the image, zero area, duplicate id, missing or corrupt
image) is left out and named in one human-readable line of `LabelSet.skipped`, so a
training run can show what it ignored instead of stopping on the first bad line.
A box partly outside its image is clipped to it and that is reported too. Every file a
label set names is resolved inside the dataset folder (storage/files.py): an absolute
`file_name`, a `..` or a symbolic link out of the folder is skipped, never read.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from storage.errors import StorageError
from storage.files import MAX_PIXELS, OutsideRoot, atomic_write, inside, read_image
from storage.names import VIEW_STEM

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Names carry the view they show, anywhere in the name, since labelling tools prefix their
# own (Label Studio uploads become "3f2a9c1e-c4_v0.jpg"): c<container id>_v<view> as
# `edge samples export` writes them, or <seq>_v<view> as captured batches and `edge synth` do.
_BY_ID = re.compile(rf"(?<![0-9A-Za-z])c{VIEW_STEM}(?![0-9])")
_BY_SEQ = re.compile(rf"(?<![0-9A-Za-z]){VIEW_STEM}(?![0-9])")


@dataclass
class LabelledImage:
    file: str  # path relative to the dataset root, "/"-separated
    width: int  # 0 with height 0: the label file does not say (the stored view will)
    height: int
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels; fractions of the image when `normalised`
    classes: list[str]
    container_seq: int | None = None
    view: int | None = None
    container_id: int | None = None  # the database row (`edge samples export` names and fields)
    scores: list[float] | None = None  # a detector's pre-annotations carry their scores
    normalised: bool = False  # YOLO boxes of an image that did not come with the labels
    # (M, 4) xyxy pixels of look-alikes that must pass (the renderer's water drops, dust...):
    # training centres some crops on them; COCO keeps them as the image's "negatives".
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.negatives = np.asarray(self.negatives, dtype=np.float32).reshape(-1, 4)
        if len(self.classes) != len(self.boxes):
            raise ValueError(f"{self.file}: {len(self.boxes)} boxes but {len(self.classes)} classes")

    @property
    def sized(self) -> bool:
        return self.width > 0 and self.height > 0


@dataclass
class LabelSet:
    root: Path
    images: list[LabelledImage]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)  # one line per skipped box/image and why


def _write_text(path: Path, text: str) -> None:
    """Readers never see half a label file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, fsync=False) as fh:
        fh.write(text)


def found_inside(root: Path, name: str, where: str, skipped: list[str], what: str = "missing",
                 present: Callable[[Path], bool] = Path.is_file) -> Path | None:
    """`name` resolved inside `root` (storage/files.py `inside`) where it is `present`; else
    None, and one line in `skipped`, headed by `where`, saying why (`what` it is otherwise)."""
    try:
        full = inside(root, name)
    except OutsideRoot as exc:
        skipped.append(f"{where}: {name} ({exc}); skipped")
        return None
    if not present(full):
        skipped.append(f"{where}: {name} is {what}; skipped")
        return None
    return full


def _check_classes(images: list[LabelledImage], classes: list[str]) -> None:
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate class names in {classes}")
    known = set(classes)
    for image in images:
        unknown = set(image.classes) - known
        if unknown:
            raise ValueError(f"{image.file}: classes {sorted(unknown)} not in {classes}")


def fit_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int,
             where: str, skipped: list[str]) -> tuple[float, float, float, float] | None:
    """Validate one xyxy box against its image; clip if partly outside, None if unusable."""
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        skipped.append(f"{where}: box {[x1, y1, x2, y2]} has a non-finite coordinate; skipped")
        return None
    if x2 <= x1 or y2 <= y1:
        skipped.append(f"{where}: box {[x1, y1, x2, y2]} has zero or negative area; skipped")
        return None
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        skipped.append(f"{where}: box {[round(v, 1) for v in (x1, y1, x2, y2)]} is fully outside "
                       f"the {width}x{height} image; skipped")
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
        skipped.append(f"{where}: box {[round(v, 1) for v in (x1, y1, x2, y2)]} is partly outside "
                       f"the {width}x{height} image; clipped to "
                       f"{[round(v, 1) for v in (cx1, cy1, cx2, cy2)]}")
    return cx1, cy1, cx2, cy2


def _check_image_file(path: Path, width: int, height: int, where: str, skipped: list[str]) -> bool:
    """Decode the file (slow, so only on request) and compare its size with the label's."""
    if not path.is_file():
        skipped.append(f"{where}: image file {path} is missing; image skipped")
        return False
    pixels = read_image(path, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        skipped.append(f"{where}: image file {path} cannot be decoded; image skipped")
        return False
    if pixels.shape[:2] != (height, width):
        skipped.append(f"{where}: image file {path} is {pixels.shape[1]}x{pixels.shape[0]}, "
                       f"labels say {width}x{height}; image skipped")
        return False
    return True


def name_identity(file: str) -> tuple[int | None, int | None, int | None]:
    """(container id, container seq, view) a file name carries, each None where it does not."""
    stem = Path(file).stem
    match = _BY_ID.search(stem)
    if match:
        return int(match[1]), None, int(match[2])
    match = _BY_SEQ.search(stem)
    return (None, int(match[1]), int(match[2])) if match else (None, None, None)


def identified(image: LabelledImage) -> LabelledImage:
    """Fill container id / seq / view from the file name where no field gave them."""
    container_id, seq, view = name_identity(image.file)
    if image.container_id is None and image.container_seq is None and view is not None:
        image.container_id, image.container_seq = container_id, seq
        image.view = view if image.view is None else image.view
    return image


def container_key(image: LabelledImage) -> tuple[str, int | str]:
    """Which container a view belongs to: its database id, else its seq, else itself alone."""
    if image.container_id is not None:
        return "id", image.container_id
    if image.container_seq is not None:
        return "seq", image.container_seq
    return "view", image.file


def grouping(images: list[LabelledImage]) -> tuple[str, bool]:
    """One line saying how views were grouped into containers, and whether any view stands
    alone because neither a field nor its name says which container it shows."""
    kinds = [container_key(image)[0] for image in images]
    containers = len({container_key(image) for image in images})
    how = [f"{kinds.count(kind)} by {what}" for kind, what in
           (("id", "container id"), ("seq", "container seq"),
            ("view", "nothing (no container_id/container_seq field, no c<id>_v<view> or <seq>_v<view> "
                     "name): each its own container")) if kinds.count(kind)]
    return f"grouping: {len(images)} views into {containers} containers; {', '.join(how)}", "view" in kinds


def with_size(image: LabelledImage, width: int, height: int, skipped: list[str]) -> LabelledImage:
    """`image` with the size of its stored view: normalised boxes scaled to it, every box
    checked against it (what cannot be used is named in `skipped` and left out)."""
    scale = np.array([width, height, width, height], np.float32) if image.normalised else 1.0
    boxes, names, scores = [], [], []
    for i, (box, name) in enumerate(zip((image.boxes * scale).tolist(), image.classes)):
        fitted = fit_box(*box, width, height, f"{image.file}", skipped)
        if fitted is not None:
            boxes.append(fitted)
            names.append(name)
            scores.append(image.scores[i] if image.scores else None)
    return LabelledImage(file=image.file, width=width, height=height, boxes=np.asarray(boxes, np.float32),
                         classes=names, container_seq=image.container_seq, view=image.view,
                         container_id=image.container_id, scores=scores if image.scores else None)


# ---------------------------------------------------------------------------- COCO


def write_coco(path: Path, images: list[LabelledImage], classes: list[str]) -> None:
    """One COCO JSON; category ids start at 1 in `classes` order; boxes as [x, y, w, h].

    Each image names its container (`container_id`, `container_seq`) and `view`; a
    pre-annotation's score is kept as `score` (the COCO results field) and as a CVAT
    attribute (`attributes.score`), so a labeller can sort and filter by it.
    """
    path = Path(path)
    _check_classes(images, classes)
    category_id = {name: i + 1 for i, name in enumerate(classes)}
    coco_images, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        coco_images.append({
            "id": image_id, "file_name": image.file, "width": int(image.width),
            "height": int(image.height), "container_id": image.container_id,
            "container_seq": image.container_seq, "view": image.view,
        })
        if len(image.negatives):  # an extension other COCO readers ignore
            coco_images[-1]["negatives"] = [[round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
                                            for x1, y1, x2, y2 in image.negatives.tolist()]
        for i, (box, name) in enumerate(zip(image.boxes.tolist(), image.classes)):
            x1, y1, x2, y2 = box
            annotation = {
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id[name],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "segmentation": [],
            }
            if image.scores:
                score = round(float(image.scores[i]), 4)
                annotation.update(score=score, attributes={"score": score})
            annotations.append(annotation)
    document = {
        "info": {"description": "glass-edge labelled images", "version": "1"},
        "images": coco_images, "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "defect"}
                       for name, i in category_id.items()],
    }
    _write_text(path, json.dumps(document, indent=1))


def _load_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StorageError(f"label file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"label file {path} is not readable COCO JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise StorageError(f"label file {path} is not COCO JSON: no 'images' list")
    return document


def _coco_list(document: dict, key: str, skipped: list[str]) -> list:
    """document[key] when it is a list; anything else is named and read as empty."""
    value = document.get(key) or []
    if not isinstance(value, list):
        skipped.append(f"'{key}' is {type(value).__name__}, not a list; ignored")
        return []
    return value


def _coco_categories(document: dict, skipped: list[str]) -> dict[int, str]:
    names: dict[int, str] = {}
    for category in _coco_list(document, "categories", skipped):
        try:
            cid, name = int(category["id"]), str(category["name"])
        except (KeyError, TypeError, ValueError, OverflowError):
            skipped.append(f"category {category!r}: needs an integer id and a name; skipped")
            continue
        if cid in names:
            skipped.append(f"category id {cid} ({name!r}) is a duplicate of {names[cid]!r}; skipped")
            continue
        names[cid] = name
    return names


def _coco_negatives(entry: dict, width: int, height: int, where: str, skipped: list[str]) -> np.ndarray:
    """An image's "negatives" ([x, y, w, h] each, this project's extension), fitted to the image."""
    boxes, given = [], entry.get("negatives") or []
    if not isinstance(given, list):
        skipped.append(f"{where}: 'negatives' is {type(given).__name__}, not a list of boxes; ignored")
        given = []
    for box in given:
        try:
            x, y, w, h = (float(v) for v in box)
        except (TypeError, ValueError, OverflowError):
            skipped.append(f"{where}: negative {box!r} is not a 4-number box; skipped")
            continue
        fitted = fit_box(x, y, x + w, y + h, width, height, f"{where} negative", skipped) if width else None
        if fitted is not None:
            boxes.append(fitted)
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def read_coco(path: Path, check_images: bool = False, images_root: Path | None = None,
              allow_unsized: bool = False) -> LabelSet:
    """Read a COCO JSON; image files are relative to `images_root` (default: its folder).

    `check_images` decodes every image (slow) to catch missing, corrupt or wrong-sized
    files. `allow_unsized` keeps images whose width and height are null (Label Studio
    leaves them null for an image without boxes when the export has no image files): an
    import takes their size from the stored view. A missing or unparsable JSON file
    raises StorageError; anything wrong inside it is reported in `skipped` and left out.
    """
    path = Path(path)
    root = Path(images_root) if images_root is not None else path.parent
    document = _load_json(path)
    skipped: list[str] = []
    category_names = _coco_categories(document, skipped)
    classes = [category_names[cid] for cid in sorted(category_names)]

    by_id: dict[int, LabelledImage] = {}
    for entry in document["images"]:
        try:
            image_id, file = int(entry["id"]), str(entry["file_name"])
            unsized = allow_unsized and entry.get("width") is None and entry.get("height") is None
            width, height = (0, 0) if unsized else (int(entry["width"]), int(entry["height"]))
            container_id, seq, view = (None if entry.get(key) is None else int(entry[key])
                                       for key in ("container_id", "container_seq", "view"))
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
            skipped.append(f"image {entry!r}: needs id, file_name, width and height (and integer "
                           "container_id, container_seq and view where given); skipped")
            continue
        where = f"image {image_id} ({file})"
        try:
            full = inside(root, file)
        except OutsideRoot as exc:
            skipped.append(f"{file} ({exc}; image {image_id} and its boxes skipped)")
            continue
        if image_id in by_id:
            skipped.append(f"{where}: duplicate image id (first is {by_id[image_id].file}); skipped")
            continue
        if not unsized and not (0 < width and 0 < height and width * height <= MAX_PIXELS):
            skipped.append(f"{where}: size {width}x{height} is not positive or beyond {MAX_PIXELS} pixels; skipped")
            continue
        if check_images and not _check_image_file(full, width, height, where, skipped):
            continue
        by_id[image_id] = identified(LabelledImage(
            file=file, width=width, height=height, boxes=np.zeros((0, 4), np.float32), classes=[],
            container_seq=seq, view=view, container_id=container_id,
            negatives=_coco_negatives(entry, width, height, where, skipped)))

    boxes: dict[int, list] = {image_id: [] for image_id in by_id}
    names: dict[int, list[str]] = {image_id: [] for image_id in by_id}
    seen: set[int] = set()
    for ann in _coco_list(document, "annotations", skipped):
        try:
            ann_id, image_id, cid = int(ann["id"]), int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError, OverflowError):
            skipped.append(f"annotation {ann!r}: needs id, image_id, category_id and a 4-number bbox; skipped")
            continue
        where = f"annotation {ann_id}"
        if ann_id in seen:
            skipped.append(f"{where}: duplicate annotation id; skipped")
            continue
        seen.add(ann_id)
        if image_id not in by_id:
            skipped.append(f"{where}: image id {image_id} is unknown or was skipped; skipped")
            continue
        image = by_id[image_id]
        where = f"{where} on {image.file}"
        if cid not in category_names:
            skipped.append(f"{where}: unknown class (category id {cid}); skipped")
            continue
        box = (fit_box(x, y, x + w, y + h, image.width, image.height, where, skipped) if image.sized
               else (x, y, x + w, y + h))  # checked against the stored view's size on import
        if box is not None:
            boxes[image_id].append(box)
            names[image_id].append(category_names[cid])

    images = []
    for image_id, image in by_id.items():
        image.boxes = np.asarray(boxes[image_id], np.float32).reshape(-1, 4)
        image.classes = names[image_id]
        images.append(image)
    return LabelSet(root=root, images=images, classes=classes, skipped=skipped)


# ---------------------------------------------------------------------------- YOLO


def write_yolo(root: Path, images: list[LabelledImage], classes: list[str]) -> None:
    """labels/<stem>.txt per image ("class cx cy w h", normalised), classes.txt and data.yaml.

    An image without boxes gets an empty file, so "no defect" is explicit. Stems must
    be unique because YOLO pairs images and labels by stem. classes.txt is what Label
    Studio's YOLO import reads; data.yaml (`train:` the images' folder, `names`) is what
    Ultralytics and datumaro's `yolo` importer read.
    """
    root = Path(root)
    _check_classes(images, classes)
    index = {name: i for i, name in enumerate(classes)}
    stems = [Path(image.file).stem for image in images]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f"YOLO pairs images with labels by file stem; duplicated stems: {duplicates[:5]}")
    folders = sorted({Path(image.file).parent.as_posix() for image in images}) or ["images"]
    if len(folders) > 1:
        raise ValueError(f"YOLO pairs labels/ with one folder of images; these are in {folders[:5]}")
    (root / "labels").mkdir(parents=True, exist_ok=True)
    _write_text(root / "classes.txt", "".join(f"{name}\n" for name in classes))
    _write_text(root / "data.yaml", yaml.safe_dump({"path": ".", "train": folders[0],
                                                    "names": dict(enumerate(classes))}, sort_keys=False))
    for stem, image in zip(stems, images):
        lines = []
        for (x1, y1, x2, y2), name in zip(image.boxes.tolist(), image.classes):
            cx, cy = (x1 + x2) / 2 / image.width, (y1 + y2) / 2 / image.height
            w, h = (x2 - x1) / image.width, (y2 - y1) / image.height
            lines.append(f"{index[name]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        _write_text(root / "labels" / f"{stem}.txt", "".join(lines))


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG header without decoding; other formats are decoded.

    None for an unreadable file, and for a header claiming more pixels than OpenCV decodes.
    """
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return (width, height) if 0 < width * height <= MAX_PIXELS else None
    pixels = read_image(path, cv2.IMREAD_UNCHANGED)
    return None if pixels is None else (pixels.shape[1], pixels.shape[0])


def _yolo_files(root: Path, folder: str, suffixes: tuple[str, ...],
                skipped: list[str]) -> dict[str, tuple[str, Path]]:
    """stem -> (name relative to root, resolved file) for the files of `folder`, each inside root."""
    directory = root / folder
    found: dict[str, tuple[str, Path]] = {}
    for file in sorted(directory.iterdir()) if directory.is_dir() else []:
        if file.suffix.lower() not in suffixes:
            continue
        name = file.relative_to(root).as_posix()
        try:
            full = inside(root, name)
        except OutsideRoot as exc:
            skipped.append(f"{name} ({exc}; skipped)")
            continue
        if file.stem in found:
            skipped.append(f"{name}: duplicate of {found[file.stem][0]} (same stem); skipped")
            continue
        found[file.stem] = name, full
    return found


def _parse_yolo_line(line: str, classes: list[str], width: int, height: int, where: str,
                     skipped: list[str]) -> tuple[tuple[float, float, float, float], str] | None:
    fields = line.split()
    if len(fields) != 5:
        skipped.append(f"{where}: expected 'class cx cy w h', got {line.strip()!r}; skipped")
        return None
    try:
        index = int(fields[0])
        cx, cy, w, h = (float(v) for v in fields[1:])
    except ValueError:
        skipped.append(f"{where}: {line.strip()!r} is not numbers; skipped")
        return None
    if not 0 <= index < len(classes):
        skipped.append(f"{where}: unknown class index {index} (classes.txt has {len(classes)}); skipped")
        return None
    x1, x2 = (cx - w / 2) * width, (cx + w / 2) * width
    y1, y2 = (cy - h / 2) * height, (cy + h / 2) * height
    box = fit_box(x1, y1, x2, y2, width, height, where, skipped)
    return None if box is None else (box, classes[index])


def read_yolo(root: Path, check_images: bool = False) -> LabelSet:
    """Read classes.txt, labels/*.txt and the images beside them (images/<stem>.<ext>)."""
    root = Path(root)
    classes = read_class_names(root, "classes.txt")
    return read_yolo_folders(root, classes, [("images" if (root / "images").is_dir() else ".", "labels")],
                             check_images)


def read_class_names(root: Path, name: str) -> list[str]:
    """One class name per line (classes.txt, CVAT's obj.names), the file inside `root`."""
    try:
        classes_file = inside(root, name)
    except OutsideRoot as exc:
        raise StorageError(f"{root / name}: {exc}") from None
    if not classes_file.is_file():
        raise StorageError(f"{classes_file} does not exist: a YOLO dataset needs one class name per line")
    try:
        return [line.strip() for line in classes_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"{classes_file}: not readable as UTF-8 text ({exc})") from None


def read_yolo_folders(root: Path, classes: list[str], folders: list[tuple[str, str]],
                      check_images: bool = False, allow_unsized: bool = False) -> LabelSet:
    """YOLO label files paired with images by stem, per (image folder, label folder) under root.

    YOLO files hold no image size, so each image's size is read from its file header.
    An image without a label file has no defects. A label file without an image is
    reported, or with `allow_unsized` kept with its boxes normalised (Label Studio and
    CVAT export labels without images; an import sizes them from the stored view).
    `check_images` also decodes every image to catch corrupt files.
    """
    root = Path(root)
    skipped: list[str] = []
    images = []
    for image_folder, label_folder in folders:
        image_files = _yolo_files(root, image_folder, IMAGE_SUFFIXES, skipped)
        label_files = _yolo_files(root, label_folder, (".txt",), skipped)
        for stem in sorted(set(label_files) - set(image_files)):
            if allow_unsized:
                boxes, names = _yolo_boxes(label_files[stem], classes, 1, 1, skipped)
                images.append(identified(LabelledImage(
                    file=(Path(image_folder) / f"{stem}.png").as_posix(), width=0, height=0, boxes=boxes, classes=names,
                    normalised=True)))
            else:
                skipped.append(f"{label_files[stem][0]}: no image file {stem}.* beside it; skipped")
        for stem, (rel, file) in image_files.items():
            size = _image_size(file)
            if size is None:
                skipped.append(f"image {rel}: cannot be read; skipped")
                continue
            width, height = size
            if check_images and not _check_image_file(file, width, height, f"image {rel}", skipped):
                continue
            boxes, names = _yolo_boxes(label_files.get(stem), classes, width, height, skipped)
            images.append(identified(LabelledImage(file=rel, width=width, height=height, boxes=boxes,
                                                    classes=names)))
    return LabelSet(root=root, images=images, classes=classes, skipped=skipped)


def _yolo_boxes(label_file: tuple[str, Path] | None, classes: list[str], width: int, height: int,
                skipped: list[str]) -> tuple[np.ndarray, list[str]]:
    """The boxes of one label file (none without one), in pixels of a width x height image."""
    if label_file is None:
        return np.zeros((0, 4), np.float32), []
    rel, file = label_file
    boxes, names = [], []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        skipped.append(f"{rel}: not readable as UTF-8 text ({exc}); its boxes skipped")
        lines = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parsed = _parse_yolo_line(line, classes, width, height, f"{rel} line {number}", skipped)
        if parsed is not None:
            boxes.append(parsed[0])
            names.append(parsed[1])
    return np.asarray(boxes, np.float32).reshape(-1, 4), names
