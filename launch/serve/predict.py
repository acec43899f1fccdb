"""What an inference validation holds each rank to: the planner's per-rank prediction of the measured terms with
the backend's eager kernels, the comparison with what the rank measured, and the tolerances of both.
"""

from __future__ import annotations

from shardsim.launch.serve.registry import SERVE_BACKENDS

# Tolerance of the measured activation peak against the prediction, and of logits against the reference.
ACTIVATION_TOLERANCE = 0.25
# Logits: ‖sharded − reference‖₂ / ‖reference‖₂ per sampled position; the median over positions must stay within
# 3 % and every position within 10 %, and the prefill's argmax must agree. bf16 keeps 8 mantissa bits (relative
# rounding 2⁻⁹ ≈ 0.2 % per op); sharding changes the order of the sums (partial products all-reduced), so the
# rounding differs and compounds over the layers: 0.7–2 % measured on dense and MoE models. A token whose top-k
# routing is near a tie can pick another expert in one run, which moves that position by up to ~1/k of its MLP
# output (7.4 % seen once on 235B-A22B), hence the per-position bound. A wrong shard gives errors near 100 %.
LOGITS_TOLERANCE = 0.03
LOGITS_TOLERANCE_ANY_POSITION = 0.10
# The widest the bounds go when a hybrid's bf16 reference is itself that far from fp32 (serve/reference.py
# noise_tolerances): past a quarter of the logits' norm a comparison no longer tells a shard error from rounding,
# so a noisier reference fails the check rather than widening it further.
LOGITS_NOISE_CAP = 0.25


def predict(spec, layout, context: int, batch: int, prompt_len: int, backend: str = "torch") -> dict[int, dict]:
    """Per-rank prediction of the terms a validation run measures, with the eager kernels of the backend.

    KV: the torch backend allocates whole 16-token pages; transformers' DynamicCache (also under DeepSpeed ZeRO-3,
    which runs the transformers model with its own kernels) grows to exactly the tokens seen (page size 1).
    State (hybrids): the linear-attention layers' conv and delta-rule state of ``batch`` sequences, transformers'
    shapes and dtypes under the hf kernels (``core.memory.state``).
    Activations: for MoE stages the peak depends on how many tokens the router sends to one expert, which no
    planner can know; ``activations`` assumes every token can (the bound a capacity plan needs) and
    ``activations_low`` a perfectly balanced router (T·k/E tokens per expert).
    """
    from shardsim.core.layout import rank_coords
    from shardsim.core.plan import Planner, Workload
    from shardsim.launch.serve.hf_plan import hf_plan_weight_bytes
    from shardsim.units import DTYPE_BYTES

    hf = SERVE_BACKENDS[backend].hf_kernels  # DeepSpeed ZeRO-3 runs the transformers model as it is
    block = 1 if hf else 16
    workload = Workload(context=context, batch=batch, prefill_chunk=prompt_len, step_tokens=None, kernels="hf" if hf else "eager",
                        block_size=block).checked()
    planner = Planner(spec, layout, workload)
    tokens = prompt_len * batch
    balanced = -(-tokens * spec.num_experts_per_tok // spec.num_experts) if spec.is_moe else None
    low_planner = Planner(spec, layout, workload.model_copy(update={"expert_tokens": balanced})) if balanced else planner
    out = {}
    for rank in range(planner.layout.world_size):
        coords = rank_coords(rank, planner.layout)
        rb = planner.rank_terms(coords, context, batch).bytes
        low = low_planner.rank_terms(coords, context, batch).bytes
        out[rank] = {"weights": rb.weights, "kv_cache": rb.kv_cache, "activations": rb.activations,
                     "activations_low": low.activations}
        if spec.linear is not None:  # hybrids: the recurrent state of the linear-attention layers, to the byte
            out[rank]["state"] = rb.state
            if hf:  # transformers' own TP plan leaves more whole than shardsim's rules (serve.hf_plan)
                out[rank]["weights"] = hf_plan_weight_bytes(spec, planner.layout, rank, DTYPE_BYTES[planner.dtype])
            # the peak of transformers' torch gated-delta-rule (chunked, fp32) is not modeled: reported, not judged
            out[rank]["activations_judged"] = False
        if rb.zero_gather:  # ZeRO-3: parameters gathered for the forward (reported, not compared)
            out[rank]["zero_gather"] = rb.zero_gather
    return out


def compare(predicted: dict, measured: dict) -> dict:
    """Per term: predicted, measured, difference in bytes and %, verdict (``ok``). Weights, KV and (hybrids) the
    recurrent state must match exactly; an activation peak the prediction does not model is reported with
    ``judged: false`` and no verdict against it."""
    rows = {}
    terms = ("weights", "kv_cache", "activations") + (("state",) if "state" in predicted else ())
    for term in terms:
        p, m = predicted.get(term), measured.get(term)
        if m is None:
            rows[term] = {"predicted": p, "measured": None, "diff": None, "diff_pct": None, "ok": False}
            continue
        low = predicted.get("activations_low", p) if term == "activations" else p
        # Difference to the predicted value, or to the nearer end of the predicted range (0 inside it).
        diff = m - p if m > p else (m - low if m < low else 0)
        ref = p if m > p else low
        pct = 100.0 * diff / ref if ref else 0.0
        if term == "activations" and not predicted.get("activations_judged", True):
            rows[term] = {"predicted": p, "predicted_low": low, "measured": m, "diff": diff, "diff_pct": pct,
                          "ok": True, "judged": False}
            continue
        if term == "activations":
            good = low * (1 - ACTIVATION_TOLERANCE) <= m <= p * (1 + ACTIVATION_TOLERANCE)
        else:
            good = m == p
        rows[term] = {"predicted": p, "predicted_low": low, "measured": m, "diff": diff, "diff_pct": pct, "ok": good}
    return rows
