"""Hosted-model fallback (off by default) for tickets the local model stays unsure of."""

from .errors import HostedUnavailable
from .hosted import HostedFallback, HostedResult

__all__ = ["HostedFallback", "HostedResult", "HostedUnavailable"]
