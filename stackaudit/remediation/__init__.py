"""Changes to the live system: pure plans first (the dry run), then an apply that re-checks and journals.

- `clean`: reclaim Docker disk space without ever removing what a container or a rollback needs.
- `journal`: the record of every change made, one JSON document per run in the state directory.
"""
