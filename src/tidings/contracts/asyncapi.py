"""An AsyncAPI 3.0.0 document of the integration events a set of contexts exchange.

::

    from tidings.contracts.asyncapi import asyncapi_document
    document = asyncapi_document(system.contexts, broker_url="amqp://broker:5672/")

What goes in, and where it comes from:

- **servers**: the broker URL (by default the contexts' own ``broker_url``, which they
  must then share), with host, port and path only: never a user name or password.
- **channels**: one per event type, at the address the transport really uses (see
  :mod:`tidings.contracts.asyncapi_bindings`), holding one message per contract
  version in use.
- **operations**: ``send`` for each context whose handlers declare they publish the
  contract (``publishes = (...)``), ``receive`` for each context whose integration
  event handlers handle it (:mod:`tidings.application.event_flow`), with the handler
  ids and the consuming context's durable subscription.
- **messages**: the payload schema (pydantic's own JSON Schema of the contract in
  serialization mode, without the ``event_id``/``occurred_at`` fields the envelope
  carries; every field required, since writers write them all), the CloudEvents
  attributes as the transport writes them (binary-mode headers, or the structured-mode
  envelope with the payload as ``data``), and the correlation id.

Nested models' schemas are hoisted into ``components.schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tidings.application.event_flow import consumed_contracts, published_contracts
from tidings.contracts.asyncapi_bindings import (
    OPTIONAL_ATTRIBUTES,
    REQUIRED_ATTRIBUTES,
    BrokerLayout,
    Json,
    broker_layout,
)
from tidings.contracts.cloud_event import SPEC_VERSION
from tidings.contracts.cloudevents import JSON_CONTENT_TYPE
from tidings.contracts.integration_event import ENVELOPE_FIELDS, IntegrationEvent
from tidings.errors import ConfigurationError

if TYPE_CHECKING:
    from tidings.context import BoundedContext

ASYNCAPI_VERSION = "3.0.0"
_SCHEMAS_REF = "#/components/schemas/"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_ATTRIBUTE_MEANINGS = {
    "specversion": "CloudEvents specification version",
    "id": "event id (a UUID): the consumers' inbox key, so a redelivery has no effect",
    "source": "the producing context",
    "type": "the contract's event type",
    "time": "when the event occurred (RFC 3339, UTC)",
    "subject": "the partition key: events of one key are delivered in commit order",
    "correlationid": "id of the use case that started the flow, kept by every event it leads to",
    "causationid": "id of the event (or message) this one was published in reaction to",
    "traceparent": "W3C trace context of the publishing span",
    "tracestate": "W3C trace state",
    "dataversion": "the contract's version",
    "datacontenttype": "media type of data",
}


class _Flow:
    """Who publishes and who consumes each contract, over the contexts given."""

    def __init__(self, contexts: Sequence[BoundedContext]) -> None:
        self.contexts = list(contexts)
        self.published = {c.name: published_contracts(c) for c in contexts}
        self.consumed = {c.name: consumed_contracts(c) for c in contexts}
        # event type -> version -> contract class (a producer's class wins over a copy).
        self.types: dict[str, dict[int, type[IntegrationEvent]]] = {}
        for flows in (self.published, self.consumed):
            for contracts in flows.values():
                for contract in contracts:
                    versions = self.types.setdefault(contract.event_type, {})
                    versions.setdefault(contract.event_version, contract)

    def producers(self, event_type: str) -> list[str]:
        return [
            name
            for name, contracts in self.published.items()
            if any(c.event_type == event_type for c in contracts)
        ]


def asyncapi_document(
    contexts: Sequence[BoundedContext],
    *,
    broker_url: str | None = None,
    title: str | None = None,
    api_version: str = "1.0.0",
) -> Json:
    """The AsyncAPI 3.0.0 document (a JSON-ready dict) of what ``contexts`` exchange.

    :param broker_url: the broker to describe; by default the contexts' own
        ``broker_url``, which must then be the same for all of them.
    :param title: ``info.title``; by default the contexts' names.
    :param api_version: ``info.version``, the version of this API description.
    :raises ConfigurationError: contexts on different brokers and no ``broker_url``,
        or a broker with nothing to describe (``memory://``).
    """
    if not contexts:
        raise ConfigurationError("name at least one context to describe")
    layout = broker_layout(broker_url or _shared_broker(contexts))
    flow = _Flow(contexts)
    builder = _Builder(layout, flow)
    for event_type in sorted(flow.types):
        builder.add_channel(event_type)
    names = ", ".join(c.name for c in contexts)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title or f"tidings: {names}",
            "version": api_version,
            "description": (
                f"Integration events exchanged by {names}, written by tidings as "
                f"CloudEvents {SPEC_VERSION} in {layout.mode} mode. {layout.description}"
            ),
        },
        "defaultContentType": layout.content_type,
        "servers": layout.servers,
        "channels": builder.channels,
        "operations": builder.operations,
        "components": {
            "messages": builder.messages,
            "schemas": builder.schemas,
            "correlationIds": {"correlationId": _correlation_id(layout)},
        },
    }


def _shared_broker(contexts: Sequence[BoundedContext]) -> str:
    urls = {context.broker_url for context in contexts}
    if len(urls) > 1:
        raise ConfigurationError(
            "the contexts use different broker URLs; describe one broker at a time with "
            "--broker URL (broker_url=...)"
        )
    return urls.pop()


class _Builder:
    """Accumulates channels, operations, messages and schemas, one event type at a time."""

    def __init__(self, layout: BrokerLayout, flow: _Flow) -> None:
        self.layout = layout
        self.flow = flow
        self.channels: Json = {}
        self.operations: Json = {}
        self.messages: Json = {}
        self.schemas: Json = {}

    def add_channel(self, event_type: str) -> None:
        channel_id = _identifier(event_type)
        producers = self.flow.producers(event_type)
        versions = self.flow.types[event_type]
        message_ids = {version: f"{channel_id}.v{version}" for version in sorted(versions)}
        for version, message_id in message_ids.items():
            self.messages[message_id] = self._message(versions[version], producers)
        channel: Json = {
            "address": self.layout.address(event_type, producers),
            "title": event_type,
            "description": _channel_description(event_type, producers, self.layout),
            "messages": {
                message_id: {"$ref": f"#/components/messages/{message_id}"}
                for message_id in message_ids.values()
            },
        }
        bindings = self.layout.channel_bindings()
        if bindings is not None:
            channel["bindings"] = bindings
        self.channels[channel_id] = channel

        def refs(contracts: Sequence[type[IntegrationEvent]]) -> list[Json]:
            wanted = sorted({c.event_version for c in contracts if c.event_type == event_type})
            return [
                {"$ref": f"#/channels/{channel_id}/messages/{message_ids[version]}"}
                for version in wanted
            ]

        for name, published in self.flow.published.items():
            if any(c.event_type == event_type for c in published):
                self._operation("send", name, channel_id, refs(list(published)), published)
        for context in self.flow.contexts:
            consumed = self.flow.consumed[context.name]
            if any(c.event_type == event_type for c in consumed):
                self._operation(
                    "receive",
                    context.name,
                    channel_id,
                    refs(list(consumed)),
                    consumed,
                    group=context.consumer_group,
                )

    def _operation(
        self,
        action: str,
        context: str,
        channel_id: str,
        messages: list[Json],
        handlers: dict[type[IntegrationEvent], tuple[str, ...]],
        group: str | None = None,
    ) -> None:
        event_type = self.channels[channel_id]["title"]
        ids = sorted({h for c, hs in handlers.items() if c.event_type == event_type for h in hs})
        if action == "send":
            summary = f"{context} publishes {event_type} from {', '.join(ids)}"
        else:
            summary = f"{context} handles {event_type} with {', '.join(ids)}"
        operation: Json = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": messages,
            "summary": summary,
            "x-tidings-context": context,
            "x-tidings-handlers": ids,
        }
        if group is not None:
            operation["description"] = (
                f"Read through the {self.layout.subscription(group)}; each event is handled "
                "once (inbox), failures are retried, then dead-lettered."
            )
            operation["x-tidings-subscription"] = self.layout.subscription(group)
        else:
            operation["description"] = (
                "Written to the context's outbox in the transaction of the change that "
                "caused it, then sent by its relay once the broker confirms."
            )
        bindings = self.layout.operation_bindings(action, group)
        if bindings is not None:
            operation["bindings"] = bindings
        self.operations[f"{_identifier(context)}.{action}.{channel_id}"] = operation

    def _message(self, contract: type[IntegrationEvent], producers: Sequence[str]) -> Json:
        payload_name = f"{_identifier(contract.event_type)}.v{contract.event_version}.payload"
        self.schemas[payload_name] = self._payload_schema(contract)
        data = {"$ref": _SCHEMAS_REF + payload_name}
        attributes = _attribute_schemas(contract, producers, self.layout.mode)
        message: Json = {
            "name": contract.__name__,
            "title": f"{contract.event_type} v{contract.event_version}",
            "summary": _first_line(contract.__doc__)
            or f"{contract.__name__}, version {contract.event_version}",
            "contentType": self.layout.content_type,
            "correlationId": {"$ref": "#/components/correlationIds/correlationId"},
        }
        key = contract.__tidings_key_field__
        message["description"] = (
            f"Partition key: the {key!r} field." if key else "Partition key: the event id."
        ) + " Readers ignore fields they do not know."
        if self.layout.mode == "binary":
            message["headers"] = self._headers(attributes)
            message["payload"] = data
        else:
            if self.layout.extra_headers:
                message["headers"] = {
                    "type": "object",
                    "properties": dict(self.layout.extra_headers),
                    "required": list(self.layout.extra_headers),
                }
            message["payload"] = _envelope(attributes, data)
        bindings = self.layout.message_bindings(contract.event_type)
        if bindings is not None:
            message["bindings"] = bindings
        return message

    def _headers(self, attributes: dict[str, Json]) -> Json:
        prefix = self.layout.header_prefix
        properties = {prefix + name: schema for name, schema in attributes.items()}
        if self.layout.content_type_header:
            properties["content-type"] = {
                "type": "string",
                "const": JSON_CONTENT_TYPE,
                "description": "CloudEvents datacontenttype",
            }
        properties.update(self.layout.extra_headers)
        optional = {prefix + name for name in OPTIONAL_ATTRIBUTES}
        return {
            "type": "object",
            "properties": properties,
            "required": [name for name in properties if name not in optional],
        }

    def _payload_schema(self, contract: type[IntegrationEvent]) -> Json:
        schema = contract.model_json_schema(
            mode="serialization", ref_template=_SCHEMAS_REF + "{model}"
        )
        for name, definition in schema.pop("$defs", {}).items():
            known = self.schemas.setdefault(name, definition)
            if known != definition:
                raise ConfigurationError(
                    f"two different models are both named {name!r} in the contracts' "
                    "schemas; rename one of them so the document can hold both"
                )
        properties = {
            name: value
            for name, value in schema.get("properties", {}).items()
            if name not in ENVELOPE_FIELDS
        }
        schema["properties"] = properties
        # tidings writes every field, defaults and None included.
        schema["required"] = list(properties)
        return schema


def _attribute_schemas(
    contract: type[IntegrationEvent], producers: Sequence[str], mode: str
) -> dict[str, Json]:
    """The CloudEvents attributes of ``contract``'s events, as the encoders write them."""
    special: dict[str, Json] = {
        "specversion": {"const": SPEC_VERSION},
        "id": {"format": "uuid"},
        "type": {"const": contract.event_type},
        "time": {"format": "date-time"},
        "source": {"enum": list(producers)} if producers else {},
    }
    attributes: dict[str, Json] = {}
    for name in (*REQUIRED_ATTRIBUTES, *OPTIONAL_ATTRIBUTES):
        attributes[name] = {
            "type": "string",
            **special.get(name, {}),
            "description": _ATTRIBUTE_MEANINGS[name],
        }
    # Binary mode carries every attribute as a string; structured mode keeps the integer.
    version: Json = (
        {"type": "string", "const": str(contract.event_version)}
        if mode == "binary"
        else {"type": "integer", "const": contract.event_version}
    )
    attributes["dataversion"] = {**version, "description": _ATTRIBUTE_MEANINGS["dataversion"]}
    return attributes


def _envelope(attributes: dict[str, Json], data: Json) -> Json:
    properties = dict(attributes)
    properties["datacontenttype"] = {
        "type": "string",
        "const": JSON_CONTENT_TYPE,
        "description": _ATTRIBUTE_MEANINGS["datacontenttype"],
    }
    properties["data"] = data
    return {
        "type": "object",
        "description": f"A structured-mode CloudEvent {SPEC_VERSION} (JSON); data is the payload.",
        "properties": properties,
        "required": [name for name in properties if name not in OPTIONAL_ATTRIBUTES],
    }


def _correlation_id(layout: BrokerLayout) -> Json:
    where = (
        f"$message.header#/{layout.header_prefix}correlationid"
        if layout.mode == "binary"
        else "$message.payload#/correlationid"
    )
    return {
        "description": "The correlation id of the use case that started the flow; "
        "`tidings trace` follows it across contexts.",
        "location": where,
    }


def _channel_description(event_type: str, producers: Sequence[str], layout: BrokerLayout) -> str:
    who = ", ".join(producers) if producers else "no context described here"
    return f"{event_type}, published by {who}. {layout.description}"


def _identifier(text: str) -> str:
    return _ID_UNSAFE.sub("_", text)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()


__all__ = ["ASYNCAPI_VERSION", "asyncapi_document"]
