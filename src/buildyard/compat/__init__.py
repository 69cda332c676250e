"""What a master.cfg's ``import buildbot...`` lines get besides the plugin names.

:mod:`buildyard.master.config.compat` maps Buildbot's module paths to buildyard while master.cfg
loads; most names come from :mod:`buildyard.plugins`, the rest from here: Buildbot's result
helpers (:mod:`.results`) and the few Buildbot names that are not plugins (:mod:`.extras`).

:mod:`.twisted` is the optional ``buildyard[twisted]`` extra's adapter for users' Twisted-style
code, the only module that imports Twisted (docs/twisted-code.md); buildyard.common.awaitables
and the import shim reach it lazily.

Outside the layers, like buildyard.plugins: it may import buildyard.common, buildyard.master's
config vocabulary (workers.config, builds) and buildyard.master.model; nothing imports it but
the import shim, the config loader, buildyard.plugins and (the adapter only)
buildyard.common.awaitables.
"""
