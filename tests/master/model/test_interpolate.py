"""Interpolate and WithProperties: selectors, modifiers, positional arguments, format errors."""

from __future__ import annotations

from typing import Any

import pytest

from buildyard.common.errors import ConfigError, ConfigErrors, collecting_config_errors
from buildyard.master.model.properties import (
    Interpolate,
    Properties,
    Property,
    RenderError,
    SecretNotFound,
    WithProperties,
    render,
    renderer,
)
from tests.master.model._context import BuildContext, props_for

CONTEXT = BuildContext(
    sourcestamps={
        "": {"repository": "https://git/main", "branch": "trunk", "revision": "abc123"},
        "lib": {"repository": "https://git/lib", "branch": "", "revision": None},
    },
    worker_info={"os": "linux", "admin": "", "cores": 8},
    secrets={"token": "s3cr3t", "empty": ""},
)


def build_props() -> Properties:
    return props_for(CONTEXT, branch="main", n=3, empty="", zero=0, none=None, flag=True, other="o")


async def interpolate(fmt: str, *args: Any, **kwargs: Any) -> Any:
    return await render(Interpolate(fmt, *args, **kwargs), build_props())


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        # prop: plain, unset, None
        ("%(prop:branch)s", "main"),
        ("%(prop:missing)s", ""),
        ("%(prop:none)s", ""),
        ("%(prop:n)s-%(prop:n)s", "3-3"),
        # :- value if set (even if false), else the text
        ("%(prop:branch:-dflt)s", "main"),
        ("%(prop:empty:-dflt)s", ""),
        ("%(prop:missing:-dflt)s", "dflt"),
        ("%(prop:missing:-)s", ""),
        ("%(prop:missing:-a:b)s", "a:b"),
        # :~ value if true, else the text
        ("%(prop:branch:~dflt)s", "main"),
        ("%(prop:empty:~dflt)s", "dflt"),
        ("%(prop:zero:~dflt)s", "dflt"),
        ("%(prop:missing:~dflt)s", "dflt"),
        # :+ the text if set, else nothing
        ("%(prop:branch:+yes)s", "yes"),
        ("%(prop:empty:+yes)s", "yes"),
        ("%(prop:missing:+yes)s", ""),
        # :? by being set
        ("%(prop:branch:?|yes|no)s", "yes"),
        ("%(prop:empty:?|yes|no)s", "yes"),
        ("%(prop:missing:?|yes|no)s", "no"),
        ("%(prop:missing:?:yes:no)s", "no"),
        ("%(prop:branch:?||no)s", ""),
        # :#? by being true
        ("%(prop:flag:#?|yes|no)s", "yes"),
        ("%(prop:empty:#?|yes|no)s", "no"),
        ("%(prop:missing:#?|yes|no)s", "no"),
        ("%(prop:branch:#?||no)s", ""),
        # replacements are interpolated in turn, delimiters inside %(...) do not split
        ("%(prop:missing:-%(prop:branch)s)s", "main"),
        ("%(prop:flag:?|%(prop:missing:-a|b)s|no)s", "a|b"),
        ("%(prop:missing:?|yes|%(prop:other)s)s", "o"),
        # src: of a codebase; the empty codebase is src::attr
        ("%(src::branch)s@%(src::revision)s", "trunk@abc123"),
        ("%(src:lib:repository)s", "https://git/lib"),
        ("%(src:lib:revision)s", ""),
        ("%(src:lib:branch:~default)s", "default"),
        ("%(src:lib:branch:-default)s", ""),
        ("%(src:nocodebase:branch:-none here)s", "none here"),
        ("%(src::missing_attr:+set)s", ""),
        # worker:
        ("%(worker:os)s/%(worker:cores)s", "linux/8"),
        ("%(worker:admin:~nobody)s", "nobody"),
        ("%(worker:missing:-?)s", "?"),
        ("%(worker:os:#?|known|unknown)s", "known"),
        # secret:
        ("token=%(secret:token)s", "token=s3cr3t"),
        ("%(secret:empty:~none)s", "none"),
        ("%(secret:token:+hidden)s", "hidden"),
        # literal percent, no substitutions
        ("50%% of %(prop:n)s", "50% of 3"),
        ("plain text", "plain text"),
        ("100%%", "100%"),
        # Python's conversions and flags
        ("%(prop:n)03d|%(prop:branch)-6s|%(prop:branch)r", "003|main  |'main'"),
    ],
)
async def test_interpolate(fmt: str, expected: str) -> None:
    assert await interpolate(fmt) == expected


async def test_kw_selector_renders_keyword_values() -> None:
    assert await interpolate("%(kw:a)s-%(kw:b)s", a="x", b=Property("branch")) == "x-main"
    assert await interpolate("%(kw:missing:-d)s", a=1) == "d"
    assert await interpolate("%(kw:a:+set)s|%(kw:z:+set)s", a=0) == "set|"
    assert await interpolate("%(kw:a:~d)s|%(prop:missing:-%(kw:a)s)s", a="") == "d|"
    assert await interpolate("%(kw:a:#?|y|n)s", a=Property("flag")) == "y"


async def test_positional_arguments() -> None:
    assert await interpolate("%s-%s", Property("branch"), "b") == "main-b"
    assert await interpolate("%s:%d%%", Interpolate("%(prop:branch)s!"), Property("n")) == (
        "main!:3%"
    )
    assert await interpolate("%*d", 4, Property("n")) == "   3"


async def test_secret_is_looked_up_only_when_its_value_is_needed() -> None:
    context = BuildContext(secrets={"token": "s3cr3t"})
    props = props_for(context)
    assert await render(Interpolate("%(secret:token:+x)s"), props) == "x"
    assert context.secrets_asked == []
    assert await render(Interpolate("%(secret:token)s"), props) == "s3cr3t"
    assert context.secrets_asked == ["token"]
    assert props.redact("-p s3cr3t") == "-p <token>"


async def test_missing_secret_in_interpolate_is_an_error_even_with_a_default() -> None:
    with pytest.raises(SecretNotFound, match="'nope'"):
        await interpolate("%(secret:nope:-fallback)s")


@pytest.mark.parametrize("fmt", ["%(src::branch)s", "%(worker:os)s", "%(secret:token)s"])
async def test_build_selectors_without_a_build(fmt: str) -> None:
    with pytest.raises(RenderError, match="can only be rendered for a build"):
        await render(Interpolate(fmt), Properties())


async def test_interpolate_inside_renderer_and_renderer_inside_interpolate() -> None:
    @renderer
    def tag(props: Properties) -> Any:
        return Interpolate("v%(prop:n)s")

    assert await render(Interpolate("%s-%s", tag, Property("branch")), build_props()) == "v3-main"


def test_repr() -> None:
    assert repr(Interpolate("%(prop:a)s")) == "Interpolate('%(prop:a)s')"
    assert repr(Interpolate("%s", Property("a"))) == "Interpolate('%s', Property('a'))"
    assert repr(Interpolate("%(kw:x)s", x=1)) == "Interpolate('%(kw:x)s', x=1)"


@pytest.mark.parametrize(
    ("fmt", "args", "message"),
    [
        ("%(prop:x", (), "the %( at index 0 is never closed"),
        ("%(prop:x:-(oops)s", (), "the %( at index 0 is never closed"),
        ("50%", (), "the % at index 2 ends the string (write %% for a literal %)"),
        ("%q", (), "unsupported conversion '%q' at index 0"),
        ("%(prop:x)y", (), "unsupported conversion '%(prop:x)y' at index 0"),
        ("%s", (), "has a positional conversion such as %s but no positional arguments"),
        ("%(prop:a)s %s", (), "has a positional conversion such as %s"),
        ("%s %(prop:a)s", ("x",), "uses %(prop:a)s with positional arguments"),
        ("%s %s", ("x",), "takes 2 positional values but was given 1"),
        ("%s", ("x", "y"), "takes 1 positional values but was given 2"),
        ("%(branch)s", (), "%(branch)s: no selector; write %(prop:branch)s"),
        ("%(props:x)s", (), "unknown selector 'props'; use one of prop, src, kw, worker, secret"),
        ("%(prop:a b)s", (), "'a b' is not a valid name"),
        ("%(kw:a/b)s", (), "'a/b' is not a valid name"),
        ("%(src:branch)s", (), "src needs a codebase and an attribute"),
        ("%(src:a b:branch)s", (), "'a b' is not a valid name"),
        ("%(src:cb:br anch)s", (), "'br anch' is not a valid name"),
        ("%(prop:x:)s", (), "nothing follows the last ':'"),
        ("%(prop:x:*oops)s", (), "unknown modifier '*'"),
        ("%(prop:x:?|yes)s", (), "? needs a delimiter (not '(') and two alternatives"),
        ("%(prop:x:?)s", (), "? needs a delimiter"),
        ("%(prop:x:#?(a|b))s", (), "#? needs a delimiter (not '(')"),
        ("%(worker:(x:?|a)|b)s", (), "? needs a delimiter"),
        ("%(prop:x:-%(nope)s)s", (), "%(nope)s: no selector"),
    ],
)
def test_bad_format_strings_are_configuration_errors(
    fmt: str, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Interpolate(fmt, *args)
    assert message in info.value.message
    assert info.value.location is not None and info.value.location.file == __file__


def test_interpolate_takes_positional_or_keyword_arguments_not_both() -> None:
    with pytest.raises(ConfigError, match="either positional or keyword substitutions"):
        Interpolate("%s", "a", b="c")


def test_not_a_string() -> None:
    with pytest.raises(ConfigError, match=r"Interpolate needs a format string, not \['x'\]"):
        Interpolate(["x"])  # type: ignore[arg-type]


def test_every_error_of_a_load_is_collected() -> None:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        Interpolate("%(a)s %(prop:b:x)s %(src:c)s")
    assert [e.message.partition(": ")[2] for e in errors.errors] == [
        "%(a)s: no selector; write %(prop:a)s, or use src:, kw:, worker:, secret:",
        "%(prop:b:x)s: unknown modifier 'x'; use :-, :~, :+, :?|yes|no or :#?|yes|no",
        "%(src:c)s: src needs a codebase and an attribute: %(src:<codebase>:<attr>)s",
    ]


# --- WithProperties ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("%(branch)s-%(n)d", "main-3"),
        ("%(none)s|%(empty)s", "|"),
        ("%(missing:-dflt)s|%(empty:-dflt)s", "dflt|"),
        ("%(missing:~dflt)s|%(empty:~dflt)s|%(branch:~dflt)s", "dflt|dflt|main"),
        ("%(branch:+set)s|%(missing:+set)s", "set|"),
        ("%(missing:-a:-b)s", "b"),
        ("100%%", "100%"),
    ],
)
async def test_with_properties_keys(fmt: str, expected: str) -> None:
    assert await render(WithProperties(fmt), build_props()) == expected


async def test_with_properties_positional_names() -> None:
    props = build_props()
    assert await render(WithProperties("%s/%s", "branch", "n"), props) == "main/3"
    assert await render(WithProperties("%s", "missing:-x"), props) == "x"


async def test_with_properties_functions_get_the_properties() -> None:
    seen: list[Properties] = []

    def upper_branch(props: Properties) -> str:
        seen.append(props)
        return str(props["branch"]).upper()

    props = build_props()
    rendered = await render(
        WithProperties("%(up)s-%(branch)s-%(none_fn:-x)s", up=upper_branch, none_fn=lambda p: None),
        props,
    )
    assert rendered == "MAIN-main-"
    assert seen == [props]


async def test_with_properties_unset_property_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="missing"):
        await render(WithProperties("%(missing)s"), build_props())


def test_with_properties_errors() -> None:
    with pytest.raises(ConfigError, match='Value for lambda substitution "x" must be callable'):
        WithProperties("%(x)s", x="not callable")
    with pytest.raises(ConfigError, match="either positional or keyword substitutions"):
        WithProperties("%s", "a", b=lambda p: 1)
    with pytest.raises(ConfigError, match="takes 2 positional values but was given 1"):
        WithProperties("%s %s", "a")
    with pytest.raises(ConfigError, match="the %\\( at index 0 is never closed"):
        WithProperties("%(branch")
