"""ForceScheduler: forcing builds, field validation (every error at once, by field), the
field specs the web UI draws, and the checks of its arguments."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from buildyard.common.errors import ConfigError
from buildyard.master.data.updates import Updates
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.forced import ForceScheduler, ForceSchedulerService
from buildyard.master.schedulers.forceparams import (
    AnyPropertyParameter,
    BooleanParameter,
    ChoiceStringParameter,
    CodebaseParameter,
    CollectedValidationError,
    FixedParameter,
    IntParameter,
    NestedParameter,
    PatchParameter,
    StringParameter,
    TextParameter,
    UserNameParameter,
    ValidationError,
)
from tests.master.schedulers.conftest import Buildsets, running

OWNER = "bob <bob@example.com>"
FORM = "Force Build Form"


async def test_force_with_the_default_fields(ctx: SchedulerContext, buildsets: Buildsets) -> None:
    async with running(ForceScheduler("force", ["b1", "b2"]), ctx) as sched:
        bsid, brids = await sched.force(OWNER)
        seen = await buildsets.next()
    assert seen.bsid == bsid and len(brids) == 2
    assert seen.reason == f"A build was forced by '{OWNER}': force build"
    assert seen.properties == {
        "reason": ("force build", FORM),
        "owner": (OWNER, FORM),
        "scheduler": ("force", "Scheduler"),
    }
    # the form's codebase: empty strings, as in Buildbot
    assert seen.stamps == [("", "", "", "", "")]
    assert seen.builders == ["b1", "b2"] and seen.priority == 0


async def test_force_a_subset_of_the_builders(
    ctx: SchedulerContext, buildsets: Buildsets, updates: Updates
) -> None:
    async with running(ForceScheduler("force", ["b1", "b2"]), ctx) as sched:
        await sched.force(OWNER, builderNames=["b2", "b3"])
        assert (await buildsets.next()).builders == ["b2"]
        b1 = await updates.find_builder_id("b1")
        await sched.force(OWNER, builderid=str(b1))
        assert (await buildsets.next()).builders == ["b1"]
        with pytest.raises(ValidationError, match="builderNames not specified or not supported"):
            await sched.force(OWNER, builderNames=["b3"])


def full() -> ForceScheduler:
    return ForceScheduler(
        "full",
        ["b1"],
        codebases=[
            "",
            CodebaseParameter(
                "lib",
                branch=ChoiceStringParameter(
                    name="branch", choices=["main", "dev"], default="main"
                ),
                revision=None,
                project="p",
                patch=PatchParameter(),
            ),
        ],
        properties=[
            StringParameter("s", regex=r"^a", required=True),
            TextParameter("t"),
            IntParameter("i"),
            BooleanParameter("b", default=True),
            NestedParameter(
                "n", fields=[StringParameter("x"), FixedParameter("y", default="z")], layout="tabs"
            ),
            AnyPropertyParameter("any"),
        ],
        reasonString="%(owner)s wants %(reason)s",
    )


async def test_force_collects_properties_and_stamps(
    ctx: SchedulerContext, buildsets: Buildsets
) -> None:
    async with running(full(), ctx) as sched:
        await sched.force(
            "anonymous",
            username="Ann <ann@example.com>",
            reason="because",
            priority="3",
            s="abc",
            i="12",
            b=False,
            n_x="xx",
            lib_branch="dev",
            lib_patch_body="diff --git",
            lib_patch_level="2",
            any_name="extra",
            any_value="v1",
            ignored="not a field",
        )
        seen = await buildsets.next()
    assert seen.reason == "Ann <ann@example.com> wants because"
    assert seen.priority == 3
    assert seen.properties == {
        "owner": ("Ann <ann@example.com>", FORM),
        "reason": ("because", FORM),
        "s": ("abc", FORM),
        "t": ("", FORM),
        "i": (12, FORM),
        "b": (False, FORM),
        "n": ({"x": "xx", "y": "z"}, FORM),
        "extra": ("v1", FORM),
        "scheduler": ("full", "Scheduler"),
    }
    assert seen.stamps == [("", "", "", "", ""), ("lib", "dev", "", "", "p")]


async def test_every_invalid_field_is_reported_by_its_full_name(ctx: SchedulerContext) -> None:
    async with running(full(), ctx) as sched:
        with pytest.raises(CollectedValidationError) as info:
            await sched.force(
                "anonymous",
                username="bob",
                priority="high",
                s="xyz",
                i="12.5",
                lib_branch="nope",
                any_name="bad name",
                any_value="v",
            )
    assert info.value.errors == {
        "username": "username: please fill in email address in the form 'User <email@email.com>'",
        "priority": "priority: 'high' is not an integer",
        "s": "s:'xyz' does not match pattern '^a'",
        "i": "i: '12.5' is not an integer",
        "lib_branch": "'nope' does not belong to list of available choices '['main', 'dev']'",
        "any": "bad property name='bad name', value='v'",
    }
    assert isinstance(info.value, ValidationError)


async def test_a_required_field_must_be_filled(ctx: SchedulerContext) -> None:
    async with running(full(), ctx) as sched:
        with pytest.raises(CollectedValidationError) as info:
            await sched.force(OWNER, s="   ")
    assert info.value.errors == {"s": "'s' needs to be specified"}


async def test_force_works_on_a_master_that_does_not_run_the_scheduler(
    ctx: SchedulerContext, updates: Updates, buildsets: Buildsets
) -> None:
    other = await updates.find_master_id("master-2")
    schedulerid = await updates.find_scheduler_id("force")
    assert await updates.claim_scheduler(schedulerid, masterid=other)
    service = ForceScheduler("force", ["b1"]).make_service("force", ctx)
    await service.start()
    try:
        assert not service.active
        await service.force(OWNER)
        assert (await buildsets.next()).builders == ["b1"]
    finally:
        await service.stop()


EXPECTED_DATA: dict[str, Any] = {
    # Buildbot 4.3's forceScheduler2Data for the scheduler of test_field_specs_match_buildbot
    "all_fields": [
        {
            "name": "",
            "fullName": None,
            "label": "",
            "tablabel": "",
            "type": "nested",
            "default": "",
            "required": False,
            "multiple": False,
            "regex": None,
            "hide": False,
            "maxsize": None,
            "autopopulate": None,
            "tooltip": "",
            "layout": "vertical",
            "columns": 1,
            "fields": [
                {
                    "name": "username",
                    "fullName": "username",
                    "label": "Your name:",
                    "tablabel": "Your name:",
                    "type": "username",
                    "default": "",
                    "required": False,
                    "multiple": False,
                    "regex": None,
                    "hide": False,
                    "maxsize": None,
                    "autopopulate": None,
                    "tooltip": "",
                    "size": 30,
                    "need_email": True,
                },
                {
                    "name": "reason",
                    "fullName": "reason",
                    "label": "reason",
                    "tablabel": "reason",
                    "type": "text",
                    "default": "force build",
                    "required": False,
                    "multiple": False,
                    "regex": None,
                    "hide": False,
                    "maxsize": None,
                    "autopopulate": None,
                    "tooltip": "",
                    "size": 20,
                },
                {
                    "name": "priority",
                    "fullName": "priority",
                    "label": "priority",
                    "tablabel": "priority",
                    "type": "int",
                    "default": 0,
                    "required": False,
                    "multiple": False,
                    "regex": None,
                    "hide": False,
                    "maxsize": None,
                    "autopopulate": None,
                    "tooltip": "",
                    "size": 10,
                },
            ],
        },
        {
            "name": "",
            "fullName": None,
            "label": "",
            "tablabel": "",
            "type": "nested",
            "default": "",
            "required": False,
            "multiple": False,
            "regex": None,
            "hide": False,
            "maxsize": None,
            "autopopulate": None,
            "tooltip": "",
            "layout": "vertical",
            "columns": 1,
            "fields": [
                {
                    "name": "branch",
                    "fullName": "branch",
                    "label": "branch",
                    "tablabel": "branch",
                    "type": "list",
                    "default": "main",
                    "required": False,
                    "multiple": False,
                    "regex": None,
                    "hide": False,
                    "maxsize": None,
                    "autopopulate": None,
                    "tooltip": "",
                    "choices": ["main", "dev"],
                    "strict": True,
                }
            ],
        },
        {
            "name": "s",
            "fullName": "s",
            "label": "s",
            "tablabel": "s",
            "type": "text",
            "default": "",
            "required": True,
            "multiple": False,
            "regex": None,
            "hide": False,
            "maxsize": None,
            "autopopulate": None,
            "tooltip": "tip",
            "size": 10,
        },
    ],
    "name": "force",
    "button_name": "Go",
    "label": "force",
    "builder_names": ["b1"],
    "enabled": True,
}


async def test_field_specs_match_buildbot(ctx: SchedulerContext) -> None:
    config = ForceScheduler(
        name="force",
        builderNames=["b1"],
        codebases=[
            CodebaseParameter(
                "",
                branch=ChoiceStringParameter(
                    name="branch", choices=["main", "dev"], default="main"
                ),
                revision=None,
                repository=None,
                project=None,
            )
        ],
        properties=[StringParameter("s", regex="^a", required=True, tooltip="tip")],
        buttonName="Go",
    )
    service = config.make_service("force", ctx)
    assert isinstance(service, ForceSchedulerService)
    assert service.data() == EXPECTED_DATA
    assert config.field_specs() == EXPECTED_DATA["all_fields"]


def test_parameter_specs_carry_their_type_extras() -> None:
    text = TextParameter("t").getSpec()
    assert (text["type"], text["cols"], text["rows"], text["size"]) == ("textarea", 80, 20, 10)
    user = UserNameParameter(need_email=False).getSpec()
    assert (user["type"], user["need_email"]) == ("username", False)
    nested = NestedParameter("n", fields=[StringParameter(str(i)) for i in range(4)]).getSpec()
    assert nested["columns"] == 2  # four visible fields
    assert [f["fullName"] for f in nested["fields"]] == ["n_0", "n_1", "n_2", "n_3"]
    fixed = FixedParameter("f", default="v").getSpec()
    assert (fixed["type"], fixed["hide"], fixed["default"]) == ("fixed", True, "v")


def test_equal_arguments_make_equal_schedulers() -> None:
    assert ForceScheduler("f", ["b"]) == ForceScheduler("f", ["b"])
    assert ForceScheduler("f", ["b"], properties=[IntParameter("i")]) != ForceScheduler(
        "f", ["b"], properties=[IntParameter("j")]
    )


def bad(value: object) -> Any:
    """A value of the wrong type, as a master.cfg may pass."""
    return value


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ForceScheduler("not an id", ["b"]), "ForceScheduler name must be an identifier"),
        (lambda: ForceScheduler("", ["b"]), "name must be a non-empty string"),
        (lambda: ForceScheduler("f", "b"), "builderNames must be a list of builder names"),
        (lambda: ForceScheduler("f", ["b"], codebases=[]), "'codebases' cannot be empty"),
        (lambda: ForceScheduler("f", ["b"], codebases="x"), "'codebases' should be a list"),
        (lambda: ForceScheduler("f", ["b"], codebases=bad([1])), "'codebases' must be a list of"),
        (
            lambda: ForceScheduler("f", ["b"], properties=bad(["p"])),
            "properties must be a list of BaseParameters",
        ),
        (lambda: ForceScheduler("f", ["b"], username="u"), "username must be a StringParameter"),
        (lambda: ForceScheduler("f", ["b"], priority=5), "priority must be an IntParameter"),
        (
            lambda: ForceScheduler("f", ["b"], reasonString="%(who)s"),
            "can only use %(owner)s and %(reason)s",
        ),
        (lambda: StringParameter("owner"), "owner cannot be used as a parameter name"),
        (lambda: StringParameter("s", value="x"), "use default='x' instead of value=..."),
        (lambda: StringParameter("s", regex="("), "regex '(' is not valid"),
        (
            lambda: NestedParameter("n", fields=[], columns=5),
            "UI only support up to 4 columns in nested parameters",
        ),
        (
            lambda: CodebaseParameter("c", patch=StringParameter("p")),
            "patch parameter of a codebase must be named 'patch'",
        ),
    ],
)
def test_bad_arguments_are_config_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert message in info.value.message


async def test_a_priority_no_request_can_hold_is_refused(ctx: SchedulerContext) -> None:
    async with running(full(), ctx) as sched:
        with pytest.raises(CollectedValidationError) as info:
            await sched.force("anonymous", username="Bob <b@x.org>", priority=str(2**31))
    assert info.value.errors["priority"] == f"priority {2**31} is out of range"


# -- master.cfg subclasses keep Buildbot's extension points --------------------------------------


class JsonParameter(TextParameter):
    """A field whose text is JSON: the conversion hook."""

    def parse_from_arg(self, s: Any) -> Any:
        try:
            return json.loads(s)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{self.name}: not JSON ({exc.msg})") from None


class ShoutParameter(StringParameter):
    """The whole-value hook: gets the request as lists by fullName."""

    def getFromKwargs(self, kwargs: Any) -> Any:  # noqa: N802 - Buildbot's hook
        return str(kwargs.get(self.fullName, ["quiet"])[0]).upper()


class PairParameter(StringParameter):
    """The everything hook: sets two properties from one field."""

    def updateFromKwargs(  # noqa: N802 - Buildbot's hook
        self, properties: dict[str, Any], kwargs: Any, collector: Any = None, **unused: Any
    ) -> None:
        left, _, right = str(kwargs.get(self.fullName, [":"])[0]).partition(":")
        if not right:
            raise ValidationError(f"{self.name}: expected left:right")
        properties[f"{self.name}_left"] = left
        properties[f"{self.name}_right"] = right


class ReleaseCodebase(CodebaseParameter):
    """The source stamp hook, asynchronous: the branch names a release, the stamp is derived."""

    async def createSourcestamp(  # noqa: N802 - Buildbot's hook
        self, properties: dict[str, Any], kwargs: Any
    ) -> Any:
        chosen = kwargs[self.fullName]
        if chosen["branch"] == "none":
            return None  # no stamp for this codebase
        return {**chosen, "branch": f"release/{chosen['branch']}", "revision": "v1"}


class ColoredParameter(StringParameter):
    """A custom field that shows one more attribute to the UI."""

    spec_attributes = ("color",)
    color = "red"


def extended() -> ForceScheduler:
    return ForceScheduler(
        "ext",
        ["b1"],
        codebases=[ReleaseCodebase("app", revision=None, repository="r", project="p")],
        properties=[
            JsonParameter("cfg"),
            ShoutParameter("word"),
            PairParameter("pair"),
            ColoredParameter("c"),
            StringParameter("many", multiple=True, default=["a", "b"]),
            StringParameter("short", maxsize=3),
            IntParameter("count"),
            BooleanParameter("yes", default=True),
            NestedParameter("grp", fields=[IntParameter("k", default=1)]),
        ],
    )


async def test_overridden_extension_points_are_used(
    ctx: SchedulerContext, buildsets: Buildsets
) -> None:
    async with running(extended(), ctx) as sched:
        await sched.force(
            OWNER,
            cfg='{"jobs": [1, 2]}',
            word="hello",
            pair=["x:y"],  # a form posts lists; a JSON-RPC caller single values
            many=["x", "y", " "],
            count=3.0,
            app_branch="2.1",
        )
        seen = await buildsets.next()
    props = {name: value for name, (value, _source) in seen.properties.items()}
    assert props["cfg"] == {"jobs": [1, 2]}
    assert props["word"] == "HELLO"
    assert (props["pair_left"], props["pair_right"]) == ("x", "y")
    assert "pair" not in props
    assert props["many"] == ["x", "y"]  # the blank one is not a value
    assert (props["count"], props["yes"], props["grp"]) == (3, True, {"k": 1})
    assert seen.stamps == [("app", "release/2.1", "v1", "r", "p")]


async def test_refusals_of_hooks_and_groups_are_keyed_by_field(ctx: SchedulerContext) -> None:
    async with running(extended(), ctx) as sched:
        with pytest.raises(CollectedValidationError) as info:
            await sched.force(
                OWNER,
                cfg="{nope",
                pair="only-left",
                short="abcd",
                count=2.5,
                grp_k="many",
                app_branch="none",
            )
    assert info.value.errors == {
        "cfg": "cfg: not JSON (Expecting property name enclosed in double quotes)",
        "pair": "pair: expected left:right",
        "short": "short: is too large 4 > 3",
        "count": "count: 2.5 is not an integer",
        "grp_k": "k: 'many' is not an integer",
    }


async def test_a_codebase_hook_may_decline_a_stamp(
    ctx: SchedulerContext, buildsets: Buildsets
) -> None:
    async with running(extended(), ctx) as sched:
        await sched.force(OWNER, cfg="{}", pair="a:b", app_branch="none")
        seen = await buildsets.next()
    # no stamp from the form: the scheduler's codebase defaults stand in
    assert seen.stamps == [("app", "", "", "", "")]


def test_a_custom_field_shows_its_spec_attributes() -> None:
    spec = ColoredParameter("c").getSpec()
    assert (spec["type"], spec["size"], spec["color"]) == ("text", 10, "red")
    assert "color" not in StringParameter("s").getSpec()


async def test_the_property_rules_come_from_the_service(
    ctx: SchedulerContext, buildsets: Buildsets
) -> None:
    async with running(full(), ctx) as sched:
        assert isinstance(sched, ForceSchedulerService)
        sched.validation = {
            "property_name": re.compile(r"^[a-z ]+$"),
            "property_value": re.compile(r"^.*$"),
        }
        await sched.force(OWNER, s="a", any_name="two words", any_value="any value!")
        seen = await buildsets.next()
    assert seen.properties["two words"] == ("any value!", FORM)


def test_a_codebase_string_fixes_its_field() -> None:
    spec = CodebaseParameter("c", branch="", revision=None, project="p").getSpec()
    fields = {f["name"]: (f["type"], f["default"], f["fullName"]) for f in spec["fields"]}
    assert fields == {
        "branch": ("fixed", "", "c_branch"),  # an empty string is a value too
        "project": ("fixed", "p", "c_project"),
        "repository": ("text", "", "c_repository"),
    }
    assert (spec["label"], spec["columns"]) == ("Codebase: c", 1)
