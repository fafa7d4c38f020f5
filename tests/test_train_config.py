"""TrainConfig and recipe options reject typos with the closest valid key; the CLI fills TrainConfig in one call."""

from __future__ import annotations

import pytest

from baselines.train_config import TrainConfig
from evalsuite.cli import build_parser, main
from evalsuite.options import check_keys


def _parse(*flags: str):
    return build_parser().parse_args(["train", "sr3", "--data", "d", "--out", "o", *flags])


def test_a_trainconfig_typo_names_the_closest_key_and_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown TrainConfig option 'stpes' \(did you mean 'steps'\?\); known") as e:
        TrainConfig.from_dict({"data": "d", "out": "o", "scale": 2, "stpes": 50})
    assert "accum, batch_size, blur_aug, compile, crop" in str(e.value)
    # Several unknown keys: each is named, a key like nothing valid gets no guess.
    with pytest.raises(ValueError, match=r"options 'colour', 'ema_decy' \(did you mean 'ema_decay'\?\); known") as e:
        check_keys({"ema_decy": 1, "colour": 2, "seed": 3}, list(TrainConfig.__dataclass_fields__), "TrainConfig")
    assert "'colour' (" not in str(e.value)


def test_a_recipe_option_typo_on_the_command_line_names_the_closest_key(capsys):
    rc = main(["train", "sr3", "--data", "d", "--out", "o", "--scale", "2", "--set", "paramterization=eps"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown sr3 option 'paramterization' (did you mean 'parameterization'?)" in err
    assert "known: T, backproject, beta_end, beta_start" in err


def test_the_cli_fills_trainconfig_from_given_flags_only():
    from baselines.cli import train_config

    # No flag given: every value is TrainConfig's own default (argparse holds no second copy of them).
    assert train_config(_parse("--scale", "2")) == TrainConfig(data="d", out="o", scale=2)
    cfg = train_config(_parse("--scale", "4", "--ema", "0.99", "--no-ema-warmup", "--no-progress", "--accum", "2",
                              "--batch-size", "8", "--lr", "3e-4", "--precision", "fp32", "--blur-aug"))
    assert cfg == TrainConfig(data="d", out="o", scale=4, ema_decay=0.99, ema_warmup=False, progress=False, accum=2,
                              batch_size=8, lr=3e-4, precision="fp32", blur_aug=True)
    # A paper task sets the scale and, unless --crop is given, the crop.
    task_cfg = train_config(_parse("--task", "faces-16-128"))
    assert (task_cfg.scale, task_cfg.crop) == (8, 128)
    assert train_config(_parse("--task", "faces-16-128", "--crop", "64")).crop == 64
    with pytest.raises(ValueError, match="--batch-size 6 must be a positive multiple of --accum 4"):
        train_config(_parse("--scale", "2", "--batch-size", "6", "--accum", "4"))
    with pytest.raises(ValueError, match="--crop 18 is not a multiple of the scale 4"):
        train_config(_parse("--scale", "4", "--crop", "18"))


@pytest.mark.parametrize(
    ("argv", "hint", "listed"),
    [
        (["train", "sr3", "--data", "d", "--out", "o", "--stpes", "5"], "'--stpes' (did you mean '--steps'?)",
         "--accum, --batch-size"),
        (["run", "benchmark", "--metircs", "psnr"], "'--metircs' (did you mean '--metrics'?)", "--methods, --metrics"),
    ],
)
def test_a_command_line_flag_typo_names_the_closest_flag(capsys, argv, hint, listed):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and hint in err and "; known: --" in err and listed in err
