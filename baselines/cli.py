"""Baselines sub-commands: `evalsuite train sr3|regression|gan ...`, `evalsuite sr3 tune-schedule|import ...`."""

from __future__ import annotations

import argparse


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
    """Add `train` and `sr3` to the evalsuite command line."""
    p = sub.add_parser("train", help="train a baseline (sr3, regression, gan) on random crops of an image folder")
    p.add_argument("kind", choices=["sr3", "regression", "gan"])
    p.add_argument("--data", required=True, help="folder of HR images of any size (recursive)")
    p.add_argument("--task", help="paper task (sets the scale and the crop size)")
    p.add_argument("--scale", type=int, help="custom integer scale")
    p.add_argument("--out", required=True, help="run folder: model.safetensors, model.state.pt, log.csv")
    p.add_argument("--preset", help="model preset (sr3/regression: tiny, small, janspiry-16-128, paper-...)")
    p.add_argument("--steps", type=int, default=1000, help="total optimizer steps")
    p.add_argument("--batch-size", type=int, default=16, help="global batch size (split over torchrun processes)")
    p.add_argument("--crop", type=int, help="HR crop size (default: the task's HR size, else 128)")
    p.add_argument("--lr", type=float, help="learning rate (default: sr3 1e-4, regression 1e-5, as in the paper)")
    p.add_argument("--warmup", type=int, default=10_000, help="linear warm-up steps (capped at steps/10)")
    p.add_argument("--ema", type=float, default=0.9999, help="EMA decay (with the (1+t)/(10+t) warm-up)")
    p.add_argument("--no-ema-warmup", action="store_true", help="use the EMA decay from the first step")
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument("--keep-every", type=int, default=0, help="also keep step-N snapshots every N steps")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blur-aug", action="store_true", help="CDM Gaussian-blur augmentation of the LR input")
    p.add_argument("--workers", type=int, default=2, help="data loader processes")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--compile", action="store_true", help="torch.compile the modules")
    p.add_argument("--resume", action="store_true", help="continue from OUT/model.state.pt")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--set",
        dest="options",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe option, e.g. parameterization=eps, schedule=linear, loss=l2 (see docs/training.md)",
    )
    p.set_defaults(func=_cmd_train)

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
    i.set_defaults(func=_cmd_import)


def _cmd_train(args: argparse.Namespace) -> int:
    from baselines.train import TrainConfig, load_recipe, train
    from evalsuite.tasks import resolve_task

    task = resolve_task(args.task, args.scale)
    crop = args.crop or task.hr_size or 128
    if crop % task.scale:
        raise ValueError(f"--crop {crop} is not a multiple of the scale {task.scale}")
    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        scale=task.scale,
        crop=crop,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        grad_clip=args.grad_clip,
        ema_decay=args.ema,
        ema_warmup=not args.no_ema_warmup,
        save_every=args.save_every,
        keep_every=args.keep_every,
        log_every=args.log_every,
        seed=args.seed,
        blur_aug=args.blur_aug,
        workers=args.workers,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        progress=not args.no_progress,
    )
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

    out = import_checkpoint(args.gen, args.out, config=args.config, scale=args.scale)
    print(f"wrote {out}: evaluate it as sr3:{out}")
    return 0
