"""Webhooks: every endpoint is a consumer of the log.

* ``endpoint``: what an operator configures (URL, room patterns, event filters,
  secrets) and the admin API's input checks; pure.
* ``core``: the delivery decisions (next batch, success, backoff, horizon); pure.
* ``store``: the ports (endpoints with their cursors; leases); the SQL adapter is
  ``roomlog/log/webhooks.py``.
* ``delivery``: one endpoint's deliveries on the instance holding its lease.
* ``manager``: which endpoints this instance delivers; the horizon's disabling.

``docs/backends.md#webhooks`` is the reference for operators and receivers.
"""
