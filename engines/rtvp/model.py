"""RTVP: the whole detector, its config (the manifest's "arch"), and the deploy graph.

    images (B,3,H,W) RGB [0,1] --> expert CNN ----------------> P3 P4 P5 --+
                               \-> Mobile-SAM -> adapter -> F^R -> scorer, selection, fusion
                                                                       --> P'3 P'4 P'5 (P2)
    text (K,D) --> guides -----------------------------> text-guided PAN --> N3 N4 N5 (N2)
               \-> class weights ------------------------------------------> head -> boxes, scores

With arch `p2` the expert's stride-4 stem map P2 goes straight to the PAN (no visual
prompt at that scale) and the head gets a fourth level, N2, for thin and small defects.

`RTVP` trains (forward returns raw outputs for `loss`) and evaluates (forward returns
boxes and scores); `RTVP.deploy(text)` returns the image-only graph with the text
folded in as constants and the training-only parts (masking, aux head, losses) gone.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from engines.errors import EngineError
from engines.rtvp.adapter import DomainAdapter, build_adapter
from engines.rtvp.expert import ExpertBackbone, build_expert, level_channels
from engines.rtvp.head import WorldHead, build_head, level_strides
from engines.rtvp.loss import LossWeights, RTVPLoss
from engines.rtvp.neck import TextPAN, build_neck
from engines.rtvp.sam_encoder import TinyViT, build_sam_encoder, load_mobile_sam
from engines.rtvp.visual_prompt import AuxHead, VisualPrompt, build_visual_prompt

log = logging.getLogger(__name__)

DECODER_WIDTH = {"tiny": 16, "n": 64, "s": 128}


@dataclass
class RTVPConfig:
    """Everything `build_model` needs; stored as the model package's manifest "arch"."""

    scale: Literal["tiny", "n", "s"] = "n"
    imgsz: int = 640                       # the size it runs at; any multiple of 32 works
    text_dim: int = 384                    # 384 MiniLM, 512 CLIP
    text_encoder: str = "minilm"           # which encoder made the embeddings (record)
    sam: Literal["reduced", "tinyvit5m"] = "reduced"
    sam_frozen: bool = False               # True once mobile_sam.pt weights were loaded
    sam_checkpoint: str | None = None      # file name of those weights (record only)
    expert_adapter: bool = True            # ablation: off = sampled SAM features, no L_rec
    sparse_select: bool = True             # ablation: off = S == 1, no aux head
    text_attn: bool = True                 # ablation: off = plain C2f neck
    patch_size: int = 32                   # selection patch in input pixels: 32, 64, 128
    topk: int = 4                          # points kept per patch
    mask_ratio: float = 0.5                # share of 32-px units masked in training
    decoder_width: int | None = None       # reconstruction decoder width (None: by scale)
    reg_max: int = 16
    p2: bool = False                       # a fourth head level at stride 4, for thin defects
    loss: dict[str, float] = field(default_factory=lambda: dataclasses.asdict(LossWeights()))

    def __post_init__(self) -> None:
        if self.scale not in DECODER_WIDTH:
            raise EngineError(f"arch scale '{self.scale}': expected one of {sorted(DECODER_WIDTH)}")
        if self.sam not in ("reduced", "tinyvit5m"):
            raise EngineError(f"arch sam '{self.sam}': expected 'reduced' or 'tinyvit5m'")
        if self.imgsz % 32:
            raise EngineError(f"arch imgsz {self.imgsz}: must be a multiple of 32")
        if self.patch_size not in (32, 64, 128):
            raise EngineError(f"arch patch_size {self.patch_size}: expected 32, 64 or 128")
        if self.decoder_width is None:
            self.decoder_width = DECODER_WIDTH[self.scale]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RTVPConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise EngineError(f"model arch has unknown fields {sorted(unknown)}; "
                              "the package was made by a newer version")
        return cls(**d)


class RTVPGraph(nn.Module):
    """The inference path shared by the training model and the deploy graph."""

    config: RTVPConfig
    sam: TinyViT
    expert: ExpertBackbone
    adapter: DomainAdapter
    prompt: VisualPrompt
    neck: TextPAN
    head: WorldHead
    sam_frozen: bool

    def _run(self, images: torch.Tensor, guides: list, weights: list[torch.Tensor]) -> dict:
        hw = (images.shape[-2], images.shape[-1])
        p2, *expert = self.expert(images)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.sam_frozen):
            sam = self.sam(images)
        recon = self.adapter(sam, hw)
        vp = self.prompt(recon, expert)
        levels = vp["fused"] + ([p2] if self.config.p2 else [])  # P2 skips the visual prompt
        raw = self.head(self.neck(levels, guides), weights)
        return {**raw, "expert": expert, "recon": recon, **vp}

    def train(self, mode: bool = True) -> "RTVPGraph":
        """Keep a frozen Mobile-SAM in eval mode: its BN statistics must not move."""
        super().train(mode)
        if self.sam_frozen:
            self.sam.eval()
        return self


class RTVP(RTVPGraph):
    def __init__(self, config: RTVPConfig):
        super().__init__()
        self.config = config
        ch = level_channels(config.scale)
        self.sam = build_sam_encoder(config.sam, config.scale)
        self.expert = build_expert(config.scale)
        self.adapter = build_adapter(self.sam.out_chans, ch, config.decoder_width, config.mask_ratio,
                                     config.expert_adapter)
        self.prompt = build_visual_prompt(ch, config.patch_size, config.topk, config.sparse_select)
        self.aux = AuxHead(ch, config.reg_max) if config.sparse_select else None
        p2 = (self.expert.p2_channels,) if config.p2 else ()
        self.neck = build_neck(ch, config.text_dim, config.text_attn, *p2)
        self.head = build_head(ch + p2, config.text_dim, config.reg_max, level_strides(config.p2))
        self.loss_fn = RTVPLoss(LossWeights(**config.loss), config.reg_max)
        self.sam_frozen = False
        if config.sam_frozen:
            self.freeze_sam()

    def freeze_sam(self) -> None:
        """No gradient and eval mode for the SAM encoder (done by load_sam; the manifest records it)."""
        self.sam_frozen = True
        self.config.sam_frozen = True
        self.sam.requires_grad_(False)
        self.sam.eval()

    def load_sam(self, path: str | Path) -> None:
        """Load a user's mobile_sam.pt into the encoder and freeze it (the paper's setting)."""
        if self.config.sam != "tinyvit5m":
            raise EngineError(f"{path}: Mobile-SAM weights need sam='tinyvit5m', this model is "
                              f"sam='{self.config.sam}'")
        load_mobile_sam(self.sam, path)
        self.freeze_sam()
        self.config.sam_checkpoint = Path(path).name

    def _text(self, text: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(text) if not torch.is_tensor(text) else text, dtype=torch.float32)
        if t.ndim != 2 or t.shape[1] != self.config.text_dim:
            raise EngineError(f"text embeddings of shape {tuple(t.shape)}: expected (K, {self.config.text_dim})")
        return t.to(next(self.parameters()).device)

    def forward(self, images: torch.Tensor, text: torch.Tensor | np.ndarray):
        """train(): dict of raw outputs for `loss`; eval(): (boxes (B,A,4) xyxy px, scores (B,A,K))."""
        t = self._text(text)
        out = self._run(images, self.neck.guides(t), self.head.class_weights(t))
        if not self.training:
            return self.head.decode(out)
        if self.aux is not None:
            out["aux"] = self.aux(out["refined"])
        if not self.config.expert_adapter:
            out["recon"] = None
        return out

    @torch.no_grad()
    def recalibrate_bn(self, batches, text: torch.Tensor | np.ndarray) -> None:
        """Recompute BN running statistics as exact averages over `batches` (image tensors).

        Running averages (momentum 0.03) lag far behind fast-moving weights in short runs, and
        eval() then sees stale statistics ("precise BN"). A frozen SAM keeps its statistics.
        """
        bns = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
               and not (self.sam_frozen and any(m is s for s in self.sam.modules()))]
        saved = [(m.momentum, m.training) for m in bns]
        was_training = self.training
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.train()
        for images in batches:
            self(images, text)
        for m, (momentum, _) in zip(bns, saved):
            m.momentum = momentum
        self.train(was_training)

    def loss(self, out: dict, targets: list[dict]) -> tuple[torch.Tensor, dict[str, float]]:
        """targets: per image {"boxes": (n,4) xyxy input px, "labels": (n,) long} -> (total, terms)."""
        return self.loss_fn(out, targets)

    @torch.no_grad()
    def deploy(self, text: torch.Tensor | np.ndarray) -> "DeployedRTVP":
        return DeployedRTVP(self, self._text(text))


class DeployedRTVP(RTVPGraph):
    """Images -> (boxes, scores) for one vocabulary; text guides and class weights are buffers."""

    def __init__(self, model: RTVP, text: torch.Tensor):
        super().__init__()
        self.config = copy.deepcopy(model.config)
        self.sam_frozen = True
        for name in ("sam", "expert", "adapter", "prompt", "neck", "head"):
            setattr(self, name, copy.deepcopy(getattr(model, name)))
        self.requires_grad_(False)
        self.num_guides = 0
        for i, g in enumerate(self.neck.guides(text)):
            if g is not None:
                self.register_buffer(f"guide{i}", g.detach().clone())
                self.num_guides += 1
        for i, w in enumerate(self.head.class_weights(text)):
            self.register_buffer(f"class_weight{i}", w.detach().clone())
        self.vocabulary_size = text.shape[0]
        self.eval()

    def train(self, mode: bool = True) -> "DeployedRTVP":
        return super().train(False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        guides = [getattr(self, f"guide{i}") for i in range(self.num_guides)] or [None] * len(self.neck.blocks())
        weights = [getattr(self, f"class_weight{i}") for i in range(len(self.head.contrast))]
        return self.head.decode(self._run(images, guides, weights))


def build_model(config: RTVPConfig | dict | None = None, **overrides: Any) -> RTVP:
    """build_model(RTVPConfig(scale="n")), build_model(manifest["arch"]) or build_model(scale="tiny")."""
    if config is None:
        config = RTVPConfig(**overrides)
    elif isinstance(config, dict):
        config = RTVPConfig.from_dict({**config, **overrides})
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    else:
        config = copy.deepcopy(config)
    return RTVP(config)
