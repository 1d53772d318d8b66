"""Pure calculators: facts (or explicit inputs) in, proposed settings with their reasons out.

- `stackaudit.tuning.postgres`: memory budget, memory/WAL/parallelism/planner-cost settings
  (`memory_budget(facts)`, `tune(facts, ...)`, `recommend(inputs)`).
- `stackaudit.tuning.units`: PostgreSQL memory and time units.

Nothing here reads the outside world; the CLI and the rules call these with collected facts.
"""
