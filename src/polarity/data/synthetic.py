"""A deterministic synthetic arithmetic reasoning task: the embedded default study's data.

Each problem is a chain of additions and subtractions ("What is 47+385-12?") whose reference
solution works left to right ("47+385=432, 432-12=420. \\boxed{420}"), so harder settings
(more operands, more digits) mean longer reasoning. Problems are drawn from one seeded
generator; train and test splits never share a question.

The warm-up split can be written by a noisy teacher (:class:`Teacher`): the reference solution
with arithmetic slips, likelier where a step carries or borrows. A base model warmed up on it
computes well but hedges, so its own samples already hold the correct answer at a rate that
varies by problem: the setting in which the papers study RL as sharpening of the base model's
distribution.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pandas as pd

from ..settings import settings_class
from .rows import make_row, rows_to_frame

DATA_SOURCE = "synthetic-arith"


ArithSpec = settings_class(
    "ArithSpec", "synthetic.spec",
    "Difficulty knobs (``synthetic.spec``): operand digits, operand count, allowed operators.")


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str
    solution: str
    numbers: tuple[int, ...] = ()
    ops: str = ""


@dataclass(frozen=True)
class Teacher:
    """The warm-up's demonstrator. Each step's result is off by 1 or 2 with probability
    ``slip``, or ``carry_slip`` where the step carries (+) or borrows (-); a slip carries into
    the later steps and the boxed answer. ``draws`` solutions are written per problem."""

    slip: float = 0.0
    carry_slip: float = 0.0
    draws: int = 8


def carries(value: int, op: str, number: int) -> bool:
    """Whether ``value op number`` carries (+) or borrows (-) in the units digit."""
    if op == "+":
        return value % 10 + number % 10 >= 10
    return value % 10 < number % 10


def teacher_solution(problem: Problem, rng: random.Random, teacher: Teacher,
                     allow_negative: bool = False) -> str:
    """One solution of ``problem`` as ``teacher`` writes it (the reference one without slips)."""
    steps, value = [], problem.numbers[0]
    for op, number in zip(problem.ops, problem.numbers[1:]):
        new = value + number if op == "+" else value - number
        rate = teacher.carry_slip if carries(value, op, number) else teacher.slip
        if rng.random() < rate:
            offset = rng.choice([-2, -1, 1, 2])
            new = new + offset if allow_negative or new + offset >= 0 else new + abs(offset)
        steps.append(f"{value}{op}{number}={new}")
        value = new
    return ", ".join(steps) + f". \\boxed{{{value}}}"


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
    return Problem(question=f"What is {expr}?", answer=str(value), solution=solution,
                   numbers=tuple(numbers), ops="".join(ops))


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


def to_frame(problems: list[Problem], split: str, template: str = "plain",
             teacher: Teacher | None = None, seed: int = 0,
             allow_negative: bool = False) -> pd.DataFrame:
    """Problems -> verl-format rows; the reference solution rides in extra_info, and with a
    ``teacher`` its ``draws`` solutions per problem (``teacher_solutions``) for the warm-up."""
    rng = random.Random(f"{DATA_SOURCE}:teacher:{seed}")
    rows = []
    for i, p in enumerate(problems):
        extra = {"solution": p.solution}
        if teacher is not None:
            extra["teacher_solutions"] = [teacher_solution(p, rng, teacher, allow_negative)
                                          for _ in range(teacher.draws)]
        rows.append(make_row(data_source=DATA_SOURCE, question=p.question, answer=p.answer,
                             split=split, index=i, template=template, extra=extra))
    return rows_to_frame(rows)
