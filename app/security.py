"""Optional bearer-token authentication of /classify and /generate.

When ``WAVECLS_API_TOKEN`` is set, those routes need ``Authorization: Bearer
<token>`` and the OpenAPI schema declares an HTTP bearer security scheme. When
it is unset they stay open, and the schema declares no scheme.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, params
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from app.config import Settings

# The b64token syntax of RFC 6750, section 2.1: the characters a client can send
# in a bearer credential. It also rules out whitespace, such as the trailing
# newline of a token read from a file.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="The token set in WAVECLS_API_TOKEN on the server.",
)


def validated_token(token: SecretStr) -> bytes:
    """Return the configured token as bytes, or raise if no client could send it.

    Raises:
        ValueError: the token is empty or has characters outside RFC 6750's
            b64token syntax. The message never contains the token.
    """
    value = token.get_secret_value()
    if not TOKEN_PATTERN.fullmatch(value):
        raise ValueError(
            f"WAVECLS_API_TOKEN is not a valid bearer token ({len(value)} "
            "characters): use only letters, digits and -._~+/ with optional "
            "trailing '=', and no whitespace such as a trailing newline; or "
            "unset it to turn authentication off"
        )
    return value.encode("ascii")


class BearerTokenAuth:
    """Dependency that requires ``Authorization: Bearer <token>`` with one token."""

    def __init__(self, token: SecretStr) -> None:
        self._token = validated_token(token)

    async def __call__(
        self,
        credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(bearer_scheme)
        ],
    ) -> None:
        """Raise 401 unless the request carries the configured bearer token."""
        if credentials is None:
            # RFC 6750, section 3.1: no error code when credentials are missing.
            raise HTTPException(
                status_code=401,
                detail="missing bearer token; send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        presented = credentials.credentials.encode()
        if not secrets.compare_digest(presented, self._token):
            raise HTTPException(
                status_code=401,
                detail="invalid bearer token; send the token configured on the "
                "server in 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )


def api_token_dependencies(settings: Settings) -> list[params.Depends]:
    """Return the dependencies that protect a router: none when no token is set.

    Raises:
        ValueError: the configured token is not a valid bearer token.
    """
    if settings.api_token is None:
        return []
    return [Depends(BearerTokenAuth(settings.api_token))]
