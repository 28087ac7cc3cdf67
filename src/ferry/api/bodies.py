"""Request bodies: JSON only, decoded strictly into the route's `data` type in one pass.

Litestar reads any body as JSON whatever its Content-Type, decodes it to Python
objects and converts those to the route's type with lax rules (`"3"` becomes 3).
Here a body is read only when its media type is JSON (a form or `text/plain` that
a web page can send cross-origin without a preflight is a 415), and msgspec decodes
the bytes straight into the route's type with strict rules; the signature model then
passes the struct through as it is. A body msgspec cannot read at all (malformed,
invalid UTF-8, nested past its recursion limit) is a 400 like any other bad input.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ClientException, ValidationException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Empty

# `application/json`, or a structured syntax suffix such as `application/merge-patch+json`.
_JSON_MEDIA_TYPE = re.compile(r"application/(?:[A-Za-z0-9!#$&^_.+-]+\+)?json", re.IGNORECASE)


class UnsupportedMediaType(ClientException):
    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE
    detail = "the request body must be JSON (Content-Type: application/json)"


def is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").partition(";")[0].strip()
    return _JSON_MEDIA_TYPE.fullmatch(media_type) is not None


@functools.cache
def decoder_for(data_type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(data_type)


# msgspec's path of an error: "... - at `$.jobs[1].payload`", "... - at `key` in `$.headers`".
_AT = re.compile(r" - at (?:`key` in )?`\$\.?([^`]*)`$")


def decode(data_type: Any, body: bytes, request: str) -> Any:
    """`body` as `data_type`, or a 400 naming the field (`request`: "METHOD /path")."""
    try:
        return decoder_for(data_type).decode(body)
    except msgspec.ValidationError as exc:
        raise ValidationException(
            f"Validation failed for {request}", extra=[error_of(exc)]
        ) from None
    except msgspec.DecodeError as exc:
        raise unreadable(f"the request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise unreadable("the request body is not valid UTF-8") from None
    except RecursionError:
        # msgspec stops at the interpreter's recursion limit rather than exhaust the stack.
        raise unreadable("the request body nests too deeply to be read") from None


def error_of(exc: msgspec.ValidationError, under: str = "") -> dict[str, Any]:
    """The error as Litestar words it, `{message, key, source}`; `under`: the key of
    the value that was validated (its errors' keys start there)."""
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1) if at else ""
    key = f"{under}.{path}" if under and path and not path.startswith("[") else under + path
    error: dict[str, Any] = {"message": text[: at.start()] if at else text}
    if key:
        error["key"] = key
    error["source"] = "body"
    return error


def unreadable(problem: str) -> ValidationException:
    return ValidationException(problem, extra=[{"message": problem, "source": "body"}])


class JsonBodyRequest(Request[Any, Any, Any]):
    """The app's request class: `json()` is what the route's `data` parameter receives."""

    __slots__ = ()

    async def json(self) -> Any:
        if self._json is not Empty:
            return self._json
        data = self.route_handler.parsed_fn_signature.parameters.get("data")
        if data is None:
            return await super().json()
        if not is_json(self.headers.get("content-type")):
            raise UnsupportedMediaType()
        body = await self.body()
        self._json = decode(data.annotation, body, f"{self.method} {self.url.path}")
        return self._json
