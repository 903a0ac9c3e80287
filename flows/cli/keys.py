"""``fks keys``: API keys of the REST service (``fks serve``): create (shown once), list, revoke.

Exit codes: 0 ok, 2 bad input (a bad or taken name, an unknown key).
"""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli._ui import EXIT_BAD_INPUT, out, run_guarded, table

keys_app = typer.Typer(help="API keys of the REST service (X-API-Key).", no_args_is_help=True)


@keys_app.command("create")
def create_command(name: Annotated[str, typer.Option(help="Who or what uses the key.")]) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from config.settings import get_settings
    from storage.api_keys import create_api_key
    from tasks.store import store_for

    def run() -> None:
        with store_for(get_settings()).begin() as conn:
            key, plain = create_api_key(conn, name)
        out.print(plain, soft_wrap=True)
        out.print(f"API key {key.name!r} created; send it as X-API-Key. It is shown only now.")

    run_guarded(run, (ValueError, EXIT_BAD_INPUT))


@keys_app.command("list")
def list_command() -> None:
    """The keys: name, prefix, created, revoked."""
    from config.settings import get_settings
    from storage.api_keys import list_api_keys
    from tasks.store import store_for

    def run() -> None:
        with store_for(get_settings()).connect() as conn:
            keys = list_api_keys(conn)
        if not keys:
            out.print("No API keys. Create one with `fks keys create --name NAME`.")
            return
        rows = [
            [
                k.name,
                f"{k.prefix}...",
                f"{k.created_at:%Y-%m-%d %H:%M}",
                f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at is not None else "-",
            ]
            for k in keys
        ]
        out.print(table("API keys", ["name", "key", "created (UTC)", "revoked (UTC)"], rows, set()))

    run_guarded(run)


@keys_app.command("revoke")
def revoke_command(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: the service answers 403 to it within seconds."""
    from config.settings import get_settings
    from storage.api_keys import revoke_api_key
    from tasks.store import store_for

    def run() -> None:
        with store_for(get_settings()).begin() as conn:
            key = revoke_api_key(conn, name)
        out.print(f"API key {key.name!r} revoked.")

    run_guarded(run)
