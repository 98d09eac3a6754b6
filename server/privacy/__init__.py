"""PII redaction applied to everything sent to a hosted model (see redact.py)."""

from server.privacy.redact import Redacted, RedactionError, Redactor

__all__ = ["Redacted", "RedactionError", "Redactor"]
