"""CLI commands for the API: ``serve`` and ``tokens``.

FastAPI and uvicorn are imported inside ``serve`` only, and the database layer
inside the token commands, so every other command starts without them.
"""

from __future__ import annotations

import json
import logging

import click

log = logging.getLogger(__name__)


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Keep loopback and put a TLS proxy in front.",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes (each with its own database pool).",
)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the hub API (OpenAPI document at /v1/openapi.json)."""
    import uvicorn

    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning(
            "serving the API on %s, not loopback: it is reachable from other "
            "machines; put a TLS-terminating proxy in front of it",
            host,
        )
    click.echo(f"i2es-hub API on http://{host}:{port}/v1/openapi.json", err=True)
    if workers > 1:
        uvicorn.run(
            "i2es_hub.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
        )
    else:
        from i2es_hub.api import create_app

        uvicorn.run(create_app(), host=host, port=port, log_level="info")


@click.group("tokens")
def tokens_group() -> None:
    """Per-country API tokens (stored hashed; shown once when created)."""


@tokens_group.command("create")
@click.option("--country", required=True, metavar="CC", help="ISO alpha-2 code.")
@click.option("--label", default="", help="A note: which system holds the token.")
def tokens_create(country: str, label: str) -> None:
    """Create a token for COUNTRY; it is printed once, as the last word."""
    from i2es_hub import store, tokens

    with store.write_transaction(store.get_engine()) as conn:
        new = tokens.create(conn, country, label)
    click.echo(
        f"created API token {new.info.id} for {new.info.country}"
        + (f" ({label})" if label else "")
    )
    click.echo("it is shown only now; store it in the national system's secrets:")
    click.echo(str(new.token))


@tokens_group.command("revoke")
@click.argument("token_id")
def tokens_revoke(token_id: str) -> None:
    """Revoke the token with TOKEN_ID; requests with it get 401 at once."""
    from i2es_hub import store, tokens

    with store.write_transaction(store.get_engine()) as conn:
        info = tokens.revoke(conn, token_id)
    click.echo(f"revoked API token {info.id} of {info.country}")


@tokens_group.command("list")
@click.option("--country", help="Only this country's tokens.")
@click.option("--json", "as_json", is_flag=True, help="One JSON list.")
def tokens_list(country: str | None, as_json: bool) -> None:
    """List tokens: id, country, label, created, revoked (never the token)."""
    from i2es_hub import store, tokens

    with store.read_transaction(store.get_engine()) as conn:
        rows = tokens.list_tokens(conn, country)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows]))
        return
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        click.echo(
            f"{r.id}  {r.country}  {state:<24} {r.created_at:%Y-%m-%d %H:%M}  {r.label}"
        )
    click.echo(f"{len(rows)} tokens", err=True)


__all__ = ["serve", "tokens_group"]
