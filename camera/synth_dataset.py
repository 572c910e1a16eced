"""A labelled synthetic dataset on disk, and the recipe that makes it again.

`edge synth` writes one; `edge retrain` writes one again from the recipe a model's
manifest recorded when the folder it was trained on is gone (a fresh install has the
model but not its training images). The renderer is deterministic per seed, so the
same recipe with the same RENDERER_VERSION gives the same pixels; with the full
catalogue, also the same catalogue drawings (`catalogue_digest`, checked before
rendering again).

The dataset is built in a hidden folder beside the target and renamed to it only when
every image and label file is written, so an interrupted or failed run leaves nothing
that looks like a dataset.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import cv2
from tqdm import tqdm

from camera import defect_catalogue
from camera.errors import CameraError
from camera.frame import VIEWS
from camera.synth import RENDERER_VERSION, GlassRenderer, same_pixels_as
from storage.labels import LabelledImage, write_coco, write_yolo
from storage.names import view_stem

log = logging.getLogger(__name__)

RECIPE = "recipe.json"  # beside annotations.json in every `edge synth` folder


@dataclass(frozen=True)
class SynthRecipe:
    """Everything that decides a synthetic dataset's pixels and labels."""

    containers: int
    seed: int
    classes: tuple[str, ...]
    defect_free_share: float = 0.3
    catalogue: str = "classic"
    width: int = 700
    height: int = 820
    renderer: str = RENDERER_VERSION
    catalogue_digest: str | None = None  # defect_catalogue.DIGEST it was rendered with (full catalogue)

    def to_dict(self) -> dict:
        """JSON-ready; no `catalogue_digest` key when there is none, as in recipes older than it."""
        data = {**asdict(self), "classes": list(self.classes)}
        if self.catalogue_digest is None:
            del data["catalogue_digest"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SynthRecipe":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CameraError(f"synthetic recipe: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{**data, "classes": tuple(data["classes"])})

    def renderer_for(self) -> GlassRenderer:
        return GlassRenderer(width=self.width, height=self.height, classes=self.classes,
                             defect_free_share=self.defect_free_share, catalogue=self.catalogue)

    def as_rendered_now(self) -> "SynthRecipe":
        """This recipe as this code renders it: this renderer and, with the full catalogue, its digest."""
        return replace(self, renderer=RENDERER_VERSION,
                       catalogue_digest=defect_catalogue.DIGEST if self.catalogue == "full" else None)


def read_recipe(folder: Path) -> SynthRecipe | None:
    """The recipe of an `edge synth` folder; None for any other dataset (or a file)."""
    path = Path(folder) / RECIPE
    if not path.is_file():
        return None
    return SynthRecipe.from_dict(json.loads(path.read_text()))


def _staging_folder(out: Path) -> tuple[Path, list[Path]]:
    """Refuse a non-empty `out`; make the hidden folder the dataset is built in.

    Returns it and the parent folders that had to be created, so a failure can
    remove them too.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CameraError(f"--out {out}: exists and is not an empty folder; choose a new folder")
    created = [parent for parent in out.absolute().parents if not parent.exists()]
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        (staging / "images").mkdir(parents=True)
    except OSError as exc:
        _remove_empty(created)
        raise CameraError(f"--out {out}: cannot create a folder there ({exc.strerror}); "
                          "choose a writable location") from None
    return staging, created


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # innermost first
        try:
            folder.rmdir()
        except OSError:
            pass


def write_dataset(out: Path, recipe: SynthRecipe, progress: bool = True) -> list[LabelledImage]:
    """Render `recipe` into the new (or empty) folder `out`: images/, COCO, YOLO and recipe.json."""
    recipe = recipe.as_rendered_now()  # what recipe.json records
    renderer = recipe.renderer_for()
    staging, created = _staging_folder(out)
    try:
        images = []
        for seq in tqdm(range(recipe.containers), desc="containers", unit="ctr", disable=not progress):
            container = renderer.container(recipe.seed, seq)
            for view in range(VIEWS):
                rendered = renderer.render(container, view)
                file = f"images/{view_stem(seq, view)}.png"
                if not cv2.imwrite(str(staging / file), rendered.image):
                    raise CameraError(f"--out {out}: could not write {file}")
                height, width = rendered.image.shape[:2]
                images.append(LabelledImage(file=file, width=width, height=height, boxes=rendered.boxes,
                                            classes=rendered.classes, container_seq=seq, view=view,
                                            negatives=rendered.negatives))
        write_coco(staging / "annotations.json", images, list(recipe.classes))
        write_yolo(staging, images, list(recipe.classes))
        (staging / RECIPE).write_text(json.dumps(recipe.to_dict(), indent=1) + "\n")
        if out.exists():
            out.rmdir()  # checked empty above; rename needs it gone
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
    return images


def regenerate(recipe: SynthRecipe, out: Path) -> Path:
    """`out` holding the recipe's dataset: reused when an earlier regeneration left it there.

    Rendering is refused when the full catalogue's drawings changed since the recipe
    was rendered: the same seed would give other images under the same class names. A
    recipe without a digest (classic catalogue, or older than the digest) is not checked.
    """
    current = recipe.as_rendered_now()  # what rendering now gives
    wanted = replace(current, catalogue_digest=recipe.catalogue_digest or current.catalogue_digest)
    if read_recipe(out) == wanted:
        return out
    if wanted != current:
        raise CameraError(
            f"synthetic recipe ({recipe.containers} containers, seed {recipe.seed}) was rendered with defect "
            f"catalogue {recipe.catalogue_digest}, camera/defect_catalogue.yaml is now {current.catalogue_digest} "
            "(a family's or distractor's name, zones or drawing changed), so its images cannot be rendered again; "
            "restore those entries (`git log -p camera/defect_catalogue.yaml` shows the change) or put the "
            "original synthetic folder back where it was")
    if not same_pixels_as(recipe.renderer, recipe.catalogue):
        log.warning("recipe was rendered by renderer %s, this is %s: the regenerated images may differ",
                    recipe.renderer, RENDERER_VERSION)
    if out.exists():
        shutil.rmtree(out)  # an older regeneration with another recipe
    write_dataset(out, current, progress=False)
    return out
