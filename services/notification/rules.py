"""Which notification a payee gets: ordered rules loaded from YAML (data, not code).

A rule file has three top-level keys::

    regions:            # optional: region name -> ISO 3166 alpha-2 country codes
      EU: [AT, BE, ...]
    rules:              # tried in order, the first match wins
      - name: author-royalty
        payee_type: author          # a value or a list of values; omitted = any
        purpose: royalty
        partner_status: SETTLED
        country: [US, CA]           # country and region together match their union
        region: EU
        template: royalty_settled   # result: template id (must exist in templates/en)
        channel: email              # optional override of the payee's channel
    default:            # mandatory: what matches when no rule does
      template: payment_settled

Everything is checked when the file is loaded (unknown keys, values, regions,
template ids, duplicate names), and the error names the file and the rule index,
so a bad deployment fails at start-up instead of at the first payment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from babel import Locale
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.domain.advice import Channel, PartnerStatus, PayeeType, Purpose, RemittanceAdvice

PACKAGE_DIR: Final = Path(__file__).resolve().parent
DEFAULT_RULES_PATH: Final = PACKAGE_DIR / "rules.yaml"
DEFAULT_TEMPLATES_DIR: Final = PACKAGE_DIR / "templates"
ROOT_TEMPLATE_LOCALE: Final = "en"
TEMPLATE_ID_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# CLDR "territories" that are not countries a payee can live in.
_NOT_COUNTRIES: Final = frozenset({"EU", "EZ", "UN", "ZZ", "QO", "XA", "XB"})
_COUNTRIES: Final = frozenset(
    str(code) for code in Locale.parse("en").territories
    if len(str(code)) == 2 and str(code).isalpha() and code not in _NOT_COUNTRIES)


class ConfigError(Exception):
    """Notification configuration (rules or templates) that cannot be used.

    Raised at load time; the message names the file and, for rules, the index.
    """


def _check_country(code: str) -> str:
    if code not in _COUNTRIES:
        raise ValueError(f"{code!r} is not an ISO 3166 alpha-2 country code (upper case)")
    return code


def _check_template_id(value: str) -> str:
    if not TEMPLATE_ID_RE.match(value):
        raise ValueError(f"{value!r} is not a template id (lower-case letters, digits, _)")
    return value


def _listify(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


NonEmpty = Field(min_length=1)


class _ResultModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    template: str
    channel: Channel | None = None

    @field_validator("template")
    @classmethod
    def _template_id(cls, value: str) -> str:
        return _check_template_id(value)


class _RuleModel(_ResultModel):
    payee_type: Annotated[list[PayeeType], NonEmpty] | None = None
    purpose: Annotated[list[Purpose], NonEmpty] | None = None
    partner_status: Annotated[list[PartnerStatus], NonEmpty] | None = None
    country: Annotated[list[str], NonEmpty] | None = None
    region: Annotated[list[str], NonEmpty] | None = None

    @field_validator("payee_type", "purpose", "partner_status", "country", "region",
                     mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _listify(value)

    @field_validator("country")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_check_country(c) for c in value]


class _DocumentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regions: dict[str, Annotated[list[str], NonEmpty]] = Field(default_factory=dict)
    rules: list[Any] = Field(default_factory=list)
    default: Any

    @field_validator("regions")
    @classmethod
    def _region_countries(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, codes in value.items():
            if not re.match(r"^[A-Z][A-Z0-9_]{1,31}$", name):
                raise ValueError(f"region name {name!r} must be upper case (EU, APAC, ...)")
            for code in codes:
                try:
                    _check_country(code)
                except ValueError as exc:
                    raise ValueError(f"region {name}: {exc}") from None
        return value


@dataclass(frozen=True)
class Choice:
    """The outcome of the rules for one advice."""

    template_id: str
    channel: Channel
    rule_name: str


@dataclass(frozen=True)
class Rule:
    """One compiled rule; ``None`` criteria match anything."""

    name: str
    template_id: str
    channel: Channel | None = None
    payee_types: frozenset[str] | None = None
    purposes: frozenset[str] | None = None
    partner_statuses: frozenset[str] | None = None
    countries: frozenset[str] | None = None

    def matches(self, advice: RemittanceAdvice) -> bool:
        checks = (
            (self.payee_types, advice.payee.payee_type),
            (self.purposes, advice.purpose),
            (self.partner_statuses, advice.partner_status),
            (self.countries, advice.payee.country.strip().upper()),
        )
        return all(allowed is None or value in allowed for allowed, value in checks)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    return "; ".join(parts)


def template_ids_in(templates_dir: Path, locale: str = ROOT_TEMPLATE_LOCALE) -> frozenset[str]:
    """Template ids with a subject file in ``templates_dir/<locale>``."""
    folder = templates_dir / locale
    if not folder.is_dir():
        return frozenset()
    suffix = ".subject.txt"
    return frozenset(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))


@dataclass(frozen=True)
class RuleSet:
    """Ordered rules plus a default; immutable once loaded."""

    rules: tuple[Rule, ...]
    default: Rule
    source: str = "<memory>"

    @property
    def template_ids(self) -> frozenset[str]:
        """Every template id the rules can choose."""
        return frozenset(r.template_id for r in (*self.rules, self.default))

    def choose(self, advice: RemittanceAdvice) -> Choice:
        """The first matching rule's template and channel (the payee's channel if not set)."""
        rule = next((r for r in self.rules if r.matches(advice)), self.default)
        return Choice(template_id=rule.template_id, channel=rule.channel or advice.payee.channel,
                      rule_name=rule.name)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_RULES_PATH, *,
             templates_dir: str | Path | None = DEFAULT_TEMPLATES_DIR) -> RuleSet:
        """Read and validate a rules file.

        Args:
            path: The YAML file.
            templates_dir: Every template id must exist in ``<templates_dir>/en``;
                ``None`` skips that check (the renderer repeats it anyway).

        Raises:
            ConfigError: The file is missing, not YAML, or any rule is invalid;
                the message names the file and the rule index.
        """
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read rules file: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: expected a mapping with 'rules' and 'default'")
        known = None if templates_dir is None else template_ids_in(Path(templates_dir))
        return cls.from_mapping(raw, source=source, known_templates=known)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str = "<memory>",
                     known_templates: Iterable[str] | None = None) -> RuleSet:
        """Validate an already-parsed rules document (see :meth:`load`)."""
        try:
            doc = _DocumentModel.model_validate(dict(raw))
        except ValidationError as exc:
            raise ConfigError(f"{source}: {_describe(exc)}") from exc
        if not isinstance(doc.rules, list):
            raise ConfigError(f"{source}: 'rules' must be a list")
        known = None if known_templates is None else frozenset(known_templates)
        rules: list[Rule] = []
        names: set[str] = set()
        for index, item in enumerate(doc.rules):
            where = f"{source}: rules[{index}]"
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                where += f" ({item['name']})"
            try:
                model = _RuleModel.model_validate(item)
            except ValidationError as exc:
                raise ConfigError(f"{where}: {_describe(exc)}") from exc
            rule = _compile(model, f"rule-{index}", doc.regions, where, known)
            if rule.name in names:
                raise ConfigError(f"{where}: duplicate rule name {rule.name!r}")
            names.add(rule.name)
            rules.append(rule)
        where = f"{source}: default"
        if not isinstance(doc.default, Mapping):
            raise ConfigError(f"{where}: must be a mapping with at least 'template'")
        try:
            default_model = _ResultModel.model_validate(doc.default)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc)}") from exc
        default = _compile(default_model, "default", doc.regions, where, known)
        return cls(rules=tuple(rules), default=default, source=source)


def _compile(model: _ResultModel, fallback_name: str, regions: Mapping[str, list[str]],
             where: str, known: frozenset[str] | None) -> Rule:
    if known is not None and model.template not in known:
        raise ConfigError(f"{where}: unknown template {model.template!r} "
                          f"(known: {', '.join(sorted(known)) or 'none'})")
    if not isinstance(model, _RuleModel):
        return Rule(name=model.name or fallback_name, template_id=model.template,
                    channel=model.channel)
    countries: set[str] | None = None
    if model.country is not None or model.region is not None:
        countries = set(model.country or ())
        for region in model.region or ():
            if region not in regions:
                raise ConfigError(f"{where}: unknown region {region!r} "
                                  f"(defined: {', '.join(sorted(regions)) or 'none'})")
            countries.update(regions[region])

    def _set(values: list[str] | None) -> frozenset[str] | None:
        return None if values is None else frozenset(values)

    return Rule(
        name=model.name or fallback_name, template_id=model.template, channel=model.channel,
        payee_types=_set(list(model.payee_type) if model.payee_type else None),
        purposes=_set(list(model.purpose) if model.purpose else None),
        partner_statuses=_set(list(model.partner_status) if model.partner_status else None),
        countries=None if countries is None else frozenset(countries))
