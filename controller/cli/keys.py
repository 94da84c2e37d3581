"""`edgefleet keys ...`: the TUF signing keys of the controller in the local data dir.

Run on the controller host. Root keys may live offline (``--offline-root DIR``, optionally
encrypted with a passphrase read from an environment variable named by ``--passphrase-env``).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from controller.cli.context import cli_context
from edgefleet.cli import OutputFormat, echo, errors_as_exit_codes, print_json, print_table

app = typer.Typer(help="Create, list and rotate the release signing keys.", no_args_is_help=True)

PassphraseEnv = typer.Option(
    "", "--passphrase-env", help="Environment variable holding the root keys' passphrase."
)


def _passphrase(var: str) -> bytes | None:
    from edgefleet.errors import InvalidInput

    if not var:
        return None
    value = os.environ.get(var)
    if not value:
        raise InvalidInput(f"environment variable {var} is not set")
    return value.encode()


def _signing_errors() -> type[Exception]:
    from controller.signing import SigningError

    return SigningError


@app.command()
def init(
    ctx: typer.Context,
    root_threshold: int = typer.Option(1, "--root-threshold", min=1),
    root_keys: int | None = typer.Option(None, "--root-keys", min=1),
    offline_root: Path | None = typer.Option(None, "--offline-root", help="Write root keys here."),
    passphrase_env: str = PassphraseEnv,
) -> None:
    """Create keys and version 1 of the release metadata (before the first controller start)."""
    with errors_as_exit_codes():
        from controller.services.releases import TufPaths, initialise
        from edgefleet.errors import InvalidInput

        try:
            initialise(
                TufPaths.of(cli_context(ctx).data_dir),
                root_threshold=root_threshold,
                root_keys=root_keys,
                offline_root=offline_root,
                passphrase=_passphrase(passphrase_env),
            )
        except _signing_errors() as exc:
            raise InvalidInput(str(exc)) from exc
        echo(f"created TUF keys and metadata in {TufPaths.of(cli_context(ctx).data_dir).root}")


@app.command("list")
def list_keys(
    ctx: typer.Context,
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json"),
) -> None:
    """Roles, thresholds, key ids, and whether each private key is on this host."""
    with errors_as_exit_codes():
        from controller.services.releases import TufPaths
        from controller.signing import KeyStore, Repository
        from edgefleet.errors import NotFound

        paths = TufPaths.of(cli_context(ctx).data_dir)
        if not (paths.metadata / "root.json").exists():
            raise NotFound(f"no TUF repository in {paths.root}: run `edgefleet keys init`")
        root = Repository(paths.metadata, KeyStore(paths.keys)).root()
        store = KeyStore(paths.keys)
        rows = [
            {
                "role": role,
                "threshold": r.threshold,
                "keyid": keyid,
                "local": keyid in store.keyids(role),
                "root_version": root.version,
            }
            for role, r in root.roles.items()
            for keyid in r.keyids
        ]
        if output is OutputFormat.json:
            print_json(rows)
        else:
            print_table(
                ["role", "threshold", "keyid", "private key here"],
                [[x["role"], x["threshold"], str(x["keyid"])[:16], x["local"]] for x in rows],
            )


@app.command()
def rotate(
    ctx: typer.Context,
    role: str = typer.Argument(..., help="root, targets, snapshot or timestamp."),
    root_key: list[Path] = typer.Option([], "--root-key", help="Offline root key file(s)."),
    passphrase_env: str = PassphraseEnv,
) -> None:
    """Replace ROLE's keys with a fresh one and sign a new root version."""
    with errors_as_exit_codes():
        from controller.services.releases import TufPaths
        from controller.signing import TOP_LEVEL_ROLES, KeyStore, Repository, load_signer
        from edgefleet.errors import InvalidInput

        if role not in TOP_LEVEL_ROLES:
            raise InvalidInput(
                f"unknown role {role!r}; expected one of {', '.join(TOP_LEVEL_ROLES)}"
            )
        paths = TufPaths.of(cli_context(ctx).data_dir)
        passphrase = _passphrase(passphrase_env)
        store = KeyStore(paths.keys)
        try:
            signers = (
                [load_signer(p, passphrase) for p in root_key]
                if root_key
                else store.signers("root", passphrase=passphrase)
            )
            repo = Repository(paths.metadata, store)
            new = repo.rotate_key(role, signers, passphrase=passphrase if role == "root" else None)
        except _signing_errors() as exc:
            raise InvalidInput(str(exc)) from exc
        echo(f"rotated {role}: new key {new[0].public_key.keyid[:16]}, root v{repo.root().version}")
