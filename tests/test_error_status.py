"""``crmkit.error_status``: the HTTP status of a CrmError in a plugin's own routes, the
one crmkit answers with when the handler lets the error through."""

from __future__ import annotations

import crmkit


def test_each_error_has_the_status_a_plugin_route_answers_it_with() -> None:
    assert crmkit.error_status(crmkit.BadUserInput("x", field="score")) == 400
    assert crmkit.error_status(crmkit.NotFound("x")) == 404
    assert crmkit.error_status(crmkit.Conflict("x")) == 409
    assert crmkit.error_status(crmkit.RateLimited("x")) == 429
    assert crmkit.error_status(crmkit.CrmError("x")) == 500
