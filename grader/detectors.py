"""Signals of answers that try to game a similarity grader, computed from the text alone.

The embedding-based checks (off-topic, injection look-alikes) live in the grader, which
holds the vectors; their thresholds are fitted (see ``grader/calibration``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np

from grader.schema import Lang
from grader.text import FUNCTION_CHARS_ZH, FUNCTION_WORDS_EN, words

_DONT_KNOW = re.compile(
    r"^\W*(?:i\s+(?:do\s*n[o']?t|really\s+don'?t)\s+know|no\s+idea|not\s+sure|i\s+have\s+no\s+idea|"
    r"i\s+forgot|pass|skip|n/?a|idk|dunno|\?+|(?:not|un)\s*answered|no\s+(?:answer|response)(?:\s+given)?|"
    r"不知道|不清楚|不会|不会做|没学过|忘了|不太懂|不懂|看不懂(?:题目?)?|不了解|跳过|未作答|没有?作答|"
    r"这个我不会|我不知道|不太清楚)\W*(?:[,，。.!！]?\s*(?:sorry|抱歉|对不起)?)?\W*$",
    re.I,
)

# Text that addresses the grader rather than the question. Patterns are deliberately specific:
# a candidate discussing attention masks must never match.
_INJECTION = [
    r"ignore\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier|preceding|your)\s+"
    r"(?:instructions?|prompts?|rules?|directions?)",
    r"disregard\s+(?:all\s+|the\s+)?(?:previous|prior|above|your)\s+\w+",
    r"(?:you\s+are|act\s+as|as)\s+(?:the|a|an)\s+(?:grader|evaluator|examiner|judge|assistant)\b",
    r"\b(?:give|award|assign|grade|rate|score)\s+(?:me|this(?:\s+answer)?|the\s+answer|it)\s+"
    r"(?:a\s+|an\s+)?(?:full\s+marks|perfect|maximum|\d+(?:\s*/\s*10|\s+out\s+of\s+10|\s*points?)?)",
    r"\b(?:full\s+marks|perfect\s+score|score\s*(?:=|:)\s*10|grade\s*(?:=|:)\s*(?:10|a\+?))\b",
    r"\"?\b(?:score|grade|rating)\"?\s*:\s*\"?(?:10|9|100)(?:\.0)?\b",
    r"\b(?:all|every)\s+(?:key\s+)?points?\s+(?:are|were|is)\s+(?:covered|met|satisfied)",
    r"^\s*(?:system|assistant|user)\s*:|<\|?(?:im_start|im_end|system|endoftext)\|?>|\[/?INST\]",
    r"</?(?:answer|instructions?|system|prompt)>",
    r"(?:忽略|无视|忽视)(?:掉)?(?:之前|前面|以上|上面|上述|先前|所有)?的?(?:所有)?(?:指令|指示|规则|要求|提示|说明)",
    r"(?:给|打)(?:我|这个回答|本回答|这个答案|该答案)?(?:打)?(?:满分|10分|十分|最高分)",
    r"(?:你|您)(?:现在)?(?:是|作为|扮演)(?:一[个名位])?(?:评分|阅卷|评审|打分)",
    r"(?:评分|分数|得分)\s*[:=：]\s*10",
    r"(?:所有|全部)(?:的)?(?:要点|得分点|关键点)(?:都)?(?:已经)?(?:覆盖|满足|答到)",
    # Seen in the judge's adversarial suite (eval/adversarial.py); none matches the 918 dev-set answers.
    r"\"overall\"\s*:\s*\d",
    r"\b(?:covers?|covered|address(?:es|ed)?|hits?)\s+(?:all|every)\s+(?:the\s+|of\s+the\s+)?(?:key\s+)?points\b",
    r"(?:覆盖|涵盖|答到|包含)(?:了)?(?:所有|全部)(?:的)?(?:要点|得分点|关键点|评分点)",
    r"^\s*(?:系统|助手|评分员|考官)\s*[:：]",
]
_INJECTION_RE = re.compile("|".join(f"(?:{p})" for p in _INJECTION), re.I | re.M)

# not "/": formulas such as n/2 are no lists
_LIST_SEPARATORS = re.compile(r"[,，、;；|\n]+")
_HAS_WORD = re.compile(r"[A-Za-z\u3400-\u4dbf\u4e00-\u9fff]")
# fewer words than this cannot carry an instruction to the grader ("答:" alone sits near the prototypes)
MIN_INSTRUCTION_WORDS = 4


@dataclass(frozen=True)
class ListShape:
    """How list-like an answer is: many short items and few function words suggest keyword stuffing."""

    items: int
    mean_item_words: float
    function_ratio: float


def is_dont_know(text: str) -> bool:
    return bool(_DONT_KNOW.match(text.strip())) and len(text) < 120


def injection_evidence(text: str) -> list[str]:
    """The spans of ``text`` that address the grader (empty if none)."""
    return [m.group(0).strip() for m in _INJECTION_RE.finditer(text)]


def list_shape(text: str, lang: Lang) -> ListShape:
    """Items are the pieces between separators that hold a word (numbers alone, as in "2, 9, 5", are no keywords)."""
    items = [item for item in _LIST_SEPARATORS.split(text) if _HAS_WORD.search(item)]
    tokens = words(text)
    if not tokens:
        return ListShape(0, 0.0, 0.0)
    if lang == "zh":
        function = sum(1 for t in tokens if t in FUNCTION_CHARS_ZH)
        # Chinese has no spaces: two Han characters count as about one word.
        sizes = [len(words(item)) / 2 for item in items]
    else:
        function = sum(1 for t in tokens if t in FUNCTION_WORDS_EN)
        sizes = [len(words(item)) for item in items]
    return ListShape(len(items), sum(sizes) / max(len(sizes), 1), function / len(tokens))


_ENUMERATORS = re.compile(rf"{_LIST_SEPARATORS.pattern}|\s+(?:and|or)\s+|[和与及或]")


def is_enumeration(text: str, lang: Lang) -> bool:
    """Whether ``text`` only names a few things ("push and pop", "私有、公有和保护"): where a reference is
    such a list, a list of short items is a fair answer, not keyword stuffing."""
    items = [item for item in _ENUMERATORS.split(text.strip(" .。")) if _HAS_WORD.search(item)]
    scale = 2 if lang == "zh" else 1  # two Han characters count as about one word
    return len(items) >= 2 and max(len(words(item)) / scale for item in items) <= 4


def copied_fraction(answer: str, question: str) -> float:
    """Share of the answer's character bigrams that appear in the question (1.0 = pure copy)."""
    def bigrams(text: str) -> set[str]:
        compact = re.sub(r"\W+", "", text.lower())
        return {compact[i : i + 2] for i in range(len(compact) - 1)}

    answer_grams = bigrams(answer)
    if not answer_grams:
        return 0.0
    return len(answer_grams & bigrams(question)) / len(answer_grams)


def token_pairs(text: str) -> list[tuple[str, str]]:
    """Adjacent pairs of words (English) and characters (Chinese), within a sentence."""
    pairs = []
    for piece in re.split(r"[。！？!?.;；\n]+", text):
        tokens = words(piece)
        pairs += list(zip(tokens, tokens[1:], strict=False))
    return pairs


# Below this much evidence word order cannot be judged: a short text, or one whose words the known
# pairs barely cover (its re-shuffles keep almost no familiar pair either way). Measured on the graded
# sets' real answers to their own questions, with those questions' pairs familiar: these two cut the
# genuine answers read as shuffled from 6.7% to 1.6% (Mohler) and 5.1% to 0.8% (ADS) of those of 8
# words or more, with shuffled bank answers caught as often as before.
MIN_ORDER_PAIRS = 12
MIN_SHUFFLED_FAMILIAR = 2.0


@dataclass(frozen=True)
class Fluency:
    """Familiar word pairs in a text against the same words shuffled.

    Real sentences keep many pairs seen in fluent text about the topic ("attention weights", "注意力");
    a shuffled answer has no more than its own re-shuffles, so its ratio is near 1.
    """

    pairs: int
    familiar: int
    shuffled_familiar: float  # mean over the re-shuffles

    @property
    def ratio(self) -> float:
        return (self.familiar + 1) / (self.shuffled_familiar + 1)

    @property
    def judgeable(self) -> bool:
        return self.pairs >= MIN_ORDER_PAIRS and self.shuffled_familiar >= MIN_SHUFFLED_FAMILIAR


def fluency(text: str, lang: Lang, known: set[tuple[str, str]], also: set[tuple[str, str]] = frozenset(),
            tries: int = 3) -> Fluency:
    """``known`` holds pairs of fluent text about the subject (the question bank), ``also`` those of the
    question at hand (its own texts: a platform's question may be on another subject)."""
    def familiar(pairs: list[tuple[str, str]]) -> int:
        return sum(pair in known or pair in also for pair in pairs)

    pairs = token_pairs(text)
    shuffled = np.mean([familiar(token_pairs(shuffle_words(text, lang, seed))) for seed in range(tries)])
    return Fluency(len(pairs), familiar(pairs), float(shuffled))


_DETERMINERS = frozenset("the a an this these those each every its their our my your".split())
_PREPOSITIONS = frozenset("of in on at by for with from into than via per".split())
_AUXILIARIES = frozenset("is are was were be been can could will would should may might must does do did has have had".split())
_CONJUNCTIONS = frozenset("and or but because so while although".split())
_CLOSED = _DETERMINERS | _PREPOSITIONS | _AUXILIARIES | _CONJUNCTIONS


def broken_grammar_rate(text: str, fluent: set[tuple[str, str]] = frozenset()) -> float:
    """Share of English word pairs that fluent text almost never has ("the of", "in is", "a and").

    A determiner or preposition is followed by content, not by another function word or a
    sentence end; word-shuffled English breaks this everywhere. Pairs in ``fluent`` (the question's
    own texts) are never broken: a question about loops says "a while loop" and "a do...while".
    """
    bad = total = 0
    for piece in re.split(r"[.;!?\n]+", text):
        tokens = [t for t in words(piece) if t.isalpha()]
        for first, second in zip(tokens, [*tokens[1:], None], strict=False):
            if first in _DETERMINERS:
                total += 1
                bad += second is None or (second in _CLOSED and (first, second) not in fluent)
            elif first in _PREPOSITIONS:
                total += 1
                bad += second is None or (second in _CLOSED and second not in _DETERMINERS
                                          and (first, second) not in fluent)
    return bad / total if total >= 4 else 0.0


def shuffle_words(text: str, lang: Lang, seed: int = 13) -> str:
    """The same words in a random order (Chinese: two-character chunks), for the fluency check."""
    rng = random.Random(seed)
    if lang == "zh":
        compact = re.sub(r"\s+", "", text)
        tokens = [compact[i : i + 2] for i in range(0, len(compact), 2)]
        rng.shuffle(tokens)
        return "".join(tokens)
    tokens = text.split()
    rng.shuffle(tokens)
    return " ".join(tokens)
