"""Every supported version and variant: detected by namespace, its XSD compiles
with libxml2, and the per-version path table matches what that XSD declares."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest

from services.enrichment.bankfiles import formats
from services.enrichment.bankfiles.types import MessageType

TYPES = sorted(formats.MESSAGE_TYPES.values(), key=lambda t: t.name)
XSD = resources.files("services.enrichment.bankfiles").joinpath("xsd")


def declared(message_type: MessageType, relative: str) -> bool:
    layout = formats.LAYOUTS[message_type.family]
    return formats.schema_for(message_type).find(
        f"{layout.unit_path}/{relative}", namespaces={"": message_type.namespace}) is not None


def test_every_iso_version_from_the_oldest_in_use_to_the_newest() -> None:
    names = {t.name for t in TYPES if t.variant is None}
    assert names == {f"pain.002.001.{v:02d}" for v in range(3, 15)} | {
        f"camt.054.001.{v:02d}" for v in range(2, 13)}
    assert {t.name for t in TYPES if t.variant} == {"pain.002.001.03.ch.02"}


@pytest.mark.parametrize("message_type", TYPES, ids=[t.name for t in TYPES])
def test_paths_of_the_version_are_declared_in_its_xsd(message_type: MessageType) -> None:
    paths = formats.paths_for(message_type)
    formats.libxml2_schema_for(message_type)  # compiles, self-contained
    tx = "" if message_type.family == "pain.002" else "NtryDtls/TxDtls/"
    assert declared(message_type, f"{tx}{paths.creditor}/Nm")
    if message_type.family == "pain.002":
        assert all(declared(message_type, p) for p in paths.requested_date)
        old_creditor = "OrgnlTxRef/Cdtr/Nm" if message_type.version >= 9 else None
        old_date = "OrgnlTxRef/ReqdExctnDt/Dt" if message_type.version < 8 else None
    else:
        assert all(declared(message_type, f"NtryDtls/TxDtls/{p}") for p in paths.tx_amount)
        assert all(declared(message_type, p) for p in paths.entry_status)
        old_creditor = ("NtryDtls/TxDtls/RltdPties/Cdtr/Nm"
                        if message_type.version >= 7 else None)
        old_date = "Sts/Cd" if message_type.version < 7 else None
    # the other version's path is really absent: the table is not a list of guesses
    for other in (old_creditor, old_date):
        assert other is None or not declared(message_type, other)


def test_variant_is_validated_against_its_retargeted_base() -> None:
    ch = formats.MESSAGE_TYPES[
        "http://www.six-interbank-clearing.com/de/pain.002.001.03.ch.02.xsd"]
    text = formats.xsd_bytes(ch).decode()
    assert f'targetNamespace="{ch.namespace}"' in text
    assert "urn:iso:std:iso:20022:tech:xsd:pain.002.001.03" not in text
    assert "base" in ch.schema


def test_shipped_xsds_are_what_sources_records() -> None:
    sources = XSD.joinpath("SOURCES.md").read_text()
    listed = dict(re.findall(r"^\| (\S+\.xsd) \|.*\| ([0-9a-f]{64}) \|$", sources, re.M))
    shipped = {p.name for p in XSD.iterdir() if p.name.endswith(".xsd")}
    assert set(listed) == shipped
    for name, digest in listed.items():
        assert hashlib.sha256(XSD.joinpath(name).read_bytes()).hexdigest() == digest, name
    assert {t.xsd for t in TYPES} <= shipped
