"""What each route can answer besides success, for the OpenAPI document, and HEAD.

Handlers list their client errors in `raises` (Litestar adds the 400 of a route
that validates input). Those of API keys depend on the deployment: the routes
behind the key check answer 401 without a valid key, and those that check the
tenant 403 for another tenant's key, only when FERRY_AUTH is on. `RouteAnswers`
writes the document for the configuration the app runs with, and lets every GET
route answer HEAD (the same handler; the server sends no body).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from copy import copy

from litestar.enums import HttpMethod
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.status_codes import HTTP_409_CONFLICT

from ferry.api.bodies import UnsupportedMediaType


class StatusConflict(ClientException):
    status_code = HTTP_409_CONFLICT
    detail = "the job's status does not allow this (`extra.status` says what it is)"


class NameConflict(ClientException):
    status_code = HTTP_409_CONFLICT
    detail = "the tenant has a schedule of this name already"


class KeyConflict(ClientException):
    status_code = HTTP_409_CONFLICT
    detail = "this Idempotency-Key was used with a different request in the last 24 hours"


class TooLarge(RequestEntityTooLarge):
    detail = "the request body is larger than MAX_BODY_BYTES"


# A route that reads a JSON body.
BODY: list[type[HTTPException]] = [TooLarge, UnsupportedMediaType]
# A route that refuses a key of another tenant than the one it is about.
TENANT_CHECKED: list[type[HTTPException]] = [PermissionDeniedException]
_AUTH = (NotAuthorizedException, PermissionDeniedException)


class RouteAnswers(ReceiveRoutePlugin):
    """Per app: HEAD on GET routes, and 401/403 documented where the key check runs."""

    def __init__(self, *, auth_on: bool, open_paths: Sequence[str]) -> None:
        self.auth_on = auth_on
        self.open_paths = [re.compile(path) for path in open_paths]

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        handlers = route.route_handler_map
        if not any(path.search(route.path) for path in self.open_paths):
            for handler, _ in handlers.values():
                self._document_keys(handler)
        if HttpMethod.GET in handlers and HttpMethod.HEAD not in handlers:
            handler, parameters = handlers[HttpMethod.GET]
            handlers[HttpMethod.HEAD] = (_undocumented(handler), parameters)
            route.methods.add(HttpMethod.HEAD)

    def _document_keys(self, handler: HTTPRouteHandler) -> None:
        # Litestar registers a copy of each handler per app: this changes only this app's.
        declared = list(handler.raises or ())
        raises = [exc for exc in declared if not issubclass(exc, _AUTH)]
        if self.auth_on:
            tenant_checked = any(issubclass(exc, PermissionDeniedException) for exc in declared)
            raises = [NotAuthorizedException, *(TENANT_CHECKED if tenant_checked else []), *raises]
        handler.raises = raises


def _undocumented(handler: HTTPRouteHandler) -> HTTPRouteHandler:
    """The GET handler for HEAD, left out of the document (as frameworks and clients
    take HEAD to be implied by GET)."""
    head = copy(handler)
    head.include_in_schema = False
    head._resolved_include_in_schema = False  # resolved at registration, before this copy
    return head
