"""`evalsuite study create|invite|serve|analyze`: thin parsers over studies.service and studies.analysis."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import urlencode

from studies.design import MIN_CATCH_ACCURACY, describe_sample

_FLOAT = "{:.3f}".format  # numbers in the printed analysis tables


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _count(text: str) -> int | str:
    """A positive count or "all" (--images, --per-rater)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'all', got {text!r}")
    return value


def add_exclusion_arguments(parser: argparse.ArgumentParser) -> None:
    """The rater-exclusion options shared by `study analyze` and `report --study`."""
    parser.add_argument(
        "--min-catch-accuracy",
        type=float,
        default=None,
        help="replace the study's stored catch-accuracy minimum (set at `study create`, "
        f"default {MIN_CATCH_ACCURACY}); its other quality rules still apply",
    )
    parser.add_argument("--no-exclusion", action="store_true", help="keep every rater (no quality rule applied)")


def exclusion_rule(args: argparse.Namespace) -> Any:
    """What the exclusion options ask for: "stored" (the study's own policy), a dict replacing the catch
    minimum in it, or None (no exclusion); `studies.analysis.analyze` takes each."""
    from studies.analysis import STORED

    if args.no_exclusion and args.min_catch_accuracy is not None:
        raise ValueError("pass either --no-exclusion or --min-catch-accuracy, not both")
    if args.no_exclusion:
        return None
    if args.min_catch_accuracy is None:
        return STORED
    if not 0.0 <= args.min_catch_accuracy <= 1.0:
        raise ValueError(f"--min-catch-accuracy must be between 0 and 1, got {args.min_catch_accuracy}")
    return {"min_catch_accuracy": args.min_catch_accuracy}


def _add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    """`study create`: the rater-quality rules stored with the study (0 turns a rule off)."""
    from studies.quality import QualityPolicy

    d = QualityPolicy()
    g = parser.add_argument_group("rater quality, fixed before the first judgment (0 turns a rule off)")
    g.add_argument("--min-catch-accuracy", type=float, default=d.min_catch_accuracy,
                   help=f"exclude raters below this catch-trial accuracy (default {d.min_catch_accuracy})")
    g.add_argument("--min-rt", type=float, default=d.min_median_rt_s, metavar="SECONDS",
                   help="exclude raters whose median time from the pair's hiding to the answer is below this "
                   f"(default {d.min_median_rt_s})")
    g.add_argument("--max-side-streak", type=int, default=d.max_side_streak, metavar="N",
                   help="exclude raters who chose the same side more than N times in a row "
                   f"(default {d.max_side_streak})")
    g.add_argument("--max-answer-streak", type=int, default=d.max_answer_streak, metavar="N",
                   help="exclude raters who chose the image that is not the real one more than N times in a row "
                   f"(default {d.max_answer_streak})")
    parser.add_argument("--raters", type=int, metavar="N",
                        help="raters you plan to invite, for the printed power "
                        "(default: the smallest balanced count >= 20)")


def _quality(args: argparse.Namespace) -> dict[str, Any]:
    """The QualityPolicy settings `study create` stores (validated by QualityPolicy)."""
    from studies.quality import QualityPolicy

    return QualityPolicy(min_catch_accuracy=args.min_catch_accuracy, min_median_rt_s=args.min_rt,
                         max_side_streak=args.max_side_streak, max_answer_streak=args.max_answer_streak).to_dict()


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `study` command and its sub-commands to the evalsuite parser."""
    p = sub.add_parser("study", help="2AFC human studies: create, invite raters, serve the app, analyze")
    ssub = p.add_subparsers(dest="study_command", required=True)
    _add_plan_parser(ssub)  # study plan: sample sizes before a study (end of this file)

    c = ssub.add_parser("create", help="design a study on a run folder and store it with its stimuli")
    c.add_argument("--run", required=True, help="run folder written by `evalsuite run benchmark`")
    c.add_argument("--task", type=int, choices=[1, 2], default=1, help="1: LR between the pair; 2: pair only")
    c.add_argument("--methods", type=_csv, required=True, help="comma-separated method labels of the run")
    c.add_argument("--images", type=_count, metavar="N|all",
                   help="number of images, a seeded subset of the run (default: the paper's 100, or all the run "
                   "has when it has no more; all: every image)")
    c.add_argument("--per-rater", type=_count, metavar="N|all",
                   help="images per rater and method (default: the paper's 50, or all the study has when fewer)")
    c.add_argument("--db", required=True, help="study database: a file (SQLite) or a SQLAlchemy URL")
    c.add_argument("--name", help="study name (default <run>-task<N>)")
    c.add_argument("--exposure", type=float, default=3.0, help="seconds each pair is shown (default 3)")
    c.add_argument("--catch", type=int, default=4, help="catch trials per rater (default 4)")
    c.add_argument("--practice", type=int, default=3, help="practice trials per rater (default 3)")
    c.add_argument("--seed", type=int, default=0, help="seed of the image subset, sides and orders")
    c.add_argument("--design", choices=["real", "duels", "both"], default="real",
                   help="judged trials: method vs real image (real), method vs method (duels: every pair of "
                   "--methods, with the LR in task 1), or both (default real)")
    c.add_argument("--per-pair", type=int, help="duels: images per rater and method pair (default --per-rater)")
    c.add_argument("--attention", type=int, default=0,
                   help="attention checks per rater: the real image vs an obviously broken one (default 0)")
    c.add_argument("--base-url", default="http://localhost:8501", help="where the app will be served")
    _add_quality_arguments(c)
    crowd = c.add_argument_group("crowd platforms (Prolific, MTurk): one shared URL hands out rater slots")
    crowd.add_argument("--crowd", action="store_true",
                       help="make a shared study URL (implied by --completion-code/--completion-url)")
    crowd.add_argument("--completion-code", default="", help="code shown on the end page")
    crowd.add_argument("--completion-url", default="", help="the end page redirects here (e.g. Prolific's)")
    crowd.add_argument("--slot-timeout", type=float, default=30.0, metavar="MIN",
                       help="an unfinished slot inactive this many minutes goes to the next arrival (default 30)")
    consent = crowd.add_mutually_exclusive_group()
    consent.add_argument("--consent", help="consent text (Markdown) raters accept before the practice")
    consent.add_argument("--consent-file", help="file with the consent text (Markdown)")
    c.set_defaults(func=_cmd_create)

    i = ssub.add_parser("invite", help="add raters and print one invite link per rater")
    i.add_argument("-n", type=int, help="number of raters to invite (default: one per --labels, else 1)")
    i.add_argument("--db", required=True)
    i.add_argument("--study", type=int, help="study id (needed when the database holds several)")
    i.add_argument("--base-url", default="http://localhost:8501", help="where the app is served")
    i.add_argument("--admin", action="store_true", help="print a new admin link instead (the old one stops working)")
    i.add_argument("--labels", type=_csv, help="comma-separated short rater labels (default R01, R02, ...)")
    i.set_defaults(func=_cmd_invite)

    r = ssub.add_parser("revoke", help="withdraw a rater's link or a participant: refused from now on")
    r.add_argument("--db", required=True)
    r.add_argument("--study", type=int, help="study id (needed when the database holds several)")
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("--rater", help="the rater's label (as `invite` printed it or the admin page shows it)")
    who.add_argument("--participant", help="a crowd participant id (e.g. the PROLIFIC_PID)")
    r.set_defaults(func=_cmd_revoke)

    s = ssub.add_parser("serve", help="serve the rater app (Streamlit)")
    s.add_argument("--db", required=True)
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--address", default="127.0.0.1", help="interface to listen on (0.0.0.0 for a network)")
    s.set_defaults(func=_cmd_serve)

    e = ssub.add_parser("export", help="raw trials (one row per trial) and refused answers as CSV or Parquet")
    e.add_argument("--db", required=True)
    e.add_argument("--study", type=int, help="study id (needed when the database holds several)")
    e.add_argument("--out", required=True, help="output file: .csv or .parquet")
    e.add_argument("--refused", help="also write the refused answers to this .csv or .parquet file")
    e.set_defaults(func=_cmd_export)

    _add_analyze_parser(ssub)


def _add_analyze_parser(ssub: argparse._SubParsersAction) -> None:
    """`study analyze`: fool rates, ranking, metric agreement, reliability, power, exclusions per rule."""
    a = ssub.add_parser("analyze", help="fool rates, Bradley-Terry ranking, metric agreement, reliability, "
                        "exclusions per rule")
    a.add_argument("--db", required=True)
    a.add_argument("--run", help="benchmark run folder for metric agreement (default: the run the study came from)")
    a.add_argument("--out", help="folder for the CSV exports, plots and study.json")
    add_exclusion_arguments(a)
    a.add_argument("--resamples", type=int, default=2000,
                   help="kept for scripts: every interval is closed form now (two-way cluster-robust)")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=_cmd_analyze)


def _link(base_url: str, **params: str) -> str:
    return f"{base_url.rstrip('/')}/?{urlencode(params)}"


def _power_line(cfg: Any, n_raters: int) -> str:
    """The power the design has with n_raters (studies.extended.achieved_power), as `create` prints it."""
    from studies.extended import achieved_power

    study = {"methods": list(cfg.methods), "per_rater": cfg.per_rater, "n_images": cfg.n_images,
             "design": cfg.design}
    return f"power: {achieved_power(study, n_raters)} (--raters N for another count; `study plan` to size it)"


def _crowd_config(args: argparse.Namespace) -> Any:
    """The CrowdConfig the create options ask for (consent text read from --consent-file)."""
    from pathlib import Path

    from studies.design import CrowdConfig

    consent = args.consent or ""
    if args.consent_file:
        path = Path(args.consent_file)
        if not path.is_file():
            raise FileNotFoundError(f"--consent-file {path} does not exist; write the consent text there first")
        consent = path.read_text(encoding="utf-8")
    enabled = args.crowd or bool(args.completion_code or args.completion_url)
    return CrowdConfig(enabled, args.completion_code, args.completion_url, args.slot_timeout, consent.strip())


def _cmd_create(args: argparse.Namespace) -> int:
    from studies.quality import QualityPolicy
    from studies.service import create_study, crowd_link

    made = create_study(
        args.run,
        args.db,
        args.task,
        args.methods,
        args.images,
        args.per_rater,
        args.name,
        args.exposure,
        args.catch,
        args.practice,
        args.seed,
        quality=_quality(args),
        design=args.design,
        per_pair=args.per_pair,
        n_attention=args.attention,
        crowd=_crowd_config(args),
    )
    cfg = made.config
    print(
        f"study {made.study_id} ({cfg.name}): task {cfg.task}, {cfg.n_images} images, methods "
        f"{', '.join(cfg.methods)}, {cfg.per_rater} per rater and method, exposure {cfg.exposure_s:g} s"
    )
    defaults = (args.images is None, args.per_rater is None)
    print(describe_sample(made.available, cfg.n_images, cfg.per_rater, cfg.seed, defaults))
    if cfg.pairs:
        print(
            f"duels: {len(cfg.pairs)} method pairs x {cfg.pair_count} images per rater; each pair and side "
            "equally often per rater"
        )
    print(f"{cfg.trials_per_rater} main trials per rater ({cfg.n_catch} catch, {cfg.n_attention} attention)")
    print(f"every (method, image) gets equal judgments with a multiple of {made.balanced_raters} raters")
    sizes = ", ".join("{} x {} at {:g}%".format(*made.need.window_css(d), 100 * d) for d in (1.0, 1.5, 2.0))
    print(
        f"images are shown at one image pixel per device pixel: raters need a browser window (CSS px) of at least "
        f"{sizes} screen scaling (200%: e.g. a laptop's high-DPI screen); smaller windows are asked to grow "
        "before the study starts"
    )
    # Default: the smallest balanced number of raters from 20 up.
    planned = args.raters or made.balanced_raters * -(-20 // made.balanced_raters)
    print(_power_line(cfg, planned))
    print(f"rater exclusion (stored, fixed now): {QualityPolicy.from_dict(cfg.quality).describe()}")
    print(f"admin link (keep it private): {_link(args.base_url, admin=made.admin_token)}")
    if made.public_slug:
        print(f"crowd URL for Prolific (paste as the study URL): {crowd_link(args.base_url, made.public_slug)}")
        print(f"crowd URL for MTurk (external question): {crowd_link(args.base_url, made.public_slug, 'mturk')}")
        end = cfg.crowd.completion_url or cfg.crowd.completion_code or "none set"
        print(
            f"each participant gets one slot of the design (ask for multiples of {made.balanced_raters} places); "
            f"unfinished slots are handed out again after {cfg.crowd.slot_timeout_min:g} min without activity; "
            f"completion: {end}"
        )
    else:
        print(f"next: evalsuite study invite -n {made.balanced_raters} --db {args.db}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    from studies.service import revoke_rater

    for label in revoke_rater(args.db, args.study, args.rater, args.participant):
        print(f"revoked {label}: its answers are kept, new ones are refused; an unfinished slot is handed out again")
    return 0


def _cmd_invite(args: argparse.Namespace) -> int:
    from studies.service import admin_token, invite_raters

    if args.admin:
        print(_link(args.base_url, admin=admin_token(args.db, args.study)))
        return 0
    n = args.n if args.n is not None else len(args.labels or ()) or 1
    for label, token in invite_raters(args.db, n, args.study, args.labels):
        print(f"{label}\t{_link(args.base_url, token=token)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from studies.export import export_study
    from studies.service import study_id

    for path in export_study(args.db, study_id(args.db, args.study), args.out, args.refused):
        print(f"wrote {path.resolve()}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from studies.service import serve

    print(f"serving the rater app on http://{args.address}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    try:
        return serve(args.db, args.port, args.address)
    except KeyboardInterrupt:
        return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from studies.extended import analyze_study, read_per_image
    from studies.printout import print_analysis

    if args.run:
        read_per_image(args.run)  # a --run without per_image.csv is an error that says what to pass
    result = analyze_study(args.db, exclusion_rule(args), args.run, n_resamples=args.resamples, seed=args.seed)
    print_analysis(result)
    if args.out:
        print(f"\nwrote {result.save(args.out).resolve()}")
    return 0


# --------------------------------------------------------------------------- study plan
def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in _csv(text))


def _add_plan_parser(ssub: argparse._SubParsersAction) -> None:
    """`study plan`: raters x trials per rater x images for a target power or CI half-width."""
    q = ssub.add_parser("plan", help="sample size: raters x trials per rater x images for a target power")
    q.add_argument("--methods", type=int, required=True, help="number of methods in the study")
    goal = q.add_mutually_exclusive_group(required=True)
    goal.add_argument("--effect", type=float, help="fool-rate difference to detect between two methods")
    goal.add_argument("--half-width", type=float, help="target 95%% CI half-width of each fool rate instead")
    q.add_argument("--alpha", type=float, default=0.05, help="two-sided level (Bonferroni over pairs; 0.05)")
    q.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    q.add_argument("--baseline", type=float, default=0.4, help="expected fool rate of a method (default 0.4)")
    q.add_argument("--icc-rater", type=float, default=0.05, help="intra-rater correlation (default 0.05)")
    q.add_argument("--icc-image", type=float, default=0.10, help="intra-image correlation (default 0.10)")
    q.add_argument("--method-corr", type=float, default=0.0,
                   help="share of rater/image tendency common to all methods (0 = conservative)")
    q.add_argument("--trials-per-rater", type=_ints, help="main trials per rater over all methods, comma list "
                   "(default 10, 20, 40 per method)")
    q.add_argument("--images", type=_ints, default=(50, 100, 200), help="image counts to try (default 50,100,200)")
    q.add_argument("--simulate", type=int, default=200, metavar="N",
                   help="simulated studies per design for the simulated power (0 = closed form only)")
    q.add_argument("--pilot", help="a pilot study database: baseline, ICCs and method-corr are measured on it")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=_cmd_plan)


def _cmd_plan(args: argparse.Namespace) -> int:
    from studies.power import Assumptions, plan, plan_notes, plan_reading

    if args.pilot:
        from studies.power import estimate_from_judgments
        from studies.store import Store

        with Store(args.pilot, create=False) as store:
            est = estimate_from_judgments(store.judgments_frame())
        print(
            f"pilot ({est.n_judgments} judgments, {est.n_raters} raters, {est.n_images} images): fool rate "
            f"{est.baseline:.3f}, ICC rater {est.icc_rater:.3f}, ICC image {est.icc_image:.3f}, method-corr "
            f"{est.method_corr:.2f} (used below)\n"
        )
        args.baseline = min(max(est.baseline, 0.01), 0.99 - (args.effect or 0.0))
        args.icc_rater, args.icc_image, args.method_corr = est.icc_rater, est.icc_image, est.method_corr
    a = Assumptions(args.baseline, args.icc_rater, args.icc_image, args.method_corr, args.alpha)
    table = plan(args.methods, a, args.effect, args.power, args.half_width, args.trials_per_rater, args.images,
                 args.simulate if args.effect is not None else 0, args.seed)
    cols = ["n_raters", "trials_per_rater", "n_images", "n_judgments", "design_effect", "half_width"]
    cols += ["power", "sim_power", "sim_se"] if args.effect is not None else []
    if args.effect is not None and not args.simulate:
        cols = cols[:-2]
    import pandas as pd

    shown = table[cols].astype(object).map(lambda v: "-" if pd.isna(v) else _FLOAT(v) if isinstance(v, float) else v)
    print(shown.to_string(index=False))
    print()
    print(plan_reading(table))
    for note in plan_notes(args.methods, a, args.effect, args.power, args.half_width):
        print(f"note: {note}")
    return 0
