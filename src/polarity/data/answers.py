"""Ground truths from a source's answer field, by the registry's ``answer_rule``.

- ``"field"``: the field as it is, stripped; numbers become text (an integral float such as
  ``27.0`` becomes ``"27"``; NaN is missing).
- ``"last_boxed"`` (MATH): ``last_boxed(solution)``, the scorer's extractor
  (``polarity.reward``): the content of the ``\\boxed{...}`` / ``\\fbox{...}`` that opens last,
  stripped; ``None`` when that box is never closed or is empty (an earlier box does not stand
  in for it: verl's right-most-box rule), so a ground truth is exactly what the scorer would
  extract from the reference solution.
- ``"answer_list"`` (OlympiadBench's ``final_answer``): ``join_answers``, a list of answers each
  stripped of its ``$...$`` delimiters; one answer is itself, several are joined with ``", "``,
  which math-verify reads as a set (any order of the parts is accepted).

A ``None`` or empty ground truth drops the row (``load_stats["no_answer_dropped"]``).
"""

from __future__ import annotations

import re

from ..reward import last_boxed  # the one boxed-answer extractor (the scorer's)

__all__ = ["ground_truths", "join_answers", "last_boxed"]

# One pair of math delimiters around a whole answer: $$...$$, $...$, \(...\) or \[...\].
_DELIMITED = re.compile(r"\$\$(.*)\$\$|\$(.*)\$|\\\((.*)\\\)|\\\[(.*)\\\]", re.S)


def _strip_math_delimiters(text: str) -> str:
    """``text`` stripped, without one pair of delimiters that encloses all of it.

    ``"$\\frac{1}{2}$"`` -> ``"\\frac{1}{2}"``. Text with a ``$`` inside the pair, such as
    ``"$x=1$ or $x=2$"``, is several math spans, not one: it is kept as it is.
    """
    text = text.strip()
    m = _DELIMITED.fullmatch(text)
    if m is None:
        return text
    inner = next(g for g in m.groups() if g is not None)
    if "$" in inner:
        return text
    return inner.strip()


def join_answers(values) -> str | None:
    """One ground-truth string from a list of answers (OlympiadBench's ``final_answer``).

    Each answer is made text and stripped of the math delimiters around it (``$...$``,
    ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``); empty answers are skipped. One answer is the
    ground truth as it is; several are joined with ``", "`` (``["$2$", "$3$"]`` -> ``"2, 3"``),
    which math-verify parses as a set, so a response boxing ``3, 2`` is accepted too and a
    response with only some of the answers is not. A single string counts as a one-answer list.
    Returns ``None`` when no answer is left (the row is then dropped).
    """
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    parts = [_strip_math_delimiters(answer_text(v) or "") for v in values]
    parts = [p for p in parts if p]
    return ", ".join(parts) or None


def answer_text(value) -> str | None:
    """A scalar answer as stripped text; an integral float loses its ``.0`` (27.0 -> "27")."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN: a missing value
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value).strip()


def ground_truths(rule: str, raw: list) -> list[str | None]:
    """The ground truth of every raw answer value under ``rule`` (one of ``ANSWER_RULES``)."""
    if rule == "last_boxed":
        return [last_boxed(a) if isinstance(a, str) else None for a in raw]
    if rule == "answer_list":
        return [join_answers(a) for a in raw]
    return [answer_text(a) for a in raw]
