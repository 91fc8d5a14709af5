"""Synthetic sequence tasks generated from a seed (numpy and the standard library only).

* :func:`adding_problem`: Hochreiter & Schmidhuber (1997), in the form of Le et al.
  (2015): sum the two marked numbers of a long sequence.
* :func:`copy_task`: Arjovsky et al. (2016): remember a few symbols over T blanks.
* :func:`date_translation`: the deeplearning.ai "neural machine translation" assignment,
  human-readable dates to ISO ``YYYY-MM-DD``.
* :func:`digit_addition`: the Keras ``addition_rnn`` example, ``"123+45"`` -> ``"168"``.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import NamedTuple

import numpy as np

__all__ = [
    "DATE_FORMATS",
    "DatePairs",
    "StringPairs",
    "adding_problem",
    "copy_task",
    "date_translation",
    "digit_addition",
    "format_date",
]

_MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Fixed English names (not strftime's %B/%A, which follow the process locale).
# Keys: d/dd day, m/mm month number, mon/month month name, yy/yyyy year, wd/wday weekday.
DATE_FORMATS = (
    "{wday} {d} {month} {yyyy}",  # tuesday 9 march 2021
    "{wday} {month} {d} {yyyy}",  # tuesday march 9 2021 (babel "full", commas removed)
    "{m}/{d}/{yy}",  # 3/9/21 (US short)
    "{d} {mon} {yyyy}",  # 9 mar 2021
    "{d} {month} {yyyy}",  # 9 march 2021
    "{dd} {mon} {yyyy}",  # 09 mar 2021
    "{mon} {d} {yyyy}",  # mar 9 2021 (babel "medium", commas removed)
    "{month} {d} {yyyy}",  # march 9 2021
    "{dd}.{mm}.{yy}",  # 09.03.21
    "{d} {mm} {yy}",  # 9 03 21
    "{dd}/{mm}/{yyyy}",  # 09/03/2021 (day first)
    "{wd} {d} {mon} {yyyy}",  # tue 9 mar 2021
)
# Two-digit years are only unambiguous inside one century; this window is also the one
# that time.strptime's %y maps to, so "21" reads back as 2021 and "70" as 1970.
_FIRST_DATE = dt.date(1969, 1, 1)
_LAST_DATE = dt.date(2068, 12, 31)


def _rng(seed: int) -> np.random.Generator:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.default_rng(seed)


def _check_count(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def adding_problem(
    num_examples: int, length: int, seed: int = 0, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem.

    Channel 0 holds numbers uniform in [0, 1); channel 1 marks exactly two steps, one in
    the first half and one in the second half (so the second mark is at ``T // 2`` or
    later). The target is the sum of the two marked numbers.

    Args:
        num_examples: N.
        length: T >= 2.
        seed: Generator seed.
        dtype: Float dtype of the outputs.

    Returns:
        inputs [N, T, 2] and targets [N].
    """
    _check_count("num_examples", num_examples)
    _check_count("length", length, 2)
    rng = _rng(seed)
    values = rng.random((num_examples, length))
    half = length // 2
    first = rng.integers(0, half, num_examples)
    second = rng.integers(half, length, num_examples)
    marks = np.zeros((num_examples, length))
    rows = np.arange(num_examples)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    inputs = np.stack([values, marks], axis=-1).astype(dtype)
    targets = (inputs[rows, first, 0] + inputs[rows, second, 0]).astype(dtype)
    return inputs, targets


def copy_task(
    num_examples: int,
    length: int,
    seed: int = 0,
    num_symbols: int = 10,
    alphabet_size: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """The copy (memory) task.

    Ids: 0 blank, ``1..alphabet_size`` symbols, ``alphabet_size + 1`` the delimiter
    (V = alphabet_size + 2). Inputs: S random symbols, T - 1 blanks, the delimiter, S
    blanks. Targets: T + S blanks, then the S symbols. Total length T + 2S. A model
    that ignores the symbols scores a cross-entropy of ``S log(alphabet_size) / (T + 2S)``.

    Args:
        num_examples: N.
        length: T >= 1, the delay.
        seed: Generator seed.
        num_symbols: S, symbols to remember.
        alphabet_size: Number of distinct symbols.

    Returns:
        inputs and targets, int32 [N, T + 2S].
    """
    _check_count("num_examples", num_examples)
    _check_count("length", length)
    _check_count("num_symbols", num_symbols)
    _check_count("alphabet_size", alphabet_size)
    rng = _rng(seed)
    s, total = num_symbols, length + 2 * num_symbols
    symbols = rng.integers(1, alphabet_size + 1, (num_examples, s))
    inputs = np.zeros((num_examples, total), np.int32)
    targets = np.zeros((num_examples, total), np.int32)
    inputs[:, :s] = symbols
    inputs[:, s + length - 1] = alphabet_size + 1
    targets[:, length + s :] = symbols
    return inputs, targets


class DatePairs(NamedTuple):
    """Human-readable dates and their ISO forms (lists of N strings), and the format used."""

    human: list[str]
    iso: list[str]
    formats: list[str]


def format_date(date: dt.date, fmt: str) -> str:
    """Writes ``date`` with one of :data:`DATE_FORMATS` (English names, lower case)."""
    return fmt.format(
        d=date.day,
        dd=f"{date.day:02d}",
        m=date.month,
        mm=f"{date.month:02d}",
        month=_MONTHS[date.month - 1],
        mon=_MONTHS[date.month - 1][:3],
        yy=f"{date.year % 100:02d}",
        yyyy=f"{date.year:04d}",
        wday=_WEEKDAYS[date.weekday()],
        wd=_WEEKDAYS[date.weekday()][:3],
    )


def date_translation(
    num_examples: int, seed: int = 0, formats: tuple[str, ...] = DATE_FORMATS
) -> DatePairs:
    """Human-readable dates -> ISO dates, uniform over 1969-01-01..2068-12-31.

    Each example picks a date and a format uniformly. Dates are written in lower case
    without commas, as in the assignment (which lower-cases and strips commas).

    Args:
        num_examples: N.
        seed: Seed (of Python's ``random.Random``, so the output is identical on every
            platform).
        formats: Format strings (see :data:`DATE_FORMATS` for the keys).

    Returns:
        :class:`DatePairs` of N strings each.
    """
    _check_count("num_examples", num_examples)
    if not formats:
        raise ValueError("formats must not be empty")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rand = random.Random(seed)
    span = (_LAST_DATE - _FIRST_DATE).days
    human, iso, used = [], [], []
    for _ in range(num_examples):
        date = _FIRST_DATE + dt.timedelta(days=rand.randint(0, span))
        fmt = formats[rand.randrange(len(formats))]
        human.append(format_date(date, fmt))
        iso.append(date.isoformat())
        used.append(fmt)
    return DatePairs(human, iso, used)


class StringPairs(NamedTuple):
    """Question and answer strings (lists of N strings)."""

    questions: list[str]
    answers: list[str]


def digit_addition(
    num_examples: int, num_digits: int = 3, seed: int = 0, unique: bool = False
) -> StringPairs:
    """Addition of two numbers of 1..``num_digits`` digits each, as strings.

    Args:
        num_examples: N.
        num_digits: Largest number of digits of each operand.
        seed: Generator seed.
        unique: Draw N distinct questions (the Keras example does; raises when fewer
            exist).

    Returns:
        :class:`StringPairs`: e.g. ``"123+45"`` and ``"168"``. The longest question has
        ``2 * num_digits + 1`` characters and the longest answer ``num_digits + 1``.
    """
    _check_count("num_examples", num_examples)
    _check_count("num_digits", num_digits)
    rng = _rng(seed)
    if unique and num_examples > (10**num_digits) ** 2:
        raise ValueError(
            f"num_examples={num_examples} exceeds the {(10**num_digits) ** 2} distinct questions"
        )
    questions, answers, seen = [], [], set()
    while len(questions) < num_examples:
        need = num_examples - len(questions)
        # Operand length first, then digits: small numbers are as common as long ones.
        lengths = rng.integers(1, num_digits + 1, (need, 2))
        values = rng.integers(0, 10**lengths)
        for a, b in values.tolist():
            question = f"{a}+{b}"
            if unique:
                if question in seen:
                    continue
                seen.add(question)
            questions.append(question)
            answers.append(str(a + b))
            if len(questions) == num_examples:
                break
    return StringPairs(questions, answers)
