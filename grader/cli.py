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
from grader.schema import TOPICS, GradeResult
from grader.sources import read_document as read_text_file

app = typer.Typer(help="Grade answers to Transformer / NLP interview questions.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
bank_app = typer.Typer(help="Check and inspect the question bank.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")
# The REST API's commands live beside the app in api/ (keys are its concern, not the library's).
from api.cli import keys_app, serve  # noqa: E402

app.add_typer(keys_app, name="keys")
app.command()(serve)
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


def _load_grader(model: str | None, judge="settings"):
    from grader.grader import Grader

    settings = get_settings()
    with err.status(f"Loading embedding model {model or settings.embed_model} and the question bank…"):
        return Grader.from_settings(settings, model=model, judge=judge)


def _judge_label(settings) -> str:
    """How the mock interview names the judge in its status line and transcript: "off" or backend and model."""
    if settings.judge_backend == "none":
        return "off"
    default = "smollm2" if settings.judge_backend == "transformers" else "default model"
    return f"{settings.judge_backend} ({settings.judge_model or default})"


JudgeOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--judge", envvar="GRADER_JUDGE_BACKEND",
    help="LLM judge beside the embeddings: openai, transformers or none (default none).")]
JudgeUrlOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--judge-url", envvar="GRADER_JUDGE_URL", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1.")]
JudgeModelOption = Annotated[Optional[str], typer.Option(  # noqa: UP045
    "--judge-model", envvar="GRADER_JUDGE_MODEL",
    help="openai: model name; transformers: model folder or .gguf file (default: bundled SmolLM2-135M).")]


def _check_judge(backend: str | None) -> None:
    if backend not in (None, "none", "openai", "transformers"):
        _fail(f"--judge must be openai, transformers or none, not {backend!r}")


def _load_judge(backend: str | None, url: str | None, model: str | None):
    """The judge the options ask for (falling back to GRADER_JUDGE_* settings), or None when off."""
    from grader.judge import judge_from_settings

    settings = get_settings()
    if (backend or settings.judge_backend) == "none":
        return None
    with err.status(f"Loading the {backend or settings.judge_backend} judge…"):
        return judge_from_settings(settings, backend, url, model)


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
    judge = result.judge
    if judge.status != "off" or judge.detail:  # "off" with a detail: configured, but not asked (an empty answer)
        colour = "green" if judge.used else "yellow"
        console.print(f"judge ({judge.backend} {judge.model}): [{colour}]{judge.status}[/]"
                      + (f" — {judge.detail}" if judge.detail else "")
                      + (f"\n  {judge.combination}" if judge.combination else ""), highlight=False)
    if result.exemplars:
        used = result.exemplars
        console.print(f"exemplars: {used.count} graded answers of this question moved the score from "
                      f"{used.base_score:.1f} (nearest similarity {used.nearest_similarity:.2f})", highlight=False)


@app.command()
def grade(
    question: Annotated[str, typer.Option("--question", "-q", help="Question id (see `grader questions`).")],
    answer: Annotated[Optional[str], typer.Option("--answer", "-a", help="The answer text.")] = None,  # noqa: UP045
    answer_file: Annotated[Optional[Path], typer.Option("--answer-file", "-f", help="Read the answer from a UTF-8 file.")] = None,  # noqa: UP045,E501
    lang: Annotated[Optional[str], typer.Option("--lang", help="Expected answer language: zh or en.")] = None,  # noqa: UP045
    model: ModelOption = None,
    as_json: JsonOption = False,
    judge: JudgeOption = None,
    judge_url: JudgeUrlOption = None,
    judge_model: JudgeModelOption = None,
) -> None:
    """Grade one answer (from --answer, --answer-file, or standard input)."""
    def run() -> None:
        if answer is not None and answer_file is not None:
            _fail("give either --answer or --answer-file, not both")
        if lang not in (None, "zh", "en"):
            _fail(f"--lang must be zh or en, not {lang!r}")
        _check_judge(judge)
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
        grader = _load_grader(model, _load_judge(judge, judge_url, judge_model))
        result = grader.grade(question, text, lang)  # type: ignore[arg-type]
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


@app.command()
def audit(
    paths: Annotated[list[Path], typer.Argument(help="Documents to check (HTML or text, UTF-8).")],
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Grade the answers found in reference documents and list the errors they teach."""
    from grader.audit import audit as run_audit

    def run() -> None:
        for path in paths:
            read_text_file(path)  # refuse unreadable input before loading the model
        report = run_audit(_load_grader(model), paths)
        if as_json:
            out.print(report.model_dump_json(indent=2), highlight=False, soft_wrap=True)
            return
        current = None
        for item in report.items:
            if item.source != current:
                current = item.source
                out.print(f"\n[bold]{current}[/]", highlight=False)
            if item.result is None:
                out.print(f"  Q{item.number:<3} {item.question_id}: [dim]no answer[/]", highlight=False)
                continue
            errors = item.result.errors
            colour = "red" if errors else "green"
            out.print(f"  Q{item.number:<3} {item.question_id}: score {item.result.score:.1f}  "
                      f"[{colour}]{len(errors)} error(s)[/]", highlight=False)
            for error in errors:
                out.print(f"       [red]{error.severity}[/] {error.misconception_id}: {error.evidence[:100]}"
                          f"\n       [green]correction[/]: {error.correction}", highlight=False)
        summary = report.summary
        out.print(f"\n{summary.answers_graded} answers graded in {summary.files} file(s) "
                  f"({summary.questions_found} questions found); {summary.answers_with_errors} hold at least "
                  f"one flagged error ({summary.errors_flagged} errors); mean score {summary.mean_score}",
                  highlight=False)
    _guarded(run)


# ---------------------------------------------------------------- mock interview (grader/interview*.py)


@app.command()
def interview(
    topic: Annotated[Optional[list[str]], typer.Option("--topic", "-t", help=f"Topic code, repeatable: {', '.join(TOPICS)}.")] = None,  # noqa: UP045,E501
    difficulty: Annotated[Optional[int], typer.Option(min=1, max=3, help="Only questions of this level.")] = None,  # noqa: UP045,E501
    lang: Annotated[Optional[str], typer.Option(help="Language of the questions: zh or en (default en).")] = None,  # noqa: UP045,E501
    count: Annotated[Optional[int], typer.Option("--count", "-n", min=1, max=50, help="Number of questions (default 5).")] = None,  # noqa: UP045,E501
    time_limit: Annotated[Optional[int], typer.Option("--time-limit", min=10, help="Seconds per question (default: none).")] = None,  # noqa: UP045,E501
    resume: Annotated[bool, typer.Option("--resume", help="Continue the latest unfinished session.")] = False,
    session_id: Annotated[Optional[str], typer.Option("--session", help="Continue this session id instead.")] = None,  # noqa: UP045,E501
    seed: Annotated[Optional[int], typer.Option(help="Fix the question draw.")] = None,  # noqa: UP045
    model: ModelOption = None,
    judge: JudgeOption = None,
    judge_url: JudgeUrlOption = None,
    judge_model: JudgeModelOption = None,
) -> None:
    """Practise a mock interview: graded answers, hints, follow-up questions, a saved transcript.

    Without options on a terminal an opening menu asks for topics, level, language, count and time.
    """
    def run() -> None:
        from grader.interview import Interview, new_session
        from grader.interview_models import InterviewConfig
        from grader.interview_store import SessionStore
        from grader.interview_term import BackgroundGrader, PlainReader, TerminalReader, choose_config

        _check_judge(judge)
        # each result panel says what the judge did; log lines would only tear the answer editor's screen
        logging.getLogger("grader.judge").setLevel(logging.ERROR)
        chosen_judge = {"judge_backend": judge, "judge_url": judge_url, "judge_model": judge_model}
        settings = get_settings().model_copy(update={k: v for k, v in chosen_judge.items() if v is not None})
        store, bank = SessionStore(settings.sessions_dir), load_bank(settings.bank_dir)
        session = None
        if resume or session_id:
            session = store.load(session_id) if session_id else store.latest_unfinished()
            if session is None:
                _fail(f"no unfinished session in {store.folder}; start one with `grader interview`")
            elif session.status == "finished":
                _fail(f"session {session.id} is already finished; `grader history` shows it")
        topics = [t.upper() for t in topic or []]
        if bad := [t for t in topics if t not in TOPICS]:
            _fail(f"unknown topic {', '.join(bad)}; choose from {', '.join(TOPICS)}")
        if lang not in (None, "zh", "en"):
            _fail(f"--lang must be zh or en, not {lang!r}")

        def load():
            from grader.grader import Grader
            return Grader.from_settings(settings, model=model)

        loader = BackgroundGrader(load, label=model or settings.embed_model)  # starts now, the menu does not wait
        console = Console(highlight=False)
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        judge_label = _judge_label(settings)
        read = TerminalReader(loader.status, judge=judge_label) if interactive else PlainReader(console=console)
        if session is None:
            config = InterviewConfig(topics=topics, difficulty=difficulty, lang=lang or "en", count=count or 5,  # type: ignore[arg-type]
                                     time_limit=time_limit, seed=seed)
            chosen = (topic, difficulty, lang, count, time_limit)
            if interactive and all(option is None for option in chosen):
                try:
                    config = choose_config(read, console, bank, config)
                except (EOFError, KeyboardInterrupt):
                    raise typer.Exit(130) from None
            session = new_session(store.new_id(), bank, config, store.sessions())
            session.judge = judge_label
            store.save(session)
        Interview(session, bank, loader, read, console, store).run()
    _guarded(run)


@app.command()
def history(as_json: JsonOption = False) -> None:
    """Your progress over mock interviews: each session's mean, each topic's first and latest score."""
    from grader.interview_store import SessionStore
    from grader.interview_view import history as history_view

    store = SessionStore(get_settings().sessions_dir)
    sessions = store.sessions()
    if as_json:
        rows = [{"id": s.id, "created": s.created.isoformat(), "status": s.status, "lang": s.config.lang,
                 "questions": len(s.questions), "done": s.answered_count(),
                 "mean_score": s.mean_score(),
                 "topics": {t: round(sum(v) / len(v), 2) for t, v in s.topic_scores().items()}} for s in sessions]
        out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    if not sessions:
        out.print(f"No sessions yet in {store.folder}; start one with `grader interview`.", highlight=False)
        return
    out.print(history_view(sessions, out))


@app.command()
def batch(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV (comma, tab or semicolon; UTF-8, "
                                               "UTF-8 with BOM or GBK) or JSONL, one answer per row.")],
    output: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--output", "-o", help="CSV or JSONL (by suffix); default: INPUT.graded.csv next to the input.")] = None,
    column: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--column", "-c", help="ROLE=NAME for a column named otherwise (roles: question_id, answer, candidate_id, "
        "lang, question, reference, key_points), e.g. -c answer=回答.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--batch-size", min=1, help="Rows per encoder call and per commit (default GRADER_BATCH_SIZE, 64).")] = None,
    encoding: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="Input encoding (default: detected; UTF-8, UTF-8 with BOM, GBK).")] = None,
    delimiter: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="CSV delimiter: comma, tab, semicolon or a character (default: detected from the header).")] = None,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Discard the output and start again (default: continue after its last row).")] = False,
    prefix: Annotated[str, typer.Option(
        help="Prefix for the added columns, when the input already has one (e.g. a human `score`).")] = "",
    full: Annotated[bool, typer.Option("--full", help="Add a `result` column with the whole result as JSON.")] = False,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the Markdown report.")] = True,
    # "\\[" in the help: rich would read [ray] as markup and drop it
    engine: Annotated[str, typer.Option(
        help="local: grade in this process; ray: on Ray Data, one model per worker (a local Ray unless "
        "RAY_ADDRESS names a cluster; needs pip install 'interview-grader\\[ray]').")] = "local",
    workers: Annotated[int, typer.Option(min=1, help="Ray workers, each loading the model once (ray only).")] = 2,
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON.")] = False,
) -> None:
    """Grade a file of answers; stop it any time, the same command continues where it stopped."""
    from grader.batch import BatchJob, Columns, LocalEngine
    from grader.batch_progress import progress_for

    def run() -> None:
        if engine not in ("local", "ray"):
            _fail(f"--engine must be local or ray, not {engine!r}")
        settings = get_settings()
        size = batch_size or settings.batch_size
        with BatchJob(input_path, output, columns=Columns.from_pairs(column or []), batch_size=size,
                      encoding=encoding, delimiter=delimiter, restart=restart, prefix=prefix, full=full) as job:
            err.print(f"{input_path}: {job.fmt.describe()} → {job.output_path}", highlight=False, soft_wrap=True)
            if job.resumed.rows:
                torn = f", cut {job.resumed.torn_bytes} bytes of an unfinished row" if job.resumed.torn_bytes else ""
                err.print(f"continuing after row {job.resumed.last_row} ({job.resumed.rows} rows already "
                          f"written{torn})", highlight=False, soft_wrap=True)
            try:
                if engine == "ray":
                    from grader.batch_ray import RayEngine

                    chosen = settings.model_copy(update={"embed_model": model}) if model else settings
                    runner: LocalEngine | RayEngine = RayEngine(chosen, workers)
                    bank = load_bank(settings.bank_dir)  # for the report: the driver loads no model
                else:
                    grader = _load_grader(model)
                    runner, bank = LocalEngine(grader), grader.bank
                with progress_for(err) as progress:
                    summary = job.run(runner, progress)
            except KeyboardInterrupt:
                err.print(f"\nstopped: the output holds every row up to row {job.last_row}; "
                          "run the same command again to continue", highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None
            if report:
                summary.report = job.write_report(bank)
        if as_json:
            out.print_json(summary.model_dump_json())
            return
        colour = "yellow" if summary.errors else "green"
        out.print(f"[{colour}]{summary.rows} rows[/] graded in {summary.seconds:.0f} s ({summary.rows_per_second:.1f} "
                  f"rows/s): {summary.graded} ok, {summary.errors} error rows; {summary.already_done} were already "
                  f"done → {summary.output}" + (f"\nreport: {summary.report}" if summary.report else ""),
                  highlight=False)
    _guarded(run)


exemplars_app = typer.Typer(help="Graded answers that inform the scores of their questions.", no_args_is_help=True)
app.add_typer(exemplars_app, name="exemplars")


@app.command("eval")
def eval_command(
    dataset: Annotated[Optional[str], typer.Argument(  # noqa: UP045
        help="mohler, ads, or a CSV/JSONL of graded answers (question, reference, answer, score).")] = None,
    data: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Folder holding mohler_v2.jsonl and ads_train.jsonl (default ../shared/eval-data).")] = None,
    train: Annotated[Optional[Path], typer.Option(help="Fit on this file ...")] = None,  # noqa: UP045
    test: Annotated[Optional[Path], typer.Option(help="... and report on this one.")] = None,  # noqa: UP045
    warm: Annotated[bool, typer.Option("--warm/--cold", help="Use exemplars from training answers of the same "
                                       "question (ads folds split each question's answers).")] = False,
    rubric_formula: Annotated[bool, typer.Option(
        "--rubric-formula", help="Score with the bank's formula, as bank and tenant rubrics are, instead of the "
        "custom-question model (measures the exemplar blend those questions get).")] = False,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Agreement with human grades (Pearson, Spearman, QWK, RMSE) under the dataset's protocol."""
    from eval.harness import render as render_report
    from eval.harness import run as run_eval

    def run() -> None:
        with err.status("Computing features (embeddings are cached for the next run)…"):
            report = run_eval(dataset, data, train, test, "warm" if warm else "cold", model, rubric_formula)
        out.print_json(data=report.flat()) if as_json else out.print(render_report(report), highlight=False)

    _guarded(run)


@exemplars_app.command("add")
def exemplars_add(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="CSV/JSONL: question, reference(s), answer, score.")],
    scale: Annotated[Optional[float], typer.Option(  # noqa: UP045
        help="Top of the file's score scale (default: 5 or 10, whichever fits).")] = None,
    model: ModelOption = None,
) -> None:
    """Store graded answers; later answers to the same question are scored with their nearest ones."""
    from eval.datasets import load_graded
    from eval.features import custom_question
    from grader.exemplars import add_graded

    def run() -> None:
        graded = load_graded(path, scale)
        grader = _load_grader(model)
        items = [(custom_question(r), r.answer, 10 * graded.fraction(r.score)) for r in graded.records]
        added = add_graded(grader, items)
        out.print(f"{sum(added.values())} new exemplars for {len(added)} question(s) in "
                  f"{grader.exemplars.folder}", highlight=False)

    _guarded(run)


def main() -> None:
    from pydantic import ValidationError

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        get_settings()  # a bad GRADER_* variable is named here, before any command starts
    except ValidationError as exc:
        problems = "; ".join(f"GRADER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        err.print(f"[bold red]error:[/] invalid setting: {problems}", highlight=False)
        raise SystemExit(2) from None
    app()


if __name__ == "__main__":
    main()
