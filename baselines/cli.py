"""Baselines sub-commands: `evalsuite train sr3|regression|gan ...`, `evalsuite sr3 tune-schedule|import ...`."""

from __future__ import annotations

import argparse

from baselines.train_config import TrainConfig
from evalsuite import plugins
from evalsuite.cli import run_kinds
from evalsuite.options import add_config_arguments
from evalsuite.options import csv_names as _csv


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add `train`, `sr3` and `run cascade` to the evalsuite command line."""
    _add_cascade(run_kinds(sub))
    p = sub.add_parser("train", help="train a baseline (sr3, regression, gan, ddpm, a recipe plugin) on image crops")
    p.add_argument("kind", choices=plugins.names(plugins.RECIPE_GROUP))  # the recipe plugins
    p.add_argument("--size", type=int, help="ddpm: generated side in px (the --crop crops are downscaled to it)")
    p.add_argument("--task", help="paper task (sets the scale and the crop size)")
    p.add_argument("--scale", dest="custom_scale", type=int, metavar="N", help="custom integer scale")
    p.add_argument("--preset", help="model preset (sr3/regression: tiny, small, janspiry-16-128, paper-...)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/model.state.pt")
    p.add_argument(
        "--set",
        dest="options",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe option, e.g. parameterization=eps, schedule=linear, loss=l2 (see docs/training.md)",
    )
    p.set_defaults(func=_cmd_train, config_keys=add_config_arguments(p, TrainConfig))

    s = sub.add_parser("sr3", help="SR3 tools")
    ssub = s.add_subparsers(dest="sr3_command", required=True)
    t = ssub.add_parser("tune-schedule", help="choose the inference schedule on held-out images (writes a new ckpt)")
    t.add_argument("ckpt", help="SR3 checkpoint (.safetensors)")
    t.add_argument("--data", required=True, help="folder of held-out HR images (not the training images)")
    t.add_argument("--out", help="new checkpoint (default: CKPT-tuned.safetensors)")
    t.add_argument(
        "--metric",
        default="auto",
        help="fid, lpips, psnr, ssim, consistency or auto (FID, else LPIPS, else PSNR)",
    )
    t.add_argument("--steps", type=_ints, default=(25, 50, 100), help="grid of step counts, e.g. 25,50,100")
    t.add_argument("--beta-start", type=_floats, default=(1e-6, 1e-4))
    t.add_argument("--beta-end", type=_floats, default=(0.1, 0.3, 0.5))
    t.add_argument("--limit", type=int, default=16, help="held-out images used")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_cmd_tune)

    i = ssub.add_parser("import", help="convert the public SR3 code's I<iter>_E<epoch>_gen.pth into an sr3 checkpoint")
    i.add_argument("gen", help="I<iter>_E<epoch>_gen.pth of Janspiry/Image-Super-Resolution-via-Iterative-Refinement")
    i.add_argument("--config", help="its config JSON (// comments accepted): norm_groups, image size, schedules, scale")
    i.add_argument("-o", "--out", required=True, help="the sr3 checkpoint to write (.safetensors)")
    i.add_argument(
        "--scale", type=int, help="upscaling factor (default: the config's r_resolution / l_resolution, else 8)"
    )
    i.add_argument(
        "--no-self-check", action="store_true", help="skip the eps check on photos (catches a wrong norm_groups)"
    )
    i.set_defaults(func=_cmd_import)


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `evalsuite train` flags: the given ones, the task's scale (and crop), in one call."""
    from evalsuite.tasks import resolve_task

    given = {k: getattr(args, k) for k in args.config_keys if hasattr(args, k)}
    size = getattr(args, "size", None)
    if (size is not None) != (getattr(args, "kind", None) == "ddpm"):
        raise ValueError("--size N is the generated side of `evalsuite train ddpm` (and it needs it)")
    if size is not None:
        # A base model: the loop's --crop crops, downscaled by crop // size, are its training images.
        crop = int(given.get("crop", TrainConfig.crop))
        if size < 1 or crop % size:
            raise ValueError(f"--crop {crop} must be a multiple of --size {size} (give --crop = your images' side)")
        return TrainConfig.from_dict({**given, "scale": crop // size})
    task = resolve_task(args.task, args.custom_scale)
    crop = {"crop": task.hr_size} if task.hr_size and "crop" not in given else {}
    return TrainConfig.from_dict({**given, **crop, "scale": task.scale})


def _cmd_train(args: argparse.Namespace) -> int:
    from baselines.train import load_recipe, train

    cfg = train_config(args)
    options = dict(args.options)
    if args.preset:
        options["preset"] = args.preset
    recipe = load_recipe(args.kind, cfg, options)
    train(recipe, cfg, resume=args.resume)
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from baselines.sr3.tune import tune_schedule

    tune_schedule(
        args.ckpt,
        args.data,
        out=args.out,
        metric=args.metric,
        steps_grid=args.steps,
        beta_start_grid=args.beta_start,
        beta_end_grid=args.beta_end,
        limit=args.limit,
        batch=args.batch_size,
        device=args.device,
        seed=args.seed,
    )
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from baselines.sr3.janspiry import import_checkpoint

    check = not args.no_self_check
    out = import_checkpoint(args.gen, args.out, config=args.config, scale=args.scale, self_check=check)
    import json

    from baselines.checkpoint import read_metadata

    meta = read_metadata(out)
    scale, why = json.loads(meta["config"])["scale"], json.loads(meta["extra"])["imported"]["unconfirmed"]["scale"]
    print(f"wrote {out}: a x{scale} model (scale {why}); evaluate it as sr3:{out}")
    return 0


def _add_cascade(rsub: argparse._SubParsersAction) -> None:
    """`run cascade`: a base generator then SR stages, every level kept and scored (baselines.cascade)."""
    c = rsub.add_parser("cascade", help="cascaded generation: a base generator then SR stages (docs/cascade.md)")
    c.add_argument("--base", required=True, help="ddpm:CKPT (evalsuite train ddpm) or folder:DIR of samples")
    c.add_argument("--stages", type=_csv, required=True, help="SR stages in order, e.g. sr3:A.safetensors,sr3:B...")
    c.add_argument("--out", required=True, help="run folder (rerunning it resumes and reuses valid images)")
    c.add_argument("--n", type=int, default=16, help="number of samples")
    c.add_argument("--steps", type=int, help="sampler steps of the base and of diffusion stages")
    c.add_argument("--sampler", help="ancestral or ddim")
    c.add_argument("--noise-aug", type=float, help="LR noise-augmentation level of stages trained with it (default 0)")
    c.add_argument("--labels", help="class-conditional base: one class name, or a CSV sample_id,label")
    c.add_argument("--fid-ref", help="reference folder (brought to each level's size) or .npz statistics")
    c.add_argument("--metrics", type=_csv, default=("fid", "kid", "is"), help="of fid,kid,is")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    c.add_argument("--no-report", action="store_true", help="do not write report.html")
    c.set_defaults(func=_cmd_cascade)


def _cmd_cascade(args: argparse.Namespace) -> int:
    from baselines.cascade import CascadeSpec, run_cascade

    spec = CascadeSpec(
        base=args.base, stages=tuple(args.stages), out=args.out, n=args.n, steps=args.steps, sampler=args.sampler,
        noise_aug=args.noise_aug, labels=args.labels, fid_ref=args.fid_ref, metrics=tuple(args.metrics), seed=args.seed,
        batch_size=args.batch_size, device=args.device, report=not args.no_report,
    )
    summary = run_cascade(spec)
    print(summary.drop(columns=["notes"]).to_string(index=False))
    print(f"run folder: {args.out}")
    return 0
