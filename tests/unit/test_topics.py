"""Topic validation, the reference matcher, and TopicIndex against brute force."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.errors import AppError
from adapter.protocol import topics
from adapter.protocol.topics import TopicIndex, matches, validate_filter, validate_name

# --- reference matcher: examples from MQTT 3.1.1 §4.7 / MQTT 5 §4.7 ---

MATCH_CASES = [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/tennis/player1/#", "sport/tennis/player2", False),
    ("sport/#", "sport", True),
    ("sport/#", "sport/", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player2", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("+", "finance", True),
    ("+/tennis/#", "sport/tennis/player1", True),
    ("+/tennis/#", "sport/tennis", True),
    ("+/+/+", "a//c", True),
    ("a/+/c", "a//c", True),
    ("a/+/c", "a/c", False),
    ("#", "sport/tennis", True),
    ("#", "/", True),
    ("#", "$SYS/broker/uptime", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/#", "$SYS", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
    ("$SYS/+", "$SYS/x", True),
    ("a/$b/#", "a/$b/c", True),
    ("+/$b", "a/$b", True),
    ("dma/resp/cmd", "dma/resp/cmd", True),
    ("dma/resp/cmd", "dma/resp/cmd/", False),
    ("dma/resp/cmd", "Dma/resp/cmd", False),
    ("/finance", "/finance", True),
    ("/finance", "finance", False),
    ("finance", "/finance", False),
]


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_CASES)
def test_matches_spec_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), MATCH_CASES)
def test_index_agrees_on_spec_examples(topic_filter: str, topic: str, expected: bool) -> None:
    index = TopicIndex.build([(topic_filter, "k")])
    assert index.match(topic) == (frozenset({"k"}) if expected else frozenset())


# --- validation ---

VALID_FILTERS = ["#", "+", "/", "//", "+/+", "/+", "sport/#", "sport/+/player1", "+/tennis/#",
                 "$SYS/#", "a b/ü/€", "𝄞/x", "a" * 65535, "é" * 32767]
VALID_NAMES = ["/", "a", "/finance", "a//b", "$SYS/x", "dma/resp/cmd", "ü" * 32767]


@pytest.mark.parametrize("s", VALID_FILTERS)
def test_valid_filters_pass_through(s: str) -> None:
    assert validate_filter(s) is s


@pytest.mark.parametrize("s", VALID_NAMES)
def test_valid_names_pass_through(s: str) -> None:
    assert validate_name(s) is s
    assert validate_filter(s) is s


BAD_FILTERS = [
    ("", "empty"),
    ("a\x00b", "U+0000"),
    ("a" * 65536, "65535"),
    ("é" * 32768, "65535"),
    ("a\ud800", "UTF-8"),
    ("sport+", "'+'"),
    ("sport/+tennis", "'+'"),
    ("++", "'+'"),
    ("sport/tennis#", "'#'"),
    ("sport/tennis/#/ranking", "'#'"),
    ("#/", "'#'"),
    ("##", "'#'"),
    ("a/#b", "'#'"),
]


@pytest.mark.parametrize(("s", "what"), BAD_FILTERS)
def test_invalid_filters_raise(s: str, what: str) -> None:
    with pytest.raises(AppError) as err:
        validate_filter(s)
    assert err.value.code == "invalid_params"
    assert err.value.msg.startswith("topic: ")
    assert what in err.value.msg


@pytest.mark.parametrize("s", ["", "a\x00", "a/+", "+", "#", "a/#", "a#b", "a+b", "x" * 65536])
def test_invalid_names_raise(s: str) -> None:
    with pytest.raises(AppError) as err:
        validate_name(s)
    assert err.value.code == "invalid_params"
    assert err.value.msg.startswith("topic: ")


@pytest.mark.parametrize("s", [None, 3, b"a/b", ["a"]])
def test_non_strings_raise(s: object) -> None:
    for validate in (validate_filter, validate_name):
        with pytest.raises(AppError, match="must be a string"):
            validate(s)  # type: ignore[arg-type]


def test_add_rejects_invalid_filter() -> None:
    index: TopicIndex[str] = TopicIndex()
    with pytest.raises(AppError):
        index.add("a/#/b", "k")
    with pytest.raises(AppError):
        TopicIndex.build([("ok", "k1"), ("bad+", "k2")])
    assert len(index) == 0


# --- TopicIndex behaviour ---

def test_index_len_counts_distinct_pairs() -> None:
    index = TopicIndex.build([("a/b", 1), ("a/b", 1), ("a/b", 2), ("a/+", 1), ("a/+", 1), ("#", 3)])
    assert len(index) == 4
    index.add("a/b", 2)
    index.add("#", 3)
    assert len(index) == 4
    assert index.match("a/b") == {1, 2, 3}


def test_remove_and_discard() -> None:
    index = TopicIndex.build([("a/b", 1), ("a/+", 2), ("a/#", 3)])
    index.remove("a/+", 2)
    assert index.match("a/b") == {1, 3}
    with pytest.raises(KeyError):
        index.remove("a/+", 2)
    assert index.discard("a/b", 9) is False
    assert index.discard("x/+/y", 1) is False
    assert index.discard("a/b", 1) is True
    assert index.discard("a/#", 3) is True
    assert len(index) == 0
    assert index.match("a/b") == frozenset()


def test_removing_everything_prunes_the_trie() -> None:
    pairs = [("a/+/c/#", 1), ("a/+/c", 2), ("+/+", 3), ("#", 4), ("a/b/c", 5)]
    index = TopicIndex.build(pairs)
    for topic_filter, key in pairs:
        index.remove(topic_filter, key)
    assert index._root.is_empty()
    assert not index._exact


def test_match_result_is_immutable_snapshot() -> None:
    index = TopicIndex.build([("a/b", 1)])
    first = index.match("a/b")
    index.add("a/b", 2)
    assert first == {1}
    assert isinstance(first, frozenset)
    assert index.match("a/b") == {1, 2}


def test_public_surface() -> None:
    assert set(topics.__all__) == {"MAX_TOPIC_BYTES", "TopicIndex", "has_wildcard", "matches",
                                   "validate_filter", "validate_name"}


# --- properties: TopicIndex == brute force over small alphabets that collide ---

LEVELS = st.sampled_from(["a", "b", "", "$s", "ab"])
topic_names = st.lists(LEVELS, min_size=1, max_size=4).map("/".join).filter(bool)


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.one_of(LEVELS, st.just("+")), min_size=1, max_size=4))
    if draw(st.booleans()):
        levels.append("#")
    return "/".join(levels) or "+"


pairs_strategy = st.lists(st.tuples(topic_filters(), st.integers(0, 3)), max_size=25)


def brute_force(pairs: set[tuple[str, int]], topic: str) -> frozenset[int]:
    return frozenset(key for topic_filter, key in pairs if matches(topic_filter, topic))


@given(topic_filters(), topic_names)
def test_generated_strings_validate(topic_filter: str, topic: str) -> None:
    assert validate_filter(topic_filter) == topic_filter
    assert validate_name(topic) == topic


@given(pairs_strategy, st.lists(topic_names, min_size=1, max_size=10))
def test_index_equals_brute_force(pairs: list[tuple[str, int]], probes: list[str]) -> None:
    index = TopicIndex.build(pairs)
    assert len(index) == len(set(pairs))
    for topic in probes:
        assert index.match(topic) == brute_force(set(pairs), topic)


@settings(max_examples=150)
@given(st.lists(st.tuples(st.booleans(), topic_filters(), st.integers(0, 3)), max_size=40),
       st.lists(topic_names, min_size=1, max_size=10))
def test_index_equals_brute_force_after_adds_and_removes(
    ops: list[tuple[bool, str, int]], probes: list[str]
) -> None:
    index: TopicIndex[int] = TopicIndex()
    live: set[tuple[str, int]] = set()
    for is_add, topic_filter, key in ops:
        if is_add:
            index.add(topic_filter, key)
            live.add((topic_filter, key))
        else:
            assert index.discard(topic_filter, key) == ((topic_filter, key) in live)
            live.discard((topic_filter, key))
    assert len(index) == len(live)
    for topic in probes:
        assert index.match(topic) == brute_force(live, topic)
    for pair in live:
        index.remove(*pair)
    assert index._root.is_empty()


@given(st.text(alphabet="ab/+#$\x00é", max_size=8))
def test_validate_filter_accepts_exactly_the_spec(s: str) -> None:
    levels = s.split("/")
    ok = (bool(s) and "\x00" not in s
          and all(lv == "+" or "+" not in lv for lv in levels)
          and all("#" not in lv for lv in levels[:-1])
          and (levels[-1] == "#" or "#" not in levels[-1]))
    try:
        validate_filter(s)
    except AppError:
        assert not ok
    else:
        assert ok
