"""`ocgateway users add|remove|list`: the admin UI's accounts, kept in the shared state.

A password is read from a prompt (or one line of stdin when piped), never from the command line,
where it would sit in shell history and the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from console.passwords import hash_password
from gateway.settings import Settings
from state import State
from state.accounts import ROLES, Account
from state.audit import AuditEntry

Opener = Callable[[Settings], Awaitable[State]]
MIN_PASSWORD = 10


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("ocgateway: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _add(state: State, args: argparse.Namespace, password: str) -> int:
    existing = await state.console.accounts.get(args.name)
    await state.console.accounts.put(
        Account(args.name, args.role, hash_password(password), time.time())
    )
    what = "user updated" if existing else "user added"
    await state.console.audit.add(
        AuditEntry(time.time(), "cli", what, f"user {args.name}", args.role)
    )
    print(f"{what}: {args.name} ({args.role})")
    return 0


async def _remove(state: State, args: argparse.Namespace) -> int:
    if not await state.console.accounts.remove(args.name):
        print(f"ocgateway: no user {args.name}", file=sys.stderr)
        return 1
    await state.console.audit.add(
        AuditEntry(time.time(), "cli", "user removed", f"user {args.name}")
    )
    print(f"user removed: {args.name}")
    return 0


async def _list(state: State) -> int:
    for account in await state.console.accounts.list():
        since = datetime.fromtimestamp(account.created_at, UTC).strftime("%Y-%m-%d")
        print(f"{account.username:<24} {account.role:<10} since {since}")
    return 0


def register(commands: argparse._SubParsersAction, open_store: Opener) -> None:  # type: ignore[type-arg]
    users = commands.add_parser("users", help="admin UI accounts (editors and publishers)")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user, or set their role and password")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="editor")
    remove = actions.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    actions.add_parser("list", help="list users")

    def run(args: argparse.Namespace, settings: Settings) -> int:
        password = ""
        if args.users_command == "add":
            if not 1 <= len(args.name) <= 100 or not args.name.isprintable():
                raise SystemExit("ocgateway: a user name is 1-100 printable characters")
            password = _password()
            if len(password) < MIN_PASSWORD:
                raise SystemExit(f"ocgateway: use at least {MIN_PASSWORD} characters")

        async def go() -> int:
            state = await open_store(settings)
            try:
                if args.users_command == "add":
                    return await _add(state, args, password)
                if args.users_command == "remove":
                    return await _remove(state, args)
                return await _list(state)
            finally:
                await state.close()

        return asyncio.run(go())

    users.set_defaults(func=run)
