"""master.cfg's vocabulary under Buildbot's names: ``from buildyard.plugins import *`` gives
``util``, ``steps``, ``schedulers``, ``changes``, ``worker``, ``reporters``, ``secrets`` and
``webhooks``, as ``from buildbot.plugins import *`` does.

Each namespace has every name Buildbot 4.3 registers there. What buildyard implements is the
real class; the rest are stand-ins that report "steps.P4 is not implemented yet (steps)" (the
missing feature) when master.cfg builds one. A name that neither Buildbot nor buildyard knows
raises AttributeError with the closest known names. Each name is resolved when it is first used
(:class:`buildyard.plugins._namespace.LazyNames`): importing the vocabulary imports none of the
modules of the steps, reporters or workers it names.

Outside the layers: re-exports only. May import anything in buildyard except buildyard.cli
and buildyard.master.master.
"""

from buildyard.plugins import changes, reporters, schedulers, secrets, steps, util, webhooks, worker

__all__ = ["changes", "reporters", "schedulers", "secrets", "steps", "util", "webhooks", "worker"]
