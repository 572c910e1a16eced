"""Language training: prompts sampled from the catalogue per step, the ensemble shipped, "defect" learnt."""

from __future__ import annotations

import json

import numpy as np
import pytest

from camera.defect_catalogue import family
from engines.rtvp.text import TextEncoder
from engines.training.prompts import PromptBank
from engines.training.train import train
from training_support import config, easy_dataset


@pytest.fixture(scope="module")
def encode():
    return TextEncoder().encode


def test_catalogue_prompts_are_sampled_per_step_and_shipped_as_their_average(encode) -> None:
    bank = PromptBank(["oil", "stone", "dark square"], encode, mode="catalogue")
    assert [len(r) for r in bank.rows] == [len(family("oil").prompts), len(family("stone").prompts), 1]
    names = encode(["oil", "stone", "dark square"])
    ensemble = bank.ensemble()
    np.testing.assert_allclose(np.linalg.norm(ensemble, axis=1), 1, atol=1e-5)
    assert np.allclose(ensemble[2], names[2], atol=1e-5)  # outside the catalogue: its name only
    assert not np.allclose(ensemble[0], names[0], atol=1e-2)  # oil: name, synonyms, description
    first, generic = bank.sample(3, 17)
    again, _ = bank.sample(3, 17)
    assert not generic and np.array_equal(first, again)  # a resumed run sees the same prompts
    seen = {tuple(np.round(bank.sample(3, step)[0][0], 4)) for step in range(40)}
    assert len(seen) > 3  # oil is prompted by several of its texts
    assert bank.varies and not PromptBank(["dark square"], encode).varies  # names only: one fixed text


def test_generic_share_prompts_only_defect(encode) -> None:
    bank = PromptBank(["oil", "stone"], encode, mode="names", generic_share=0.3)
    draws = [bank.sample(0, step) for step in range(200)]
    generic = [rows for rows, is_generic in draws if is_generic]
    assert 35 <= len(generic) <= 85
    assert all(rows.shape == (1, 384) for rows in generic)
    np.testing.assert_allclose(generic[0][0], encode(["defect"])[0], atol=1e-5)
    with pytest.raises(ValueError, match="generic_share"):
        PromptBank(["oil"], encode, generic_share=1.0)


def test_name_share_keeps_the_name_on_that_share_and_weights_the_ensemble_alike(encode) -> None:
    bank = PromptBank(["oil", "dark square"], encode, mode="catalogue", name_share=0.7)
    oil = bank.rows[0]
    draws = [bank.sample(1, step)[0][0] for step in range(400)]
    by_name = sum(np.allclose(row, oil[0], atol=1e-6) for row in draws)
    assert 240 <= by_name <= 320  # 70% of 400, give or take sampling noise
    others = {int(np.argmax(oil @ row)) for row in draws}
    assert others == set(range(len(oil)))  # synonyms and description still drawn
    weights = np.array([0.7] + [0.3 / (len(oil) - 1)] * (len(oil) - 1))
    np.testing.assert_allclose(bank.ensemble()[0], _unit(weights @ oil), atol=1e-5)
    uniform = PromptBank(["oil"], encode, mode="catalogue").ensemble()[0]
    assert oil[0] @ bank.ensemble()[0] > oil[0] @ uniform  # the shipped prompt leans to the name
    with pytest.raises(ValueError, match="name_share"):
        PromptBank(["oil"], encode, mode="catalogue", name_share=1.5)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def test_training_with_catalogue_prompts_ships_the_ensemble(tmp_path, encode) -> None:
    data = easy_dataset(tmp_path / "easy", containers=4)
    coco = json.loads((data / "annotations.json").read_text())
    as_family = {"dark square": "black spot", "bright ring": "bubble"}  # catalogue families, as they look
    for category in coco["categories"]:
        category["name"] = as_family[category["name"]]
    (data / "annotations.json").write_text(json.dumps(coco))
    result = train(config(data, tmp_path / "run", max_steps=3, prompts="catalogue", generic_share=0.5))
    shipped = result.package.embeddings()
    assert result.package.vocabulary == ("black spot", "bubble")
    # each family's texts (name, synonyms, description) encoded, averaged, normalised again
    expected = np.stack([_unit(_unit(encode(list(family(name).prompts))).mean(axis=0))
                         for name in result.package.vocabulary])
    np.testing.assert_allclose(shipped, expected, atol=1e-3)  # fp16 rounding at most
    bare = _unit(encode(list(result.package.vocabulary)))
    assert (np.sum(shipped * bare, axis=1) < 0.95).all()  # far from the names alone
    assert result.package.manifest["training"]["prompts"] == "catalogue"
    assert all(np.isfinite(h["loss"]) for h in result.history if "loss" in h)
