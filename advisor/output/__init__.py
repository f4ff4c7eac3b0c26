"""The one output layer: tables (rich on a terminal, plain text in a pipe), JSON and plots.

Presentation only: every function here takes results the library computed and renders them.
"""

from advisor.output.tables import Column, TableSpec, emit_json, print_lines, print_table

__all__ = ["Column", "TableSpec", "emit_json", "print_lines", "print_table"]
