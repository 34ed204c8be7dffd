"""`grader audit`: reading scraped pages, finding the bank's questions, flagging what they teach."""

import json
import subprocess

import pytest

from eval.catalog import SEEDS
from grader.audit import audit
from grader.sources import clean_document, split_items
from tests.conftest import grader_command


def test_cleaning_strips_glosses_markup_spam_and_traditional_script():
    raw = (
        '<kbd id="x"><form></form></kbd>\n'
        "點擊上方視學(xué)算法\n"
        "1.為什麼需要多頭注意力機(jī)制?\n"
        "答:多個頭可以學(xué)習(xí)不同的子空間&amp;關係。\n"
        "相关文章\n"
        "成人在线网址 | 人妻精品 |\n"
    )
    text = clean_document(raw)
    assert "(xué)" not in text and "<" not in text and "&amp;" not in text
    assert "成人" not in text and "点击上方" not in text and "相关文章" not in text
    assert "为什么需要多头注意力机制?" in text and "学习不同的子空间&关系" in text


def test_an_answer_labelled_apart_from_its_question_gets_that_question():
    items = split_items("1. 为什么用多头注意力? 2. 为什么要缩放? 问题1参考 多个头关注不同子空间。 问题2参考 避免 softmax 饱和。")
    answers = [(item.number, item.head, item.body) for item in items if item.body]
    assert answers == [(1, "为什么用多头注意力?", "多个头关注不同子空间。"), (2, "为什么要缩放?", "避免 softmax 饱和。")]


def test_numbered_items_split_into_question_and_answer():
    items = split_items("目录\n1. 为什么要缩放点积?\n因为方差会变大。\n2. 什么是残差连接?\n答:把输入加到输出上。")
    assert [(i.number, i.head) for i in items] == [(1, "为什么要缩放点积?"), (2, "什么是残差连接?")]
    assert items[1].body == "答:把输入加到输出上。"


def test_audit_flags_the_answer_that_teaches_an_error(grader, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        "<h1>面试题</h1>\n"
        "1. 请解释一下 beam search 的原理?\n"
        "beam search 每一步保留得分最高的 K 个候选,它本质上是动态规划,因此一定能找到全局最优的输出序列。\n"
        "2. 为什么在 softmax 之前要除以根号 d_k?\n"
        "点积的方差随 d_k 线性增长,数值太大时 softmax 会饱和、梯度变得很小;除以根号 d_k 把方差拉回到 1 左右。\n",
        encoding="utf-8",
    )
    report = audit(grader, [page])
    by_id = {item.question_id: item for item in report.items}
    assert set(by_id) == {"beam-search", "scaling-sqrt-dk"}
    assert by_id["beam-search"].result.errors
    assert not by_id["scaling-sqrt-dk"].result.errors
    assert report.summary.answers_graded == 2 and report.summary.answers_with_errors == 1


@pytest.mark.skipif(not SEEDS.exists(), reason="needs ../shared/seeds beside the clone")
def test_cli_audit_on_a_seed_article(cli_env):
    seed = sorted(SEEDS.glob("001_*.txt"))[0]
    done = subprocess.run([*grader_command(), "audit", str(seed), "--json"], capture_output=True, env=cli_env,
                          timeout=600)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    numbers = {item["number"] for item in report["items"]}
    assert len(numbers & set(range(1, 22))) >= 18  # the article's 21 questions, found by meaning
    assert report["summary"]["answers_with_errors"] >= 5
