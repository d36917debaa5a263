"""Checkpoints of a gradient attack: its state after every accepted step, so that a killed run
resumes where it stopped (``cfpoison attack --resume``).

A checkpoint belongs to one attack on one data set: its key is the digest of the attack config
and of the training matrix (:func:`checkpoint_key`), and a checkpoint whose key differs is never
read. It holds the iterate, the best iterate, their utilities, the step rule's state, the
history, and everything else the next step depends on (the objective's :class:`Snapshot`,
:meth:`cfpoison.attacks.pga.Objective.snapshot`): the fitted factors of the learner (of every
surrogate or defense fit) with their convergence record, and the adjoint solutions the next
solves warm-start from. On resume those fits are restored without a sweep and the solves start
from the saved adjoints, so a resumed run is the uninterrupted one bit for bit: the same fake
profiles, utilities and history, but for the timing fields (``seconds``). No step draws from the
attack's generator, whose start draws the resumed run replays. A checkpoint written before it
kept the snapshot resumes by refitting the learner at the iterate (warm from the clean model)
with cold adjoint solves, equal to the uninterrupted run to the fits' and solves' tolerances
only. Either result says ``resumed_after_step``.
Written atomically (a temporary file, then a rename): a kill mid-write leaves the last one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from cfpoison.config import digest_of
from cfpoison.data.ratings import IdMatrix
from cfpoison.errors import DataError
from cfpoison.learners.base import CSR_ARRAYS, Snapshot

#: The prefix of the objective snapshot's arrays in the file.
OBJECTIVE = "objective/"


@dataclasses.dataclass
class StepState:
    """A gradient attack after ``iteration`` accepted steps.

    Attributes:
        iteration: accepted steps so far.
        fake, best_fake: the iterate and the best one (shifted scale, CSR).
        value, best_value: their utilities.
        last_step, grow: the step rule's memory (:func:`cfpoison.attacks.pga.run_pga`).
        history: the per-step records so far.
        objective: the objective's state at ``fake`` that the next step starts from (None
            in a checkpoint written before it was kept: resumed by a refit).
    """

    iteration: int
    fake: sp.csr_array
    best_fake: sp.csr_array
    value: float
    best_value: float
    last_step: float
    grow: bool
    history: list[dict[str, Any]]
    objective: Snapshot | None = None


def checkpoint_key(config: dict[str, Any], train: IdMatrix) -> str:
    """The digest of an attack config (as a dict) and the training data it runs on."""
    matrix = train.matrix
    data = hashlib.sha256()
    for array in (matrix.indptr, matrix.indices, matrix.data, np.asarray(matrix.shape)):
        data.update(np.ascontiguousarray(array).tobytes())
    return digest_of({"config": config, "data": data.hexdigest()})


class Checkpoint:
    """The checkpoint file of one attack: ``directory / <key>.npz``."""

    def __init__(self, directory: Path, key: str):
        self.key = key
        self.path = Path(directory) / f"{key}.npz"

    def load(self) -> StepState | None:
        """The saved state, or None when there is none."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                fake, best = (_matrix(saved, name) for name in ("fake", "best_fake"))
                arrays = {
                    name.removeprefix(OBJECTIVE): saved[name]
                    for name in saved.files
                    if name.startswith(OBJECTIVE)
                }
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"checkpoint {self.path} is unreadable ({err}): delete it") from None
        if meta.pop("key") != self.key:
            raise DataError(f"checkpoint {self.path} belongs to another attack: delete it")
        record = meta.pop("objective", None)
        objective = None if record is None else Snapshot(arrays, record)
        return StepState(fake=fake, best_fake=best, objective=objective, **meta)

    def save(self, state: StepState) -> None:
        """Write ``state`` atomically."""
        meta = {
            "key": self.key,
            "iteration": state.iteration,
            "value": state.value,
            "best_value": state.best_value,
            "last_step": state.last_step,
            "grow": state.grow,
            "history": state.history,
            "objective": None if state.objective is None else state.objective.record,
        }
        arrays = {"meta": np.array(json.dumps(meta))}
        for name, matrix in (("fake", state.fake), ("best_fake", state.best_fake)):
            arrays.update(_arrays(name, matrix))
        if state.objective is not None:
            arrays.update({OBJECTIVE + k: a for k, a in state.objective.arrays.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(buffer.getvalue())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        """Remove the checkpoint (the attack finished and its outputs are written)."""
        self.path.unlink(missing_ok=True)


def _arrays(name: str, matrix: sp.csr_array) -> dict[str, np.ndarray]:
    return {f"{name}_{key}": a for key, a in Snapshot.of_matrix(matrix).arrays.items()}


def _matrix(saved: Any, name: str) -> sp.csr_array:
    return Snapshot({key: saved[f"{name}_{key}"] for key in CSR_ARRAYS}, {}).matrix()


__all__ = ["Checkpoint", "StepState", "checkpoint_key"]
