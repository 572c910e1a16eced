"""The training loop (DETR's engine.py, kept short): data, model, optimiser, one loop, a package.

AdamW with linear warm-up then cosine decay, an EMA of the weights (the EMA is what
ships), gradient clipping, AMP on CUDA, DistributedDataParallel under torchrun. A
checkpoint with everything that decides the next step (weights, optimiser, schedule,
EMA, RNG state, step, loss history) is written atomically at every epoch end and every
`save_every` steps, so `resume` after Ctrl-C or kill -9 continues with the same steps
and the same loss curve: each sample's crop is drawn from an RNG seeded by (seed,
epoch, image), and the batch order by (seed, epoch), so nothing depends on how far
an interrupted process had got.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from engines.errors import EngineError
from engines.package import ModelPackage
from engines.training.augment import Augment
from engines.training.datasets import (CropDataset, collate, load_labels, read_split, require_images,
                                       restrict, split_containers)
from engines.training.evaluate import evaluate
from engines.training.module_engine import ModuleEngine
from engines.training.progress import ProgressFile
from engines.training.prompts import PromptBank
from storage.files import atomic_write
from storage.labels import LabelSet

log = logging.getLogger(__name__)

SCALES = {"rtvp-tiny": "tiny", "rtvp-n": "n", "rtvp-s": "s"}
CHECKPOINT = "last.pt"


@dataclass
class TrainConfig:
    data: Path
    out: Path
    model: str = "rtvp-n"
    epochs: int = 10
    imgsz: int = 640  # inference input (whole view letterboxed); training uses crops
    crop: int = 320
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    lrf: float = 0.01  # final lr as a share of lr (cosine end)
    clip: float = 10.0
    ema_decay: float = 0.9999
    ema_tau: int = 2000  # EMA warm-up in steps (capped at a tenth of the run)
    val: Path | None = None
    val_share: float = 0.1  # containers held out when no --val set is given
    val_every: int = 1
    save_every: int = 0  # steps between mid-epoch checkpoints (0: epoch ends only)
    workers: int = 0
    threads: int | None = None  # torch intra-op threads (1 on a CPU shared with other work)
    seed: int = 0
    split: Path | None = None
    sam_ckpt: Path | None = None
    text_encoder: str = "minilm"
    prompts: str = "names"  # "catalogue": sample a name, synonym or description per class per step
    generic_share: float = 0.0  # share of steps prompting only "defect", every box labelled by it
    name_share: float | None = None  # share of class prompts by name (None: name, synonyms, description alike)
    negative_crops: float = Augment.negative_crop_p  # crops centred on a look-alike that must pass, where named
    text_ckpt: Path | None = None
    init: Path | None = None  # a model package to start from (fine-tuning)
    p2: bool = False  # a stride-4 head level (added to the init model where it has none)
    resume: bool = False
    version: str | None = None
    parent: str | None = None
    half_weights: bool = False  # store fp16 weights in the package (half the size)
    max_steps: int | None = None  # stop after this many steps in all (a time budget)
    max_minutes: float | None = None  # stop after the first step past this many minutes of training
    target_fr: float = 0.01
    bn_batches: int = 16  # batches of crops for BatchNorm statistics before validation and export
    progress: bool = True
    replay: tuple[str, ...] = ()  # earlier data sources mixed in (retraining), for the manifest
    recipes: dict | None = None  # source -> synthetic recipe of replayed data (retraining), for the manifest


@dataclass
class TrainResult:
    model: torch.nn.Module  # the EMA model (what ships)
    package: ModelPackage | None  # written by rank 0 only
    history: list[dict]
    stopped: bool = False  # ended by max_minutes before its last step


class EMA:
    """Exponential moving average of weights with the ultralytics warm-up (decay grows from 0)."""

    def __init__(self, model: torch.nn.Module, decay: float, tau: int) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        source = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)
            else:
                value.copy_(source[name])


def lr_factor(step: int, warmup: int, total: int, lrf: float) -> float:
    """Linear warm-up to 1, then cosine down to `lrf`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BN, biases and scalars (logit scale): only on weight matrices/kernels."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def epoch_batches(n: int, epoch: int, seed: int, batch: int, rank: int, world: int) -> list[list[int]]:
    """This rank's batches for one epoch; every rank gets the same number (DDP needs it)."""
    g = torch.Generator().manual_seed(seed * 100003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    steps = max(1, math.ceil(n / (batch * world)))
    order = (order * math.ceil(steps * batch * world / n))[:steps * batch * world]
    mine = order[rank::world]
    return [mine[i * batch:(i + 1) * batch] for i in range(steps)]


def _distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether we started the process group) under torchrun or alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), started


def any_rank(flag: bool, device: torch.device) -> bool:
    """`flag` on any rank, given to every rank (one all-reduce); just `flag` in a single process.

    Ranks whose clocks decide apart stop at different steps, and the ones still running
    hang in the next gradient sync or barrier. Every rank must call this at the same
    step; `device` is where NCCL wants the tensor (CPU under gloo).
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return flag
    votes = torch.tensor([int(flag)], device=device)
    dist.all_reduce(votes, op=dist.ReduceOp.MAX)
    return bool(votes.item())


def prepare_data(cfg: TrainConfig):
    """Labels, vocabulary and validation set, all checked before a model is built."""
    labels = load_labels(cfg.data)
    if cfg.split is not None:
        split = read_split(cfg.split)
        vocabulary = split.base
        labels = restrict(labels, vocabulary, exclude_images_with=split.novel)
    else:
        vocabulary = tuple(labels.classes)
        labels = restrict(labels, vocabulary)
    if not vocabulary:
        raise EngineError(f"{cfg.data}: the labels name no classes")
    require_images(labels, f"training set {cfg.data}")
    if cfg.val is not None:
        val = restrict(load_labels(cfg.val), vocabulary,
                       exclude_images_with=read_split(cfg.split).novel if cfg.split else ())
    else:
        labels, val = split_containers(labels, cfg.val_share, cfg.seed)
    require_images(labels, f"training set {cfg.data} (after holding out validation containers)")
    require_images(val, "validation set")
    return labels, val, vocabulary


def build(cfg: TrainConfig, text_dim: int) -> torch.nn.Module:
    from engines.rtvp import RTVPConfig, build_model

    if cfg.model not in SCALES:
        raise EngineError(f"unknown model {cfg.model!r}; choose one of {', '.join(SCALES)}")
    if cfg.crop % 32 or cfg.imgsz % 32:
        raise EngineError(f"crop {cfg.crop} and imgsz {cfg.imgsz} must be multiples of 32")
    if cfg.init is not None:
        package = ModelPackage.load(cfg.init)
        arch = RTVPConfig.from_dict(package.arch)
        model = build_model(arch, p2=arch.p2 or cfg.p2)
        state = {k: v.float() if v.is_floating_point() else v for k, v in package.state_dict().items()}
        new, unexpected = model.load_state_dict(state, strict=arch.p2 == model.config.p2)
        if unexpected:
            raise EngineError(f"{cfg.init}: weights {unexpected[:3]} do not fit its own arch")
        if new:
            log.info("added a stride-4 level to %s: %d new tensors start untrained", package.version, len(new))
        return model
    model = build_model(RTVPConfig(scale=SCALES[cfg.model], imgsz=cfg.imgsz, text_dim=text_dim, p2=cfg.p2,
                                   sam="tinyvit5m" if cfg.sam_ckpt else "reduced"))
    if cfg.sam_ckpt:
        model.load_sam(cfg.sam_ckpt)  # frozen from here on, as in the paper
    return model


def train(cfg: TrainConfig, data: tuple[LabelSet, LabelSet, tuple[str, ...]] | None = None,
          progress_file: ProgressFile | None = None) -> TrainResult:
    """Train, or fine-tune from `cfg.init`; `data` (train, val, vocabulary) replaces cfg.data's.

    `progress_file` gets the step, phase and ETA (the operator station shows it).
    """
    rank, world, started = _distributed()
    try:
        return _train(cfg, rank, world, data, progress_file if rank == 0 else None)
    finally:
        if started:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, rank: int, world: int, data, progress_file: ProgressFile | None) -> TrainResult:
    from tqdm import tqdm

    from engines.rtvp.text import TextEncoder

    if cfg.init is not None:  # fine-tuning: the start package is the parent and its scale the model
        start = ModelPackage.load(cfg.init)
        cfg = replace(cfg, parent=cfg.parent or start.version, model=f"rtvp-{start.arch['scale']}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    labels, val, vocabulary = data or prepare_data(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    if rank == 0 and labels.skipped:
        (cfg.out / "skipped.txt").write_text("\n".join(labels.skipped + val.skipped) + "\n")
        log.warning("%d label problems skipped; see %s", len(labels.skipped), cfg.out / "skipped.txt")
    bank = PromptBank(vocabulary, TextEncoder(kind=cfg.text_encoder, checkpoint=cfg.text_ckpt).encode, cfg.prompts,
                      cfg.generic_share, cfg.name_share)
    embeddings = bank.ensemble()  # validation and the package use the ensemble
    text = torch.from_numpy(embeddings).to(device)

    torch.manual_seed(cfg.seed)
    model = build(cfg, text.shape[1]).to(device)
    # Inference letterboxes whole views to imgsz: train across that scale and native pixels.
    fit = min(1.0, cfg.imgsz / max(max(im.width, im.height) for im in labels.images))
    dataset = CropDataset(labels, Augment(crop=cfg.crop, scale=(fit, 1.0), negative_crop_p=cfg.negative_crops), seed=cfg.seed)
    steps_per_epoch = len(epoch_batches(len(dataset), 0, cfg.seed, cfg.batch, rank, world))
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = min(max(1, round(cfg.warmup_epochs * steps_per_epoch)), max(1, total // 5))
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total, cfg.lrf))
    ema = EMA(model, cfg.ema_decay, min(cfg.ema_tau, max(1, total // 10)))
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    step, history, metrics = 0, [], {}

    ckpt_path = cfg.out / CHECKPOINT
    if cfg.resume:
        if not ckpt_path.is_file():
            raise EngineError(f"--resume: no checkpoint {ckpt_path}; start without --resume")
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        if state["vocabulary"] != list(vocabulary):
            raise EngineError(f"--resume: {ckpt_path} was trained on {state['vocabulary']}, the data "
                              f"now gives {list(vocabulary)}")
        model.load_state_dict(state["model"])
        ema.module.load_state_dict(state["ema"])
        ema.updates = state["ema_updates"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if amp and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"].cpu())
        step, history, metrics = state["step"], state["history"], state["metrics"]
        log.info("resumed from %s at step %d (epoch %d)", ckpt_path, step, step // steps_per_epoch + 1)

    def checkpoint() -> None:
        if rank != 0:
            return
        state = {"model": model.state_dict(), "ema": ema.module.state_dict(), "ema_updates": ema.updates,
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict(), "rng_cpu": torch.get_rng_state(), "step": step,
                 "history": history, "metrics": metrics, "vocabulary": list(vocabulary),
                 "config": json.loads(json.dumps(asdict(cfg), default=str))}
        if amp:
            state["rng_cuda"] = torch.cuda.get_rng_state()
        with atomic_write(ckpt_path, "wb", fsync=False) as fh:
            torch.save(state, fh)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    loader_rng = torch.Generator()  # so that building a loader does not draw from the global RNG

    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=rank != 0 or not cfg.progress)
    clock = Budget(cfg.max_minutes, step, total, device)
    epoch, stopped = step // steps_per_epoch, False
    while step < total and not stopped:
        dataset.epoch = epoch
        batches = epoch_batches(len(dataset), epoch, cfg.seed, cfg.batch, rank, world)[step - epoch * steps_per_epoch:]
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                             num_workers=cfg.workers, generator=loader_rng)
        model.train()
        t0 = time.perf_counter()
        for images, targets in loader:
            images = images.to(device, non_blocking=True)
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            prompts = text
            if bank.varies:
                rows, generic = bank.sample(cfg.seed, step)
                prompts = torch.from_numpy(rows).to(device)
                if generic:  # one class: "defect"
                    targets = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                out = net(images, prompts)
            loss, terms = model.loss(out, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            ema.update(model)
            step += 1
            if not math.isfinite(loss.item()):
                raise EngineError(f"loss became {loss.item()} at step {step}; lower --lr or check the labels")
            rate = len(images) * world / (time.perf_counter() - t0)  # data loading included
            t0 = time.perf_counter()
            history.append({"step": step, "epoch": epoch + 1, "loss": round(loss.item(), 6),
                            "lr": optimizer.param_groups[0]["lr"], **{k: round(float(v), 6) for k, v in terms.items()}})
            eta = clock.eta(step)
            bar.update(1)
            bar.set_postfix({"ep": epoch + 1, "loss": f"{loss.item():.3f}",
                             **{k: f"{float(v):.3f}" for k, v in terms.items()}, "img/s": f"{rate:.1f}",
                             "ETA": tqdm.format_interval(eta)})
            if progress_file:
                progress_file.update("train", step, total, eta)
            if cfg.save_every and step % cfg.save_every == 0 and step % steps_per_epoch:
                checkpoint()
            stopped = clock.spent() and step < total
            if step >= total or stopped:
                break
        epoch += 1
        if stopped:
            log.warning("time budget of %g minutes spent: stopped at step %d of %d", cfg.max_minutes, step, total)
        if rank == 0 and (epoch % cfg.val_every == 0 or step >= total or stopped):
            if progress_file:
                progress_file.update("evaluate", step, total, force=True, message="validating")
            metrics = finish_epoch(ema.module, dataset, text, vocabulary, val, cfg, epoch, step, history)
        checkpoint()
        if world > 1:
            dist.barrier()
    bar.close()

    package = None
    if rank == 0 and not any(h.get("step") == step and "val" in h for h in history):
        # resumed at the end with a smaller --max-steps: the weights were never validated
        metrics = finish_epoch(ema.module, dataset, text, vocabulary, val, cfg, epoch, step, history)
    if rank == 0:
        (cfg.out / "history.json").write_text(json.dumps(history, indent=1))
        package = write_package(cfg, ema.module, vocabulary, embeddings, metrics, labels,
                                stopped_at=step if stopped else None)
    return TrainResult(ema.module, package, history, stopped)


class Budget:
    """Time left: the ETA from this session's step rate, capped by `max_minutes`."""

    def __init__(self, max_minutes: float | None, step: int, total: int, device: torch.device) -> None:
        self.limit = max_minutes * 60 if max_minutes else None
        self.start, self.first, self.total, self.device = time.monotonic(), step, total, device

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def spent(self) -> bool:
        """Whether to stop now; under torchrun every rank gets the same answer (see `any_rank`)."""
        return self.limit is not None and any_rank(self.elapsed() >= self.limit, self.device)

    def eta(self, step: int) -> float:
        done = max(step - self.first, 1)
        left = self.elapsed() / done * (self.total - step)
        return max(0.0, min(left, self.limit - self.elapsed())) if self.limit is not None else left


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, dataset: CropDataset, text: torch.Tensor, epoch: int,
                   cfg: TrainConfig) -> None:
    """Precise BatchNorm: recompute running statistics on training crops before evaluating.

    With momentum 0.03 the running statistics trail weights that are still moving fast,
    and a short run's eval-mode outputs collapse (scores near 0 although train-mode
    outputs are right). A cumulative average over `bn_batches` batches of crops with
    the final weights fixes that. It draws from its own RNG streams, so a resumed run
    is unaffected.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or cfg.bn_batches <= 0:
        return
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
    picks = torch.randperm(len(dataset), generator=g).tolist()[:cfg.bn_batches * cfg.batch]
    saved_epoch, dataset.epoch = dataset.epoch, 1_000_000 + epoch
    momenta = [m.momentum for m in norms]
    was_training = model.training
    with torch.random.fork_rng(devices=[]):
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for start in range(0, len(picks), cfg.batch):
            images, _ = collate([dataset[i] for i in picks[start:start + cfg.batch]])
            model(images.to(device), text)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    dataset.epoch = saved_epoch


def finish_epoch(model, dataset, text, vocabulary, val, cfg: TrainConfig, epoch: int, step: int,
                 history: list[dict]) -> dict:
    """Precise BatchNorm, then validation; the figures go into the history."""
    recalibrate_bn(model, dataset, text, epoch, cfg)
    metrics = validate(model, text, vocabulary, val, cfg)
    log.info("epoch %d: val AP %.3f AP50 %.3f escape %s at false rejects <= %g", epoch, metrics["ap"],
             metrics["ap50"], metrics["at_target"]["escape_rate"], cfg.target_fr)
    history.append({"step": step, "epoch": epoch, "val": {k: metrics[k] for k in ("ap", "ap50", "ap75")}})
    return metrics


def validate(model: torch.nn.Module, text: torch.Tensor, vocabulary, val, cfg: TrainConfig) -> dict:
    engine = ModuleEngine(model, text, vocabulary, imgsz=cfg.imgsz)
    metrics, _ = evaluate(engine.infer, val, tuple(vocabulary), target_fr=cfg.target_fr)
    return metrics


def write_package(cfg: TrainConfig, model: torch.nn.Module, vocabulary, embeddings, metrics: dict,
                  labels, stopped_at: int | None = None) -> ModelPackage:
    """The EMA weights and everything needed to trust, reuse and retrain them.

    `data.recipe` (and `data.recipes` for replayed sources) records how synthetic
    training data was rendered, so a retrain can render it again where it is gone.
    """
    from camera.synth_dataset import read_recipe
    from engines.registry import new_version

    version = cfg.version or new_version(cfg.model)
    state = {k: (v.half() if cfg.half_weights and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    sam = f"tinyvit5m, frozen ({Path(cfg.sam_ckpt).name})" if cfg.sam_ckpt else "reduced TinyViT, trained with the model"
    recipe = read_recipe(cfg.data) if Path(cfg.data).is_dir() else None
    package = ModelPackage.create(
        cfg.out / version, version=version, state_dict=state, arch=model.config.to_dict(),
        vocabulary=list(vocabulary), embeddings=embeddings, parent=cfg.parent,
        data={"train": str(cfg.data), "images": len(labels.images),
              "val": str(cfg.val) if cfg.val else f"{cfg.val_share:.0%} of the training containers",
              "split": str(cfg.split) if cfg.split else None, "replay": list(cfg.replay),
              "recipe": recipe.to_dict() if recipe else None, "recipes": cfg.recipes or {}},
        text_encoder={"kind": cfg.text_encoder, "checkpoint": str(cfg.text_ckpt) if cfg.text_ckpt else None},
        sam=sam, metrics={"val": metrics},
        training={**{k: v for k, v in json.loads(json.dumps(asdict(cfg), default=str)).items()
                     if k not in ("progress", "resume", "replay", "recipes", "threads", "workers")},
                  "stopped_at_step": stopped_at})
    log.info("model package written: %s", package.path)
    return package
