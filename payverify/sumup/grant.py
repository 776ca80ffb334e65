"""What SumUp's token endpoint answers: a new token pair (parsed leniently), or an OAuth error code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from payverify.errors import TokenRefreshFailed
from payverify.secret import Secret
from payverify.sumup import body

DEFAULT_EXPIRES_IN = 3600
MAX_EXPIRES_IN = 366 * 86400
_OAUTH_ERROR_CODE = re.compile(r"[a-z_]{1,40}")  # only a short code like "invalid_client" is echoed


@dataclass(frozen=True)
class TokenGrant:
    access_token: Secret
    refresh_token: Secret | None  # None: the response omitted it, keep the old one
    expires_in: int
    scope: str | None


def _json(text: str) -> Any:
    try:
        return body.loads(text)
    except body.NotJSON:  # HTML, empty, truncated, absurdly nested
        return None


def oauth_error(text: str) -> str | None:
    data = _json(text)
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) and _OAUTH_ERROR_CODE.fullmatch(error) else None


def parse_grant(text: str) -> TokenGrant:
    data = _json(text)
    not_understood = TokenRefreshFailed("token endpoint answered 200 with a body that is not understood",
                                        http_status=200)
    if not isinstance(data, dict):
        raise not_understood
    access, refresh = data.get("access_token"), data.get("refresh_token")
    if not isinstance(access, str) or not access or not (refresh is None or isinstance(refresh, str)):
        raise not_understood
    scope = data.get("scope")
    return TokenGrant(Secret(access), Secret(refresh) if refresh else None,
                      _expires_in(data.get("expires_in")), scope if isinstance(scope, str) else None)


def _expires_in(value: Any) -> int:
    # int-ish: 3600, 3600.0 (a Decimal from body.loads) or "3600". Anything else, or not within
    # (0, 1 year], falls back to an hour.
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii() and text.isdigit() and len(text) <= 9:  # int() refuses 4,300 digits and more
        value = int(text)
    elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value() \
            and abs(value) <= MAX_EXPIRES_IN:
        value = int(value)
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_EXPIRES_IN
    return value if ok else DEFAULT_EXPIRES_IN
