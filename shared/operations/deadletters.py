"""Dead-letter queues: look at what is in them, put it back, or throw it away.

The one implementation behind ``/v1/deadletters`` and the console's dead-letter
pages (mechanism only: it knows queues and ``remitflow.*`` attributes, not what a
message means).

* **Peek** receives with a short visibility and hands every message straight back
  (``ChangeMessageVisibility`` 0), so looking never consumes. SQS returns at most
  ten messages per receive in no guaranteed order: a peek reads until a receive
  comes back empty or ``limit`` messages were seen.
* **Replay** sends the body (and its non-``remitflow.*`` attributes, e.g.
  ``traceparent``) to the message's source queue, then deletes it from the DLQ,
  one receive (ten messages) at a time while it holds them: never a message by a
  receipt handle a later receive (a peek) made stale.
  Send before delete: a crash between the two replays twice, which the intake
  absorbs (a duplicate with the same content is acknowledged, not re-run). The
  source is the ``remitflow.source_queue`` attribute or the DLQ's name without
  ``-dlq``, and must be one of the queues this instance was given: an attribute
  never routes a message anywhere else.
* **Delete** removes messages by id, or every message with a given reason.

Message ids are stable across receives, so an operator's selection made from a
peek still names the same messages when the action runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.aws.clients import QueueUrls
from shared.aws.names import Names
from shared.logs import get_logger
from shared.redact import mask_body, mask_text

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = get_logger(__name__)
PEEK_VISIBILITY_S = 5
ACT_VISIBILITY_S = 30
PEEK_LIMIT = 100
NO_REASON = "(none)"


class UnknownQueue(LookupError):
    """Not one of the dead-letter queues this instance looks after."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as an operator sees it (body masked, never the raw one)."""

    message_id: str
    reason: str
    detail: str
    source_queue: str
    request_id: str | None
    sent_at: float | None
    receive_count: int
    size: int
    body: str = field(repr=False)

    def age_s(self, now: float | None = None) -> float | None:
        return None if self.sent_at is None else max(0.0, (now or time.time()) - self.sent_at)

    def as_dict(self, *, with_body: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id, "reason": self.reason, "detail": self.detail,
            "source_queue": self.source_queue, "request_id": self.request_id,
            "sent_at": self.sent_at, "age_s": self.age_s(), "receive_count": self.receive_count,
            "size": self.size}
        if with_body:
            out["body"] = self.body
        return out


@dataclass(frozen=True)
class Depth:
    """One DLQ's depth and the age of the oldest message a peek saw."""

    queue: str
    source: str
    visible: int
    in_flight: int
    oldest_age_s: float | None


@dataclass
class ActionResult:
    """What replay or delete did, with the depth before and after."""

    action: str
    queue: str
    before: int
    after: int
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "queue": self.queue, "before": self.before,
                "after": self.after, "done": self.done, "failed": self.failed}


def _attr(message: MessageTypeDef, name: str) -> str | None:
    attrs: dict[str, Any] = dict(message.get("MessageAttributes") or {})
    value = attrs.get(name, {}).get("StringValue")
    return str(value) if value is not None else None


def _body_request_id(body: str) -> str | None:
    """The body's top-level ``request_id`` when it is a JSON object that has one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    return mask_text(value)[:128] if isinstance(value, str) else None


class DeadLetters:
    """The DLQs of ``sources`` (source queue names; each DLQ is ``<source>-dlq``)."""

    def __init__(self, sqs: SQSClient, sources: Sequence[str]) -> None:
        self.sqs = sqs
        self.urls = QueueUrls(sqs)
        self.sources = {Names.dlq(s): s for s in sources}

    @property
    def queues(self) -> list[str]:
        return sorted(self.sources)

    def _check(self, queue: str) -> str:
        if queue not in self.sources:
            raise UnknownQueue(f"unknown dead-letter queue {queue!r}: one of {self.queues}")
        return queue

    def _letter(self, queue: str, m: MessageTypeDef) -> DeadLetter:
        sent = m.get("Attributes", {}).get("SentTimestamp")
        source = _attr(m, "remitflow.source_queue") or self.sources[queue]
        body = m.get("Body", "")
        return DeadLetter(
            message_id=m["MessageId"], reason=_attr(m, "remitflow.reason") or NO_REASON,
            detail=mask_text(_attr(m, "remitflow.detail") or ""), source_queue=source,
            request_id=_attr(m, "remitflow.request_id") or _body_request_id(body),
            sent_at=int(sent) / 1000 if sent else None,
            receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
            size=len(body.encode()), body=mask_body(body))

    async def depth(self, queue: str) -> tuple[int, int]:
        """(visible, in flight) from the queue's approximate counters."""
        attrs = (await self.sqs.get_queue_attributes(
            QueueUrl=await self.urls.url(self._check(queue)),
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"])).get("Attributes", {})
        return (int(attrs.get("ApproximateNumberOfMessages", 0)),
                int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)))

    async def depths(self, *, oldest_from: int = 10) -> list[Depth]:
        """Every DLQ's depth; the oldest age comes from a peek of up to ``oldest_from``."""
        out = []
        for queue in self.queues:
            visible, in_flight = await self.depth(queue)
            oldest = None
            if visible:
                ages = [a for a in (m.age_s() for m in await self.peek(queue, limit=oldest_from))
                        if a is not None]
                oldest = max(ages) if ages else None
            out.append(Depth(queue, self.sources[queue], visible, in_flight, oldest))
        return out

    async def _visit(self, queue: str, visibility_s: int, limit: int,
                     take: Callable[[MessageTypeDef], bool]) -> list[MessageTypeDef]:
        """Receive until empty or ``limit`` seen; hand back those ``take`` refuses.

        Returns the taken messages, still invisible for ``visibility_s``.
        """
        url = await self.urls.url(self._check(queue))
        seen: set[str] = set()
        taken: list[MessageTypeDef] = []
        held: list[MessageTypeDef] = []
        try:
            while len(seen) < limit:
                resp = await self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)),
                    WaitTimeSeconds=0, VisibilityTimeout=visibility_s,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"])
                fresh = [m for m in resp.get("Messages", []) if m["MessageId"] not in seen]
                if not fresh:
                    break
                for m in fresh:
                    seen.add(m["MessageId"])
                    (taken if take(m) else held).append(m)
        finally:
            await self._release(url, held)
        return taken

    async def _release(self, url: str, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), 10):
            entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                                   "VisibilityTimeout": 0}
                                  for i, m in enumerate(messages[start:start + 10])]
            try:
                await self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
            except Exception as exc:  # they reappear after the short visibility anyway
                log.warning("deadletters.release_failed", error=str(exc))

    async def peek(self, queue: str, *, limit: int = PEEK_LIMIT) -> list[DeadLetter]:
        """Up to ``limit`` messages, oldest first; every one is handed straight back."""
        letters: list[DeadLetter] = []

        def see(m: MessageTypeDef) -> bool:
            letters.append(self._letter(queue, m))
            return False

        await self._visit(queue, PEEK_VISIBILITY_S, limit, see)
        return sorted(letters, key=lambda d: d.sent_at or 0)

    async def get(self, queue: str, message_id: str) -> DeadLetter | None:
        """One message (masked body) by id, or ``None``; handed straight back."""
        found: list[DeadLetter] = []

        def see(m: MessageTypeDef) -> bool:
            if m["MessageId"] == message_id:
                found.append(self._letter(queue, m))
            return False

        await self._visit(queue, PEEK_VISIBILITY_S, PEEK_LIMIT * 10, see)
        return found[0] if found else None

    def _selector(self, message_ids: Collection[str] | None,
                  reason: str | None) -> Callable[[MessageTypeDef], bool]:
        if not message_ids and not reason:
            raise ValueError("name the messages (ids) or a reason")
        ids = set(message_ids or ())

        def take(m: MessageTypeDef) -> bool:
            if ids:
                return m["MessageId"] in ids
            return (_attr(m, "remitflow.reason") or NO_REASON) == reason

        return take

    async def _act(self, queue: str, action: str, message_ids: Collection[str] | None,
                   reason: str | None, limit: int,
                   work: Callable[[str, list[MessageTypeDef], ActionResult], Awaitable[None]]
                   ) -> ActionResult:
        """Receive, select and act one receive (≤ 10 messages) at a time.

        What a batch works on stays invisible for the whole of its work: it is acted on
        right after its own receive, by its own receipt handles, and its visibility is
        extended first if the batch ever gets near the timeout. So a peek meanwhile
        never gets a message this action holds, and a message is never deleted by a
        handle a later receive made stale (which would leave it behind, replayed).
        """
        before = (await self.depth(queue))[0]
        result = ActionResult(action, queue, before, before)
        url = await self.urls.url(self._check(queue))
        take = self._selector(message_ids, reason)
        seen: set[str] = set()
        passed: list[MessageTypeDef] = []  # not selected: held until the scan ends
        try:
            while len(seen) < limit:
                received_at = time.monotonic()
                resp = await self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)),
                    WaitTimeSeconds=0, VisibilityTimeout=ACT_VISIBILITY_S,
                    MessageAttributeNames=["All"],
                    MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"])
                messages = resp.get("Messages", [])
                fresh = [m for m in messages if m["MessageId"] not in seen]
                passed += [m for m in messages if m["MessageId"] in seen]
                if not fresh:
                    break
                seen.update(m["MessageId"] for m in fresh)
                taken = [m for m in fresh if take(m)]
                passed += [m for m in fresh if not take(m)]
                if time.monotonic() - received_at > ACT_VISIBILITY_S / 3:
                    taken = await self._extend(url, taken, result)
                if taken:
                    await self._holding(url, taken, result, work)
        finally:
            await self._release(url, passed)
        result.after = (await self.depth(queue))[0]
        return result

    async def _holding(self, url: str, taken: list[MessageTypeDef], result: ActionResult,
                       work: Callable[[str, list[MessageTypeDef], ActionResult],
                                      Awaitable[None]]) -> None:
        """Run ``work`` on ``taken`` while a heartbeat keeps them invisible.

        Every ``ACT_VISIBILITY_S / 3`` the hold is extended; a message whose hold could
        not be extended is marked failed, and :meth:`_delete_batch` leaves it alone.
        """
        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(ACT_VISIBILITY_S / 3)
                await self._extend(url, [m for m in taken
                                         if m["MessageId"] not in result.done], result)

        beat = asyncio.create_task(heartbeat())
        try:
            await work(url, taken, result)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat

    async def _extend(self, url: str, taken: list[MessageTypeDef],
                      result: ActionResult) -> list[MessageTypeDef]:
        """Keep holding ``taken``; a message whose hold cannot be extended is left alone."""
        entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"],
                               "VisibilityTimeout": ACT_VISIBILITY_S}
                              for i, m in enumerate(taken)]
        if not entries:
            return taken
        resp = await self.sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
        lost = {int(f["Id"]) for f in resp.get("Failed", [])}
        for i in lost:
            result.failed[taken[i]["MessageId"]] = "hold expired; not acted on, try again"
        return [m for i, m in enumerate(taken) if i not in lost]

    async def _delete_batch(self, url: str, messages: Sequence[MessageTypeDef],
                            result: ActionResult) -> None:
        messages = [m for m in messages if m["MessageId"] not in result.failed]  # hold lost
        if not messages:
            return
        entries: list[Any] = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                              for i, m in enumerate(messages)]
        resp = await self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        for failure in resp.get("Failed", []):
            m = messages[int(failure["Id"])]
            result.failed[m["MessageId"]] = f"not deleted: {failure.get('Code', '?')}"
        failed = {int(f["Id"]) for f in resp.get("Failed", [])}
        result.done += [m["MessageId"] for i, m in enumerate(messages) if i not in failed]

    async def replay(self, queue: str, *, message_ids: Collection[str] | None = None,
                     reason: str | None = None, actor: str = "-",
                     limit: int = 1000) -> ActionResult:
        """Send the selected messages back to their source queue, then delete them here
        (per receive of ten, while they are held: see :meth:`_act`)."""
        source_of = self.sources[self._check(queue)]

        async def work(url: str, taken: list[MessageTypeDef], result: ActionResult) -> None:
            sendable = []
            for m in taken:
                source = _attr(m, "remitflow.source_queue") or source_of
                if source != source_of:
                    result.failed[m["MessageId"]] = f"source {source!r} is not this DLQ's queue"
                else:
                    sendable.append(m)
            await self._release(url, [m for m in taken if m not in sendable])
            if not sendable:
                return
            entries: list[Any] = []
            for i, m in enumerate(sendable):
                attrs = {k: v for k, v in m.get("MessageAttributes", {}).items()
                         if not k.startswith("remitflow.")}
                entries.append({"Id": str(i), "MessageBody": m.get("Body", ""),
                                **({"MessageAttributes": attrs} if attrs else {})})
            sent = await self.sqs.send_message_batch(QueueUrl=await self.urls.url(source_of),
                                                     Entries=entries)
            unsent = {int(f["Id"]): f.get("Code", "?") for f in sent.get("Failed", [])}
            for i, code in unsent.items():
                result.failed[sendable[i]["MessageId"]] = f"not sent: {code}"
            await self._release(url, [m for i, m in enumerate(sendable) if i in unsent])
            await self._delete_batch(url, [m for i, m in enumerate(sendable)
                                           if i not in unsent], result)

        result = await self._act(queue, "replay", message_ids, reason, limit, work)
        log.info("deadletters.replayed", queue=queue, count=len(result.done), actor=actor,
                 reason=reason, failed=len(result.failed))
        return result

    async def delete(self, queue: str, *, message_ids: Collection[str] | None = None,
                     reason: str | None = None, actor: str = "-",
                     limit: int = 1000) -> ActionResult:
        """Delete the selected messages from the DLQ (gone for good)."""
        async def work(url: str, taken: list[MessageTypeDef], result: ActionResult) -> None:
            await self._delete_batch(url, taken, result)

        result = await self._act(queue, "delete", message_ids, reason, limit, work)
        log.warning("deadletters.deleted", queue=queue, count=len(result.done), actor=actor,
                    reason=reason)
        return result
