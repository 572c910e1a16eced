"""The export layouts of the labelling tools, recognised and read into one LabelSet.

People label in CVAT, Label Studio or with Ultralytics' tools, and each writes its own
folder layout; `edge samples import` takes whichever it is given:

| layout | recognised by | read as |
|---|---|---|
| COCO (Label Studio `result.json`, any one .json) | a .json file, or one at the top of the folder | COCO, file names relative to its folder |
| Label Studio JSON | a .json file holding a list (of tasks) | storage/label_studio.py |
| COCO (ours), CVAT COCO 1.0 | `annotations/instances_*.json` | COCO, file names relative to `images/` |
| CVAT for images 1.1 | `annotations.xml`, else the .xml files (datumaro: one per subset) | storage/cvat.py |
| YOLO (Label Studio) | `classes.txt` | `labels/*.txt` beside `images/` |
| CVAT YOLO 1.1 | `obj.names` | `obj_<subset>_data/*.txt` beside its images |
| Ultralytics YOLO (and ours) | `data.yaml` | `names`, and each split's `.../images/...` folder (or .txt list of images) with `.../labels/...` |

Every folder and file a layout names is resolved inside the dataset folder
(storage/files.py `inside`). Label files may come without their images (Label Studio's
and CVAT's exports without images): their sizes come from the stored views on import.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import yaml

from storage.cvat import read_cvat
from storage.errors import StorageError
from storage.files import OutsideRoot, inside
from storage.label_studio import is_label_studio, read_label_studio
from storage.labels import LabelSet, found_inside, read_class_names, read_coco, read_yolo_folders

EXPECTED = ("a COCO .json (ours and CVAT's annotations/instances_default.json, Label Studio's result.json), "
            "Label Studio's JSON export, CVAT's annotations.xml, or a YOLO folder with data.yaml (ours, "
            "Ultralytics), classes.txt (Label Studio) or obj.names (CVAT YOLO 1.1)")
MAX_YAML_BYTES = 1 << 20


def read_labels(path: Path) -> tuple[LabelSet, str]:
    """The labels at `path` (a file of a layout, or the folder holding it) and the layout's name."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return _read_json(path)
        if suffix == ".xml":
            return read_cvat(path), "CVAT for images 1.1"
        if path.name in ("classes.txt", "obj.names", "obj.data") or suffix in (".yaml", ".yml"):
            return _read_folder(path.parent, path.name if suffix in (".yaml", ".yml") else None)
        raise StorageError(f"{path}: not a label file; give {EXPECTED}")
    if path.is_dir():
        return _read_folder(path)
    raise StorageError(f"{path}: no such file or folder")


def _read_folder(root: Path, yaml_name: str | None = None) -> tuple[LabelSet, str]:
    if yaml_name or (root / "data.yaml").is_file():
        return _read_ultralytics(root, yaml_name or "data.yaml"), "Ultralytics YOLO"
    if (root / "obj.names").is_file():
        subsets = sorted(p.name for p in root.glob("obj_*_data") if p.is_dir())
        return (read_yolo_folders(root, read_class_names(root, "obj.names"), [(s, s) for s in subsets],
                                  allow_unsized=True), "CVAT YOLO 1.1")
    if (root / "classes.txt").is_file():
        images = "images" if (root / "images").is_dir() else "."
        return (read_yolo_folders(root, read_class_names(root, "classes.txt"), [(images, "labels")],
                                  allow_unsized=True), "YOLO")
    xml = [root / "annotations.xml"] if (root / "annotations.xml").is_file() else sorted(root.glob("*.xml"))
    if xml:  # CVAT writes annotations.xml; datumaro's `cvat` format one <subset>.xml each
        return _merged([read_cvat(file) for file in xml]), "CVAT for images 1.1"
    cvat_coco = sorted((root / "annotations").glob("instances_*.json"))
    if cvat_coco:
        return _merged([read_coco(f, images_root=root / "images", allow_unsized=True) for f in cvat_coco]), \
            "CVAT COCO 1.0"
    top = sorted(root.glob("*.json"))
    if len(top) == 1:
        return _read_json(top[0])
    found = f" (several .json files: {', '.join(p.name for p in top[:5])}; name one)" if top else ""
    raise StorageError(f"{root}: no labelling tool's layout found{found}; give {EXPECTED}")


def _read_json(path: Path) -> tuple[LabelSet, str]:
    """Label Studio's JSON export (a list of tasks), or COCO (names relative to images/ beside an
    annotations/ folder, as CVAT and datumaro write it, else to the file's folder)."""
    if is_label_studio(path):
        return read_label_studio(path), "Label Studio JSON"
    in_annotations = path.parent.name == "annotations" and (path.parent.parent / "images").is_dir()
    return (read_coco(path, images_root=path.parent.parent / "images" if in_annotations else None,
                      allow_unsized=True), "COCO")


def _read_ultralytics(root: Path, name: str) -> LabelSet:
    """data.yaml: `names` (a list, or {index: name}) and the train/val/test image folders;
    each folder's labels are where Ultralytics looks, its last `images` part read `labels`."""
    try:
        file = inside(root, name)
        if file.stat().st_size > MAX_YAML_BYTES:
            raise StorageError(f"{file}: larger than {MAX_YAML_BYTES} bytes; not a data.yaml")
        config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OutsideRoot as exc:
        raise StorageError(f"{root / name}: {exc}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise StorageError(f"{root / name}: not readable YAML ({exc})") from None
    names = config.get("names") if isinstance(config, dict) else None
    if isinstance(names, dict):
        try:
            names = [str(names[k]) for k in sorted(names, key=int)]
        except (TypeError, ValueError):
            names = None
    if not isinstance(names, list) or not names:
        raise StorageError(f"{root / name}: needs `names`, a list of class names or {{index: name}}")
    base, skipped = _dataset_root(root, config.get("path")), []
    folders = []
    for split in ("train", "val", "test"):
        for entry in _as_list(config.get(split)):
            folders += [pair for pair in _split_folders(root, base, str(entry), skipped) if pair not in folders]
    if not folders:
        folders = [("images", "labels")] + [(f"images/{d.name}", f"labels/{d.name}")
                                            for d in sorted((root / "images").glob("*")) if d.is_dir()]
    labels = read_yolo_folders(root, [str(n) for n in names], folders, allow_unsized=True)
    labels.skipped[:0] = skipped
    return labels


def _dataset_root(root: Path, path: object) -> str:
    """data.yaml's `path`, where it names a folder inside the dataset; else the dataset folder
    (exports from another PC carry that PC's absolute path)."""
    if isinstance(path, str) and path not in ("", "."):
        try:
            full = inside(root, path)
            return full.relative_to(root.resolve()).as_posix() if full.is_dir() else "."
        except OutsideRoot:
            return "."
    return "."


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _split_folders(root: Path, base: str, entry: str, skipped: list[str]) -> list[tuple[str, str]]:
    """(image folder, label folder) pairs of one split: a folder of images, or a .txt list of
    image paths (as datumaro writes it). An export without images has the label folders only."""
    relative = posixpath.normpath((Path(base) / entry).as_posix())
    where = f"data.yaml split {entry!r}"
    if not relative.endswith(".txt"):
        return _present(root, relative, where, skipped)
    listed = found_inside(root, relative, where, skipped)
    if listed is None:
        return []
    try:
        lines = listed.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        skipped.append(f"{where}: not readable as UTF-8 text ({exc}); skipped")
        return []
    parents = {posixpath.dirname(posixpath.normpath(posixpath.join(posixpath.dirname(relative), line.strip())))
               for line in lines if line.strip()}
    return [pair for folder in sorted(parents) for pair in _present(root, folder, where, skipped)]


def _present(root: Path, images: str, where: str, skipped: list[str]) -> list[tuple[str, str]]:
    """[(images, its label folder)] where either is a folder inside the dataset; else [] and why."""
    pair = _label_folder(images)
    found = found_inside(root, images, where, skipped, f"neither a folder of images nor beside a label folder "
                         f"{pair[1]}", lambda full: full.is_dir() or (root / pair[1]).is_dir())
    return [] if found is None else [pair]


def _label_folder(images: str) -> tuple[str, str]:
    """Where Ultralytics looks for an image folder's labels: its last `images` part read `labels`."""
    parts = images.split("/")
    if "images" not in parts:
        return images, images  # labels beside the images
    i = len(parts) - 1 - parts[::-1].index("images")
    return images, "/".join(parts[:i] + ["labels"] + parts[i + 1:])


def _merged(sets: list[LabelSet]) -> LabelSet:
    """Several COCO files of one export (CVAT writes one per subset) as one set."""
    classes = list(dict.fromkeys(name for s in sets for name in s.classes))
    return LabelSet(root=sets[0].root, images=[i for s in sets for i in s.images], classes=classes,
                    skipped=[line for s in sets for line in s.skipped])
