"""The HTTP API of a project's members: list them, grant a role, revoke it.

Commands of ``collab.services.members``; a change reaches this node's open sockets
of that project at once (``Live.access_changed``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collab.http.kit import body_of, correlation_of, live_of, principal_of
from collab.http.params import project_id_of, store_of
from collab.http.responses import JSONResponse
from collab.services import members


async def list_members(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    roster = await members.roster(principal, project_id, store=store_of(request))
    return JSONResponse(
        {
            "project_id": project_id,
            "members": [
                {"member": member, "role": role} for member, role in sorted(roster.roles.items())
            ],
        }
    )


async def grant_member(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    body = await body_of(request, members.NewMember)
    changed = await members.grant(
        principal,
        project_id,
        body,
        store=store_of(request),
        notify=live_of(request).access_changed,
        correlation_id=correlation_of(request),
    )
    return JSONResponse(_changed(project_id, changed), status_code=201)


async def revoke_member(request: Request) -> Response:
    principal = await principal_of(request)
    project_id = project_id_of(request)
    changed = await members.revoke(
        principal,
        project_id,
        request.path_params["member"],
        store=store_of(request),
        notify=live_of(request).access_changed,
        correlation_id=correlation_of(request),
    )
    return JSONResponse(_changed(project_id, changed))


def _changed(project_id: str, changed: members.Changed) -> dict[str, object]:
    return {
        "project_id": project_id,
        "member": changed.member,
        "role": changed.role,
        "previous_role": changed.previous,
        "position": changed.position,
        "daid": changed.daid,
    }


routes = [
    Route("/api/projects/{project_id}/members", list_members, methods=["GET"]),
    Route("/api/projects/{project_id}/members", grant_member, methods=["POST"]),
    Route("/api/projects/{project_id}/members/{member}", revoke_member, methods=["DELETE"]),
]
