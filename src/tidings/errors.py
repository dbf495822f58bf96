"""The exceptions tidings raises: one small hierarchy, each message says what to do."""

from __future__ import annotations


class TidingsError(Exception):
    """Base of every error tidings raises on purpose."""


class ConfigurationError(TidingsError):
    """The application wiring is wrong: a handler, URL, contract or option is invalid."""


class MissingExtraError(ConfigurationError):
    """An optional dependency is needed for what was asked; install the named extra."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs an optional dependency: pip install 'tidings[{extra}]'")
        self.extra = extra


class NoActiveTransactionError(TidingsError):
    """Something that must happen inside a transaction was attempted outside one."""


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


class DecodeError(ContractError):
    """Bytes that are not a valid CloudEvent carrying a valid contract payload."""


class MessageTooLargeError(DecodeError):
    """A message is larger than the configured limit."""


class ContractValidationError(DecodeError):
    """The payload of a known contract failed validation."""


class ContractSnapshotError(ContractError):
    """A contract snapshot directory (``tidings contracts export``) is missing or unreadable."""


class ActionRefusedError(TidingsError):
    """The dashboard refused a state-changing request; the message says what to do."""
