"""Shared library of the Ondas platform: one home for each cross-cutting concern.

Nothing service-specific lives here. Services import from this package; they never import each other.
"""

__version__ = "0.1.0"
