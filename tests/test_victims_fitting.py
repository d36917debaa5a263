"""``fit_jobs``: a panel's fits in worker processes equal the in-process fits to the bit."""

from __future__ import annotations

import numpy as np

from cfpoison.attacks.promotion import baseline_profiles, draw_targets
from cfpoison.data.interactions import Interactions
from cfpoison.victims.fitting import FitJob, fit_jobs
from cfpoison.victims.spec import VictimSpec


def test_every_implicit_victim_kind_fits_the_same_in_two_workers() -> None:
    """cfpoison's WRMF and BPR, LightGCN and the ``implicit`` library's ALS and BPR (the
    ``victims`` extra, which the test extra installs), clean and poisoned, at two seeds: the
    factors from two spawned one-thread workers equal those fitted here on every core."""
    rng = np.random.default_rng(4)
    m, n = 200, 90
    scores = rng.normal(size=(m, 3)) @ rng.normal(size=(3, n)) - np.linspace(0, 3, n)
    users, items = np.nonzero(scores > 0.5)
    data = Interactions.from_triples(users + 1, items + 1, name="tiny")
    targets = draw_targets(data, 1, rng)
    attacks = {"covisitation": baseline_profiles("covisitation", data, targets, 4, 10, rng)}
    specs = [
        VictimSpec("implicit-als", "implicit-als"),
        VictimSpec("implicit-bpr", "implicit-bpr"),
        VictimSpec("lightgcn", "lightgcn", {"epochs": 2}),
        VictimSpec("wrmf", "wrmf", {"rank": 8}),
        VictimSpec("bpr", "bpr", {"rank": 4}),
    ]
    assert all(spec.missing() is None for spec in specs)
    jobs = [FitJob(s, seed, a) for s in specs for seed in (1, 2) for a in (None, "covisitation")]
    here = fit_jobs(jobs, {0: data}, attacks, workers=1)
    labels: list[str] = []
    spread = fit_jobs(
        jobs, {0: data}, attacks, workers=2, progress=lambda j: labels.append(j.label())
    )
    assert sorted(labels) == sorted(job.label() for job in jobs)
    for job in jobs:
        a, b = here[job.key].victim, spread[job.key].victim
        assert type(a) is type(b) and a.converged == b.converged, job.label()
        np.testing.assert_array_equal(a.user_factors, b.user_factors, err_msg=job.label())
        np.testing.assert_array_equal(a.item_factors, b.item_factors, err_msg=job.label())
        assert spread[job.key].seconds > 0
