"""Where decoded JSON holds no text: JSON may escape half of a UTF-16 pair ("\\ud800"), which
Python decodes to a lone surrogate that no database, log or reply can encode as UTF-8."""

from __future__ import annotations

from typing import Any


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path (``a.b[2]``; ``path`` for ``value`` itself) of the first string or object key
    in ``value`` that holds a lone surrogate, or None. Raises RecursionError on nesting as deep
    as the interpreter's limit (callers say so as a parse error)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and lone_surrogate(key) is not None:
                return f"{path}.<key>" if path else "<key>"
            found = lone_surrogate(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = lone_surrogate(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None
