"""The terminal side of the mock interview: background model loading, answer editing, the opening menu.

``TerminalReader`` edits answers with prompt_toolkit (multi-line, arrows, Home/End, history; a bottom
bar with the countdown and the model's state). ``PlainReader`` reads lines when standard input or
output is not a terminal. Both implement ``grader.interview.Read``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.table import Table

from grader.bank import Bank
from grader.interview import Ask, Read, Reply, command_of
from grader.interview_models import InterviewConfig
from grader.schema import TOPICS

if TYPE_CHECKING:
    from prompt_toolkit.formatted_text import StyleAndTextTuples

    from grader.grader import Grader

QUIET_LOADING = {  # progress bars from the model libraries would scribble over the answer editor
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}
SUBMIT_HELP = "empty line or Ctrl-D: submit"


class BackgroundGrader:
    """Loads the grader in a thread, so the menu and the first question never wait for it.

    Example:
        >>> source = BackgroundGrader(lambda: "a grader", "demo")
        >>> source.wait(5), source.ready()
        ('a grader', True)
    """

    def __init__(self, load: Callable[[], Grader], label: str):
        for name, value in QUIET_LOADING.items():
            os.environ.setdefault(name, value)
        self.label = label
        self._load = load
        self._grader: Grader | None = None
        self._error: BaseException | None = None
        self._captured = io.StringIO()
        self._started = time.monotonic()
        self._took: float | None = None
        self._done = threading.Event()
        threading.Thread(target=self._run, name="grader-load", daemon=True).start()

    def _run(self) -> None:
        try:
            # Library chatter (progress bars, log lines) would land in the middle of the candidate's typing.
            with contextlib.redirect_stderr(self._captured), _logging_to(self._captured):
                self._grader = self._load()
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that waits
            self._error = exc
        finally:
            self._took = time.monotonic() - self._started
            self._done.set()

    def ready(self) -> bool:
        return self._done.is_set() and self._error is None

    def status(self) -> str:
        if not self._done.is_set():
            return f"loading… {time.monotonic() - self._started:.0f} s"
        if self._error is not None:
            return "failed to load"
        return f"ready ({self._took:.0f} s)"

    def wait(self, timeout: float) -> Grader | None:
        """The grader once loaded (None if still loading after ``timeout`` s); re-raises a load failure."""
        if not self._done.wait(timeout):
            return None
        if self._error is not None:
            raise self._error
        return self._grader


@contextlib.contextmanager
def _logging_to(stream: TextIO) -> Iterator[None]:
    """Send the root logger's records to ``stream`` for a while (its handlers hold the real stderr)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [logging.StreamHandler(stream)]
    try:
        yield
    finally:
        root.handlers = saved


class TerminalReader:
    """Reads answers with prompt_toolkit: multi-line editing, countdown, model state in the bottom bar."""

    def __init__(self, status: Callable[[], str], judge: str = "off", pt_input=None, pt_output=None):
        from prompt_toolkit import PromptSession

        self._status, self._judge = status, judge
        self._draft = ""  # what was in the editor when the candidate pressed Ctrl-C
        self._answers: PromptSession[str] = PromptSession(
            multiline=True, key_bindings=self._answer_keys(), input=pt_input, output=pt_output)
        self._lines: PromptSession[str] = PromptSession(input=pt_input, output=pt_output)

    def __call__(self, ask: Ask) -> Reply:
        if ask.kind == "menu":
            return Reply(self._menu_line(ask))
        timed_out = False

        def start_countdown() -> None:
            from prompt_toolkit.application import get_app

            if ask.deadline is None:
                return
            app = get_app()

            async def expire() -> None:
                nonlocal timed_out
                await asyncio.sleep(max(0.0, ask.deadline - time.monotonic()))  # type: ignore[operator]
                if not app.future or not app.future.done():
                    timed_out = True
                    app.exit(result=app.current_buffer.text)

            app.create_background_task(expire())

        try:
            text = self._answers.prompt(
                f"{ask.label} › ", default=ask.default, prompt_continuation=lambda width, *_: " " * width,
                bottom_toolbar=lambda: self._toolbar(ask), refresh_interval=0.5, pre_run=start_countdown)
        except KeyboardInterrupt:
            return Reply(self._draft, left=True)
        return Reply(text, timed_out=timed_out)

    def _menu_line(self, ask: Ask) -> str:
        from prompt_toolkit.completion import WordCompleter

        completer = WordCompleter(list(ask.choices), ignore_case=True) if ask.choices else None
        shown = f" [{ask.default}]" if ask.default else ""
        text = self._lines.prompt(f"{ask.label}{shown}: ", completer=completer,
                                  bottom_toolbar=lambda: f" model: {self._status()} · judge: {self._judge}",
                                  refresh_interval=0.5)
        return text.strip() or ask.default

    def _toolbar(self, ask: Ask) -> StyleAndTextTuples:
        parts: StyleAndTextTuples = []
        if ask.deadline is not None:
            left = max(0, int(ask.deadline - time.monotonic() + 0.999))
            style = "bg:ansired fg:ansiwhite bold" if left <= 30 else "bold"
            parts.append((style, f" ⏱ {left // 60}:{left % 60:02d} "))
        parts.append(("", f" {SUBMIT_HELP} │ skip · hint · quit │ model: {self._status()} │ judge: {self._judge} "))
        return parts

    def _answer_keys(self):
        from prompt_toolkit.key_binding import KeyBindings

        keys = KeyBindings()

        @keys.add("enter")
        def _enter(event) -> None:
            buffer = event.current_buffer
            document = buffer.document
            at_end_on_blank = document.is_cursor_at_the_end and not document.current_line.strip()
            if _text_queued(event):  # a paste the terminal did not bracket: its blank lines are paragraphs
                buffer.newline(copy_margin=False)
            elif command_of(buffer.text) or (buffer.text.strip() and at_end_on_blank):
                buffer.text = buffer.text.rstrip()
                buffer.validate_and_handle()
            elif buffer.text.strip():
                buffer.newline(copy_margin=False)

        @keys.add("escape", "enter")
        def _submit(event) -> None:
            if event.current_buffer.text.strip():
                event.current_buffer.validate_and_handle()

        @keys.add("c-d")
        def _submit_or_leave(event) -> None:
            buffer = event.current_buffer
            if buffer.text.strip():
                buffer.validate_and_handle()
            else:
                event.app.exit(exception=EOFError())

        @keys.add("c-c")
        def _leave(event) -> None:
            self._draft = event.current_buffer.text  # kept in the session and offered again on resume
            event.app.exit(exception=KeyboardInterrupt())

        return keys


def _text_queued(event) -> bool:
    """Whether more text already waits behind this key: pasted, since nobody types that fast."""
    from prompt_toolkit.keys import Keys

    return any(k.key not in (Keys.ControlM, Keys.ControlJ, Keys.CPRResponse) and k.data != "_Flush"
               for k in event.key_processor.input_queue)


class PlainReader:
    """Reads from a plain stream: an answer ends with an empty line (or the end of input)."""

    def __init__(self, stream: TextIO | None = None, console: Console | None = None):
        self._stream = stream or sys.stdin
        self._console = console or Console()

    def _line(self) -> str | None:
        line = self._stream.readline()
        return None if line == "" else line.rstrip("\r\n")

    def __call__(self, ask: Ask) -> Reply:
        if ask.kind == "menu":
            shown = f" [{ask.default}]" if ask.default else ""
            self._console.print(f"{ask.label}{shown}: ", end="", highlight=False, markup=False)
            line = self._line()
            if line is None:
                raise EOFError
            return Reply(line.strip() or ask.default)
        self._console.print(f"{ask.label} (finish with an empty line; skip, hint or quit alone are commands):",
                            highlight=False)
        lines: list[str] = []
        while (line := self._line()) is not None:
            if not line.strip():
                if lines:
                    break
                continue
            lines.append(line)
            if len(lines) == 1 and command_of(line):
                break
        if not lines:
            raise EOFError
        return Reply("\n".join(lines))


# ------------------------------------------------------------------ the opening menu


def _ask_until_valid(read: Read, console: Console, ask: Ask, parse: Callable[[str], object]) -> object:
    while True:
        text = read(ask).text.strip()
        try:
            return parse(text)
        except ValueError as exc:
            console.print(f"[red]{exc}[/]", highlight=False)


def _topics(text: str) -> list[str]:
    codes = [c.upper() for c in text.replace(",", " ").split()]
    if not codes or codes == ["ALL"]:
        return []
    bad = [c for c in codes if c not in TOPICS]
    if bad:
        raise ValueError(f"unknown topic {', '.join(bad)}; use codes from the table, or Enter for all")
    return codes


def _optional_int(low: int, high: int | None, what: str) -> Callable[[str], int | None]:
    def parse(text: str) -> int | None:
        if text.lower() in ("", "any", "none", "0"):
            return None
        if not text.isdigit() or int(text) < low or (high is not None and int(text) > high):
            raise ValueError(f"{what}: give a number {low}-{high}" if high else f"{what}: at least {low}")
        return int(text)
    return parse


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 50:
        raise ValueError("number of questions: 1-50")
    return int(text)


def _lang(text: str) -> str:
    if text.lower() not in ("zh", "en"):
        raise ValueError("language: zh or en")
    return text.lower()


def choose_config(read: Read, console: Console, bank: Bank, defaults: InterviewConfig) -> InterviewConfig:
    """The opening menu: every setting with its default, Enter keeps it."""
    console.print("[bold]Mock interview[/]: choose what to practise; Enter keeps the value in brackets.")
    table = Table("code", "topic", "questions", box=None, header_style="bold")
    for code, name in TOPICS.items():
        table.add_row(code, name, str(len(bank.filter(code))))
    console.print(table)
    topics = _ask_until_valid(read, console, Ask("menu", "Topics (codes, e.g. ATT PE; Enter for all)",
                                                 default=" ".join(defaults.topics), choices=list(TOPICS)), _topics)
    level = _ask_until_valid(read, console, Ask("menu", "Difficulty 1-3 (Enter for any)",
                                                default=str(defaults.difficulty or "")), _optional_int(1, 3, "level"))
    lang = _ask_until_valid(read, console, Ask("menu", "Language zh/en", default=defaults.lang,
                                               choices=["zh", "en"]), _lang)
    count = _ask_until_valid(read, console, Ask("menu", "Number of questions", default=str(defaults.count)), _count)
    limit = _ask_until_valid(read, console, Ask("menu", "Seconds per question (Enter for no limit)",
                                                default=str(defaults.time_limit or "")),
                             _optional_int(10, None, "time limit"))
    return InterviewConfig.model_validate({**defaults.model_dump(), "topics": topics, "difficulty": level,
                                           "lang": lang, "count": count, "time_limit": limit})
