"""The node's durable store, one SQLite file (``<data-dir>/sekisho.db``) seen through views
that each do one job, so a collaborator is given only the view it uses:

  - ``database.Database``: the file itself: opened with its checks, migrated (``schema.py``),
    one write transaction, checkpoints, the integrity check.
  - ``people.People``: the enrolment data: people, cards, levels, PINs.
  - ``record.Record``: what happened: events, moves, modes, alarms, commands, retention.
  - ``outbox.Outbox``: the publisher's side of the outbox.
  - ``audit``: the hash chain every change of the above is written into, and its check.

Import each name from the module that holds it; this file exports nothing.
"""
