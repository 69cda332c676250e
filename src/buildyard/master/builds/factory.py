"""BuildFactory: the ordered steps of a builder's builds, as master.cfg lists them.

``factory.addStep(steps.ShellCommand(...))`` keeps the step object it is given; each build
will run its own copy of every step (issue 4). Until the step classes exist, master.cfg's steps
are stand-ins from :func:`~buildyard.common.config_object.not_implemented`, accepted here so the
rest of the configuration is still checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from buildyard.common.config_object import ConfigObject, is_placeholder, not_implemented
from buildyard.common.errors import config_error
from buildyard.master.steps.base import BuildStep

__all__ = ["BuildFactory"]

# Buildbot wraps steps in DownloadSecretsToWorker/RemoveWorkerFileSecret for ``withSecrets``.
_WithSecrets = not_implemented("util.BuildFactory.withSecrets", "secret files for a build")


class BuildFactory(ConfigObject):
    """The steps of a build, in order.

    Two factories are equal when they hold equal steps in the same order and the same
    ``workdir``, however the steps were added.
    """

    #: The directory (under the builder's directory on the worker) where steps run by default.
    workdir: str = "build"

    def __init__(self, steps: Iterable[object] | None = None) -> None:
        self.steps: list[object] = []
        if steps:
            self.add_steps(steps)

    def add_step(self, step: object) -> None:
        """Append ``step``: a build step instance."""
        if isinstance(step, type):
            config_error(
                f"addStep() needs a step instance, not the class {step.__name__} "
                f"(write {step.__name__}(...))"
            )
            return
        if not isinstance(step, BuildStep) and not is_placeholder(step):
            config_error(f"addStep() needs a build step, not {step!r}")
            return
        self.steps.append(step)

    def add_steps(self, steps: Iterable[object], with_secrets: object = None) -> None:
        """Append every step of ``steps``; ``with_secrets`` wraps them in secret files."""
        if not isinstance(steps, Iterable) or isinstance(steps, str | bytes):
            config_error(f"addSteps() needs a list of steps, not {steps!r}")
            return
        if with_secrets:
            self.add_step(_WithSecrets(with_secrets))
        for step in steps:
            self.add_step(step)

    @contextlib.contextmanager
    def with_secrets(self, secrets: object) -> Iterator[BuildFactory]:
        """Steps added inside the block get ``secrets`` written to files on the worker."""
        self.add_step(_WithSecrets(secrets))
        yield self

    # Buildbot's names, which master.cfg calls.
    addStep = add_step
    withSecrets = with_secrets

    def addSteps(self, steps: Iterable[object], withSecrets: object = None) -> None:
        self.add_steps(steps, with_secrets=withSecrets)

    def _compare_key(self) -> object:
        return (tuple(self.steps), self.workdir)

    def __hash__(self) -> int:
        # Steps are added after construction: only the type is stable enough to hash.
        return hash(type(self).__qualname__)

    def __repr__(self) -> str:
        return f"BuildFactory(steps={self.steps!r})"
