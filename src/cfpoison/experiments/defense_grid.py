"""Every defense against every attack: what is left of the attack, and what it costs.

For one data set, learner and seed, with ``P0`` the clean undefended ALS model, ``D(X)`` a
defense applied to data ``X`` (``D(clean)`` sees no fake rows) and ``A(X)`` undefended ALS:

* ``rmse_shift``: footnote 4's shift of ``D(poisoned)`` against ``P0`` on the real users'
  unseen entries; ``rmse_shift_undefended``: of ``A(poisoned)``; ``rmse_shift_noise_floor``:
  between ``P0`` and ALS with seed ``s + 1`` (:func:`cfpoison.models.noise_floor`);
* ``rmse_shift_defense_alone``: ``D(clean)`` against ``P0`` (the defense's own change);
  ``rmse_shift_attack``: ``D(poisoned)`` against ``D(clean)`` (the attack through the defense),
  to be read against ``rmse_shift_noise_floor_defended``, the defense's own seed noise
  (``D(clean)`` with learner seed ``s + 1`` and generator seed ``seed + 1`` against ``D(clean)``);
* ``shift_removed``: ``1 - max(rmse_shift - floor, 0) / (rmse_shift_undefended - floor)``, the
  share of the attack's shift above the floor that the defense removes (``None`` when the
  undefended shift is not above the floor: nothing to remove); ``shift_removed_attack`` the
  same with ``rmse_shift_attack`` above the defended floor (negative: the defended model is
  further off than the undefended one; unstable when the undefended shift is barely above the
  floor);
* ``target_push`` / ``target_push_undefended``: mean over the targets of the mean predicted
  rating over real users, minus ``P0``'s, in stars;
* ``test_rmse_clean`` (``P0``), ``test_rmse_clean_defended`` (``D(clean)``),
  ``test_rmse_poisoned`` (``A(poisoned)``), ``test_rmse_poisoned_defended`` (``D(poisoned)``)
  on the held-out ratings, original scale; ``test_rmse_increase_pct`` the clean cost in %;
* ``removed_fake`` of ``n_fake``, ``removed_real`` (fraction ``removed_real_fraction``) on the
  poisoned data, ``removed_real_clean`` on the clean data; ``seconds`` of ``D(poisoned)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.attacks import AttackConfig, AttackResult, run_attack
from cfpoison.attacks.adaptive import has_adaptive
from cfpoison.attacks.evasion import evade
from cfpoison.data.ratings import Ratings
from cfpoison.defend.defenses import (
    DefenseConfig,
    DetectRemoveConfig,
    PlainFits,
    ScoreFunction,
    defend,
    detector_score,
)
from cfpoison.defend.model import DefendedModel
from cfpoison.errors import ConfigError
from cfpoison.learners import ALSConfig, ALSLearner
from cfpoison.models import noise_floor
from cfpoison.models.measures import rmse, rmse_shift, target_means


def _removed(
    shift: float, undefended: float, floor: float, shift_floor: float | None = None
) -> float | None:
    """Share of ``undefended - floor`` that ``shift`` no longer has above ``shift_floor``
    (default ``floor``); None when the undefended shift is not above the floor."""
    if not undefended > floor:
        return None
    excess = max(shift - (floor if shift_floor is None else shift_floor), 0.0)
    return 1.0 - excess / (undefended - floor)


def _push(train: Ratings, model: DefendedModel, base: DefendedModel, targets: np.ndarray) -> float:
    return float(
        np.mean(
            np.subtract(target_means(model, train, targets), target_means(base, train, targets))
        )
    )


def defense_fits(
    attacks: Mapping[str, Any],
    defenses: Sequence[DefenseConfig],
    only: Mapping[str, str] | None = None,
) -> int:
    """How many progress phases :func:`evaluate_defenses` reports: one per undefended
    attack, per defense on clean data, and per defense x attack evaluated."""
    pairs = sum(1 for d in defenses for a in attacks if not only or only.get(a, d.label) == d.label)
    return len(attacks) + len(defenses) + pairs


def evaluate_defenses(
    train: Ratings,
    test: Ratings,
    attacks: Mapping[str, sp.csr_array],
    defenses: Sequence[DefenseConfig],
    learner: ALSConfig,
    targets: np.ndarray,
    seed: int = 0,
    scores: Mapping[str, ScoreFunction] | None = None,
    clean_fit: ALSLearner | None = None,
    only: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every defense against every attack (metrics of the module docstring).

    ``attacks`` maps a name to fake rows (``m' x n`` CSR, shifted scale); ``targets`` are item
    columns; ``seed`` seeds each defense's generator (bagging); ``scores`` optionally maps a
    detect-and-remove label to its score function; ``clean_fit`` (``learner`` fitted on
    ``train``) is computed when not given; ``only`` maps an attack to the one defense label it
    is evaluated against (an attack made for that defense); ``progress`` is called as each of
    the :func:`defense_fits` fits starts. Returns ``clean`` (undefended numbers),
    ``attacks`` (undefended, per attack) and ``defenses`` (one row per defense x attack).
    """
    if not defenses:
        raise ConfigError("no defenses to evaluate")
    start = time.perf_counter()
    empty = sp.csr_array((0, train.n_items))
    clean_fit = clean_fit or ALSLearner(learner).fit(train)
    clean = DefendedModel.undefended(clean_fit)
    reseeded = learner.replace(seed=learner.seed + 1)
    clean_reseeded = ALSLearner(reseeded).fit(train)
    floor = rmse_shift(train.matrix, clean_fit, clean_reseeded)
    known = PlainFits()
    known.add(clean_fit, train.matrix, empty)
    known.add(clean_reseeded, train.matrix, empty)
    test_clean = rmse(clean, test)
    undefended: dict[str, dict[str, Any]] = {}
    say = progress or (lambda _: None)
    for name, fake in attacks.items():
        say(f"undefended: {name}")
        t0 = time.perf_counter()
        poisoned_fit = ALSLearner(learner).fit(train, fake=fake)
        known.add(poisoned_fit, train.matrix, fake)
        poisoned = DefendedModel.undefended(poisoned_fit)
        undefended[name] = {
            "attack": name,
            "n_fake": int(fake.shape[0]),
            "rmse_shift": rmse_shift(train.matrix, poisoned, clean),
            "target_push": _push(train, poisoned, clean, targets),
            "test_rmse": rmse(poisoned, test),
            "converged": poisoned.converged,
            "seconds": time.perf_counter() - t0,
        }
    rows = []
    for config in defenses:
        label = config.label
        score = (scores or {}).get(label)
        say(f"{label}: clean data, two seeds")
        t0 = time.perf_counter()
        on_clean = defend(train, empty, config, learner, np.random.default_rng(seed), score, known)
        clean_seconds = time.perf_counter() - t0
        test_defended = rmse(on_clean, test)
        alone = rmse_shift(train.matrix, on_clean, clean)
        other = defend(
            train, empty, config, reseeded, np.random.default_rng(seed + 1), score, known
        )
        floor_defended = rmse_shift(train.matrix, other, on_clean)
        for name, fake in attacks.items():
            if only and only.get(name, label) != label:
                continue
            base = undefended[name]
            say(f"{label}: {name}")
            t0 = time.perf_counter()
            model = defend(train, fake, config, learner, np.random.default_rng(seed), score, known)
            seconds = time.perf_counter() - t0
            shift = rmse_shift(train.matrix, model, clean)
            through = rmse_shift(train.matrix, model, on_clean)
            n_fake = int(fake.shape[0])
            rows.append(
                {
                    "name": label,
                    "attack": name,
                    "config": config.to_dict(),
                    "rmse_shift": shift,
                    "rmse_shift_undefended": base["rmse_shift"],
                    "rmse_shift_noise_floor": floor,
                    "rmse_shift_defense_alone": alone,
                    "rmse_shift_attack": through,
                    "rmse_shift_noise_floor_defended": floor_defended,
                    "shift_removed": _removed(shift, base["rmse_shift"], floor),
                    "shift_removed_attack": _removed(
                        through, base["rmse_shift"], floor, floor_defended
                    ),
                    "target_push": _push(train, model, clean, targets),
                    "target_push_undefended": base["target_push"],
                    "test_rmse_clean": test_clean,
                    "test_rmse_clean_defended": test_defended,
                    "test_rmse_increase_pct": 100.0 * (test_defended / test_clean - 1.0),
                    "test_rmse_poisoned": base["test_rmse"],
                    "test_rmse_poisoned_defended": rmse(model, test),
                    "n_fake": n_fake,
                    "removed_fake": int(model.removed_fake.sum()),
                    "removed_real": int(model.removed_real.sum()),
                    "removed_real_fraction": float(model.removed_real.mean()),
                    "removed_real_clean": int(on_clean.removed_real.sum()),
                    "converged": model.converged and on_clean.converged,
                    "seconds": seconds,
                    "seconds_clean": clean_seconds,
                    "info": model.info,
                }
            )
    return {
        "clean": {
            "test_rmse": test_clean,
            "rmse_shift_noise_floor": floor,
            "converged": clean.converged,
            "n_users": train.n_users,
        },
        "attacks": list(undefended.values()),
        "defenses": rows,
        "targets": [int(i) for i in train.item_ids[targets]],
        "learner": learner.to_dict(),
        "seconds": time.perf_counter() - start,
    }


def run_defense_grid(
    train: Ratings,
    test: Ratings,
    attacks: Sequence[AttackConfig],
    defenses: Sequence[DefenseConfig],
    seed: int = 0,
    progress: bool = False,
    scores: Mapping[str, ScoreFunction] | None = None,
    adaptive: bool = False,
) -> dict[str, Any]:
    """Generate each attack with :func:`cfpoison.attacks.run_attack` (all against the same ALS
    learner), then :func:`evaluate_defenses` on them (``scores`` as there); the first attack's
    targets are used.

    ``adaptive``: for the first ``pga`` attack and every defense with an adaptive attacker
    (:func:`cfpoison.attacks.adaptive.has_adaptive`), also PGA against that defense (method
    ``adaptive``, the same settings) and, for detect-and-remove, the PGA profiles projected
    under its threshold after the attack (:func:`cfpoison.attacks.evasion.evade`); each is
    evaluated against its defense only and summed up in ``adaptive`` (:func:`adaptive_rows`).
    """
    if not attacks:
        raise ConfigError("no attacks to run")
    learner = attacks[0].learner
    if not isinstance(learner, ALSConfig) or any(a.learner != learner for a in attacks):
        raise ConfigError("the defense grid needs every attack against the same ALS learner")
    clean = ALSLearner(learner).fit(train)
    floor = noise_floor(train, learner, clean)
    fakes: dict[str, sp.csr_array] = {}
    seconds: dict[str, float] = {}
    targets = np.zeros(0, dtype=np.int64)

    def attack(config: AttackConfig, name: str) -> AttackResult:
        result = run_attack(train, config, test=test, clean=clean, floor=floor, progress=progress)
        fakes[name], seconds[name] = result.fake, result.seconds
        return result

    for config in attacks:
        result = attack(
            config, config.method if config.method not in fakes else _unique(config, fakes)
        )
        if not len(targets):
            targets = train.item_index(np.asarray(result.targets, dtype=np.int64))
    made_for: dict[str, tuple[str, str, str]] = {}  # attack -> (defense label, base, kind)
    pga = next((a for a in attacks if a.method == "pga"), None)
    if adaptive and pga is not None:
        base = "pga"
        for defense in filter(has_adaptive, defenses):
            options = {**pga.options, "defense": defense.to_dict()}
            name = f"{base}~adaptive-{defense.label}"
            attack(pga.replace(method="adaptive", options=options), name)
            made_for[name] = (defense.label, base, "adaptive")
            if isinstance(defense, DetectRemoveConfig):
                score = detector_score(defense.detector)
                name = f"{base}~evade-{defense.label}"
                t0 = time.perf_counter()
                fakes[name] = evade(train, fakes[base], score, defense.fpr).fake
                seconds[name] = seconds[base] + time.perf_counter() - t0
                made_for[name] = (defense.label, base, "evade")
    only = {name: label for name, (label, _, _) in made_for.items()}
    report = evaluate_defenses(
        train, test, fakes, defenses, learner, targets, seed, scores, clean, only
    )
    report["attack_configs"] = [a.to_dict() for a in attacks]
    report["adaptive"] = adaptive_rows(report["defenses"], made_for, seconds)
    return report


def adaptive_rows(
    rows: Sequence[Mapping[str, Any]],
    made_for: Mapping[str, tuple[str, str, str]],
    seconds: Mapping[str, float],
) -> list[dict[str, Any]]:
    """One record per attack made for a defense (``made_for``: attack name -> the defense's
    label, the attack it adapts and its kind, ``adaptive`` or ``evade``), beside that base
    attack against the same defense: the shifts, the floors, the share of the base attack's
    undefended shift above the floor that the defense removes from each, and
    ``benefit_surviving``, the adaptive share over the base share (None when the base share
    is not positive: no benefit to survive)."""
    by_key = {(r["name"], r["attack"]): r for r in rows}
    out = []
    for name, (label, base, kind) in made_for.items():
        plain, made = by_key[(label, base)], by_key[(label, name)]
        floor = plain["rmse_shift_noise_floor"]
        removed = plain["shift_removed"]
        removed_adaptive = _removed(made["rmse_shift"], plain["rmse_shift_undefended"], floor)
        surviving = (
            removed_adaptive / removed
            if removed is not None and removed_adaptive is not None and removed > 0
            else None
        )
        out.append(
            {
                "defense": label,
                "attack": base,
                "adaptive_attack": name,
                "kind": kind,
                "rmse_shift_undefended": plain["rmse_shift_undefended"],
                "rmse_shift_undefended_adaptive": made["rmse_shift_undefended"],
                "rmse_shift_noise_floor": floor,
                "rmse_shift_noise_floor_defended": plain["rmse_shift_noise_floor_defended"],
                "rmse_shift": plain["rmse_shift"],
                "rmse_shift_adaptive": made["rmse_shift"],
                "rmse_shift_attack": plain["rmse_shift_attack"],
                "rmse_shift_attack_adaptive": made["rmse_shift_attack"],
                "shift_removed": removed,
                "shift_removed_adaptive": removed_adaptive,
                "benefit_surviving": surviving,
                "removed_fake": plain["removed_fake"],
                "removed_fake_adaptive": made["removed_fake"],
                "n_fake": plain["n_fake"],
                "seconds_attack": seconds[base],
                "seconds_attack_adaptive": seconds[name],
            }
        )
    return out


def _unique(config: AttackConfig, taken: Mapping[str, Any]) -> str:
    """``method#i``, the first name not yet taken."""
    i = 2
    while f"{config.method}#{i}" in taken:
        i += 1
    return f"{config.method}#{i}"
