"""The principal a request or a command acts as: an API key's name, role and scope.

Roles grant separate powers: `classify` (classify, batch, jobs), `review` (feedback, the review queue,
reading results back), `admin` (models, prompts, keys, retention, erasure, audit) and admin holds every
role's powers. A scope (tenant) limits which stored tickets a key reads: None reads all."""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from server.config import Role


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    key_id: int | None = None
    scope: str | None = None

    def allows(self, role: Role) -> bool:
        return self.role == "admin" or self.role == role

    def sees(self, scope: str | None) -> bool:
        """May this principal read a row stored under `scope`?"""
        return self.scope is None or self.scope == scope


# Requests to a server running without keys (`auth.required: false`, loopback only): every power, and
# the audit log says nobody in particular asked.
ANONYMOUS = Principal("anonymous", "admin")


def cli_principal() -> Principal:
    """Commands run on the server's machine act with the operating-system user's name and full powers:
    whoever can run them can read the database and the data key anyway."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal(f"cli:{user}", "admin")
