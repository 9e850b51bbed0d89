"""Each SCPL mitigation pinned to hand-computed outcomes on hand-made candidates."""

from __future__ import annotations

import numpy as np
import pytest

from biasloop.config import MitigationConfig
from biasloop.mitigate import MITIGATIONS, CandidateSet, CurationContext, acceptance_rates


def _candidates():
    return [
        CandidateSet(query_id="q1", group="a", prompt="p1", responses=["x", "y"], rewards=[0.2, 0.9]),
        CandidateSet(query_id="q2", group="a", prompt="p2", responses=["x", "y"], rewards=[0.1, 0.3]),
        CandidateSet(query_id="q3", group="a", prompt="p3", responses=["x", "y"], rewards=[0.6, 0.5]),
        CandidateSet(query_id="q4", group="b", prompt="p4", responses=["x", "y"], rewards=[0.7, 0.1]),
    ]


def _context(**overrides):
    return CurationContext(
        config=MitigationConfig(**{"threshold": 0.5, **overrides}), groups=["a", "b"],
        shares={"a": 0.75, "b": 0.25}, target_shares={"a": 0.5, "b": 0.5},
        rng=np.random.default_rng(0),
    )


def test_none_accepts_first_candidate_of_every_query():
    accepted = MITIGATIONS.get("none").curate(_candidates(), _context())
    assert [(a.query_id, a.response) for a in accepted] == [("q1", "x"), ("q2", "x"), ("q3", "x"), ("q4", "x")]


def test_reward_rejection_takes_best_of_k_above_threshold():
    served = _candidates()
    accepted = MITIGATIONS.get("reward_rejection").curate(served, _context())
    assert [(a.query_id, a.response, a.reward) for a in accepted] == [
        ("q1", "y", 0.9), ("q3", "x", 0.6), ("q4", "x", 0.7)]
    assert acceptance_rates(served, accepted, ["a", "b"]) == {"a": pytest.approx(2 / 3), "b": 1.0}


def test_balanced_reward_rejection_holds_group_counts_to_targets():
    # reward rejection accepts 2 of group a and 1 of group b (3 in all); targets 1/2 each:
    # quotas round(1.5) = 2 for each group, so b's single item is drawn again.
    accepted = MITIGATIONS.get("balanced_reward_rejection").curate(_candidates(), _context())
    groups = [a.group for a in accepted]
    assert groups.count("a") == 2 and groups.count("b") == 2
    assert {a.query_id for a in accepted if a.group == "b"} == {"q4"}


def test_random_rejection_matches_reward_rejection_rate_on_average():
    served = _candidates() * 250
    kept = MITIGATIONS.get("random_rejection").curate(served, _context(name="random_rejection"))
    assert len(kept) / len(served) == pytest.approx(3 / 4, abs=0.05)
    assert all(a.response == "x" for a in kept)
    fixed = MITIGATIONS.get("random_rejection").curate(served, _context(
        name="random_rejection", params={"random_rejection": {"acceptance_rate": 0.2}}))
    assert len(fixed) / len(served) == pytest.approx(0.2, abs=0.05)


def test_reweight_gives_inverse_share_weights_with_mean_one():
    # served shares: a = 3/4, b = 1/4; raw w = (0.5/0.75, 0.5/0.25) = (2/3, 2); mean = (3·2/3 + 2)/4 = 1
    accepted = MITIGATIONS.get("reweight").curate(_candidates(), _context())
    assert [a.weight for a in accepted] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
