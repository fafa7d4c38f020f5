"""Typed options: a typo in any option key fails when the spec is loaded, with the valid keys and the
closest match; options keyed by method name reach that method only."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from baselines.options import GANMethodOptions as GANOptions
from baselines.options import SR3MethodOptions as SR3Options
from evalsuite import cli
from evalsuite.methods import method_options
from evalsuite.options import OptionError, build_options
from evalsuite.spec import BenchmarkSpec


@pytest.mark.parametrize(
    "opts, hint",
    [
        ({"step": 50}, "did you mean 'steps'"),  # the older flat form means every method
        ({"*": {"sampel": "ddim"}}, "did you mean 'sampler'"),
        ({"sr3:model.safetensors": {"tiles": 32}}, "did you mean 'tile'"),
        ({"realesrgan-x4plus": {"tile_overlapp": 4}}, "did you mean 'tile_overlap'"),
        ({"bicubic": {"tile": 4}}, "this takes no options"),
    ],
)
def test_a_typo_in_a_method_option_fails_at_spec_load(opts, hint):
    with pytest.raises(OptionError) as err:
        BenchmarkSpec(method_options=opts)
    assert hint in str(err.value) and "known:" in str(err.value)


def test_ill_typed_value_and_unknown_method_fail():
    with pytest.raises(OptionError, match="steps='fifty'"):
        BenchmarkSpec(method_options={"sr3:m.safetensors": {"steps": "fifty"}})
    with pytest.raises(ValueError, match="unknown method 'sr4:m.safetensors'"):
        BenchmarkSpec(method_options={"sr4:m.safetensors": {"steps": 2}})


def test_options_keyed_by_method_reach_that_method_only():
    spec = BenchmarkSpec(
        method_options={"*": {"steps": 20, "tile": 48}, "sr3": {"sampler": "ddim"}, "sr3:a.safetensors": {"steps": 5}}
    )
    a = method_options("sr3:a.safetensors", spec.method_options)
    b = method_options("sr3:b.safetensors", spec.method_options)
    gan = method_options("realesrgan-x4plus", spec.method_options)
    assert a == SR3Options(steps=5, sampler="ddim", tile=48)  # full name over prefix over `*`
    assert b == SR3Options(steps=20, sampler="ddim", tile=48)
    assert gan == GANOptions(tile=48)  # `steps` is no GAN option: not passed, no error
    assert method_options("bicubic", spec.method_options) == {}
    only_gan = BenchmarkSpec(method_options={"realesrgan-x4plus": {"tile": 64}})
    assert method_options("sr3:a.safetensors", only_gan.method_options).tile is None


def test_spec_round_trips_through_yaml(tmp_path):
    spec = BenchmarkSpec(method_options={"sr3:m.safetensors": {"steps": 5}}, post_run=("mod:fn",))
    (tmp_path / "s.yaml").write_text(spec.to_yaml())
    assert BenchmarkSpec.from_yaml(tmp_path / "s.yaml") == spec


def test_cli_reports_a_typo_in_a_config_file(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("methods: [bicubic]\nmethod_options:\n  '*': {step: 5}\n")
    assert cli.main(["run", "benchmark", "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


def test_build_options_checks_keys_and_types():
    @dataclass(frozen=True)
    class Opts:
        n: int = 1
        x: float | None = None

    assert build_options(Opts, {"x": 2}, "t") == Opts(x=2)
    with pytest.raises(OptionError, match="did you mean 'n'"):
        build_options(Opts, {"nn": 1}, "t")
    with pytest.raises(OptionError, match="expected"):
        build_options(Opts, {"n": True}, "t")


def test_every_spec_key_is_a_flag_made_from_the_spec_itself(tmp_path):
    # `run benchmark` flags come from BenchmarkSpec's fields: a key and its flag cannot drift apart.
    import dataclasses

    from evalsuite.cli import build_parser, spec_from_args
    from evalsuite.spec import BenchmarkSpec

    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    bench = run._subparsers._group_actions[0].choices["benchmark"]
    dests = {a.dest for a in bench._actions}
    flagged = {f.name for f in dataclasses.fields(BenchmarkSpec) if f.metadata}
    assert flagged <= dests
    # What has no flag of its own: the option dicts (their shortcut flags fill them), hooks and the suite key.
    assert {f.name for f in dataclasses.fields(BenchmarkSpec)} - flagged == {
        "method_options", "metric_options", "post_run", "suite"}
    args = parser.parse_args(["run", "benchmark", "--batch-size", "3", "--y-channel", "--no-report", "--bootstrap",
                              "50", "--methods", "bicubic,sr3:m@steps=2,4", "--steps", "7", "--lpips-net", "vgg",
                              "--scale", "2"])
    spec = spec_from_args(args)
    assert (spec.batch_size, spec.y_channel, spec.report, spec.bootstrap, spec.scale) == (3, True, False, 50, 2)
    assert spec.methods == ("bicubic", "sr3:m@steps=2,4")
    assert spec.method_options["*"] == {"steps": 7} and spec.metric_options == {"lpips_net": "vgg"}
    # A flag not given keeps the config file's value (the spec keeps the only copy of the defaults).
    cfg = tmp_path / "spec.yaml"
    cfg.write_text("batch_size: 5\nbootstrap: 99\n")
    spec = spec_from_args(parser.parse_args(["run", "benchmark", "--config", str(cfg), "--bootstrap", "10"]))
    assert (spec.batch_size, spec.bootstrap, spec.workers) == (5, 10, BenchmarkSpec().workers)
