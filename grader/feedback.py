"""Feedback a candidate can act on, in the answer's language."""

from __future__ import annotations

from grader.schema import ErrorResult, Lang, PointResult

_FLAG_TEXT = {
    "empty": ("No answer was given.", "没有作答。"),
    "dont_know": ("The answer says you don't know; try stating what you do know.", "回答表示不知道;可以先说出你了解的部分。"),
    "contradicts_reference": ("The answer opens with the opposite verdict (yes/no, true/false) to the reference answer's.", "回答开头的判断(对/错、能/不能)与参考答案相反。"),
    "copied_question": ("The answer repeats the question instead of answering it.", "回答只是重复了题目,没有作答。"),
    "keyword_stuffing": ("The answer lists keywords without explaining them; explain how and why.", "回答只罗列了关键词,没有解释;请说明原理和原因。"),
    "shuffled": ("The answer's words are out of order and do not form sentences.", "回答的词语顺序混乱,不成句子。"),
    "off_topic": ("The answer seems to address a different question.", "回答似乎在回答另一个问题。"),
    "injection_suspected": ("The answer contains text addressed to the grader; it was ignored and the score capped.", "回答中有针对评分系统的指令性文字,已忽略并限制得分。"),
    "language_mismatch": ("The answer is not in the requested language; it was graded anyway.", "回答语言与要求不一致,仍已评分。"),
    "truncated": ("The answer was too long; only its beginning was graded.", "回答过长,只对开头部分评分。"),
}


def build_feedback(
    score: float,
    points: list[PointResult],
    errors: list[ErrorResult],
    flags: list[str],
    lang: Lang,
    max_missing: int = 3,
) -> str:
    zh = lang == "zh"
    parts = [f"得分 {score:.1f}/10。" if zh else f"Score {score:.1f}/10."]
    parts += [_FLAG_TEXT[f][1 if zh else 0] for f in flags if f in _FLAG_TEXT]
    blocking = {"empty", "dont_know", "copied_question", "shuffled", "injection_suspected", "off_topic"}
    covered = [p for p in points if p.covered]
    missing = sorted((p for p in points if not p.covered), key=lambda p: -p.weight)
    if covered and not blocking.intersection(flags):
        names = "; ".join(p.text for p in covered)
        parts.append(f"答到了:{names}" if zh else f"You covered: {names}")
    if missing:
        names = "; ".join(p.text for p in missing[:max_missing])
        parts.append(f"还应说明:{names}" if zh else f"Also explain: {names}")
    for error in errors:
        if zh:
            parts.append(f"事实错误:“{error.evidence}”。正确的是:{error.correction}")
        else:
            parts.append(f"Factual error: \"{error.evidence}\". In fact: {error.correction}")
    return "\n".join(parts)
