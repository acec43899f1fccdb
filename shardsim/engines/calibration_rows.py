"""The measurement database's rows (``tests/data/measurements.jsonl``): each line strictly typed and bounded, read
with the line number and field of any bad line (``shardsim calibrate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, field_validator

from shardsim.constants import MAX_CONTEXT_TOKENS, MAX_JSONL_BYTES, MAX_LAYERS, MAX_WORLD_SIZE
from shardsim.errors import ShardsimError
from shardsim.files import parse_json, read_text, show


class MeasurementRow(BaseModel):
    """One published measurement (a line of the JSONL file): strictly typed, bounded; other fields (source,
    notes, n_gpus …) are kept as they are."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=300)
    dtype: str = Field(max_length=300)
    engine: str = Field(min_length=1, max_length=100)
    engine_version: str | None = Field(default=None, max_length=300)
    gpu: str = Field(min_length=1, max_length=300)
    tp: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    pp: StrictInt | None = Field(default=None, ge=1, le=MAX_LAYERS)
    dp: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    ep: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    context: StrictInt | None = Field(default=None, ge=1, le=MAX_CONTEXT_TOKENS)
    gpu_mem_util: StrictFloat | None = Field(default=None, gt=0, le=1)
    notes: str | None = Field(default=None, max_length=5000)
    measured: dict[str, str | StrictInt | StrictFloat] = Field(min_length=1)
    id: str | None = Field(default=None, max_length=100)
    set: Literal["fitted", "held_out"] | None = None
    outcome: Literal["started", "refused", "oom"] | None = None
    evaluate: StrictBool = True
    skip_reason: str | None = Field(default=None, max_length=500)
    assumed_release: str | None = Field(default=None, max_length=40)
    release: str | None = Field(default=None, max_length=60)  # a range, e.g. ">=0.11,<0.12" (calibration_release)
    base_preset: str | None = Field(default=None, max_length=40)
    config_overrides: dict[str, StrictInt] | None = None
    settings: dict[str, str | StrictInt | StrictFloat | StrictBool | None] | None = None

    @field_validator("measured")
    @classmethod
    def _short(cls, value: dict) -> dict:
        if any(len(str(v)) > 2000 or len(k) > 300 for k, v in value.items()):
            raise ValueError("logged lines of at most 2,000 characters")
        return value


def read_rows(path: str | Path) -> list[tuple[int, dict]]:
    """The measurements of a JSONL file, each line validated (``MeasurementRow``); a bad line is refused with its
    number and field."""
    p = Path(path)
    text = read_text(p, "measurements file", MAX_JSONL_BYTES)
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = parse_json(line, f"{show(p)}: line {i}")
        if not isinstance(row, dict):
            raise ShardsimError(f"{show(p)}: line {i}: expected a JSON object per line")
        try:
            checked = MeasurementRow.model_validate(row)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            raise ShardsimError(f"{show(p)}: line {i}: field '{field}': {err['msg']}") from None
        rows.append((i, {**row, **checked.model_dump(exclude_unset=True)}))
    if not rows:
        raise ShardsimError(f"{show(p)}: no measurements in the file")
    return rows
