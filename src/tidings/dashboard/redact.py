"""Passwords out of what the dashboard shows: URLs and error messages.

A local stand-in for the project-wide ``redact`` helper: one function, so the swap is
one import.
"""

from __future__ import annotations

import re

# scheme://user:password@host  ->  scheme://user:***@host (also inside longer text)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s@/]+@")
# password=... in query strings and DSNs
_PASSWORD_PARAMETER = re.compile(r"(?P<head>\bpassword=)[^\s&;]+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``."""
    text = _CREDENTIALS.sub(r"\g<head>***@", text)
    return _PASSWORD_PARAMETER.sub(r"\g<head>***", text)
