"""SES sending events in the embedded emulator, published the way SES publishes them.

moto accepts ``SendEmail`` with a configuration set but publishes no sending
events, so locally an e-mail whose send outcome is unknown could never be settled
by its events. :func:`install` adds what SES does (``docs/architecture.md``, "SES
events"):

* for every e-mail SES accepted that names a configuration set with an enabled SNS
  event destination: a ``Send`` event, then a ``Delivery`` event (each only when the
  destination's ``MatchingEventTypes`` lists it), in SES's event JSON with the
  message's tags (plus SES's own ``ses:*`` tags), published to the destination's
  topic shortly *after* ``SendEmail`` answered, as SES does;
* when an SNS event destination is created: SES's plain-text validation notice,
  published once to its topic.

It wraps moto's SES response handlers in this process (the emulator runs moto's
server in-process, ``shared/aws/emulator.py``); moto's models are read, never
changed. Events are published by one daemon thread, in order.

:func:`routes` answers ``GET /_aws/ses`` (LocalStack's path) with the e-mails SES
accepted, read from SES's own backend: the tests' and the soak's mailbox. moto's
``/moto-api/data.json`` holds them too, but serialises every model of every service
on each call (seconds, then a timeout, with a soak's thousands of items).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.aws.emulator_patch import once

MAILBOX_PATH = "/_aws/ses"
VALIDATION_MESSAGE = "Successfully validated SNS topic for Amazon SES event publishing."
EVENT_DELAY_S = 0.2          # SES publishes after it answered SendEmail
SENDING_EVENTS = ("Send", "Delivery")

log = logging.getLogger(__name__)


def ses_event(event_type: str, *, message_id: str, source: str, destinations: list[str],
              subject: str, tags: dict[str, list[str]], account: str, region: str,
              at: datetime) -> dict[str, Any]:
    """One SES sending event as SES's event publishing writes it (JSON object)."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    event: dict[str, Any] = {
        "eventType": event_type,
        "mail": {
            "timestamp": stamp, "source": source,
            "sourceArn": f"arn:aws:ses:{region}:{account}:identity/{source}",
            "sendingAccountId": account, "messageId": message_id,
            "destination": destinations, "headersTruncated": False,
            "commonHeaders": {"from": [source], "to": destinations,
                              "messageId": message_id, "subject": subject},
            "tags": tags},
    }
    if event_type == "Delivery":
        event["delivery"] = {"timestamp": stamp, "processingTimeMillis": 0,
                             "recipients": destinations,
                             "smtpResponse": "250 2.0.0 OK (emulator)",
                             "reportingMTA": "emulator.remitflow.local"}
    else:
        event[event_type[0].lower() + event_type[1:]] = {}
    return event


class _Publisher:
    """One daemon thread publishing (due, topic, body) in order to moto's SNS."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[float, str, str, str, str]] = queue.Queue()
        threading.Thread(target=self._run, name="emulator-ses-events", daemon=True).start()

    def put(self, account: str, region: str, topic_arn: str, body: str,
            delay_s: float = EVENT_DELAY_S) -> None:
        self._queue.put((time.monotonic() + delay_s, account, region, topic_arn, body))

    def _run(self) -> None:
        from moto.sns.models import sns_backends

        while True:
            due, account, region, topic_arn, body = self._queue.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                sns_backends[account][region].publish(body, arn=topic_arn)
            except Exception as exc:     # the topic went away: SES drops the event too
                log.warning("emulator SES event not published to %s: %r", topic_arn, exc)


def _tags(response: Any, config_set: str, source: str) -> dict[str, list[str]]:
    tags: dict[str, list[str]] = {
        "ses:configuration-set": [config_set],
        "ses:from-domain": [source.rpartition("@")[2]],
        "ses:source-ip": ["127.0.0.1"], "ses:caller-identity": ["emulator"]}
    for tag in response._get_param("Tags", []) or []:
        if isinstance(tag, dict) and tag.get("Name"):
            tags[str(tag["Name"])] = [str(tag.get("Value", ""))]
    return tags


def _destinations(response: Any) -> list[str]:
    dest = response._get_param("Destination", None)
    if isinstance(dest, dict):
        return [str(a) for key in ("ToAddresses", "CcAddresses", "BccAddresses")
                for a in dest.get(key) or []]
    return [str(a) for a in response._get_param("Destinations", []) or []]


def _after_send(publisher: _Publisher, response: Any, result: Any) -> None:
    """Queue the accepted e-mail's events for its configuration set's SNS destination."""
    config_set = response._get_param("ConfigurationSetName")
    if not config_set:
        return
    backend = response.backend
    destination = backend.config_set_event_destination.get(config_set) or {}
    topic = (destination.get("SNSDestination") or {}).get("TopicARN")
    enabled = str(destination.get("Enabled", True)).lower() != "false"
    if not topic or not enabled:
        return
    matching = {str(t).lower() for t in destination.get("MatchingEventTypes") or []}
    source = str(response._get_param("Source") or "")
    message_id = str(result.result["MessageId"])
    for event_type in SENDING_EVENTS:
        if event_type.lower() not in matching:
            continue
        event = ses_event(event_type, message_id=message_id, source=source,
                          destinations=_destinations(response),
                          subject=str(response._get_param("Message.Subject.Data") or ""),
                          tags=_tags(response, config_set, source),
                          account=response.current_account, region=response.region,
                          at=datetime.now(UTC))
        publisher.put(response.current_account, response.region, topic, json.dumps(event))


def mailbox() -> list[dict[str, Any]]:
    """Every e-mail SES accepted (``SendEmail``), in every account and region, oldest
    first, as ``{"id", "source", "subject", "body", "destinations"}``."""
    from moto.ses.models import Message, ses_backends

    found: list[dict[str, Any]] = []
    for by_region in list(ses_backends.values()):
        for backend in list(by_region.values()):
            found.extend({"id": m.id, "source": m.source, "subject": m.subject,
                          "body": m.body, "destinations": m.destinations}
                         for m in list(backend.sent_messages) if isinstance(m, Message))
    return found


def routes(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware: ``GET /_aws/ses`` answers ``{"messages": mailbox()}``."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != MAILBOX_PATH or environ.get("REQUEST_METHOD") != "GET":
            return app(environ, start_response)
        body = json.dumps({"messages": mailbox()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return wsgi


@once
def install() -> None:
    """Wrap moto's SES responses in this process (idempotent)."""
    from moto.ses.responses import EmailResponse

    publisher = _Publisher()

    def sending(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def send(self: Any) -> Any:
            result = original(self)       # raises when SES refuses: no events
            _after_send(publisher, self, result)
            return result
        return send

    create_destination = EmailResponse.create_configuration_set_event_destination

    def create(self: Any) -> Any:
        result = create_destination(self)
        destination = self._get_param("EventDestination", {}) or {}
        topic = (destination.get("SNSDestination") or {}).get("TopicARN")
        if topic:
            publisher.put(self.current_account, self.region, topic, VALIDATION_MESSAGE)
        return result

    patched: Any = EmailResponse
    patched.send_email = sending(EmailResponse.send_email)
    patched.send_raw_email = sending(EmailResponse.send_raw_email)
    patched.create_configuration_set_event_destination = create
