"""W3C PROV-JSON and contributor lists from a lineage walk (no I/O).

Mapping: every node is a ``prov:Entity`` named by its DAID; the event that made it is
an activity (``activity:<entity id>``) that generated it, used its parents and was
associated with its agents. Agents are people (the actor of an edit, a tag, a
rollback), services (the tool that posted an analysis or a provenance record, and
the agent of an external DAID) and AI models (a tool's model when AI was involved).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

PREFIXES: Final = {
    "daid": "urn:daid:",
    "collab": "urn:collab:",
    "activity": "urn:collab:activity:",
    "person": "urn:collab:person:",
    "service": "urn:collab:service:",
    "model": "urn:collab:model:",
}
#: the agent every event written by this server carries unless a service names itself
SERVER_AGENT: Final = "collab-server"


@dataclass(slots=True)
class _Contributor:
    name: str
    kind: str
    contributions: int = 0
    first: str = ""
    last: str = ""
    daids: list[str] = field(default_factory=list)

    def add(self, node: dict[str, Any]) -> None:
        self.contributions += 1
        self.first = min(self.first or node["time"], node["time"])
        self.last = max(self.last, node["time"])
        if len(self.daids) < 20:
            self.daids.append(node["daid"])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "contributions": self.contributions,
            "first": self.first,
            "last": self.last,
            "examples": self.daids,
        }


def _ai(tool: dict[str, Any]) -> bool:
    return bool(tool.get("ai_involved")) or tool.get("ai_involvement", "none") != "none"


def agents_of(node: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of everyone and everything that made ``node``."""
    found: list[tuple[str, str]] = []
    tool = node.get("tool") or {}
    service = tool.get("agent_id")
    if service:
        found.append(("service", str(service)))
        if tool.get("model") and _ai(tool):
            found.append(("model", str(tool["model"])))
    elif node["agent_id"] != SERVER_AGENT:
        found.append(("service", str(node["agent_id"])))
    actor = node.get("actor")
    if actor and actor != service:
        found.append(("person", str(actor)))
    return found


def contributors(nodes: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    seen: dict[tuple[str, str], _Contributor] = {}
    for node in nodes:
        for kind, name in agents_of(node):
            seen.setdefault((kind, name), _Contributor(name, kind)).add(node)
    by_kind: dict[str, list[dict[str, Any]]] = {"people": [], "services": [], "ai_models": []}
    label = {"person": "people", "service": "services", "model": "ai_models"}
    for (kind, _name), contributor in sorted(seen.items()):
        by_kind[label[kind]].append(contributor.to_json())
    return by_kind


def prov_document(
    nodes: Iterable[dict[str, Any]], edges: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    entities: dict[str, Any] = {}
    activities: dict[str, Any] = {}
    agents: dict[str, Any] = {}
    generated: dict[str, Any] = {}
    used: dict[str, Any] = {}
    derived: dict[str, Any] = {}
    associated: dict[str, Any] = {}
    attributed: dict[str, Any] = {}
    on_behalf: dict[str, Any] = {}
    activity_of: dict[str, str] = {}
    for node in nodes:
        daid = node["daid"]
        entity: dict[str, Any] = {
            "prov:type": f"collab:{node['entity_type']}",
            "collab:known": node["known"],
            "collab:agent_id": node["agent_id"],
            "collab:time": node["time"],
        }
        if node["known"]:
            entity.update(
                {
                    "collab:event_type": node["event_type"],
                    "collab:position": node["position"],
                    "collab:version": node["version"],
                }
            )
            if node["project_id"] is not None:
                entity["collab:project"] = node["project_id"]
            file_entity = node["details"].get("entity") if node["details"] else None
            if isinstance(file_entity, dict):
                entity["prov:label"] = file_entity.get("id")
                entity["collab:content_sha256"] = file_entity.get("content_hash")
        entities[daid] = entity
        if not node["known"]:
            continue
        activity = f"activity:{node['entity_id']}"
        activity_of[daid] = activity
        activities[activity] = {
            "prov:type": f"collab:{node['activity']}",
            "prov:startTime": node["time"],
            "prov:endTime": node["time"],
        }
        generated[f"_:gen-{len(generated)}"] = {
            "prov:entity": daid,
            "prov:activity": activity,
            "prov:time": node["time"],
        }
        service_id: str | None = None
        for kind, name in agents_of(node):
            agent = f"{kind}:{name}"
            agents[agent] = {
                "prov:type": "prov:Person" if kind == "person" else "prov:SoftwareAgent",
                "collab:kind": {"person": "person", "service": "service", "model": "ai_model"}[
                    kind
                ],
            }
            associated[f"_:assoc-{len(associated)}"] = {
                "prov:activity": activity,
                "prov:agent": agent,
            }
            if kind == "service":
                service_id = agent
            if kind == "model" and service_id is not None:
                on_behalf[f"_:deleg-{len(on_behalf)}"] = {
                    "prov:delegate": agent,
                    "prov:responsible": service_id,
                    "prov:activity": activity,
                }
            if kind == "person":
                attributed[f"_:attr-{len(attributed)}"] = {"prov:entity": daid, "prov:agent": agent}
    for edge in edges:
        child, parent = edge["child"], edge["parent"]
        derived[f"_:der-{len(derived)}"] = {
            "prov:generatedEntity": child,
            "prov:usedEntity": parent,
            "prov:type": f"collab:{edge['relation']}",
        }
        if child in activity_of:
            used[f"_:use-{len(used)}"] = {
                "prov:activity": activity_of[child],
                "prov:entity": parent,
            }
    parts = {
        "activity": activities,
        "agent": agents,
        "wasGeneratedBy": generated,
        "used": used,
        "wasDerivedFrom": derived,
        "wasAssociatedWith": associated,
        "wasAttributedTo": attributed,
        "actedOnBehalfOf": on_behalf,
    }
    return {
        "prefix": PREFIXES,
        "entity": entities,
        **{name: part for name, part in parts.items() if part},
    }
