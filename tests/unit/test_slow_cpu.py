"""A CPU run's timeout says why it may be slow where the host lacks torch's bf16 GEMM instructions."""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.launch.session import placement
from shardsim.launch.session.phases import slow_cpu_hint
from shardsim.launch.session.request import ValidateRequest
from shardsim.presets import get_preset

AVX2_EPYC = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma f16c\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 amx_bf16\n"
AVX512F_ONLY = "flags\t\t: avx2 avx512f avx512cd\n"     # Knights Landing: no BW / VL / DQ
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm\n"


def test_the_bf16_gemm_instructions_are_read_from_the_cpu_flags():
    assert placement.slow_bf16_cpu(AVX2_EPYC)
    assert placement.slow_bf16_cpu(AVX512F_ONLY)
    assert not placement.slow_bf16_cpu(SAPPHIRE_RAPIDS)
    assert not placement.slow_bf16_cpu(GRAVITON3)
    assert not placement.slow_bf16_cpu("model name\t: unknown\n")   # no flags line: no claim


def test_the_hint_only_on_a_cpu_compute_phase_of_such_a_host(monkeypatch):
    req = ValidateRequest(model=get_preset("0.6b"), layout=Layout())
    monkeypatch.setattr(placement, "slow_bf16_cpu", lambda: True)
    assert "no AVX-512" in slow_cpu_hint("train", req) and "--timeout" in slow_cpu_hint("forward", req)
    assert slow_cpu_hint("setup", req) == ""
    assert slow_cpu_hint("train", ValidateRequest(model=get_preset("0.6b"), layout=Layout(), device="cuda")) == ""
    monkeypatch.setattr(placement, "slow_bf16_cpu", lambda: False)
    assert slow_cpu_hint("train", req) == ""
