"""Reading question-and-answer documents scraped from the web (the seed articles and their like).

Such pages carry HTML residue, pinyin glosses injected after characters, ad and spam lines, and
Traditional characters. ``clean_document`` strips that; ``split_items`` finds numbered items, and
the auditor decides which of them are questions of the bank.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from grader.errors import InputError
from grader.text import to_simplified

_PINYIN_GLOSS = re.compile(r"(?<=[\u4e00-\u9fff])\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü]+\)")
_ENTITY_RESIDUE = re.compile(r"&?#x([0-9a-fA-F]{2,5});")
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>|<[a-zA-Z]+[^<>]{0,40}$")
# Page furniture: short UI strings, link lines, and the spam link lists scraped pages end with.
_UI_LINE = re.compile(r"相关文章|还没有评论|快来抢沙发|点击上方|點擊上方|星标|星標|置顶|置頂|原文链接|原文鏈接|"
                      r"瀏覽|浏览|點贊|点赞|評論|评论|收藏|分享|舉報|举报|扫码|掃碼|公众号|公眾號|当前位置|首页")
_LINK_LINE = re.compile(r"https?://|www\.|\.(?:com|cn|net)\b")
_SPAM_WORDS = re.compile(r"成人|色情|裸聊|约炮|福利视频|性感美女|人妻|加勒比|屄|网站|建站|seo|推广|引流", re.I)
_NUMBERED = re.compile(r"(?:(?<=^)|(?<=[\s。！？?!:：>）)]))(\d{1,3})\s*[.,、，．:：]\s*(?!\d)")
# "问题1参考 ...", "Question 3 answer: ...": an answer given apart from its question, which was listed earlier.
_UNPUNCTUATED_END = re.compile(r"[。!！]|(?<=[\u4e00-\u9fff])\s|(?<=[a-z])[.](?=\s)")
_ANSWER_LABEL = re.compile(r"(?:问题|题|Question\s*|Q)(\d{1,3})\s*(?:的?参考答案|参考|答案|解答|回答|Answer)\s*[:：]?\s*",
                           re.I)


@dataclass(frozen=True)
class Item:
    """A numbered piece of a document: its number, its first sentence, and what follows."""

    number: int
    head: str
    body: str
    offset: int


def read_document(path: Path) -> str:
    try:
        return Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start}: {exc.reason})") from None


def clean_document(raw: str) -> str:
    """Plain Simplified-Chinese text with glosses, markup, entities and spam lines removed."""
    text = _ENTITY_RESIDUE.sub(lambda m: chr(int(m.group(1), 16)), raw)
    text = html.unescape(text)
    text = _TAG.sub(" ", text)
    text = _PINYIN_GLOSS.sub("", text)
    text = text.replace("\ufffd", "")
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if (not line or (_UI_LINE.search(line) and len(line) < 40) or (_LINK_LINE.search(line) and len(line) < 200)
                or (len(_SPAM_WORDS.findall(line)) >= 2 and len(line) < 300)):
            continue
        lines.append(line)
    return to_simplified("\n".join(lines))


def split_items(text: str) -> list[Item]:
    """Every numbered item ("12." "12," "12、") with its first sentence and the text up to the next one.

    An answer labelled apart from its question ("问题1参考 ...") becomes an item whose head is the
    question listed earlier under that number.
    """
    starts = sorted([*_NUMBERED.finditer(text), *_ANSWER_LABEL.finditer(text)], key=lambda m: m.start())
    items: list[Item] = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        chunk = text[match.end() : end].strip()
        number = int(match.group(1))
        if match.re is _ANSWER_LABEL:
            asked = next((item.head for item in reversed(items) if item.number == number and item.head), "")
            items.append(Item(number, asked, chunk, match.start()))
            continue
        head_end = _question_end(chunk)
        # A question asked in several sentences ("...? ...?") keeps going until its last "?".
        while (following := _question_end(chunk[head_end:])) and chunk[head_end:][following - 1 : following] in ("?", "？") \
                and following <= 80:
            head_end += following
        items.append(Item(number, chunk[:head_end].strip(), chunk[head_end:].strip(), match.start()))
    return items


def _question_end(chunk: str) -> int:
    for i, char in enumerate(chunk[:300]):
        if char in "?？\n":
            return i + 1
    # Pages stripped of their question marks: the question ends at the first full stop or, in Chinese,
    # at the first space (where the "?" used to be).
    stop = _UNPUNCTUATED_END.search(chunk, 6, 120)
    return stop.end() if stop else min(len(chunk), 120)
