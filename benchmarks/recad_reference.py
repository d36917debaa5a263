"""RecAD (PyPI ``recad``) attacks as an outside reference for cfpoison's promotion attack.

Protocol (ARLib-style): ml-latest-small, cfpoison's train split (``prepare`` with seed 0),
binarised at ratings >= 4 for the targets' draw; 1% fake users (``ceil(0.01 * 610) = 7``),
B = 36 items per fake user (targets included), 5 unpopular targets drawn as cfpoison draws
them (``draw_targets`` with ``default_rng(seed)``; seed 0: movieIds 4267 4802 8968 55577
114074).

recad must live in its own virtual environment (it pins nothing and pulls torch)::

    python3.11 -m venv /tmp/recad/venv && /tmp/recad/venv/bin/pip install recad
    /tmp/recad/venv/bin/pip install higher==0.2.1   # only for aia / aushplus (see below)

This script runs with the system python (cfpoison importable, ``CFPOISON_DATA_DIR`` set):

    CFPOISON_DATA_DIR=/work/shared/data python benchmarks/recad_reference.py --out OUT

1. exports the train split (all ratings, on the data set's 0.5-5 scale) and cfpoison's test
   split to recad's CSV format, ``OUT/data/{train,test}.csv`` with columns
   ``user_id,item_id,rating,timestamp``; user/item indices are cfpoison's rows/columns
   (``OUT/data/users.csv``, ``OUT/data/items.csv`` map them to the data set's ids);
2. runs each attack with ``benchmarks/recad_reference/run_recad.py`` under the venv's python
   (one subprocess per attack, 1 torch thread by default, log in ``OUT/logs/``); with
   ``--victim mf`` (default) recad's own "no defense" workflow also trains its victim on the
   clean and the poisoned data and prints its HR@K table (kept in ``summary.json``);
3. writes each attack's fake users as ``OUT/recad-<attack>.csv`` (``userId,movieId,weight``,
   fake userIds from max real userId + 1, weight 1) and recad's explicit ratings as
   ``OUT/raw/recad-<attack>-ratings.csv``; ``OUT/summary.json`` gathers sizes, timings and
   what recad reported.

What recad does with several targets, and with explicit ratings (read from recad 0.0.2):

* random/average/bandwagon/segment/aia/aushplus give each fake user ONE target: user ``i``
  gets target ``i // int(attack_num / n_targets)``; with 7 users and 5 targets users 0-4 get
  targets 0-4 and users 5-6 get none. aush puts all targets in every fake user.
* fake profiles are explicit ratings; recad's "no defense" workflow injects into its
  implicit victim only the entries ``> 4`` (``fake_array2dict(filter_num=4)``), while the
  real data are binarised at ``>= 4``. ``--keep recad`` (default) writes that injected set;
  ``--keep nonzero`` writes every rated item of a fake user.
* the filler count is set per attack so that a fake user rates at most B items in all:
  ``filler_num = B - (targets per user) - (selected items)``; aush draws its fillers with
  replacement, so its users rate fewer.
* workarounds, none inside recad's algorithms: local CSV paths (recad's own data come from
  Google Drive, unreachable here); ``higher`` installed by hand (aia/aushplus import it, recad
  does not declare it); bandwagon's selected items passed explicitly (see ``main``).

Times on the 2-core machine, 1 thread, MF victim with 30 epochs: random/average/bandwagon/aush
about 2 minutes each, aia (50 epochs) and aushplus (1 epoch) about 5.5 minutes for the attack
alone. One call per group of attacks keeps each call under 15 minutes; calls with the same
--out add to one ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "recad_reference" / "run_recad.py"
ATTACKS = ("random", "average", "bandwagon", "aush", "aia", "aushplus")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--venv-python", default="/tmp/recad/venv/bin/python")
    p.add_argument("--attacks", default=",".join(ATTACKS), help=f"comma list from {ATTACKS}")
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--seed", type=int, default=0, help="cfpoison split and target draw")
    p.add_argument("--alpha", type=float, default=0.01, help="fake users = ceil(alpha * users)")
    p.add_argument("--items-per-user", type=int, default=36, help="B, targets included")
    p.add_argument("--n-targets", type=int, default=5)
    p.add_argument("--feedback", type=float, default=4.0)
    p.add_argument(
        "--selected",
        type=int,
        default=1,
        help="aush/aia/aushplus selected items: this many most-rated train items "
        "(recad's default [62] is an ml1m index); bandwagon keeps recad's own "
        "11 most-rated items",
    )
    p.add_argument(
        "--victim",
        default="mf",
        choices=["none", "mf", "lightgcn", "ncf"],
        help="recad's victim for its own HR@K ('none': only generate profiles)",
    )
    p.add_argument("--rec-epoch", type=int, default=20)
    p.add_argument(
        "--attack-epoch",
        type=int,
        default=None,
        help="default: 50 for aush/aia, 1 for aushplus (one aushplus epoch is 50 surrogate refits)",
    )
    p.add_argument("--keep", choices=["recad", "nonzero"], default="recad")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (2 threads ran 10-30x slower than 1 while another "
        "process loaded the 2-core machine)",
    )
    p.add_argument("--timeout", type=int, default=900, help="seconds per attack")
    return p.parse_args()


def export(args: argparse.Namespace, folder: Path) -> dict:
    from cfpoison.attacks.promotion import draw_targets
    from cfpoison.data.interactions import Interactions
    from cfpoison.data.preprocess import PreprocessConfig, prepare
    from cfpoison.data.registry import load_dataset

    ratings = load_dataset(args.dataset)
    train, test = prepare(ratings, PreprocessConfig(seed=args.seed))
    data = Interactions.from_ratings(train, args.feedback)
    targets = draw_targets(data, args.n_targets, np.random.default_rng(args.seed))
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        rows, cols, vals = part.triples()
        original = part.scale.to_original(vals)
        with open(folder / f"{name}.csv", "w") as f:
            f.write("user_id,item_id,rating,timestamp\n")
            for r, c, v in zip(rows, cols, original, strict=True):
                f.write(f"{r},{c},{v:g},0\n")
    with open(folder / "users.csv", "w") as f:
        f.write("index,userId\n")
        f.writelines(f"{i},{u}\n" for i, u in enumerate(data.user_ids))
    with open(folder / "items.csv", "w") as f:
        f.write("index,movieId\n")
        f.writelines(f"{i},{m}\n" for i, m in enumerate(data.item_ids))
    rows, cols, vals = train.triples()
    counts = np.bincount(cols, minlength=train.n_items)  # ratings per item (any value)
    info = {
        "dataset": args.dataset,
        "seed": args.seed,
        "users": int(data.n_users),
        "items": int(data.n_items),
        "train_ratings": int(train.nnz),
        "train_interactions_ge4": int(data.nnz),
        "test_ratings": int(test.nnz),
        "target_indices": [int(t) for t in targets],
        "target_ids": [int(x) for x in data.item_ids[targets]],
        "target_interactions": [int(x) for x in data.item_counts[targets]],
        "most_rated_indices": [int(i) for i in np.argsort(-counts, kind="stable")[:11]],
        "max_user_id": int(data.user_ids.max()),
    }
    (folder / "export.json").write_text(json.dumps(info, indent=2))
    info["item_ids"] = data.item_ids
    return info


def filler_num(
    attack: str, b: int, n_targets: int, n_selected: int, bandwagon_selected: int
) -> int:
    if attack in ("random", "average", "aia", "aushplus"):
        return b - 1  # one target per fake user
    if attack in ("bandwagon", "segment"):
        return b - 1 - bandwagon_selected
    if attack == "aush":
        return b - n_targets - n_selected
    raise ValueError(attack)


def write_profiles(
    fake: np.ndarray, keep: str, item_ids: np.ndarray, first_user: int, path: Path, raw_path: Path
) -> list[int]:
    sizes = []
    with open(path, "w") as f, open(raw_path, "w") as g:
        f.write("userId,movieId,weight\n")
        g.write("userId,movieId,rating\n")
        for i, row in enumerate(fake):
            uid = first_user + i
            rated = np.flatnonzero(row != 0)
            for c in rated:
                g.write(f"{uid},{item_ids[c]},{row[c]:g}\n")
            kept = np.flatnonzero(row > 4) if keep == "recad" else rated
            sizes.append(len(kept))
            f.writelines(f"{uid},{item_ids[c]},1\n" for c in kept)
    return sizes


def main() -> int:
    args = parse_args()
    out: Path = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "raw").mkdir(exist_ok=True)
    info = export(args, out / "data")
    item_ids = info.pop("item_ids")
    n_fake = math.ceil(args.alpha * info["users"])
    targets = info["target_indices"]
    selected = info["most_rated_indices"][: args.selected]
    print(
        f"exported: {info['users']} users, {info['items']} items, targets {info['target_ids']}"
        f" (columns {targets}), {n_fake} fake users, B = {args.items_per_user}",
        flush=True,
    )
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        OPENBLAS_NUM_THREADS=str(args.threads),
        CUDA_VISIBLE_DEVICES="",
    )
    summary = {
        "export": info,
        "fake_users": n_fake,
        "items_per_user": args.items_per_user,
        "keep": args.keep,
        "attacks": {},
    }
    if (out / "summary.json").exists():  # a later call adds its attacks to an earlier one's
        summary["attacks"] = json.loads((out / "summary.json").read_text()).get("attacks", {})
    for attack in [a.strip() for a in args.attacks.split(",") if a.strip()]:
        fn = filler_num(attack, args.items_per_user, len(targets), len(selected), 11)
        epochs = args.attack_epoch
        if epochs is None:
            epochs = 1 if attack == "aushplus" else 50
        work = out / "work" / attack
        cmd = [
            args.venv_python,
            str(RUNNER),
            "--data",
            str((out / "data").resolve()),
            "--work",
            str(work.resolve()),
            "--attack",
            attack,
            "--attack-num",
            str(n_fake),
            "--filler-num",
            str(fn),
            "--targets",
            *map(str, targets),
            "--victim",
            args.victim,
            "--rec-epoch",
            str(args.rec_epoch),
            "--attack-epoch",
            str(epochs),
            "--threads",
            str(args.threads),
        ]
        if attack in ("aush", "aia", "aushplus"):
            cmd += ["--selected", *map(str, selected)]
        elif attack == "bandwagon":
            # recad's BandwagonAttack.from_config reads the *segment* defaults, whose
            # selected_ids are 11 fixed ml1m indices. With [] it would take the 11 most-rated
            # items itself, but on half-star data its rating array is float and the ids it
            # computes are floats (IndexError in generate_fake); so the same 11 most-rated
            # items are passed as integers.
            cmd += ["--selected", *map(str, info["most_rated_indices"][:11])]
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        log = out / "logs" / f"recad-{attack}.log"
        with open(log, "w") as f:
            try:
                rc = subprocess.run(
                    cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=args.timeout
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        wall = round(time.perf_counter() - t0, 1)
        entry: dict = {
            "command": cmd,
            "returncode": rc,
            "wall_s": wall,
            "filler_num": fn,
            "attack_epoch": epochs,
            "victim": args.victim,
            "rec_epoch": args.rec_epoch,
            "keep": args.keep,
            "log": str(log),
        }
        if rc == 0:
            result = json.loads((work / "result.json").read_text())
            fake = np.load(work / "fake.npy")
            path = out / f"recad-{attack}.csv"
            sizes = write_profiles(
                fake,
                args.keep,
                item_ids,
                info["max_user_id"] + 1,
                path,
                out / "raw" / f"recad-{attack}-ratings.csv",
            )
            tset = set(targets)
            entry.update(
                {
                    "file": str(path),
                    "profile_sizes": sizes,
                    "rated_items_per_user": [int((r != 0).sum()) for r in fake],
                    "targets_per_user_kept": [
                        len(tset & set(np.flatnonzero(r > 4 if args.keep == "recad" else r != 0)))
                        for r in fake
                    ],
                    "recad_printed": result.get("recad_printed"),
                    "hr_pairs": result.get("hr_pairs"),
                    "recad_seconds": result.get("seconds"),
                    "versions": [result.get("recad_version"), result.get("torch_version")],
                }
            )
        else:
            tail = log.read_text().strip().splitlines()[-5:]
            entry["error_tail"] = tail
        summary["attacks"][attack] = entry
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(
            json.dumps({k: v for k, v in entry.items() if k not in ("command", "hr_pairs")}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
