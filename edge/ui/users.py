"""Station users: argon2id password hashes in the line's database, two roles.

An operator reviews and labels; an engineer also switches models. The role names
double as Starlette auth scopes (security.py), an engineer holding both.
"""

from __future__ import annotations

import functools
import logging

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from storage.db import Database, User
from storage.errors import StorageError
from storage.records import utc_now

log = logging.getLogger(__name__)
ROLES = ("operator", "engineer")
SCOPES = {"operator": ["authenticated", "operator"], "engineer": ["authenticated", "operator", "engineer"]}
_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name costs as long as a wrong password
    (made on first use: every `edge` command imports this module)."""
    return _hasher.hash("not a password")


def add_user(db: Database, name: str, role: str, password: str) -> None:
    """Create `name`, or give an existing one a new role and password."""
    if role not in ROLES:
        raise StorageError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not name or len(name) > 64:
        raise StorageError("a user name needs 1 to 64 characters")
    if len(password) < 8:
        raise StorageError("a password needs at least 8 characters")
    with db.session.begin() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            session.add(User(name=name, role=role, password_hash=_hasher.hash(password), created=utc_now()))
        else:
            user.role, user.password_hash = role, _hasher.hash(password)
    log.info("user %s (%s) saved", name, role)


def authenticate(db: Database, name: str, password: str) -> User | None:
    """The user if the password matches, else None (the reason is logged, never shown)."""
    with db.session() as session:
        user = session.scalar(select(User).where(User.name == name))
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        log.warning("sign-in refused for %r", name)
        return None
    return user


def list_users(db: Database) -> list[User]:
    with db.session() as session:
        return list(session.scalars(select(User).order_by(User.name)))


def remove_user(db: Database, name: str) -> bool:
    with db.session.begin() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            return False
        session.delete(user)
    return True
