"""The ``grader`` command line: thin commands over the library.

Each command parses its options, calls one library function and renders the result. Library errors
become one red line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from grader.bank import check_files, load_bank, rubric_files
from grader.config import REPO_ROOT, get_settings
from grader.errors import GraderError, InputError
from grader.schema import TOPICS, GradeResult, Lang

app = typer.Typer(help="Grade answers to Transformer / NLP interview questions.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
bank_app = typer.Typer(help="Check and inspect the question bank.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")
out = Console(soft_wrap=True)
err = Console(stderr=True)

ModelOption = Annotated[Optional[str], typer.Option(  # noqa: UP045 - typer needs Optional here
    "--model", "-m", envvar="GRADER_EMBED_MODEL",
    help="sentence-transformers model name or local path (default: bundled multilingual-e5-small).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result model as JSON.")]
EXAMPLES = REPO_ROOT / "examples" / "answers.jsonl"


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _guarded(fn: Callable[[], None]) -> None:
    try:
        fn()
    except GraderError as exc:
        _fail(str(exc))


def _load_grader(model: str | None):
    from grader.grader import Grader

    settings = get_settings()
    with err.status(f"Loading embedding model {model or settings.embed_model} and the question bank…"):
        return Grader.from_settings(settings, model=model)


def read_text_file(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start}: {exc.reason}); save it as UTF-8") from None


def render(result: GradeResult, console: Console = out) -> None:
    """Human-readable view of one result."""
    colour = "green" if result.score >= 7 else "yellow" if result.score >= 4 else "red"
    console.print(f"[bold]{result.question_id}[/]  score [bold {colour}]{result.score:.1f}[/]/10"
                  f"  (model {result.model}, {result.timing_ms:.0f} ms)", highlight=False)
    if result.flags:
        console.print(f"flags: [magenta]{', '.join(result.flags)}[/]", highlight=False)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("")
    table.add_column("key point")
    table.add_column("evidence", overflow="fold")
    for point in result.points:
        mark = "[green]✓[/]" if point.covered else "[red]✗[/]"
        table.add_row(mark, point.text, point.evidence or "")
    console.print(table)
    for error in result.errors:
        console.print(f"[red]error ({error.severity})[/]: {error.evidence}\n  [green]correction[/]: {error.correction}",
                      highlight=False)
    console.print(result.feedback.split("\n", 1)[-1] if result.errors or result.points else result.feedback,
                  style="dim", highlight=False)


@app.command()
def grade(
    question: Annotated[str, typer.Option("--question", "-q", help="Question id (see `grader questions`).")],
    answer: Annotated[Optional[str], typer.Option("--answer", "-a", help="The answer text.")] = None,  # noqa: UP045
    answer_file: Annotated[Optional[Path], typer.Option("--answer-file", "-f", help="Read the answer from a UTF-8 file.")] = None,  # noqa: UP045,E501
    lang: Annotated[Optional[str], typer.Option("--lang", help="Expected answer language: zh or en.")] = None,  # noqa: UP045
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Grade one answer (from --answer, --answer-file, or standard input)."""
    def run() -> None:
        if answer is not None and answer_file is not None:
            _fail("give either --answer or --answer-file, not both")
        if lang not in (None, "zh", "en"):
            _fail(f"--lang must be zh or en, not {lang!r}")
        text = answer if answer is not None else read_text_file(answer_file) if answer_file else None
        if text is None:
            if sys.stdin.isatty():
                err.print("Type the answer, then Ctrl-D:")
            raw = sys.stdin.buffer.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"standard input is not valid UTF-8 (byte {exc.start})") from None
        bank = load_bank(get_settings().bank_dir)
        bank.get(question)  # fail fast, before the model loads
        result = _load_grader(model).grade(question, text, lang)  # type: ignore[arg-type]
        if as_json:
            out.print_json(result.model_dump_json())
        else:
            render(result)
    _guarded(run)


@app.command()
def questions(
    topic: Annotated[Optional[str], typer.Option(help=f"Topic code: {', '.join(TOPICS)}.")] = None,  # noqa: UP045
    difficulty: Annotated[Optional[int], typer.Option(min=1, max=3)] = None,  # noqa: UP045
    lang: Annotated[str, typer.Option(help="Language of the question text: zh or en.")] = "en",
    as_json: JsonOption = False,
) -> None:
    """List the questions in the bank."""
    def run() -> None:
        if topic and topic.upper() not in TOPICS:
            _fail(f"unknown topic {topic!r}; choose from {', '.join(TOPICS)}")
        if lang not in ("zh", "en"):
            _fail(f"--lang must be zh or en, not {lang!r}")
        chosen = load_bank(get_settings().bank_dir).filter(topic, difficulty)
        if as_json:
            rows = [{"id": r.id, "topic": r.topic, "difficulty": r.difficulty, "question": r.question.get(lang)}  # type: ignore[arg-type]
                    for r in chosen]
            out.print_json(json.dumps(rows, ensure_ascii=False))
            return
        table = Table("id", "topic", "level", "question", header_style="bold", box=None)
        for r in chosen:
            table.add_row(r.id, r.topic, str(r.difficulty), r.question.get(lang))  # type: ignore[arg-type]
        out.print(table)
        err.print(f"{len(chosen)} question(s)")
    _guarded(run)


@bank_app.command("validate")
def bank_validate(
    directory: Annotated[Optional[Path], typer.Argument(help="Rubric folder (default: the bank).")] = None,  # noqa: UP045
) -> None:
    """Check every rubric file and report all problems with file and field."""
    folder = directory or get_settings().bank_dir
    paths = rubric_files(folder)
    if not paths:
        _fail(f"{folder}: no *.yaml rubric files")
    rubrics, problems = check_files(paths)
    for file, field, message in problems:
        out.print(f"[red]{file}[/]: [bold]{field}[/]: {message}", highlight=False)
    if problems:
        err.print(f"{len(problems)} problem(s) in {len(paths)} file(s)")
        raise typer.Exit(1)
    out.print(f"[green]ok[/]: {len(rubrics)} rubric(s) valid in {folder}", highlight=False)


@app.command()
def examples(
    path: Annotated[Path, typer.Argument(help="JSONL with question_id and answer per line.")] = EXAMPLES,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Grade the bundled example answers (good, partial, wrong, off-topic, injection; zh and en)."""
    def run() -> None:
        rows = [json.loads(line) for line in read_text_file(path).splitlines() if line.strip()]
        grader = _load_grader(model)
        results = grader.grade_many([(r["question_id"], r["answer"], r.get("lang")) for r in rows])
        if as_json:
            for result in results:
                out.print(result.model_dump_json(), highlight=False, soft_wrap=True)
            return
        table = Table("question", "lang", "kind", "score", "flags", "errors", header_style="bold", box=None)
        for row, result in zip(rows, results, strict=True):
            table.add_row(row["question_id"], result.language, row.get("kind", ""), f"{result.score:.1f}",
                          ", ".join(result.flags), ", ".join(e.misconception_id for e in result.errors))
        out.print(table)
    _guarded(run)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    app()


if __name__ == "__main__":
    main()
