"""The operator's console: what the hub serves to its admins besides the rooms.

* :mod:`.catalog`: the port listing rooms by name or kind (SQL adapter:
  ``roomlog.log.catalog``) and reading a room's snapshot for time travel.
* :mod:`.instances`: each instance's live figures, broadcast on the bus every
  ``console_report_interval``, so any instance can show all of them.
* :mod:`.logpage`: a room's log, paged with filters (pure).
* :mod:`.audit`: every moderation action, recorded in ``audit:moderation``.
* :mod:`.api`: the HTTP endpoints (``/v1/admin/...`` and time travel).

The page itself is ``clients/web/console.html`` (docs: README, "The operator's
console").
"""
