"""moto's SQS without recounting the whole queue for every message it hands out.

Three things in moto's SQS backend make a receive cost the square of the queue's size
(moto 5.2.5, ``moto/sqs/models.py``):

- ``receive_message`` checks each message it is about to return against the queue's
  retention period, and reads that period through ``get_queue_attributes``;
- ``get_queue_attributes`` builds the queue's whole ``attributes`` property (which
  counts visible, in-flight and delayed messages by walking every message) three
  times per attribute asked for;
- every visibility and delay check takes the time through ``unix_time``, which builds
  two ``datetime`` objects and subtracts them.

A ``py-spy --gil`` profile of the emulator under the sweeper and operations tests
put 26 % of its busy time in ``Queue.attributes`` and 23 % in ``unix_time``
(``docs/emulator.md``, "SQS receives"). Here the retention period is read from the
queue, the attributes are built once per call, and the time is ``time.time()`` (the
same number: seconds since the epoch, UTC). Answers are unchanged; tied to the
pinned moto like the other patches (:mod:`shared.aws.emulator_patch`).
"""

from __future__ import annotations

import time
from typing import Any

from shared.aws.emulator_patch import check_version, once, require


@once
def install() -> None:
    """Put the three changes in place (idempotent); ``EmulatorPatchError`` if moto moved."""
    check_version()
    from moto.sqs import models as sqs_models

    models: Any = sqs_models
    backend: Any = require(models, "SQSBackend")
    shipped_unix_time: Any = require(models, "unix_time")
    require(models, "unix_time_millis")
    require(backend, "get_queue_attributes")
    require(backend, "is_message_valid_based_on_retention_period")

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(shipped_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def get_queue_attributes(self: Any, queue_name: str,
                             attribute_names: list[str]) -> dict[str, Any]:
        queue = self.get_queue(queue_name)
        if not attribute_names:
            return {}
        valid = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES,
                 *queue.KMS_ATTRIBUTES]
        invalid = next((name for name in attribute_names if name not in valid), None)
        if invalid or invalid == "":
            raise models.InvalidAttributeName(invalid)
        attributes: dict[str, Any] = queue.attributes      # built once, not per name
        if "All" in attribute_names:
            return attributes
        return {name: attributes[name] for name in attribute_names
                if attributes.get(name) is not None}

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str,
                                                   message: Any) -> bool:
        retention = self.get_queue(queue_name).message_retention_period
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis
    backend.get_queue_attributes = get_queue_attributes
    backend.is_message_valid_based_on_retention_period = \
        is_message_valid_based_on_retention_period
