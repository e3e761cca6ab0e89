"""What `inv check-arm` says about a workload: the table, the fixes, the scheduling hints and
the count; the same as one --json object; and as SARIF 2.1.0 for CI to annotate the manifests
(https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html).

Scheduling hints are for the Pod templates whose every image is READY: those could run on GKE
Arm nodes today but for their scheduling. A template with an image that is not ready needs
its image fixed first, and gets no hint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .verdict import NOT_READY, READY, UNKNOWN, Finding
from .workload import Template, Use, Workload, scheduling_hint

if TYPE_CHECKING:
    from ..cli import Session

VERDICT_STYLE = {READY: "green", NOT_READY: "red", UNKNOWN: "yellow"}
RULES = {
    NOT_READY: ("arm64-not-ready", "error", "The image cannot run on linux/arm64 nodes."),
    UNKNOWN: ("arm64-unknown", "warning", "Whether the image runs on linux/arm64 could not"
                                          " be decided."),
    "hint": ("arm64-scheduling", "note", "The workload's images are ready for arm64, but"
                                         " its Pods are not scheduled onto Arm nodes."),
}


def use_json(use: Use) -> dict:
    return {"kind": use.kind, "name": use.name, "container": use.container,
            "section": use.section, "file": use.file, "line": use.line,
            "platform": use.platform}


def hints(workload: Workload, findings: dict[str, Finding]) -> list[tuple[Template, str]]:
    """(template, hint) for each Pod template whose images are all READY and whose
    scheduling keeps it off Arm nodes."""
    found = []
    for template in workload.templates:
        if all(findings[image].ready for image in template.images):
            hint = scheduling_hint(template)
            if hint:
                found.append((template, hint))
    return found


def counts(findings: dict[str, Finding]) -> dict[str, int]:
    """How many images got each verdict."""
    return {v: sum(f.verdict == v for f in findings.values()) for v in (READY, NOT_READY, UNKNOWN)}


def to_json(workload: Workload, findings: dict[str, Finding]) -> dict:
    images = []
    for key, finding in findings.items():
        images.append({**finding.to_json(),
                       "used_by": [use_json(u) for u in workload.images[key]]})
    tally = counts(findings)
    # A service built from source has no image to check: nothing proves it ready.
    ready = tally[READY] == len(findings) and not workload.unbuilt
    return {"ready": ready, "counts": tally, "images": images,
            "hints": [{"workload": f"{t.kind}/{t.name}", "file": t.file, "line": t.line,
                       "hint": h} for t, h in hints(workload, findings)],
            "unbuilt": [use_json(u) for u in workload.unbuilt]}


def show(session: Session, workload: Workload, findings: dict[str, Finding]) -> None:
    """The table (image, used by, platforms, arm64, why), then the fixes, the scheduling
    hints and the count."""
    from rich.markup import escape

    rows = []
    for key, f in findings.items():
        rows.append([f.image, "\n".join(str(u) for u in workload.images[key]),
                     "\n".join(f.platforms) or "-", f.verdict, f.why])
    session.reporter.table(f"arm64 readiness of {', '.join(workload.sources)}",
                           ["image", "used by", "platforms", "arm64", "why"], rows)
    fixes = [(f.image, f.fix) for f in findings.values() if not f.ready and f.fix]
    if fixes:
        session.say("[bold]fixes[/bold]")
        for image, fix in fixes:
            session.say(f"  {escape(image)}: {escape(fix)}")
    for use in workload.unbuilt:
        session.say(escape(f"  {use}: built from source here, with no image to check; build"
                           " it for linux/arm64 too (`inv build`)"))
    found = hints(workload, findings)
    if found:
        session.say("[bold]scheduling on GKE Arm nodes[/bold]")
        for template, hint in found:
            session.say(escape(f"  {template.kind}/{template.name} ({template.file}:"
                               f"{template.line}): {hint}"))
    summary = ", ".join(f"[{VERDICT_STYLE[v]}]{n} {v}[/]" for v, n in counts(findings).items()
                        if n)
    unbuilt = (f"; {len(workload.unbuilt)} service(s) built from source, not checked"
               if workload.unbuilt else "")
    session.say(f"{len(findings)} image(s): {summary or 'none'}{unbuilt}")


def sarif(workload: Workload, findings: dict[str, Finding]) -> dict:
    """One result per use of an image that is not READY (at the line naming the image), and
    one note per scheduling hint (at the template's `kind:` line)."""
    results: list[dict[str, Any]] = []
    for key, finding in findings.items():
        if finding.ready:
            continue
        rule, level, _ = RULES[finding.verdict]
        text = f"{finding.image}: {finding.verdict}: {finding.why}"
        if finding.fix:
            text += f". Fix: {finding.fix}"
        for use in workload.images[key]:
            results.append(_result(rule, level, f"{use}: {text}", use.file, use.line))
    for use in workload.unbuilt:
        rule, level, _ = RULES[UNKNOWN]
        results.append(_result(rule, level, f"{use}: built from source here, with no image to"
                               " check. Fix: build it for linux/arm64 too (`inv build`), and"
                               " check the image", use.file, use.line))
    for template, hint in hints(workload, findings):
        rule, level, _ = RULES["hint"]
        results.append(_result(rule, level, f"{template.kind}/{template.name}: {hint}",
                               template.file, template.line))
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {
                "name": "archfarm check-arm",
                "rules": [{"id": rule, "shortDescription": {"text": text},
                           "defaultConfiguration": {"level": level}}
                          for rule, level, text in RULES.values()]}},
            "results": results,
        }],
    }


def _result(rule: str, level: str, text: str, file: str, line: int) -> dict:
    return {"ruleId": rule, "level": level, "message": {"text": text},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": artifact_uri(file)},
                "region": {"startLine": max(1, line)}}}]}


def artifact_uri(file: str) -> str:
    """The file as CI knows it: a relative URI from the working directory (the repository's
    root in CI) when it is under it, else a file:// URI; stdin has no file, and is `stdin`."""
    if file == "-":
        return "stdin"
    path = os.path.abspath(file)
    here = os.getcwd()
    if os.path.commonpath([path, here]) == here:
        return quote(os.path.relpath(path, here))
    return Path(path).as_uri()
