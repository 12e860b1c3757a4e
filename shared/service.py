"""The service declaration: one frozen :class:`Service` in each ``services/<name>/``.

Everything that needs to know the services reads their declarations from the one
list in ``tools/stack.py`` (``SERVICES``): ``remitflow run`` (the build),
bootstrap (the job kinds and the resources a service owns), the IAM policies and
CDK roles (the grants), the container healthcheck and the dev runner (the port),
the benchmark and the tests. Adding a service is a folder with one declaration
(``docs/architecture.md``, "Adding a service"); this module names none.

The declaration stays cheap to import: ``build`` imports the service's code only
when called, so a process loads its own service and no other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.grants import Grant, GrantScope, job_kind_grants
from shared.pipeline.kind import JobKind
from shared.provision.resources import Resources
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.runtime import Builder


def _no_grants(scope: GrantScope) -> Sequence[Grant]:
    return ()


@dataclass(frozen=True)
class Service:
    """One service: what it runs, where it listens, what it may do and what it owns.

    Attributes:
        name: ``remitflow run NAME``; also its IAM role, policy file, log and
            metrics ``component`` label.
        port: its HTTP port (health, readiness, metrics, its API) unless
            ``REMITFLOW_HTTP_PORT`` says otherwise.
        build: given every job kind and the combined resources of the deployment
            (:func:`shared.provision.resources.combined`), the service's ``build`` (a
            :data:`~shared.runtime.Builder`); imports the service's code lazily.
        kinds: the job kinds it runs (intake, stream, tasks); each gets the pattern's
            grants (:func:`~shared.grants.job_kind_grants`) and a dead-letter depth
            gauge.
        grants: what it does beyond its kinds' pattern, resolved per prefix.
        resources: what it owns beyond its kinds (file drops, plain tables, owned
            resources such as an SES configuration set): static data, created by
            provisioning (``shared/provision``) and the CDK stack.
        console: the path of an operator console it serves, if any (the dev runner
            points there).
        settings: its settings model: the core (:class:`~shared.settings.Settings`)
            or a subclass in its folder with what only it reads; ``remitflow run``
            loads it, so each process validates its own variables (docs/configuration.md).
    """

    name: str
    port: int
    build: Callable[[Sequence[JobKind], Resources], Builder]
    kinds: tuple[JobKind, ...] = ()
    grants: Callable[[GrantScope], Sequence[Grant]] = _no_grants
    resources: Resources = field(default_factory=Resources)
    console: str | None = None
    settings: type[Settings] = Settings

    def all_grants(self, scope: GrantScope) -> list[Grant]:
        """Its kinds' pattern grants, then its own."""
        return [*(g for kind in self.kinds for g in job_kind_grants(kind, scope.prefix)),
                *self.grants(scope)]
