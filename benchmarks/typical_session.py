"""Run the README's typical session as a new user would, time every command, and check that
each README number those commands produce reproduces to its printed digits (issues 22, 25).

    python benchmarks/typical_session.py --out /tmp/session            # run, time, check
    python benchmarks/typical_session.py --out /tmp/session --no-run   # check stored outputs

The commands are read from README.md itself: ``cfpoison demo`` (its set-up block), every line
of the "A typical session" block, and the promote command of the implicit-feedback section, so
what is timed is exactly what the README shows. Three more commands fill README numbers that
the session does not print, each named beside its numbers in the README: the table of attacks
(``benchmarks/orderings.py``), ``gradcheck`` for integrity (``--mu1 0 --mu2 1``) and
``gradcheck promote`` for WRMF; they run after the session and are marked apart in the times.
Each ``cfpoison`` command gets ``--quiet`` and, where it has none, ``--json NAME.json`` (the
numbers to check; a negligible cost). Each runs alone, in order, in ``--out``, with
``CFPOISON_DATA_DIR`` passed through; wall time by the clock and CPU time from the children's
resource usage. Run it with nothing else on the machine.

The full Figures' numbers are checked too when ``--out`` holds their runs (20-50 minutes each on
2 cores, so they are not part of the session): ``cfpoison reproduce fig1 --scheduler local
--workers 2 --out OUT/fig1-full`` and ``cfpoison reproduce fig2 --scheduler local --workers 2
--out OUT/fig2``, then this script with ``--no-run`` (or without, to run the session too).

The installed versions of the numerical libraries go to ``versions.json`` and are a claim too:
the README states the versions its numbers come from, since other versions of NumPy, SciPy or
numba move the fits in their last digits.

A claim is a sentence fragment of the README with its numbers left as format fields, the
command whose JSON fills them, and how. The script renders each from the run's outputs and
looks for it in the README (whitespace normalised): a claim not found is a README number that
no longer reproduces, printed with what the run gives, and the exit code is 1. Timings are
measurements, not claims: they are reported (``times.md``, ``times.json``), never checked.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.metadata
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"

Json = dict[str, Any]


def _block_after(text: str, marker: str) -> str:
    """The first fenced ``bash`` block after ``marker``."""
    start = text.index(marker)
    match = re.search(r"```bash\n(.*?)```", text[start:], flags=re.S)
    if match is None:
        raise SystemExit(f"README: no bash block after {marker!r}")
    return match.group(1)


def _commands_of(block: str) -> list[list[str]]:
    """Shell lines of a block (continuations joined, comments dropped) as argument lists."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words and words[0] == "cfpoison":
                commands.append(words)
    return commands


def _name(words: list[str]) -> str:
    """``attack`` commands by their method, the others by their sub-command."""
    if words[1] == "attack":
        return words[words.index("--method") + 1]
    return words[1]


def readme_commands(text: str) -> dict[str, list[str]]:
    """``name -> argv`` for the demo, the typical session and the promote command."""
    demo = [c for c in _commands_of(_block_after(text, "## Set up")) if c[1] == "demo"]
    session = _commands_of(_block_after(text, "A typical session on ml-latest-small"))
    promote = _commands_of(_block_after(text, "## Implicit feedback"))
    commands: dict[str, list[str]] = {}
    for words in [*demo, *session, *promote]:
        name = _name(words)
        if name in commands:
            raise SystemExit(f"README: two commands named {name!r}")
        commands[name] = words
    return commands


#: Commands behind README numbers outside the session block (``name -> argv``), run after it.
EXTRA_COMMANDS: dict[str, list[str]] = {
    "orderings": [
        sys.executable,
        str(README.parent / "benchmarks" / "orderings.py"),
        "--iterations",
        "10,20",
        "--json",
        "orderings.json",
    ],
    "gradcheck-integrity": [
        "cfpoison",
        "gradcheck",
        "--dataset",
        "ml-latest-small",
        "--at",
        "1,10",
        "--mu1",
        "0",
        "--mu2",
        "1",
    ],
    "gradcheck-promote": ["cfpoison", "gradcheck", "promote", "--learner", "wrmf", "--at", "3"],
}

#: Distributions whose versions the README states (``versions.json`` key -> distribution).
VERSIONED = {
    "numpy": "numpy",
    "scipy": "scipy",
    "numba": "numba",
    "sklearn": "scikit-learn",
    "surprise": "scikit-surprise",
    "cmfrec": "cmfrec",
    "implicit": "implicit",
}


def write_versions(out: Path) -> None:
    """The installed versions of :data:`VERSIONED` and Python, as ``versions.json``."""
    found = {key: importlib.metadata.version(dist) for key, dist in VERSIONED.items()}
    found["python"] = platform.python_version()
    (out / "versions.json").write_text(json.dumps(found, indent=1), encoding="utf-8")


def with_outputs(name: str, words: list[str]) -> list[str]:
    """The README's command with ``--quiet`` and a ``--json`` output (if it has none)."""
    if words[0] != "cfpoison":
        return words
    extra = ["--quiet"]
    if "--json" not in words:
        extra += ["--json", f"{name}.json"]
    if name == "demo" and "--out" not in words:
        extra += ["--out", "demo"]
    return [*words, *extra]


@dataclasses.dataclass(frozen=True)
class Timing:
    name: str
    command: str
    wall: float
    cpu: float
    returncode: int


def run_session(commands: dict[str, list[str]], out: Path) -> list[Timing]:
    out.mkdir(parents=True, exist_ok=True)
    timings = []
    for name, words in commands.items():
        argv = with_outputs(name, words)
        print(f"$ {shlex.join(argv)}", file=sys.stderr, flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with open(out / f"{name}.log", "w", encoding="utf-8") as log:
            done = subprocess.run(argv, cwd=out, stdout=log, stderr=subprocess.STDOUT, check=False)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        shown = ["python", os.path.relpath(words[1], README.parent), *words[2:]]
        command = shlex.join(shown if words[0] == sys.executable else words)
        timings.append(Timing(name, command, wall, cpu, done.returncode))
        print(
            f"  {name}: {wall:.1f} s wall, {cpu:.1f} s CPU, exit {done.returncode}", file=sys.stderr
        )
    return timings


# ---------------------------------------------------------------------------- claims
@dataclasses.dataclass(frozen=True)
class Claim:
    """A README fragment with format fields, filled from the JSON of ``sources``."""

    sources: tuple[str, ...]
    template: str
    values: Callable[..., Json]


def _robust_rows(evaluate: Json) -> list[Json]:
    return [r for r in evaluate["rows"] if r["attack"] == "robust"]


def _transfer(evaluate: Json) -> Json:
    rows = _robust_rows(evaluate)
    by_victim = {r["victim"]: r for r in rows}
    vs = [r["shift_vs_baseline"] for r in rows]
    floors = [r["ratio"] for r in rows]
    return {
        "lo": min(vs),
        "hi": max(vs),
        "flo": min(floors),
        "fhi": max(floors),
        "svd": by_victim["surprise-svd"]["shift_vs_baseline"],
        "cmfrec": by_victim["cmfrec"]["shift_vs_baseline"],
        "biased": by_victim["biased"]["shift_vs_baseline"],
    }


#: README label of each default defense (``defend``'s JSON ``name``).
DEFENSE_LABELS = {
    "detect_remove[rdma,fpr=0.01,reference]": "remove RDMA's 1% tail",
    "detect_remove[wdma,fpr=0.01,reference]": "remove WDMA's 1% tail",
    "detect_remove[fmtd,fpr=0.01,reference]": "remove FMTD's 1% tail",
    "detect_remove[degsim,fpr=0.01,reference]": "remove DegSim's 1% tail",
    "bagging[10x0.8 users]": "bagging, 10 bags of 80% of users",
    "trimmed[ratings 0.02]": "trimmed ALS, 2% of ratings",
    "trimmed[users 0.03]": "trimmed ALS, 3% of users",
    "huber[delta=1]": "Huber, delta 1",
    "influence_cap[1]": "influence caps",
    "als_wr[lam=0.1]": "ALS-WR",
}


def _defense_claim(name: str, label: str) -> Claim:
    def values(defend: Json) -> Json:
        rows = {d["attack"]: d for d in defend["defenses"] if d["name"] == name}
        pga, robust = rows["pga"], rows["robust"]
        return {
            "cost": pga["test_rmse_increase_pct"],
            **{
                f"{key}{attack}": value
                for attack, row in (("pga", pga), ("robust", robust))
                for key, value in (
                    ("removed", row["removed_fake"]),
                    ("n", row["n_fake"]),
                    ("share", 100 * row["shift_removed"]),
                )
            },
        }

    return Claim(
        ("defend",),
        f"| {label} | {{cost:+.2f}}% | {{removedpga}}/{{npga}}, {{sharepga:.0f}}% | "
        "{removedrobust}/{nrobust}, {sharerobust:.0f}% |",
        values,
    )


def _cosines(gradcheck: Json) -> Json:
    return {"first": gradcheck["checks"][0]["cos"], "last": gradcheck["checks"][-1]["cos"]}


def _ordering(orderings: Json, goal: str, attack: str) -> Json:
    """Shift and target push of one row of ``benchmarks/orderings.py``'s JSON."""
    row = next(r for r in orderings["rows"] if r["goal"] == goal and r["attack"] == attack)
    return {"shift": row["rmse_shift"], "push": row["target_push_stars"]}


def _ordering_claim(label: str, goal: str, attack: str, cells: str) -> Claim:
    return Claim(
        ("orderings",),
        f"| {label} | {cells} |",
        lambda orderings: _ordering(orderings, goal, attack),
    )


Panel = tuple[float, float]
AVAILABILITY, NUKE, INTEGRITY, LAST_PANEL = (1.0, 0.0), (1.0, -1.0), (0.0, 1.0), (-1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class FigureCells:
    """A figure's ``results.csv`` rows at one alpha; means over seeds, in stars."""

    rows: list[Json]
    alpha: float

    def values(self, panel: Panel, method: str, column: str) -> list[float]:
        return [
            float(r[column])
            for r in self.rows
            if (float(r["attack.utility.mu1"]), float(r["attack.utility.mu2"])) == panel
            and r["attack.method"] == method
            and float(r["attack.threat.alpha"]) == self.alpha
        ]

    def shift(self, method: str, panel: Panel = AVAILABILITY) -> float:
        return statistics.fmean(self.values(panel, method, "rmse_shift_stars"))

    def floor_ratio(self, method: str) -> float:
        floor = statistics.fmean(self.values(AVAILABILITY, method, "rmse_shift_noise_floor_stars"))
        return self.shift(method) / floor

    def push(self, method: str, panel: Panel) -> float:
        """The target's mean predicted rating after, less the clean model's."""
        after = self.values(panel, method, "target_mean_after")
        before = self.values(panel, method, "target_mean_before")
        return statistics.fmean(after) - statistics.fmean(before)


def _quick_figure(rows: list[Json]) -> Json:
    """The quick Figure 1 at 3% (``reproduce fig1 --quick``'s ``results.csv``)."""
    at3 = FigureCells(rows, 0.03)
    return {
        "pga": at3.shift("pga"),
        "ratio": at3.floor_ratio("pga"),
        "push": at3.push("pga", INTEGRITY),
        "bandwagon": at3.push("bandwagon", INTEGRITY),
        "sgld": at3.shift("sgld"),
        "sgldsd": statistics.stdev(at3.values(AVAILABILITY, "sgld", "rmse_shift_stars")),
        "uniform": at3.shift("uniform"),
        "nukepga": at3.push("pga", NUKE),
        "average": at3.push("average", NUKE),
    }


def _full_figure(rows: list[Json]) -> Json:
    """The full Figure 1 (``reproduce fig1 --scheduler local --workers 2``'s ``results.csv``)
    at 5% and, for the two curves that cross, 1%."""
    at5, at1 = FigureCells(rows, 0.05), FigureCells(rows, 0.01)
    return {
        **{m: at5.shift(m) for m in ("pga", "sgld", "uniform")},
        **{f"{m}ratio": at5.floor_ratio(m) for m in ("pga", "sgld", "uniform")},
        "pga1": at1.shift("pga"),
        "sgld1": at1.shift("sgld"),
        "push": at5.push("pga", INTEGRITY),
        "bandwagon": at5.push("bandwagon", INTEGRITY),
        "nukeaverage": at5.push("average", NUKE),
        "nukepga": at5.push("pga", NUKE),
        "lastpga": at5.push("pga", LAST_PANEL),
        "lastaverage": at5.push("average", LAST_PANEL),
    }


def _figure2(full: list[Json], subset: list[Json]) -> Json:
    """Figure 2 at 5% (``reproduce fig2 --scheduler local --workers 2 --out fig2``'s two
    ``results.csv``): the full set and the 1,700-item subset."""
    at5, sub5 = FigureCells(full, 0.05), FigureCells(subset, 0.05)
    nuke = [
        a - b
        for a, b in zip(
            at5.values(NUKE, "pga", "target_mean_after"),
            at5.values(NUKE, "pga", "target_mean_before"),
            strict=True,
        )
    ]
    return {
        "pga": at5.shift("pga"),
        "uniform": at5.shift("uniform"),
        "ratio": at5.shift("pga") / at5.shift("uniform"),
        "bandwagon": at5.shift("bandwagon"),
        "shilling": at5.shift("pga") / at5.shift("bandwagon"),
        "subpga": sub5.shift("pga"),
        "subratio": sub5.shift("pga") / sub5.shift("uniform"),
        "push": at5.push("pga", INTEGRITY),
        "subpush": sub5.push("pga", INTEGRITY),
        "bw": at5.push("bandwagon", INTEGRITY),
        "subbw": sub5.push("bandwagon", INTEGRITY),
        "sgld": at5.shift("sgld"),
        "nuke": statistics.fmean(nuke),
        "nukesd": statistics.stdev(nuke),
        "subnuke": sub5.push("pga", NUKE),
    }


def _promote(promote: Json) -> Json:
    m = promote["metrics"]
    return {
        "ids": ", ".join(str(t) for t in promote["targets"]),
        "n": promote["n_fake"],
        "items": m["items_per_fake"]["max"],
        **{k.replace("@", "").replace("_", ""): v for k, v in m.items() if "@" in k},
    }


CLAIMS: tuple[Claim, ...] = (
    Claim(
        ("versions",),
        "Python {python}, NumPy {numpy}, SciPy {scipy}, numba {numba}, scikit-learn {sklearn}, "
        "Surprise {surprise}, cmfrec {cmfrec} and implicit {implicit}",
        lambda versions: versions,
    ),
    Claim(
        ("pga",),
        "| attack (seed 0; seed-noise floor {floor:.4f}) |",
        lambda pga: {"floor": pga["rmse_shift_noise_floor"]},
    ),
    Claim(
        ("uniform",),
        "| uniform (the paper's baseline) | {shift:.4f} (below the floor) |",
        lambda uniform: {"shift": uniform["rmse_shift"]},
    ),
    Claim(
        ("pga", "uniform"),
        "| PGA availability, exact gradient, 10 steps | **{shift:.4f}** ({ratio:.1f}x uniform) |",
        lambda pga, uniform: {
            "shift": pga["rmse_shift"],
            "ratio": pga["rmse_shift"] / uniform["rmse_shift"],
        },
    ),
    _ordering_claim(
        "`average` shilling profiles (targets rated 5 stars)",
        "integrity",
        "average",
        "{shift:.4f} | {push:+.3f} stars",
    ),
    _ordering_claim(
        "`bandwagon` shilling profiles", "integrity", "bandwagon", "{shift:.4f} | {push:+.3f} stars"
    ),
    _ordering_claim(
        "PGA availability, the paper's Eq. 12 gradient, 10 steps",
        "availability",
        "pga Eq. 12, 10 steps",
        "{shift:.4f} |",
    ),
    _ordering_claim(
        "PGA integrity, exact gradient, 10 steps",
        "integrity",
        "pga exact, 10 steps",
        "{shift:.4f} | **{push:+.3f} stars**",
    ),
    _ordering_claim(
        "PGA integrity, the paper's Eq. 12 gradient, 10 steps",
        "integrity",
        "pga Eq. 12, 10 steps",
        "{shift:.4f} | {push:+.3f} stars",
    ),
    Claim(
        ("orderings",),
        "20 steps: {shift:.4f} and {push:+.3f}",
        lambda orderings: {
            "shift": _ordering(orderings, "availability", "pga exact, 20 steps")["shift"],
            "push": _ordering(orderings, "integrity", "pga exact, 20 steps")["push"],
        },
    ),
    Claim(
        ("gradcheck",),
        "10: cos {first:.6f} and {last:.6f} for availability (the typical session's command)",
        lambda gradcheck: _cosines(gradcheck),
    ),
    Claim(
        ("gradcheck-promote",),
        "`cfpoison gradcheck promote --learner wrmf --at 3` gives {last:.6f} at",
        _cosines,
    ),
    Claim(
        ("gradcheck-integrity",),
        "{first:.6f} and {last:.6f} for integrity (`--mu1 0 --mu2 1`)",
        _cosines,
    ),
    Claim(
        ("evaluate",),
        "shifts every victim {lo:.2f} to {hi:.2f}x as much as uniform and {flo:.2f} to "
        "{fhi:.2f}x its own noise floor (Surprise SVD {svd:.2f}x, cmfrec {cmfrec:.2f}x, "
        "biased MF {biased:.2f}x;",
        _transfer,
    ),
    *(_defense_claim(name, label) for name, label in DEFENSE_LABELS.items()),
    Claim(
        ("promote",),
        "prints, for seed 0's targets (movieIds {ids}; {n} fake users of {items:g} items): "
        "HR@50 {hr50before:.4f} -> {hr50after:.4f} on the attacked WRMF (its seed-noise floor "
        "{hr50floor:.4f}:",
        _promote,
    ),
    Claim(
        ("promote",),
        "HR@10 {hr10before:.4f} -> {hr10after:.4f}, NDCG@50 {ndcg50after:.4f}.",
        _promote,
    ),
    Claim(
        ("fig1/results.csv",),
        "At 3% fake users PGA clears the floor for availability ({pga:.3f} stars, {ratio:.2f}x) "
        "and pushes the target by {push:+.2f} stars (bandwagon {bandwagon:+.2f}); paper-mode "
        "SGLD ({sgld:.3f} +- {sgldsd:.3f}) and uniform ({uniform:.3f})",
        _quick_figure,
    ),
    Claim(
        ("fig1/results.csv",),
        "with only 2 steps PGA does not nuke the target in panel (1, -1) ({nukepga:+.2f} "
        "stars), where the average attack moves it by {average:+.2f} stars.",
        _quick_figure,
    ),
)


FIGURE2_SOURCES = ("fig2/fig2-full/results.csv", "fig2/fig2-subset/results.csv")

#: The full Figures' paragraphs: checked when ``--out`` holds ``fig1-full/`` or ``fig2/`` (each
#: grid takes 20-50 minutes on 2 cores, so the script does not run them; module docstring).
FIGURE_CLAIMS: tuple[Claim, ...] = (
    Claim(
        ("fig1-full/results.csv",),
        "At 5% fake users, availability (first panel): PGA shifts unseen ratings by {pga:.3f} "
        "stars ({pgaratio:.2f}x the seed-noise floor), SGLD {sgld:.3f} ({sgldratio:.2f}x), "
        "uniform {uniform:.3f} ({uniformratio:.2f}x)",
        _full_figure,
    ),
    Claim(
        ("fig1-full/results.csv",),
        "at 1% SGLD ({sgld1:.3f}) is ahead of PGA ({pga1:.3f})",
        _full_figure,
    ),
    Claim(
        ("fig1-full/results.csv",),
        "Integrity (third panel): PGA raises the target by {push:+.2f} stars, bandwagon by "
        "{bandwagon:+.2f}. Nuking the target (second panel) the average attack moves it "
        "{nukeaverage:+.2f} stars and PGA {nukepga:+.2f}",
        _full_figure,
    ),
    Claim(
        ("fig1-full/results.csv",),
        "in the last panel PGA ({lastpga:+.2f}) and average ({lastaverage:+.2f})",
        _full_figure,
    ),
    *(
        Claim(FIGURE2_SOURCES, template, _figure2)
        for template in (
            "At 5% on the full set, availability: PGA {pga:.3f} stars, {ratio:.1f}x uniform "
            "({uniform:.4f}) and {shilling:.1f}x the stronger shilling attack (bandwagon, "
            "{bandwagon:.3f}); on the subset PGA {subpga:.3f}, {subratio:.1f}x uniform",
            "Integrity: PGA pushes the target {push:+.2f} stars (full) and {subpush:+.2f} "
            "(subset), bandwagon {bw:+.2f} and {subbw:+.2f}.",
            "(full set {sgld:.4f} against {uniform:.4f})",
            "does not nuke the target ({nuke:+.2f} +- {nukesd:.2f} stars)",
            "PGA nukes it by {subnuke:+.2f} stars.",
        )
    ),
)


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _source_path(out: Path, source: str) -> Path:
    """A claim's source: ``NAME`` is ``NAME.json`` in ``out``; a name ending ``.csv`` is that
    file."""
    return out / (source if source.endswith(".csv") else f"{source}.json")


def _load_source(out: Path, source: str) -> Any:
    """A JSON source's value, or a CSV source's rows (dicts of strings)."""
    path = _source_path(out, source)
    if source.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    return json.loads(path.read_text(encoding="utf-8"))


def figure_claims(out: Path) -> list[Claim]:
    """The claims of :data:`FIGURE_CLAIMS` whose figure ``out`` holds."""
    held = [c for c in FIGURE_CLAIMS if all(_source_path(out, s).is_file() for s in c.sources)]
    if len(held) < len(FIGURE_CLAIMS):
        print(f"skip {len(FIGURE_CLAIMS) - len(held)} claims of figures not run in {out}")
    return held


def check_claims(out: Path, readme: str) -> list[str]:
    """The claims whose rendered text the README lacks, each with what the run gives."""
    flat = _normalised(readme)
    failures = []
    for claim in (*CLAIMS, *figure_claims(out)):
        missing = [s for s in claim.sources if not _source_path(out, s).is_file()]
        if missing:
            print(f"MISS no {', '.join(missing)} in {out}: {claim.template}")
            failures.append(claim.template)
            continue
        outputs = [_load_source(out, s) for s in claim.sources]
        rendered = _normalised(claim.template.format(**claim.values(*outputs)))
        status = "ok  " if rendered in flat else "MISS"
        print(f"{status} {rendered}")
        if rendered not in flat:
            failures.append(rendered)
    return failures


def write_times(timings: list[Timing], out: Path) -> None:
    lines = ["| command | wall | CPU (user + sys) | exit |", "|---|---|---|---|"]
    for t in timings:
        aside = " (README number, not in the session)" if t.name in EXTRA_COMMANDS else ""
        lines.append(f"| `{t.command}`{aside} | {t.wall:.1f} s | {t.cpu:.1f} s | {t.returncode} |")
    (out / "times.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "times.json").write_text(
        json.dumps([dataclasses.asdict(t) for t in timings], indent=1), encoding="utf-8"
    )
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="working folder")
    parser.add_argument("--no-run", action="store_true", help="check the outputs in --out")
    parser.add_argument(
        "--only", default=None, help="comma-separated command names to run (default: all)"
    )
    args = parser.parse_args()
    readme = README.read_text(encoding="utf-8")
    commands = {**readme_commands(readme), **EXTRA_COMMANDS}
    if not args.no_run:
        chosen = commands
        if args.only:
            chosen = {n: commands[n] for n in args.only.split(",")}
        timings = run_session(chosen, args.out)
        write_versions(args.out)
        write_times(timings, args.out)
        if any(t.returncode for t in timings):
            print("a command failed: see its .log in --out", file=sys.stderr)
            return 1
    failures = check_claims(args.out, readme)
    checked = len(CLAIMS) + len(figure_claims(args.out))
    print(f"{checked - len(failures)} of {checked} README claims reproduce")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
