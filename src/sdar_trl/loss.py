"""The SDAR objective and the baselines it is compared with, as pure tensor functions.

Notation (docs/trainer.md, "The loss"; the gated distillation term of the SDAR paper, arXiv 2605.15155). For B
samples of T response tokens with response mask m:

    lS  = log π_θ(y_t | student prompt, y_<t)       (B, T), carries the gradient
    lT  = log π_θold(y_t | teacher prompt, y_<t)    (B, T), no gradient
    Δ   = lT − sg(lS)                               teacher–student gap per token
    g   = sg(sigmoid(β · Δ))                        gate
    L   = token_mean_m(g · (lT − lS))               gated distillation term

Every function takes keyword-only hyperparameters, returns `(loss, stats)` with detached stats (or a
tensor for the advantage reweighting), never calls `.item()` (no host sync inside a loss), and
returns a zero that still carries the graph when the mask is empty, so every process of a
distributed run can still call `backward()`.
"""

from __future__ import annotations

import torch

__all__ = [
    "compute_distill_loss",
    "compute_gate",
    "compute_opsd_loss",
    "compute_rlsd_advantages",
    "compute_rlsd_weight",
    "compute_sdar_loss",
    "compute_skill_sd_loss",
    "compute_step_advantages",
    "distill_token_mask",
    "gated_gap_sums",
    "masked_mean",
    "sampled_token_mask",
]


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(
            f"All per-token tensors must have the same (B, T) shape, got {shapes}. Pass student/teacher log-probs "
            "and the mask for the same completion tokens (teacher log-probs are computed on the student's "
            "completion ids, so their shapes always agree)."
        )


def _zero_padding(mask: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Replace masked positions by 0 before any arithmetic.

    Padding may hold anything (`inf`, `nan`): selecting it out here keeps both the loss and the gradient
    finite, since a masked-out nan would otherwise come back as `nan · 0 = nan` in the backward pass.
    """
    keep = mask.bool()  # (B, T)
    return tuple(torch.where(keep, t, torch.zeros_like(t)) for t in tensors)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the positions where the 0/1 `mask` is 1; 0 (with graph) for an empty mask.

    Masked positions are selected out with `torch.where`, not multiplied by 0, so a non-finite value in
    padding (`inf · 0 = nan`) cannot leak into the mean or its gradient.
    """
    _check_same_shape(values=values, mask=mask)  # a broadcastable mask would divide by the wrong token count
    keep = mask.bool()  # (B, T)
    kept = torch.where(keep, values, torch.zeros_like(values))  # (B, T) zero (and zero grad) on masked positions
    # clamp(min=1) makes an empty mask give sum(0) / 1 = 0, still attached to the graph of `values`.
    return kept.sum() / keep.sum().clamp(min=1).to(values.dtype)


def compute_gate(student_logps: torch.Tensor, teacher_logps: torch.Tensor, *, gate_beta: float) -> torch.Tensor:
    """The SDAR confidence gate `g = sg(sigmoid(β · (lT − sg(lS))))`, shape (B, T), no gradient.

    β = 0 gives g ≡ 0.5 (the naive GRPO+OPSD baseline); large β approaches a hard step at Δ = 0.
    """
    _check_same_shape(student_logps=student_logps, teacher_logps=teacher_logps)
    gap = teacher_logps.detach() - student_logps.detach()  # (B, T)
    return torch.sigmoid(gate_beta * gap)  # (B, T)


def compute_sdar_loss(
    student_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    gate_beta: float = 5.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SDAR gated self-distillation term: `token_mean_m(sg(sigmoid(β·Δ)) · (lT − lS))`.

    The gradient is `−g · ∇lS / N`: sampled tokens the teacher endorses (Δ > 0, g → 1) are pushed up;
    tokens it rejects (Δ < 0, g → 0) are barely touched. The teacher is detached here whatever the
    caller passes. Reference default β = 5 (docs/methods.md); β = 0 is GRPO+OPSD (g ≡ 0.5).

    Args:
        student_logps: (B, T) log-probs of the sampled tokens under the student prompt, with grad.
        teacher_logps: (B, T) log-probs of the same tokens under the teacher (skill-augmented) prompt.
        mask: (B, T) 1 for response tokens that count, 0 for padding / environment tokens.
        gate_beta: β, sharpness of the sigmoid gate.

    Returns:
        `(loss, stats)`: the scalar token-mean loss and detached scalars `gate_mean`,
        `gate_active_ratio` (fraction of tokens with g > 0.5, i.e. Δ > 0) and `teacher_gap_mean`
        (mean Δ), each a masked mean over the tokens of this batch.
    """
    _check_same_shape(student_logps=student_logps, teacher_logps=teacher_logps, mask=mask)
    student_logps, teacher_logps = _zero_padding(mask, student_logps, teacher_logps)  # (B, T) each
    teacher_logps = teacher_logps.detach()  # (B, T) the teacher is a target, never trained through
    gap = teacher_logps - student_logps.detach()  # (B, T) Δ
    gate = torch.sigmoid(gate_beta * gap)  # (B, T) g, built from detached tensors only
    per_token = gate * (teacher_logps - student_logps)  # (B, T) carries grad through lS only
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        stats = {
            "gate_mean": masked_mean(gate, mask),
            "gate_active_ratio": masked_mean((gate > 0.5).to(gate.dtype), mask),
            "teacher_gap_mean": masked_mean(gap, mask),
        }
    return loss, stats


def compute_opsd_loss(
    student_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sampled-token on-policy self-distillation surrogate: `token_mean_m(sg(lS − lT) · lS)`.

    For tokens sampled from the student, `E[sg(lS − lT) ∇lS]` is the gradient of the reverse KL
    `KL(π_student ‖ π_teacher)`, so minimising this surrogate distils the teacher into the student
    on the student's own samples (the form TRL's SDPO uses for `distillation_mode="sampled_token"`).
    Its value is not the KL itself: `stats["reverse_kl"]` reports the sampled estimate `mean(lS − lT)`.

    Returns:
        `(loss, stats)` with detached `teacher_gap_mean` (mean of lT − lS) and `reverse_kl`.
    """
    _check_same_shape(student_logps=student_logps, teacher_logps=teacher_logps, mask=mask)
    student_logps, teacher_logps = _zero_padding(mask, student_logps, teacher_logps)  # (B, T) each
    log_ratio = student_logps.detach() - teacher_logps.detach()  # (B, T) lS − lT, a fixed per-token weight
    per_token = log_ratio * student_logps  # (B, T) REINFORCE-style surrogate, grad = (lS − lT) ∇lS
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        stats = {"teacher_gap_mean": masked_mean(-log_ratio, mask), "reverse_kl": masked_mean(log_ratio, mask)}
    return loss, stats


def compute_skill_sd_loss(
    student_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    old_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_log_ratio: float = 10.0,
    max_log_gap: float = 20.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Skill-SD self-distillation loss: `token_mean_m(ρ · k3)` (docs/methods.md, skill_sd).

    `k3 = exp(lT − lS) − 1 + (lS − lT)` is the non-negative low-variance estimator of
    `KL(π_student ‖ π_teacher)` on sampled tokens, and `ρ = exp(clamp(lS − l_old, max=10))` is the
    importance ratio to the rollout policy. As in the reference, both ρ and k3 carry gradient through
    lS; the teacher and the rollout log-probs are constants. `exp(lT − lS)` is computed with the exponent
    clamped at `max_log_gap` (reference: 20) so that finite inputs give finite values.

    Args:
        old_logps: (B, T) log-probs of the sampled tokens under the rollout-time student (`old_per_token_logps`;
            use `student_logps.detach()` when training fully on-policy).

    Returns:
        `(loss, stats)` with detached `teacher_gap_mean`, `k3_mean` and `rho_mean`.
    """
    _check_same_shape(student_logps=student_logps, teacher_logps=teacher_logps, old_logps=old_logps, mask=mask)
    student_logps, teacher_logps, old_logps = _zero_padding(mask, student_logps, teacher_logps, old_logps)
    teacher_logps = teacher_logps.detach()  # (B, T)
    old_logps = old_logps.detach()  # (B, T)
    student_minus_teacher = student_logps - teacher_logps  # (B, T) lS − lT
    k3 = torch.exp((-student_minus_teacher).clamp(max=max_log_gap)) - 1.0 + student_minus_teacher  # (B, T) ≥ 0
    rho = torch.exp((student_logps - old_logps).clamp(max=max_log_ratio))  # (B, T) importance ratio
    loss = masked_mean(rho * k3, mask)
    with torch.no_grad():
        stats = {
            "teacher_gap_mean": masked_mean(-student_minus_teacher, mask),
            "k3_mean": masked_mean(k3, mask),
            "rho_mean": masked_mean(rho, mask),
        }
    return loss, stats


def compute_rlsd_weight(step: int, *, initial_weight: float = 0.5, decay_steps: int = 100) -> float:
    """RLSD mixing weight `w`: linear decay from `initial_weight` at step 0 to 0 at `decay_steps`.

    Reference schedule (docs/methods.md, rlsd): 0.5 → 0 over 100 steps. `decay_steps <= 0` keeps the weight
    constant at `initial_weight`.
    """
    if step < 0:
        raise ValueError(f"step={step} must be >= 0 (it is the number of optimizer steps taken so far).")
    if decay_steps <= 0:
        return float(initial_weight)
    return float(initial_weight) * max(0.0, 1.0 - step / decay_steps)


def compute_rlsd_advantages(
    advantages: torch.Tensor,
    student_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    weight: float,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    """RLSD token advantages `A · [(1 − w) + w · clip(exp(sign(A) · Δ), 1 − ε, 1 + ε)]`.

    `Δ = lT − lS` is taken at rollout time (both arguments are constants here). For a positive
    advantage, tokens the teacher likes more than the student get up to (1 + ε)·A; for a negative
    one, tokens the teacher likes less get the larger penalty. w = 0 recovers the sequence advantage.

    Args:
        advantages: (B,) sequence advantages, or (B, T) already broadcast (the first unmasked token's
            value is used, as in the reference).
        student_logps: (B, T) rollout-time student log-probs (`old_per_token_logps`).
        teacher_logps: (B, T) teacher log-probs of the same tokens.
        mask: (B, T) response mask; masked positions get advantage 0.
        weight: w in [0, 1], see `compute_rlsd_weight`.
        clip_eps: ε, the clip half-width of the token weight (reference 0.2).

    Returns:
        (B, T) token advantages, detached.
    """
    _check_same_shape(student_logps=student_logps, teacher_logps=teacher_logps, mask=mask)
    if not 0.0 <= weight <= 1.0:  # also rejects nan: every comparison with nan is False
        raise ValueError(f"weight={weight} must lie in [0, 1]; it mixes the sequence advantage with the token weight.")
    if advantages.dim() not in (1, 2):
        raise ValueError(f"advantages must have shape (B,) or (B, T), got {tuple(advantages.shape)}.")
    if advantages.dim() == 2 and advantages.shape != student_logps.shape:
        raise ValueError(
            f"(B, T) advantages must match the log-probs' shape {tuple(student_logps.shape)}, got "
            f"{tuple(advantages.shape)}."
        )
    if advantages.shape[0] != student_logps.shape[0]:
        raise ValueError(
            f"advantages has {advantages.shape[0]} rows but the log-probs have {student_logps.shape[0]}; pass one "
            "advantage per completion."
        )
    with torch.no_grad():
        if advantages.dim() == 2:
            # One value per sequence: read it at the first response token (argmax of the mask).
            first = mask.to(torch.long).argmax(dim=-1)  # (B,)
            seq_adv = advantages.gather(1, first.unsqueeze(-1)).squeeze(-1)  # (B,)
        else:
            seq_adv = advantages  # (B,)
        student_logps, teacher_logps = _zero_padding(mask, student_logps, teacher_logps)  # (B, T) each
        gap = teacher_logps - student_logps  # (B, T) Δ at rollout time
        sign = torch.sign(seq_adv).unsqueeze(-1)  # (B, 1)
        token_weight = torch.exp(sign * gap).clamp(1.0 - clip_eps, 1.0 + clip_eps)  # (B, T)
        token_adv = seq_adv.unsqueeze(-1) * ((1.0 - weight) + weight * token_weight)  # (B, T)
        return torch.where(mask.bool(), token_adv, torch.zeros_like(token_adv))  # (B, T)


def compute_step_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, *, valid: torch.Tensor | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO advantages over step samples grouped by task (docs/agents.md).

    For every group g (all step samples of all trajectories of one task, across steps):
    `A_i = (r_i − mean_g) / (std_g + eps)` with the Bessel-corrected std; a group of one sample gets
    `A_i = r_i` (its mean and std are undefined, as in the reference).

    Args:
        rewards: (N,) per-step rewards (episode reward minus the invalid-action penalty).
        group_ids: (N,) integer task-group id of each sample.
        valid: (N,) bool, False for samples of failed episodes (docs/faults.md): they get advantage 0 and are left
            out of their group's mean, std and count, so the other samples get the advantages they would get
            without them. None: every sample is valid.
        eps: added to the std (reference 1e-6).

    Returns:
        (N,) float advantages.
    """
    if rewards.dim() != 1 or rewards.shape != group_ids.shape:
        raise ValueError(
            f"rewards and group_ids must be 1-D tensors of the same length, got {tuple(rewards.shape)} and "
            f"{tuple(group_ids.shape)}."
        )
    if valid is not None and valid.shape != rewards.shape:
        raise ValueError(f"valid must have the shape of rewards {tuple(rewards.shape)}, got {tuple(valid.shape)}.")
    rewards = rewards.to(torch.float32)  # (N,)
    keep = torch.ones_like(rewards, dtype=torch.bool) if valid is None else valid.to(rewards.device).bool()  # (N,)
    weight = keep.to(torch.float32)  # (N,) 1 for samples that enter the group statistics
    # A failed sample's reward may be anything (it is never learnt from): select it out before any arithmetic.
    rewards = torch.where(keep, rewards, torch.zeros_like(rewards))  # (N,)
    _, inverse = torch.unique(group_ids, return_inverse=True)  # (N,) dense group index
    num_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    counts = torch.zeros(num_groups, dtype=torch.float32, device=rewards.device).index_add_(0, inverse, weight)  # (G,)
    sums = torch.zeros_like(counts).index_add_(0, inverse, rewards)  # (G,) failed samples add 0
    means = sums / counts.clamp(min=1)  # (G,)
    deviations = (rewards - means[inverse]) ** 2 * weight  # (N,)
    squares = torch.zeros_like(counts).index_add_(0, inverse, deviations)  # (G,)
    stds = torch.sqrt(squares / (counts - 1).clamp(min=1))  # (G,) Bessel-corrected
    normalized = (rewards - means[inverse]) / (stds[inverse] + eps)  # (N,)
    advantages = torch.where(counts[inverse] > 1, normalized, rewards)  # (N,) singletons keep their reward
    return torch.where(keep, advantages, torch.zeros_like(advantages))  # (N,) failed samples carry no signal


def compute_distill_loss(
    kind: str,
    student_logps: torch.Tensor,
    teacher_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_logps: torch.Tensor | None = None,
    gate_beta: float = 5.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The distillation term `kind` (`SDARConfig.distill_loss`): SDAR's gated term, OPSD's or Skill-SD's.

    Args:
        kind: "gated" (`compute_sdar_loss`), "sampled_token" (`compute_opsd_loss`) or "k3" (Skill-SD's
            `compute_skill_sd_loss`); `SDARConfig` accepts only these (`sdar_trl.config.DISTILL_LOSSES`).
        student_logps: (B, T) student log-probs, with grad.
        teacher_logps: (B, T) teacher log-probs.
        mask: (B, T) tokens of the term (`distill_token_mask`).
        old_logps: (B, T) rollout-time student log-probs for Skill-SD's ratio (None: on-policy, ρ = 1 in value).
        gate_beta: the gate's β (gated term only).
    """
    if kind == "gated":
        return compute_sdar_loss(student_logps, teacher_logps, mask, gate_beta=gate_beta)
    if kind == "sampled_token":
        return compute_opsd_loss(student_logps, teacher_logps, mask)
    if kind != "k3":
        raise ValueError(f"distill loss {kind!r} is not supported; expected 'gated', 'sampled_token' or 'k3'.")
    old_logps = student_logps.detach() if old_logps is None else old_logps  # on-policy: ρ = 1 in value
    return compute_skill_sd_loss(student_logps, teacher_logps, old_logps, mask)


def gated_gap_sums(
    student_logps: torch.Tensor, teacher_logps: torch.Tensor, mask: torch.Tensor, *, gate_beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the sum of the gated gap `sigmoid(β·Δ)·Δ` (Δ = lT − lS) over masked tokens, and the token count.

    Returns `(sums (B,), counts (B,))`, no gradient; an episode's gated gap is the sum of its rows' sums over the sum
    of their counts (the reward of `skill_retrieval="ucb"`, `sdar_trl.retrieval.UCBSkillBandit`).
    """
    _check_same_shape(student_logps=student_logps, teacher_logps=teacher_logps, mask=mask)
    gap = teacher_logps.detach() - student_logps.detach()  # (B, T)
    (gated,) = _zero_padding(mask, torch.sigmoid(gate_beta * gap) * gap)  # (B, T)
    return gated.sum(dim=1), mask.bool().sum(dim=1).to(gated.dtype)  # (B,), (B,)


def sampled_token_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, C) completion tokens the policy sampled: tool/environment tokens (TRL's `tool_mask`) are excluded."""
    mask = batch["completion_mask"]  # (B, C)
    if "tool_mask" in batch:
        mask = mask * batch["tool_mask"]  # environment/tool tokens were not sampled by the policy
    return mask


def distill_token_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, C) tokens of the distillation term: sampled tokens of rows that have a privileged context.

    A batch's (B,) `teacher_row_mask` (set when `distill_empty_context=False`) drops rows whose teacher saw no
    privileged context.
    """
    mask = sampled_token_mask(batch)  # (B, C)
    if "teacher_row_mask" in batch:
        mask = mask * batch["teacher_row_mask"].unsqueeze(-1)  # rows without privileged context
    return mask
