"""Read models folded from the event log (project view, history, lineage).

Empty until the projections issue lands; the package exists so the layout is stable.
"""
