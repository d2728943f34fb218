"""A deterministic synthetic arithmetic reasoning task: the embedded default study's data.

Each problem is a chain of additions and subtractions ("What is 47+385-12?") whose reference
solution works left to right ("47+385=432, 432-12=420. \\boxed{420}"), so harder settings
(more operands, more digits) mean longer reasoning. Problems are drawn from one seeded
generator; train and test splits never share a question.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd

from .rows import make_row, rows_to_frame

DATA_SOURCE = "synthetic-arith"


@dataclass(frozen=True)
class ArithSpec:
    """Difficulty knobs: operand digits, operand count and allowed operators."""

    min_digits: int = 1
    max_digits: int = 3
    operands: int = 2
    operators: str = "+-"
    allow_negative: bool = False


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str
    solution: str


def make_problem(rng: random.Random, spec: ArithSpec) -> Problem:
    """Draw one problem; the solution shows every intermediate result, then the boxed answer."""
    while True:
        numbers = []
        for _ in range(spec.operands):
            digits = rng.randint(spec.min_digits, spec.max_digits)
            low = 0 if digits == 1 else 10 ** (digits - 1)
            numbers.append(rng.randint(low, 10**digits - 1))
        ops = [rng.choice(spec.operators) for _ in range(spec.operands - 1)]
        steps, value = [], numbers[0]
        for op, number in zip(ops, numbers[1:]):
            new = value + number if op == "+" else value - number
            steps.append(f"{value}{op}{number}={new}")
            value = new
        if spec.allow_negative or all(
            int(s.rsplit("=", 1)[1]) >= 0 for s in steps
        ):
            break
    expr = "".join(f"{n}{o}" for n, o in zip(numbers, ops)) + str(numbers[-1])
    solution = ", ".join(steps) + f". \\boxed{{{value}}}"
    return Problem(question=f"What is {expr}?", answer=str(value), solution=solution)


def make_splits(
    n_train: int, n_test: int, seed: int = 0, spec: ArithSpec = ArithSpec()
) -> tuple[list[Problem], list[Problem]]:
    """Disjoint train and test problem lists, deterministic in (seed, spec)."""
    rng = random.Random(f"{DATA_SOURCE}:{seed}")
    seen: set[str] = set()
    problems: list[Problem] = []
    # bounded: the problem space of the default knobs is far larger than the splits
    for _ in range(50 * (n_train + n_test) + 1000):
        if len(problems) == n_train + n_test:
            break
        p = make_problem(rng, spec)
        if p.question not in seen:
            seen.add(p.question)
            problems.append(p)
    if len(problems) < n_train + n_test:
        raise ValueError(
            f"data: only {len(problems)} distinct problems exist for {spec}; "
            f"asked for {n_train} train + {n_test} test"
        )
    return problems[:n_train], problems[n_train:]


def to_frame(problems: list[Problem], split: str, template: str = "plain") -> pd.DataFrame:
    """Problems -> verl-format rows; the reference solution rides in extra_info for warm-up."""
    rows = [
        make_row(
            data_source=DATA_SOURCE, question=p.question, answer=p.answer, split=split,
            index=i, template=template, extra={"solution": p.solution},
        )
        for i, p in enumerate(problems)
    ]
    return rows_to_frame(rows)
