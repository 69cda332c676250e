"""The config vocabulary: Worker, BuilderConfig, BuildFactory, and the not-implemented stand-ins.

(Kept beside the loader's tests; they mirror common/config_object.py, master/workers/config.py,
master/builds/builder.py and master/builds/factory.py.)
"""

from __future__ import annotations

import sys

import pytest

from buildyard.common.config_object import (
    ConfigObject,
    is_placeholder,
    not_implemented,
    placeholder_name,
    report_if_placeholder,
)
from buildyard.common.errors import ConfigError, ConfigErrors, collecting_config_errors
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.builds.factory import BuildFactory
from buildyard.master.workers.config import Worker
from buildyard.plugins import steps, util

Git = not_implemented("steps.Git", "steps")


def _line() -> int:
    return sys._getframe(1).f_lineno


# -- equality: reconfig keeps what did not change -------------------------------------------------


def test_workers_built_from_equal_arguments_are_equal() -> None:
    a = Worker("w1", "pass", max_builds=2)
    b = Worker(name="w1", password="pass", max_builds=2, properties=None)
    assert a == b
    assert hash(a) == hash(b)
    assert a != Worker("w1", "other", max_builds=2)
    assert a != Worker("w1", "pass", max_builds=3)
    assert a != Worker("w2", "pass", max_builds=2)
    assert Worker("w", "p", properties={"a": [1]}) == Worker("w", "p", properties={"a": [1]})
    assert Worker("w", "p", properties={"a": [1]}) != Worker("w", "p", properties={"a": [2]})


def test_builders_compare_their_arguments_and_their_factories_steps() -> None:
    def builder(*step_args: str, tags: list[str] | None = None) -> BuilderConfig:
        factory = BuildFactory()
        for arg in step_args:
            factory.addStep(Git(repourl=arg))
        return BuilderConfig(name="b", workernames=["w"], factory=factory, tags=tags)

    with collecting_config_errors(ConfigErrors()):  # Git is a stand-in: its report is collected
        assert builder("x", "y") == builder("x", "y")
        assert hash(builder("x")) == hash(builder("x"))
        assert builder("x", "y") != builder("x")
        assert builder("x") != builder("z")
        assert builder("x", tags=["t"]) != builder("x")
    # positional or keyword, the same arguments
    assert BuilderConfig("b", workernames="w", factory=BuildFactory()) == BuilderConfig(
        name="b", workernames="w", factory=BuildFactory()
    )


def test_factories_equal_however_steps_were_added() -> None:
    with collecting_config_errors(ConfigErrors()):
        step = Git(repourl="r")
        one = BuildFactory([step])
        two = BuildFactory()
        two.addStep(Git(repourl="r"))
        assert one == two
        assert hash(one) == hash(two)
        two.addSteps([Git(repourl="s")])
        assert one != two


def test_arguments_bound_directly_are_what_inspect_binds() -> None:
    """Builders and workers bind their arguments without ``inspect`` (thousands per config):
    the same names, values and order as ``Signature.bind``, less the arguments that are their
    parameter's default object (so an explicit default still compares equal)."""
    import inspect

    from buildyard.common.config_object import _bind

    def by_inspect(cls: type, args: tuple[object, ...], kwargs: dict[str, object]) -> object:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)  # type: ignore[misc]
        parameters = bound.signature.parameters
        return [
            (k, v) for k, v in list(bound.arguments.items())[1:] if v is not parameters[k].default
        ]

    factory = BuildFactory()
    cases: list[tuple[type, tuple[object, ...], dict[str, object]]] = [
        (BuilderConfig, (), {"name": "b", "workernames": ["w"], "factory": factory}),
        (BuilderConfig, ("b", None, ["w"]), {"factory": factory, "tags": ["t"]}),
        (BuilderConfig, ("b",), {}),
    ]
    for cls, args, kwargs in cases:
        assert list(_bind(cls, args, kwargs).items()) == by_inspect(cls, args, kwargs)
    w = ["w"]
    assert BuilderConfig("b", None, w, tags=None, factory=factory) == BuilderConfig(
        "b", None, w, factory=factory
    )
    assert BuilderConfig("b", None, w, tags=["t"], factory=factory) != BuilderConfig(
        "b", None, w, factory=factory
    )
    # arguments that do not fit are kept as given, for the constructor to refuse
    assert _bind(BuilderConfig, ("b",), {"name": "c"}) == {"args": ("b",), "kwargs": {"name": "c"}}
    assert _bind(BuilderConfig, (), {"nope": 1}) == {"args": (), "kwargs": {"nope": 1}}


def test_different_types_are_not_equal() -> None:
    class MyWorker(Worker):
        pass

    assert Worker("w", "p") != MyWorker("w", "p")


# -- where and how --------------------------------------------------------------------------------


def test_defined_at_is_the_line_that_built_it() -> None:
    line, worker = _line(), Worker("w", "p")
    assert worker.defined_at is not None
    assert (worker.defined_at.file, worker.defined_at.line) == (__file__, line)


def test_repr_is_readable_and_hides_the_password() -> None:
    assert repr(Worker("w1", "hunter2", max_builds=2)) == (
        "Worker(name='w1', password=<hidden>, max_builds=2)"
    )
    assert "hunter2" not in repr(Worker("w1", "hunter2"))


# -- Worker's checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("w", 1234), {}, r"worker 'w': password must be a string or a secret \(.*\), not int"),
        (("", "p"), {}, "worker name cannot be an empty string"),
        (("1abc", "p"), {}, "worker name '1abc' is not an identifier"),
        (("has space", "p"), {}, "worker name 'has space' is not an identifier"),
        (("debug", "p"), {}, "worker name 'debug' is reserved"),
        (("x" * 51, "p"), {}, "is longer than 50 characters"),
        (("w", "p"), {"max_builds": 0}, "max_builds must be a positive integer"),
        (("w", "p"), {"notify_on_missing": [1]}, "notify_on_missing entry 1 is not a string"),
        (("w", "p"), {"properties": []}, "properties must be a dictionary"),
        (("w", "p"), {"missing_timeout": "soon"}, "missing_timeout must be a number"),
    ],
)
def test_worker_checks_raise_outside_a_load(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Worker(*args, **kwargs)  # type: ignore[arg-type]


def test_worker_attributes_are_snake_case() -> None:
    w = Worker("w-1", "p", notify_on_missing="ops@example.org", defaultProperties={"a": 1})
    assert w.notify_on_missing == ("ops@example.org",)
    assert w.default_properties == {"a": 1}
    assert w.workername == "w-1"


def test_worker_collects_every_mistake_in_a_load() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        Worker("bad name", 5, max_builds=-1)
    assert [e.message for e in errors.errors] == [
        "worker name 'bad name' is not an identifier (letters, digits, '_' and '-', not "
        "starting with a digit)",
        "worker 'bad name': password must be a string or a secret (util.Secret, "
        "util.Interpolate), not int",
        "worker 'bad name': max_builds must be a positive integer or None",
    ]


# -- BuilderConfig's checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workernames": ["w"], "factory": BuildFactory()}, "builder's name is required"),
        ({"name": "_b", "workernames": ["w"], "factory": BuildFactory()}, "must not start with"),
        ({"name": "b", "workernames": ["w"]}, "builder 'b': has no factory"),
        ({"name": "b", "workernames": ["w"], "factory": object()}, "not a BuildFactory"),
        ({"name": "b", "factory": BuildFactory()}, "at least one workername is required"),
        (
            {"name": "b", "workernames": ["w"], "factory": BuildFactory(), "tags": "t"},
            "tags must be a list",
        ),
        (
            {"name": "b", "workernames": ["w"], "factory": BuildFactory(), "tags": ["t", "t"]},
            "duplicate tags: t",
        ),
        (
            {"name": "b", "workernames": ["w"], "factory": BuildFactory(), "nextWorker": 3},
            "nextWorker must be a callable",
        ),
        (
            {
                "name": "b",
                "workernames": ["w"],
                "factory": BuildFactory(),
                "description_format": "html",
            },
            "description_format",
        ),
        (
            {"name": "b", "workernames": ["w"], "factory": BuildFactory(), "env": []},
            "env must be a dictionary",
        ),
    ],
)
def test_builder_config_checks(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BuilderConfig(**kwargs)  # type: ignore[arg-type]


def test_builder_config_defaults() -> None:
    b = BuilderConfig(
        name="my builder/x", workername="w2", workernames="w1", factory=BuildFactory()
    )
    assert b.workernames == ("w1", "w2")
    assert b.builddir == "my_builder_x"
    assert b.workerbuilddir == "my_builder_x"
    assert (b.tags, b.env, b.properties, b.locks) == ((), {}, {}, ())


# -- BuildFactory ---------------------------------------------------------------------------------


def test_add_step_rejects_what_is_not_a_step() -> None:
    factory = BuildFactory()
    with pytest.raises(ConfigError, match="addStep\\(\\) needs a step instance, not the class Git"):
        factory.addStep(Git)
    with pytest.raises(ConfigError, match="addStep\\(\\) needs a build step, not 'make'"):
        factory.addStep("make")
    assert factory.steps == []


# -- the stand-ins for what is not implemented yet ------------------------------------------------


def test_stand_in_raises_outside_a_load() -> None:
    with pytest.raises(ConfigError, match=r"steps\.Git is not implemented yet \(steps\)"):
        Git(repourl="r")


def test_stand_in_is_reported_once_per_load_and_stays_inert() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        first_line, lock = _line(), util.OldBuildCanceller("l")
        access = lock.access("exclusive")
        steps.P4(p4base="a", locks=[access])
        steps.P4(p4base="b")
        factory = BuildFactory()
        factory.addStep(steps.P4(p4base="c"))
        report_if_placeholder(util.OldBuildCanceller)  # handed over uncalled: already reported
        report_if_placeholder(util.enforceChosenWorker)
    assert [e.message for e in errors.errors] == [
        "util.OldBuildCanceller is not implemented yet (build configuration helpers)",
        "steps.P4 is not implemented yet (steps)",
        "util.enforceChosenWorker is not implemented yet (build configuration helpers)",
    ]
    assert errors.errors[0].location is not None
    assert errors.errors[0].location.line == first_line
    assert access is lock
    assert len(factory.steps) == 1

    again = ConfigErrors()
    with collecting_config_errors(again):
        steps.P4(p4base="a")
    assert len(again) == 1  # a new load reports it again


def test_subclass_of_a_stand_in_is_reported_by_its_buildbot_name() -> None:
    class MyStep(steps.P4):  # type: ignore[misc]
        def __init__(self, **kwargs: object) -> None:  # does not call super().__init__
            self.kwargs = kwargs

    errors = ConfigErrors()
    with collecting_config_errors(errors):
        MyStep(command="x")
    assert [e.message for e in errors.errors] == ["steps.P4 is not implemented yet (steps)"]


def test_stand_in_helpers() -> None:
    with collecting_config_errors(ConfigErrors()):
        docker = util.Interpolate("%(prop:x)s")
        docker_worker = not_implemented("worker.DockerLatentWorker", "latent workers")
        latent = docker_worker("docker-1", "pw", image="x")
    assert not is_placeholder(docker)  # properties and renderables are implemented
    assert is_placeholder(latent)
    assert is_placeholder(Git)
    assert not is_placeholder(Worker("w", "p"))
    assert isinstance(latent, ConfigObject)
    assert placeholder_name(latent) == "docker-1"
    assert placeholder_name(Worker("w", "p")) is None
    assert repr(latent) == "DockerLatentWorker('docker-1', 'pw', image='x')"
