"""`vidsynth keys add|revoke|list`: the API keys file, edited safely.

Every change holds the file's lock, rewrites it whole into a 0600 temporary file beside it
and renames that over it (libs/common/keys_file.py), so the running mesh never reads half
a file; every process reloads it within VIDSYNTH_API_KEYS_RELOAD_SECONDS (or at once on
`kill -HUP <vidsynth up>`). The new key is printed once and never stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from libs.common.errors import VidsynthError
from libs.common.keys_file import (
    DIGEST_PREFIX,
    USER_ID,
    FileKeys,
    KeyEntry,
    KeysFileError,
    key_digest,
    locked,
    new_api_key,
    read_for_update,
    write_keys_file,
)
from vidsynth.cli.remote import JsonOption, console, fail, print_json

app = typer.Typer(help="API keys in VIDSYNTH_API_KEYS_FILE (hashes only).", no_args_is_help=True)
MIN_ID_HEX = 8

FileOption = Annotated[
    Path,
    typer.Option(
        "--file",
        envvar="VIDSYNTH_API_KEYS_FILE",
        help="The keys file (created with mode 0600 if missing).",
        show_default=False,
    ),
]


def _usage(message: str) -> VidsynthError:
    return VidsynthError("INVALID_ARGUMENT", message)


def _read(path: Path) -> FileKeys:
    try:
        return read_for_update(path)
    except KeysFileError as error:
        fail(_usage(f"{error}; fix it before changing it."))


@app.command("add")
def add(
    user: Annotated[str, typer.Argument(help="The user the new key authenticates as.")],
    file: FileOption,
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make a new key for USER; it is printed once (only its hash is written)."""
    if not USER_ID.fullmatch(user):
        fail(_usage(f"A user id must match {USER_ID.pattern}."), as_json)
    key = new_api_key()
    entry = KeyEntry(key_digest(key).hex(), user, admin)
    with locked(file):
        current = _read(file)
        write_keys_file(file, FileKeys((*current.entries, entry)))
    if as_json:
        print_json({"api_key": key, "key_id": entry.key_id, "user_id": user, "admin": admin})
        return
    console.print(f"[green]added[/] {entry.key_id} for {user}{' (admin)' if admin else ''}")
    typer.echo(key)  # stdout, alone: `KEY=$(vidsynth keys add alice)`


def _matches(entry: KeyEntry, target: str) -> bool:
    if target.startswith(DIGEST_PREFIX):
        return entry.digest.startswith(target[len(DIGEST_PREFIX) :].lower())
    return entry.digest == key_digest(target).hex()


@app.command("revoke")
def revoke(
    file: FileOption,
    target: Annotated[
        str,
        typer.Argument(help="The key itself, or its id as `keys list` shows it (sha256:<first hex digits>)."),
    ] = "",
    user: Annotated[str, typer.Option("--user", help="Revoke every key of this user instead.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Remove a key (or every key of --user); the mesh refuses it within seconds."""
    if bool(target) == bool(user):
        fail(_usage("Name one key (the key or its sha256: id) or give --user, not both."), as_json)
    if target.startswith(DIGEST_PREFIX) and len(target) - len(DIGEST_PREFIX) < MIN_ID_HEX:
        fail(_usage(f"A key id needs at least {MIN_ID_HEX} hex digits after {DIGEST_PREFIX}."), as_json)
    with locked(file):
        current = _read(file)
        gone = [e for e in current.entries if (e.user_id == user if user else _matches(e, target))]
        if not user and len(gone) > 1:
            fail(_usage("That id matches several keys; give more of it."), as_json)
        if not gone:
            fail(VidsynthError("NOT_FOUND", "No such key in the file."), as_json)
        write_keys_file(file, FileKeys(tuple(e for e in current.entries if e not in gone)))
    if as_json:
        print_json({"revoked": [{"key_id": e.key_id, "user_id": e.user_id} for e in gone]})
        return
    for entry in gone:
        console.print(f"[green]revoked[/] {entry.key_id} of {entry.user_id}")


@app.command("list")
def list_keys(file: FileOption, as_json: JsonOption = False) -> None:
    """The keys in the file: id, user and role (the keys themselves are not stored)."""
    keys = _read(file)
    rows = [{"key_id": e.key_id, "user_id": e.user_id, "admin": e.admin} for e in keys.entries]
    if as_json:
        print_json({"keys": rows})
        return
    table = Table("key id", "user", "role")
    for row in rows:
        table.add_row(row["key_id"], row["user_id"], "admin" if row["admin"] else "user")
    console.print(table)
