"""The Mobile-SAM encoder loads MobileSAM's official `image_encoder.*` weights strictly.

The key list below is written out from MobileSAM's public definition
(mobile_sam/build_sam.py build_sam_vit_t -> modeling/tiny_vit_sam.py TinyViT with
embed_dims [64,128,160,320], depths [2,2,6,2], num_heads [2,4,5,10],
window_sizes [7,7,14,7], mlp_ratio 4, mbconv_expand_ratio 4, num_classes 1000),
independently of engines/rtvp/sam_encoder.py.
"""

from __future__ import annotations

import pytest
import torch

from engines.errors import EngineError
from rtvp_support import unit_text

from engines.rtvp import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one torch thread

DIMS, DEPTHS, HEADS, WINDOWS = (64, 128, 160, 320), (2, 2, 6, 2), (2, 4, 5, 10), (7, 7, 14, 7)


def conv_bn(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> dict[str, tuple]:
    bn = {f"{prefix}.bn.{n}": (cout,) for n in ("weight", "bias", "running_mean", "running_var")}
    return {f"{prefix}.c.weight": (cout, cin // groups, k, k), **bn, f"{prefix}.bn.num_batches_tracked": ()}


def official_encoder_keys() -> dict[str, tuple]:
    """image_encoder.* key -> shape, as MobileSAM's TinyViT-5M (vit_t) state dict has them."""
    keys: dict[str, tuple] = {}
    keys |= conv_bn("patch_embed.seq.0", 3, 32, 3) | conv_bn("patch_embed.seq.2", 32, 64, 3)
    for b in range(DEPTHS[0]):  # stage 0: MBConv, expand 4
        p, hid = f"layers.0.blocks.{b}", 64 * 4
        keys |= conv_bn(f"{p}.conv1", 64, hid, 1) | conv_bn(f"{p}.conv2", hid, hid, 3, hid) | conv_bn(f"{p}.conv3", hid, 64, 1)
    for i in (1, 2, 3):
        dim, heads, ws = DIMS[i], HEADS[i], WINDOWS[i]
        offsets = ws * ws  # distinct |dy|,|dx| pairs in a ws x ws window
        for b in range(DEPTHS[i]):
            p = f"layers.{i}.blocks.{b}"
            keys |= {f"{p}.attn.attention_biases": (heads, offsets),
                     f"{p}.attn.norm.weight": (dim,), f"{p}.attn.norm.bias": (dim,),
                     f"{p}.attn.qkv.weight": (3 * dim, dim), f"{p}.attn.qkv.bias": (3 * dim,),
                     f"{p}.attn.proj.weight": (dim, dim), f"{p}.attn.proj.bias": (dim,),
                     f"{p}.mlp.norm.weight": (dim,), f"{p}.mlp.norm.bias": (dim,),
                     f"{p}.mlp.fc1.weight": (4 * dim, dim), f"{p}.mlp.fc1.bias": (4 * dim,),
                     f"{p}.mlp.fc2.weight": (dim, 4 * dim), f"{p}.mlp.fc2.bias": (dim,)}
            keys |= conv_bn(f"{p}.local_conv", dim, dim, 3, dim)
    for i in (0, 1, 2):  # PatchMerging after stages 0-2
        p, cin, cout = f"layers.{i}.downsample", DIMS[i], DIMS[i + 1]
        keys |= conv_bn(f"{p}.conv1", cin, cout, 1) | conv_bn(f"{p}.conv2", cout, cout, 3, cout) | conv_bn(f"{p}.conv3", cout, cout, 1)
    keys |= {"neck.0.weight": (256, 320, 1, 1), "neck.1.weight": (256,), "neck.1.bias": (256,),
             "neck.2.weight": (256, 256, 3, 3), "neck.3.weight": (256,), "neck.3.bias": (256,),
             "norm_head.weight": (320,), "norm_head.bias": (320,),
             "head.weight": (1000, 320), "head.bias": (1000,)}
    return keys


def test_key_list_matches_known_facts():
    keys = official_encoder_keys()
    assert keys["layers.1.blocks.0.attn.attention_biases"] == (4, 49)
    assert keys["layers.2.blocks.5.attn.attention_biases"] == (5, 196)
    assert keys["layers.3.blocks.1.attn.attention_biases"] == (10, 49)
    assert keys["layers.2.downsample.conv2.c.weight"] == (320, 1, 3, 3)
    params = sum(torch.Size(s).numel() for k, s in keys.items()
                 if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert abs(params - 6.07e6) < 0.01e6  # docs/rtvp-spec.md: 6.07 M with the stored classifier


def synthetic_mobile_sam(path, seed: int = 0) -> dict[str, torch.Tensor]:
    """A mobile_sam.pt-shaped file: random encoder tensors, plus SAM parts that must be ignored."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in official_encoder_keys().items():
        if k.endswith("num_batches_tracked"):
            state[f"image_encoder.{k}"] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[f"image_encoder.{k}"] = torch.rand(shape, generator=g) + 0.5
        else:
            state[f"image_encoder.{k}"] = torch.randn(shape, generator=g) * 0.05
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128)
    state["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    torch.save(state, path)
    return state


def test_official_state_dict_loads_strictly_and_freezes(tmp_path):
    ckpt = tmp_path / "mobile_sam.pt"
    state = synthetic_mobile_sam(ckpt)
    model = build_model(scale="tiny", sam="tinyvit5m", imgsz=128)
    ours = {k: tuple(v.shape) for k, v in model.sam.state_dict().items()}
    official = {k: v for k, v in official_encoder_keys().items() if not k.startswith(("norm_head", "head"))}
    assert ours == official  # same names, same shapes, nothing extra
    model.load_sam(ckpt)
    for k, v in model.sam.state_dict().items():
        assert torch.equal(v, state[f"image_encoder.{k}"]), k
    assert model.config.sam_frozen and model.config.sam_checkpoint == "mobile_sam.pt"
    assert not any(p.requires_grad for p in model.sam.parameters())
    model.train()
    assert not model.sam.training and model.expert.training  # BN statistics of SAM stay put
    before = model.sam.layers[0].blocks[0].conv1.bn.running_mean.clone()
    text = unit_text(3, 384)
    out = model(torch.rand(2, 3, 128, 160), text)
    assert torch.equal(before, model.sam.layers[0].blocks[0].conv1.bn.running_mean)
    assert out["logits"].shape[-1] == 3


def test_wrong_checkpoint_is_refused_with_the_file_named(tmp_path):
    ckpt = tmp_path / "mobile_sam.pt"
    state = synthetic_mobile_sam(ckpt)
    del state["image_encoder.neck.2.weight"]
    torch.save(state, ckpt)
    model = build_model(scale="tiny", sam="tinyvit5m", imgsz=128)
    with pytest.raises(EngineError, match="mobile_sam.pt"):
        model.load_sam(ckpt)
    reduced = build_model(scale="tiny", sam="reduced", imgsz=128)
    with pytest.raises(EngineError, match="tinyvit5m"):
        reduced.load_sam(ckpt)
    assert any(p.requires_grad for p in reduced.sam.parameters())  # a random encoder trains


@pytest.mark.parametrize("hw", [(640, 640), (352, 480), (96, 128)])
def test_encoder_runs_at_any_multiple_of_32(hw):
    model = build_model(scale="tiny", sam="tinyvit5m").eval()
    with torch.no_grad():
        s = model.sam(torch.rand(1, 3, *hw))
    assert s.shape == (1, 256, hw[0] // 16, hw[1] // 16)
    with pytest.raises(EngineError, match="multiples of 32"):
        model.sam(torch.rand(1, 3, 100, 128))
