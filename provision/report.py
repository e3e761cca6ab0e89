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
    from .costs import Estimate, NodeCost
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
        """Every node's price on-demand and spot, per hour and per month, and the totals; with
        --hours-a-day, then the month as planned at that use beside always-on."""
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
                          _usd(n.spot_hourly * hours), _billed(n),
                          f"[yellow]{escape(note)}[/]" if n.missing else escape(note))
        total, monthly = estimate.hourly, estimate.monthly
        table.add_section()
        table.add_row("[bold]total[/]", "", "", "", _usd(total["on_demand"], 4),
                      _usd(total["spot"], 4), _usd(monthly["on_demand"]),
                      _usd(monthly["spot"]), "", "")
        self.console.print(table)
        self.say(f"as planned (spot nodes at spot): [bold]{_usd(total['planned'], 4)} an hour,"
                 f" {_usd(monthly['planned'])} a month[/bold] always on. Compute Engine list"
                 f" prices of {estimate.taken}, before taxes and discounts, external IPv4"
                 " addresses included (provision/costs_table.py).")
        if estimate.hours_a_day is not None:
            self._costs_in_use(estimate, estimate.hours_a_day)
        if estimate.missing:
            self.say(f"[yellow]not in these figures: {escape('; '.join(estimate.missing))}[/]")

    def _costs_in_use(self, estimate: Estimate, use: float) -> None:
        """--hours-a-day: each node's month as planned, always on and at that use."""
        column = f"{use:g} h a day"
        table = self._table(f"a month as planned, always on and at {use:g} h of builds a day",
                            ["node", "billed", "stops when idle", "runs (h a month)",
                             "always on", column],
                            right=("runs (h a month)", "always on", column))
        for n in estimate.nodes:
            table.add_row(escape(n.node), _billed(n), "yes" if n.idle_stop else "no",
                          f"{n.running_hours(use):.0f}",
                          _usd(n.planned_hourly * estimate.hours_per_month),
                          _usd(n.monthly_use(use)))
        monthly = estimate.monthly
        table.add_section()
        table.add_row("[bold]total[/]", "", "", "", _usd(monthly["always_on"]),
                      f"[bold]{_usd(monthly['use'])}[/]")
        self.console.print(table)
        self.say(f"at {use:g} h a day: nodes with idle_stop_minutes bill their machine and"
                 f" address {use:g} h a day and their disk always (a stopped VM bills only its"
                 " disk); the others, the bastion among them, run always.")

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


def _billed(node: NodeCost) -> str:
    return ("spot" if node.spot else "on-demand") + ("" if node.external_ip else ", no IP")


def _usd(amount: float, places: int = 2) -> str:
    return f"${amount:,.{places}f}"
