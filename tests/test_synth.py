"""The synthetic glass renderer and `edge synth`: determinism, honest boxes, real files."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO

from camera import synth
from camera.synth import CLASSES, GlassRenderer, without
from edge.cli import main
from storage.labels import read_coco, read_yolo


@pytest.fixture(scope="module")
def renderer() -> GlassRenderer:
    return GlassRenderer(defect_free_share=0.0)


def test_same_seed_same_pixels(renderer: GlassRenderer) -> None:
    other = GlassRenderer(defect_free_share=0.0)
    for view in (0, 4):
        a = renderer.render(renderer.container(5, 11), view)
        synth._SHARED.clear()  # build it again from scratch, not from the shared cache
        b = other.render(other.container(5, 11), view)
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.boxes, b.boxes) and a.classes == b.classes
    assert not np.array_equal(renderer.render(renderer.container(5, 12), 0).image,
                              renderer.render(renderer.container(5, 11), 0).image)
    assert not np.array_equal(renderer.render(renderer.container(6, 11), 0).image,
                              renderer.render(renderer.container(5, 11), 0).image)


def test_image_format(renderer: GlassRenderer) -> None:
    view = renderer.render(renderer.container(0, 0), 0)
    assert view.image.shape == (820, 700, 3) and view.image.dtype == np.uint8
    assert view.boxes.dtype == np.float32 and view.boxes.shape == (len(view.classes), 4)
    # Back-lit: a bright frame border, a darker container in the middle.
    assert view.image[:, :20].mean() > 190 and view.image[300:700, 330:370].mean() < view.image[:, :20].mean()
    with pytest.raises(ValueError):
        renderer.render(renderer.container(0, 0), 6)


def test_each_box_is_inside_and_covers_what_the_defect_changed(renderer: GlassRenderer) -> None:
    boxes_seen = 0
    for seq in range(6):
        container = renderer.container(1, seq)
        assert 1 <= len(container.defects) <= 4
        for view in range(6):
            rendered = renderer.render(container, view)
            plain = renderer.render(container, view, defects=False)
            for box, index in zip(rendered.boxes, rendered.defect_index):
                x1, y1, x2, y2 = box
                assert 0 <= x1 < x2 <= 700 and 0 <= y1 < y2 <= 820
                for reference in (plain, renderer.render(without(container, index), view)):
                    diff = np.abs(rendered.image.astype(int) - reference.image.astype(int)).max(axis=2)
                    inside = diff[int(y1):int(y2), int(x1):int(x2)] > 0
                    assert inside.mean() > 0.1, (seq, view, box)
                    # Tight: every edge row and column of the box holds a changed pixel.
                    assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
                boxes_seen += 1
    assert boxes_seen > 20


def test_defect_free_containers_have_no_boxes() -> None:
    renderer = GlassRenderer(defect_free_share=1.0)
    for seq in range(3):
        container = renderer.container(0, seq)
        assert container.defects == []
        for view in range(6):
            rendered = renderer.render(container, view)
            assert len(rendered.boxes) == 0 and rendered.classes == []
            assert np.array_equal(rendered.image, renderer.render(container, view, defects=False).image)


def test_defect_free_share_is_respected() -> None:
    renderer = GlassRenderer(defect_free_share=0.3)
    free = sum(not renderer.container(2, seq).defects for seq in range(200))
    assert 35 <= free <= 85


def test_placement_foreshortening_and_hiding(renderer: GlassRenderer) -> None:
    """A spot facing view 0 is full width near the axis; at 60 degrees it is narrower and
    off-centre; edge-on (90 degrees) it is hidden; on the far wall it is faint."""
    base = renderer.container(3, 0)
    oil = next(d for seq in range(40) for d in renderer.container(3, seq).defects if d.cls == "oil")

    def seen(theta: float):
        z = (base.shape.shoulder_end + base.shape.base) / 2
        container = replace(base, defects=[replace(oil, theta=theta, z=z)])
        return renderer.render(container, 0)

    front, side, edge = seen(0.0), seen(np.radians(60)), seen(np.radians(90))
    assert len(front.boxes) == 1 and len(side.boxes) == 1 and len(edge.boxes) == 0
    (fx1, _, fx2, _), (sx1, _, sx2, _) = front.boxes[0], side.boxes[0]
    assert abs((fx1 + fx2) / 2 - base.shape.cx) < 15
    assert (sx1 + sx2) / 2 - base.shape.cx > 0.8 * base.shape.body_r * np.sin(np.radians(60)) - 15
    assert 0.3 < (sx2 - sx1) / (fx2 - fx1) < 0.8
    far = seen(np.pi)
    if len(far.boxes):
        assert far.far_wall == [True]
    plain = renderer.render(base, 0, defects=False).image.astype(int)
    assert (np.abs(far.image.astype(int) - plain).max() < np.abs(front.image.astype(int) - plain).max())


def test_renderer_rejects_unknown_class() -> None:
    with pytest.raises(ValueError, match="scratch"):
        GlassRenderer(classes=["oil", "scratch"])


def test_class_selection(renderer: GlassRenderer) -> None:
    only = GlassRenderer(classes=["bubble"], defect_free_share=0.0)
    assert {d.cls for seq in range(10) for d in only.container(0, seq).defects} == {"bubble"}


def _synth(args: list[str]):
    return CliRunner().invoke(main, ["synth", *args])


def test_edge_synth_writes_a_dataset_coco_and_yolo_agree(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = _synth(["--containers", "4", "--out", str(out), "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "images").glob("*.png"))) == 24
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 24
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    renderer = GlassRenderer()
    expected = sum(len(renderer.render(renderer.container(4, seq), v).boxes) for seq in range(4) for v in range(6))
    assert expected > 0 and len(coco.getAnnIds()) == expected
    first = coco.loadImgs(coco.getImgIds())[7]
    assert (first["container_seq"], first["view"], first["file_name"]) == (1, 1, "images/000001_v1.png")

    from_coco = read_coco(out / "annotations.json", check_images=True)
    from_yolo = read_yolo(out, check_images=True)
    assert from_coco.skipped == [] and from_yolo.skipped == []
    assert from_yolo.classes == list(CLASSES)
    yolo = {image.file: image for image in from_yolo.images}
    assert set(yolo) == {image.file for image in from_coco.images}
    for image in from_coco.images:
        back = yolo[image.file]
        assert back.classes == image.classes and (back.container_seq, back.view) == (image.container_seq, image.view)
        np.testing.assert_allclose(back.boxes, image.boxes, atol=0.02)


@pytest.mark.parametrize("args, message", [
    (["--containers", "0"], "--containers must be at least 1"),
    (["--containers", "-3"], "--containers must be at least 1"),
    (["--containers", "2", "--classes", "oil,scratch"], "unknown defect class 'scratch'"),
    (["--containers", "2", "--defect-free-share", "1.5"], "--defect-free-share"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    result = _synth([*args, "--out", str(tmp_path / "ds")])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_unwritable_or_non_empty_output_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _synth(["--containers", "1", "--out", str(blocker / "ds")])
    assert result.exit_code == 2 and "cannot create a folder" in result.output
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    result = _synth(["--containers", "1", "--out", str(full)])
    assert result.exit_code == 2 and "not an empty folder" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "full"]
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_failure_midway_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = GlassRenderer.render

    def render_then_fail(self, container, view, defects=True):
        if container.seq == 1:
            raise OSError("disk full")
        return real_render(self, container, view, defects)

    monkeypatch.setattr(GlassRenderer, "render", render_then_fail)
    result = _synth(["--containers", "3", "--out", str(tmp_path / "new" / "ds")])
    assert result.exit_code != 0 and isinstance(result.exception, OSError)
    assert list(tmp_path.iterdir()) == []  # neither the partial dataset nor the folder made for it


def test_other_picture_sizes_keep_boxes_inside() -> None:
    small = GlassRenderer(width=350, height=410, defect_free_share=0.0)
    seen = 0
    for seq in range(4):
        for view in range(6):
            rendered = small.render(small.container(0, seq), view)
            assert rendered.image.shape == (410, 350, 3)
            for x1, y1, x2, y2 in rendered.boxes:
                assert 0 <= x1 < x2 <= 350 and 0 <= y1 < y2 <= 410
                seen += 1
    assert seen > 0


def test_six_cameras_share_one_container_picture() -> None:
    """Six renderers (six synthetic cameras) build a container's picture once between them."""
    cameras = [GlassRenderer() for _ in range(6)]
    containers = [camera.container(9, 1234) for camera in cameras]
    images = [camera.render(container, view).image for view, (camera, container)
              in enumerate(zip(cameras, containers))]
    assert all(container.base is containers[0].base for container in containers)
    assert not np.array_equal(images[0], images[3])


def test_catalogue_has_fifteen_families_in_every_zone_with_names_and_sources() -> None:
    from camera.defect_catalogue import FAMILIES, ZONES

    assert len(FAMILIES) >= 15 and set(CLASSES) <= {f.name for f in FAMILIES}
    assert {zone for f in FAMILIES for zone in f.zones} == set(ZONES)
    for f in FAMILIES:
        assert len(f.synonyms) >= 2 and len(f.description.split()) >= 6 and f.source
        assert len(set(f.prompts)) == len(f.prompts)


def test_every_family_renders_a_labelled_box_in_its_zone() -> None:
    from camera.defect_catalogue import FAMILIES, zone_rows

    for family in FAMILIES:
        renderer = GlassRenderer(classes=[family.name], defect_free_share=0.0, catalogue="full")
        seen = 0
        for seq in range(4):
            container = renderer.container(7, seq)
            rows = [zone_rows(zone, container.shape) for zone in family.zones]
            for view in range(6):
                rendered = renderer.render(container, view)
                assert set(rendered.classes) <= {family.name}
                for (x1, y1, x2, y2), i in zip(rendered.boxes, rendered.defect_index):
                    z = container.defects[i].z
                    assert any(low <= z <= high for low, high in rows), (family.name, z, rows)
                    # the box is where the defect is: its zone, give or take the view's shift
                    assert any(y1 <= high + synth.PAD_Y + 2 and y2 >= low - synth.PAD_Y - 2 for low, high in rows)
                    seen += 1
        assert seen > 0, f"{family.name} was never visible in 24 views"


def test_distractors_change_pixels_carry_no_labels_and_are_named_as_negatives() -> None:
    renderer = GlassRenderer(defect_free_share=1.0, catalogue="full")
    containers = [renderer.container(3, seq) for seq in range(12)]
    kinds = {d.cls for c in containers for d in c.distractors}
    assert len(kinds) >= 3
    changed = 0
    for container in containers:
        for view in range(6):
            rendered = renderer.render(container, view)
            assert len(rendered.boxes) == 0 and rendered.classes == []
            bare = renderer.render(replace(container, distractors=[]), view)
            assert len(bare.negatives) == 0
            changed += not np.array_equal(rendered.image, bare.image)
            difference = np.abs(rendered.image.astype(int) - bare.image.astype(int)).max(axis=2)
            covered = np.zeros(difference.shape, bool)
            for x1, y1, x2, y2 in rendered.negatives.astype(int):  # each negative box is where pixels changed
                assert difference[y1:y2 + 1, x1:x2 + 1].max() >= renderer.visible_delta / 2
                covered[max(y1 - 2, 0):y2 + 3, max(x1 - 2, 0):x2 + 3] = True
            # and no distractor clearly seen is left unnamed (one judged unseen may change a few pixels)
            outside = np.count_nonzero((difference >= renderer.visible_delta) & ~covered)
            assert outside <= (synth.MIN_VISIBLE_PX - 1) * len(container.distractors)
    assert changed > 10


def test_full_catalogue_is_deterministic_per_seed() -> None:
    a, b = (GlassRenderer(defect_free_share=0.0, catalogue="full") for _ in range(2))
    first = a.render(a.container(11, 2), 1)
    synth._SHARED.clear()
    again = b.render(b.container(11, 2), 1)
    assert np.array_equal(first.image, again.image) and first.classes == again.classes
    assert np.array_equal(first.boxes, again.boxes)
    assert not np.array_equal(first.image, a.render(a.container(12, 2), 1).image)


def test_edge_synth_full_catalogue_writes_its_recipe(tmp_path: Path) -> None:
    from camera.defect_catalogue import NAMES
    from camera.synth_dataset import read_recipe

    out = tmp_path / "full"
    result = _synth(["--containers", "2", "--out", str(out), "--catalogue", "full", "--seed", "9"])
    assert result.exit_code == 0, result.output
    recipe = read_recipe(out)
    assert (recipe.catalogue, recipe.containers, recipe.seed, recipe.classes) == ("full", 2, 9, NAMES)
    written = read_coco(out / "annotations.json")
    assert written.classes == list(NAMES)
    assert sum(len(im.negatives) for im in written.images) > 0  # the distractors, for hard-negative crops
    bad = _synth(["--containers", "2", "--out", str(tmp_path / "x"), "--classes", "stone"])
    assert bad.exit_code == 2 and "unknown defect class 'stone' in the classic catalogue" in bad.output


def test_a_catalogue_entry_naming_an_unknown_drawing_or_zone_is_refused_with_its_family(tmp_path):
    import yaml

    from camera.defect_catalogue import CATALOGUE_FILE, load_catalogue
    from camera.errors import CameraError

    data = yaml.safe_load(CATALOGUE_FILE.read_text())
    data["families"][5]["drawing"] = "no_such_drawing"
    bad = tmp_path / "catalogue.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CameraError, match=f"family '{data['families'][5]['name']}'.*no_such_drawing"):
        load_catalogue(bad)
    data["families"][5]["drawing"] = "stone"
    data["families"][5]["zones"] = ["lid"]
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(CameraError, match=re.escape(f"family '{data['families'][5]['name']}': zones must be some "
                                                    "of finish, shoulder, body, heel, base, got ['lid']")):
        load_catalogue(bad)


def test_regenerate_refuses_a_full_catalogue_recipe_whose_drawings_changed(tmp_path, monkeypatch):
    import yaml

    from camera import defect_catalogue
    from camera.errors import CameraError
    from camera.synth_dataset import SynthRecipe, read_recipe, regenerate, write_dataset

    first = tmp_path / "first"
    write_dataset(first, SynthRecipe(containers=1, seed=4, classes=("stone", "check"), defect_free_share=0.0,
                                     catalogue="full", width=350, height=410), progress=False)
    recorded = read_recipe(first)
    assert recorded.catalogue_digest == defect_catalogue.DIGEST
    # a recipe older than the digest loads and renders again unchecked: the same pixels
    older = {k: v for k, v in recorded.to_dict().items() if k != "catalogue_digest"}
    again = regenerate(SynthRecipe.from_dict(older), tmp_path / "again")
    assert read_recipe(again) == recorded
    image = "images/" + sorted(p.name for p in (first / "images").iterdir())[0]
    assert (again / image).read_bytes() == (first / image).read_bytes()

    data = yaml.safe_load(defect_catalogue.CATALOGUE_FILE.read_text())
    edited = tmp_path / "catalogue.yaml"
    data["families"][0]["synonyms"].append("greasy patch")  # words change no pixel
    edited.write_text(yaml.safe_dump(data))
    assert defect_catalogue.load_catalogue(edited)[0] == recorded.catalogue_digest
    data["distractors"][0]["zones"] = ["base"]  # water drops only on the base from now on
    edited.write_text(yaml.safe_dump(data))
    digest = defect_catalogue.load_catalogue(edited)[0]
    monkeypatch.setattr(defect_catalogue, "DIGEST", digest)  # as if the module had read the edited file
    with pytest.raises(CameraError, match=f"catalogue {recorded.catalogue_digest}, camera/defect_catalogue.yaml "
                                          f"is now {digest} .* restore those entries"):
        regenerate(recorded, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    assert regenerate(recorded, again) == again  # rendered before the edit: still the recipe's pixels


def test_an_older_renderers_recipe_warns_only_where_its_catalogues_pixels_changed(tmp_path, caplog):
    from camera.synth import RENDERER_CHANGES, RENDERER_VERSION, same_pixels_as
    from camera.synth_dataset import SynthRecipe, regenerate

    assert RENDERER_CHANGES.get(RENDERER_VERSION), "a new renderer version names the catalogues it changed"
    assert same_pixels_as("1", "classic") and not same_pixels_as("1", "full")
    assert same_pixels_as(RENDERER_VERSION, "full") and not same_pixels_as("99", "classic")
    assert not same_pixels_as("x", "classic")
    small = dict(containers=1, seed=4, defect_free_share=0.0, width=350, height=410, renderer="1")
    with caplog.at_level("WARNING"):
        regenerate(SynthRecipe(classes=("oil",), **small), tmp_path / "classic")
    assert "may differ" not in caplog.text  # the five classic drawings are those of renderer 1
    with caplog.at_level("WARNING"):
        regenerate(SynthRecipe(classes=("stone",), catalogue="full", **small), tmp_path / "full")
    assert f"rendered by renderer 1, this is {RENDERER_VERSION}: the regenerated images may differ" in caplog.text
