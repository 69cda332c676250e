"""Where master.cfg sets each ``BuildmasterConfig`` key, read from its syntax tree.

A mistake in a key's value (``c['title'] = 42``) is reported at the line that wrote it. Python
does not keep that line, so it is found again in master.cfg's source: ``c['key'] = ...`` and
``BuildmasterConfig['key'] = ...`` (through any name bound to the same dict), the keys of a
dict literal or ``dict(...)`` call assigned to it, and ``c.update(...)`` / ``c.setdefault(...)``.
A key set elsewhere (in a module master.cfg imports) falls back to the line that mentions it,
then to the line that binds ``BuildmasterConfig``.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping

from buildyard.common.errors import Location

__all__ = ["KeyLines", "find_key_lines"]

_CONFIG_NAME = "BuildmasterConfig"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeyLines:
    """The lines of master.cfg (``file``) that set each key."""

    file: str
    assigned: Mapping[str, int]
    mentioned: Mapping[str, int]
    config_line: int

    def location(self, key: str | None = None) -> Location:
        """Where ``key`` was set (the binding of BuildmasterConfig for None or an unseen key)."""
        line = None
        if key is not None:
            line = self.assigned.get(key) or self.mentioned.get(key)
        return Location(file=self.file, line=line or self.config_line)


def _aliases(tree: ast.Module) -> tuple[set[str], int]:
    """The names bound to the BuildmasterConfig dict, and the first line binding it."""
    aliases = {_CONFIG_NAME}
    first_line = 0
    assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign)]
    changed = True
    while changed:
        changed = False
        for node in assigns:
            names = {t.id for t in node.targets if isinstance(t, ast.Name)}
            if isinstance(node.value, ast.Name):
                names.add(node.value.id)
            if names & aliases and not names <= aliases:
                aliases |= names
                changed = True
    for node in sorted(assigns, key=lambda n: n.lineno):
        if any(isinstance(t, ast.Name) and t.id == _CONFIG_NAME for t in node.targets):
            first_line = node.lineno
            break
    return aliases, first_line


def _constant_key(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _literal_keys(value: ast.expr) -> dict[str, int]:
    """The keys of ``{...}`` or ``dict(...)``, each with its own line."""
    keys: dict[str, int] = {}
    if isinstance(value, ast.Dict):
        for k in value.keys:
            name = _constant_key(k) if k is not None else None
            if name is not None and k is not None:
                keys[name] = k.lineno
    elif (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict"
    ):
        for keyword in value.keywords:
            if keyword.arg is not None:
                keys[keyword.arg] = keyword.lineno
        for arg in value.args:
            keys.update(_literal_keys(arg))
    return keys


def find_key_lines(source: str, file: str) -> KeyLines:
    """Read master.cfg's ``source`` (it must compile) for the lines that set each key."""
    tree = ast.parse(source, filename=file)
    aliases, config_line = _aliases(tree)

    def is_config(node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id in aliases

    assigned: dict[str, int] = {}
    mentioned: dict[str, int] = {}

    def assign(key: str | None, line: int) -> None:
        if key is not None:
            assigned[key] = max(line, assigned.get(key, 0))  # the last assignment wins

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Subscript) and is_config(target.value):
                    assign(_constant_key(target.slice), target.lineno)
                elif is_config(target) and node.value is not None:
                    for key, line in _literal_keys(node.value).items():
                        assign(key, line)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if not is_config(node.func.value):
                continue
            if node.func.attr == "update":
                for arg in node.args:
                    for key, line in _literal_keys(arg).items():
                        assign(key, line)
                for keyword in node.keywords:
                    if keyword.arg is not None:
                        assign(keyword.arg, keyword.lineno)
            elif node.func.attr == "setdefault" and node.args:
                assign(_constant_key(node.args[0]), node.lineno)
        elif isinstance(node, ast.Subscript) and is_config(node.value):
            mention = _constant_key(node.slice)
            if mention is not None:
                mentioned.setdefault(mention, node.lineno)

    return KeyLines(file=file, assigned=assigned, mentioned=mentioned, config_line=config_line or 1)
