"""The built-in cell runner ``attack``: one :func:`cfpoison.attacks.run_attack` per cell.

A cell's config is ``{"dataset", "preprocess", "attack", "detect", "runner"}``: the data set's
name, its :class:`PreprocessConfig`, the full :class:`AttackConfig` and whether to run the
detectors on the fake profiles, every default filled in, so its SHA-256 names the experiment.

Flat settings (TOML keys, ``--set``/``--grid`` names; :data:`SETTINGS`, derived from the config
classes; ``cfpoison attack``'s flags are the same names, ``_`` written ``-``): ``dataset``,
``preprocess.FIELD``, ``detect`` (bool); ``learner`` (``als`` or ``nuclear``) and
``learner.FIELD``; AttackConfig's own fields by name (``method``, ``iterations``, ``seed``,
...), then the threat model's (``alpha``, ``items_per_user``, ``max_rating``,
``item_selection``) and the utility's (``mu1``, ``mu2``, ``targets``, ``weights``);
``attack.X.Y`` for anything nested; ``beta`` and ``sgld.FIELD`` (``method = "sgld"`` only; its
steps are ``iterations``).

``seed`` seeds the attack and, unless ``learner.seed`` is set, the learner's initialisation.
The learner's ``threads`` is an execution setting: workers override it
(``RunContext.threads``) without changing the key. With a ``RunContext.cache_dir`` the clean
fit and the noise floor come from the sweep's cache (:mod:`cfpoison.experiments.shared_fits`):
the same metrics, each clean model fitted once.

Metrics are :func:`cfpoison.attacks.metrics.evaluate_profiles`'s, the per-target lists renamed
``target_means_before`` / ``target_means_after`` and the singular names holding their mean,
plus ``rmse_shift_stars`` and ``rmse_shift_noise_floor_stars`` (in the data set's rating
units), ``seconds``, ``targets`` and, with ``detect``, ``detection``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cfpoison.attacks.engine import AttackConfig, attack_settings, method_options, run_attack
from cfpoison.attacks.sgld import SGLDConfig
from cfpoison.config import digest_of, set_path, settings_of
from cfpoison.data.preprocess import PreprocessConfig, prepare
from cfpoison.data.ratings import SHIFTED_HIGH, SHIFTED_LOW, Ratings
from cfpoison.data.registry import CSV_PREFIX, load_dataset, ratings_path, synthetic_preset
from cfpoison.data.synthetic import PRESETS
from cfpoison.detect import run_detectors
from cfpoison.errors import ConfigError
from cfpoison.experiments.shared_fits import clean_and_floor
from cfpoison.experiments.sweeps.cache import Cache
from cfpoison.experiments.sweeps.runners import CellOutcome, RunContext
from cfpoison.experiments.sweeps.spec import Cell

#: The flat settings a cell takes (besides ``dataset``, ``detect``, ``beta``, ``sgld.*`` and
#: ``attack.*``), derived from the configs: the same names as ``cfpoison attack``'s flags.
SETTINGS = {**attack_settings(skip=("options",)), **settings_of(PreprocessConfig, "preprocess.")}


class AttackRunner:
    """See the module docstring."""

    def normalize(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        dataset, detect = "ml-latest-small", False
        attack: dict[str, Any] = {}
        for name, value in settings.items():
            head, _, rest = name.partition(".")
            if name == "dataset":
                dataset = str(value)
            elif name == "detect":
                detect = value
            elif name in SETTINGS:
                set_path(attack, SETTINGS[name].path, value)
            elif head == "attack" and rest:
                set_path(attack, rest, value)
            elif name == "beta":
                set_path(attack, "options.beta", value)
            elif head == "sgld" and rest:
                set_path(attack, f"options.{rest}", value)
            else:
                raise ConfigError(f"attack runner: unknown setting {name!r}")
        preprocess = attack.pop("preprocess", {})
        if not isinstance(detect, bool):
            raise ConfigError(f"detect: expected true or false, got {detect!r}")
        learner = attack.setdefault("learner", {})
        learner.setdefault("name", "als")
        learner.setdefault("seed", attack.get("seed", 0))
        config = AttackConfig.from_dict(attack)
        config = config.replace(options=_method_options(config))
        return {
            "dataset": dataset,
            "preprocess": PreprocessConfig.from_dict(preprocess).to_dict(),
            "attack": config.to_dict(),
            "detect": detect,
        }

    def run(self, config: Mapping[str, Any], context: RunContext) -> CellOutcome:
        dataset, preprocess = config["dataset"], config["preprocess"]
        train, test = prepared(dataset, preprocess, context.data_dir)
        attack = AttackConfig.from_dict(config["attack"])
        if context.threads:
            attack = attack.replace(learner=attack.learner.replace(threads=context.threads))
        clean, floor = None, None
        if context.cache_dir is not None:
            data = {
                "sha256": data_checksum(dataset, context.data_dir)["sha256"],
                "preprocess": preprocess,
            }
            clean, floor = clean_and_floor(Cache(context.cache_dir), data, attack.learner, train)
        result = run_attack(train, attack, test=test, clean=clean, floor=floor)
        metrics = dict(result.metrics)
        for when in ("before", "after"):
            means = metrics.pop(f"target_mean_{when}")
            metrics[f"target_means_{when}"] = means
            metrics[f"target_mean_{when}"] = float(np.mean(means)) if means else None
        stars = (train.scale.high - train.scale.low) / (SHIFTED_HIGH - SHIFTED_LOW)
        for name in ("rmse_shift", "rmse_shift_noise_floor"):
            metrics[f"{name}_stars"] = metrics[name] * stars
        metrics.update(
            seconds=result.seconds,
            targets=result.targets,
            untrustworthy_gradients=result.untrustworthy_gradients,
        )
        if config["detect"]:
            metrics["detection"] = run_detectors(train, result.fake).to_dict()
        return CellOutcome(metrics, {"iterations": result.history, "info": result.info})

    def provenance(self, cells: Sequence[Cell], context: RunContext) -> list[dict[str, Any]]:
        """Per distinct data set and preprocessing: the source's checksum and the sizes."""
        seen: dict[str, dict[str, Any]] = {}
        for cell in cells:
            dataset, preprocess = cell.config["dataset"], cell.config["preprocess"]
            key = digest_of([dataset, preprocess])
            if key not in seen:
                train, test = prepared(dataset, preprocess, context.data_dir)
                seen[key] = {
                    "dataset": dataset,
                    **data_checksum(dataset, context.data_dir),
                    "preprocess": json.dumps(preprocess, sort_keys=True),
                    "users": train.n_users,
                    "items": train.n_items,
                    "train ratings": train.nnz,
                    "test ratings": test.nnz,
                }
        return list(seen.values())


def _method_options(config: AttackConfig) -> dict[str, Any]:
    """The method's options as stored in the cell: SGLD's with every default filled in (its
    T is the attack's ``iterations``), another method's as given (checked when the config
    was built: :func:`cfpoison.attacks.engine.method_options`)."""
    options = method_options(config)
    if isinstance(options, SGLDConfig):
        full = options.to_dict()
        del full["iterations"]
        return full
    return dict(config.options)


def prepared(
    dataset: str, preprocess: Mapping[str, Any], data_dir: str | None
) -> tuple[Ratings, Ratings]:
    """The preprocessed (train, test) of a data set, cached per process (cells share it)."""
    return _prepared(dataset, json.dumps(preprocess, sort_keys=True), data_dir)


@functools.lru_cache(maxsize=4)
def _prepared(dataset: str, preprocess: str, data_dir: str | None) -> tuple[Ratings, Ratings]:
    raw = load_dataset(dataset, Path(data_dir) if data_dir else None)
    return prepare(raw, PreprocessConfig.from_json(preprocess))


@functools.lru_cache(maxsize=8)
def data_checksum(dataset: str, data_dir: str | None) -> dict[str, str]:
    """The source of a data set and its SHA-256: of the ratings file, or of the synthetic
    generator's config when there is no file (read once per process)."""
    preset = synthetic_preset(dataset)
    if preset is not None:
        return {"source": f"synthetic preset {preset!r}", "sha256": PRESETS[preset].digest()}
    if dataset.startswith(CSV_PREFIX):
        path = Path(dataset[len(CSV_PREFIX) :]).expanduser()
    else:
        path = ratings_path(dataset, Path(data_dir) if data_dir else None, download=False)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"source": str(path), "sha256": digest.hexdigest()}


RUNNER = AttackRunner()
