"""The exceptions tidings raises: one small hierarchy, each message says what to do."""

from __future__ import annotations

from tidings.redaction import redact


class TidingsError(Exception):
    """Base of every error tidings raises on purpose.

    Its message never shows a password: URLs quoted in it (or in the broker client's
    error it wraps) pass through :func:`tidings.redaction.redact`.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigurationError(TidingsError):
    """The application wiring is wrong: a handler, URL, contract or option is invalid."""


class MissingExtraError(ConfigurationError):
    """An optional dependency is needed for what was asked; install the named extra."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs an optional dependency: pip install 'tidings[{extra}]'")
        self.extra = extra


class TlsError(ConfigurationError):
    """A TLS connection failed: the server's certificate is not trusted, was issued for
    another host name, or the client certificate or key cannot be used.

    Retrying does not help until the URL's ``?ca=``, ``?cert=`` or ``?key=`` (or the
    host name) is fixed, so the relay and the consumer stop on it instead of retrying.
    """


class NoActiveTransactionError(TidingsError):
    """Something that must happen inside a transaction was attempted outside one."""


class PublishedFromUseCaseError(TidingsError):
    """An integration event was published by a use case, not by an event handler, in a
    context created with ``strict_publishing=True`` (the articles' "publishing both from
    the use case" mistake)."""


class PublishedFromUseCaseWarning(UserWarning):
    """An integration event was published by a use case rather than by an event handler.

    The articles' "publishing both from the use case" mistake: the use case then knows
    what other contexts need. Publish the integration event from a domain event handler
    instead. Raised as :class:`PublishedFromUseCaseError` under ``strict_publishing``.
    """


class NoQueryHandlerError(TidingsError):
    """``QueryBus.ask`` got a query no handler is registered for."""


class CascadeDepthExceededError(TidingsError):
    """Domain event handlers kept publishing events past the configured depth (a cycle)."""


class ContractError(TidingsError):
    """An integration event contract problem (registry, encoding or decoding)."""


class DuplicateContractError(ContractError, TypeError):
    """Two integration event classes claim the same (type name, version)."""


class UnknownContractError(ContractError):
    """A message names a (type, version) that no registered contract matches."""

    def __init__(self, event_type: str, version: int) -> None:
        super().__init__(
            f"no integration event contract is registered for type {event_type!r} "
            f"version {version}; import the module defining it, or add an upcaster"
        )
        self.event_type = event_type
        self.version = version


class UnhandledTypeError(ContractError):
    """A broker that routes by type delivered a type the consuming group does not handle."""

    def __init__(self, event_type: str, group_types: frozenset[str] | set[str]) -> None:
        super().__init__(
            f"type {event_type!r} was delivered to a group that handles only "
            f"{sorted(group_types)}: a binding or subscription routes it here by mistake; "
            "remove that binding, or subscribe a handler to the type"
        )
        self.event_type = event_type


class RoutingMismatchError(ContractError):
    """The broker's routing metadata names another type than the CloudEvent it carries."""

    def __init__(self, routed_type: str, event_type: str) -> None:
        super().__init__(
            f"the broker routed this message as {routed_type!r} but its CloudEvent says "
            f"{event_type!r}: a producer wrote inconsistent metadata; fix the producer, "
            "then replay the letter if it should be handled"
        )
        self.routed_type = routed_type
        self.event_type = event_type


class DecodeError(ContractError):
    """Bytes that are not a valid CloudEvent carrying a valid contract payload."""


class LimitExceededError(DecodeError):
    """A message exceeds one of the documented limits (attributes, nesting depth, size)."""


class MessageTooLargeError(LimitExceededError):
    """A message is larger than the configured limit."""


class SignatureError(ContractError):
    """A message's signature is missing, names an unknown key, or does not match.

    With verification ``required``, such a message is dead-lettered as ``bad_signature``:
    check that the producer signs with a key the consumer's key ring holds (SECURITY.md).
    """


class ContractValidationError(DecodeError):
    """The payload of a known contract failed validation."""


class ContractSnapshotError(ContractError):
    """A contract snapshot directory (``tidings contracts export``) is missing or unreadable."""


class SchemaOutdatedError(TidingsError):
    """A context's database holds tidings tables older than this version of tidings."""


class PartitionsInUseError(TidingsError):
    """The partition count of an outbox cannot change while live relays hold partitions:
    stop the context's relays first."""


class TraceNotFoundError(TidingsError):
    """No context given to ``tidings trace`` knows the id (correlation or event id)."""


class ActionRefusedError(TidingsError):
    """The dashboard refused a state-changing request; the message says what to do."""
