"""What every params.yaml section is: frozen, strict (no coercion, unknown keys refused), each
field with its one default and the text of what it allows, which the one-line errors quote
(loading.py). And the bounds on seeds every section shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Seeds. grid.model_seeds gives model i of a study seed s the seed s*1000 + i, so a study
# holds at most 1000 models per cell (more would reuse the next study seed's models). The
# seeds reach torch.manual_seed / torch.Generator.manual_seed (s, s+1, s*1000+i: they take
# [-2**63, 2**64)), numpy's default_rng (s: it takes any integer >= 0) and derive_seed
# (hashed to 31 bits, any integer). [0, 2**32), the usual 32-bit seed, keeps every one of
# them valid with room to spare: s*1000 + 999 < 2**42.
SEED_LIMIT = 2**32


MAX_MODELS_PER_CELL = 1000


class _Bad(ValueError):
    """Raised inside a validator: `key` relative to the model validated, what is allowed."""

    def __init__(self, key: str, allowed: str, value):
        super().__init__(f"{key}: must be {allowed}, got {value!r}")
        self.key, self.allowed, self.value = key, allowed, value


def _f(default, allowed: str, **constraints):
    """A field: its one default, and the text of what it allows (the error message's)."""
    return Field(default, description=allowed, **constraints)


class _Section(BaseModel):
    """Frozen, unknown keys refused, no type coercion (a bool is not a number, '1' is not
    1; an integer is accepted where a number is), NaN and infinities refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _empty_section(cls, raw):
        return {} if raw is None else raw  # `metrics:` with nothing under it: all defaults
