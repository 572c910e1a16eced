"""Training: a tiny model end to end, exact resume after SIGKILL, DDP on gloo, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edge.cli import main
from engines.errors import EngineError
from engines.package import ModelPackage
from engines.training.augment import Augment
from engines.training.datasets import CropDataset, load_labels, read_split
from engines.training.train import Budget, epoch_batches, prepare_data, train
from line_support import wait_for
from storage.labels import write_coco
from training_support import CLASSES, config, easy_dataset
from bench import free_port


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return easy_dataset(tmp_path_factory.mktemp("easy"), containers=6)


def test_tiny_model_two_epochs_writes_a_verified_package(data, tmp_path):
    result = train(config(data, tmp_path / "run", half_weights=True))
    package = ModelPackage.load(result.package.path)  # verifies hashes
    assert package.vocabulary == tuple(CLASSES)
    assert package.embeddings().shape == (2, 384)
    assert package.manifest["arch"]["scale"] == "tiny"
    assert all(v.dtype == torch.float16 for v in package.state_dict().values() if v.is_floating_point())
    steps = [h for h in result.history if "loss" in h]
    assert {h["epoch"] for h in steps} == {1, 2}
    assert all(np.isfinite(h["loss"]) for h in steps)
    val = package.manifest["metrics"]["val"]
    assert {"ap", "ap50", "per_class", "at_target"} <= set(val)
    # the shipped weights run through the same runtime the line uses
    from engines.config import EngineConfig
    from engines.runtimes import load_engine

    engine = load_engine(package, EngineConfig(runtime="torch", imgsz=160), tmp_path / "cache")
    assert len(engine.infer([cv2.imread(str(data / "images/000001_v0.png"))])) >= 0


def test_init_starts_from_a_package_and_records_it_as_parent(data, tmp_path):
    base = train(config(data, tmp_path / "base", version="base-1")).package
    args = ["train", "--data", str(data), "--crop", "96", "--batch", "4", "--imgsz", "160",
            "--threads", "1", "--max-steps", "2", "--lr", "0", "--version", "tuned-1"]
    result = CliRunner().invoke(main, [*args, "--init", str(base.path), "--out", str(tmp_path / "tuned")])
    assert result.exit_code == 0, result.output
    tuned = ModelPackage.load(tmp_path / "tuned" / "tuned-1")
    assert tuned.manifest["parent"] == "base-1"
    assert tuned.manifest["training"]["model"] == "rtvp-tiny"  # the package's scale, not --model's default
    learnt = {k: v for k, v in base.state_dict().items() if v.is_floating_point() and "running" not in k}
    after = tuned.state_dict()
    assert all(torch.allclose(after[k].float(), v.float(), atol=1e-6) for k, v in learnt.items())  # lr 0
    fresh = CliRunner().invoke(main, [*args, "--model", "rtvp-tiny", "--out", str(tmp_path / "fresh")])
    assert fresh.exit_code == 0, fresh.output
    other = ModelPackage.load(tmp_path / "fresh" / "tuned-1").state_dict()
    assert not all(torch.allclose(other[k].float(), v.float(), atol=1e-6) for k, v in learnt.items())
    missing = CliRunner().invoke(main, [*args, "--init", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "--init" in missing.output


def test_p2_grows_a_stride4_level_on_an_init_model(data, tmp_path):
    base = train(config(data, tmp_path / "base", version="base-1")).package
    args = ["train", "--data", str(data), "--crop", "96", "--batch", "4", "--imgsz", "160", "--threads", "1",
            "--max-steps", "2", "--lr", "0", "--version", "fine-1", "--init", str(base.path), "--p2"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "fine")])
    assert result.exit_code == 0, result.output
    fine = ModelPackage.load(tmp_path / "fine" / "fine-1")
    assert fine.manifest["arch"]["p2"] is True and base.manifest["arch"]["p2"] is False
    before, after = base.state_dict(), fine.state_dict()
    learnt = {k: v for k, v in before.items() if v.is_floating_point() and "running" not in k}
    assert all(torch.allclose(after[k].float(), v.float(), atol=1e-6) for k, v in learnt.items())  # lr 0
    assert any(k.startswith("neck.top_down2.") for k in set(after) - set(before))
    from engines.config import EngineConfig
    from engines.runtimes import load_engine

    engine = load_engine(fine, EngineConfig(runtime="onnxruntime", imgsz=160), tmp_path / "cache")
    engine.infer([cv2.imread(str(data / "images/000001_v0.png"))])  # the four-level graph exports and runs
    assert engine.session.get_outputs()[0].shape[1] == sum((160 // s) ** 2 for s in (8, 16, 32, 4))


def _checkpoint_step(path: Path) -> int:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["step"]
    except Exception:  # not written yet
        return -1


def test_resume_after_sigkill_continues_the_same_loss_curve(data, tmp_path):
    args = ["--data", str(data), "--model", "rtvp-tiny", "--epochs", "3", "--val-every", "3", "--crop", "96", "--batch", "4",
            "--imgsz", "160", "--threads", "1", "--save-every", "1", "--version", "resumed"]
    reference = train(config(data, tmp_path / "ref", epochs=3, val_every=3, save_every=1, version="ref"))
    ref_losses = [h["loss"] for h in reference.history if "loss" in h]

    out = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "train", *args, "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def third_checkpoint() -> bool:
            assert proc.poll() is None, "training ended before it could be killed"
            return _checkpoint_step(out / "last.pt") >= 3

        wait_for(third_checkpoint, 240, "the third checkpoint", every=0.2)  # each look loads the file
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    killed_at = _checkpoint_step(out / "last.pt")
    assert 3 <= killed_at < len(ref_losses)
    assert not (out / "resumed").exists()

    result = CliRunner().invoke(main, ["train", *args, "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    steps = [h for h in history if "loss" in h]
    assert [h["step"] for h in steps] == list(range(1, len(ref_losses) + 1))
    np.testing.assert_allclose([h["loss"] for h in steps], ref_losses, rtol=1e-5)


def _ddp_rank(rank: int, data: str, out: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1")
    result = train(config(Path(data), Path(out), epochs=1, max_steps=2, val_share=0.2))
    # parameters, not BatchNorm running statistics: those are per-rank buffers by design
    torch.save(dict(result.model.named_parameters()), Path(out) / f"rank{rank}.pt")


def test_ddp_two_gloo_processes_keep_identical_parameters(data, tmp_path):
    torch.multiprocessing.spawn(_ddp_rank, args=(str(data), str(tmp_path), free_port()), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    # the ranks saw different batches, so equality comes from the gradient all-reduce
    batches = [epoch_batches(24, 0, 0, 4, r, 2) for r in (0, 1)]
    assert batches[0] != batches[1]
    # and steps were taken: the parameters moved away from their initial values
    torch.manual_seed(0)
    from engines.rtvp import RTVPConfig, build_model

    init = dict(build_model(RTVPConfig(scale="tiny", imgsz=160, text_dim=384)).named_parameters())
    assert sum(not torch.equal(init[k], a[k]) for k in a) > len(a) // 2


def _budget_rank(rank: int, out: str, port: int) -> None:
    import torch.distributed as dist

    from datetime import timedelta

    # a collective one rank never joins fails after the timeout instead of hanging the test
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    try:
        clock = Budget(60.0, 0, 10, torch.device("cpu"))
        step = 0
        while step < 10:
            step += 1
            if rank == 0 and step == 3:
                clock.start -= 3601  # only rank 0's clock passes the hour
            if clock.spent():
                break
    finally:
        dist.destroy_process_group()
    (Path(out) / f"rank{rank}.txt").write_text(str(step))


def test_time_budget_stops_every_rank_at_the_step_one_rank_ran_out(tmp_path):
    """Rank 1's clock alone would run all 10 steps; rank 0's is spent at step 3: both stop there."""
    torch.multiprocessing.spawn(_budget_rank, args=(str(tmp_path), free_port()), nprocs=2, join=True)
    assert [(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)] == ["3", "3"]


# ---------------------------------------------------------------------------- bad input


def test_bad_labels_are_reported_and_never_reach_an_epoch(data, tmp_path):
    bad = tmp_path / "bad"
    easy_dataset(bad, containers=4)
    (bad / "images/000001_v0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # corrupt image
    coco = json.loads((bad / "annotations.json").read_text())
    image_id = coco["images"][4]["id"]
    coco["annotations"] += [
        {"id": 9001, "image_id": image_id, "category_id": 1, "bbox": [500, 500, 10, 10]},  # outside
        {"id": 9002, "image_id": image_id, "category_id": 1, "bbox": [10, 10, 0, 5]},  # zero area
        {"id": 9003, "image_id": image_id, "category_id": 7, "bbox": [10, 10, 5, 5]},  # unknown class
    ]
    (bad / "annotations.json").write_text(json.dumps(coco))
    labels = load_labels(bad)
    report = "\n".join(labels.skipped)
    assert "cannot be decoded" in report and "outside" in report
    assert "zero or negative area" in report and "unknown class" in report
    assert "000001_v0.png" not in {im.file for im in labels.images}
    train_set, val, vocab = prepare_data(config(bad, tmp_path / "run"))
    dataset = CropDataset(train_set, Augment(crop=96))
    for i in range(len(dataset)):  # every remaining sample loads
        image, target = dataset[i]
        assert image.shape == (3, 96, 96) and target["boxes"].shape[1] == 4
        assert ((target["boxes"] >= 0) & (target["boxes"] <= 96)).all()


@pytest.mark.parametrize("command", ["train", "retrain"])
@pytest.mark.parametrize("minutes", ["0", "-1"])
def test_a_time_budget_of_no_minutes_is_refused(command, minutes):
    """In Budget 0 would mean no limit and a negative budget one step: both are refused."""
    result = CliRunner().invoke(main, [command, "--max-minutes", minutes])
    assert result.exit_code == 2 and f"'--max-minutes': {float(minutes)} is not in the range x>0" in result.output


def test_empty_dataset_and_missing_split_stop_before_training(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_coco(empty / "annotations.json", [], CLASSES)
    with pytest.raises(EngineError, match="no usable images"):
        train(config(empty, tmp_path / "run"))
    assert not (tmp_path / "run" / "last.pt").exists()
    result = CliRunner().invoke(main, ["train", "--data", str(empty), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 2 and "no usable images" in result.output
    with pytest.raises(EngineError, match="does not exist"):
        read_split(tmp_path / "absent.json")
    (tmp_path / "overlap.json").write_text(json.dumps({"base": ["a", "b"], "novel": ["b"]}))
    with pytest.raises(EngineError, match="both base and novel"):
        read_split(tmp_path / "overlap.json")


def test_zero_shot_split_trains_on_base_names_only(data, tmp_path):
    (tmp_path / "split.json").write_text(json.dumps({"base": ["dark square"], "novel": ["bright ring"]}))
    train_set, val, vocab = prepare_data(config(data, tmp_path / "run", split=tmp_path / "split.json"))
    assert vocab == ("dark square",)
    names = {n for im in train_set.images + val.images for n in im.classes}
    assert names <= {"dark square"}
    assert any("bright ring" in line for line in train_set.skipped)


def test_a_share_of_crops_is_centred_on_look_alikes_and_views_without_them_crop_as_before():
    image = np.full((820, 700, 3), 128, np.uint8)
    image[650:670, 500:520] = 0  # a water drop, far from the defect: no crop holds both
    boxes = np.array([[100, 100, 110, 110]], np.float32)
    drop = np.array([[500, 650, 520, 670]], np.float32)

    def share_showing_the_drop(p: float) -> float:
        aug = Augment(crop=256, negative_crop_p=p, exposure_p=0.0, blur_p=0.0, noise_p=0.0)
        crops = [aug(image, boxes, ["oil"], np.random.default_rng(seed), drop)[0] for seed in range(600)]
        return sum(int((crop == 0).all(axis=2).sum() == 400) for crop in crops) / len(crops)

    by_chance = share_showing_the_drop(0.0)  # random crops (15% of views with a defect) hold it sometimes
    assert by_chance < 0.1
    assert abs(share_showing_the_drop(0.25) - (0.25 + 0.75 * by_chance)) < 0.06
    for seed in range(20):  # no look-alikes named: the very crops of a dataset without them
        a = Augment(crop=256, negative_crop_p=1.0)(image, boxes, ["oil"], np.random.default_rng(seed),
                                                   np.zeros((0, 4), np.float32))
        b = Augment(crop=256, negative_crop_p=0.0)(image, boxes, ["oil"], np.random.default_rng(seed))
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_training_samples_read_the_look_alikes_from_the_label_file(tmp_path):
    from storage.labels import LabelledImage

    (tmp_path / "images").mkdir()
    pixels = np.full((400, 300, 3), 128, np.uint8)
    pixels[300:310, 200:210] = 0  # the water drop
    cv2.imwrite(str(tmp_path / "images" / "000000_v0.png"), pixels)
    write_coco(tmp_path / "annotations.json", [LabelledImage("images/000000_v0.png", 300, 400, [], [],
                                                             negatives=[[200, 300, 210, 310]])], CLASSES)
    dataset = CropDataset(load_labels(tmp_path), Augment(crop=96, negative_crop_p=1.0, exposure_p=0.0,
                                                         blur_p=0.0, noise_p=0.0))
    for epoch in range(10):
        dataset.epoch = epoch
        crop, target = dataset[0]
        assert (crop == 0).all(dim=0).sum() == 100 and len(target["boxes"]) == 0  # the drop, whole, as background


def test_crops_keep_small_defects_whole():
    image = np.full((820, 700, 3), 128, np.uint8)
    boxes = np.array([[400, 600, 403, 603]], np.float32)  # a 3-pixel black spot
    image[600:603, 400:403] = 0
    aug = Augment(crop=256, defect_crop_p=1.0, exposure_p=1.0, blur_p=1.0, noise_p=0.0)
    for seed in range(20):
        out, kept, names = aug(image, boxes, ["black spot"], np.random.default_rng(seed))
        assert out.shape == (256, 256, 3) and names == ["black spot"]
        x1, y1, x2, y2 = kept[0]
        assert (x2 - x1, y2 - y1) == (3, 3)
        patch = out[int(y1):int(y2), int(x1):int(x2)].astype(int)
        assert patch.mean() < out.astype(int).mean() - 40  # still clearly darker than the glass
