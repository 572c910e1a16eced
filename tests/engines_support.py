"""The model the engine tests run (a module, not a test file): a tiny RTVP package, exported
once per session, and views; and a stub package for the registry tests.

Untrained RTVP scores sit near its prior (1e-5) and are nearly equal everywhere, which
would leave nothing to compare (NMS would only break ties); the contrastive heads' scale
and bias, the box regressors and the BatchNorm statistics are set so that scores spread
(median 0.5, top 1 % above 0.99, hardly any saturated at 1.0, where NMS would only break
ties) and boxes differ in size, as after training.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engines.config import EngineConfig
from engines.package import ModelPackage
from engines.preprocess import letterbox_into

IMGSZ = 256
VOCABULARY = ("oil", "black spot", "bubble", "plastering thread", "quenched grain")
SUBSET = ("bubble", "oil")  # a second vocabulary, exported once as well
_TEMPLATE: list[Path] = []


def _build_template(root: Path) -> Path:
    from engines.rtvp import RTVPConfig, build_model
    from engines.runtimes import ensure_onnx

    torch.manual_seed(0)
    config = RTVPConfig(scale="tiny", imgsz=IMGSZ)
    model = build_model(config)
    text = F.normalize(torch.randn(len(VOCABULARY), config.text_dim), dim=-1)
    with torch.no_grad():
        for contrast in model.head.contrast:
            contrast.logit_scale.fill_(-1.0)
            contrast.bias.fill_(0.0)
        for box in model.head.box:
            box[-1].weight.normal_(0, 0.2)
        # BatchNorm statistics of real views, as training would leave them.
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None  # a plain average over what it sees
        batch = np.zeros((4, 3, IMGSZ, IMGSZ), np.float32)
        letterbox_into(views([(820, 700)] * 4, seed=99), batch)
        model.train()(torch.from_numpy(batch), text)
        model.eval()
    text = text.numpy()
    package = ModelPackage.create(root / "data" / "models" / "v1", version="v1", state_dict=model.state_dict(),
                                  arch=config.to_dict(), vocabulary=list(VOCABULARY), embeddings=text)
    engine_config = EngineConfig(imgsz=IMGSZ)
    for vocabulary in (VOCABULARY, SUBSET):  # into <package>/cache/, copied with the package
        ensure_onnx(package, engine_config, root / "data" / "cache", vocabulary=vocabulary)
    return package.path


def _template() -> Path:
    """Built on first use only, so tests without a model do not pay for it; removed at exit."""
    if not _TEMPLATE:
        root = Path(tempfile.mkdtemp(prefix="tiny-rtvp-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _TEMPLATE.append(_build_template(root))
    return _TEMPLATE[0]


def make_package(path: Path, version: str = "v1") -> ModelPackage:
    """A copy of the tiny RTVP package at `path`, with its exported graphs (no export needed)."""
    shutil.copytree(_template(), path)
    package = ModelPackage.load(path)
    if version != package.version:
        package.update(version=version)
    return package


def stub_package(folder: Path, version: str, parent: str | None = None) -> Path:
    """A package at `folder`/`version` with stand-in weights: the registry checks its manifest and
    hashes, never runs it."""
    path = folder / version
    ModelPackage.create(path, version=version, state_dict={"w": torch.ones(3)},
                        arch={"scale": "tiny"}, vocabulary=["oil", "bubble"],
                        embeddings=np.eye(2, 4, dtype=np.float32), parent=parent,
                        data="synthetic", metrics={"ap": 0.1})
    return path


def exported(package: ModelPackage, vocabulary=VOCABULARY) -> Path:
    """The package's pre-exported ONNX file for `vocabulary`."""
    from engines.runtimes import ensure_onnx

    return ensure_onnx(package, EngineConfig(imgsz=IMGSZ), package.path.parent.parent / "cache",
                       vocabulary=vocabulary)


def views(sizes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    """Glass-like grey views (height, width) with dark and bright blobs, deterministic."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        image = cv2.GaussianBlur(rng.integers(90, 200, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        for _ in range(6):
            center = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(3, max(4, w // 8))), int(rng.integers(3, max(4, h // 8))))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.ellipse(image, center, axes, float(rng.integers(0, 180)), 0, 360, color, -1)
        out.append(image)
    return out
