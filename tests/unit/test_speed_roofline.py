"""The roofline's rates by dtype: fp8 matmuls at bf16's achieved rate times the fitted fp8 speedup (the datasheets'
2× without one), attention at the 16-bit peak whatever the weights; the fit sets the speedup only where a fitted
row runs fp8 matmuls."""

from __future__ import annotations

import pytest

from shardsim.hardware.catalog import resolve_gpu
from shardsim.speed import fit
from shardsim.speed.roofline import Efficiency, gpu_peaks, group_times
from shardsim.speed.work import StepWork

H100_BF16, H100_BW = 989.4e12, 3350e9  # cluster_specs/gpus.yaml: H100 SXM bf16 dense FLOP/s, HBM B/s
# a step of 1e15 matmul FLOPs and 2e14 attention FLOPs, bytes small enough that both groups are compute-bound
WORK = StepWork(matmul_flops=1e15, matmul_bytes=1e9, attention_flops=2e14, attention_bytes=1e9, other_bytes=1e6)


def test_fp8_matmuls_at_the_fitted_speedup_attention_at_the_16_bit_peak():
    peaks = gpu_peaks(resolve_gpu("h100"), "bf16", "fp8")
    assert peaks.dtype == "fp8" and peaks.flops == pytest.approx(2 * H100_BF16)
    eff = Efficiency(0.5, 0.8, 0.0, 0.0, fp8_speedup=1.25)
    matmul, attention, other = group_times(WORK, peaks, eff)
    # bf16's achieved 0.5 × 989.4 TFLOP/s, 1.25× faster in fp8: 0.3125 of the fp8 peak
    assert eff.compute_of("fp8") == pytest.approx(0.3125)
    assert matmul.compute_s == pytest.approx(1e15 / (1.25 * 0.5 * H100_BF16))
    assert attention.compute_s == pytest.approx(2e14 / (0.5 * H100_BF16))  # bf16 kernels, bf16's rate
    assert other.compute_s == 0 and other.memory_s == pytest.approx(1e6 / (0.8 * H100_BW))


def test_without_a_fitted_speedup_fp8_runs_at_the_datasheets_2x():
    peaks = gpu_peaks(resolve_gpu("h100"), "bf16", "fp8")
    matmul, attention, _ = group_times(WORK, peaks, Efficiency(0.5, 0.8, 0.0, 0.0))
    assert matmul.compute_s == pytest.approx(1e15 / (2 * 0.5 * H100_BF16))
    assert attention.compute_s == pytest.approx(2e14 / (0.5 * H100_BF16))


def test_bf16_and_gpus_without_fp8_ignore_the_speedup():
    eff = Efficiency(0.5, 0.8, 0.0, 0.0, fp8_speedup=1.25)
    matmul, _, _ = group_times(WORK, gpu_peaks(resolve_gpu("h100"), "bf16", "none"), eff)
    assert matmul.compute_s == pytest.approx(1e15 / (0.5 * H100_BF16))
    a100 = gpu_peaks(resolve_gpu("a100"), "bf16", "fp8")  # no fp8 tensor cores: the W8A16 path, in bf16
    assert a100.dtype == "bf16" and eff.compute_of(a100.dtype) == 0.5


class _Pipe:
    def __init__(self, dtype):
        self.peaks = type("Peaks", (), {"dtype": dtype})()


@pytest.mark.parametrize("dtypes, fitted", [(("bf16", "bf16"), False), (("bf16", "fp8"), True)])
def test_the_fit_sets_the_fp8_speedup_only_where_a_row_runs_fp8_matmuls(dtypes, fitted):
    prepared = [fit.Prepared(row=None, request=None, sched=None, pipe=_Pipe(d), measured={}) for d in dtypes]
    grids = fit.fitted_grids(prepared)
    assert ("fp8_speedup" in grids) == fitted and "compute" in grids and "memory" in grids
    assert min(fit.GRIDS["fp8_speedup"]) == 1.0 and max(fit.GRIDS["fp8_speedup"]) == 2.0
