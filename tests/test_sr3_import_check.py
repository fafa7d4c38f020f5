"""Importing the public SR3 code's checkpoints: what the weights cannot confirm is said and recorded, the scale's
source is printed and stored, and the ε self-check catches a valid but wrong norm_groups."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from baselines.checkpoint import Checkpoint, load_checkpoint
from baselines.demo import demo_path
from baselines.sr3 import import_check
from baselines.sr3.janspiry import JanspiryFormatError, read_commented_json
from evalsuite.cli import main

DATA = Path(__file__).parent / "data" / "janspiry-sr3"
GEN, CONFIG = DATA / "small_gen.pth", DATA / "small_config.json"


def _with_groups(ck: Checkpoint, groups: int) -> Checkpoint:
    config = {**ck.config, "unet": {**ck.config["unet"], "groups": groups}}
    return dataclasses.replace(ck, config=config)


@pytest.fixture(scope="module")
def trained() -> Checkpoint:
    """A trained SR3 (the shipped demo, norm_groups 8): its ε on photos is right only with its own norm_groups."""
    return load_checkpoint(demo_path("sr3-demo"), kind="sr3")


@pytest.fixture(scope="module")
def verdicts(trained) -> dict[int, import_check.SelfCheck]:
    return {g: import_check.self_check(_with_groups(trained, g)) for g in (8, 16, 2)}


def test_self_check_passes_the_right_norm_groups(verdicts) -> None:
    v = verdicts[8]
    assert v.passed and not v.wrong_groups and v.best == 8
    assert set(v.errors) == {1, 2, 4, 8, 16}  # every value that divides the channel counts (16, 32) loads
    assert v.errors[8] < import_check.MAX_ERROR
    # Every other valid value predicts ε far worse: the check has something to see.
    assert all(e > 2 * v.errors[8] for g, e in v.errors.items() if g != 8)


@pytest.mark.parametrize("groups", [16, 2])
def test_self_check_names_the_norm_groups_that_fits(verdicts, groups: int) -> None:
    v = verdicts[groups]
    assert not v.passed and v.wrong_groups and v.best == 8
    assert f"norm_groups {groups} predicts eps with error" in v.message
    assert "set model.unet.norm_groups to 8" in v.message
    # The errors do not depend on the configured value (the same weights, tried with each).
    assert v.errors == pytest.approx(verdicts[8].errors, rel=1e-5)


def test_import_says_and_records_what_the_weights_cannot_confirm(tmp_path, capsys) -> None:
    out = tmp_path / "small.safetensors"
    # The fixture's config has no `datasets` section: the scale is that code's default 8x, said in the wrote line.
    assert main(["sr3", "import", str(GEN), "--config", str(CONFIG), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "note: norm_groups = 8 from the config: not in the weights" in text
    assert "a x8 model (scale 8 from that code's default 16->128 (the config has no datasets section)" in text
    # Random weights: the self-check cannot pass and says so, but no other norm_groups fits better either.
    assert "warning: self-check failed: eps error" in text and "untrained checkpoint" in text
    imp = load_checkpoint(out, kind="sr3").extra["imported"]
    assert imp["unconfirmed"]["norm_groups"] == "8 from the config"
    assert imp["unconfirmed"]["scale"].startswith("8 from that code's default")
    assert imp["self_check"]["passed"] is False and imp["self_check"]["wrong_norm_groups"] is False
    assert set(imp["self_check"]["eps_mse"]) == {"1", "2", "4", "8", "16"}
    # --scale is stored with its source; a config with datasets gives it too.
    assert main(["sr3", "import", str(GEN), "--config", str(CONFIG), "--scale", "4", "-o", str(out),
                 "--no-self-check"]) == 0
    text = capsys.readouterr().out
    assert "a x4 model (scale 4 from given (--scale / option scale))" in text and "self-check skipped" in text
    cfg = read_commented_json(CONFIG)
    cfg["datasets"] = {"val": {"l_resolution": 8, "r_resolution": 32}}
    (tmp_path / "with_data.json").write_text(json.dumps(cfg))
    assert main(["sr3", "import", str(GEN), "--config", str(tmp_path / "with_data.json"), "-o", str(out),
                 "--no-self-check"]) == 0
    assert "a x4 model (scale 4 from the config's datasets" in capsys.readouterr().out
    assert load_checkpoint(out, kind="sr3").config["scale"] == 4


def test_import_refuses_when_another_norm_groups_fits_clearly(tmp_path, monkeypatch, trained, verdicts) -> None:
    # The verdict of a real trained model imported with a wrong norm_groups (16 instead of 8), fed to the import.
    monkeypatch.setattr(import_check, "self_check", lambda ck: verdicts[16])
    out = tmp_path / "wrong.safetensors"
    with pytest.raises(JanspiryFormatError, match="set model.unet.norm_groups to 8.*nothing written"):
        from baselines.sr3.janspiry import import_checkpoint

        import_checkpoint(GEN, out, CONFIG, scale=4, log=lambda *a: None)
    assert not out.exists()
