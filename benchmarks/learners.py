"""Learner benchmark: our ALS against LensKit's and cmfrec's, our nuclear norm against SVT.

Run (LensKit and cmfrec are the optional ``bench`` extra)::

    python benchmarks/learners.py --json out.json

ALS, side by side on the same data (the shifted [-2, 2] scale), the same k and threads:

* **per-sweep seconds**: ours and cmfrec by differencing fits of ``S1`` and ``S2`` sweeps
  (setup excluded), LensKit by timing its trainer's ``train_epoch`` one by one; medians of
  ``--repeats``. Ours includes its per-sweep objective and KKT pass.
* **test RMSE** (ml-latest-small, original star scale, ``--rmse-sweeps`` sweeps each).
  Regularization conventions differ and are mapped, not guessed:

  - ours: ``sum_Omega (M - UV^T)^2 + lam (|U|^2 + |V|^2)``;
  - cmfrec with ``scale_lam=False``, no biases, no centering, Cholesky (``use_cg=False``):
    the same objective up to a factor; the mapping ``lambda_ = lam`` is *verified* by
    evaluating our relative KKT residual on cmfrec's factors (printed);
  - LensKit's explicit ALS always uses frequency-weighted regularization
    (``reg * n_i |u_i|^2``, ALS-WR), which no constant ``lam`` reproduces; its bias model is
    switched off here so that it fits the same bias-free model. Its ``reg`` is chosen on
    the same grid protocol as ours (best test RMSE of a small grid), stated in the output.

Nuclear norm: seconds until the certificate holds (spectral ratio and relative duality gap
within ``certificate_tol``), ours versus a dense soft-impute (Mazumder, Hastie and
Tibshirani 2010, the algorithm of fancyimpute's ``SoftImpute``: fill the missing entries with
the current estimate, full dense SVD, soft-threshold at ``lam``), written out here because
fancyimpute pulls in cvxpy and its solvers; its run stops at ``--svt-seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import Ratings
from cfpoison.data.registry import load_dataset
from cfpoison.learners import ALSConfig, ALSLearner, NuclearConfig, NuclearNormLearner, kernels
from cfpoison.learners.base import Factors
from cfpoison.learners.factored import Engine, Problem


def rmse_stars(predicted: np.ndarray, test: Ratings) -> float:
    """RMSE on the original rating scale of shifted-scale predictions at test's entries."""
    _, _, values = test.triples()
    span = (test.scale.high - test.scale.low) / 4.0
    return float(np.sqrt(np.mean((predicted - values) ** 2)) * span)


def predict_at(user: np.ndarray, item: np.ndarray, test: Ratings) -> np.ndarray:
    rows, cols, _ = test.triples()
    return np.einsum("tk,tk->t", user[rows], item[cols])


# ---------------------------------------------------------------------- ours
def ours_fit(train: Ratings, k: int, lam: float, sweeps: int, threads: int) -> ALSLearner:
    config = ALSConfig(
        rank=k, lambda_u=lam, lambda_v=lam, max_sweeps=sweeps, tol=0, kkt_tol=0, threads=threads
    )
    return ALSLearner(config).fit(train)


def ours_sweep_seconds(train: Ratings, k: int, threads: int, s1: int, s2: int) -> float:
    def once() -> float:
        t0 = time.perf_counter()
        ours_fit(train, k, 8.0, s1, threads)
        t1 = time.perf_counter()
        ours_fit(train, k, 8.0, s2, threads)
        t2 = time.perf_counter()
        return ((t2 - t1) - (t1 - t0)) / (s2 - s1)

    return once()


# ---------------------------------------------------------------------- cmfrec
def cmfrec_fit(train: Ratings, k: int, lam: float, sweeps: int, threads: int) -> Any:
    from cmfrec import CMF

    model = CMF(
        k=k,
        lambda_=lam,
        method="als",
        use_cg=False,
        finalize_chol=False,
        user_bias=False,
        item_bias=False,
        center=False,
        scale_lam=False,
        niter=sweeps,
        nthreads=threads,
        use_float=False,
        precompute_for_predictions=False,
        verbose=False,
        random_state=0,
    )
    model.fit(X=sp.coo_matrix(train.matrix))
    return model


def cmfrec_sweep_seconds(train: Ratings, k: int, threads: int, s1: int, s2: int) -> float:
    t0 = time.perf_counter()
    cmfrec_fit(train, k, 8.0, s1, threads)
    t1 = time.perf_counter()
    cmfrec_fit(train, k, 8.0, s2, threads)
    t2 = time.perf_counter()
    return ((t2 - t1) - (t1 - t0)) / (s2 - s1)


def kkt_under_our_convention(
    train: Ratings, user: np.ndarray, item: np.ndarray, lam: float
) -> float:
    """Our relative KKT residual of foreign factors, with lam_U = lam_V = lam."""
    engine = Engine(Problem.build(train, None), lam, lam, kernels)
    f = Factors(
        np.ascontiguousarray(user, dtype=np.float64),
        np.ascontiguousarray(item, dtype=np.float64),
        np.zeros((0, user.shape[1])),
    )
    return engine.evaluate(f)[1]


# ---------------------------------------------------------------------- LensKit
def lenskit_trainer(train: Ratings, k: int, reg: float, epochs: int, seed: int = 0) -> Any:
    """LensKit's explicit ALS trainer with its bias model switched off."""
    import pandas as pd
    from lenskit.als import BiasedMFConfig, BiasedMFScorer
    from lenskit.als._explicit import BiasedMFTrainer
    from lenskit.data import from_interactions_df
    from lenskit.training import TrainingOptions

    class NoBiasTrainer(BiasedMFTrainer):
        def prepare_matrix(self, data: Any) -> Any:
            matrix = data.interactions().matrix().scipy(attribute="rating", layout="coo")
            self.scorer.bias = None
            return matrix.astype(np.float32)

    class NoBiasScorer(BiasedMFScorer):
        def create_trainer(self, data: Any, options: Any) -> Any:
            return NoBiasTrainer(self, data, options)

    rows, cols, values = train.triples()
    frame = pd.DataFrame({"user_id": rows, "item_id": cols, "rating": values})
    data = from_interactions_df(frame)
    config = BiasedMFConfig(embedding_size=k, epochs=epochs, regularization=reg)
    scorer = NoBiasScorer(config)
    trainer = scorer.create_trainer(data, TrainingOptions(rng=seed))
    return scorer, trainer


def lenskit_factors(scorer: Any, train: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """User and item embeddings in our row and column order (zero for unseen ids, as ours)."""

    def reorder(vocabulary: Any, embeddings: Any, n: int) -> np.ndarray:
        numbers = vocabulary.numbers(np.arange(n), missing="negative")
        table = np.asarray(embeddings, dtype=np.float64)
        out = np.zeros((n, table.shape[1]))
        out[numbers >= 0] = table[numbers[numbers >= 0]]
        return out

    return (
        reorder(scorer.users, scorer.user_embeddings, train.n_users),
        reorder(scorer.items, scorer.item_embeddings, train.n_items),
    )


def lenskit_sweep_seconds(train: Ratings, k: int, epochs: int) -> float:
    _, trainer = lenskit_trainer(train, k, 0.1, epochs)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        trainer.train_epoch()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:] if len(times) > 1 else times)


# ---------------------------------------------------------------------- nuclear norm
def dense_soft_impute(train: Ratings, lam: float, tol: float, seconds: float) -> dict[str, Any]:
    """Dense soft-impute until our certificate holds (or ``seconds`` pass).

    Z <- SVT_lam(P_Omega(M) + P_Omega^perp(Z)), full SVD each iteration; the certificate
    (spectral ratio and relative duality gap of docs/math.md section 4) is evaluated on the dense
    iterate every iteration, outside the timed part.
    """
    m, n = train.matrix.shape
    rows, cols, values = train.triples()
    mask = np.zeros((m, n), dtype=bool)
    mask[rows, cols] = True
    observed = np.zeros((m, n))
    observed[rows, cols] = values
    Z = np.zeros((m, n))
    spent, iterations, certificate = 0.0, 0, {}
    while spent < seconds:
        t0 = time.perf_counter()
        filled = np.where(mask, observed, Z)
        u, s, vt = np.linalg.svd(filled, full_matrices=False)
        shrunk = np.maximum(s - lam, 0.0)
        keep = shrunk > 0
        Z = (u[:, keep] * shrunk[keep]) @ vt[keep]
        spent += time.perf_counter() - t0
        iterations += 1
        residual = np.where(mask, observed - Z, 0.0)
        spectral = float(np.linalg.norm(residual, 2))
        residual_sq = float(np.sum(residual**2))
        objective = residual_sq + 2 * lam * float(shrunk.sum())
        c = min(1.0, lam / spectral) if spectral > 0 else 1.0
        dual = c * float(np.sum(residual * observed)) - 0.5 * c * c * residual_sq
        gap = max(objective - 2 * dual, 0.0) / objective
        certificate = {
            "spectral_ratio": spectral / lam,
            "relative_gap": gap,
            "rank": int(keep.sum()),
        }
        if spectral / lam <= 1 + tol and gap <= tol:
            return {"seconds": spent, "iterations": iterations, "ok": True, **certificate}
    return {"seconds": spent, "iterations": iterations, "ok": False, **certificate}


def nuclear_case(
    train: Ratings, test: Ratings, lam: float, tol: float, threads: int, svt_seconds: float
) -> dict[str, Any]:
    config = NuclearConfig(lam=lam, certificate_tol=tol, threads=threads)
    t0 = time.perf_counter()
    learner = NuclearNormLearner(config).fit(train)
    seconds = time.perf_counter() - t0
    certificate = learner.certificate()
    ours = {
        "seconds": seconds,
        "ok": certificate["ok"],
        "spectral_ratio": certificate["spectral_ratio"],
        "relative_gap": certificate["relative_gap"],
        "rank": learner.rank,
        "sweeps": certificate["sweeps"],
        "rounds": certificate["rounds"],
        "rmse_test": rmse_stars(predict_at(learner.user_factors, learner.item_factors, test), test)
        if test.nnz
        else None,
    }
    dense = dense_soft_impute(train, lam, tol, svt_seconds)
    return {"lam": lam, "certificate_tol": tol, "ours": ours, "dense_soft_impute": dense}


def sweep_times(
    train: Ratings, k: int, threads: int, s1: int, s2: int, repeats: int
) -> dict[str, Any]:
    """Per-sweep seconds of the three libraries, repeats interleaved; medians and samples."""
    timers = {
        "ours": lambda: ours_sweep_seconds(train, k, threads, s1, s2),
        "lenskit": lambda: lenskit_sweep_seconds(train, k, s2 - s1 + 1),
        "cmfrec": lambda: cmfrec_sweep_seconds(train, k, threads, s1, s2),
    }
    samples: dict[str, list[float]] = {lib: [] for lib in timers}
    for _ in range(repeats):  # interleaved, so that changes of the machine's load hit all
        for lib, timer in timers.items():
            samples[lib].append(timer())
    row: dict[str, Any] = {}
    for lib, values in samples.items():
        row[lib] = statistics.median(values)
        row[f"{lib}_samples"] = values
    return row


def markdown(report: dict[str, Any]) -> str:
    """The report's tables in Markdown (for benchmarks/RESULTS.md)."""
    lines = []
    if report["als"]:
        lines += [
            "| data set | k | ours s/sweep | LensKit s/sweep | cmfrec s/sweep "
            "| ours/LensKit | ours/cmfrec |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in report["als"]:
            lines.append(
                f"| {r['dataset']} | {r['k']} | {r['ours']:.4f} | {r['lenskit']:.4f} "
                f"| {r['cmfrec']:.4f} | {r['ours_over_lenskit']:.2f} "
                f"| {r['ours_over_cmfrec']:.2f} |"
            )
        lines.append("")
    if report["rmse"]:
        lines += [
            "| library | regularization | test RMSE (stars) | our KKT of its factors |",
            "|---|---|---|---|",
        ]
        for r in report["rmse"]:
            reg = f"{r['reg']:g}" + (" x n_i (weighted)" if r.get("weighted_reg") else "")
            kkt = r.get("kkt_ours_convention")
            kkt_text = f"{kkt:.2g}" if kkt is not None else "n/a (other objective)"
            lines.append(f"| {r['library']} | {reg} | {r['rmse_test']:.4f} | {kkt_text} |")
        lines.append("")
    if report["nuclear"]:
        lines += [
            "| data set | lam | ours: s to certificate | rank | sweeps | rounds "
            "| dense soft-impute: s | its iterations | its certificate |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for c in report["nuclear"]:
            o, d = c["ours"], c["dense_soft_impute"]
            verdict = (
                "holds"
                if d["ok"]
                else (f"not reached (ratio {d['spectral_ratio']:.4f}, gap {d['relative_gap']:.1e})")
            )
            lines.append(
                f"| {c['dataset']} | {c['lam']:g} | {o['seconds']:.1f} | {o['rank']} "
                f"| {o['sweeps']} | {o['rounds']} | {d['seconds']:.1f} | {d['iterations']} "
                f"| {verdict} |"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------- driver
def load(name: str, data_dir: Path | None) -> tuple[Ratings, Ratings]:
    raw = load_dataset(name, data_dir, download=False)
    return prepare(raw, PreprocessConfig())


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="ml-latest-small,synthetic:ml-1m,synthetic:ml-20m")
    parser.add_argument("--ranks", default="10,32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rmse-sweeps", type=int, default=30)
    parser.add_argument("--skip", default="", help="comma list of: als, rmse, nuclear")
    parser.add_argument("--nuclear-datasets", default="ml-latest-small,synthetic:ml-1m")
    parser.add_argument("--nuclear-lambda", default="ml-latest-small=20,synthetic:ml-1m=60")
    parser.add_argument("--certificate-tol", type=float, default=1e-4)
    parser.add_argument("--svt-seconds", type=float, default=300.0)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--markdown", type=Path, default=None, help="print the tables of a saved --json report"
    )
    args = parser.parse_args(argv)
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    data_dir = args.data_dir or (
        Path(os.environ["CFPOISON_DATA_DIR"]) if "CFPOISON_DATA_DIR" in os.environ else None
    )
    skip = set(filter(None, args.skip.split(",")))
    ranks = [int(k) for k in args.ranks.split(",")]

    import lenskit.parallel

    lenskit.parallel.initialize(threads=args.threads, backend_threads=1)
    kernels.set_threads(args.threads)
    report: dict[str, Any] = {
        "machine": machine(),
        "threads": args.threads,
        "als": [],
        "rmse": [],
        "nuclear": [],
    }

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")

    if "rmse" not in skip:
        train, test = load("ml-latest-small", data_dir)
        report["rmse"] = rmse_comparison(train, test, args.rmse_sweeps, args.threads)
        save()

    if "als" not in skip:
        for name in args.datasets.split(","):
            train, _ = load(name, data_dir)
            s1, s2 = (2, 12) if train.nnz < 5_000_000 else (1, 3)
            for k in ranks:
                row = {
                    "dataset": name,
                    "k": k,
                    "users": train.n_users,
                    "items": train.n_items,
                    "ratings": train.nnz,
                }
                row.update(sweep_times(train, k, args.threads, s1, s2, args.repeats))
                row["ours_over_lenskit"] = row["ours"] / row["lenskit"]
                row["ours_over_cmfrec"] = row["ours"] / row["cmfrec"]
                report["als"].append(row)
                print(json.dumps(row), flush=True)
                save()

    if "nuclear" not in skip:
        lams = dict(item.split("=") for item in args.nuclear_lambda.split(","))
        for name in args.nuclear_datasets.split(","):
            train, test = load(name, data_dir)
            case = nuclear_case(
                train, test, float(lams[name]), args.certificate_tol, args.threads, args.svt_seconds
            )
            case["dataset"] = name
            report["nuclear"].append(case)
            print(json.dumps(case), flush=True)
            save()
    report["machine"]["load_average_end"] = os.getloadavg()
    save()
    print(markdown(report))
    return 0


def rmse_comparison(train: Ratings, test: Ratings, sweeps: int, threads: int) -> list[dict]:
    """Test RMSE of each library on a small regularization grid, same k and sweeps."""
    rows: list[dict] = []
    for lam in (4.0, 8.0, 12.0):
        for k in (10,):
            ours = ours_fit(train, k, lam, sweeps, threads)
            rows.append(
                {
                    "library": "ours",
                    "k": k,
                    "reg": lam,
                    "rmse_test": rmse_stars(
                        predict_at(ours.user_factors, ours.item_factors, test), test
                    ),
                    "kkt_ours_convention": ours.kkt_residual(),
                }
            )
            model = cmfrec_fit(train, k, lam, sweeps, threads)
            user, item = np.asarray(model.A_), np.asarray(model.B_)
            rows.append(
                {
                    "library": "cmfrec",
                    "k": k,
                    "reg": lam,
                    "rmse_test": rmse_stars(predict_at(user, item, test), test),
                    "kkt_ours_convention": kkt_under_our_convention(train, user, item, lam),
                    "kkt_if_reg_were_2x": kkt_under_our_convention(train, user, item, 2 * lam),
                    "kkt_if_reg_were_half": kkt_under_our_convention(train, user, item, lam / 2),
                }
            )
            print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)
    for reg in (0.02, 0.05, 0.1, 0.2):
        scorer, trainer = lenskit_trainer(train, 10, reg, sweeps)
        for _ in range(sweeps):
            trainer.train_epoch()
        user, item = lenskit_factors(scorer, train)
        rows.append(
            {
                "library": "lenskit",
                "k": 10,
                "reg": reg,
                "weighted_reg": True,
                "rmse_test": rmse_stars(predict_at(user, item, test), test),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
