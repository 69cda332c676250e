"""The ``poller`` dialect: tell change sources to poll now (``?poller=NAME``, repeatable; all
of them without it). The ``allowed`` option limits which pollers the hook may wake."""

from __future__ import annotations

import structlog

from buildyard.master.changes.hooks.base import BaseHookHandler, Changes
from buildyard.master.changes.hooks.request import HookError, HookRequest

log = structlog.get_logger(__name__)

OPTIONS = frozenset({"allowed"})


class PollingHandler(BaseHookHandler):
    async def getChanges(self, request: HookRequest) -> Changes:
        options = self.options if isinstance(self.options, dict) else {}
        allowed = options.get("allowed")
        pollers = dict(self.context.pollers())
        if allowed is not None:
            pollers = {n: p for n, p in pollers.items() if n in allowed}
        asked = request.args.get(b"poller")
        if asked is not None:
            names = [a.decode("utf-8", "replace") for a in asked]
            missing = [n for n in names if n not in pollers]
            if missing:
                raise HookError(f"Could not find pollers: {','.join(missing)}")
            pollers = {n: pollers[n] for n in names}
        for name, poller in pollers.items():
            log.info("change_hook_poll", hook="poller", poller=name)
            poller.force()
        return [], None
