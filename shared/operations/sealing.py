"""Archive records sealed per data subject, so erasing a subject is deleting one key.

``docs/architecture.md``, "Data lifecycle". The archive is under Object Lock: an
object cannot be rewritten in place (a rewrite is a new version; the old one stays
locked), and finding every object of one payee among years of them would be a scan
of the archive. So each archived job keeps a **clear part** (the job with personal
data erased: amounts, currencies, dates, ids, states) and a **sealed part** (the whole
job, AES-256-GCM under its subject's data key). Erasure deletes the subject's key
from ``<prefix>-subject-keys``: every sealed part of that subject, in every object
and every version, becomes unreadable at once, and the record of the money stays.

The nonce is an HMAC of the plaintext under the key (deterministic, as in SIV
constructions): the same record sealed twice is the same bytes, so a replayed
archive write is the same object; different plaintexts get different nonces.
On AWS the data keys would be wrapped by a KMS key (``GenerateDataKey``); here they
are stored in a DynamoDB table encrypted at rest (the stack's KMS key when given).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.aws.clients import error_code
from shared.aws.dynamo import from_item, to_item

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

SUBJECT_KEYS = "subject-keys"
"""Short name of the table of data keys (``<prefix>-subject-keys``, PK ``subject_id``)."""
SUBJECT_ID = "subject_id"
ALGORITHM = "AES-256-GCM"


def seal(key: bytes, plaintext: bytes) -> dict[str, str]:
    nonce = hmac.new(key, plaintext, hashlib.sha256).digest()[:12]
    data = AESGCM(key).encrypt(nonce, plaintext, None)
    return {"alg": ALGORITHM, "nonce": base64.b64encode(nonce).decode(),
            "data": base64.b64encode(data).decode()}


def unseal(key: bytes, sealed: dict[str, str]) -> bytes:
    return AESGCM(key).decrypt(base64.b64decode(sealed["nonce"]),
                               base64.b64decode(sealed["data"]), None)


class SubjectKeys:
    """One data key per subject (a payee), created on first use, destroyed by erasure;
    an erased subject's item keeps the audit (who, when, the note), never a key again."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    async def _item(self, subject: str) -> dict[str, Any] | None:
        resp = await self.dynamodb.get_item(TableName=self.table, ConsistentRead=True,
                                            Key={SUBJECT_ID: {"S": subject}})
        item = resp.get("Item")
        return from_item(item) if item else None

    async def existing(self, subject: str) -> bytes | None:
        """The subject's key, or None (never had one, or erased)."""
        item = await self._item(subject)
        key = (item or {}).get("data_key")
        return bytes(key) if key else None

    async def key(self, subject: str) -> bytes | None:
        """The subject's key, made now if it has none; None once the subject is erased."""
        for _ in range(3):
            item = await self._item(subject)
            if item is not None:
                return bytes(item["data_key"]) if item.get("data_key") else None
            try:
                await self.dynamodb.put_item(
                    TableName=self.table, ConditionExpression="attribute_not_exists(subject_id)",
                    Item=to_item({SUBJECT_ID: subject, "data_key": os.urandom(32)}))
            except Exception as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
        raise RuntimeError(f"no stable data key for {subject}")

    async def erase(self, subject: str, audit: dict[str, Any]) -> bool:
        """Destroy the subject's key (keeping ``audit``); returns whether a key existed."""
        existed = await self.existing(subject) is not None
        await self.dynamodb.put_item(TableName=self.table,
                                     Item=to_item({SUBJECT_ID: subject, **audit}))
        return existed

    async def erasure(self, subject: str) -> dict[str, Any] | None:
        """The audit of the subject's erasure, if erased."""
        item = await self._item(subject)
        return item if item is not None and not item.get("data_key") else None
