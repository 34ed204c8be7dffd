"""The mock interview: question drawing, a scripted session on the real grader, the answer editor on
prompt_toolkit's pipe input, and a whole session through a real pseudo-terminal (two model loads)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import time

import pytest
from rich.console import Console

from grader.interview import (
    Ask,
    Interview,
    ReadyGrader,
    Reply,
    draw_questions,
    follow_up_rubric,
    make_follow_up,
    new_session,
    question_weights,
)
from grader.interview_models import InterviewConfig, QuestionRecord, Session
from grader.interview_store import SessionStore
from grader.interview_term import PlainReader, TerminalReader
from tests.conftest import grader_command

ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")


def _past_session(scores: dict[str, int]) -> Session:
    """A finished session where each topic got ``n`` skipped questions (score 0)."""
    records = [QuestionRecord(question_id=f"q-{topic.lower()}-{i}", topic=topic, difficulty=1, question="?",
                              status="skipped")
               for topic, n in scores.items() for i in range(n)]
    return Session(id="past", config=InterviewConfig(), questions=records, status="finished")


def test_draw_favours_weak_topics_without_repeats(bank):
    config = InterviewConfig(topics=["ATT", "PE"], count=4)
    pool = [r for r in bank if r.topic in ("ATT", "PE")]
    past = [_past_session({"PE": 3})]
    weights = dict(zip((r.id for r in pool), question_weights(pool, past), strict=True))
    pe = [w for r, w in zip(pool, weights.values(), strict=True) if r.topic == "PE"]
    att = [w for r, w in zip(pool, weights.values(), strict=True) if r.topic == "ATT"]
    # Topics share the draw evenly when nothing is known (ATT has ~4x PE's questions) ...
    fresh = question_weights(pool, [])
    share = {t: sum(w for r, w in zip(pool, fresh, strict=True) if r.topic == t) for t in ("ATT", "PE")}
    assert share["ATT"] == pytest.approx(share["PE"])
    # ... and a topic answered badly before gets a bigger share.
    assert sum(pe) > 3 * sum(att)

    picks = {"PE": 0, "ATT": 0}
    for seed in range(40):
        drawn = draw_questions(bank, config.model_copy(update={"seed": seed}), past)
        assert len(drawn) == 4 and len({r.id for r in drawn}) == 4
        for r in drawn:
            picks[r.topic] += 1
    assert picks["PE"] > picks["ATT"]
    assert draw_questions(bank, config.model_copy(update={"seed": 5}), past) == \
        draw_questions(bank, config.model_copy(update={"seed": 5}), past)


def test_follow_up_is_graded_against_the_missing_point(grader, bank):
    rubric = bank.get("scaling-sqrt-dk")
    result = grader.grade(rubric.id, "We divide by sqrt(d_k) so that training is stable.", lang="en")
    follow_up = make_follow_up(rubric, result, "en")
    assert follow_up is not None
    missing = {p.id: p for p in result.points if not p.covered}
    heaviest = max((k for k in rubric.key_points if k.id in missing), key=lambda k: k.weight)
    assert follow_up.point_id == heaviest.id and heaviest.id.replace("-", " ") in follow_up.question

    small = follow_up_rubric(rubric, follow_up)
    assert [k.id for k in small.key_points] == [heaviest.id] and small.misconceptions == rubric.misconceptions
    good, wrong = grader.grade_many([(small, heaviest.text.zh, "zh"),
                                     (small, "The learning rate is warmed up for the first 4000 steps.", "en")])
    assert good.points[0].covered and not wrong.points[0].covered
    assert good.score >= wrong.score + 4


class Script:
    """Answers for a scripted session: a list of replies or functions of (ask, session)."""

    def __init__(self, steps):
        self.steps, self.asked = list(steps), []

    def __call__(self, ask: Ask) -> Reply:
        self.asked.append(ask)
        step = self.steps.pop(0)
        return step(ask) if callable(step) else Reply(step) if isinstance(step, str) else step


def _console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=100, highlight=False), buffer


def test_scripted_session_hint_skip_quit_resume_finish(grader, bank, tmp_path):
    store = SessionStore(tmp_path / "sessions")
    session = new_session(store.new_id(), bank, InterviewConfig(topics=["PE"], count=3, seed=7), [])
    first = bank.get(session.questions[0].question_id)

    def follow_up_answer(ask: Ask) -> Reply:
        point = next(k for k in first.key_points if k.id == session.questions[0].follow_up.point_id)
        return Reply(point.text.en)

    script = Script(["hint", "", first.key_points[0].text.en, follow_up_answer, "skip",
                     Reply("half an answer", left=True)])
    console, screen = _console()
    Interview(session, bank, ReadyGrader(grader), script, console, store).run()

    saved = store.load(session.id)
    q1, q2, q3 = saved.questions
    assert saved.status == "in_progress" and store.latest_unfinished().id == session.id
    assert q1.status == "answered" and len(q1.hints) == 1 and q1.result is not None
    assert q1.score == pytest.approx(max(0.0, q1.result.score - 1.0), abs=0.05)
    assert q1.result.points[0].covered
    assert q1.follow_up.status == "answered" and q1.follow_up.result.points[0].covered
    assert q2.status == "skipped" and q2.score == 0
    assert q3.status == "pending" and q3.draft == "half an answer"
    text = screen.getvalue()
    assert "Hint: a strong answer covers" in text and "Nothing typed yet" in text and "Skipped" in text
    assert "Saved." in text and "unfinished answer is kept" in text
    assert "\x1b[" not in text and "+--" in text  # not a terminal: no colour, ASCII boxes

    script = Script([lambda ask: Reply(ask.default + ", plus sinusoids added to the embeddings."), "skip"])
    console, screen = _console()
    done = Interview(saved, bank, ReadyGrader(grader), script, console, store).run()
    assert script.asked[0].default == "half an answer"
    assert done.status == "finished" and done.questions[2].answer.startswith("half an answer")
    assert store.latest_unfinished() is None
    text = screen.getvalue()
    assert "resumed: 2 of 3" in text and "Session finished" in text and "Topics" in text
    markdown = store.paths(session.id)[1].read_text("utf-8")
    for part in ("# Mock interview", "**Hints taken:**", "_Skipped._", "#### Follow-up", "## Summary",
                 "| 2 | " + q2.question_id, "judge: off"):
        assert part in markdown


def test_terminal_reader_edits_submits_times_out_and_keeps_drafts():
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as pipe:
        reader = TerminalReader(lambda: "ready", pt_input=pipe, pt_output=DummyOutput())
        pipe.send_text("first line\rsecond lnie\x7f\x7f\x7fine\r\r")  # Enter on an empty line submits
        assert reader(Ask("answer", "a")) == Reply("first line\nsecond line")
        pipe.send_text("\x1b[200~para one\n\npara two\x1b[201~\r\r")  # a bracketed paste keeps its blank lines
        assert reader(Ask("answer", "a")).text == "para one\n\npara two"
        pipe.send_text("para one\r\rpara two\r\r")  # ... and so does a paste without brackets
        assert reader(Ask("answer", "a")).text == "para one\n\npara two"
        pipe.send_text("hint\r")  # a command word submits at once
        assert reader(Ask("answer", "a")).text == "hint"
        pipe.send_text("one\x1b\r")  # Esc Enter
        assert reader(Ask("answer", "a")).text == "one"
        pipe.send_text(" more\x03")  # Ctrl-C keeps the draft, after the prefilled text
        assert reader(Ask("answer", "a", default="typed")) == Reply("typed more", left=True)
        pipe.send_text("unfinished")
        started = time.monotonic()
        reply = reader(Ask("answer", "a", deadline=time.monotonic() + 1.0))
        assert reply == Reply("unfinished", timed_out=True) and time.monotonic() - started < 5
        pipe.send_text("\r")
        assert reader(Ask("menu", "Language", default="en")).text == "en"


def test_plain_reader_ends_answers_at_an_empty_line():
    console, _ = _console()
    reader = PlainReader(io.StringIO("\nline one\nline two\n\nskip\nzh\n"), console)
    assert reader(Ask("answer", "a")).text == "line one\nline two"
    assert reader(Ask("answer", "a")).text == "skip"
    assert reader(Ask("menu", "Language", default="en")).text == "zh"
    with pytest.raises(EOFError):
        reader(Ask("answer", "a"))


# ------------------------------------------------------------------ a real pseudo-terminal


class Terminal:
    """A command on a real pseudo-terminal (pexpect), seen through a VT100 emulator (pyte) that, like
    a terminal, answers prompt_toolkit's cursor-position queries."""

    def __init__(self, args: list[str], env: dict[str, str], rows: int = 45, cols: int = 130):
        pexpect = pytest.importorskip("pexpect")
        pyte = pytest.importorskip("pyte")
        command = grader_command()
        self.child = pexpect.spawn(command[0], [*command[1:], *args], env=env, encoding="utf-8",
                                   dimensions=(rows, cols))
        self.screen = pyte.Screen(cols, rows)
        self.screen.write_process_input = self.child.send
        self.stream = pyte.Stream(self.screen)
        self.raw, self.read_upto, self.ended = "", 0, False

    def _pump(self, wait: float) -> None:
        import pexpect

        try:
            data = self.child.read_nonblocking(65536, timeout=wait)
        except pexpect.TIMEOUT:
            return
        except pexpect.EOF:
            self.ended = True
            return
        self.raw += data
        self.stream.feed(data)

    def printed(self) -> str:
        """Everything printed so far without escape codes (lines scrolled off the screen included)."""
        return ANSI.sub("", self.raw)

    def visible(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def expect(self, needle: str, timeout: float = 30, on_screen: bool = False) -> None:
        """Wait until ``needle`` is printed after the previous match (or, with ``on_screen``, is visible)."""
        deadline = time.monotonic() + timeout
        while True:
            if on_screen and needle in self.visible():
                return
            text = self.printed()
            found = text.find(needle, self.read_upto)
            if not on_screen and found >= 0:
                self.read_upto = found + len(needle)
                return
            if self.ended or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not shown; screen:\n{self.visible()}")
            self._pump(0.2)

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def finish(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            self._pump(0.2)
        self.child.close()
        return self.child.exitstatus


def test_pty_session_hint_skip_quit_resume_finish(grader, cli_env, bank, tmp_path):
    """``grader`` is here to fill the session's model and embedding cache first, as a user's would be."""
    env = {**cli_env, "GRADER_SESSIONS_DIR": str(tmp_path), "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    drawn = draw_questions(bank, InterviewConfig(topics=["PE"], count=3, seed=11), [])
    first, third = drawn[0], drawn[2]
    slow = 600  # seconds: the model loads in the background, slowly on a busy machine

    term = Terminal(["interview", "--topic", "PE", "--count", "3", "--seed", "11", "--time-limit", "600"], env)
    started = time.monotonic()
    term.expect("Question 1/3")
    question_after = time.monotonic() - started
    term.expect("Your answer ›", on_screen=True)
    term.expect("⏱ 9:5", on_screen=True)  # the countdown, in the bottom bar
    if "ready" not in term.visible():  # the question did not wait for the model
        assert "model: loading" in term.visible()
    assert "judge: off" in term.visible()
    term.send("hint\r")
    term.expect("Hint: a strong answer covers")
    term.send(first.key_points[0].text.en + "\r")
    term.send("It has no trainable parameters.\r\r")  # Enter on the empty line submits
    term.expect("Score", timeout=slow)
    term.expect("(asked in the follow-up)")
    term.expect("Your follow-up answer ›", on_screen=True)
    term.send("I am not sure, maybe it helps training.\r\r")
    term.expect("Follow-up score", timeout=slow)
    term.expect("Question 2/3")
    term.expect("Your answer ›", on_screen=True)
    term.send("skip\r")
    term.expect("Skipped")
    term.expect("Question 3/3")
    term.expect("Your answer ›", on_screen=True)
    term.send("quit\r")
    term.expect("Saved.")
    assert term.finish() == 0, term.visible()
    assert "continue with grader interview --resume" in term.visible()

    [path] = tmp_path.glob("*.json")
    saved = json.loads(path.read_text("utf-8"))
    assert [q["question_id"] for q in saved["questions"]] == [r.id for r in drawn]
    assert [q["status"] for q in saved["questions"]] == ["answered", "skipped", "pending"]
    q1 = saved["questions"][0]
    assert len(q1["hints"]) == 1 and q1["score"] == pytest.approx(max(0, q1["result"]["score"] - 1), abs=0.05)
    assert q1["answer"].startswith(first.key_points[0].text.en) and q1["follow_up"]["result"] is not None

    term = Terminal(["interview", "--resume"], env)
    term.expect("resumed: 2 of 3")
    term.expect("Question 3/3")
    term.expect("Your answer ›", on_screen=True)
    term.send(third.key_points[0].text.en + "\r\r")
    term.expect("Score", timeout=slow)
    term.expect("Your follow-up answer ›", on_screen=True)  # only one point was made: there is a follow-up
    term.send("skip\r")
    term.expect("Follow-up skipped. The point was:")
    term.expect("Session finished")
    assert term.finish() == 0, term.visible()
    screen = term.visible()  # the summary is what stays on screen
    for text in ("Questions", "Topics", "Transcript saved", first.id, third.id, "skipped", "PE · Positional"):
        assert text in screen, text

    session_id = saved["id"]
    final = json.loads((tmp_path / f"{session_id}.json").read_text("utf-8"))
    assert final["status"] == "finished" and final["questions"][2]["result"]["question_id"] == third.id
    markdown = (tmp_path / f"{session_id}.md").read_text("utf-8")
    for text in ("status: finished", "## Summary", third.key_points[0].text.en, "**Hints taken:**", "_Skipped._",
                 "#### Follow-up", "judge: off"):
        assert text in markdown, text

    history = subprocess.run([*grader_command(), "history"], capture_output=True, env=env, timeout=60, text=True)
    assert history.returncode == 0 and session_id in history.stdout and "PE" in history.stdout
    assert "\x1b[" not in history.stdout  # not a terminal: plain text
    assert question_after < 20, f"the first question took {question_after:.1f} s"


def test_plain_session_with_a_judge_that_is_down_shows_the_fall_back(cli_env, tmp_path):
    """The judge is named in the transcript, and its failure is shown with the score it kept."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**cli_env, "GRADER_SESSIONS_DIR": str(tmp_path)}
    answer = "Scaling keeps the variance of the dot products near one, so the softmax does not saturate.\n\nskip\n"
    run = subprocess.run([*grader_command(), "interview", "-n", "1", "--topic", "ATT", "--seed", "3", "--judge",
                          "openai", "--judge-url", f"http://127.0.0.1:{port}/v1", "--judge-model", "m"],
                         input=answer, capture_output=True, env=env, timeout=300, text=True)
    assert run.returncode == 0, run.stderr
    assert "judge: unreachable" in run.stdout and "embedding score" in run.stdout
    markdown = next(tmp_path.glob("*.md")).read_text("utf-8")
    assert "judge: openai (m)" in markdown and "**Judge:** unreachable" in markdown
