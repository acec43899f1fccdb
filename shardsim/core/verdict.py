"""One verdict per plan: the planner's memory table and the engine's start-up figures read together.

FITS, BORDERLINE (the margin is inside the band of the estimated terms, or the engine starts only inside one),
DOES NOT FIT (the most loaded GPU is over its capacity) or WILL NOT START (the engine refuses), each with its reason
and, where one is found, the change that fixes it. The bands:
the planner's activations and runtime are estimates (``constants.ACTIVATION_UNCERTAINTY``,
``RUNTIME_UNCERTAINTY``; weights, KV and state are exact); the engine's KV-token band is the held-out error of the
rule set in use (``engines.bands``). A plan is BORDERLINE when the estimated terms, each moved to the far edge of its
band, would use up the headroom — or when the engine's KV cache, moved to the low edge of its band, would no longer
hold one request of its context — or when the engine names a start risk (``EngineReport.start_risk``: vLLM's CUDA
graphs, captured after the KV cache, at the high edge of their held-out band).

Exit codes with ``--check``: 0 FITS, 1 DOES NOT FIT or WILL NOT START, 3 BORDERLINE (2 stays bad input).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from shardsim.constants import ACTIVATION_UNCERTAINTY, RUNTIME_UNCERTAINTY

FITS, BORDERLINE, NO_FIT, NO_START = "FITS", "BORDERLINE", "DOES NOT FIT", "WILL NOT START"
EXIT_CODES = {FITS: 0, NO_FIT: 1, NO_START: 1, BORDERLINE: 3}
"""``--check``: what each verdict exits with (documented in ``plan --help`` and the README)."""

TP_STEPS = (2, 4, 8)
"""TP degrees offered as the fix of a plan that does not fit (one node of 8 GPUs at most)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    reason: str
    fix: str | None = None
    band_bytes: int = 0          # the planner's estimated terms at the edge of their band, most loaded GPU

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def to_dict(self) -> dict:
        return asdict(self) | {"exit_code_with_check": self.exit_code}


def estimate_band_bytes(report) -> int:
    """How far the most loaded GPU's estimated terms may be off: activations ± ACTIVATION_UNCERTAINTY, runtime ±
    RUNTIME_UNCERTAINTY (weights, KV and recurrent state are exact)."""
    b = report.peak.bytes
    return int(b.activations * ACTIVATION_UNCERTAINTY + b.runtime * RUNTIME_UNCERTAINTY)


def plan_verdict(report, engine=None, fix_layout=None) -> Verdict:
    """The verdict of a ``PlanReport`` and (optionally) its ``EngineReport``. ``fix_layout(tp) -> bool`` says whether
    the same plan fits at that TP degree (the fix offered when it does not fit)."""
    gib = 2 ** 30
    band = estimate_band_bytes(report)
    if engine is not None and not engine.starts:
        return Verdict(NO_START, f"{engine.engine}: {engine.refusal}", engine.suggestion, band)
    if not report.fits:
        over = -report.headroom_bytes
        fix = next((f"--tp {tp}" for tp in TP_STEPS if tp > report.layout.tp and fix_layout and fix_layout(tp)), None)
        return Verdict(NO_FIT, f"rank {report.peak.rank} needs {over / gib:.2f} GiB more than its "
                               f"{report.capacity_bytes / gib:.2f} GiB", fix, band)
    if report.headroom_bytes < band:
        return Verdict(BORDERLINE, f"headroom {report.headroom_bytes / gib:.2f} GiB is inside the estimates' band "
                                   f"(±{band / gib:.2f} GiB of activations and runtime)",
                       "a shorter --context or smaller --batch, or one more GPU of --tp", band)
    if engine is not None and engine.start_risk:  # the engine's suggestion starts without the risk (suggest.py)
        return Verdict(BORDERLINE, f"{engine.engine}: {engine.start_risk}", engine.suggestion, band)
    if engine is not None:
        tokens_band = engine.error_bands.get("kv_cache_tokens")
        concurrency = engine.max_concurrency
        if tokens_band and concurrency is not None and concurrency * (1 - tokens_band) < 1:
            return Verdict(BORDERLINE, f"{engine.engine}'s cache holds {concurrency:.2f} requests of its context; at "
                                       f"the low edge of its ±{100 * tokens_band:g} % band, fewer than one",
                           engine.suggestion or "a shorter --max-model-len / --context-length", band)
        return Verdict(FITS, f"{engine.engine} starts; headroom {report.headroom_bytes / gib:.2f} GiB", None, band)
    return Verdict(FITS, f"headroom {report.headroom_bytes / gib:.2f} GiB", None, band)
