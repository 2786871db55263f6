"""The base of every typed settings model: one home for each default, one line for each mistake.

Every component's settings model derives from `Settings`: a pydantic model with ``extra="forbid"`` (a typo
is an error, not a silent default) whose every mistake is a `SettingsError` naming the key, what is wrong
and what is allowed. The typer CLI reads its option defaults from the models with `default`.

Two rules keep the cache keys and the JSON written before these models existed byte-identical:
``record()`` lists the fields in declaration order with plain values, exactly as ``dataclasses.asdict``
did; and a `Real` field keeps an integer given for it an integer (``lr = 1`` in TOML stays ``1``, not
``1.0``), as the dataclasses did, because the value's JSON form is part of a stage's key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from ltmia.errors import SettingsError

SEQ_LEN = 128  # L: tokens per text (SPEC §2), of fine-tuning, stores and the zoo alike
Precision = Literal["fp32", "bf16"]  # what a model runs in (``ltmia.device``)
PrecisionSetting = Literal["fp32", "bf16", "auto"]  # what a user asks for: auto is resolved per machine
PRECISIONS: tuple[str, ...] = get_args(PrecisionSetting)
BosSetting = Literal["never", "always", "auto"]  # ``ltmia.data.resolve_bos``; auto: the tokenizer's default


def keep_int(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate as a float, but hand back an int given as an int (its JSON form is in cache keys)."""
    checked = handler(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else checked


Real = Annotated[float, WrapValidator(keep_int)]
"""A real-valued setting: any finite or infinite float; an int stays an int."""


def describe(error: ValidationError, known: Iterable[str]) -> str:
    """One line for the first problem of a ``ValidationError``: the key, what is wrong, what is allowed."""
    problems = error.errors()
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    if first["type"] == "extra_forbidden":
        text = f"unknown key {key!r} (known: {', '.join(known)})"
    elif first["type"] == "value_error":  # a model's own check: its message says it all
        text = str(first["ctx"]["error"])
    elif first["type"] == "literal_error":
        choices = first["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        text = f"{key} {first['input']!r} is not one of: {choices}"
    else:
        text = f"{key}: {first['msg'].lower()}, got {first['input']!r}"
    return f"{text}{more}"


def settings_error(detail: str, where: str) -> SettingsError:
    """``detail`` prefixed with where it happened; the bare detail stays on the error for a caller that
    knows better where (a config section rather than the model's name)."""
    return SettingsError(f"{where}: {detail}" if where else detail, detail)


class Settings(BaseModel):
    """A component's settings: fields with their defaults, checks in validators, one-line errors.

    ``what`` names the component in messages of a direct construction (``Recipe(lr=-1)``); a config file
    names its section instead (`from_table`).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    what: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise settings_error(describe(error, type(self).model_fields), self.what) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as error:
            raise settings_error(describe(error, type(self).model_fields), self.what) from None

    @classmethod
    def from_table(cls, table: dict, where: str) -> Self:
        """Settings from a config table; a problem is a `SettingsError` naming ``where`` and the key."""
        try:
            return cls(**table)
        except SettingsError as error:
            raise settings_error(error.detail, where) from None

    def record(self) -> dict:
        """Plain values in field order, nested settings as dicts (``dataclasses.asdict``'s form): what
        manifests record and cache keys hash."""
        return self.model_dump()


def default(model: type[Any], name: str) -> Any:
    """The default of a field of a settings model (or a plain dataclass such as ``ZooSize``): what the CLI
    and the estimator show, read from the one model that owns it."""
    if issubclass(model, BaseModel):
        return model.model_fields[name].get_default(call_default_factory=True)
    field = next(f for f in dataclasses.fields(model) if f.name == name)
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def check_keys(table: dict, known: Iterable[str], where: str) -> dict:
    """``table`` after checking it has no key outside ``known``: the one-line message of `Settings` for a
    table that is not one model (a study section with keys of its own)."""
    known = list(known)
    unknown = [key for key in table if key not in known]
    if unknown:
        raise SettingsError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    return table
