"""Name encoding: reversible, and never a path that leaves its folder."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tensorstats.store.names import decode_name, encode_name


@given(st.text(min_size=1))
def test_roundtrip_and_single_safe_segment(name):
    enc = encode_name(name)
    assert decode_name(enc) == name
    assert "/" not in enc and "\\" not in enc and "\x00" not in enc
    assert enc not in (".", "..")
    assert not enc.startswith("__")
    assert all(c.isascii() and (c.isalnum() or c in "._-%") for c in enc)


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("conv1.weight", "conv1.weight"),
        ("a/b", "a%2Fb"),
        ("../x", "..%2Fx"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("__init", "%5F_init"),
        ("tab\there", "tab%09here"),
        ("100%", "100%25"),
        ("é", "%C3%A9"),
    ],
)
def test_known_encodings(name, encoded):
    assert encode_name(name) == encoded


def test_empty_and_non_str_rejected():
    with pytest.raises(ValueError, match="layer must be a non-empty string"):
        encode_name("", what="layer")
    with pytest.raises(TypeError, match="kind must be a str"):
        encode_name(3, what="kind")


def test_distinct_names_never_collide():
    names = ["a/b", "a%2Fb", "a_2Fb", "a.b", "A/b"]
    assert len({encode_name(n) for n in names}) == len(names)
