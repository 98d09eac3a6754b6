"""Who is asking: API keys (`keys`), the principal a request acts as (`principal`)."""

from server.auth.principal import ANONYMOUS, Principal, cli_principal

__all__ = ["ANONYMOUS", "Principal", "cli_principal"]
