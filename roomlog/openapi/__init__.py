"""The hub's OpenAPI description, generated from its routes.

* ``operation``: what an endpoint says about itself (``@describe(Operation(...))``);
* ``schemas``: the shared JSON Schemas of bodies and answers;
* ``generate``: routes -> the OpenAPI document, and the list of routes without an
  operation (``tests/openapi/test_coverage.py`` fails on any);
* ``served``: ``/openapi.json`` and the ``/docs`` page (Swagger UI, vendored).

docs/openapi.md says how to describe a new endpoint.
"""
