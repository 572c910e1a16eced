"""Mobile-SAM image encoder (TinyViT-5M) at any input size (docs/rtvp-spec.md 1.2).

Module and parameter names are MobileSAM's (`mobile_sam/modeling/tiny_vit_sam.py`) so
that the `image_encoder.*` part of a user's `mobile_sam.pt` loads strictly. Two changes
from upstream, both shape-only:
- the feature grid is taken from the tensor (H/16 x W/16), not a hard-coded 64 x 64,
  and windows are padded, so any input that is a multiple of 32 works;
- the attention bias table is gathered in every forward instead of being cached as
  `ab` by `train(False)`: the cache goes stale when weights are loaded after eval()
  (the pitfall docs/rtvp-spec.md warns of), and the gather of a constant folds away on export.
The ImageNet classifier (`norm_head`, `head`) is never used, so it is not built; the
loader drops those keys.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.errors import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TinyViTSpec:
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    out_chans: int = 256
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3


# The official MobileSAM encoder, and reduced ones trained from scratch on a CPU.
TINYVIT_5M = TinyViTSpec((64, 128, 160, 320), (2, 2, 6, 2), (2, 4, 5, 10))
REDUCED = {
    "tiny": TinyViTSpec((16, 32, 40, 80), (1, 1, 1, 1), (1, 1, 1, 2), out_chans=64),
    "n": TinyViTSpec((32, 64, 80, 160), (1, 1, 2, 1), (1, 2, 2, 5), out_chans=128),
    "s": TinyViTSpec((32, 64, 80, 160), (1, 1, 2, 1), (1, 2, 2, 5), out_chans=128),
}
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Conv2d_BN(nn.Sequential):  # noqa: N801 - upstream name, kept for the key names
    def __init__(self, a: int, b: int, ks: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(a, b, ks, stride, pad, groups=groups, bias=False))
        bn = nn.BatchNorm2d(b)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.constant_(bn.bias, 0)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        n = embed_dim
        self.seq = nn.Sequential(Conv2d_BN(in_chans, n // 2, 3, 2, 1), nn.GELU(),
                                 Conv2d_BN(n // 2, n, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    def __init__(self, chans: int, expand_ratio: float):
        super().__init__()
        hidden = int(chans * expand_ratio)
        self.conv1 = Conv2d_BN(chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2d_BN(hidden, chans, ks=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.act3(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Token map (B, L, C) or (B, C, H, W) -> tokens at half resolution (stride 1 at the last merge)."""

    def __init__(self, dim: int, out_dim: int, stride: int):
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        if x.ndim == 3:
            x = x.view(x.shape[0], hw[0], hw[1], -1).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        hw = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), hw


class ConvLayer(nn.Module):
    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None):
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x, hw)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Window self-attention with a learned bias per relative offset (LeViT style)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.d = key_dim  # attn_ratio 1 in TinyViT blocks
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)
        points = list(itertools.product(range(resolution), range(resolution)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs",
                             torch.LongTensor(idxs).view(len(points), len(points)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int):
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2d_BN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        h, w = hw
        b, n, c = x.shape
        ws = self.window_size
        y = x.view(b, h, w, c)
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        if pad_b or pad_r:
            y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        y = y.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        y = self.attn(y)
        y = y.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        if pad_b or pad_r:
            y = y[:, :h, :w]
        x = x + y.reshape(b, n, c)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w)).view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 local_conv_size: int, downsample: PatchMerging | None):
        super().__init__()
        self.blocks = nn.ModuleList(TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size)
                                    for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        for blk in self.blocks:
            x = blk(x, hw)
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        return x, hw


class LayerNorm2d(nn.Module):
    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class TinyViT(nn.Module):
    """Images (B,3,H,W) RGB in [0,1] -> SAM features (B, out_chans, H/16, W/16)."""

    def __init__(self, spec: TinyViTSpec):
        super().__init__()
        self.spec = spec
        dims = spec.embed_dims
        self.patch_embed = PatchEmbed(3, dims[0])
        self.layers = nn.ModuleList()
        last = len(dims) - 1
        for i, dim in enumerate(dims):
            # Upstream hard-codes stride 1 when out_dim is 320; it is the last merge.
            down = PatchMerging(dim, dims[i + 1], 1 if i + 1 == last else 2) if i < last else None
            if i == 0:
                self.layers.append(ConvLayer(dim, spec.depths[0], spec.mbconv_expand_ratio, down))
            else:
                self.layers.append(BasicLayer(dim, spec.depths[i], spec.num_heads[i], spec.window_sizes[i],
                                              spec.mlp_ratio, spec.local_conv_size, down))
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], spec.out_chans, 1, bias=False), LayerNorm2d(spec.out_chans),
            nn.Conv2d(spec.out_chans, spec.out_chans, 3, padding=1, bias=False), LayerNorm2d(spec.out_chans))
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1) / 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1) / 255, persistent=False)
        self.apply(_init_weights)

    @property
    def out_chans(self) -> int:
        return self.spec.out_chans

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise EngineError(f"input {tuple(images.shape[-2:])}: height and width must be multiples of 32")
        x = self.patch_embed((images - self.pixel_mean) / self.pixel_std)
        hw = (x.shape[2], x.shape[3])
        for layer in self.layers:
            x, hw = layer(x, hw)
        b, _, c = x.shape
        x = x.view(b, hw[0], hw[1], c).permute(0, 3, 1, 2)
        return self.neck(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_sam_encoder(kind: str, scale: str) -> TinyViT:
    """`tinyvit5m` is MobileSAM's encoder; `reduced` a narrower one sized for the scale."""
    if kind == "tinyvit5m":
        return TinyViT(TINYVIT_5M)
    if kind == "reduced":
        return TinyViT(REDUCED[scale])
    raise EngineError(f"sam '{kind}': expected 'tinyvit5m' or 'reduced'")


IGNORED_PREFIXES = ("norm_head.", "head.")


def mobile_sam_encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder part of a MobileSAM state dict: `image_encoder.*` with the prefix stripped,
    the unused ImageNet classifier dropped. A bare encoder state dict is accepted as is."""
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}


def load_mobile_sam(encoder: TinyViT, path: str | Path) -> None:
    """Load a user's mobile_sam.pt strictly; a mismatch names the keys and the fix."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EngineError(f"{path}: Mobile-SAM checkpoint not found") from None
    except Exception as exc:  # torch raises several types for a damaged file
        raise EngineError(f"{path}: cannot read the Mobile-SAM checkpoint ({exc})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        encoder.load_state_dict(mobile_sam_encoder_state(state), strict=True)
    except RuntimeError as exc:
        raise EngineError(f"{path}: not a MobileSAM (TinyViT-5M) checkpoint for sam='tinyvit5m': "
                          f"{str(exc).splitlines()[0]} ...") from None
    log.info("loaded Mobile-SAM encoder weights from %s", path)
