"""(7) One epoch on the real data: both frameworks learn, and to the same accuracy."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

MIN_ACCURACY = 0.85
MAX_GAP = 0.015  # 1.5 points: different initial draws and float order, the same model and training


def test_both_reach_85_percent_and_agree_within_1_5_points(one_epoch_runs):
    torch_acc = one_epoch_runs["torch"][0]["test_accuracy"]
    flax_acc = one_epoch_runs["flax"][0]["test_accuracy"]
    print(f"\none epoch: torch {100 * torch_acc:.2f}%, flax {100 * flax_acc:.2f}%")
    assert torch_acc >= MIN_ACCURACY and flax_acc >= MIN_ACCURACY
    assert abs(torch_acc - flax_acc) <= MAX_GAP
