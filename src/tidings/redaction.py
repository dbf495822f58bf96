"""Keeping passwords and tokens out of what tidings shows: one helper, used everywhere.

:func:`redact` replaces the password of every URL in a text (``scheme://user:secret@host``
becomes ``scheme://user:***@host``) and the value of query options that carry secrets
(``?password=``, ``?token=``, ``?secret=``, ``?sasl_plain_password=``…). It accepts a
single URL or any text that may quote one (an exception message, a log line), so the
CLI, the transports' error messages, ``repr()`` of contexts and transports and the
dead-letter records all go through it.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@  (the user part may be empty: redis://:password@host)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@?#]*:)[^\s/?#]*@")
# ?password=… &token=… (any option whose name ends in one of these words), and the same
# words as key=value pairs of a libpq DSN ("host=db password=…")
_SECRET_OPTION = re.compile(
    r"(?P<head>(?:[?&;]|(?<![^\s]))(?:[a-zA-Z0-9_]*_|ssl)?"
    r"(?:password|passwd|pwd|token|secret|apikey|api_key)=)"
    r"[^&;\s'\"]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with every URL password and secret query option replaced by ``***``."""
    text = _USERINFO.sub(rf"\g<head>{MASK}@", text)
    return _SECRET_OPTION.sub(rf"\g<head>{MASK}", text)


def describe_error(error: BaseException) -> str:
    """``"ErrorType: message"`` with secrets redacted, for error columns and logs."""
    return redact(f"{type(error).__name__}: {error}")
