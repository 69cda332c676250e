"""Properties, render(), and the renderables other than the format strings (test_interpolate.py)."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable
from typing import Any

import pytest

from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import ConfigError, ConfigErrors, collecting_config_errors
from buildyard.master.config.compat import buildbot_imports
from buildyard.master.model import properties as model
from buildyard.master.model.properties import (
    FlattenList,
    Interpolate,
    Properties,
    Property,
    RenderError,
    Secret,
    SecretNotFound,
    Transform,
    WithProperties,
    is_renderable,
    render,
    renderer,
)
from buildyard.plugins import util
from tests.master.model._context import BuildContext, props_for

# --- Properties ------------------------------------------------------------------------------


def test_properties_store_value_and_source() -> None:
    props = Properties()
    props.setProperty("branch", "main", "Change")
    props.setProperty("n", 3, "Scheduler", runtime=True)

    assert props.getProperty("branch") == "main"
    assert props["n"] == 3
    assert props.getProperty("missing") is None
    assert props.getProperty("missing", "dflt") == "dflt"
    assert props.hasProperty("branch")
    assert props.has_key("n")
    assert "branch" in props
    assert "missing" not in props
    assert not props.hasProperty("missing")
    assert props.getPropertySource("branch") == "Change"
    assert props.getProperties() is props
    assert props.asList() == [("branch", "main", "Change"), ("n", 3, "Scheduler")]
    assert props.asDict() == {"branch": ("main", "Change"), "n": (3, "Scheduler")}
    assert list(props.keys()) == ["branch", "n"]
    assert props.runtime == {"n"}
    assert props
    assert not Properties()
    with pytest.raises(KeyError):
        _ = props["missing"]
    with pytest.raises(KeyError):
        props.getPropertySource("missing")


def test_as_dict_is_a_copy_and_as_list_is_sorted() -> None:
    props = Properties()
    props.update({"b": 1, "a": 2, "c": None}, "Builder")
    props.asDict()["z"] = (1, "x")
    assert "z" not in props
    assert [name for name, _, _ in props.asList()] == ["a", "b", "c"]
    assert props.getPropertySource("c") == "Builder"


def test_constructor_keywords_and_from_dict_and_equality() -> None:
    props = Properties(a=1, b=[1, 2])
    assert props.asDict() == {"a": (1, "TEST"), "b": ([1, 2], "TEST")}
    again = Properties.fromDict(props.asDict())
    assert again == props
    again.setProperty("a", 1, "Other")
    assert again != props
    assert repr(props) == "Properties(**{'a': 1, 'b': [1, 2]})"


def test_update_from_other_properties_with_and_without_runtime() -> None:
    other = Properties()
    other.setProperty("kept", 1, "Scheduler")
    other.setProperty("runtime", 2, "Step", runtime=True)

    everything = Properties()
    everything.updateFromProperties(other)
    assert everything.asDict() == {"kept": (1, "Scheduler"), "runtime": (2, "Step")}
    assert everything.runtime == {"runtime"}

    rebuilt = Properties()
    rebuilt.setProperty("kept", 0, "Old")
    rebuilt.updateFromPropertiesNoRuntime(other)
    assert rebuilt.asDict() == {"kept": (1, "Scheduler")}
    assert rebuilt.runtime == set()


@pytest.mark.parametrize("value", [{1, 2}, object(), b"bytes", {"a": {"b": {3}}}])
def test_set_property_refuses_what_json_cannot_hold(value: object) -> None:
    props = Properties()
    with pytest.raises(TypeError, match=r"property 'bad': .* is not JSON-serialisable"):
        props.setProperty("bad", value, "Test")
    assert "bad" not in props


def test_set_property_refuses_a_circular_value() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="property 'loop'"):
        Properties().setProperty("loop", loop, "Test")


def test_set_property_keeps_a_renderable_for_later() -> None:
    props = Properties()
    props.setProperty("later", Interpolate("x"), "Builder")
    props.setProperty(b"bytes-name", "v", b"bytes-source")
    assert props.getPropertySource("bytes-name") == "bytes-source"
    assert props.getProperty("later") == Interpolate("x")


async def test_properties_render_method() -> None:
    props = Properties(branch="main")
    assert await props.render([Property("branch"), "x"]) == ["main", "x"]


# --- render() ------------------------------------------------------------------------------


class Doubler:
    """A renderable as master.cfg code writes them: a plain getRenderingFor."""

    def __init__(self, name: str) -> None:
        self.name = name

    def getRenderingFor(self, props: Properties) -> Any:  # noqa: N802
        return props.getProperty(self.name) * 2


class AsyncRenderable:
    async def getRenderingFor(self, props: Properties) -> Any:  # noqa: N802
        return f"async-{props['branch']}"


class ReturnsAwaitable:
    """A synchronous method returning an awaitable (as a Deferred-returning one would)."""

    def getRenderingFor(self, props: Properties) -> Awaitable[str]:  # noqa: N802
        async def later() -> str:
            return "later"

        return later()


class ReturnsRenderables:
    def getRenderingFor(self, props: Properties) -> Any:  # noqa: N802
        return [Property("branch"), {"k": Interpolate("%(prop:n)s")}]


class ReturnsItself:
    def getRenderingFor(self, props: Properties) -> Any:  # noqa: N802
        return self


async def test_render_leaves_plain_values_alone() -> None:
    props = props_for(branch="main")
    marker = object()
    assert await render(marker, props) is marker
    assert await render("s", props) == "s"
    assert await render(None, props) is None
    assert await render(Properties, props) is Properties  # a class is not a renderable


async def test_render_goes_through_lists_tuples_and_dict_keys_and_values() -> None:
    props = props_for(branch="main", n=2)
    value = {
        Property("branch"): [Property("n"), (Interpolate("%(prop:branch)s!"), 1)],
        "plain": {"nested": [Doubler("n")]},
    }
    assert await render(value, props) == {
        "main": [2, ("main!", 1)],
        "plain": {"nested": [4]},
    }


async def test_render_interpolate_inside_transform_inside_list_inside_dict() -> None:
    props = props_for(branch="main")
    value = {"cmd": [Transform(str.upper, Interpolate("build-%(prop:branch)s")), "--fast"]}
    assert await render(value, props) == {"cmd": ["BUILD-MAIN", "--fast"]}


async def test_custom_renderables_sync_async_and_awaitable() -> None:
    props = props_for(branch="main", n=21)
    assert await render(Doubler("n"), props) == 42
    assert await render(AsyncRenderable(), props) == "async-main"
    assert await render(ReturnsAwaitable(), props) == "later"


async def test_a_renderables_result_is_rendered_again() -> None:
    props = props_for(branch="main", n=5)
    assert await render(ReturnsRenderables(), props) == ["main", {"k": "5"}]
    itself = ReturnsItself()
    assert await render(itself, props) is itself


def test_is_renderable() -> None:
    assert is_renderable(Property("x"))
    assert is_renderable(Doubler("x"))
    assert not is_renderable(Doubler)
    assert not is_renderable([Property("x")])
    assert not is_renderable("x")


# --- Property ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        (Property("set"), "yes"),
        (Property("missing"), None),
        (Property("missing", default="d"), "d"),
        (Property("empty", default="d"), "d"),
        (Property("zero", default=7), 7),
        (Property("empty", default="d", defaultWhenFalse=False), ""),
        (Property("zero", default=7, defaultWhenFalse=False), 0),
        (Property("missing", default="d", defaultWhenFalse=False), "d"),
        (Property("missing", default=Property("set")), "yes"),
        (Property("nested"), "yes!"),
    ],
)
async def test_property(prop: Property, expected: object) -> None:
    props = props_for(set="yes", empty="", zero=0)
    props.setProperty("nested", Interpolate("%(prop:set)s!"), "Builder")
    assert await render(prop, props) == expected


def test_property_repr() -> None:
    assert repr(Property("x")) == "Property('x')"
    assert repr(Property("x", default=1, defaultWhenFalse=False)) == (
        "Property('x', default=1, defaultWhenFalse=False)"
    )


# --- operators and equality ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (Property("branch") == "main", True),
        (Property("branch") == "other", False),
        (Property("branch") != "main", False),
        (Property("n") < 3, True),
        (Property("n") <= 2, True),
        (Property("n") > 2, False),
        (Property("n") >= 2, True),
        (Property("n") + 1, 3),
        (Property("n") - 1, 1),
        (Property("n") * 3, 6),
        (Property("n") / 4, 0.5),
        (Property("n") // 4, 0),
        (Property("n") % 2, 0),
        (Property("branch").in_(["main", "next"]), True),
        (Property("branch").in_(Property("list")), False),
        (Interpolate("%(prop:branch)s") == "main", True),
        (FlattenList([Property("n"), [1]]) == [2, 1], True),
        ((Property("n") + 1) * 2, 6),
    ],
)
async def test_operators_render(expression: object, expected: object) -> None:
    props = props_for(branch="main", n=2, list=["a"])
    assert is_renderable(expression)
    assert await render(expression, props) == expected


def test_renderables_built_alike_are_equal_and_hash_alike() -> None:
    pairs = [
        (Property("a", default=1), Property("a", default=1)),
        (
            Interpolate(
                "%(prop:a)s",
            ),
            Interpolate("%(prop:a)s"),
        ),
        (Interpolate("%s", Property("a")), Interpolate("%s", Property("a"))),
        (FlattenList([Property("a")]), FlattenList([Property("a")])),
        (Transform(str.upper, Property("a")), Transform(str.upper, Property("a"))),
        (WithProperties("%(a)s"), WithProperties("%(a)s")),
        (Secret("s"), Secret("s")),
        (Property("a") == "x", Property("a") == "x"),
    ]
    for left, right in pairs:
        assert left == right, left
        assert bool(left != right) is False, left
        assert hash(left) == hash(right), left


def test_renderables_built_differently_are_not_equal() -> None:
    pairs = [
        (Property("a"), Property("b")),
        (Property("a"), Property("a", default=1)),
        (Interpolate("%(prop:a)s"), Interpolate("%(prop:b)s")),
        (Interpolate("%s", Property("a")), Interpolate("%s", Property("b"))),
        (Property("a"), Interpolate("a")),
        (Property("a"), "a"),
        (Property("a") == "x", Property("a") != "x"),
        (Secret("s"), Secret("t")),
    ]
    for left, right in pairs:
        assert bool(left == right) is False, (left, right)
        assert left != right, (left, right)


def test_configurations_holding_renderables_compare_by_content() -> None:
    first = {"command": [Interpolate("make %(prop:target)s"), Property("x", default=1)]}
    same = {"command": [Interpolate("make %(prop:target)s"), Property("x", default=1)]}
    other = {"command": [Interpolate("make %(prop:target)s"), Property("x", default=2)]}
    assert first == same
    assert first != other
    assert Property("x") in [Property("y"), Property("x")]
    assert Property("z") not in [Property("y"), Property("x")]
    assert len({Property("x"), Property("x"), Property("y")}) == 2


def test_an_ordering_of_renderables_has_no_truth_value() -> None:
    with pytest.raises(TypeError, match="only known once a build renders it"):
        bool(Property("n") < 3)


# --- renderer, Transform, FlattenList ------------------------------------------------------


@renderer
def branch_upper(props: Properties) -> Any:
    return props.getProperty("branch").upper()


@renderer
async def async_branch(props: Properties) -> Any:
    return f"a-{props.getProperty('branch')}"


@renderer
def gives_renderables(props: Properties) -> Any:
    return [Property("branch"), Interpolate("%(prop:n)s")]


@renderer
def joined(props: Properties, *parts: Any, sep: str = "-") -> Any:
    return sep.join(str(p) for p in parts)


async def test_renderer_sync_async_and_result_rendered() -> None:
    props = props_for(branch="main", n=4)
    assert await render(branch_upper, props) == "MAIN"
    assert await render(async_branch, props) == "a-main"
    assert await render(gives_renderables, props) == ["main", "4"]


async def test_renderer_with_args_renders_them_first() -> None:
    props = props_for(branch="main", n=4)
    with_args = joined.withArgs(Property("branch"), "x").withArgs(
        Property("n"), sep=Property("branch")
    )
    assert await render(with_args, props) == "mainmainxmain4"
    assert await render(joined, props) == ""
    assert with_args == joined.withArgs(
        Property("branch"), "x", Property("n"), sep=Property("branch")
    )
    assert with_args != joined
    assert renderer(branch_upper.fn) == branch_upper


async def test_transform_renders_function_args_and_kwargs() -> None:
    props = props_for(n=3, sep="+", fn_name="upper")

    def pick(props: Properties) -> Any:
        return str.upper

    result = await render(
        Transform(lambda a, b, sep: f"{a}{sep}{b}", Property("n"), 4, sep=Property("sep")), props
    )
    assert result == "3+4"
    assert await render(Transform(renderer(pick), Interpolate("x%(prop:n)s")), props) == "X3"


async def test_transform_with_an_async_function() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert await render(Transform(add, Property("n"), 1), props_for(n=1)) == 2


def test_transform_needs_something_to_call() -> None:
    with pytest.raises(ConfigError, match="function given to Transform neither callable"):
        Transform("not callable", 1)


async def test_flatten_list() -> None:
    props = props_for(more=["c", ["d"]], n=1)
    nested = FlattenList(["a", ["b", Property("more")], ("e", ("f",)), Property("n")])
    assert await render(nested, props) == ["a", "b", "c", "d", "e", "f", 1]
    only_lists = FlattenList(["a", ["b", ("c", "d")]], types=(list,))
    assert await render(only_lists, props) == ["a", "b", ("c", "d")]
    combined = FlattenList(["a", ["b"]]) + FlattenList([["c"]]) + ["d"]
    assert isinstance(combined, FlattenList)
    assert await render(combined, props) == ["a", "b", "c", "d"]


# --- Secret ---------------------------------------------------------------------------------


async def test_secret_renders_from_the_build_and_is_redacted() -> None:
    context = BuildContext(secrets={"token": "s3cr3t"})
    props = props_for(context)
    assert await render(Secret("token"), props) == "s3cr3t"
    assert context.secrets_asked == ["token"]
    assert props.redact("curl -H s3cr3t") == "curl -H <token>"
    assert props.cleanupTextFromSecrets("s3cr3t") == "<token>"
    assert repr(Secret("token")) == "Secret('token')"


async def test_a_missing_secret_is_a_key_error() -> None:
    props = props_for(BuildContext(secrets={}))
    with pytest.raises(SecretNotFound, match="secret 'nope' is not found in any provider"):
        await render(Secret("nope"), props)
    with pytest.raises(KeyError):
        await render([Secret("nope")], props)


async def test_secret_without_a_build_says_so() -> None:
    with pytest.raises(RenderError, match=r"Secret\('token'\) can only be rendered for a build"):
        await render(Secret("token"), Properties())


# --- the vocabulary ------------------------------------------------------------------------

NAMES = [
    "FlattenList",
    "Interpolate",
    "Property",
    "Secret",
    "Transform",
    "WithProperties",
    "renderer",
]


def test_util_and_buildbot_process_properties_give_the_real_classes() -> None:
    with buildbot_imports():
        module = importlib.import_module("buildbot.process.properties")
    for name in NAMES:
        real = getattr(model, name)
        assert getattr(util, name) is real, name
        assert getattr(module, name) is real, name
        assert not is_placeholder(real), name
        assert name in util.__all__
    assert module.Properties is Properties


def test_master_cfg_errors_are_collected_with_the_users_line() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        util.Interpolate("%(nope:x)s")
        util.Transform(42)
    assert [e.message for e in errors.errors] == [
        "Interpolate('%(nope:x)s'): %(nope:x)s: unknown selector 'nope'; "
        "use one of prop, src, kw, worker, secret",
        "function given to Transform neither callable nor renderable",
    ]
    assert all(e.location is not None and e.location.file == __file__ for e in errors.errors)
