"""Synthetic but realistic (response, ground truth) pairs shaped like one evaluation.

``make_pairs(n_pairs, samples=256)`` returns problems x samples pairs in problem-major order, as
an evaluation writes them: every problem has a gold answer in one of many LaTeX forms, and its
``samples`` responses are chain-of-thought text of realistic length (log-normal, median ~1.5 KB,
with inline and display math) ending in one of a handful of candidate answers, so that answers
repeat within a problem as they do at temperature 0.6: the gold in several equivalent forms
(``\\frac{3}{4}``, ``0.75``, ``\\dfrac34``), near misses and wrong values. The final answer is
written in the forms models use: ``\\boxed{}`` inline or in display math, ``Answer: ...`` (the
DAPO prompt), ``The final answer is $...$. I hope it is correct.``. A few percent are truncated
(no answer), a few are garbage (random bytes, unicode, surrogates), and a handful are
pathological (power towers, deeply nested braces, a megabyte string, unbalanced delimiters).

Deterministic for a seed. Used by ``bench_scoring.py``; pure standard library.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

WORDS = (
    "we have the so then thus since because let note that it follows compute substitute "
    "solve for both sides gives which means hence equation term factor simplify check "
    "value case first second finally integer positive sum product number of ways"
).split()

INLINE_MATH = [
    "$x^2 + 2x + 1 = 0$", "$a + b = 7$", "\\(3 \\cdot 4 = 12\\)", "$\\frac{a}{b}$", "$n \\geq 2$",
    "$\\sqrt{x + 1}$", "$2^{10} = 1024$", "$\\angle ABC$", "$f(x) = x^3 - x$", "$k$",
    "$\\binom{5}{2} = 10$", "$\\pi r^2$", "$x \\in [0, 1]$", "$|z| = 1$", "$y = mx + c$",
]
DISPLAY_MATH = [
    "\\[ \\sum_{k=1}^{n} k = \\frac{n(n+1)}{2} \\]",
    "$$ (x - 1)(x + 3) = x^2 + 2x - 3 $$",
    "\\[ \\int_0^1 x^2 \\, dx = \\frac{1}{3} \\]",
    "\\begin{align*} a &= 2b \\\\ b &= 3 \\end{align*}",
]


def _fraction_forms(fr: Fraction, rng: random.Random) -> tuple[str, list[str]]:
    """A fraction's gold string and equivalent forms a model writes."""
    p, q = fr.numerator, fr.denominator
    sign = "-" if p < 0 else ""
    p = abs(p)
    gold = f"{sign}\\frac{{{p}}}{{{q}}}"
    forms = [gold, f"{sign}\\dfrac{{{p}}}{{{q}}}", f"{sign}{p}/{q}"]
    if p < 10 and q < 10:
        forms.append(f"{sign}\\frac{p}{q}")
    dec = p / q
    if 1e6 * dec == int(1e6 * dec):  # terminating decimal
        forms.append(f"{sign}{dec:g}")
    return gold, forms


def _problem(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """(gold, equivalent forms, wrong answers) for one problem."""
    kind = rng.choices(
        ["int", "frac", "sqrt", "pi", "interval", "tuple", "poly", "text", "degree", "set",
         "percent", "decimal"],
        weights=[30, 15, 8, 6, 5, 6, 6, 3, 4, 4, 3, 5],
    )[0]
    if kind == "int":
        v = rng.randint(-50, 2025)
        gold, forms = str(v), [str(v), f"{v:,}" if abs(v) >= 1000 else str(v), f"{v}.0"]
        wrong = [str(v + d) for d in (1, -1, 2, 10, -v * 2 or 7)]
    elif kind == "frac":
        q = rng.randint(2, 24)
        p = rng.randint(1, 3 * q)
        fr = Fraction(p, q) if math.gcd(p, q) == 1 else Fraction(p + 1, q + 1)
        if fr.denominator == 1:
            fr = Fraction(fr.numerator, fr.numerator + 1)
        gold, forms = _fraction_forms(fr, rng)
        wrong = [_fraction_forms(fr + d, rng)[0] for d in (Fraction(1, 2), Fraction(-1, 3))]
        wrong += [str(fr.numerator), f"\\frac{{{fr.denominator}}}{{{fr.numerator}}}"]
    elif kind == "sqrt":
        a, b = rng.randint(1, 9), rng.choice([2, 3, 5, 6, 7])
        gold = f"{a}\\sqrt{{{b}}}"
        forms = [gold, f"{a} \\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}", f"{a}\\sqrt{b}"]
        wrong = [f"{a + 1}\\sqrt{{{b}}}", f"\\sqrt{{{b}}}", str(a * b)]
    elif kind == "pi":
        q = rng.choice([2, 3, 4, 6, 12])
        gold = f"\\frac{{\\pi}}{{{q}}}"
        forms = [gold, f"\\pi/{q}", f"\\frac{{1}}{{{q}}}\\pi", f"\\dfrac{{\\pi}}{{{q}}}"]
        wrong = [f"\\frac{{\\pi}}{{{q + 1}}}", f"{q}\\pi", "\\pi"]
    elif kind == "interval":
        lo, hi = sorted(rng.sample(range(-10, 20), 2))
        gold = f"[{lo}, {hi})"
        forms = [gold, f"[{lo},{hi})", f"\\left[{lo}, {hi}\\right)"]
        wrong = [f"({lo}, {hi})", f"[{lo}, {hi}]", f"[{lo}, {hi + 1})"]
    elif kind == "tuple":
        a, b = rng.randint(-9, 9), rng.randint(-9, 9)
        gold = f"({a}, {b})"
        forms = [gold, f"({a},{b})", f"\\left({a}, {b}\\right)"]
        wrong = [f"({b}, {a})" if a != b else f"({a}, {b + 1})", f"({a}, {-b - 1})"]
    elif kind == "poly":
        a, b = rng.randint(1, 5), rng.randint(1, 9)
        gold = f"x^2 + {a}x + {b}"
        forms = [gold, f"x^{{2}}+{a}x+{b}", f"{b} + {a}x + x^2"]
        wrong = [f"x^2 + {a}x - {b}", f"x^2 + {b}x + {a}", f"2x + {a}"]
    elif kind == "text":
        word = rng.choice(["east", "odd", "Tuesday", "blue"])
        gold = f"\\text{{{word}}}"
        forms = [gold, f"\\text{{{word}}}", f"\\textbf{{{word}}}"]
        wrong = ["\\text{west}", "\\text{even}", "\\text{Monday}"]
    elif kind == "degree":
        v = rng.choice([30, 45, 60, 72, 90, 120, 135])
        gold = f"{v}^\\circ"
        forms = [gold, f"{v}^{{\\circ}}", str(v), f"{v}"]
        wrong = [f"{180 - v}^\\circ", f"{v // 2}^\\circ"]
    elif kind == "set":
        vals = sorted(rng.sample(range(-6, 10), 2))
        gold = f"\\{{{vals[0]}, {vals[1]}\\}}"
        forms = [gold, f"{vals[0]}, {vals[1]}", f"{vals[1]}, {vals[0]}"]
        wrong = [str(vals[0]), f"{vals[0]}, {vals[1] + 1}"]
    elif kind == "percent":
        v = rng.randint(1, 99)
        gold = f"{v}\\%"
        forms = [gold, f"{v}\\%", f"{v}"]
        wrong = [f"{100 - v}\\%", f"{v + 5}\\%"]
    else:  # decimal
        v = round(rng.uniform(0, 100), 2)
        gold = f"{v}"
        forms = [gold, f"{v:.2f}", f"{v}0"]
        wrong = [f"{v + 0.1:.2f}", f"{v * 2:.2f}"]
    return gold, forms, wrong


def _reasoning(rng: random.Random, length: int) -> str:
    """Chain-of-thought-like text of about ``length`` characters."""
    parts: list[str] = []
    size = 0
    while size < length:
        r = rng.random()
        if r < 0.12:
            piece = rng.choice(INLINE_MATH)
        elif r < 0.14:
            piece = "\n" + rng.choice(DISPLAY_MATH) + "\n"
        elif r < 0.17:
            piece = f"\n\nStep {rng.randint(1, 9)}:"
        else:
            piece = rng.choice(WORDS)
        parts.append(piece)
        size += len(piece) + 1
    return " ".join(parts)


def _finish(rng: random.Random, answer: str) -> str:
    """The last sentence carrying ``answer`` in one of the forms models write."""
    form = rng.choices(range(6), weights=[40, 20, 15, 10, 10, 5])[0]
    if form == 0:
        return f"\n\nTherefore, the final answer is $\\boxed{{{answer}}}$."
    if form == 1:
        return f"\n\nSo the answer is \\boxed{{{answer}}}"
    if form == 2:
        return f"\n\n\\[\n\\boxed{{{answer}}}\n\\]"
    if form == 3:
        return f"\n\nAnswer: {answer}"
    if form == 4:
        return f"\n\nThe final answer is ${answer}$. I hope it is correct."
    return f"\n\nWe get $x = {answer}$, so \\boxed{{{answer}}} is the answer."


PATHOLOGICAL = [
    "so the answer is \\boxed{9^{9^{9^{9}}}}",
    "\\boxed{10^{10^{10}}} obviously",
    "\\boxed{1000000!}",
    "\\boxed{" + "{" * 2000 + "1" + "}" * 2000 + "}",
    "\\boxed{" + "{" * 5000,
    "x" * 1_000_000 + " \\boxed{3}",
    "$" * 30_000,
    "\\frac{" * 3000 + "1",
]


def _garbage(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randint(1, 400)))
    if kind == 1:
        return "\ud800 broken \udfff surrogate \\boxed{\ud83d}"
    if kind == 2:
        return "}}}{{{ \\boxed{ } $$ \\[ \\( answer: $"
    return ""


def make_pairs(n_pairs: int, samples: int = 256, seed: int = 0,
               truncated: float = 0.04, garbage: float = 0.01,
               pathological: int = 12) -> tuple[list[str], list[str]]:
    """``n_pairs`` (responses, ground truths), ``samples`` per problem, problem-major order.

    ``truncated`` and ``garbage`` are fractions of responses; ``pathological`` is how many
    pathological responses (``PATHOLOGICAL``, cycled) are placed at random positions.
    """
    rng = random.Random(seed)
    responses: list[str] = []
    truths: list[str] = []
    while len(responses) < n_pairs:
        gold, forms, wrong = _problem(rng)
        accuracy = rng.betavariate(0.7, 0.7)  # per-problem difficulty: many easy and hard ones
        # This problem's candidate answers with Zipf-like popularity.
        wrong = list(dict.fromkeys(w for w in wrong if w not in forms)) or ["0"]
        for _ in range(min(samples, n_pairs - len(responses))):
            u = rng.random()
            length = int(min(12_000, max(80, rng.lognormvariate(math.log(1500), 0.6))))
            if u < truncated:
                text = _reasoning(rng, length)  # cut off before the answer
            elif u < truncated + garbage:
                text = _garbage(rng)
            else:
                if rng.random() < accuracy:
                    answer = forms[min(int(rng.expovariate(1.2)), len(forms) - 1)]
                else:
                    answer = wrong[min(int(rng.expovariate(0.8)), len(wrong) - 1)]
                text = _reasoning(rng, length) + _finish(rng, answer)
            responses.append(text)
            truths.append(gold)
    for i in range(pathological):
        pos = rng.randrange(n_pairs)
        responses[pos] = PATHOLOGICAL[i % len(PATHOLOGICAL)]
    return responses, truths
