"""Run one RecAD (PyPI ``recad``) attack on exported data. Runs in recad's own venv.

Called by ``benchmarks/recad_reference.py``; not part of cfpoison (it imports only recad,
torch, numpy). Uses recad's own classes unchanged: ``recad.dataset.from_config`` with local
CSV paths (so nothing is downloaded), ``recad.model.from_config`` and, with a victim,
``recad.workflow.from_config("no defense", ...).execute()``. The only things added are
observers: the fake array recad generates is saved (``fake.npy``), and, with a victim, the
two models that recad's own ``normal_evaluate`` receives are also scored by a per
(user, target) hit ratio and target rank (``hr_pairs``), next to the table recad prints
itself. (recad 0.0.2's table is not a per-pair hit ratio when there are several targets: in
``user_item_model_generate`` row ``idx + bias`` is overwritten, so rows 0..n_users-1 hold
target 0 only, the last user's other targets follow, and the remaining rows stay 0.)

Writes into --work: ``fake.npy`` (attack_num x n_items, recad's explicit ratings),
``result.json`` (timings, recad's printed metrics, the per-pair hit ratios).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from contextlib import redirect_stdout

import numpy as np


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="folder with train.csv and test.csv")
    p.add_argument("--work", required=True, help="output folder (also recad's cwd)")
    p.add_argument("--attack", required=True)
    p.add_argument("--attack-num", type=int, required=True)
    p.add_argument("--filler-num", type=int, required=True)
    p.add_argument("--targets", type=int, nargs="+", required=True, help="item indices")
    p.add_argument(
        "--selected",
        type=int,
        nargs="*",
        default=None,
        help="selected_ids (bandwagon/segment/aush/aia/aushplus); default recad's",
    )
    p.add_argument("--victim", default="none", choices=["none", "mf", "lightgcn", "ncf"])
    p.add_argument("--rec-epoch", type=int, default=20)
    p.add_argument("--attack-epoch", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--topks", type=int, nargs="+", default=[10, 20, 50, 100])
    p.add_argument("--extra", default="{}", help="JSON dict of more attacker config")
    return p.parse_args()


def main() -> int:
    a = parse_args()
    os.makedirs(a.work, exist_ok=True)
    os.chdir(a.work)  # recad creates ./generated and ./data relative to the cwd
    import torch

    torch.set_num_threads(a.threads)
    import recad
    from recad import dataset, model, utils, workflow

    utils.TQDM = False
    train = os.path.join(a.data, "train.csv")
    test = os.path.join(a.data, "test.csv")
    paths = dict(path_train=train, path_valid=test, path_test=test)
    # "dev" is only a key of recad's registry (it must be one); the paths replace its files.
    attack_data = dataset.from_config("explicit", "dev", **paths, if_cache=False)
    extra = json.loads(a.extra)
    attacker_cfg = dict(attack_num=a.attack_num, filler_num=a.filler_num, **extra)
    if a.selected is not None:
        attacker_cfg["selected_ids"] = list(a.selected)
    attacker = model.from_config("attacker", a.attack, **attacker_cfg)
    targets = list(a.targets)
    result: dict = {
        "recad_version": recad.__version__,
        "torch_version": torch.__version__,
        "device": str(recad.default.DEVICE),
        "attack": a.attack,
        "attacker_config": {k: v for k, v in attacker_cfg.items()},
        "target_indices": targets,
        "victim": a.victim,
        "rec_epoch": a.rec_epoch,
        "attack_epoch": a.attack_epoch,
    }
    saved: dict = {}
    t0 = time.perf_counter()
    if a.victim == "none":
        # recad's workflow step 2 and the fake generation, without the victim steps.
        inst = attacker.I(dataset=attack_data)
        if "train_step" in inst.input_describe():
            for ep in range(a.attack_epoch):
                loss = inst.train_step(target_id_list=targets)
                print(f"attack epoch {ep}: {loss}", flush=True)
        fake = inst.generate_fake(target_id_list=targets)
    else:
        sampling = "pointwise" if a.victim in ("mf", "ncf") else "pairwise"
        victim_data = dataset.from_config(
            "implicit",
            "dev",
            **paths,
            need_graph=a.victim == "lightgcn",
            sample=sampling,
            if_cache=False,
        )
        wf = workflow.from_config(
            "no defense",
            victim_data=victim_data,
            attack_data=attack_data,
            victim=model.from_config("victim", a.victim),
            attacker=attacker,
            rec_epoch=a.rec_epoch,
            attack_epoch=a.attack_epoch,
            target_id_list=targets,
            topks=a.topks,
        )
        original_generate = wf.attacker.generate_fake
        original_evaluate = wf.normal_evaluate

        def generate_fake(**kw):
            out = original_generate(**kw)
            saved["fake"] = np.array(out, copy=True)
            saved["t_fake"] = time.perf_counter() - t0
            return out

        def normal_evaluate(m, m_fake, data, target_id_list, topks):
            saved["hr_pairs"] = pair_hit_ratio(m, m_fake, data, target_id_list, topks)
            buf = io.StringIO()
            with redirect_stdout(buf):
                original_evaluate(m, m_fake, data, target_id_list, topks=topks)
            text = buf.getvalue()
            print(text, flush=True)
            saved["recad_table"] = text
            return None

        wf.attacker.generate_fake = generate_fake
        wf.normal_evaluate = normal_evaluate
        wf.execute()
        fake = saved["fake"]
        result["fake_generated_after_s"] = round(saved["t_fake"], 2)
        result["recad_printed"] = parse_table(saved.get("recad_table", ""))
        result["hr_pairs"] = saved.get("hr_pairs")
    result["seconds"] = round(time.perf_counter() - t0, 2)
    fake = np.asarray(fake, dtype=np.float64)
    np.save(os.path.join(a.work, "fake.npy"), fake)
    result["fake_shape"] = list(fake.shape)
    with open(os.path.join(a.work, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "hr_pairs"}), flush=True)
    return 0


def parse_table(text: str) -> dict:
    """recad prints a tabulate 'fancy_grid' of (name, value) rows."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 2 and cells[0]:
            with contextlib.suppress(ValueError):
                out[cells[0]] = float(cells[1])
    return out


def pair_hit_ratio(m, m_fake, data, target_ids, topks) -> dict:
    """HR@K over (user, target) pairs: the users recad evaluates (no target in their train
    profile), each target ranked among the user's unrated items (recad's candidate set)."""
    import torch

    info = data.info_describe()
    train_dict, n_items = info["train_dict"], info["n_items"]
    users = [u for u, items in train_dict.items() if not set(items) & set(target_ids)]
    names = ("clean", "attacked")
    hits = {name: np.zeros((len(users), len(target_ids), len(topks))) for name in names}
    ranks = {name: np.zeros((len(users), len(target_ids))) for name in names}
    all_items = torch.arange(n_items)
    with torch.no_grad():
        for name, mod in (("clean", m), ("attacked", m_fake)):
            mod.eval()
            for r, u in enumerate(users):
                scores = mod(torch.full_like(all_items, u), all_items).cpu().numpy()
                scores = scores.astype(np.float64)
                scores[list(train_dict[u])] = -np.inf
                for c, t in enumerate(target_ids):
                    # 0-based rank, ties in the target's favour
                    rank = int((scores > scores[t]).sum())
                    hits[name][r, c] = [rank < k for k in topks]
                    ranks[name][r, c] = rank + 1
    out = {"users": len(users), "targets": list(target_ids)}
    for name, rk in ranks.items():
        out[f"{name} mean rank"] = float(rk.mean())
        out[f"{name} median rank per target"] = [float(x) for x in np.median(rk, 0)]
    for name, h in hits.items():
        for i, k in enumerate(topks):
            out[f"{name} HR@{k}"] = float(h[:, :, i].mean())
            out[f"{name} HR@{k} per target"] = [float(x) for x in h[:, :, i].mean(0)]
    return out


if __name__ == "__main__":
    sys.exit(main())
