"""What the commands decide on their own, without I/O: every command asks
``collab.services.authorize`` before it touches anything, and every error a command
can raise has its HTTP status and body in ``collab.http.errors``."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any, get_args

import pytest
from pydantic import BaseModel, Field, ValidationError

from collab.access.errors import Forbidden
from collab.access.principal import Principal
from collab.http import errors as http_errors
from collab.services import (
    audit,
    authorize,
    errors,
    history,
    interchange,
    lookup,
    members,
    projects,
    provenance,
)
from events.errors import InvalidEvent, QueryFailed, StoreTimeout, StoreUnavailable
from music import projectfile

COMMAND_MODULES = (projects, history, provenance, audit, members, interchange)
PROJECT = "5f0c6a3e-6a43-4d55-9f39-2f3b1d1a7c11"
ALICE = Principal(actor="alice")
TOOL = {"agent_id": "analyser", "version": "1"}

#: each command, called with a principal, what it is asked to do and no ports at all
#: (None): a command that touched a port before authorizing would fail on None
CALLS: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
    "projects.create": lambda: projects.create(ALICE, projects.NewProject(name="song"), store=None),
    "projects.edit": lambda: projects.edit(ALICE, PROJECT, [], rooms=None, store=None),
    "projects.fork": lambda: projects.fork(ALICE, PROJECT, projects.ForkRequest(), store=None),
    "interchange.import_midi": lambda: interchange.import_midi(
        ALICE, interchange.MidiImport(file="TVRoZA=="), PROJECT, rooms=None, store=None
    ),
    "interchange.import_file": lambda: interchange.import_file(
        ALICE,
        projectfile.ProjectFile.model_validate(
            {
                "format": "collab-project/1",
                "project": {"id": "p", "name": "P", "version": 1},
                "document": {},
            }
        ),
        store=None,
    ),
    "history.snapshot": lambda: history.snapshot(
        ALICE, PROJECT, history.NewSnapshot(name="v1"), store=None
    ),
    "history.revert": lambda: history.revert(
        ALICE, PROJECT, history.RevertRequest(actor="bob"), store=None, rooms=None
    ),
    "history.rollback": lambda: history.rollback(
        ALICE, PROJECT, history.RollbackRequest(version=1), store=None, rooms=None, models=None
    ),
    "provenance.record_analysis": lambda: provenance.record_analysis(
        ALICE,
        PROJECT,
        provenance.NewAnalysis.model_validate({"type": "tempo", "results": {}, "tool": TOOL}),
        store=None,
        models=None,
    ),
    "provenance.record_provenance": lambda: provenance.record_provenance(
        ALICE,
        provenance.NewProvenance.model_validate(
            {
                "project_id": PROJECT,
                "entity": {"type": "render", "id": "mix.wav", "content_hash": "0" * 64},
                "activity": "render",
                "tool": TOOL,
            }
        ),
        store=None,
    ),
    "audit.verify": lambda: audit.verify(ALICE, store=None),
    "audit.export": lambda: audit.export(ALICE, PROJECT, store=None),
    "members.roster": lambda: members.roster(ALICE, PROJECT, store=None),
    "members.grant": lambda: members.grant(
        ALICE, PROJECT, members.NewMember(member="bob", role="viewer"), store=None, notify=None
    ),
    "members.revoke": lambda: members.revoke(ALICE, PROJECT, "bob", store=None, notify=None),
}
ACTIONS = {
    "projects.create": ("project.create", None),
    "projects.edit": ("project.edit", PROJECT),
    "projects.fork": ("project.create", None),
    "interchange.import_midi": ("project.edit", PROJECT),
    "interchange.import_file": ("project.create", None),
    "history.snapshot": ("snapshot.create", PROJECT),
    "history.rollback": ("project.rollback", PROJECT),
    "history.revert": ("project.rollback", PROJECT),
    "provenance.record_analysis": ("analysis.record", PROJECT),
    "provenance.record_provenance": ("provenance.record", PROJECT),
    "audit.verify": ("audit.verify", None),
    "audit.export": ("audit.export", PROJECT),
    "members.roster": ("members.read", PROJECT),
    "members.grant": ("members.manage", PROJECT),
    "members.revoke": ("members.manage", PROJECT),
}
#: actions asked by routes that read a read model, not by a command
READ_ACTIONS = {"project.read", "audit.read"}


def _commands(module: ModuleType) -> list[str]:
    """The public coroutine functions a command module defines: its commands."""
    return [
        f"{module.__name__.rsplit('.', 1)[1]}.{name}"
        for name, value in vars(module).items()
        if inspect.iscoroutinefunction(value)
        and value.__module__ == module.__name__
        and not name.startswith("_")
    ]


def test_every_command_is_checked_here():
    found = {name for module in COMMAND_MODULES for name in _commands(module)}
    assert found == set(CALLS) == set(ACTIONS)


@pytest.mark.parametrize("command", sorted(CALLS))
async def test_every_command_authorizes_before_anything_else(command, monkeypatch):
    asked: list[tuple[Principal, str, str | None]] = []

    async def refuse(
        principal: Principal, action: str, project_id: str | None = None, *, log: object
    ) -> None:
        asked.append((principal, action, project_id))
        raise Forbidden(f"{principal.actor} may not {action}")

    module = {m.__name__.rsplit(".", 1)[1]: m for m in COMMAND_MODULES}[command.split(".")[0]]
    monkeypatch.setattr(module, "authorize", refuse)
    with pytest.raises(Forbidden):
        await CALLS[command]()
    assert asked == [(ALICE, *ACTIONS[command])]


def test_every_action_is_asked_by_a_command_or_a_read():
    asked = {action for action, _ in ACTIONS.values()}
    assert asked | READ_ACTIONS == set(get_args(authorize.Action))
    assert not asked & READ_ACTIONS


def _service_errors(cls: type[errors.ServiceError]) -> list[type[errors.ServiceError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _service_errors(direct))]


def test_the_error_table_lists_every_service_error():
    declared = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.ServiceError)
    ]
    assert set(_service_errors(errors.ServiceError)) == set(declared)
    for cls in declared:
        assert cls in http_errors.STATUS, cls


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (errors.NotFound("no project x"), 404, {"error": 404, "message": "no project x"}),
        (errors.Conflict("taken"), 409, {"error": 409, "message": "taken"}),
        (errors.Unavailable("retry"), 503, {"error": 503, "message": "retry"}),
        (
            errors.Invalid("edit not accepted: x"),
            422,
            {"error": 422, "message": "edit not accepted: x"},
        ),
        (
            errors.Invalid.naming("version", "project p has versions 1 to 3", "target.version"),
            422,
            {
                "error": 422,
                "message": "invalid target.version: project p has versions 1 to 3",
                "fields": [{"field": "version", "message": "project p has versions 1 to 3"}],
            },
        ),
        (
            InvalidEvent("doc.updated", [("update", "empty")]),
            422,
            {"error": 422, "message": "invalid doc.updated event: update: empty"},
        ),
        (
            StoreUnavailable("database unavailable: OSError: refused at 10.0.0.1"),
            503,
            {"error": 503, "message": "database unavailable; retry later"},
        ),
        (
            StoreTimeout("no answer"),
            503,
            {"error": 503, "message": "database unavailable; retry later"},
        ),
        (
            errors.ServiceError("nobody classified this"),
            500,
            {
                "error": 500,
                "message": "internal error; the server log has it under request id r-1",
                "request_id": "r-1",
            },
        ),
        (
            QueryFailed("query failed: relation x", "42P01"),
            500,
            {
                "error": 500,
                "message": "internal error; the server log has it under request id r-1",
                "request_id": "r-1",
            },
        ),
    ],
)
def test_each_error_renders_its_status_and_body(error, status, body):
    response = http_errors.render(error, "r-1")
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == body


class _Bpm(BaseModel):
    bpm: float = Field(gt=0)


def test_a_bad_nested_field_is_named_with_its_place():
    with pytest.raises(ValidationError) as caught:
        _Bpm.model_validate({"bpm": -1})
    invalid = errors.Invalid.of(caught.value, "results")
    assert invalid.message == "invalid results.bpm: Input should be greater than 0"
    assert invalid.fields == (errors.FieldError("results.bpm", "Input should be greater than 0"),)


def test_project_ids_have_one_normal_form():
    assert lookup.parse_project_id(PROJECT.upper()) == PROJECT
    assert lookup.parse_project_id(uuid.UUID(PROJECT).hex) == PROJECT
    with pytest.raises(errors.NotFound, match=r"no project 'x' \(project ids are UUIDs\)"):
        lookup.parse_project_id("x")


def test_an_edit_that_changed_nothing_has_no_daid():
    assert not projects.Edited(version=3, position=9, daid=None).changed
    assert projects.Edited(version=4, position=10, daid="daid:x").changed


def test_every_project_action_has_words_for_its_refusal() -> None:
    """A refusal names what the action needs in words; an action without them answered
    500 instead of 403 (found when `audit.export` became a project action)."""
    from collab.access import rules  # noqa: PLC0415

    assert set(rules.NEEDS) <= set(rules._WORDS)
