"""JsonConfig: validated construction and an exact JSON round trip."""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfpoison.config import JsonConfig, field_docs, require, require_ranges, settings_of
from cfpoison.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Inner(JsonConfig):
    name: Literal["inner"] = "inner"
    rate: float = 0.1

    def __post_init__(self) -> None:
        require(self.rate > 0, f"rate must be > 0, got {self.rate}")


@dataclasses.dataclass(frozen=True)
class Other(JsonConfig):
    name: Literal["other"] = "other"
    depth: int = 3


@dataclasses.dataclass(frozen=True)
class Outer(JsonConfig):
    count: int = 1
    label: str = "x"
    flag: bool = False
    weights: tuple[float, ...] = ()
    pair: tuple[int, str] = (0, "a")
    maybe: int | None = None
    inner: Inner = Inner()
    either: Inner | Other = Other()


outers = st.builds(
    Outer,
    count=st.integers(-(10**12), 10**12),
    label=st.text(max_size=20),
    flag=st.booleans(),
    weights=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=5).map(tuple),
    pair=st.tuples(st.integers(0, 9), st.text(max_size=3)),
    maybe=st.none() | st.integers(),
    inner=st.builds(Inner, rate=st.floats(1e-6, 1e6)),
    either=st.one_of(
        st.builds(Inner, rate=st.floats(1e-6, 1e6)), st.builds(Other, depth=st.integers())
    ),
)


@given(outers)
def test_round_trip_through_json(cfg: Outer) -> None:
    assert Outer.from_json(cfg.to_json()) == cfg
    assert Outer.from_dict(cfg.to_dict()) == cfg
    assert Outer.from_json(cfg.to_json()).digest() == cfg.digest()


def test_digest_changes_with_any_field() -> None:
    base = Outer()
    assert base.digest() != base.replace(count=2).digest()
    assert base.digest() != base.replace(inner=Inner(rate=0.2)).digest()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"count": "3"}, "Outer.count: expected an integer"),
        ({"count": True}, "Outer.count: expected an integer"),
        ({"flag": 1}, "expected true or false"),
        ({"weights": [1.0, "a"]}, "Outer.weights[1]"),
        ({"weights": [float("nan")]}, "NaN"),
        ({"pair": [1]}, "expected 2 values"),
        ({"colour": "red"}, "unknown field(s) colour"),
        ({"inner": {"rate": -1.0}}, "rate must be > 0"),
        ({"either": {"name": "third"}}, "matches none of"),
    ],
)
def test_bad_values_are_one_line_config_errors(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        Outer.from_dict(data)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_union_picks_the_variant_named_by_its_literal() -> None:
    cfg = Outer.from_dict({"either": {"name": "inner", "rate": 2.0}})
    assert cfg.either == Inner(rate=2.0)


def test_invalid_json_text() -> None:
    with pytest.raises(ConfigError, match="invalid JSON"):
        Outer.from_json("{not json")


def test_validation_runs_on_replace() -> None:
    with pytest.raises(ConfigError):
        Inner().replace(rate=0.0)


def test_union_variant_errors_name_the_real_problem() -> None:
    with pytest.raises(ConfigError, match="rate must be > 0"):
        Outer.from_dict({"either": {"name": "inner", "rate": -1.0}})


@dataclasses.dataclass(frozen=True)
class Documented(JsonConfig):
    """A config whose docstring documents its fields.

    Attributes:
        low, high: the bounds, in stars,
            inclusive.
        inner: nested.
    """

    low: float = 1.0
    high: float = 5.0
    inner: Inner = Inner()
    either: Inner | Other = Inner()
    noted: int = dataclasses.field(default=2, metadata={"help": "from the metadata"})


def test_field_docs_read_the_attributes_section_and_metadata() -> None:
    docs = field_docs(Documented)
    assert docs["low"] == docs["high"] == "the bounds, in stars, inclusive."
    assert docs["noted"] == "from the metadata" and "either" not in docs


def test_settings_flatten_nested_configs_and_unions_of_configs() -> None:
    found = settings_of(Documented, inline=("inner",))
    assert found["low"].path == "low" and found["low"].default == 1.0
    assert found["rate"].path == "inner.rate"  # inlined: its own name
    assert found["either"].path == "either.name"
    assert get_args(found["either"].hint) == ("inner", "other")
    assert found["either.rate"].variants == {"inner": 0.1}
    assert found["either.depth"].variants == {"other": 3}
    assert set(settings_of(Documented, "p.", skip=("inner", "either"))) == {
        "p.low",
        "p.high",
        "p.noted",
    }
    with pytest.raises(TypeError, match="twice"):
        settings_of(Twice, inline=("inner",))  # rate and inner.rate, both named rate


@dataclasses.dataclass(frozen=True)
class Twice(JsonConfig):
    rate: float = 1.0
    inner: Inner = Inner()


@dataclasses.dataclass(frozen=True)
class _Bounded:
    rank: int = 1
    lam: float = 0.5


def test_require_ranges_names_the_first_field_out_of_range():
    require_ranges(_Bounded(), "als", rank=">= 1", lam="> 0")
    with pytest.raises(ConfigError, match=r"^als: rank must be >= 1, got 0$"):
        require_ranges(_Bounded(rank=0, lam=0.0), "als", rank=">= 1", lam="> 0")
    with pytest.raises(ConfigError, match=r"^lam must be > 0, got 0.0$"):
        require_ranges(_Bounded(lam=0.0), rank=">= 1", lam="> 0")
    with pytest.raises(ConfigError, match=r"^lam must be > 0, got nan$"):
        require_ranges(_Bounded(lam=float("nan")), lam="> 0")
    with pytest.raises(ValueError, match="not '>= x' or '> x'"):
        require_ranges(_Bounded(), rank="< 3")
