"""The reference engine: plain Outlines JSON-schema generation over transformers, one ticket at a time.

Kept as the yardstick the other backends are measured against (labels, speed), not for serving load."""

from server.engines.outlines.reference import OutlinesReference, OutlinesReferenceEngine

__all__ = ["OutlinesReference", "OutlinesReferenceEngine"]
