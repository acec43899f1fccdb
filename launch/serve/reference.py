"""The unsharded reference: the same math at tp = pp = 1, streaming one layer's weights at a time.

Used to check a sharded run's logits. It runs one causal pass over prompt + generated tokens and returns the
logits at the positions the sharded run sampled from (causal attention makes that equal to incremental decoding),
so it needs no KV cache across steps and holds at most one decoder layer's weights (plus embedding and lm_head).
"""

from __future__ import annotations

import torch
from shardsim.launch.checkpoints.files import CheckpointReader
from shardsim.launch.serve.predict import LOGITS_NOISE_CAP, LOGITS_TOLERANCE, LOGITS_TOLERANCE_ANY_POSITION
from shardsim.launch.serve.shard_model import RankModel, embed, layer_forward, logits, rotary
from shardsim.launch.session.worker import Groups

from shardsim.core.layout import Layout, rank_coords, validate_layout
from shardsim.core.model import ModelSpec
from shardsim.core.tensors import Shard, embed_tensor, final_norm_tensor, layer_tensors, lm_head_tensor, local_slices


def _load(m: RankModel, reader: CheckpointReader, tensors, dtype) -> list[str]:
    names = []
    for t in tensors:
        experts = local_slices(t, Shard(), m.spec.head_dim).experts
        if experts is not None:
            m.weights[t.name] = [reader.read(t.name.format(e=e)).to(dtype) for e in experts]
            m.weights[t.name + ":experts"] = list(experts)
            names.append(t.name + ":experts")
        else:
            m.weights[t.name] = reader.read(t.source or t.name).to(dtype)
        names.append(t.name)
    return names


def reference_logits(spec: ModelSpec, checkpoint_dir: str, sequences: list[list[int]], n_positions: int,
                     rope_theta: float, rms_eps: float, norm_topk_prob: bool,
                     dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """fp32 logits [batch, n_positions, vocab] at the last ``n_positions`` sampled positions, the model computed
    in ``dtype`` (bf16 as the checkpoint stores it; float32 for the reference's own rounding noise: every weight
    is upcast as it is read, so the activations follow)."""
    layout = validate_layout(spec, Layout())
    m = RankModel(spec, layout, rank_coords(0, layout), rms_eps=rms_eps, rope_theta=rope_theta,
                  norm_topk_prob=norm_topk_prob)
    reader = CheckpointReader(checkpoint_dir)
    tokens = torch.tensor(sequences, dtype=torch.long)
    batch, length = tokens.shape
    with torch.no_grad():
        _load(m, reader, [embed_tensor(spec)], dtype)
        h = embed(m, tokens, None).clone()
        m.weights.clear()
        kvh = spec.num_kv_heads
        m.kv = [(torch.zeros(batch, kvh, length, spec.head_dim, dtype=dtype),
                 torch.zeros(batch, kvh, length, spec.head_dim, dtype=dtype))]
        cos, sin = rotary(torch.arange(0, length), spec.head_dim, rope_theta, h.dtype)
        for layer in range(spec.num_layers):
            _load(m, reader, layer_tensors(spec, layer), dtype)
            h = layer_forward(m, layer, 0, h, 0, cos, sin, Groups())
            m.weights.clear()
        _load(m, reader, [final_norm_tensor(spec), lm_head_tensor(spec)], dtype)  # a tied lm_head reads the embedding
        # The sampled positions: the prompt's last token, then each generated token but the last.
        out = torch.stack([logits(m, h[:, length - n_positions + i], None) for i in range(n_positions)], dim=1)
    reader.close()
    return out


def check_logits(spec, ckpt, prompt, forward_out, req) -> dict:
    """Compare every last-stage leader's logits (one per DP replica) with the unsharded reference (``ckpt``: the
    run's CheckpointFacts, ``req``: its ValidateRequest)."""

    leaders = [r for r, v in forward_out.items() if v.get("logits") is not None]
    if not leaders:
        return {"ok": False, "error": "no rank returned logits"}
    generated = forward_out[leaders[0]]["generated"]
    sequences = [prompt[b] + [generated[s][b] for s in range(req.decode_steps)] for b in range(req.batch)]
    if spec.linear is not None:  # hybrids: transformers' own unsharded model (shardsim's has no Gated-DeltaNet)
        from shardsim.launch.backends.hf_reference import hf_reference_logits

        def reference(dtype):
            return hf_reference_logits(str(ckpt.path), sequences, req.decode_steps + 1, dtype=dtype)
    else:
        def reference(dtype):
            return reference_logits(spec, str(ckpt.path), sequences, req.decode_steps + 1, ckpt.rope_theta,
                                    ckpt.rms_eps, ckpt.norm_topk_prob, dtype=dtype)
    ref = reference(torch.bfloat16)
    fp32_cache: list = []

    def fp32_reference():
        """The fp32 reference, computed once and only when asked (it costs a second pass)."""
        if not fp32_cache:
            fp32_cache.append(reference(torch.float32))
        return fp32_cache[0]

    # NaN compares as neither larger nor smaller, so max() and argmax would let it pass: any non-finite logit,
    # on either side, fails the run.
    if not bool(torch.isfinite(ref).all()):
        return {"ok": False, "error": "the unsharded reference's logits are not finite (NaN or inf): the checkpoint "
                                      "holds non-finite values"}
    for r in leaders:
        if not bool(torch.isfinite(forward_out[r]["logits"]).all()):
            return {"ok": False, "error": f"rank {r}'s logits are not finite (NaN or inf)"}
    worst_l2, worst_abs, worst_median = 0.0, 0.0, 0.0
    argmax_agree, compared, skipped, settled = True, 0, 0, 0
    for r in leaders:
        got = forward_out[r]["logits"]
        diff = got - ref
        per_position = diff.norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-6)  # [batch, positions]
        per_position_worst = [round(v, 5) for v in per_position.max(dim=0).values.tolist()]
        worst_l2 = max(worst_l2, per_position.max().item())
        worst_median = max(worst_median, per_position.median().item())
        worst_abs = max(worst_abs, diff.abs().max().item() / max(ref.abs().max().item(), 1e-6))
        decided = decided_positions(got, ref)
        compared, skipped = compared + int(decided.sum()), skipped + int((~decided).sum())
        differs = decided & (got.argmax(-1) != ref.argmax(-1))
        if bool(differs.any()) and fp32_room(ckpt.path) is None:
            within = within_reference_noise(got, ref, fp32_reference()) & differs
            settled += int(within.sum())
            differs &= ~within
        argmax_agree &= not bool(differs.any())
    tolerance, tolerance_any, noise = LOGITS_TOLERANCE, LOGITS_TOLERANCE_ANY_POSITION, None
    within = worst_median <= tolerance and worst_l2 <= tolerance_any
    if not within and argmax_agree and spec.linear is not None:
        noise = fp32_room(ckpt.path) or reference_noise(ref, fp32_reference())
        if "median_rel_l2" in noise:
            tolerance, tolerance_any = noise_tolerances(noise)
            within = worst_median <= tolerance and worst_l2 <= tolerance_any
    ok = within and argmax_agree
    return {"ok": ok, "max_rel_l2_error": worst_l2, "median_rel_l2_error": worst_median,
            "tolerance_any_position": tolerance_any, "reference_bf16_noise": noise,
            "max_abs_error_rel_to_max": worst_abs, "tolerance": tolerance,
            "rel_l2_by_position": per_position_worst,
            "argmax_agrees": argmax_agree, "argmax_positions_compared": compared,
            "argmax_positions_within_noise": skipped, "argmax_positions_settled_by_fp32": settled,
            "compared_ranks": leaders, "positions": req.decode_steps + 1}


def within_reference_noise(got: torch.Tensor, ref: torch.Tensor, ref_fp32: torch.Tensor) -> torch.Tensor:
    """[batch, positions] mask: where the sharded run's argmax ``g`` differs from the bf16 reference's ``r``, is
    the choice between them within the bf16 reference's own error? True where the fp32 reference's gap
    ref32[r] − ref32[g] is no larger than what the bf16 reference moved those two logits off fp32,
    |ref[r] − ref32[r]| + |ref[g] − ref32[g]| (so it is true where fp32 prefers ``g``, the sharded run's pick).

    Why it is needed: in an MoE a rounding-level difference in a router's logits can flip a near-tie top-k expert
    choice at one token of one layer; the token's hidden state then moves by far more than a final bf16 rounding,
    so ``decided_positions`` can count a position as decided that bf16 itself does not decide (seen: 30b-a3b cut to
    2 layers, TP 2 × EP 2, transformers backend, on a CPU whose bf16 GEMMs lack AVX-512: 2 positions). The fp32
    computation of the same model is the independent arbiter; a wrong shard moves logits by far more than the
    reference's own noise and still fails here, and the rel-L2 bounds are unchanged."""
    g = got.argmax(-1, keepdim=True)
    r = ref.argmax(-1, keepdim=True)
    gap32 = (ref_fp32.gather(-1, r) - ref_fp32.gather(-1, g)).squeeze(-1)
    own = ((ref.gather(-1, r) - ref_fp32.gather(-1, r)).abs()
           + (ref.gather(-1, g) - ref_fp32.gather(-1, g)).abs()).squeeze(-1)
    return gap32 <= own


def reference_noise(ref: torch.Tensor, ref_fp32: torch.Tensor) -> dict:
    """How far the bf16 reference itself is from the same model computed in fp32: per position rel-L2 of
    ref − ref_fp32 over the vocab, its median and largest (or why it cannot say). On random weights a deep bf16
    pass can sit several per cent from fp32 (measured: Qwen3-Next's config cut to 4 layers and 16 experts,
    transformers 5.25.0 on CPU, 4.4–8.6 % on one seeded sequence, 10.0 % median and 12.8 % worst on the
    validation's)."""
    if not bool(torch.isfinite(ref_fp32).all()):
        return {"error": "the fp32 reference's logits are not finite: the bounds stay fixed"}
    per_position = (ref - ref_fp32).norm(dim=-1) / ref_fp32.norm(dim=-1).clamp_min(1e-6)
    return {"median_rel_l2": per_position.median().item(), "max_rel_l2": per_position.max().item()}


def fp32_room(checkpoint_dir) -> dict | None:
    """None when an fp32 copy of the checkpoint (twice its bf16 files) fits in half the host's available memory
    (/proc/meminfo MemAvailable); else why the noise is not measured."""
    from pathlib import Path

    need = 2 * sum(f.stat().st_size for f in Path(checkpoint_dir).glob("*.safetensors"))
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return {"error": "the host's free memory is unknown: the fp32 reference is not loaded, the bounds stay fixed"}
    if need <= available // 2:
        return None
    return {"error": f"an fp32 copy of the checkpoint ({need / 2**30:.1f} GiB) does not fit in half the host's "
                     f"{available / 2**30:.1f} GiB available: the bounds stay fixed"}


def noise_tolerances(noise: dict) -> tuple[float, float]:
    """The rel-L2 bounds widened to the reference's own bf16 noise: a correct sharded run should sit no further
    from the bf16 reference than bf16 itself sits from fp32 on this model (its median and worst position). By the
    triangle inequality two bf16 computations of one fp32 answer may be up to twice that apart; once is asked, the
    stricter choice, as the run and the reference share the model's weights and most of its operations (measured on
    the Qwen3-Next case above: 3.2 % between them against 10 % from fp32). Never tighter than the fixed bounds, never
    wider than LOGITS_NOISE_CAP."""
    return (min(LOGITS_NOISE_CAP, max(LOGITS_TOLERANCE, noise["median_rel_l2"])),
            min(LOGITS_NOISE_CAP, max(LOGITS_TOLERANCE_ANY_POSITION, noise["max_rel_l2"])))


BF16_UNIT_ROUNDOFF = 2.0 ** -8
"""bf16 keeps 8 significant bits (7 stored + the implicit one): a rounded value is within 2⁻⁸ of itself, relative
(IEEE 754 round-to-nearest; torch.finfo(torch.bfloat16).eps = 2⁻⁷ is the spacing, twice the unit roundoff)."""


def decided_positions(got: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """[batch, positions] mask of the positions whose argmax is decided: the reference's top-2 margin exceeds
    what the sharded bf16 reduction can move two logits apart.

    Each logit of the sharded run may differ from the reference by its final bf16 rounding (2⁻⁸ × |logit|) plus
    the error the sharded reduction carried in (its size at that position is the RMS of got − ref over the vocab,
    the quantity the rel-L2 bounds already limit). Two logits can move towards each other by twice that sum;
    where the margin is smaller, the argmax is decided by rounding, not by the shards, and is not compared. On
    random weights the top two logits can sit that close (seen: 0.6b, TP 2, transformers)."""
    top2 = ref.topk(2, dim=-1).values  # [batch, positions, 2]
    margin = top2[..., 0] - top2[..., 1]
    rms = (got - ref).pow(2).mean(dim=-1).sqrt()
    bound = 2.0 * (BF16_UNIT_ROUNDOFF * top2[..., 0].abs() + rms)
    return margin > bound
