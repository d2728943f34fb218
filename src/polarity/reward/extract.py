"""Answer extraction: which part of a response an extraction policy credits.

Pure Python, linear time, never raises on odd text (megabyte strings, unbalanced braces,
surrogates): the scorer's workers and the data loaders (``last_boxed``, the project's one
boxed-answer extractor) share these functions, so a ground truth is what the scorer extracts.
"""

from __future__ import annotations

import re

__all__ = [
    "DEFAULT_EXTRACTION",
    "EXTRACTIONS",
    "check_extraction",
    "extract_answer",
    "final_answer",
    "last_boxed",
    "wrap_ground_truth",
]

EXTRACTIONS = ("boxed", "answer_line", "lenient")
"""Extraction policies: which part of a response is credited.

``boxed`` (default) and ``answer_line`` credit only the final answer (the last ``\\boxed{}``;
DAPO's last ``Answer:`` line), judged with math-verify's equivalence: the verdict is
``verify(parse(wrap(gold)), parse(wrap(final_answer(response))))``. ``lenient`` is math-verify's
default, ``verify(parse(wrap(gold)), parse(response))``, which falls back to the last expression
anywhere in the text when there is no well-formed box, so restating the question
(``48+28. \\boxed{.``) is credited.
"""
DEFAULT_EXTRACTION = "boxed"

# Tokens for a single left-to-right scan: box openers, escaped braces / backslashes, braces.
_BRACE_TOKENS = re.compile(r"(?P<box>\\(?:boxed|fbox)[ \t\r\n]*\{)|(?P<esc>\\[{}\\])|(?P<brace>[{}])")
_ANSWER_TAG = re.compile(r"answer:", re.IGNORECASE)
_MATH_DOLLAR = re.compile(r"(?<!\\)\$")  # a $ delimiter, not an escaped \$ (currency)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{}``/``\\fbox{}`` (the one that opens last), stripped.

    None when there is no box, when that last box is never closed (a truncated answer) or when
    it is empty: an earlier box does not stand in for it. This is the right-most-box rule of the
    papers' verifiers (verl's ``last_boxed_only_string``), with braces matched by one linear
    scan and ``\\{ \\} \\\\`` read as text.
    """
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    stack: list[int] = []  # content start for a box opener, -1 for a plain "{"
    last_open = -1  # content start of the last box opener
    last_close = -1  # where that box closes, once it does
    for m in _BRACE_TOKENS.finditer(text):
        kind = m.lastgroup
        if kind == "box":
            stack.append(m.end())
            last_open, last_close = m.end(), -1
        elif kind == "brace":
            if m.group() == "{":
                stack.append(-1)
            elif stack:
                start = stack.pop()
                if start == last_open:
                    last_close = m.start()
        # "esc": \{ \} \\ are literal, never structure
    if last_close < 0:
        return None
    return text[last_open:last_close].strip() or None


def _answer_line(text: str) -> str | None:
    """Text after the last ``Answer:`` to the end of its line, cleaned; None if absent/empty."""
    last = None
    for last in _ANSWER_TAG.finditer(text):
        pass
    if last is None:
        return None
    end = text.find("\n", last.end())
    value = text[last.end() : end if end >= 0 else len(text)].strip()
    if value.endswith("."):
        value = value[:-1].rstrip()
    value = value.strip("*").strip()  # markdown bold around the value
    value = value.strip("$").strip()
    return value or None


def final_answer(response: str, extraction: str = DEFAULT_EXTRACTION) -> str | None:
    """The final answer a strict policy credits, or None when the response has none.

    ``boxed``: the content of the last ``\\boxed{}`` (:func:`last_boxed`); ``answer_line``: the
    value on DAPO's last ``Answer:`` line (``$``, markdown ``*`` and a final period removed);
    ``lenient``: the boxed answer, else the ``Answer:`` line (math-verify decides the verdict;
    this string is only reported). Linear time, never raises.
    """
    check_extraction(extraction)
    try:
        if not isinstance(response, str):
            return None
        if extraction == "answer_line":
            return _answer_line(response)
        boxed = last_boxed(response)
        if boxed is not None or extraction == "boxed":
            return boxed
        return _answer_line(response)
    except Exception:  # pragma: no cover - defensive, must never raise
        return None


def extract_answer(response: str) -> str | None:
    """The last ``\\boxed{}`` answer, else the last ``Answer:`` line (see :func:`final_answer`).

    Pure Python, independent of math-verify, linear time (safe on megabyte strings).
    """
    return final_answer(response, "lenient")


def check_extraction(extraction: str) -> str:
    """``extraction`` if it names a policy in :data:`EXTRACTIONS`, else ValueError."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"unknown extraction policy {extraction!r}; known: {', '.join(EXTRACTIONS)}")
    return extraction


def wrap_ground_truth(ground_truth: str) -> str:
    """Wrap a LaTeX answer in ``$...$`` unless it already has ``\\boxed`` or a ``$`` delimiter
    (an escaped ``\\$``, as in ``\\$18.90``, is text and does not count)."""
    if "\\boxed" in ground_truth or _MATH_DOLLAR.search(ground_truth):
        return ground_truth
    return f"${ground_truth}$"
