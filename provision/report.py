"""What the user sees: progress lines, the plan, the per-node recap, and `--json`."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from .costs import Estimate
    from .runner import Outcome

STYLE = {"create": "yellow", "start": "yellow", "resume": "yellow", "update": "yellow",
         "delete": "red", "keep": "green", "wait": "cyan", "orphan": "magenta",
         "blocked": "red", "spare": "magenta"}
CHECK_STYLE = {"ok": "green", "warning": "yellow", "problem": "red", "skipped": "magenta"}


class Reporter:
    """Human output goes to stdout, or to stderr under --json so stdout holds only the JSON."""

    def __init__(self, json_mode: bool = False):
        stream = sys.stderr if json_mode else sys.stdout
        # Piped output (CI logs, `| tee`) gets room for whole zone names and IPs.
        self.console = Console(file=stream, highlight=False, soft_wrap=True,
                               width=None if stream.isatty() else 160)

    def say(self, text: str) -> None:
        self.console.print(text)

    def node(self, node: str, text: str, style: str = "") -> None:
        self.console.print(f"[bold]{escape(node)}[/bold] {escape(text)}", style=style or None)

    @staticmethod
    def _table(title: str, columns: list[str], right: tuple[str, ...] = ()) -> Table:
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for col in columns:
            table.add_column(col, justify="right" if col in right else "default")
        return table

    def plan(self, title: str, rows: list[tuple[str, str, str, str]]) -> None:
        """Rows of (action, node, vm, detail)."""
        table = self._table(title, ["action", "node", "vm", "detail"])
        for action, node, vm, detail in rows:
            table.add_row(f"[{STYLE.get(action, '')}]{action}[/]", escape(node), escape(vm),
                          escape(detail))
        self.console.print(table)

    def recap(self, results: Mapping[str, Outcome]) -> None:
        """One row per key (a node, or a resource without one): counts, then the note."""
        table = self._table("recap", ["node", "ok", "changed", "failed", "note"],
                            right=("ok", "changed", "failed"))
        for name, r in sorted(results.items()):
            style = "red" if r.bad else ("yellow" if r.changed else "green")
            table.add_row(f"[{style}]{escape(name)}[/]", str(r.ok), str(r.changed),
                          str(r.failed), escape(r.note))
        self.console.print(table)

    def costs(self, estimate: Estimate) -> None:
        """Every node's price on-demand and spot, per hour and per month, and the totals."""
        hours = estimate.hours_per_month
        table = self._table(
            f"estimated cost ({estimate.currency}, {hours} h a month)",
            ["node", "machine type", "region", "boot disk", "on-demand/h", "spot/h",
             "on-demand/month", "spot/month", "billed", "note"],
            right=("on-demand/h", "spot/h", "on-demand/month", "spot/month"))
        for n in estimate.nodes:
            note = "; ".join(n.missing)
            if n.max_run_hours and not n.missing:
                # a VM with max_run_hours deletes itself: that caps what one run costs
                note = (f"max_run_hours {n.max_run_hours}: at most"
                        f" {_usd(n.planned_hourly * n.max_run_hours)} a run")
            table.add_row(escape(n.node), escape(n.machine_type), escape(n.region),
                          escape(f"{n.disk_gb} GB {n.disk_type}"), _usd(n.hourly, 4),
                          _usd(n.spot_hourly, 4), _usd(n.hourly * hours),
                          _usd(n.spot_hourly * hours), "spot" if n.spot else "on-demand",
                          f"[yellow]{escape(note)}[/]" if n.missing else escape(note))
        total, monthly = estimate.hourly, estimate.monthly
        table.add_section()
        table.add_row("[bold]total[/]", "", "", "", _usd(total["on_demand"], 4),
                      _usd(total["spot"], 4), _usd(monthly["on_demand"]),
                      _usd(monthly["spot"]), "", "")
        self.console.print(table)
        self.say(f"as planned (spot nodes at spot): [bold]{_usd(total['planned'], 4)} an hour,"
                 f" {_usd(monthly['planned'])} a month[/bold]. Compute Engine list prices of"
                 f" {estimate.taken}, before taxes and discounts (provision/costs_table.py).")
        if estimate.missing:
            self.say(f"[yellow]not in these figures: {escape('; '.join(estimate.missing))}[/]")

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        table = self._table(title, columns)
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        self.console.print(table)

    def check(self, status: str, name: str, detail: str, fix: str = "") -> None:
        """One line of `inv doctor`: status, what was checked, what was found, and the fix."""
        stop = "" if detail.endswith((".", "?", "!")) else "."
        fix_text = f" Fix: {escape(fix)}{'' if fix.endswith('.') else '.'}" if fix else ""
        self.console.print(f"[{CHECK_STYLE.get(status, '')}]{status:<8}[/] {escape(name)}:"
                           f" {escape(detail)}{stop}{fix_text}")

    def error(self, text: str) -> None:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[red]error:[/red] {escape(text)}")

    @staticmethod
    def emit_json(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


def _usd(amount: float, places: int = 2) -> str:
    return f"${amount:,.{places}f}"
