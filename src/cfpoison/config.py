"""Typed, validated configuration dataclasses that round-trip through JSON.

Every config in cfpoison is a frozen dataclass that inherits :class:`JsonConfig`:

* ``cfg.to_dict()`` gives plain JSON types (tuples become lists, nested configs dicts);
* ``type(cfg).from_dict(d)`` rebuilds it, converting lists back to tuples and nested
  dicts back to configs, rejecting unknown keys and values of the wrong type;
* ``__post_init__`` of each subclass validates ranges with :func:`require`, so an invalid
  config cannot exist, whether it came from flags, a TOML sweep file or a stored result.

``from_dict(to_dict(cfg)) == cfg`` holds for every config (tested with hypothesis).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, ClassVar, Self, get_args, get_origin, get_type_hints

from cfpoison.errors import ConfigError


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Convert a JSON value to the type ``hint``, or raise ConfigError naming ``where``."""
    origin = get_origin(hint)
    args = get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        named = _variant_named(value, args)
        if named is not None:
            return _convert(value, named, where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} matches none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        key_hint, value_hint = args or (str, Any)
        return {
            _convert(k, key_hint, where): _convert(v, value_hint, f"{where}.{k}")
            for k, v in value.items()
        }
    if isinstance(hint, type) and issubclass(hint, JsonConfig):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return hint.from_dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if math.isnan(value):
            raise ConfigError(f"{where}: NaN is not allowed")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {hint!r}")  # pragma: no cover


def _variant_named(value: Any, variants: tuple[Any, ...]) -> Any:
    """The config class among ``variants`` whose ``name`` literal equals ``value["name"]``."""
    if not isinstance(value, dict) or "name" not in value:
        return None
    for variant in variants:
        if isinstance(variant, type) and issubclass(variant, JsonConfig):
            name_hint = get_type_hints(variant).get("name")
            if get_origin(name_hint) is typing.Literal and value["name"] in get_args(name_hint):
                return variant
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, JsonConfig):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class JsonConfig:
    """Mixin for frozen dataclasses: validated construction and a JSON round trip."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON types."""
        assert dataclasses.is_dataclass(self)
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are an error."""
        assert dataclasses.is_dataclass(cls)
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected an object, got {data!r}")
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        kwargs = {k: _convert(v, hints[k], f"{cls.__name__}.{k}") for k, v in data.items()}
        return cls(**kwargs)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            message = f"{cls.__name__}: invalid JSON ({err.msg} at line {err.lineno})"
            raise ConfigError(message) from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def digest(self) -> str:
        """A stable SHA-256 of the canonical JSON form: the identity of this config."""
        return digest_of(self.to_dict())


def digest_of(data: Any) -> str:
    """SHA-256 of the canonical JSON of plain JSON data (sorted keys, no spaces)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
