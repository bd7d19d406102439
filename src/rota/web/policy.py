"""Who may call each route: the one table the auth middleware reads.

Every route the app serves must have an entry (the app refuses to start otherwise, and a test
fails): a route added without one is never served unprotected by accident. ``PUBLIC`` routes
need nothing; ``TOKEN`` routes need the token (``Authorization: Bearer``) or the session cookie
the login form sets, and their POSTs with the cookie also need the CSRF token.
"""

from __future__ import annotations

from typing import Final

PUBLIC: Final = "public"
TOKEN: Final = "token"

ROUTES: Final[dict[str, str]] = {
    "/health": PUBLIC,
    "/login": TOKEN,  # answers 401 with the form until the token is presented
    "/logout": TOKEN,
    "/": TOKEN,
    "/flows/{flow}": TOKEN,
    "/flows/{flow}/reliability": TOKEN,
    "/runs": TOKEN,
    "/runs/{run_id}": TOKEN,
    "/runs/{run_id}/tasks/{task_id}": TOKEN,
    "/runs/{run_id}/tasks/{task_id}/log": TOKEN,
    "/datasets": TOKEN,
    "/pools": TOKEN,
    "/static": TOKEN,
    "/metrics": TOKEN,
    "/api/docs": TOKEN,
    "/api/openapi.json": TOKEN,
    "/api/flows": TOKEN,
    "/api/flows/{flow}": TOKEN,
    "/api/flows/{flow}/stats": TOKEN,
    "/api/flows/{flow}/trigger": TOKEN,
    "/api/flows/{flow}/pause": TOKEN,
    "/api/flows/{flow}/unpause": TOKEN,
    "/api/runs": TOKEN,
    "/api/runs/{run_id}": TOKEN,
    "/api/runs/{run_id}/live": TOKEN,
    "/api/runs/{run_id}/graph": TOKEN,
    "/api/runs/{run_id}/cancel": TOKEN,
    "/api/runs/{run_id}/clear": TOKEN,
    "/api/runs/{run_id}/mark": TOKEN,
    "/api/runs/{run_id}/resume": TOKEN,
    "/api/runs/{run_id}/tasks/{task_id}": TOKEN,
    "/api/runs/{run_id}/tasks/{task_id}/log": TOKEN,
    "/api/runs/{run_id}/tasks/{task_id}/output": TOKEN,
    "/api/datasets": TOKEN,
    "/api/pools": TOKEN,
    "/api/lineage": TOKEN,
}


class MissingPolicy(RuntimeError):
    """Raised when the app has a route the policy table does not name."""


def check(paths: list[str]) -> None:
    """Refuse routes without a policy entry.

    Raises:
        MissingPolicy: a path of *paths* is not in ROUTES.
    """
    missing = sorted(set(paths) - set(ROUTES))
    if missing:
        raise MissingPolicy(f"routes without a policy entry: {', '.join(missing)}")
