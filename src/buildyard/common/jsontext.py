"""Where decoded JSON holds no text: JSON may escape half of a UTF-16 pair ("\\ud800"), which
Python decodes to a lone surrogate that no database, log or reply can encode as UTF-8."""

from __future__ import annotations

import re
from typing import Any

# a Python string decoded from JSON holds a surrogate only unpaired: JSON's escaped pairs
# ("\\ud83d\\ude00") decode to the one character they encode
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def replace_lone_surrogates(value: Any) -> tuple[Any, list[str]]:
    """``value`` (as ``json.loads`` gives it: changed in place) with each lone surrogate in a
    string or object key replaced by U+FFFD, and the paths (as :func:`lone_surrogate` names
    them) where one was. Walks with its own stack, so JSON nested as deep as the parser
    takes is not a RecursionError here."""
    found: list[str] = []
    if isinstance(value, str):
        if _SURROGATE.search(value):
            return _SURROGATE.sub("\ufffd", value), [""]
        return value, found
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if any(isinstance(key, str) and _SURROGATE.search(key) for key in node):
                items = list(node.items())
                node.clear()
                for key, item in items:
                    if isinstance(key, str) and _SURROGATE.search(key):
                        found.append(f"{path}.<key>" if path else "<key>")
                        node[_SURROGATE.sub("\ufffd", key)] = item
                    else:
                        node[key] = item
            entries: list[tuple[Any, str]] = [
                (key, f"{path}.{key}" if path else str(key)) for key in node
            ]
        elif isinstance(node, list):
            entries = [(i, f"{path}[{i}]") for i in range(len(node))]
        else:
            continue
        for key, where in entries:
            item = node[key]
            if isinstance(item, str):
                if _SURROGATE.search(item):
                    node[key] = _SURROGATE.sub("\ufffd", item)
                    found.append(where)
            elif isinstance(item, dict | list):
                stack.append((item, where))
    return value, found
