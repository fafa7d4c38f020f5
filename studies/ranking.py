"""Bradley-Terry ranking of methods and the real image from 2AFC choices, with two-way cluster-robust CIs.

Pairs format (one row per answered main-block trial): `rater`, `image_id`, `option_a`, `option_b`,
`winner` (equal to option_a or option_b), optionally `task`. Options are method names or "real". A Task 1
trial (method vs the ground truth) is the pair (method, "real") and the method wins when the rater was
fooled; a method-vs-method trial is (method_1, method_2). `pairs_from_judgments` turns the store's
judgments frame (`Store.judgments_frame()`) into this format.

Model (Bradley and Terry 1952): P(i chosen over j) = 1 / (1 + exp(-(theta_i - theta_j))). theta is
fitted by maximum likelihood (choix's iterative Luce spectral ranking, which converges to the ML
estimate) and reported relative to the reference (the real image: theta_real = 0), so a score of
log(0.5/0.5) = 0 means "chosen as often as the real image" and -1.1 means "chosen over the real image
about 25% of the time" (expit(-1.1) = 0.25).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.sparse.csgraph import connected_components

from studies.design import CHECK_KINDS, with_pairs
from studies.intervals import DF_RULE, bt_intervals, bt_parts, crossed_groups, t_quantile

REAL = "real"
PAIR_COLUMNS = ["rater", "image_id", "option_a", "option_b", "winner"]
SCORE_COLUMNS = [
    "option",
    "rank",
    "score",
    "ci_low",
    "ci_high",
    "p_vs_reference",
    "n_comparisons",
    "n_wins",
    "note",
]


# --------------------------------------------------------------------------- data
def pairs_from_judgments(judgments: pd.DataFrame, excluded: Sequence[str] = (), real: str = REAL) -> pd.DataFrame:
    """Pairs format from a judgments frame: main-block trials of kept raters, (method, real) or (method, method_b).

    Rows that carry `option_a`, `option_b` and `winner` keep them (method-vs-method studies, the store's
    frames); the others get them from their kind, method(s) and `chose_real` (`studies.design.with_pairs`).
    Catch, attention and practice trials and the raters in `excluded` are dropped.
    """
    options = ["option_a", "option_b", "winner"]
    df = judgments
    # Only comparisons need options (catch and attention rows have none): the store's frames are complete.
    compared = df[~df["kind"].isin(CHECK_KINDS)] if "kind" in df else df
    if not set(options) <= set(df.columns) or compared[options].isna().to_numpy().any():
        # Some rows lack their options: derive them from the trial.
        missing = {"image_id", "method", "kind", "block", "chose_real"} - set(df.columns)
        missing |= set() if {"rater_id", "rater"} & set(df.columns) else {"rater_id"}
        if missing:
            raise ValueError(
                f"judgments frame lacks columns {sorted(missing)}; pass Store.judgments_frame() or a frame with "
                f"{PAIR_COLUMNS}"
            )
        df = with_pairs(df, real)
    df = df.rename(columns={"rater_id": "rater"}) if "rater" not in df else df
    if "block" in df:
        df = df[df["block"] == "main"]
    if "kind" in df:
        df = df[~df["kind"].isin(CHECK_KINDS)]  # check trials are not comparisons
    df = df[~df["rater"].isin(set(excluded))]
    return _check_pairs(df[[c for c in (*PAIR_COLUMNS, "task") if c in df]].reset_index(drop=True))


def _check_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """Validate the pairs format: required columns, two distinct options, winner one of them."""
    missing = set(PAIR_COLUMNS) - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs frame lacks columns {sorted(missing)}; expected {PAIR_COLUMNS}")
    same = pairs["option_a"] == pairs["option_b"]
    bad = ~((pairs["winner"] == pairs["option_a"]) | (pairs["winner"] == pairs["option_b"]))
    if same.any() or bad.any():
        row = pairs[same | bad].iloc[0].to_dict()
        raise ValueError(f"pairs frame has a trial whose options are equal or whose winner is neither: {row}")
    return pairs


# --------------------------------------------------------------------------- fit
def fit_bradley_terry(comp: np.ndarray, alpha: float = 0.0, start: np.ndarray | None = None) -> np.ndarray:
    """ML Bradley-Terry log-strengths from comp[i, j] = (weighted) wins of i over j (choix ILSR), mean 0."""
    import choix

    comp = np.asarray(comp, dtype=np.float64)
    theta = choix.ilsr_pairwise_dense(comp, alpha=alpha, initial_params=start, max_iter=500, tol=1e-9)
    return theta - theta.mean()


def strongly_connected(comp: np.ndarray) -> bool:
    """Whether every item can be reached from every other through 'beat' edges (the ML estimate is finite)."""
    n, _ = connected_components(np.asarray(comp) > 0, directed=True, connection="strong")
    return n == 1


def _fit(comp: np.ndarray, alpha: float, start: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """The ML fit when it exists (strongly connected wins), else the fit regularized by alpha; flag which."""
    if strongly_connected(comp):
        return fit_bradley_terry(comp, 0.0, start), False
    return fit_bradley_terry(comp, alpha, start), True


@dataclass
class Ranking:
    """A Bradley-Terry ranking: scores with CIs, the win matrix (fractions and counts) and notes."""

    scores: pd.DataFrame
    wins: pd.DataFrame  # wins[i][j]: trials in which row i was chosen over column j
    totals: pd.DataFrame  # totals[i][j]: trials comparing i and j
    reference: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def win_fraction(self) -> pd.DataFrame:
        """Share of the i-vs-j trials that row i won (NaN where never compared)."""
        return self.wins / self.totals.where(self.totals > 0)

    def win_table(self) -> pd.DataFrame:
        """The win matrix as text cells 'share (wins/n)', '-' on the diagonal and where never compared."""
        frac = self.win_fraction
        cells = {}
        for col in frac.columns:
            cells[col] = [
                "-" if row == col or self.totals.loc[row, col] == 0
                else f"{frac.loc[row, col]:.2f} ({int(self.wins.loc[row, col])}/{int(self.totals.loc[row, col])})"
                for row in frac.index
            ]
        return pd.DataFrame(cells, index=frac.index)

    def win_reading(self) -> str:
        """One plain-language sentence on the win matrix."""
        text = "Each cell is the share of trials in which the row was chosen over the column (wins/trials)"
        if self.reference and self.reference in self.totals.index:
            vs = self.win_fraction.loc[self.reference].drop(self.reference).dropna()
            if len(vs):
                text += (
                    f"; the real image was chosen over the methods in {vs.min():.0%} to {vs.max():.0%} of trials "
                    "(50% = raters cannot tell)"
                )
        return text + "."

    def reading(self) -> str:
        """One plain-language sentence on the ranking."""
        s = self.scores.dropna(subset=["score"])
        s = s[s["option"] != self.reference] if self.reference else s
        if s.empty:
            return "No method has comparisons to rank."
        best = s.sort_values("score", ascending=False).iloc[0]
        text = f"{best['option']} ranks first"
        if self.reference:
            share = 1.0 / (1.0 + np.exp(-best["score"]))
            text += (
                f"; the model says raters would choose it over the real image in {share:.0%} of trials "
                f"(50% = as often as the real image)"
            )
        overlap = s[(s["option"] != best["option"]) & (s["ci_high"] >= best["ci_low"])]
        if len(overlap):
            names = ", ".join(map(str, overlap["option"]))
            text += f", but its interval overlaps {names}, so that order is not settled"
        return text + "."


def _index_trials(pairs: pd.DataFrame, options: Sequence[str] | None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The option names (rows of the ranking) and each trial's (winner, loser) indices into them."""
    seen = sorted(set(pairs["option_a"]) | set(pairs["option_b"]))
    names = list(options) if options is not None else seen
    unknown = sorted(set(seen) - set(names))
    if unknown:
        raise ValueError(f"pairs mention options {unknown} not in options={names}")
    idx = {n: i for i, n in enumerate(names)}
    a = pairs["option_a"].map(idx).to_numpy()
    b = pairs["option_b"].map(idx).to_numpy()
    winner = pairs["winner"].map(idx).to_numpy()
    return names, winner, np.where(winner == a, b, a)


def _method_notes(reference: str | None, ref_ok: bool, level: float) -> list[str]:
    """The notes that say how scores and CIs were computed."""
    return [
        "score = Bradley-Terry log-strength, fitted by maximum likelihood (choix ILSR), "
        + (f"relative to {reference!r} (score 0); " if ref_ok else "mean-centred; ")
        + "P(i chosen over j) = 1/(1+exp(-(score_i - score_j)))",
        f"ci_low/high: {level:.0%} interval score +/- t * se, se from the sandwich (robust) covariance of the "
        "maximum-likelihood fit, two-way clustered by rater and image (Cameron-Gelbach-Miller), t with "
        f"{DF_RULE}; p_vs_reference: the matching t-test "
        "of score = 0; coverage 93-97% on simulated studies (benchmarks/study_coverage.py)",
    ]


def _check_linked(totals: np.ndarray, live: np.ndarray) -> None:
    """Raise when the compared options split into groups with no trial between them (scores not comparable)."""
    connected, _ = connected_components(totals[np.ix_(live, live)] > 0, directed=False)
    if connected > 1:
        raise ValueError(
            f"the comparisons split into {connected} groups with no trial between them; Bradley-Terry "
            "scores are only comparable within one group (add trials linking the groups)"
        )


def _score_table(
    names: list[str],
    scores: np.ndarray,
    se: np.ndarray,
    df: np.ndarray,
    comp: np.ndarray,
    ref: int | None,
    level: float,
) -> pd.DataFrame:
    """One row per option: rank, score, t interval score +/- q se, t-test against 0, counts and a note.

    `se`, `df` (k,): the score's sandwich standard error and degrees of freedom (NaN: never compared);
    `ref` is the reference's row (None when scores are mean-centred).
    """
    n_comp = (comp + comp.T).sum(axis=1)
    order = pd.Series(scores).rank(ascending=False, method="min")
    rows = []
    for i, name in enumerate(names):
        note = "never compared: no score (add trials with this option)" if n_comp[i] == 0 else ""
        is_ref = i == ref
        ok = np.isfinite(se[i]) and se[i] > 0 and np.isfinite(df[i]) and df[i] >= 1
        q = float(t_quantile(df[i], level)) if ok else np.nan
        p = float(2 * stats.t.sf(abs(scores[i]) / se[i], df[i])) if ok and not is_ref else np.nan
        rows.append(
            {
                "option": name,
                "rank": int(order[i]) if np.isfinite(scores[i]) else np.nan,
                "score": scores[i],
                "ci_low": 0.0 if is_ref else (scores[i] - q * se[i] if ok else np.nan),
                "ci_high": 0.0 if is_ref else (scores[i] + q * se[i] if ok else np.nan),
                "p_vs_reference": p,
                "n_comparisons": int(n_comp[i]),
                "n_wins": int(comp[i].sum()),
                "note": note or ("reference (score 0 by definition)" if is_ref else ""),
            }
        )
    table = pd.DataFrame(rows, columns=SCORE_COLUMNS).sort_values(["score", "option"], ascending=[False, True])
    return table.reset_index(drop=True)


def bradley_terry(
    pairs: pd.DataFrame,
    reference: str | None = REAL,
    options: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.01,
) -> Ranking:
    """Rank every option (methods and the real image) by Bradley-Terry, with two-way cluster-robust CIs.

    `options` fixes the rows (an option listed but never compared gets NaN and a note); `reference` is the
    option whose score is 0 (mean-centred when None or absent). `alpha` regularizes only fits whose choices
    are separable (some option never wins or never loses), where the ML estimate is infinite.
    `n_resamples` and `seed` are accepted for older callers; the intervals are closed form.
    """
    pairs = _check_pairs(pairs)
    names, winner, loser = _index_trials(pairs, options)
    k = len(names)
    # Win counts: comp[i, j] = trials where i was chosen over j; totals = comp + comp.T.
    comp = np.zeros((k, k))
    np.add.at(comp, (winner, loser), 1.0)
    totals = comp + comp.T
    # Options never compared have no score: fit the compared ones only; the reference needs comparisons too.
    n_comp = totals.sum(axis=1)
    live = np.flatnonzero(n_comp > 0)
    ref = {n: i for i, n in enumerate(names)}.get(reference) if reference is not None else None
    ref = ref if ref is not None and n_comp[ref] > 0 else None
    notes = _method_notes(reference, ref is not None, level)
    scores, se, df = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    if len(live) >= 2:
        _check_linked(totals, live)
        # ML fit on the compared options (regularized only when the choices are separable), re-centred.
        theta, regularized = _fit(comp[np.ix_(live, live)], alpha)
        if regularized:
            notes.append(
                f"the choices are separable (some option always or never wins), so the ML scores are "
                f"infinite; they are regularized (choix alpha={alpha}) and that end of the ranking is a bound"
            )
        ref_live = list(live).index(ref) if ref is not None else None
        scores[live] = theta - (theta[ref_live] if ref_live is not None else 0.0)
        # Sandwich covariance two-way clustered by rater and image, at the fit (the reference, or option 0, fixed).
        at = {int(j): n for n, j in enumerate(live)}
        w_live, l_live = np.array([at[int(w)] for w in winner]), np.array([at[int(x)] for x in loser])
        fixed = ref_live if ref_live is not None else 0
        groups = crossed_groups(pairs["rater"].to_numpy(), pairs["image_id"].to_numpy())
        parts = bt_parts((theta - theta[fixed])[None, :], w_live[None, :], l_live[None, :], groups, fixed)
        s_live, df_live, _ = bt_intervals(parts, groups, centre=ref_live is None, level=level)
        se[live], df[live] = s_live[0], df_live[0]
    wins_df = pd.DataFrame(comp, index=names, columns=names)
    totals_df = pd.DataFrame(totals, index=names, columns=names)
    table = _score_table(names, scores, se, df, comp, ref, level)
    return Ranking(table, wins_df, totals_df, reference if ref is not None else None, notes)


# --------------------------------------------------------------------------- plot
def ranking_plot(ranking: Ranking) -> str | None:
    """Scores with their CIs, best at the top, the reference as a dashed line; inline SVG (the shared figure style)."""
    import matplotlib.pyplot as plt

    from evalsuite.figures import RC, style, to_svg

    s = ranking.scores.dropna(subset=["score"]).reset_index(drop=True)
    if s.empty:
        return None
    import matplotlib

    with matplotlib.rc_context(RC):
        fig, ax = plt.subplots(figsize=(6.2, 0.8 + 0.42 * len(s)))
        for j, r in enumerate(s.itertuples()):
            y = len(s) - 1 - j
            color, marker = ("#000000", "D") if r.option == ranking.reference else style(j)
            if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
                ax.plot([r.ci_low, r.ci_high], [y, y], color=color, lw=2.2, solid_capstyle="butt")
            ax.plot([r.score], [y], marker=marker, color=color, ms=8, mec="black", mew=0.8)
            label = f"{round(r.score, 2) + 0.0:+.2f}"  # + 0.0: a centred score near 0 prints +0.00, not -0.00
            ax.annotate(label, (r.score, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=8)
        if ranking.reference:
            ax.axvline(0, color="black", ls="--", lw=1)
            xlabel = f"Bradley-Terry score (log-odds of being chosen over {ranking.reference}; 0 = as often)"
        else:
            xlabel = "Bradley-Terry score (log-odds, mean 0)"
        ax.set_yticks(range(len(s)), list(reversed(s["option"].astype(str).tolist())))
        ax.set_ylim(-0.7, len(s) - 0.1)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
        fig.tight_layout()
        return to_svg(fig, "bt")


def win_matrix_plot(ranking: Ranking) -> str | None:
    """The win matrix as a heatmap (row chose over column share, counts in the cells); inline SVG."""
    import matplotlib
    import matplotlib.pyplot as plt

    from evalsuite.figures import RC, to_svg

    order = [o for o in ranking.scores["option"] if ranking.totals.loc[o].sum() > 0]
    if len(order) < 2:
        return None
    frac = ranking.win_fraction.loc[order, order]
    with matplotlib.rc_context(RC | {"axes.grid": False}):
        size = 1.2 + 0.75 * len(order)
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        im = ax.imshow(frac.to_numpy(dtype=float), cmap="RdBu", vmin=0, vmax=1)
        for r, row in enumerate(order):
            for c, col in enumerate(order):
                n = int(ranking.totals.loc[row, col])
                if r != c and n:
                    share = float(frac.iloc[r, c])
                    ax.text(c, r, f"{share:.2f}\n{int(ranking.wins.loc[row, col])}/{n}", ha="center", va="center",
                            fontsize=7, color="white" if abs(share - 0.5) > 0.3 else "black")
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel("column: chosen less")
        ax.set_ylabel("row: chosen over the column")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of trials the row won")
        fig.tight_layout()
        return to_svg(fig, "winmatrix")


__all__ = [
    "PAIR_COLUMNS",
    "REAL",
    "Ranking",
    "bradley_terry",
    "fit_bradley_terry",
    "pairs_from_judgments",
    "ranking_plot",
    "strongly_connected",
    "win_matrix_plot",
]
