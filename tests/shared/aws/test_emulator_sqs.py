"""The emulator's SQS changes (``shared/aws/emulator_sqs.py``): moto's answers, without
building the queue's attributes once per message received or three times per name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.aws import emulator_sqs

ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every build of a queue's ``attributes`` (the walk over all its messages)."""
    from moto.sqs.models import Queue

    builds: list[str] = []
    shipped: Any = Queue.attributes

    def attributes(queue: Any) -> dict[str, Any]:
        builds.append(queue.name)
        return dict(shipped.fget(queue))

    emulator_sqs.install()
    monkeypatch.setattr(Queue, "attributes", property(attributes))
    yield builds


def _queue_with_every_kind_of_message(**attributes: str) -> Any:
    from moto.sqs.models import SQSBackend

    backend: Any = SQSBackend(REGION, ACCOUNT)
    backend.create_queue("q", **attributes)
    for i in range(12):
        backend.send_message("q", f"visible {i}")
    backend.send_message("q", "delayed", delay_seconds=60)
    backend.receive_message("q", 3, wait_seconds_timeout=0, visibility_timeout=60)
    return backend


@pytest.mark.unit
def test_queue_attributes_are_moto_s_built_once_per_call(counted: list[str]) -> None:
    backend = _queue_with_every_kind_of_message()
    queue = backend.get_queue("q")
    for names in (["All"], ["ApproximateNumberOfMessages"],
                  ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                   "ApproximateNumberOfMessagesDelayed", "VisibilityTimeout"],
                  ["RedrivePolicy"], ["All", "QueueArn"]):
        counted.clear()
        answer = backend.get_queue_attributes("q", names)
        assert len(counted) == 1, f"{names}: attributes built {len(counted)} times"
        every = queue.attributes
        expected = every if "All" in names else {
            n: every[n] for n in names if every.get(n) is not None}
        assert answer == expected
    assert backend.get_queue_attributes("q", ["All"])["ApproximateNumberOfMessages"] == 9
    assert backend.get_queue_attributes("q", ["ApproximateNumberOfMessagesNotVisible",
                                              "ApproximateNumberOfMessagesDelayed"]) \
        == {"ApproximateNumberOfMessagesNotVisible": 3, "ApproximateNumberOfMessagesDelayed": 1}
    assert backend.get_queue_attributes("q", []) == {}
    from moto.sqs.exceptions import InvalidAttributeName
    with pytest.raises(InvalidAttributeName):
        backend.get_queue_attributes("q", ["ApproximateNumberOfMessages", "NoSuchName"])


@pytest.mark.unit
def test_a_receive_walks_no_attributes_and_still_honours_retention(
        counted: list[str]) -> None:
    backend = _queue_with_every_kind_of_message(MessageRetentionPeriod="60")
    queue = backend.get_queue("q")
    expired = next(m for m in queue._messages if m.body == "visible 11")
    expired.sent_timestamp -= 61_000            # sent 61 s ago: past its 60 s retention
    counted.clear()
    got = backend.receive_message("q", 10, wait_seconds_timeout=0, visibility_timeout=30)
    assert counted == [], "a receive builds no attributes"
    assert [m.body for m in got] == [f"visible {i}" for i in range(3, 11)]


@pytest.mark.unit
def test_the_clock_is_the_epoch_in_seconds_as_moto_s() -> None:
    import datetime

    from moto.core import utils
    from moto.sqs import models as sqs_models

    models: Any = sqs_models
    emulator_sqs.install()
    before = time.time()
    now = models.unix_time()
    assert before <= now <= time.time()
    assert abs(models.unix_time_millis() - 1000 * utils.unix_time()) < 1000
    moment = datetime.datetime(2026, 12, 4, 5, 0, 0)
    assert models.unix_time(moment) == utils.unix_time(moment)
