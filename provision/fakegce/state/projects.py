"""The project resource: projects.get and its `commonInstanceMetadata`, which
projects.setCommonInstanceMetadata replaces (a global operation, fingerprint checked as on
instances.setMetadata). See docs/compute-engine.md, "Projects and regions".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import rules
from ..errors import ConditionNotMet
from .core import Core, fingerprint, new_id
from .operations import Operation, Operations, replayable


@dataclass
class Project:
    name: str
    id: str = field(default_factory=new_id)
    metadata: list[dict] = field(default_factory=list)  # commonInstanceMetadata items
    metadata_version: int = 0


def metadata_fingerprint(proj: Project) -> str:
    return fingerprint(proj.metadata, proj.metadata_version)


class Projects:
    def __init__(self, core: Core, operations: Operations):
        self.core = core
        self.operations = operations
        self._projects: dict[str, Project] = {}

    def _project(self, name: str) -> Project:
        """Every project exists, made on first use. Call locked."""
        proj = self._projects.get(name)
        if proj is None:
            proj = self._projects[name] = Project(name)
        return proj

    def get(self, project: str) -> Project:
        with self.core.lock:
            return self._project(project)

    @replayable
    def set_common_instance_metadata(self, project: str, body: dict,
                                     request_id: str | None = None) -> Operation:
        proj = self._project(project)
        items = rules.metadata_items("metadata", body.get("items"))
        if body.get("fingerprint") != metadata_fingerprint(proj):
            raise ConditionNotMet(
                "Supplied fingerprint does not match current metadata fingerprint.")
        op = self.operations.new(project, "setCommonInstanceMetadata", f"projects/{project}",
                                 proj.id, None, request_id)
        proj.metadata, proj.metadata_version = items, proj.metadata_version + 1
        op.finish()
        self.core.changed.notify_all()
        return op

    def clear(self) -> None:
        """Forget every project (under the lock)."""
        self._projects.clear()
