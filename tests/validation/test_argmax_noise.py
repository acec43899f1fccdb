"""The logits verdict compares the argmax only where the reference's top-2 margin is above the bf16 noise of a
sharded reduction (``launch.serve.reference.decided_positions``)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from shardsim.launch.serve.reference import BF16_UNIT_ROUNDOFF, decided_positions  # noqa: E402


def test_a_near_tie_is_not_compared_and_a_clear_winner_is():
    ref = torch.zeros(1, 2, 8)
    ref[0, 0, 3], ref[0, 0, 5] = 10.0, 10.0 - 0.01   # margin 0.01 < 2 × 2⁻⁸ × 10 = 0.078: a tie in bf16
    ref[0, 1, 2], ref[0, 1, 6] = 10.0, 9.0           # margin 1.0: decided
    got = ref.clone()
    got[0, 0, 5] += 0.02                             # the tie flips in the sharded run
    mask = decided_positions(got, ref)
    assert mask.tolist() == [[False, True]]
    assert (got.argmax(-1) != ref.argmax(-1))[0, 0]  # the flip happened, and is not counted


def test_the_bound_grows_with_the_carried_error():
    ref = torch.zeros(1, 1, 4)
    ref[0, 0, 0], ref[0, 0, 1] = 1.0, 0.5            # margin 0.5
    small = ref + 0.01                                # rms 0.01: bound 2 × (2⁻⁸ + 0.01) = 0.028 < 0.5
    assert decided_positions(small, ref).all()
    noisy = ref.clone()
    noisy[0, 0, :] += torch.tensor([0.3, -0.3, 0.3, -0.3])   # rms 0.3: bound 2 × (2⁻⁸ + 0.3) > 0.5
    assert not decided_positions(noisy, ref).any()
    assert BF16_UNIT_ROUNDOFF == torch.finfo(torch.bfloat16).eps / 2


def test_rel_l2_bounds_widen_to_the_references_own_bf16_noise():
    from shardsim.launch.serve.predict import LOGITS_TOLERANCE, LOGITS_TOLERANCE_ANY_POSITION
    from shardsim.launch.serve.reference import noise_tolerances, reference_noise

    exact = torch.zeros(1, 3, 4)
    exact[0, :, 0] = 10.0                                      # ‖fp32‖ = 10 at each position
    bf16 = exact.clone()
    bf16[0, :, 1] = torch.tensor([0.5, 0.8, 1.2])              # 5 %, 8 %, 12 % away from fp32
    noise = reference_noise(bf16, exact)
    assert noise["median_rel_l2"] == pytest.approx(0.08) and noise["max_rel_l2"] == pytest.approx(0.12)
    assert noise_tolerances(noise) == (pytest.approx(0.08), pytest.approx(0.12))
    # a reference close to fp32 keeps the fixed bounds (3 %, 10 %)
    quiet = exact.clone()
    quiet[0, :, 1] = 0.1                                       # 1 %
    assert noise_tolerances(reference_noise(quiet, exact)) == (LOGITS_TOLERANCE, LOGITS_TOLERANCE_ANY_POSITION)


def test_the_widening_stops_at_its_cap_and_at_non_finite_references():
    from shardsim.launch.serve.predict import LOGITS_NOISE_CAP
    from shardsim.launch.serve.reference import noise_tolerances, reference_noise

    assert noise_tolerances({"median_rel_l2": 0.6, "max_rel_l2": 0.9}) == (LOGITS_NOISE_CAP, LOGITS_NOISE_CAP) == (0.25, 0.25)
    exact = torch.ones(1, 2, 4)
    exact[0, 1, 0] = float("inf")
    assert "error" in reference_noise(torch.ones(1, 2, 4), exact)


def test_a_decided_flip_is_settled_only_by_the_fp32_references_own_noise():
    from shardsim.launch.serve.reference import within_reference_noise

    # position 0: fp32 has token 1 ahead of token 0 by 0.02; the bf16 reference moved token 0 up by 0.3 and token 1
    # down by 0.3 (its own error 0.6 ≥ the fp32 gap), ranking 0 first by 0.58: the sharded run's pick (token 1)
    # is within the reference's own noise — here fp32 even agrees with it.
    # position 1: fp32 has token 0 ahead by 0.5; the bf16 reference is off by 0.05 per logit (0.1 < 0.5), so the
    # sharded run's pick (token 1) is a real disagreement.
    ref32 = torch.zeros(1, 2, 4)
    ref32[0, 0, 0], ref32[0, 0, 1] = 5.0, 5.02
    ref32[0, 1, 0], ref32[0, 1, 1] = 5.0, 4.5
    ref = ref32.clone()
    ref[0, 0, 0], ref[0, 0, 1] = 5.3, 4.72
    ref[0, 1, 0], ref[0, 1, 1] = 5.05, 4.45
    got = ref.clone()
    got[0, 0, 1], got[0, 1, 1] = 6.0, 6.0
    assert (got.argmax(-1) != ref.argmax(-1)).all()
    assert within_reference_noise(got, ref, ref32).tolist() == [[True, False]]
    # position 0 again, fp32 now has token 0 ahead by 0.59: within when the reference moved the pair by 0.6, not by 0.4
    ref32[0, 0, 1] = 5.0 - 0.59
    ref[0, 0, 0], ref[0, 0, 1] = 5.3, 4.41 - 0.3     # own error 0.6 against a gap of 0.59: still within
    assert within_reference_noise(got, ref, ref32)[0, 0]
    ref[0, 0, 0], ref[0, 0, 1] = 5.2, 4.41 - 0.2     # own error 0.4 < 0.59: a real disagreement
    assert not within_reference_noise(got, ref, ref32)[0, 0]
