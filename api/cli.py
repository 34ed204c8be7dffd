"""`grader keys create|list|revoke` and `grader serve`: the API's commands, registered in grader/cli.py.

Only the standard library and typer are imported here at start, so `grader --help` stays quick.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from grader.config import get_settings
from grader.errors import GraderError

keys_app = typer.Typer(help="Manage the API's keys (stored hashed in GRADER_API_DATABASE_URL).",
                       no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True)


def _db():
    from api.db import Database

    return Database(get_settings().api_database_url)


def _guard(fn) -> None:
    try:
        fn()
    except GraderError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M") if stamp else ""


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The platform the key belongs to; banks and jobs are per tenant.")],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="grade, author or admin (repeat for more).")],
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "",
    rate_limit: Annotated[Optional[int], typer.Option(  # noqa: UP045 - typer needs Optional here
        "--rate-limit", min=0, help="Requests per minute (0: unlimited; default GRADER_API_RATE_LIMIT).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the key and its record as JSON.")] = False,
) -> None:
    """Create a key; the key itself is shown only now (only its hash is stored)."""
    def run() -> None:
        from api.auth import create_key

        secret, record = create_key(_db(), name=name or tenant, tenant=tenant, scopes=scope, rate_limit=rate_limit)
        if as_json:
            out.print(json.dumps({"key": secret, **record.model_dump()}), highlight=False)
            return
        out.print(secret, highlight=False)
        err.print(f"key {record.id} for tenant {record.tenant} with scopes {', '.join(record.scopes)}; store it now, "
                  "it cannot be shown again", highlight=False)
    _guard(run)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False) -> None:
    """List keys (ids, tenants, scopes; never the secrets)."""
    def run() -> None:
        from api.auth import list_keys

        keys = list_keys(_db())
        if as_json:
            out.print(json.dumps([k.model_dump() for k in keys]), highlight=False)
            return
        table = Table("id", "name", "tenant", "scopes", "rate/min", "created", "revoked", box=None)
        for k in keys:
            table.add_row(k.id, k.name, k.tenant, ",".join(k.scopes), "" if k.rate_limit is None else str(k.rate_limit),
                          _when(k.created_at), _when(k.revoked_at))
        out.print(table)
    _guard(run)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (from `grader keys list`).")]) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    def run() -> None:
        from api.auth import revoke_key

        record = revoke_key(_db(), key_id)
        out.print(f"revoked {record.id} ({record.tenant})", highlight=False)
    _guard(run)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the REST API (OpenAPI docs at /docs); the model loads once, /readyz says when."""
    import uvicorn

    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=30)
