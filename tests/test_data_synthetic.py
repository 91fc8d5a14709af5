"""Synthetic tasks: deterministic per seed, with answers that can be checked."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from seqjax.data import (
    DATE_FORMATS,
    adding_problem,
    copy_task,
    date_translation,
    digit_addition,
    format_date,
)

# strptime twins of DATE_FORMATS, used only to read the generated strings back.
_STRPTIME = {
    "{wday} {d} {month} {yyyy}": "%A %d %B %Y",
    "{wday} {month} {d} {yyyy}": "%A %B %d %Y",
    "{m}/{d}/{yy}": "%m/%d/%y",
    "{d} {mon} {yyyy}": "%d %b %Y",
    "{d} {month} {yyyy}": "%d %B %Y",
    "{dd} {mon} {yyyy}": "%d %b %Y",
    "{mon} {d} {yyyy}": "%b %d %Y",
    "{month} {d} {yyyy}": "%B %d %Y",
    "{dd}.{mm}.{yy}": "%d.%m.%y",
    "{d} {mm} {yy}": "%d %m %y",
    "{dd}/{mm}/{yyyy}": "%d/%m/%Y",
    "{wd} {d} {mon} {yyyy}": "%a %d %b %Y",
}


@pytest.mark.parametrize("length", [2, 3, 50, 201])
def test_adding_problem_targets_are_the_marked_sums(length):
    x, y = adding_problem(64, length, seed=7)
    assert x.shape == (64, length, 2) and y.shape == (64,) and x.dtype == np.float32
    marks = x[..., 1]
    np.testing.assert_array_equal(marks.sum(1), 2)
    for row, target in zip(x, y, strict=True):
        positions = np.flatnonzero(row[:, 1])
        assert positions[0] < length // 2 <= positions[1]
        np.testing.assert_allclose(row[positions, 0].sum(), target, rtol=1e-6)
    x2, y2 = adding_problem(64, length, seed=7)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(adding_problem(64, length, seed=8)[1], y)


@pytest.mark.parametrize("length", [1, 10, 100])
def test_copy_task_layout(length):
    x, y = copy_task(16, length, seed=3, num_symbols=10, alphabet_size=8)
    assert x.shape == y.shape == (16, length + 20)
    symbols = x[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    np.testing.assert_array_equal(x[:, 10 + length - 1], 9)  # the delimiter
    np.testing.assert_array_equal(y[:, -10:], symbols)
    assert not y[:, :-10].any()
    assert (x[:, 10:] != 0).sum() == 16  # only the delimiters after the symbols
    np.testing.assert_array_equal(copy_task(16, length, seed=3)[0], x)


def test_date_translation_parses_back_to_the_iso_date():
    pairs = date_translation(600, seed=0)
    assert len(set(pairs.formats)) == len(DATE_FORMATS)  # every format is used
    for human, iso, fmt in zip(pairs.human, pairs.iso, pairs.formats, strict=True):
        parsed = dt.datetime.strptime(human, _STRPTIME[fmt]).date()
        assert parsed.isoformat() == iso, (human, fmt)
        assert human == human.lower() and "," not in human
    assert date_translation(600, seed=0) == pairs
    assert date_translation(600, seed=1) != pairs


def test_date_examples_from_the_assignment():
    day = dt.date(2021, 3, 9)
    assert format_date(day, "{wday} {d} {month} {yyyy}") == "tuesday 9 march 2021"
    assert format_date(day, "{m}/{d}/{yy}") == "3/9/21"
    assert format_date(day, "{d} {mon} {yyyy}") == "9 mar 2021"
    assert format_date(day, "{dd}.{mm}.{yy}") == "09.03.21"


def test_digit_addition_answers():
    qa = digit_addition(500, num_digits=3, seed=2)
    for q, a in zip(qa.questions, qa.answers, strict=True):
        left, right = q.split("+")
        assert 1 <= len(left) <= 3 and 1 <= len(right) <= 3
        assert int(left) + int(right) == int(a)
    assert max(map(len, qa.questions)) <= 7 and max(map(len, qa.answers)) <= 4
    assert digit_addition(500, num_digits=3, seed=2) == qa
    assert digit_addition(3, 1, seed=0, unique=True).questions != []
    unique = digit_addition(90, 1, seed=0, unique=True)
    assert len(set(unique.questions)) == 90
    with pytest.raises(ValueError, match="num_examples"):
        digit_addition(101, 1, unique=True)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: adding_problem(4, 1), "length"),
        (lambda: adding_problem(0, 5), "num_examples"),
        (lambda: copy_task(4, 0), "length"),
        (lambda: copy_task(4, 5, seed=-1), "seed"),
        (lambda: date_translation(5, formats=()), "formats"),
        (lambda: digit_addition(5, 0), "num_digits"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
