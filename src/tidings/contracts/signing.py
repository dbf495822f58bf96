"""Signed events: HMAC-SHA256 over a CloudEvent's attributes and data, keyed per context.

The signature travels as two extension attributes, in binary and structured mode alike:
``sigkeyid`` (which key signed) and ``signature`` (lowercase hex HMAC-SHA256). What is
signed, the *canonical form*, is defined so that any implementation can verify it
(SECURITY.md, "Signed events"), as these bytes, UTF-8 throughout::

    tidings-hmac-sha256-v1 LF
    for every attribute except ``signature``, sorted by name:
        <name> "=" <length of the value in bytes, decimal> ":" <value> LF
    LF
    <the data bytes, exactly as sent>

An attribute's value is its CloudEvents canonical string (``dataversion`` ``1`` as
``"1"``, a boolean as ``"true"``/``"false"``); binary mode's ``content-type`` is
``datacontenttype``; ``sigkeyid`` is signed with the rest, so a key id cannot be swapped.
The data bytes are the body in binary mode and the text of the ``data`` member (as it
stands in the envelope) in structured mode; absent data are no bytes.

Key rings come from the environment, never from code (:meth:`KeyRing.from_environment`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tidings.contracts.cloud_event import CloudEvent
from tidings.contracts.limits import MAX_DEPTH, check_attribute, check_depth
from tidings.errors import ConfigurationError, DecodeError, SignatureError

__all__ = [
    "KEY_ID",
    "SIGNATURE",
    "KeyRing",
    "SignatureCheck",
    "SigningKey",
    "Verification",
    "canonical_form",
    "structured_parts",
]

SIGNATURE = "signature"
KEY_ID = "sigkeyid"
SCHEME = b"tidings-hmac-sha256-v1\n"
MIN_SECRET_BYTES = 16

_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class Verification(StrEnum):
    """What a consumer does with signatures."""

    REQUIRED = "required"  # unsigned, unknown-key and wrong signatures: bad_signature
    OPTIONAL = "optional"  # unsigned messages pass; a signature present must verify
    OFF = "off"  # signatures are not looked at


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One HMAC key: its id (sent with every signature) and its secret (never shown)."""

    key_id: str
    secret: bytes = field(repr=False)


class KeyRing:
    """A context's signing keys: the first signs what it publishes, every one verifies.

    Keep the newest key first; during a rotation the older keys stay listed so events
    signed before the switch (in flight, in the broker, in dead letters) still verify.
    """

    def __init__(self, keys: Sequence[SigningKey] = ()) -> None:
        self.keys = tuple(keys)
        self._by_id = {key.key_id: _Mac(key.secret) for key in self.keys}
        if len(self._by_id) != len(self.keys):
            raise ConfigurationError("a key ring lists one key id twice; give each key its own")

    def __bool__(self) -> bool:
        return bool(self.keys)

    def __repr__(self) -> str:
        return f"KeyRing({[key.key_id for key in self.keys]!r})"

    @classmethod
    def parse(cls, text: str, *, origin: str = "key ring") -> KeyRing:
        """Read ``keyid:base64secret`` entries separated by commas or new lines, newest
        first; blank entries and lines starting with ``#`` are skipped."""
        keys: list[SigningKey] = []
        for entry in re.split(r"[,\n]", text):
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            key_id, colon, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not colon or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError(
                    f"{origin}: every entry is keyid:base64secret, the key id 1-64 letters, "
                    "digits, '.', '_' or '-'"
                )
            keys.append(SigningKey(key_id, _secret(encoded.strip(), key_id, origin)))
        return cls(keys)

    @classmethod
    def from_environment(
        cls, context_name: str, environ: Mapping[str, str] | None = None
    ) -> KeyRing:
        """The key ring of ``context_name``, from the first of these that is set:
        ``TIDINGS_<CONTEXT>_SIGNING_KEYS``, ``TIDINGS_<CONTEXT>_SIGNING_KEYS_FILE``,
        ``TIDINGS_SIGNING_KEYS``, ``TIDINGS_SIGNING_KEYS_FILE`` (``<CONTEXT>`` is the name
        in capitals, anything not a letter or digit as ``_``). Empty when none is."""
        environ = os.environ if environ is None else environ
        for variable in _variables(context_name, "SIGNING_KEYS"):
            if environ.get(variable):
                return cls.parse(environ[variable], origin=variable)
            path = environ.get(f"{variable}_FILE")
            if path:
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except OSError as exc:
                    raise ConfigurationError(
                        f"{variable}_FILE names {path!r}, which cannot be read: {exc.strerror}"
                    ) from None
                return cls.parse(text, origin=f"{variable}_FILE")
        return cls()

    def sign(self, event: CloudEvent) -> CloudEvent:
        """``event`` with ``sigkeyid`` and ``signature`` from the first key."""
        key_id = self.keys[0].key_id
        attributes = event.attributes()
        attributes[KEY_ID] = key_id  # replaces an older signature's, like the signature
        digest = self._by_id[key_id].digest(canonical_form(attributes, event.data_json))
        return event.with_extensions(sigkeyid=key_id, signature=digest.hex())

    def verify(self, attributes: Mapping[str, str], data: bytes) -> None:
        """Raise :class:`SignatureError` unless ``attributes`` carry a signature that one
        of the ring's keys made over ``attributes`` and ``data``."""
        key_id = attributes.get(KEY_ID)
        signature = attributes.get(SIGNATURE)
        if signature is None or key_id is None:
            raise SignatureError("message is not signed (no sigkeyid and signature attributes)")
        mac = self._by_id.get(key_id)
        if mac is None:
            raise SignatureError(
                f"message is signed with key {key_id[:64]!r}, which the key ring does not hold"
            )
        if not _HEX_DIGEST.fullmatch(signature):
            # also keeps compare_digest from meeting non-ASCII text, which it refuses
            raise SignatureError("signature is not 64 lowercase hexadecimal digits")
        expected = mac.digest(canonical_form(attributes, data)).hex()
        if not hmac.compare_digest(expected, signature):
            raise SignatureError(
                f"signature does not match the message (key {key_id!r}): tampered or forged"
            )


def canonical_form(attributes: Mapping[str, str | int | bool], data: bytes) -> bytes:
    """The bytes a signature covers (module docstring); ``signature`` itself is left out.
    Values are canonical strings, or integers and booleans written as such."""
    lines = []
    for name in sorted(attributes):
        if name != SIGNATURE:
            value = attributes[name]
            if type(value) is not str:
                value = _canonical(value)
            size = len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
            lines.append(f"{name}={size}:{value}\n")
    text = "".join(lines).encode("utf-8", "surrogatepass")
    return b"".join((SCHEME, text, b"\n", data))


class _Mac:
    """HMAC-SHA256 (RFC 2104) of one key, its padded inner and outer hash states computed
    once: ``hmac.digest`` sets them up on every call, which costs more than the event."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        key = (hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret).ljust(
            _BLOCK, b"\0"
        )
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in key))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in key))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


_BLOCK = 64  # SHA-256's block size in bytes


class SignatureCheck:
    """A consumer's signature policy: its key ring and how strict it is."""

    def __init__(self, ring: KeyRing, verification: Verification | str) -> None:
        self.ring = ring
        self.verification = Verification(verification)
        if self.verification is not Verification.OFF and not ring:
            raise ConfigurationError(
                f"signature verification is {self.verification.value} but the key ring is "
                "empty: set TIDINGS_SIGNING_KEYS (or the context's own variable), or turn "
                "verification off"
            )

    @classmethod
    def from_environment(
        cls, context_name: str, environ: Mapping[str, str] | None = None
    ) -> SignatureCheck:
        """The policy of ``context_name``: its key ring (:meth:`KeyRing.from_environment`)
        and ``TIDINGS_<CONTEXT>_VERIFY_SIGNATURES`` or ``TIDINGS_VERIFY_SIGNATURES``
        (``required``, ``optional`` or ``off``), by default ``required`` when the ring
        holds keys and ``off`` when it is empty."""
        environ = os.environ if environ is None else environ
        ring = KeyRing.from_environment(context_name, environ)
        mode = next(
            (
                environ[name]
                for name in _variables(context_name, "VERIFY_SIGNATURES")
                if environ.get(name)
            ),
            Verification.REQUIRED if ring else Verification.OFF,
        )
        try:
            return cls(ring, str(mode).strip().lower())
        except ValueError:
            raise ConfigurationError(
                f"signature verification {mode!r} is not one of required, optional, off"
            ) from None

    @property
    def active(self) -> bool:
        return self.verification is not Verification.OFF

    def check(self, attributes: Mapping[str, str], data: bytes) -> None:
        """Raise :class:`SignatureError` when the message fails the policy."""
        if self.verification is Verification.OFF:
            return
        if (
            self.verification is Verification.OPTIONAL
            and SIGNATURE not in attributes
            and KEY_ID not in attributes
        ):
            return
        self.ring.verify(attributes, data)


def structured_parts(text: str) -> tuple[dict[str, str], bytes]:
    """The attributes (as canonical strings) and the data bytes of a structured-mode
    envelope, read member by member so that the ``data`` text is kept exactly as sent.

    Raises :class:`DecodeError` for what is not a JSON object with distinct member names
    and attribute values that are strings, integers, booleans or null (absent), and
    :class:`~tidings.errors.LimitExceededError` past the limits (attributes, depth).
    """
    check_depth(text, MAX_DEPTH + 1)  # before the parser walks the text
    index = _skip_space(text, 0)
    if text[index : index + 1] != "{":
        raise DecodeError("a structured CloudEvent is a JSON object")
    attributes: dict[str, str] = {}
    data = b""
    seen: set[str] = set()
    index = _skip_space(text, index + 1)
    if text[index : index + 1] == "}":
        return attributes, data
    while True:
        if text[index : index + 1] != '"':
            raise DecodeError("expected a member name in the CloudEvent envelope")
        try:
            name, index = _RAW_JSON.raw_decode(text, index)  # a JSON string: '"' is next
            index = _skip_space(text, index)
            if text[index : index + 1] != ":":
                raise DecodeError("expected ':' in the CloudEvent envelope")
            start = _skip_space(text, index + 1)
            value, index = _RAW_JSON.raw_decode(text, start)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"not JSON: {str(exc)[:200]}") from None
        if name in seen:
            raise DecodeError(f"member {name[:40]!r} appears twice in the CloudEvent envelope")
        seen.add(name)
        if name == "data":
            data = text[start:index].encode("utf-8", "surrogatepass")
        elif value is not None:
            attributes[name] = value = _envelope_value(name, value)
            check_attribute(name, value, len(attributes))
        index = _skip_space(text, index)
        separator = text[index : index + 1]
        index = _skip_space(text, index + 1)
        if separator == "}":
            if index != len(text):
                raise DecodeError("text follows the CloudEvent envelope")
            return attributes, data
        if separator != ",":
            raise DecodeError("expected ',' or '}' in the CloudEvent envelope")


_RAW_JSON = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    return index if match is None else match.end()


def _envelope_value(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return _canonical(value)
    raise DecodeError(f"attribute {name[:40]!r} is a {type(value).__name__}, not a string")


def _canonical(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _secret(encoded: str, key_id: str, origin: str) -> bytes:
    try:
        secret = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{origin}: the secret of key {key_id!r} is not base64") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{origin}: the secret of key {key_id!r} is {len(secret)} bytes; use at least "
            f"{MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -base64 32`)"
        )
    return secret


def _variables(context_name: str, suffix: str) -> tuple[str, str]:
    own = re.sub(r"[^A-Za-z0-9]", "_", context_name).upper()
    return f"TIDINGS_{own}_{suffix}", f"TIDINGS_{suffix}"
