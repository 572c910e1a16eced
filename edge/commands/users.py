"""`edge users add | list | remove`: who may sign in to the operator station, and as what."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edge.commands import config_option
from edge.config import load_config
from edge.ui.users import ROLES, add_user, list_users, remove_user
from storage.db import open_database


@click.group("users")
def command() -> None:
    """Operator station users: operators review and label, engineers also switch models."""


@command.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (scripts) instead of a prompt.")
@config_option("The line's config file (database URL).")
def add(name: str, role: str, password_stdin: bool, config_path: Path) -> None:
    """Create NAME (or replace its role and password). The password is prompted twice, never an argument."""
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    db = open_database(load_config(config_path).database_url)
    try:
        add_user(db, name, role, password)
    finally:
        db.close()
    click.echo(f"user {name}: {role}")


@command.command("list")
@config_option("The line's config file (database URL).")
def list_command(config_path: Path) -> None:
    """Names and roles."""
    db = open_database(load_config(config_path).database_url)
    for user in list_users(db):
        click.echo(f"{user.name:<24} {user.role:<9} since {user.created:%Y-%m-%d}")
    db.close()


@command.command("remove")
@click.argument("name")
@config_option("The line's config file (database URL).")
def remove(name: str, config_path: Path) -> None:
    """Delete NAME; a browser already signed in stays so until its session ends (ui.session_hours)."""
    db = open_database(load_config(config_path).database_url)
    found = remove_user(db, name)
    db.close()
    click.echo(f"user {name}: removed" if found else f"user {name}: not found")
