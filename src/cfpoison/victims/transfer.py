"""Transfer of fake profiles to victims the attacker does not control (pure; no printing).

For each victim of a panel and each victim seed ``s`` (seeds ``s_1..s_S``, ``S >= 3``), a
clean fit and, per profile file, a poisoned fit with the same seed (the only difference is
the fake data). Measured, per seed, then summarised with a ``confidence`` t-interval:

* ``shift``: footnote 4's RMSE between the poisoned and the clean model over *all* unseen
  entries of the normal users (shifted scale), exact, in low-rank form
  (:func:`cfpoison.models.measures.unseen_shift`): every victim exposes factors whose
  product is its prediction (:mod:`cfpoison.victims.base`), third-party ones included;
* ``floor``: the victim's own seed-noise floor, the same quantity between the clean fits of
  seeds ``s_i`` and ``s_(i+1)`` (cyclically), and ``ratio = mean shift / mean floor``
  (NaN, shown as undefined, where the floor is below
  :data:`cfpoison.models.measures.FLOOR_RESOLUTION`: every seed reaches the same optimum);
* the targets' mean predicted rating over the normal users (data set's scale) before and
  after, and the ``push`` (after - before) in stars;
* ``hit``: the fraction of normal users who have not rated a target in training and see it
  among their top ``top_k`` unrated items, before and after;
* test RMSE (data set's scale) of the poisoned fit minus the clean one's;
* against a ``baseline`` profile file: the ratio of the mean shifts, and paired t-tests over
  seeds of the shift and the push.

A victim with ``split_offset`` trains (and is measured) on its own train/test split.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import stats

from cfpoison.config import JsonConfig, require
from cfpoison.data.ratings import Ratings
from cfpoison.errors import DataError
from cfpoison.io import to_jsonable
from cfpoison.models.measures import floor_ratio, hit_ratio, rmse, rmse_shift, target_means
from cfpoison.victims.base import Victim
from cfpoison.victims.fitting import FitJob, family, fit_jobs, victim_seconds
from cfpoison.victims.spec import VictimSpec, check_trains_on

SHIFT_METHOD = "exact over all unseen entries of the normal users (low-rank factors)"

#: The train/test split of a victim's ``split_offset`` (0: the evaluated split).
Splits = Callable[[int], tuple[Ratings, Ratings]]


@dataclasses.dataclass(frozen=True)
class TransferConfig(JsonConfig):
    """Victim seeds, the top-k of the hit ratio, and the confidence level of the intervals."""

    seeds: tuple[int, ...] = (1, 2, 3)
    top_k: int = 10
    confidence: float = 0.95

    def __post_init__(self) -> None:
        require(len(self.seeds) >= 3, f"transfer: give >= 3 victim seeds, got {len(self.seeds)}")
        require(len(set(self.seeds)) == len(self.seeds), "transfer: victim seeds must differ")
        require(self.top_k >= 1, f"transfer: top_k must be >= 1, got {self.top_k}")
        require(0 < self.confidence < 1, "transfer: confidence must be in (0, 1)")


@dataclasses.dataclass
class Measures:
    """Per-seed measurements of one model family (clean, or poisoned by one file).

    ``shift``: against the clean fit of the same seed (for the clean fits: the noise floor);
    ``target_mean``, ``hit``: seeds x targets; ``rmse_test``: seeds.
    """

    shift: np.ndarray
    target_mean: np.ndarray
    hit: np.ndarray
    rmse_test: np.ndarray
    converged: list[bool | None]


@dataclasses.dataclass
class VictimResult:
    """One victim: its clean measures and one :class:`Measures` per profile file;
    ``seconds``: its fits' time, summed (they may have run side by side)."""

    spec: VictimSpec
    skipped: str | None = None
    clean: Measures | None = None
    attacks: dict[str, Measures] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0

    @property
    def fits(self) -> int:
        families = [self.clean, *self.attacks.values()] if self.clean else []
        return sum(len(f.converged) for f in families)

    @property
    def unconverged(self) -> int:
        """Fits that stopped without meeting their tolerance (``None``: no criterion)."""
        families = [self.clean, *self.attacks.values()] if self.clean else []
        return sum(c is False for f in families for c in f.converged)

    @property
    def no_criterion(self) -> bool:
        """Whether the victim runs a fixed number of epochs (no convergence test)."""
        return self.clean is not None and all(c is None for c in self.clean.converged)


@dataclasses.dataclass
class TransferResult:
    """Everything :func:`evaluate_transfer` measured; :meth:`summary` gives the table."""

    config: TransferConfig
    attacks: list[str]
    baseline: str | None
    targets: list[int]
    victims: list[VictimResult]
    shift_method: str = SHIFT_METHOD

    def summary(self, victim: VictimResult, attack: str) -> dict[str, Any]:
        """The row of ``attack`` on ``victim`` (module docstring); means over seeds, ``_ci``
        the half-width of the confidence interval, ``p_*`` the paired tests."""
        clean, poisoned = victim.clean, victim.attacks[attack]
        assert clean is not None
        level = self.config.confidence
        push = (poisoned.target_mean - clean.target_mean).mean(axis=1)
        rmse_change = poisoned.rmse_test - clean.rmse_test
        floor = float(np.mean(clean.shift))
        row: dict[str, Any] = {
            "victim": victim.spec.name,
            "attack": attack,
            "shift": float(np.mean(poisoned.shift)),
            "shift_ci": half_width(poisoned.shift, level),
            "floor": floor,
            "floor_ci": half_width(clean.shift, level),
            "ratio": floor_ratio(float(np.mean(poisoned.shift)), floor),
            "target_before": float(np.mean(clean.target_mean)),
            "target_after": float(np.mean(poisoned.target_mean)),
            "push": float(np.mean(push)),
            "push_ci": half_width(push, level),
            "hit_before": float(np.mean(clean.hit)),
            "hit_after": float(np.mean(poisoned.hit)),
            "rmse_test_change": float(np.mean(rmse_change)),
            "rmse_test_change_ci": half_width(rmse_change, level),
        }
        if self.baseline is not None and attack != self.baseline:
            base = victim.attacks[self.baseline]
            base_push = (base.target_mean - clean.target_mean).mean(axis=1)
            base_shift = float(np.mean(base.shift))
            row["shift_vs_baseline"] = row["shift"] / base_shift if base_shift > 0 else math.inf
            row["p_shift"] = _paired_p(poisoned.shift, base.shift)
            row["p_push"] = _paired_p(push, base_push)
        return row

    def rows(self) -> list[dict[str, Any]]:
        """:meth:`summary` of every attack on every victim that ran."""
        return [self.summary(v, a) for v in self.victims if v.skipped is None for a in self.attacks]

    def to_dict(self) -> dict[str, Any]:
        victims = []
        for v in self.victims:
            entry: dict[str, Any] = {"name": v.spec.name, "spec": v.spec.to_dict()}
            if v.skipped is not None:
                entry["skipped"] = v.skipped
            else:
                assert v.clean is not None
                entry |= {
                    "seconds": v.seconds,
                    "fits": v.fits,
                    "unconverged": v.unconverged,
                    "converged": "n/a (fixed epochs)" if v.no_criterion else v.unconverged == 0,
                    "clean": to_jsonable(dataclasses.asdict(v.clean)),
                    "attacks": {
                        a: to_jsonable(dataclasses.asdict(m)) for a, m in v.attacks.items()
                    },
                }
            victims.append(entry)
        return {
            "config": self.config.to_dict(),
            "shift_method": self.shift_method,
            "attacks": self.attacks,
            "baseline": self.baseline,
            "targets": self.targets,
            "rows": self.rows(),
            "victims": victims,
        }


def half_width(values: np.ndarray, level: float) -> float:
    """Half-width of the t confidence interval of the mean of ``values``."""
    n = len(values)
    if n < 2:
        return math.nan
    sem = float(np.std(values, ddof=1)) / math.sqrt(n)
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * sem


def _paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value (NaN when the differences do not vary)."""
    diff = np.asarray(a) - np.asarray(b)
    if np.ptp(diff) <= 1e-12 * max(1.0, float(np.max(np.abs(diff)))):
        return math.nan
    return float(stats.ttest_rel(a, b).pvalue)


def _measure(
    train: Ratings, test: Ratings, victim: Victim, targets: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, float]:
    means = np.array(target_means(victim, train, targets))
    return means, hit_ratio(train.matrix, victim, targets, k), rmse(victim, test)


def _measures(
    fitted: Sequence[Victim],
    train: Ratings,
    test: Ratings,
    targets: np.ndarray,
    k: int,
    clean: Sequence[Victim] | None,
) -> Measures:
    """Measure the fits of one family (one per seed); shifts against ``clean`` at the same
    seed, or, for the clean family, the cyclic noise floor."""
    if clean is None:
        n = len(fitted)
        shift = [rmse_shift(train.matrix, fitted[(i + 1) % n], fitted[i]) for i in range(n)]
    else:
        shift = [rmse_shift(train.matrix, p, c) for c, p in zip(clean, fitted, strict=True)]
    measured = [_measure(train, test, v, targets, k) for v in fitted]
    return Measures(
        np.array(shift),
        np.array([m[0] for m in measured]),
        np.array([m[1] for m in measured]),
        np.array([m[2] for m in measured]),
        [v.converged for v in fitted],
    )


def evaluate_transfer(
    splits: Splits,
    victims: Sequence[VictimSpec],
    attacks: Mapping[str, sp.csr_array],
    targets: np.ndarray,
    config: TransferConfig,
    *,
    skipped: Mapping[str, str] | None = None,
    baseline: str | None = None,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> TransferResult:
    """Fit every victim clean and poisoned by every profile matrix (``m' x n`` CSR, shifted
    scale, named by ``attacks``) at every seed, and measure (module docstring).

    ``targets`` are column indices of the evaluated split; ``skipped`` maps victims that
    cannot run to the reason (reported, not fitted); ``baseline`` names one of ``attacks``;
    the fits run in ``workers`` processes (:func:`cfpoison.victims.fitting.fit_jobs`: the same
    numbers for any count), ``progress`` is called as each one ends.
    """
    if baseline is not None and baseline not in attacks:
        raise DataError(f"transfer: baseline {baseline!r} is not one of the profile files")
    check_trains_on(victims, "ratings")
    targets = np.asarray(targets, dtype=np.int64)
    reference, _ = splits(0)
    results = [VictimResult(spec, skipped=(skipped or {}).get(spec.name)) for spec in victims]
    running = [r.spec for r in results if r.skipped is None]
    data = {}
    for spec in running:
        data[spec.split_offset] = splits(spec.split_offset)[0]
        if not np.array_equal(data[spec.split_offset].item_ids, reference.item_ids):
            raise DataError(f"victim '{spec.name}': its split has other items")
    jobs = [FitJob(spec, s, a) for spec in running for a in (None, *attacks) for s in config.seeds]
    done = fit_jobs(
        jobs,
        data,
        attacks,
        workers=workers,
        progress=None if progress is None else lambda job: progress(job.label()),
    )
    for result in results:
        if result.skipped is not None:
            continue
        name = result.spec.name
        train, test = splits(result.spec.split_offset)
        clean = family(done, name, config.seeds, None)
        result.clean = _measures(clean, train, test, targets, config.top_k, None)
        for attack in attacks:
            fitted = family(done, name, config.seeds, attack)
            result.attacks[attack] = _measures(fitted, train, test, targets, config.top_k, clean)
        result.seconds = victim_seconds(done, name)
    return TransferResult(
        config,
        list(attacks),
        baseline,
        [int(i) for i in reference.item_ids[targets]],
        results,
    )
