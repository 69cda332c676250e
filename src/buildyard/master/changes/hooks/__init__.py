"""Change hooks: what turns a forge's webhook request into changes (``/change_hook/<dialect>``).

Each dialect is a handler class with Buildbot's interface, ``Handler(master, options)`` and
``getChanges(request) -> (changes, src)``, where ``request`` is a :class:`.request.HookRequest`
(the few attributes of a Twisted request that hook code uses) and ``changes`` are dicts of
``addChange`` keywords. :mod:`.dialects` names the built-in ones; master.cfg may give its own
(``custom_class``). The web server (buildyard.master.www.hooks) reads the request, calls the
handler, and records the changes through the data layer.

Sees the system only through buildyard.master.data and mq (import-linter checks).
"""
