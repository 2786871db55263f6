"""An import-linter contract that import-linter lacks: no import cycle between any two modules.

``acyclic_siblings`` checks siblings (``ltmia.audit.html`` and ``ltmia.audit.run``) and packages as wholes,
but not a package's ``__init__`` and its own modules: ``ltmia/attacks/__init__.py`` importing ``zlib`` late
while ``zlib`` imports ``ltmia.attacks`` is a cycle it never sees. This contract sees every import, a late
one inside a function included, and fails on each strongly connected group of modules, printing one cycle of
it with line numbers. Registered in pyproject.toml (``contract_types``); ``lint-imports`` finds it because it
puts the working directory on ``sys.path``.
"""

from __future__ import annotations

from itertools import pairwise

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def cycles(graph: ImportGraph, modules: set[str]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected group."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in sorted(modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan; the module graph is small, recursion is fine
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in edges:
        if module not in index:
            visit(module)
    found = []
    for group in groups:
        start, members = group[0], set(group)
        chain = graph.find_shortest_chain(
            importer=next(m for m in edges[start] if m in members), imported=start
        )
        found.append([start, *(chain or [])])
    return found


class ModuleCyclesContract(Contract):
    """``type = "module_cycles"``, ``root = "<package>"``: no two modules under it import each other,
    directly or through others."""

    type_name = "module_cycles"
    root = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        root = str(self.root)
        modules = {m for m in graph.modules if m == root or m.startswith(root + ".")}
        found = cycles(graph, modules)
        details = [
            [
                (a, b, [d["line_number"] for d in graph.get_import_details(importer=a, imported=b)])
                for a, b in pairwise(cycle)
            ]
            for cycle in found
        ]
        return ContractCheck(kept=not found, metadata={"cycles": details})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("Import cycle:", bold=True)
            for importer, imported, lines in cycle:
                at = ", ".join(f"l.{n}" for n in lines)
                output.indent_cursor()
                output.print_error(f"{importer} -> {imported} ({at})", bold=False)
            output.new_line()
