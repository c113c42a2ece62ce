"""Prompt features for the complexity router: fast hand features plus hashed words.

The hand features come in two groups: the first `N_LINEAR` (`LINEAR_FEATURES`: length, code,
question and instruction cues, math, reasoning, turns) feed the linear heads next to the hashed
words; all of `HAND_FEATURES`, including the `SHAPE_FEATURES` after them (the shape of a question
and its answer options, numbers and arithmetic), feed p_strong's boosted trees (see `model`).

Two paths give the same numbers: `batch_features` (training; sklearn's HashingVectorizer) and
`prompt_features` (one prompt at request time; the same murmurhash3 hashing without the
vectorizer's per-call overhead). Only the first `HEAD_CHARS` and last `TAIL_CHARS` characters
of a long prompt are tokenised; the length features always see the whole prompt.
"""
from __future__ import annotations

import contextlib
import math
import re
import struct
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

#: Hashed word space; changing it changes the artifact (it is part of the code version).
N_HASH = 2**17
HEAD_CHARS = 4000
TAIL_CHARS = 1000

_TOKEN = re.compile(r"\w+")
#: What a line starts with: code, a list item, a multiple-choice option, or a conversation turn.
_LINE_START = re.compile(
    r"^[ \t]*(?:"
    r"(?P<code>def |class |import |from \S+ import|function\b|const |let |var |public |private |"
    r"#include|return\b|for ?\(|if ?\(|while ?\(|}|\$ |>>> )"
    r"|(?P<item>(?:\d+[.)]|[-*•])\s)"
    r"|(?P<option>\(?[A-D][.)]\s)"
    r"|(?P<turn>(?i:\[turn \d+\]|(?:user|assistant|human|ai|system)[ \t]*:)))", re.M)
#: A multiple-choice option line and its text.
_OPTION = re.compile(r"^[ \t]*\(?[A-D][.)][ \t]*(.*)$", re.M)
#: A number as written: digit runs joined by single separators (1,000 and 3.5 count once).
_QUANTITY = re.compile(r"\d+(?:[.,]\d+)*")
#: A slash or a minus before a number (fractions, subtraction, negative numbers). Both start
#: with their literal, which `re` finds fast, unlike patterns that start with a digit class.
_SLASH_NUMBER = re.compile(r"/(?= ?\d)")
_MINUS_NUMBER = re.compile(r"-(?= ?\d)")
OPERATORS = "+*/^=×÷−"
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_LATEX = re.compile(r"\\(?:frac|int|sum|sqrt|lim|begin|mathbb|cdot|infty)|\$[^$\n]+\$")

CODE_WORDS = frozenset(
    "code function functions class method bug debug refactor compile compiler api endpoint script "
    "implement implementation variable variables array list dict struct module package library "
    "regex query database sql async await thread threads threading mutex lock locks concurrency "
    "concurrent race deadlock exception stack runtime interface type types test tests unit "
    "repository repo git docker kubernetes backend frontend server client http json yaml cli".split())
LANGUAGES = frozenset(
    "python javascript typescript java kotlin swift rust go golang c cpp csharp ruby php scala "
    "haskell elixir erlang lua perl r julia matlab bash shell powershell sql html css react vue "
    "node nodejs django flask fastapi spring pandas numpy pytorch tensorflow".split())
MATH_WORDS = frozenset(
    "prove proof theorem lemma corollary integral derivative differentiate integrate equation "
    "equations inequality polynomial matrix matrices eigenvalue vector probability expected "
    "variance induction prime primes modulo limit series converge convergence geometry "
    "triangle angle radius area volume solve calculate compute".split())
REASON_WORDS = frozenset(
    "why explain analyze analyse compare contrast evaluate tradeoff tradeoffs trade design "
    "architecture architect optimize optimise scalable scale distributed consistency fault "
    "tolerant latency throughput strategy plan reasoning justify derive critique assess "
    "implications consequences pros cons migrate migration system systems multi".split())
CONSTRAINT_WORDS = frozenset(
    "must should without only exactly least most ensure avoid constraint constraints require "
    "requirements required handle edge cases complexity efficient efficiently".split())
INSTRUCT_VERBS = frozenset(
    "write implement create build design explain describe summarize summarise translate "
    "rewrite refactor fix debug prove derive compute calculate solve list generate draft "
    "compose analyze analyse compare optimize optimise develop convert rename make give".split())
#: Words of arithmetic word problems (quantities, rates, money, time).
ARITHMETIC_WORDS = frozenset(
    "each per total times half twice percent remaining more less than every left cost costs spend "
    "spends earn earns buy buys sell sells price hours minutes days weeks money dollars".split())
#: Cue word -> its group (the first set that lists it), for one pass over the tokens.
_CUE_GROUP = {word: group for group, words in reversed(list(enumerate(
    (CODE_WORDS, LANGUAGES, MATH_WORDS, REASON_WORDS, CONSTRAINT_WORDS, ARITHMETIC_WORDS)))) for word in words}
#: Word pairs that ask for several steps or a worked-through answer.
MULTISTEP_PAIRS = frozenset({
    ("step", "by"), ("and", "then"), ("after", "that"), ("multi", "step"), ("end", "to"), ("for", "each"),
    ("each", "of"), ("in", "detail"), ("walk", "me"), ("trade", "off"), ("trade", "offs"), ("pros", "and"),
})

_MULTISTEP_NEEDLES = tuple(f" {a}  {b} " for a, b in MULTISTEP_PAIRS)

#: Names of the hand features of the linear heads, in the order of the model's hand weights.
LINEAR_FEATURES = (
    "log_chars", "log_tokens", "log_lines", "code_fences", "inline_code", "code_lines",
    "code_words", "languages", "symbol_density", "questions", "starts_with_instruction",
    "numbers", "latex", "math_words", "reasoning_words", "multistep_cues", "list_items",
    "constraint_words", "multiple_choice", "turns",
)
#: Question shape, answer options and arithmetic: inputs of the boosted trees only. In order: mean
#: length of the option lines' text (A. … D.), numbers in them, characters and sentences before the
#: first option (the whole text without options), mean token length, distinct numbers, the largest
#: number, decimal points in numbers, slashes before a number, "%", "$", arithmetic operators
#: (and minus signs before a number), ARITHMETIC_WORDS, the word "statement", double quotes; counts
#: as log1p.
SHAPE_FEATURES = (
    "option_chars", "option_numbers", "question_chars", "question_sentences", "word_length",
    "distinct_numbers", "max_number", "decimals", "fractions", "percents", "currency",
    "operators", "arithmetic_words", "statements", "quotes",
)
#: Every hand feature, as `hand_features` returns them: the linear ones first.
HAND_FEATURES = LINEAR_FEATURES + SHAPE_FEATURES
N_LINEAR = len(LINEAR_FEATURES)


def _visible(text: str) -> str:
    """The part of a prompt that is tokenised: all of it, or its head and tail when long."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of the visible text: the analyzer of the hashed features."""
    return _TOKEN.findall(_visible(text).lower())


def hand_features(text: str, toks: list[str]) -> list[float]:
    """The hand features of `text` (see HAND_FEATURES); `toks` is `tokens(text)`."""
    visible = _visible(text)
    cues = Counter(map(_CUE_GROUP.get, toks))
    # Word pairs counted in the words joined by two spaces: " a  b " finds each pair once, and a
    # match leaves the second space for the next one.
    spaced = "  " + "  ".join(toks) + "  "
    multistep = sum(map(spaced.count, _MULTISTEP_NEEDLES))
    lines = Counter(m.lastgroup for m in _LINE_START.finditer(visible))
    symbols = sum(map(visible.count, "{};()[]<>=_"))
    quantities = _QUANTITY.findall(visible)
    return (_linear(text, visible, toks, cues, multistep, lines, symbols, quantities)
            + _shape(visible, toks, quantities, cues[5]))


def _linear(text: str, visible: str, toks: list[str], cues: Counter, multistep: int, lines: Counter,
            symbols: int, quantities: list[str]) -> list[float]:
    """LINEAR_FEATURES."""
    joined = "".join(quantities)
    digit_runs = len(quantities) + joined.count(".") + joined.count(",")  # as re.findall(r"\d+") counts
    log = math.log1p
    return [
        log(len(text)),
        log(len(toks)),
        log(text.count("\n")),
        log(visible.count("```") // 2),
        log(visible.count("`")),
        log(lines["code"]),
        log(cues[0]),
        log(cues[1]),
        symbols / (len(visible) + 20),
        log(visible.count("?")),
        float(bool(toks) and toks[0] in INSTRUCT_VERBS),
        log(digit_runs),
        log(len(_LATEX.findall(visible)) if "\\" in visible or "$" in visible else 0),  # each starts with one
        log(cues[2]),
        log(cues[3]),
        log(multistep),
        log(lines["item"]),
        log(cues[4]),
        float(lines["option"] >= 3),
        log(lines["turn"]),
    ]


def _shape(visible: str, toks: list[str], quantities: list[str], arithmetic_words: int) -> list[float]:
    """SHAPE_FEATURES: the question before its options, the options, numbers and arithmetic."""
    log = math.log1p
    options = list(_OPTION.finditer(visible))
    question = visible[: options[0].start()] if options else visible
    option_texts = [m.group(1) for m in options]
    largest = 0.0
    for quantity in quantities:
        with contextlib.suppress(ValueError):  # "1.2.3"
            largest = max(largest, float(quantity.replace(",", "")))
    sentences = len(_SENTENCE_END.findall(question))
    return [
        log(sum(map(len, option_texts)) / len(option_texts)) if option_texts else 0.0,
        log(len(_QUANTITY.findall("\n".join(option_texts)))),
        log(len(question)),
        log(sentences),
        len("".join(toks)) / len(toks) if toks else 0.0,
        log(len(set(quantities))),
        log(min(largest, 1e12)),
        log("".join(quantities).count(".")),
        log(len(_SLASH_NUMBER.findall(visible))),
        log(visible.count("%")),
        log(visible.count("$")),
        log(sum(map(visible.count, OPERATORS)) + len(_MINUS_NUMBER.findall(visible))),
        log(arithmetic_words),
        log(toks.count("statement")),
        log(visible.count('"') + visible.count("“")),
    ]


def murmurhash3_32(text: str) -> int:
    """MurmurHash3 (x86, 32-bit, seed 0) of the UTF-8 bytes of `text`, signed, as scikit-learn's
    `murmurhash3_32` gives it (the request path need not import scikit-learn: about a second)."""
    data = text.encode("utf-8")
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = 0
    full = len(data) & ~3
    for (k,) in struct.iter_unpack("<I", data[:full]):
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail = data[full:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h - (1 << 32) if h & 0x80000000 else h


def hashed_indices(toks: list[str]) -> np.ndarray:
    """Sorted unique hashed columns of `toks`, exactly as HashingVectorizer computes them.

    sklearn takes abs(signed murmurhash3) % N_HASH, mapping -2**31 to (2**31 - N_HASH) % N_HASH,
    which is 2**31 % N_HASH: the int64 abs below. Each word's column is remembered per process
    (up to HASH_CACHE words): the request path hashes most words once.
    """
    columns = list(map(_HASHED.get, toks))
    if None in columns:
        for i, tok in enumerate(toks):
            if columns[i] is None:
                column = abs(murmurhash3_32(tok)) % N_HASH
                columns[i] = column
                if len(_HASHED) < HASH_CACHE:
                    _HASHED[tok] = column
    return np.unique(np.asarray(columns, dtype=np.int64))


HASH_CACHE = 50_000  # about 5 MB of words
_HASHED: dict[str, int] = {}


def prompt_features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """One prompt: (hashed columns, raw hand features).

    The hashed part is binary and L2-normalised, so each listed column has the value
    1/sqrt(len(columns)), as in a `batch_features` row.
    """
    toks = tokens(text)
    return hashed_indices(toks), np.asarray(hand_features(text, toks), dtype=np.float64)


def batch_features(texts: Sequence[str]) -> tuple[csr_matrix, np.ndarray]:
    """Many prompts: (binary L2-normalised hashed words as CSR, raw hand features as a dense array)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vectorizer = HashingVectorizer(n_features=N_HASH, analyzer=tokens, binary=True,
                                   alternate_sign=False, norm="l2", dtype=np.float64)
    hashed = vectorizer.transform(texts)
    hand = np.array([hand_features(t, tokens(t)) for t in texts], dtype=np.float64).reshape(len(texts), -1)
    return hashed.tocsr(), hand
