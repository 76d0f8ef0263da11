"""Command hooks: the operator's backend decides a command before it takes effect.

* :mod:`.contract` (pure): the request a backend gets, reading its answer into a
  verdict (allow with data, or deny with a code mapped onto the fixed list), and the
  verdict as stored with the command's outcome;
* :mod:`.caller`: :class:`~.caller.Hooks`, the configured hooks, asked with a signed
  POST through the Outbound port, with a timeout and fail-open;
* :mod:`.gate`: :class:`~.gate.Gate`, where every publish and command enters: a probe
  under the room's lock (a remembered outcome is returned without asking), the call
  outside the lock, then the publisher's commit with the verdict as input.

``docs/backends.md`` is the contract for backend authors.
"""
