"""One ranking of methods from a judge's pairwise votes: Bradley–Terry strengths with bootstrap intervals.

The model (Bradley & Terry 1952): each method i has a strength s_i and wins against j with probability

    P(i beats j) = sigmoid(s_i − s_j) = 1 / (1 + exp(s_j − s_i)),

so s_i − s_j is the log-odds of i beating j. From the wins matrix W (W_ij = wins of i over j) the fit maximises

    Σ_ij W_ij · log sigmoid(s_i − s_j)  −  α/2 · ‖s‖²

- Ties: a tie is half a win to each side (W_ij and W_ji both get 0.5), the usual convention (Davidson's
  tie model would add a parameter that a few hundred votes cannot pin down).
- Identification: only differences s_i − s_j are in the likelihood, so the strengths are fixed by mean(s) = 0.
  With α > 0 the optimum has it already (the score equations sum to −α·Σ s_i = 0); with α = 0 every Newton
  step is solved on the mean-zero subspace, which gives the maximum-likelihood estimate wherever it exists
  (the comparison graph strongly connected: every split of the methods has a win each way).
- The prior: α/2·‖s‖² is a Gaussian prior N(0, 1/α) on each strength (MAP estimate). It is what keeps a
  method that wins every vote finite (the MLE does not exist then: its strength would run off to +∞).
- The fit is Newton's method on the concave objective (the negative Hessian is the Laplacian of the
  weights n_ij·p_ij·(1 − p_ij) plus α·I), batched over leading dimensions with a step-halving safeguard.

`rank_methods` fits all votes, then the uncertainty by the bootstrap over *tasks* (triplets): a task is
resampled with all its votes, since the votes on one task share its images and are not independent. Each
method gets its strength's 2.5–97.5 % percentile interval, its rank and the percentile interval of its rank,
and the HELM-style mean win rate (Liang et al. 2022) as a model-free number beside them.

Why not `choix` (the maintained Bradley–Terry / Luce package): it fits one dataset per call in Python loops.
For 7 methods and 300 votes `choix.opt_pairwise` took 30–40 ms per fit (15–20 ms with BFGS) and even the dense
I-LSR (`ilsr_pairwise_dense`, whose `alpha` is not this prior) 0.6–0.7 ms, so 1000 resamples × ~10 categories
would take 6–400 s; the batched Newton here fits 1000 resamples in ~25 ms. The tests check both agree
(choix's `alpha` is our α / 2: its penalty is alpha·‖s‖²).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from evaluation.scoring.pairwise import ALL, TIE, pair_outcomes

# A weak prior: N(0, 1/α) = standard deviation 10 logits per strength, far wider than any real gap (10 logits is
# a 0.99995 win probability). It barely moves methods that lose some votes (a strength s fitted on n votes shrinks
# by about 4·α·s/n: 0.0008 for s = 1, n = 50), yet stops one that wins all its 300 votes ~8 logits up, not at +∞.
ALPHA = 0.01

RANKING_COLUMNS = ("method", "votes", "strength", "ci_low", "ci_high", "rank", "rank_low", "rank_high",
                   "mean_win_rate")
OUTCOMES = ("first", "second", "tie")
_TOL = 1e-10  # Newton stops when no strength moves by more than this
_MAX_ITER = 100
_DAMP = 1e-9
_EQUAL = 1e-9  # strengths closer than this share a rank


def _objective(s: np.ndarray, wins: np.ndarray, alpha: float) -> np.ndarray:
    """Σ_ij W_ij log sigmoid(s_i − s_j) − α/2 ‖s‖², per leading index."""
    diff = s[..., :, None] - s[..., None, :]
    return -(wins * np.logaddexp(0.0, -diff)).sum((-2, -1)) - 0.5 * alpha * (s * s).sum(-1)


def bradley_terry(wins: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Bradley–Terry strengths from `wins[..., i, j]` (possibly fractional wins of i over j; any leading batch
    dimensions are fitted at once). Returns s[..., i], mean 0, maximising the penalised log-likelihood of the
    module docstring. With α = 0 the result is the MLE where it exists; where it does not (a method that never
    loses), Newton stops after a fixed number of steps with that strength large but finite."""
    wins = np.asarray(wins, dtype=float)
    m = wins.shape[-1]
    games = wins + np.swapaxes(wins, -1, -2)  # n_ij, symmetric
    won = wins.sum(-1)  # W_i
    # M = L + α·I + 11ᵀ/m: the rank-one term fixes the (otherwise free, at α = 0) mean and leaves the step on
    # the mean-zero subspace unchanged, since there both the score and the step sum to zero. A 1e-9 ridge on M
    # (not on the objective: the optimum is unchanged) keeps it invertible for a disconnected comparison graph.
    shift = (alpha + _DAMP) * np.eye(m) + np.full((m, m), 1.0 / m)
    s = np.zeros(wins.shape[:-1])
    f = _objective(s, wins, alpha)
    for _ in range(_MAX_ITER):
        # 1. Score g_i = W_i − Σ_j n_ij p_ij − α s_i and curvature weights n_ij p_ij (1 − p_ij).
        p = 1.0 / (1.0 + np.exp(s[..., None, :] - s[..., :, None]))
        grad = won - (games * p).sum(-1) - alpha * s
        weight = games * p * (1.0 - p)
        laplacian = np.eye(m) * weight.sum(-1)[..., None] - weight
        # 2. Newton step: (L + α I + 11ᵀ/m) Δ = g.
        step = np.linalg.solve(laplacian + shift, grad[..., None])[..., 0]
        # 3. Halve the step wherever it would lower the objective (rare: far from the optimum).
        t = np.ones(s.shape[:-1] + (1,))
        for _ in range(30):
            f_new = _objective(s + t * step, wins, alpha)
            worse = f_new < f - 1e-12 * (1.0 + np.abs(f))
            if not worse.any():
                break
            t = np.where(worse[..., None], t / 2, t)
        s, f = s + t * step, f_new
        if np.max(np.abs(t * step), initial=0.0) < _TOL:
            break
    return s - s.mean(-1, keepdims=True)


def _ranks(strength: np.ndarray) -> np.ndarray:
    """1 + the number of methods strictly stronger (equal strengths share the better rank), along the last axis."""
    return 1 + (strength[..., None, :] > strength[..., :, None] + _EQUAL).sum(-1)


def rank_methods(votes: list[dict], *, resamples: int = 1000, seed: int = 0, alpha: float = ALPHA) -> list[dict]:
    """One row per method (keys RANKING_COLUMNS), strongest first, from consistent pairwise verdicts
    `{"task", "first", "second", "outcome": "first" | "second" | "tie"}` (one per task × method pair).

    strength: the fit on all votes. ci_low / ci_high: 2.5 / 97.5 % percentiles of the strength over
    `resamples` bootstrap resamples of the tasks (`np.random.default_rng(seed)`), *widened where needed to
    contain the strength* (a percentile interval can miss the point estimate when the bootstrap distribution is
    skewed, e.g. near separation), so ci_low <= strength <= ci_high always. rank: 1 = strongest. rank_low /
    rank_high: 2.5 % ('lower') / 97.5 % ('higher') percentiles of the rank over the resamples. mean_win_rate:
    the mean over opponents met of (wins + ties / 2) / votes against that opponent (None if none)."""
    if not votes:
        return []
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    # 1. Index methods and tasks; one wins matrix per task (a tie is half a win to each side).
    methods = sorted({v["first"] for v in votes} | {v["second"] for v in votes})
    tasks = sorted({str(v["task"]) for v in votes})
    method_ix = {name: i for i, name in enumerate(methods)}
    task_ix = {name: t for t, name in enumerate(tasks)}
    m = len(methods)
    per_task = np.zeros((len(tasks), m, m))
    for v in votes:
        if v["outcome"] not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {v['outcome']!r}")
        if v["first"] == v["second"]:
            raise ValueError(f"a vote of {v['first']!r} against itself")
        t, a, b = task_ix[str(v["task"])], method_ix[v["first"]], method_ix[v["second"]]
        share = {"first": 1.0, "second": 0.0, "tie": 0.5}[v["outcome"]]
        per_task[t, a, b] += share
        per_task[t, b, a] += 1.0 - share

    # 2. The fit on all votes.
    wins = per_task.sum(0)
    strength = bradley_terry(wins, alpha)
    rank = _ranks(strength)

    # 3. Bootstrap over tasks: how often each task is drawn, the wins each resample adds up to, one batched fit.
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(tasks), np.full(len(tasks), 1.0 / len(tasks)), size=resamples)
    boot = bradley_terry(np.einsum("rt,tij->rij", counts, per_task), alpha)
    ci_low, ci_high = np.percentile(boot, [2.5, 97.5], axis=0)
    ci_low, ci_high = np.minimum(ci_low, strength), np.maximum(ci_high, strength)
    boot_rank = _ranks(boot)
    rank_low = np.percentile(boot_rank, 2.5, axis=0, method="lower")
    rank_high = np.percentile(boot_rank, 97.5, axis=0, method="higher")

    # 4. Mean win rate over the opponents each method has votes against.
    games = wins + wins.T
    rows = []
    for i, name in enumerate(methods):
        met = [j for j in range(m) if j != i and games[i, j] > 0]
        rows.append({
            "method": name,
            "votes": int(round(games[i].sum())),
            "strength": float(strength[i]),
            "ci_low": float(ci_low[i]),
            "ci_high": float(ci_high[i]),
            "rank": int(rank[i]),
            "rank_low": int(rank_low[i]),
            "rank_high": int(rank_high[i]),
            "mean_win_rate": float(np.mean([wins[i, j] / games[i, j] for j in met])) if met else None,
        })
    return sorted(rows, key=lambda row: (row["rank"], row["method"]))  # ranks follow strength; equal ones by name


RANKINGS_COLUMNS = ("dataset", "judge", "category", "pool", "method", "privileged", *RANKING_COLUMNS[1:])
# example_only: the methods that see only the example pair, ranked among themselves (the default verdict);
# all: every method, those given ground truth (the instruction) included and marked `privileged`
POOLS = ("example_only", "all")


def rankings(rows, *, resamples: int = 1000, seed: int = 0) -> list[dict]:
    """`rank_methods` per dataset × judge × category × pool from `judgements` rows, each with `dataset`,
    `category`, `task` (the triplet within its shard) and `method_privileged` / `opponent_privileged`
    (the pair's methods were given the instruction). Only consistent pairs vote; inconsistent and failed
    ones are left out."""
    rows = list(rows)
    privileged = {}
    for r in rows:
        privileged[(r["dataset"], r["method"])] = bool(r.get("method_privileged"))
        privileged[(r["dataset"], r["opponent"])] = bool(r.get("opponent_privileged"))
    votes = defaultdict(list)
    for (dataset, judge, task, method, opponent), pair in pair_outcomes(rows).items():
        outcome = pair["outcome"]
        if outcome in ("failed", "inconsistent"):
            continue
        vote = {"task": task, "first": method, "second": opponent,
                "outcome": "tie" if outcome == TIE else "first" if outcome == method else "second"}
        given_truth = privileged[(dataset, method)] or privileged[(dataset, opponent)]
        for pool in POOLS:
            if pool == "all" or not given_truth:
                for category in {ALL, pair["category"] or ALL}:
                    votes[(dataset, judge, category, pool)].append(vote)
    out = []
    for (dataset, judge, category, pool), group in sorted(votes.items()):
        for r in rank_methods(group, resamples=resamples, seed=seed):
            out.append({"dataset": dataset, "judge": judge, "category": category, "pool": pool,
                        "method": r["method"], "privileged": privileged[(dataset, r["method"])], **r})
    return out
