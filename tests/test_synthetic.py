"""The synthetic task and its noisy warm-up teacher: hand-checked slips, rates, determinism."""

from __future__ import annotations

import random
import re

import pytest

from polarity.data.synthetic import (
    ArithSpec, Problem, Teacher, carries, make_splits, teacher_solution, to_frame,
)

CHAIN = ArithSpec(min_digits=1, max_digits=1, operands=4, operators="+-")


def _answer(solution: str) -> int:
    return int(re.search(r"\\boxed\{(-?\d+)\}", solution).group(1))


def test_carries_and_borrows():
    assert carries(7, "+", 5) and not carries(3, "+", 5) and carries(13, "+", 7)
    assert carries(12, "-", 5) and not carries(15, "-", 3) and not carries(9, "-", 9)


def test_a_teacher_without_slips_writes_the_reference_solution():
    train, _ = make_splits(50, 5, seed=1, spec=CHAIN)
    rng = random.Random(0)
    assert all(teacher_solution(p, rng, Teacher(0.0, 0.0)) == p.solution for p in train)


def test_slips_happen_where_the_rates_say_and_carry_on():
    """7+5 carries (slips always at carry_slip 1); adding 1 to 10, 11, 13 or 14 does not (never
    slips at slip 0): the slip shifts 12 by 1 or 2 and the next step starts from it."""
    problem = Problem("What is 7+5+1?", "13", "7+5=12, 12+1=13. \\boxed{13}", (7, 5, 1), "++")
    rng = random.Random(0)
    for _ in range(20):
        solution = teacher_solution(problem, rng, Teacher(slip=0.0, carry_slip=1.0))
        first, second = solution.split(", ")
        value = int(first.split("=")[1])
        assert value != 12 and abs(value - 12) <= 2
        assert second.startswith(f"{value}+1={value + 1}.") and _answer(solution) == value + 1


def test_slip_rates_are_the_configured_ones():
    train, _ = make_splits(400, 5, seed=0, spec=CHAIN)
    rng, teacher = random.Random(0), Teacher(slip=0.1, carry_slip=0.5)
    slips = {True: [0, 0], False: [0, 0]}  # carry -> [slipped, steps]
    for p in train:
        solution = teacher_solution(p, rng, teacher)
        value = p.numbers[0]
        for op, number, step in zip(p.ops, p.numbers[1:], solution.split(". ")[0].split(", ")):
            written = int(step.split("=")[1])
            true = value + number if op == "+" else value - number
            slips[carries(value, op, number)][0] += written != true
            slips[carries(value, op, number)][1] += 1
            value = written
    assert slips[True][0] / slips[True][1] == pytest.approx(0.5, abs=0.06)
    assert slips[False][0] / slips[False][1] == pytest.approx(0.1, abs=0.03)


def test_warmup_rows_carry_the_teachers_draws_deterministically():
    train, _ = make_splits(30, 5, seed=0, spec=CHAIN)
    teacher = Teacher(slip=0.2, carry_slip=0.6, draws=4)
    a = to_frame(train, "warmup", teacher=teacher, seed=3)
    b = to_frame(train, "warmup", teacher=teacher, seed=3)
    draws = [list(info["teacher_solutions"]) for info in a["extra_info"]]
    assert draws == [list(info["teacher_solutions"]) for info in b["extra_info"]]
    assert all(len(d) == 4 for d in draws)
    # the ground truth stays the correct answer, whatever the teacher wrote
    assert [info["answer"] for info in a["extra_info"]] == [p.answer for p in train]
    assert any(_answer(s) != int(p.answer) for d, p in zip(draws, train) for s in d)
    assert "teacher_solutions" not in to_frame(train, "train")["extra_info"][0]
