"""Render benchmark results (:mod:`metarl.benchmark`): Markdown tables and plots.

Everything is drawn from the ``results.json`` dict alone, so ``metarl report results.json``
re-renders a report without re-running anything, and ``metarl report a.json b.json`` compares runs.

Written files: ``results.md``; ``curves_<family>.png`` (mean return over held-out tasks and seeds
against episodes of adaptation experience, with the 95% bootstrap band); ``normalized.png``
(interquartile mean of the normalised score after the last round, per family and learner, with
95% stratified-bootstrap intervals).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metarl.fileio import atomic_write_text
from metarl.provenance import provenance_markdown

__all__ = ["compare_markdown", "render_markdown", "write_report"]


def _iv(d: dict[str, float] | None, spec: str = ".2f") -> str:
    if d is None:
        return "-"
    return f"{d['estimate']:{spec}} [{d['low']:{spec}}, {d['high']:{spec}}]"


def _reach(d: dict[str, Any] | None, key: str) -> str:
    if d is None:
        return "-"
    mean = d[key]["mean"]
    shown = "never" if mean is None else f"{mean:.0f}"
    return f"{shown} ({d['reached']}/{d['total']})"


def _shown_rounds(n: int, limit: int = 10) -> list[int]:
    """All rounds if there are at most ``limit``, else a roughly geometric subset with the last."""
    if n <= limit:
        return list(range(n))
    picks = {0, 1, 2, 4, 9, 19, 49, 99, 199, 499, n - 1}
    return sorted(r for r in picks if r < n)


def render_markdown(results: dict[str, Any]) -> str:
    """The report of one benchmark run as Markdown."""
    cfg, prov = results["suite"], results.get("provenance", {})
    lines = [
        f"# Benchmark suite `{cfg['name']}`" + (" (quick)" if cfg.get("quick") else ""),
        "",
        cfg.get("description", ""),
        "",
        f"Protocol: {cfg['split']} split, first {cfg['n_tasks']} tasks, {cfg['rounds']} rounds of "
        f"{cfg['episodes_per_round']} episodes per task, seeds {cfg['seeds']}. References for normalised "
        f"scores: random = `{cfg['reference'].get('random', '-')}`, oracle = `{cfg['reference'].get('oracle', '-')}`. "
        f"Intervals are 95% stratified-bootstrap CIs over held-out tasks and seeds ({cfg['bootstrap_reps']} resamples).",
        "",
        provenance_markdown(prov),
    ]
    for family, learners in results["metrics"]["families"].items():
        if not learners:
            continue
        lines += [
            "",
            f"## {family}",
            "",
            "Mean return per round (round r follows r gradient steps, or is episode r+1 of an RL² trial):",
        ]
        # Learners may have their own protocol (an RL² trial of 100 one-pull episodes is 100
        # rounds): one table per number of rounds, long ones shown at a subset of rounds.
        groups: dict[int, list[str]] = {}
        for label, m in learners.items():
            groups.setdefault(len(m["returns"]), []).append(label)
        for n_rounds, labels in groups.items():
            shown = _shown_rounds(n_rounds)
            if len(groups) > 1 or len(shown) < n_rounds:
                note = "" if len(shown) == n_rounds else f", rounds {', '.join(map(str, shown))} shown"
                lines += ["", f"{n_rounds} rounds{note}:"]
            head = " | ".join(f"round {r}" for r in shown)
            lines += ["", f"| learner | unit | {head} |", "|---|---|" + "---|" * len(shown)]
            for label in labels:
                m = learners[label]
                cells = " | ".join(_iv(m["returns"][r]["mean"]) for r in shown)
                lines.append(f"| {label} | {m['adaptation_unit']} | {cells} |")
            for key, stat, fmt, title in (
                ("success", "mean", ".3f", "Success rate per round:"),
                (
                    "normalized",
                    "iqm",
                    ".2f",
                    "Normalised score (return - random) / (oracle - random), IQM per round:",
                ),
            ):
                if any(learners[label][key] for label in labels):
                    lines += ["", title, "", f"| learner | {head} |", "|---|" + "---|" * len(shown)]
                    for label in labels:
                        if learners[label][key]:
                            cells = " | ".join(_iv(learners[label][key][r][stat], fmt) for r in shown)
                            lines.append(f"| {label} | {cells} |")
        trials = {label: m["trial"] for label, m in learners.items() if m.get("trial")}
        if trials:
            lines += [
                "",
                "Context-based learners (one episode per round): total return per trial, and its normalised "
                "score (mean over the trial's episodes of the per-episode normalised score), mean and IQM "
                "over tasks x seeds:",
                "",
                "| learner | episodes per trial | total: mean | total: IQM | normalised: mean | normalised: IQM |",
                "|---|---|---|---|---|---|",
            ]
            for label, t in trials.items():
                norm = t["normalized"] or {}
                lines.append(
                    f"| {label} | {t['episodes']} | {_iv(t['total']['mean'])} | {_iv(t['total']['iqm'])} | "
                    f"{_iv(norm.get('mean'))} | {_iv(norm.get('iqm'))} |"
                )
        frac = round(100 * next(iter(learners.values()))["fraction"])
        lines += [
            "",
            f"Adaptation speed: mean episodes (and env steps) of experience before first reaching {frac}% of the "
            f"way from the random policy's return to the learner's own final return / the oracle's "
            f"(tasks x seeds that reached it in parentheses); wall-clock of all updates per task; training time.",
            "",
            f"| learner | episodes to {frac}% own | steps to {frac}% own | episodes to {frac}% oracle | "
            f"steps to {frac}% oracle | adapt s/task | train s |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, m in learners.items():
            own, orc = m["to_fraction_of_own_final"], m["to_fraction_of_oracle"]
            train = m.get("train_seconds")
            lines.append(
                f"| {label} | {_reach(own, 'episodes')} | {_reach(own, 'env_steps')} | {_reach(orc, 'episodes')} | "
                f"{_reach(orc, 'env_steps')} | {m['adapt_seconds_per_task'][-1]:.3f} | "
                f"{'-' if train is None else f'{train:.1f}'} |"
            )
    across = results["metrics"].get("across_families") or {}
    if across:
        lines += [
            "",
            "## Across families",
            "",
            "Final-round normalised score over families (runs = seeds, strata = families):",
            "",
        ]
        lines += ["| learner | mean | IQM |", "|---|---|---|"]
        lines += [f"| {label} | {_iv(a['mean'])} | {_iv(a['iqm'])} |" for label, a in across.items()]
    if results.get("skipped"):
        lines += ["", "## Skipped", ""]
        lines += [
            f"- `{s['learner']}` on {s['family']} (seeds {s['seeds']}): {s['reason']}"
            for s in results["skipped"]
        ]
    return "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_report(results: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``results.md`` and the plots into ``out``; return the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.md"]
    atomic_write_text(written[0], render_markdown(results))
    families = {f: m for f, m in results["metrics"]["families"].items() if m}
    for family, learners in families.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, m in learners.items():
            x = np.asarray(m["episodes"])
            mean = [row["mean"]["estimate"] for row in m["returns"]]
            ax.plot(x, mean, marker="o", label=f"{label} ({m['adaptation_unit']})")
            ax.fill_between(
                x,
                [row["mean"]["low"] for row in m["returns"]],
                [row["mean"]["high"] for row in m["returns"]],
                alpha=0.2,
            )
        ax.set_xlabel("episodes of adaptation experience per task (per trial for RL²)")
        ax.set_ylabel("mean return (95% CI)")
        ax.set_title(f"{family}: adaptation curves ({results['suite']['name']})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"curves_{_slug(family)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    normalized = {
        f: {k: m["normalized"][-1]["iqm"] for k, m in ls.items() if m["normalized"]}
        for f, ls in families.items()
    }
    normalized = {f: v for f, v in normalized.items() if v}
    if normalized:
        labels = sorted({k for v in normalized.values() for k in v})
        fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(normalized) * max(1, len(labels)) / 3, 4))
        width = 0.8 / len(labels)
        for j, label in enumerate(labels):
            xs, ys, lo, hi = [], [], [], []
            for i, fam in enumerate(normalized):
                if label in normalized[fam]:
                    d = normalized[fam][label]
                    xs.append(i + j * width)
                    ys.append(d["estimate"])
                    lo.append(d["estimate"] - d["low"])
                    hi.append(d["high"] - d["estimate"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(normalized))], list(normalized), fontsize=8)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_ylabel("normalised score after last round (IQM, 95% CI)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / "normalized.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def compare_markdown(runs: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """Side-by-side Markdown of several benchmark runs: final-round return and normalised IQM."""
    head = (
        "| family | learner | " + " | ".join(f"{n}: final return | {n}: normalised IQM" for n in names) + " |"
    )
    lines = [f"# Comparison of {len(runs)} benchmark runs", "", head, "|---|---|" + "---|---|" * len(runs)]
    keys: list[tuple[str, str]] = []
    for run in runs:
        for family, learners in run["metrics"]["families"].items():
            keys += [(family, label) for label in learners if (family, label) not in keys]
    for family, label in keys:
        row = f"| {family} | {label} |"
        for run in runs:
            m = run["metrics"]["families"].get(family, {}).get(label)
            if m is None:
                row += " - | - |"
                continue
            norm = _iv(m["normalized"][-1]["iqm"]) if m["normalized"] else "-"
            row += f" {_iv(m['returns'][-1]['mean'])} | {norm} |"
        lines.append(row)
    return "\n".join(lines) + "\n"
