"""Typed conversion between TOML data and dataclasses, with errors that name the offending key."""
from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class SchemaError(Exception):
    """A value that does not fit the schema; `path` is the key path, e.g. ('slots', 'sonnet', 'backend')."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message

    @property
    def where(self) -> str:
        return ".".join(self.path) or "(top level)"


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def structure(cls: type[T], data: Any, path: tuple[str, ...] = ()) -> T:
    """Build dataclass `cls` from `data`; unknown keys and wrong types raise SchemaError."""
    if not isinstance(data, dict):
        raise SchemaError(path, f"{'.'.join(path) or 'file'} must be a table, got {_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SchemaError(path + (unknown[0],), f"unknown key '{'.'.join(path + (unknown[0],))}'")
    hints = _hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, path + (name,))
        _check_metadata(fields[name], values[name], path + (name,))
    missing = [
        name for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SchemaError(path, f"missing key '{'.'.join(path + (missing[0],))}'")
    return cls(**values)


def _check_metadata(field: dataclasses.Field[Any], value: Any, path: tuple[str, ...]) -> None:
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise SchemaError(path, f"{'.'.join(path)} must be one of {', '.join(choices)}, got '{value}'")
    minimum = field.metadata.get("min")
    if minimum is not None and value is not None and value < minimum:
        raise SchemaError(path, f"{'.'.join(path)} must be >= {minimum}, got {value}")


def _convert(tp: Any, value: Any, path: tuple[str, ...]) -> Any:
    origin = typing.get_origin(tp)
    where = ".".join(path)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, path)
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(path, f"{where} must be an array, got {_kind(value)}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, item, path) for item in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(path, f"{where} must be a table, got {_kind(value)}")
        _, item_tp = typing.get_args(tp)
        return {key: _convert(item_tp, item, path + (key,)) for key, item in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return structure(tp, value, path)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise SchemaError(path, f"{where} must be {_TYPE_NAMES.get(tp, tp)}, got {_kind(value)}")
    return value


def unstructure(obj: Any) -> Any:
    """Dataclass -> plain TOML-ready data; None values are left out (TOML has no null)."""
    if dataclasses.is_dataclass(obj):
        return {
            f.name: unstructure(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if getattr(obj, f.name) is not None
        }
    if isinstance(obj, dict):
        return {key: unstructure(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [unstructure(item) for item in obj]
    return obj
