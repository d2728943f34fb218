"""Benchmark contamination: how many benchmark problems occur in a study's training data.

Three nested levels per benchmark problem, against every question of a training set:
**exact** (the same question string), **normalized** (equal after :func:`normalize`: case,
whitespace, ``$``, LaTeX spacing and sizing commands, ``\\dfrac``/``\\tfrac``), and **near**
(Jaccard similarity of token 3-gram sets >= ``NEAR_JACCARD``, found through an inverted index
of the 3-grams, so a training set of 40k problems costs seconds: a reworded word or two in a
long question; a short question with one number changed stays below it). A problem counts at its
strictest level; ``near`` includes ``normalized`` includes ``exact``. DeepScaleR, for one,
collects AMC and AIME problems: this measures how much of a benchmark a policy may have seen.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

NEAR_JACCARD = 0.7
SHINGLE = 3  # tokens per shingle (shorter questions: one shingle of all their tokens)
COLUMNS = ["train_set", "benchmark", "problems", "exact", "normalized", "near",
           "frac_exact", "frac_normalized", "frac_near"]

_LATEX_NOISE = re.compile(
    r"\\(?:left|right|displaystyle|textstyle|big|Big|bigg|Bigg|quad|qquad|,|;|!|:| )"
    r"|\$|~|\\\(|\\\)|\\\[|\\\]")
_SPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"[a-z]+|\d+|\\[a-z]+|[^\sa-z\d]")


def _clean(text: str) -> str:
    """Lowercase, ``\\dfrac``/``\\tfrac`` as ``\\frac``, LaTeX spacing/sizing/math delimiters
    as spaces: what both match levels ignore."""
    text = str(text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return _LATEX_NOISE.sub(" ", text).lower()


def normalize(text: str) -> str:
    """:func:`_clean`, then every whitespace removed and trailing punctuation dropped."""
    return _SPACE.sub("", _clean(text)).rstrip(".?!:;,")


def shingles(text: str, size: int = SHINGLE) -> frozenset[tuple[str, ...]]:
    """The set of token ``size``-grams of the :func:`_clean` text."""
    tokens = _TOKEN.findall(_clean(text))
    if len(tokens) <= size:
        return frozenset([tuple(tokens)]) if tokens else frozenset()
    return frozenset(tuple(tokens[i:i + size]) for i in range(len(tokens) - size + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


@dataclass(frozen=True)
class Match:
    """A benchmark problem's closest training question and the level it matched at."""

    level: str  # "exact", "normalized" or "near"
    index: int  # the benchmark problem's position
    question: str
    train_question: str
    similarity: float


class TrainingIndex:
    """The questions of one training set, indexed for the three levels."""

    def __init__(self, questions: list[str]):
        self.questions = [str(q) for q in questions]
        self.exact = {q: i for i, q in enumerate(self.questions)}
        self.normalized = {}
        for i, q in enumerate(self.questions):
            self.normalized.setdefault(normalize(q), i)
        self.shingles = [shingles(q) for q in self.questions]
        self.postings: dict[tuple, list[int]] = defaultdict(list)
        for i, grams in enumerate(self.shingles):
            for gram in grams:
                self.postings[gram].append(i)

    def match(self, index: int, question: str, threshold: float = NEAR_JACCARD) -> Match | None:
        """The strictest level at which ``question`` occurs in this training set, or None."""
        if question in self.exact:
            return Match("exact", index, question, question, 1.0)
        hit = self.normalized.get(normalize(question))
        if hit is not None:
            return Match("normalized", index, question, self.questions[hit], 1.0)
        grams = shingles(question)
        # a candidate with Jaccard >= t shares at least t * |grams| of the question's shingles
        counts: dict[int, int] = defaultdict(int)
        for gram in grams:
            for i in self.postings.get(gram, ()):
                counts[i] += 1
        need = threshold * len(grams)
        best, best_sim = None, 0.0
        for i, shared in counts.items():
            if shared < need:
                continue
            sim = jaccard(grams, self.shingles[i])
            if sim >= threshold and sim > best_sim:
                best, best_sim = i, sim
        if best is None:
            return None
        return Match("near", index, question, self.questions[best], best_sim)


def contamination(train_sets: dict[str, list[str]], benchmarks: dict[str, list[str]],
                  threshold: float = NEAR_JACCARD) -> tuple[list[dict], list[dict]]:
    """For every (training set, benchmark) pair: counts of benchmark problems found at each
    level (``COLUMNS``), and every match (for reading the pairs behind a count)."""
    summary, matches = [], []
    for train_name, questions in train_sets.items():
        index = TrainingIndex(questions)
        for bench_name, problems in benchmarks.items():
            found = [index.match(i, q, threshold) for i, q in enumerate(problems)]
            levels = [m.level for m in found if m is not None]
            exact = levels.count("exact")
            normalized = exact + levels.count("normalized")
            near = len(levels)
            total = len(problems)
            summary.append({
                "train_set": train_name, "benchmark": bench_name, "problems": total,
                "exact": exact, "normalized": normalized, "near": near,
                "frac_exact": exact / total if total else 0.0,
                "frac_normalized": normalized / total if total else 0.0,
                "frac_near": near / total if total else 0.0,
            })
            matches += [{"train_set": train_name, "benchmark": bench_name, **m.__dict__}
                        for m in found if m is not None]
    return summary, matches
