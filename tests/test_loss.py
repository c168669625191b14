"""Tests for `sdar_trl.loss`: hand-computed values and gradients, masking, detachment, edge cases, properties.

Every expected number is written out with its arithmetic (math.exp and a hand-rolled sigmoid), never
obtained by calling the function under test.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sdar_trl.loss import (
    compute_gate,
    compute_opsd_loss,
    compute_rlsd_advantages,
    compute_rlsd_weight,
    compute_sdar_loss,
    compute_skill_sd_loss,
    masked_mean,
)


def sig(x):
    """Logistic sigmoid by hand."""
    return 1.0 / (1.0 + math.exp(-x))


def approx(value):
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def assert_tensor(actual, expected, **kwargs):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), **kwargs)


# Shared (B, T) = (2, 3) example in float64. Position [1, 2] is masked (padding), so N = 5 tokens count.
LS = [[-1.0, -2.0, -0.5], [-0.3, -1.5, -2.5]]  # student log-probs lS
LT = [[-1.2, -1.0, -0.5], [-0.1, -3.0, -2.0]]  # teacher log-probs lT
LOLD = [[-1.1, -2.0, -0.7], [-0.3, -1.0, -2.5]]  # rollout-time student log-probs (Skill-SD)
MASK = [[1, 1, 1], [1, 1, 0]]
# Δ = lT − lS = [[-0.2, 1.0, 0.0], [0.2, -1.5, 0.5 (masked)]]
N = 5


def example(dtype=torch.float64, mask_dtype=torch.long):
    student = torch.tensor(LS, dtype=dtype, requires_grad=True)
    teacher = torch.tensor(LT, dtype=dtype, requires_grad=True)  # requires grad on purpose: must get none
    old = torch.tensor(LOLD, dtype=dtype, requires_grad=True)
    mask = torch.tensor(MASK).to(mask_dtype)
    return student, teacher, old, mask


def run_loss(name, student, teacher, old, mask, **kwargs):
    if name == "sdar":
        return compute_sdar_loss(student, teacher, mask, **kwargs)
    if name == "opsd":
        return compute_opsd_loss(student, teacher, mask, **kwargs)
    if name == "skill_sd":
        return compute_skill_sd_loss(student, teacher, old, mask, **kwargs)
    raise AssertionError(name)


LOSSES = ["sdar", "opsd", "skill_sd"]


# ---------------------------------------------------------------- masked_mean
class TestMaskedMean:
    def test_value_and_gradient(self):
        values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64, requires_grad=True)
        mask = torch.tensor([[1, 0, 1], [0, 0, 1]])
        out = masked_mean(values, mask)
        # (1 + 3 + 6) / 3 = 10 / 3
        assert out.item() == approx(10.0 / 3.0)
        out.backward()
        # d/dv = mask / 3
        assert_tensor(values.grad, [[1 / 3, 0.0, 1 / 3], [0.0, 0.0, 1 / 3]])

    @pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32, torch.float64, torch.long, torch.int32])
    def test_mask_dtypes_agree(self, mask_dtype):
        values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        mask = torch.tensor([[True, False, True], [False, False, True]]).to(mask_dtype)
        out = masked_mean(values, mask)
        assert out.dtype == torch.float32
        assert out.item() == pytest.approx(10.0 / 3.0)

    def test_empty_mask_is_zero_with_graph(self):
        values = torch.tensor([[1.0, -2.0], [3.0, 4.0]], requires_grad=True)
        out = masked_mean(values, torch.zeros(2, 2, dtype=torch.bool))
        assert out.item() == 0.0
        assert out.requires_grad
        out.backward()
        assert torch.equal(values.grad, torch.zeros(2, 2))

    def test_masked_values_are_ignored(self):
        mask = torch.tensor([[1, 0], [0, 1]])
        a = masked_mean(torch.tensor([[1.0, 100.0], [-7.0, 3.0]]), mask)
        b = masked_mean(torch.tensor([[1.0, -1e6], [1e6, 3.0]]), mask)
        # (1 + 3) / 2 = 2
        assert a.item() == b.item() == 2.0

    def test_shape_mismatch_raises(self):
        # A broadcastable (B, 1) mask would silently divide by the wrong token count.
        with pytest.raises(ValueError, match=re.escape("(2, 3)")) as info:
            masked_mean(torch.ones(2, 3), torch.ones(2, 1))
        assert "(2, 1)" in str(info.value)


# ---------------------------------------------------------------- compute_gate
class TestComputeGate:
    def test_values(self):
        student, teacher, _, _ = example()
        gate = compute_gate(student, teacher, gate_beta=5.0)
        # g = sigmoid(5 · Δ), Δ = [[-0.2, 1.0, 0.0], [0.2, -1.5, 0.5]]
        expected = [[sig(-1.0), sig(5.0), 0.5], [sig(1.0), sig(-7.5), sig(2.5)]]
        assert_tensor(gate, expected)

    def test_no_gradient(self):
        student, teacher, _, _ = example()
        gate = compute_gate(student, teacher, gate_beta=5.0)
        assert not gate.requires_grad
        assert gate.grad_fn is None
        # Using the gate in a graph must not route gradient into the gate's inputs.
        (gate * student).sum().backward()
        assert teacher.grad is None
        assert_tensor(student.grad, [[sig(-1.0), sig(5.0), 0.5], [sig(1.0), sig(-7.5), sig(2.5)]])

    def test_beta_zero_is_exactly_half(self):
        student = torch.tensor([[-1e6, 0.0, -3.0], [-0.5, -20.0, -1e-7]], requires_grad=True)
        teacher = torch.tensor([[0.0, -1e6, -3.0], [-40.0, -0.1, 0.0]])
        gate = compute_gate(student, teacher, gate_beta=0.0)
        assert torch.equal(gate, torch.full((2, 3), 0.5))

    def test_large_beta_approaches_step(self):
        student = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
        teacher = torch.tensor([[-0.5, -1.5]], dtype=torch.float64)
        gate = compute_gate(student, teacher, gate_beta=50.0)
        # sigmoid(±25): 1/(1+e^-25) ≈ 1 − 1.4e-11, 1/(1+e^25) ≈ 1.4e-11
        assert_tensor(gate, [[sig(25.0), sig(-25.0)]])
        assert gate[0, 0] > 1 - 1e-10 and gate[0, 1] < 1e-10

    def test_shape_mismatch_raises(self):
        with pytest.raises(ValueError, match=re.escape("(2, 3)")):
            compute_gate(torch.zeros(2, 3), torch.zeros(2, 1), gate_beta=5.0)


# ---------------------------------------------------------------- compute_sdar_loss
class TestSDARLoss:
    def test_value_gradient_and_stats(self):
        student, teacher, _, mask = example()
        loss, stats = compute_sdar_loss(student, teacher, mask, gate_beta=5.0)
        # g = sigmoid(5Δ) on the 5 unmasked tokens, Δ = [-0.2, 1.0, 0.0, 0.2, -1.5]:
        # L = (sig(-1)·(-0.2) + sig(5)·1.0 + 0.5·0.0 + sig(1)·0.2 + sig(-7.5)·(-1.5)) / 5
        expected = (sig(-1.0) * -0.2 + sig(5.0) * 1.0 + 0.5 * 0.0 + sig(1.0) * 0.2 + sig(-7.5) * -1.5) / 5
        assert loss.item() == approx(expected)
        loss.backward()
        # dL/dlS = −g / N on unmasked tokens (the gate is a constant: no dg/dlS term), 0 on the masked one.
        expected_grad = [
            [-sig(-1.0) / 5, -sig(5.0) / 5, -0.5 / 5],
            [-sig(1.0) / 5, -sig(-7.5) / 5, 0.0],
        ]
        assert_tensor(student.grad, expected_grad)
        assert student.grad[1, 2].item() == 0.0
        # Teacher is a target: no gradient reaches it.
        assert teacher.grad is None
        # gate_mean = (sig(-1) + sig(5) + 0.5 + sig(1) + sig(-7.5)) / 5; sig(-1) + sig(1) = 1
        assert stats["gate_mean"].item() == approx((1.0 + sig(5.0) + 0.5 + sig(-7.5)) / 5)
        # g > 0.5 strictly only where Δ > 0: Δ = 1.0 and Δ = 0.2 → 2 / 5 (Δ = 0 gives g = 0.5, not active;
        # the masked Δ = 0.5 is not counted).
        assert stats["gate_active_ratio"].item() == approx(2 / 5)
        # mean Δ = (-0.2 + 1.0 + 0.0 + 0.2 - 1.5) / 5 = -0.1
        assert stats["teacher_gap_mean"].item() == approx(-0.1)

    def test_gradient_differs_from_undetached_gate(self):
        # Guard against a gate that leaks gradient: with g = sigmoid(β(lT − lS)) differentiable, the token
        # gradient would be −g − β·g(1−g)·Δ; at Δ = 1.0, β = 5 that is −sig(5) − 5·sig(5)·sig(-5), not −sig(5).
        student = torch.tensor([[-2.0]], dtype=torch.float64, requires_grad=True)
        teacher = torch.tensor([[-1.0]], dtype=torch.float64)
        loss, _ = compute_sdar_loss(student, teacher, torch.ones(1, 1), gate_beta=5.0)
        loss.backward()
        assert student.grad.item() == approx(-sig(5.0))
        assert student.grad.item() != pytest.approx(-sig(5.0) - 5 * sig(5.0) * sig(-5.0))

    def test_default_beta_is_five(self):
        student, teacher, _, mask = example()
        loss_default, _ = compute_sdar_loss(student, teacher, mask)
        loss_five, _ = compute_sdar_loss(student, teacher, mask, gate_beta=5.0)
        assert loss_default.item() == loss_five.item()

    def test_beta_zero_is_constant_half_gate(self):
        student, teacher, _, mask = example()
        loss, stats = compute_sdar_loss(student, teacher, mask, gate_beta=0.0)
        # g ≡ 0.5: L = 0.5 · mean(Δ) = 0.5 · (-0.1) = -0.05; dL/dlS = -0.5 / 5 = -0.1
        assert loss.item() == approx(-0.05)
        assert stats["gate_mean"].item() == 0.5
        assert stats["gate_active_ratio"].item() == 0.0
        loss.backward()
        assert_tensor(student.grad, [[-0.1, -0.1, -0.1], [-0.1, -0.1, 0.0]])

    def test_stats_are_detached_tensors(self):
        student, teacher, _, mask = example()
        _, stats = compute_sdar_loss(student, teacher, mask)
        assert set(stats) == {"gate_mean", "gate_active_ratio", "teacher_gap_mean"}
        for name, value in stats.items():
            assert isinstance(value, torch.Tensor), name
            assert value.shape == (), name
            assert not value.requires_grad, name

    def test_float32_keeps_dtype(self):
        student, teacher, _, mask = example(dtype=torch.float32)
        loss, stats = compute_sdar_loss(student, teacher, mask)
        assert loss.dtype == torch.float32
        assert all(v.dtype == torch.float32 for v in stats.values())
        expected = (sig(-1.0) * -0.2 + sig(5.0) * 1.0 + sig(1.0) * 0.2 + sig(-7.5) * -1.5) / 5
        assert loss.item() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- compute_opsd_loss
class TestOPSDLoss:
    def test_value_gradient_and_stats(self):
        student, teacher, _, mask = example()
        loss, stats = compute_opsd_loss(student, teacher, mask)
        # per token sg(lS − lT) · lS on the unmasked tokens:
        # (0.2)(-1.0) + (-1.0)(-2.0) + (0.0)(-0.5) + (-0.2)(-0.3) + (1.5)(-1.5)
        # = -0.2 + 2.0 + 0.0 + 0.06 - 2.25 = -0.39;  L = -0.39 / 5 = -0.078
        assert loss.item() == approx(-0.078)
        loss.backward()
        # dL/dlS = (lS − lT) / N: [0.2, -1.0, 0.0, -0.2, 1.5] / 5, masked 0
        assert_tensor(student.grad, [[0.04, -0.2, 0.0], [-0.04, 0.3, 0.0]])
        assert student.grad[1, 2].item() == 0.0
        assert teacher.grad is None
        # teacher_gap_mean = mean(lT − lS) = -0.1; reverse_kl = mean(lS − lT) = 0.1
        assert stats["teacher_gap_mean"].item() == approx(-0.1)
        assert stats["reverse_kl"].item() == approx(0.1)
        for value in stats.values():
            assert value.shape == () and not value.requires_grad


# ---------------------------------------------------------------- compute_skill_sd_loss
# Per unmasked token (lS − l_old, Δ = lT − lS):
#   t1: ( 0.1, -0.2)   t2: (0.0, 1.0)   t3: (0.2, 0.0)   t4: (0.0, 0.2)   t5: (-0.5, -1.5)
SKILL_RHO = [math.exp(0.1), 1.0, math.exp(0.2), 1.0, math.exp(-0.5)]  # ρ = exp(lS − l_old)
SKILL_DELTA = [-0.2, 1.0, 0.0, 0.2, -1.5]
SKILL_K3 = [math.exp(d) - 1.0 - d for d in SKILL_DELTA]  # k3 = exp(Δ) − 1 + (lS − lT) = exp(Δ) − 1 − Δ


class TestSkillSDLoss:
    def test_value_gradient_and_stats(self):
        student, teacher, old, mask = example()
        loss, stats = compute_skill_sd_loss(student, teacher, old, mask)
        # k3 = [e^-0.2 − 0.8, e − 2, 0, e^0.2 − 1.2, e^-1.5 + 0.5]
        assert SKILL_K3[0] == approx(math.exp(-0.2) - 0.8)
        assert SKILL_K3[1] == approx(math.e - 2.0)
        # L = Σ ρ·k3 / 5
        expected = sum(r * k for r, k in zip(SKILL_RHO, SKILL_K3, strict=True)) / 5
        assert loss.item() == approx(expected)
        loss.backward()
        # d(ρ·k3)/dlS = (dρ/dlS)·k3 + ρ·(dk3/dlS) = ρ·k3 + ρ·(1 − exp(Δ))   (ρ = e^{lS − l_old}, k3 = e^Δ − 1 − Δ)
        grads = [r * k + r * (1.0 - math.exp(d)) for r, k, d in zip(SKILL_RHO, SKILL_K3, SKILL_DELTA, strict=True)]
        # which simplifies to ρ·(lS − lT) = −ρ·Δ
        assert grads == [approx(-r * d) for r, d in zip(SKILL_RHO, SKILL_DELTA, strict=True)]
        expected_grad = [[g / 5 for g in grads[:3]], [grads[3] / 5, grads[4] / 5, 0.0]]
        assert_tensor(student.grad, expected_grad)
        assert student.grad[1, 2].item() == 0.0
        assert teacher.grad is None
        assert old.grad is None
        assert stats["teacher_gap_mean"].item() == approx(-0.1)
        assert stats["k3_mean"].item() == approx(sum(SKILL_K3) / 5)
        assert stats["rho_mean"].item() == approx(sum(SKILL_RHO) / 5)
        for value in stats.values():
            assert value.shape == () and not value.requires_grad

    def test_clamps(self):
        # t1: lS − l_old = 12 > 10 → ρ = e^10 (clamped, so no dρ/dlS); Δ = lT − lS = 0.5 → k3 = e^0.5 − 1.5
        # t2: lS − l_old = 0 → ρ = 1; Δ = 25 > 20 → exp clamped: k3 = e^20 − 1 − 25, dk3/dlS = 1 (linear term only)
        student = torch.tensor([[-1.0, -30.0]], dtype=torch.float64, requires_grad=True)
        teacher = torch.tensor([[-0.5, -5.0]], dtype=torch.float64)
        old = torch.tensor([[-13.0, -30.0]], dtype=torch.float64)
        loss, stats = compute_skill_sd_loss(student, teacher, old, torch.ones(1, 2))
        k3 = [math.exp(0.5) - 1.5, math.exp(20.0) - 1.0 - 25.0]
        rho = [math.exp(10.0), 1.0]
        assert loss.item() == approx((rho[0] * k3[0] + rho[1] * k3[1]) / 2)
        loss.backward()
        # t1: ρ·dk3/dlS = e^10·(1 − e^0.5); t2: dρ/dlS·k3 + ρ·1 = k3 + 1
        expected_grad = [math.exp(10.0) * (1.0 - math.exp(0.5)) / 2, (k3[1] + 1.0) / 2]
        assert_tensor(student.grad, [expected_grad])
        assert stats["rho_mean"].item() == approx((math.exp(10.0) + 1.0) / 2)

    def test_custom_clamp_limits(self):
        student = torch.tensor([[-4.0]], dtype=torch.float64)
        teacher = torch.tensor([[-1.0]], dtype=torch.float64)  # Δ = 3
        old = torch.tensor([[-6.0]], dtype=torch.float64)  # lS − l_old = 2
        loss, _ = compute_skill_sd_loss(student, teacher, old, torch.ones(1, 1), max_log_ratio=1.0, max_log_gap=2.0)
        # ρ = e^min(2, 1) = e; k3 = e^min(3, 2) − 1 − 3 = e^2 − 4
        assert loss.item() == approx(math.e * (math.exp(2.0) - 4.0))

    def test_on_policy_gradient_equals_opsd(self):
        # With l_old = sg(lS), ρ = 1 in value but dρ/dlS = ρ, so d(ρ·k3)/dlS = k3 + 1 − e^Δ = lS − lT:
        # the same per-token gradient as the OPSD surrogate.
        student, teacher, _, mask = example()
        loss, _ = compute_skill_sd_loss(student, teacher, student.detach(), mask)
        loss.backward()
        assert_tensor(student.grad, [[0.04, -0.2, 0.0], [-0.04, 0.3, 0.0]])


# ---------------------------------------------------------------- shared loss behaviour
class TestLossContracts:
    @pytest.mark.parametrize("name", LOSSES)
    def test_masked_positions_do_not_matter(self, name):
        s1, t1, o1, mask = example()
        s2, t2, o2, _ = example()
        with torch.no_grad():  # rewrite only the masked position [1, 2] with extreme values
            s2[1, 2], t2[1, 2], o2[1, 2] = -1e6, 0.0, -123.0
        loss1, stats1 = run_loss(name, s1, t1, o1, mask)
        loss2, stats2 = run_loss(name, s2, t2, o2, mask)
        assert torch.equal(loss1, loss2)
        for key in stats1:
            assert torch.equal(stats1[key], stats2[key]), key
        loss1.backward()
        loss2.backward()
        assert torch.equal(s1.grad, s2.grad)
        assert s1.grad[1, 2].item() == 0.0 and s2.grad[1, 2].item() == 0.0

    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("bad_value", [float("inf"), float("-inf"), float("nan")])
    def test_non_finite_padding_does_not_leak(self, name, bad_value):
        # Padding positions may hold garbage: they must not turn the loss or the gradient into nan.
        s1, t1, o1, mask = example()
        s2, t2, o2, _ = example()
        with torch.no_grad():
            s2[1, 2], t2[1, 2], o2[1, 2] = bad_value, bad_value, bad_value
        loss1, _ = run_loss(name, s1, t1, o1, mask)
        loss2, _ = run_loss(name, s2, t2, o2, mask)
        assert torch.equal(loss1, loss2)
        loss2.backward()
        assert torch.isfinite(s2.grad).all()

    @pytest.mark.parametrize("name", LOSSES)
    @pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int32, torch.float32, torch.float64])
    def test_mask_dtypes_agree(self, name, mask_dtype):
        s1, t1, o1, mask_long = example()
        s2, t2, o2, mask_other = example(mask_dtype=mask_dtype)
        loss1, stats1 = run_loss(name, s1, t1, o1, mask_long)
        loss2, stats2 = run_loss(name, s2, t2, o2, mask_other)
        assert loss1.item() == approx(loss2.item())
        for key in stats1:
            assert stats1[key].item() == approx(stats2[key].item()), key
        loss1.backward()
        loss2.backward()
        torch.testing.assert_close(s1.grad, s2.grad)

    @pytest.mark.parametrize("name", LOSSES)
    def test_all_masked_batch(self, name):
        student, teacher, old, _ = example()
        mask = torch.zeros(2, 3, dtype=torch.bool)
        loss, stats = run_loss(name, student, teacher, old, mask)
        assert loss.item() == 0.0
        assert torch.isfinite(loss)
        assert loss.requires_grad
        loss.backward()
        assert torch.equal(student.grad, torch.zeros(2, 3, dtype=torch.float64))
        for key, value in stats.items():
            assert torch.isfinite(value), key
            assert value.item() == 0.0, key

    @pytest.mark.parametrize("name", LOSSES)
    def test_teacher_gets_no_gradient_even_if_it_requires_grad(self, name):
        student, teacher, old, mask = example()
        loss, _ = run_loss(name, student, teacher, old, mask)
        loss.backward()
        assert teacher.grad is None or torch.count_nonzero(teacher.grad) == 0
        assert old.grad is None or torch.count_nonzero(old.grad) == 0

    @pytest.mark.parametrize(
        ("name", "bad"),
        [(name, bad) for name in LOSSES for bad in ("student", "teacher", "mask")] + [("skill_sd", "old")],
    )
    def test_shape_mismatch_raises(self, name, bad):
        tensors = {"student": torch.zeros(2, 3), "teacher": torch.zeros(2, 3), "old": torch.zeros(2, 3)}
        tensors["mask"] = torch.ones(2, 3)
        tensors[bad] = torch.zeros(2, 4)
        with pytest.raises(ValueError, match=re.escape("(2, 4)")) as info:
            run_loss(name, tensors["student"], tensors["teacher"], tensors["old"], tensors["mask"])
        assert "(2, 3)" in str(info.value)


# ---------------------------------------------------------------- RLSD
def rlsd_example():
    # Same Δ pattern in each row: Δ = lT − lS = [0.1, -0.5, 0.3]
    student = torch.tensor([[-1.0, -1.0, -1.0]] * 3, dtype=torch.float64)
    teacher = torch.tensor([[-0.9, -1.5, -0.7]] * 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]])
    return student, teacher, mask


# A = [2, -1, 0], w = 0.5, ε = 0.2
# row 0 (A > 0): exp(Δ) = [e^0.1, e^-0.5 ≈ 0.607 → 0.8, e^0.3 ≈ 1.35 → 1.2]
#                A·(0.5 + 0.5·w_t) = [2·(0.5 + 0.5·e^0.1), 2·(0.5 + 0.4), 2·(0.5 + 0.6)] = [1 + e^0.1, 1.8, 2.2]
# row 1 (A < 0): exp(−Δ) = [e^-0.1, e^0.5 ≈ 1.65 → 1.2, e^-0.3 ≈ 0.741 → 0.8]
#                −1·(0.5 + 0.5·w_t) = [−(0.5 + 0.5·e^-0.1), −1.1, −0.9 → masked 0]
# row 2 (A = 0): all 0
RLSD_EXPECTED = [
    [1.0 + math.exp(0.1), 1.8, 2.2],
    [-(0.5 + 0.5 * math.exp(-0.1)), -1.1, 0.0],
    [0.0, 0.0, 0.0],
]


class TestRLSDAdvantages:
    def test_sequence_advantages(self):
        student, teacher, mask = rlsd_example()
        adv = torch.tensor([2.0, -1.0, 0.0], dtype=torch.float64)
        out = compute_rlsd_advantages(adv, student, teacher, mask, weight=0.5, clip_eps=0.2)
        assert out.shape == (3, 3)
        assert_tensor(out, RLSD_EXPECTED)

    def test_broadcast_advantages(self):
        student, teacher, mask = rlsd_example()
        adv = torch.tensor([[2.0] * 3, [-1.0] * 3, [0.0] * 3], dtype=torch.float64)
        out = compute_rlsd_advantages(adv, student, teacher, mask, weight=0.5)
        assert_tensor(out, RLSD_EXPECTED)

    def test_broadcast_advantages_read_at_first_unmasked_token(self):
        # Leading masked token (e.g. an environment token): its advantage value (9.0) must not be used.
        student = torch.tensor([[-1.0, -1.0, -1.0]], dtype=torch.float64)
        teacher = torch.tensor([[-1.0, -1.0, -0.7]], dtype=torch.float64)  # Δ = [0, 0, 0.3]
        mask = torch.tensor([[0, 1, 1]])
        adv = torch.tensor([[9.0, 2.0, 2.0]], dtype=torch.float64)
        out = compute_rlsd_advantages(adv, student, teacher, mask, weight=0.5)
        # A = 2: [masked 0, 2·(0.5 + 0.5·e^0 = 1) = 2, 2·(0.5 + 0.5·min(e^0.3, 1.2)) = 2.2]
        assert_tensor(out, [[0.0, 2.0, 2.2]])

    def test_sign_handling(self):
        # One token with Δ = +0.1 (teacher likes it more), one with Δ = -0.1.
        student = torch.tensor([[-1.0, -1.0]] * 2, dtype=torch.float64)
        teacher = torch.tensor([[-0.9, -1.1]] * 2, dtype=torch.float64)
        mask = torch.ones(2, 2)
        out = compute_rlsd_advantages(
            torch.tensor([1.0, -1.0], dtype=torch.float64), student, teacher, mask, weight=1.0
        )
        # w = 1 → token weight alone. A = +1: [e^0.1, e^-0.1]; A = -1: −[e^-0.1, e^0.1]
        assert_tensor(out, [[math.exp(0.1), math.exp(-0.1)], [-math.exp(-0.1), -math.exp(0.1)]])
        # For A > 0 the endorsed token gets the larger credit; for A < 0 the rejected token the larger penalty.
        assert out[0, 0] > out[0, 1]
        assert out[1, 1] < out[1, 0]

    def test_clip_bounds(self):
        student = torch.tensor([[-10.0, 0.0, -1.0]], dtype=torch.float64)
        teacher = torch.tensor([[0.0, -10.0, -1.05]], dtype=torch.float64)  # Δ = [10, -10, -0.05]
        mask = torch.ones(1, 3)
        adv = torch.tensor([3.0], dtype=torch.float64)
        out = compute_rlsd_advantages(adv, student, teacher, mask, weight=1.0, clip_eps=0.2)
        # w_t = clip([e^10, e^-10, e^-0.05], 0.8, 1.2) = [1.2, 0.8, e^-0.05 ≈ 0.951]
        assert_tensor(out, [[3.0 * 1.2, 3.0 * 0.8, 3.0 * math.exp(-0.05)]])
        out = compute_rlsd_advantages(adv, student, teacher, mask, weight=1.0, clip_eps=0.0)
        # ε = 0 → every token weight is exactly 1
        assert_tensor(out, [[3.0, 3.0, 3.0]])

    def test_zero_weight_is_sequence_advantage(self):
        student, teacher, mask = rlsd_example()
        adv = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
        out = compute_rlsd_advantages(adv, student, teacher, mask, weight=0.0)
        assert torch.equal(out, adv.unsqueeze(-1) * mask.to(torch.float64))

    def test_masked_positions_are_zero_and_output_detached(self):
        student, teacher, mask = rlsd_example()
        student.requires_grad_(True)
        teacher.requires_grad_(True)
        adv = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
        out = compute_rlsd_advantages(adv, student, teacher, mask.bool(), weight=0.5)
        assert not out.requires_grad
        assert out[1, 2].item() == 0.0

    @pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan")])
    def test_invalid_weight_raises(self, weight):
        student, teacher, mask = rlsd_example()
        with pytest.raises(ValueError, match=f"weight={weight}"):
            compute_rlsd_advantages(torch.zeros(3), student, teacher, mask, weight=weight)

    def test_bad_advantage_shapes_raise(self):
        student, teacher, mask = rlsd_example()
        with pytest.raises(ValueError, match=re.escape("(3, 3, 1)")):
            compute_rlsd_advantages(torch.zeros(3, 3, 1), student, teacher, mask, weight=0.5)
        with pytest.raises(ValueError, match="2 rows"):
            compute_rlsd_advantages(torch.zeros(2), student, teacher, mask, weight=0.5)

    def test_shape_mismatch_raises(self):
        student, teacher, mask = rlsd_example()
        with pytest.raises(ValueError, match=re.escape("(3, 2)")):
            compute_rlsd_advantages(torch.zeros(3), student, teacher[:, :2], mask, weight=0.5)


class TestRLSDWeight:
    @pytest.mark.parametrize(
        ("step", "expected"),
        [(0, 0.5), (50, 0.25), (75, 0.125), (99, 0.005), (100, 0.0), (101, 0.0), (10_000, 0.0)],
    )
    def test_linear_schedule(self, step, expected):
        # w = 0.5 · max(0, 1 − step / 100)
        weight = compute_rlsd_weight(step, initial_weight=0.5, decay_steps=100)
        assert isinstance(weight, float)
        assert weight == pytest.approx(expected, abs=1e-12)

    def test_defaults_are_reference_schedule(self):
        assert compute_rlsd_weight(0) == 0.5
        assert compute_rlsd_weight(50) == pytest.approx(0.25)
        assert compute_rlsd_weight(100) == 0.0

    @pytest.mark.parametrize("step", [0, 1, 100, 10_000])
    def test_constant_without_decay(self, step):
        assert compute_rlsd_weight(step, initial_weight=0.3, decay_steps=0) == 0.3

    def test_negative_step_raises(self):
        with pytest.raises(ValueError, match="step=-1"):
            compute_rlsd_weight(-1)


# ---------------------------------------------------------------- properties
LOGP = st.one_of(
    st.floats(min_value=-1e6, max_value=0.0, width=32),
    st.sampled_from([-1e6, -1e5, -1e3, -30.0, -20.0, -10.0, -1e-30, 0.0]),
)


@st.composite
def batches(draw):
    b = draw(st.integers(1, 4))
    t = draw(st.integers(1, 6))
    arrays = [draw(hnp.arrays(np.float32, (b, t), elements=LOGP)) for _ in range(3)]
    mask = draw(st.one_of(st.just(np.zeros((b, t), dtype=bool)), hnp.arrays(np.bool_, (b, t))))
    mask_dtype = draw(st.sampled_from([torch.bool, torch.float32, torch.long]))
    student = torch.tensor(arrays[0], requires_grad=True)
    teacher, old = torch.tensor(arrays[1]), torch.tensor(arrays[2])
    return student, teacher, old, torch.tensor(mask).to(mask_dtype)


PROPERTY = settings(max_examples=75, deadline=None)


def assert_finite_loss(loss, stats, student):
    assert loss.dim() == 0 and torch.isfinite(loss), loss
    assert loss.requires_grad
    for key, value in stats.items():
        assert torch.isfinite(value), (key, value)
    loss.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all(), student.grad


@PROPERTY
@given(batch=batches(), gate_beta=st.floats(0.0, 50.0))
def test_property_sdar_finite_and_gradient_is_minus_gate_over_n(batch, gate_beta):
    student, teacher, _, mask = batch
    loss, stats = compute_sdar_loss(student, teacher, mask, gate_beta=gate_beta)
    assert_finite_loss(loss, stats, student)
    weights = mask.to(torch.float32)
    expected = -compute_gate(student, teacher, gate_beta=gate_beta) * weights / weights.sum().clamp(min=1.0)
    torch.testing.assert_close(student.grad, expected)
    assert 0.0 <= stats["gate_mean"].item() <= 1.0
    assert 0.0 <= stats["gate_active_ratio"].item() <= 1.0


@PROPERTY
@given(batch=batches())
def test_property_opsd_finite(batch):
    student, teacher, _, mask = batch
    loss, stats = compute_opsd_loss(student, teacher, mask)
    assert_finite_loss(loss, stats, student)
    assert torch.equal(student.grad[~mask.bool()], torch.zeros_like(student.grad[~mask.bool()]))


@PROPERTY
@given(batch=batches())
def test_property_skill_sd_finite(batch):
    student, teacher, old, mask = batch
    loss, stats = compute_skill_sd_loss(student, teacher, old, mask)
    assert_finite_loss(loss, stats, student)
    assert torch.equal(student.grad[~mask.bool()], torch.zeros_like(student.grad[~mask.bool()]))


@PROPERTY
@given(
    batch=batches(),
    scale=st.floats(-1e3, 1e3),
    weight=st.floats(0.0, 1.0),
    clip_eps=st.floats(0.0, 0.99),
    per_token=st.booleans(),
)
def test_property_rlsd_finite(batch, scale, weight, clip_eps, per_token):
    student, teacher, _, mask = batch
    b, t = student.shape
    adv = torch.linspace(-1.0, 1.0, b) * scale  # (B,) includes 0 when B is odd
    if per_token:
        adv = adv.unsqueeze(-1).expand(b, t).contiguous()
    out = compute_rlsd_advantages(adv, student.detach(), teacher, mask, weight=weight, clip_eps=clip_eps)
    assert out.shape == (b, t)
    assert torch.isfinite(out).all()
    seq = adv if adv.dim() == 1 else adv[:, 0]
    # |token advantage| ≤ |A|·(1 + w·ε) and it keeps the sign of A
    bound = seq.abs().unsqueeze(-1) * (1.0 + weight * clip_eps) * (1 + 1e-5)
    assert (out.abs() <= bound).all()
    assert (out * seq.unsqueeze(-1) >= 0).all()
    assert torch.equal(out[~mask.bool()], torch.zeros_like(out[~mask.bool()]))


def test_step_advantages_group_across_steps_hand_computed():
    from sdar_trl.loss import compute_step_advantages

    # Group 0: trajectory A (2 steps, reward 1) and B (2 steps, reward -0.1: invalid steps). Mean 0.45, deviations
    # ±0.55, Bessel std sqrt(4 · 0.3025 / 3) = 0.635085 -> A = ±0.866025. Group 7 has a single sample: A = r.
    rewards = torch.tensor([1.0, -0.1, 1.0, -0.1, 3.0])
    groups = torch.tensor([0, 0, 0, 0, 7])
    advantages = compute_step_advantages(rewards, groups)
    expected = torch.tensor([0.866025, -0.866025, 0.866025, -0.866025, 3.0])
    torch.testing.assert_close(advantages, expected, atol=1e-5, rtol=0)
    # All-equal rewards: zero advantages (std 0, eps keeps it finite).
    torch.testing.assert_close(
        compute_step_advantages(torch.ones(3), torch.zeros(3, dtype=torch.long)), torch.zeros(3)
    )
    with pytest.raises(ValueError, match="same length"):
        compute_step_advantages(torch.ones(3), torch.zeros(2, dtype=torch.long))
