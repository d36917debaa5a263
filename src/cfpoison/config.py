"""Typed, validated configuration dataclasses that round-trip through JSON.

Every config in cfpoison is a frozen dataclass that inherits :class:`JsonConfig`:

* ``cfg.to_dict()`` gives plain JSON types (tuples become lists, nested configs dicts);
* ``type(cfg).from_dict(d)`` rebuilds it, converting lists back to tuples and nested
  dicts back to configs, rejecting unknown keys and values of the wrong type;
* ``__post_init__`` of each subclass validates ranges with :func:`require` (one condition)
  and :func:`require_ranges` (bounds on fields), so an invalid
  config cannot exist, whether it came from flags, a TOML sweep file or a stored result.

``from_dict(to_dict(cfg)) == cfg`` holds for every config (tested with hypothesis).

The fields are also the one source of the settings' names: :func:`settings_of` walks a config
class (types, defaults, help from the docstring's ``Attributes:`` section or a field's
``metadata["help"]``) into the flat names that sweeps accept and from which the command line
derives its flags (:mod:`cfpoison.cli._options`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import types
import typing
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar, get_args, get_origin, get_type_hints

from cfpoison.errors import ConfigError


def require(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def require_ranges(config: object, where: str | None = None, **bounds: str) -> None:
    """Check each field against its bound, in order: ``rank=">= 1"``, ``lam="> 0"``.

    A bound that starts with ``finite`` (``lam="finite > 0"``) also rejects NaN and infinity.
    The first field out of range raises :class:`ConfigError`
    ``"{where}: {field} must be {bound}, got {value}"`` (no prefix when ``where`` is None; the
    bound without ``finite``).
    """
    for field, written in bounds.items():
        bound = written.removeprefix("finite ")
        finite_only = bound != written
        op, _, number = bound.partition(" ")
        value = getattr(config, field)
        limit = float(number)
        if op == ">=":
            ok = value >= limit
        elif op == ">":
            ok = value > limit
        else:
            raise ValueError(f"require_ranges: bound {bound!r} is not '>= x' or '> x'")
        if not ok or (finite_only and not math.isfinite(value)):
            prefix = f"{where}: " if where is not None else ""
            raise ConfigError(f"{prefix}{field} must be {bound}, got {value}")


def require_unique(names: list[str], empty: str, repeated: str) -> None:
    """Raise :class:`ConfigError` ``empty`` if ``names`` is empty, or ``"{repeated} {names}"``
    with the names listed more than once (sorted)."""
    require(len(names) > 0, empty)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    require(not duplicates, f"{repeated} {', '.join(duplicates)}")


Preset = TypeVar("Preset")


def preset_or_file(text: str, presets: Mapping[str, Preset], what: str) -> Preset | Path:
    """``presets[text]``, else ``text`` as the path of an existing file; neither raises
    :class:`ConfigError` ``"{what}: {text!r} is neither a preset (...) nor a TOML file"``."""
    if text in presets:
        return presets[text]
    path = Path(text)
    if not path.is_file():
        names = ", ".join(sorted(presets))
        raise ConfigError(f"{what}: {text!r} is neither a preset ({names}) nor a TOML file")
    return path


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


class Record:
    """Mixin for dataclasses of plain JSON values (results, not configs)."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (:func:`dataclasses.asdict`)."""
        assert dataclasses.is_dataclass(self)
        return dataclasses.asdict(self)


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


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """``tree["a"]["b"] = value`` for ``dotted = "a.b"``, creating the inner dicts."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        node = tree.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"setting {dotted!r} conflicts with {name} = {node!r}")
        tree = node
    tree[leaf] = value


def field_docs(cls: type) -> dict[str, str]:
    """Each field's help: its ``metadata["help"]``, else its entry in the ``Attributes:``
    section of the class docstring (an entry ``a, b: text`` describes both ``a`` and ``b``;
    deeper-indented lines continue it)."""
    docs: dict[str, str] = {}
    lines = (inspect.getdoc(cls) or "").splitlines()
    if "Attributes:" in lines:
        names: list[str] = []
        indent = None
        for line in lines[lines.index("Attributes:") + 1 :]:
            depth = len(line) - len(line.lstrip())
            if not line.strip() or (indent is not None and depth < indent):
                break
            indent = depth if indent is None else indent
            if depth == indent:
                head, _, text = line.strip().partition(": ")
                names = [name.strip() for name in head.split(",")]
                docs.update(dict.fromkeys(names, text.strip()))
            else:
                docs.update({name: f"{docs[name]} {line.strip()}" for name in names})
    if dataclasses.is_dataclass(cls):
        docs.update(
            {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if "help" in f.metadata}
        )
    return docs


@dataclasses.dataclass(frozen=True)
class Setting:
    """One leaf field of a config tree, as sweeps and flags name it.

    Attributes:
        name: flat name: a sweep's setting and the stem of its flag (``alpha``, ``learner.rank``).
        path: dotted path in the root config's :meth:`JsonConfig.to_dict` form (``threat.alpha``).
        hint: the field's type.
        default: the field's default (in a union of configs: the first variant's).
        help: the field's description (:func:`field_docs`).
        variants: in a union of configs (the learner): ``{variant name: its default}`` of the
            variants that have the field; empty elsewhere.
    """

    name: str
    path: str
    hint: Any
    default: Any
    help: str
    variants: dict[str, Any] = dataclasses.field(default_factory=dict)


def settings_of(
    cls: Any, prefix: str = "", inline: Collection[str] = (), skip: Collection[str] = ()
) -> dict[str, Setting]:
    """The leaf settings of the config class (or union of config classes) ``cls``, by name.

    ``prefix`` starts every name and path (``"preprocess."``). A nested config field ``f``
    gives its own fields as ``f.x``, or as ``x`` when ``f`` is in ``inline``; a union of
    configs told apart by their ``name`` literal (the learner) gives ``f`` itself (the
    variant's name, path ``f.name``) and the union of its variants' fields. ``skip`` names
    top-level fields left out. Two settings of one name are a programming error.
    """
    if _config_variants(cls):
        name = prefix.rstrip(".")
        doc = f"which {name}: {', '.join(_config_variants(cls))}"
        return _union_settings(cls, name, name, "", doc)
    hints, docs = get_type_hints(cls), field_docs(cls)
    found: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        hint, name, path = hints[f.name], f"{prefix}{f.name}", f"{prefix}{f.name}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(hint, type) and issubclass(hint, JsonConfig):
            inner = settings_of(hint, f"{path}.")
            if f.name in inline:
                inner = {s.path.rpartition(".")[2]: s for s in inner.values()}
                inner = {k: dataclasses.replace(s, name=k) for k, s in inner.items()}
            _merge(found, inner)
        elif _config_variants(hint):
            _merge(found, _union_settings(hint, name, path, default.name, docs.get(f.name, "")))
        else:
            _merge(found, {name: Setting(name, path, hint, default, docs.get(f.name, ""))})
    return found


def _config_variants(hint: Any) -> dict[str, type]:
    """``{name: class}`` of a union of configs told apart by a ``name`` literal; else empty."""
    if get_origin(hint) not in (typing.Union, types.UnionType):
        return {}
    variants: dict[str, type] = {}
    for arg in get_args(hint):
        if not (isinstance(arg, type) and issubclass(arg, JsonConfig)):
            return {}
        literal = get_type_hints(arg).get("name")
        if get_origin(literal) is not Literal:
            return {}
        variants[get_args(literal)[0]] = arg
    return variants


def config_variants(hint: Any) -> dict[str, type]:
    """The classes of a union of configs (``LearnerConfig``) by their ``name``."""
    return _config_variants(hint)


def _union_settings(hint: Any, name: str, path: str, default: str, doc: str) -> dict[str, Setting]:
    variants = _config_variants(hint)
    default = default or next(iter(variants))
    choice = Literal[tuple(variants)]  # type: ignore[valid-type]
    found = {name: Setting(name, f"{path}.name", choice, default, doc)} if name else {}
    for variant, cls in variants.items():
        for setting in settings_of(cls, f"{name}." if name else "", skip=("name",)).values():
            known = found.setdefault(setting.name, setting)
            known.variants[variant] = setting.default
    return found


def _merge(found: dict[str, Setting], more: dict[str, Setting]) -> None:
    twice = sorted(set(found) & set(more))
    if twice:
        raise TypeError(f"settings defined twice: {', '.join(twice)}")
    found.update(more)
