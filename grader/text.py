"""Text handling before embedding: normalisation, language, sentence splitting, length caps."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from grader.schema import Lang

MAX_ANSWER_CHARS = 6000
MAX_SEGMENTS = 48
_LONG_SENTENCE = {"zh": 45, "en": 160}  # characters; longer sentences are also split at clauses

_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff]")
_HTML_COMMENT = re.compile(r"<!--.*?(-->|$)", re.S)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:\.\d+)?|[\u3400-\u4dbf\u4e00-\u9fff]")

# A sentence ends at Chinese end punctuation, or at . ! ? followed by space (not inside "e.g." or 0.1).
_SENTENCE_END = re.compile(r"(?<=[。！？；!?])|(?<=[A-Za-z0-9)\]\"'%][.])\s+(?=[A-Z\"'(\[0-9])|\n+")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "et al.", "vs.", "cf.", "Fig.", "Eq.")
_CLAUSE_END = re.compile(r"(?<=[，,；;：:])")
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.)、]|[（(]\d+[)）]|[一二三四五六七八九十]+[、.])\s*")


FUNCTION_WORDS_EN = frozenset(
    "the a an is are was were be been it its this that these those of to in on for with by as "
    "and or but so because since which who what when where how why not no can could will would "
    "should may might must do does did has have had than then there their they we you i he she "
    "each every all any more most less very also only just into from at if while".split()
)
FUNCTION_CHARS_ZH = frozenset("的是了在把被因为所以可以和与会让使通过这那每个一就都也而且但如果并对从到将其于之")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_TERM = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*|\d+(?:\.\d+)?|[√∞²]")


def content_terms(text: str) -> set[str]:
    """Words that carry content: English words minus function words, Chinese character bigrams.

    >>> sorted(content_terms("BERT uses the WordPiece tokenizer,不是字节对"))
    ['bert', 'tokenizer', 'use', 'wordpiece', '字节']
    """
    terms = set()
    for word in _TERM.findall(text):
        word = word.lower()
        if word not in FUNCTION_WORDS_EN:
            terms.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
    for run in _HAN_RUN.findall(text):
        terms.update(run[i : i + 2] for i in range(len(run) - 1) if not (set(run[i : i + 2]) & FUNCTION_CHARS_ZH))
    return terms


_NEGATION_EN = re.compile(
    r"\b(?:not|no|never|cannot|neither|nor|without|instead|rather|myth|misconception|wrong|incorrect|"
    r"false|mistaken|doesn't|don't|isn't|aren't|wasn't|won't|can't|shouldn't|needn't|didn't)\b", re.I)
_NEGATION_ZH = re.compile(r"不|没|无|非|未|别|误以为|误解|错误")
_NOT_NEGATION_ZH = re.compile(r"不同|不断|不仅|不少|不管|不论|不过|无论|非常|非线性|并非常|无数|别的|区别|分别|类别|识别|级别|个别")


def negated(text: str) -> bool:
    """Whether a sentence denies or corrects something ("is not", "并不", "a common myth")."""
    return bool(_NEGATION_EN.search(text) or _NEGATION_ZH.search(_NOT_NEGATION_ZH.sub("", text)))


# A verdict word opens the text and stands alone: "对，" is a verdict, "对于" is not. English ones need
# punctuation after them ("No." is one; "No matter how deep ..." and "Right now ..." are not). The text is
# NFKC-normalised first, so full-width ，！；：（ read as their ASCII forms.
_ZH_END = r"(?=$|[\s,.!;:(。、])"
_EN_END = r"(?=$|[,.!;:。])"
_VERDICT_LEAD = re.compile(r"^[\s\W_]*(?:(?:答案?|回答|answer):)?[\s\W_]*", re.I)
_VERDICT_NO = re.compile(rf"^(?:(?:不正确|不对|不是|不能|不可以|不可能|不一定|错误|错|否){_ZH_END}"
                         rf"|(?:no|not necessarily|not true|false|wrong|incorrect){_EN_END})", re.I)
_VERDICT_YES = re.compile(rf"^(?:(?:正确|对的|对|是的|是|可以|能){_ZH_END}|(?:yes|true|right|correct){_EN_END})", re.I)


def verdict(text: str) -> int:
    """How the text answers a yes/no or true/false question in its first words: 1 yes, -1 no, 0 neither.

    >>> verdict("错误。例如进栈序列为 123"), verdict("对，后进先出"), verdict("对于单链表"), verdict("No, it is not")
    (-1, 1, 0, -1)
    """
    head = _VERDICT_LEAD.sub("", unicodedata.normalize("NFKC", text), count=1)
    if _VERDICT_NO.match(head):
        return -1
    return 1 if _VERDICT_YES.match(head) else 0


@dataclass(frozen=True)
class Prepared:
    """An answer ready to embed."""

    original_chars: int
    text: str  # normalised and capped
    hidden_text: str  # text removed from view (HTML comments): checked for injection, not graded
    truncated: bool
    language: Lang
    segments: list[str]


@lru_cache(maxsize=1)
def _simplifier():
    try:
        import opencc
    except ImportError:  # conversion helps matching; without it Traditional text is graded as is
        return None
    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional Chinese characters to Simplified (the bank is written in Simplified)."""
    converter = _simplifier()
    return converter.convert(text) if converter and _CJK.search(text) else text


def normalise(text: str) -> tuple[str, str]:
    """NFKC, Simplified script, no zero-width characters or HTML; return (visible text, hidden comments)."""
    text = to_simplified(unicodedata.normalize("NFKC", text))
    text = _ZERO_WIDTH.sub("", text)
    hidden = " ".join(m.group(0) for m in _HTML_COMMENT.finditer(text))
    text = _HTML_TAG.sub(" ", _HTML_COMMENT.sub(" ", text))
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n", text)
    return text.strip(), hidden


def detect_language(text: str) -> Lang:
    """Chinese if Han characters outnumber Latin words (Chinese answers mix in English terms)."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN_WORD.findall(text))
    return "zh" if cjk > 0 and cjk >= latin else "en"


def words(text: str) -> list[str]:
    """Lower-cased words for English and single Han characters for Chinese."""
    return [w.lower() for w in _WORD.findall(text)]


def split_sentences(text: str, lang: Lang | None = None) -> list[str]:
    """Split into sentences (Chinese and English rules); long sentences are cut at clauses.

    >>> split_sentences("多头注意力很有用。它能并行!Yes, e.g. this. Next one")
    ['多头注意力很有用。', '它能并行!', 'Yes, e.g. this.', 'Next one']
    """
    lang = lang or detect_language(text)
    protected = text
    for i, abbreviation in enumerate(_ABBREVIATIONS):
        protected = protected.replace(abbreviation, abbreviation.replace(".", f"\x00{i}"))
    pieces: list[str] = []
    for raw in _SENTENCE_END.split(protected):
        if raw is None:
            continue
        sentence = _BULLET.sub("", raw.strip()).strip()
        for i, abbreviation in enumerate(_ABBREVIATIONS):
            sentence = sentence.replace(abbreviation.replace(".", f"\x00{i}"), abbreviation)
        if not sentence or not re.search(r"\w", sentence):
            continue
        if len(sentence) > _LONG_SENTENCE[lang]:
            pieces.extend(_split_clauses(sentence, _LONG_SENTENCE[lang]))
        else:
            pieces.append(sentence)
    return pieces


def _split_clauses(sentence: str, limit: int) -> list[str]:
    """Group clauses of an overlong sentence into chunks of at most ``limit`` characters."""
    chunks: list[str] = []
    current = ""
    for clause in _CLAUSE_END.split(sentence):
        if current and len(current) + len(clause) > limit:
            chunks.append(current.strip())
            current = ""
        current += clause
    if current.strip():
        chunks.append(current.strip())
    return chunks


def prepare(answer: str, max_chars: int = MAX_ANSWER_CHARS) -> Prepared:
    """Normalise, cap and segment an answer."""
    text, hidden = normalise(answer)
    truncated = len(text) > max_chars
    if truncated:
        cut = text[:max_chars]
        boundary = max(cut.rfind(c) for c in "。.!?！？\n")
        text = cut[: boundary + 1] if boundary > max_chars // 2 else cut
    language = detect_language(text)
    segments = split_sentences(text, language)[:MAX_SEGMENTS]
    return Prepared(len(answer), text, hidden, truncated, language, segments)
