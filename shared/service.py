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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.grants import Grant, GrantScope, job_kind_grants
from shared.pipeline.kind import JobKind

if TYPE_CHECKING:
    from shared.files.drop import FileDrop
    from shared.runtime import Builder
    from shared.settings import Settings


@dataclass(frozen=True)
class Resources:
    """Resources a service owns beyond its job kinds' (created by bootstrap and CDK).

    Attributes:
        drops: buckets whose new objects are announced on a queue the service reads.
    """

    drops: tuple[FileDrop, ...] = ()


def _no_grants(scope: GrantScope) -> Sequence[Grant]:
    return ()


def _no_resources(settings: Settings) -> Resources:
    return Resources()


DropsOf = Callable[["Settings"], Sequence["FileDrop"]]
"""Every file drop of the deployment, from settings (bucket names may be settings)."""


@dataclass(frozen=True)
class Service:
    """One service: what it runs, where it listens, what it may do and what it owns.

    Attributes:
        name: ``remitflow run NAME``; also its IAM role, policy file, log and
            metrics ``component`` label.
        port: its HTTP port (health, readiness, metrics, its API) unless
            ``REMITFLOW_HTTP_PORT`` says otherwise.
        build: given every job kind and every file drop of the deployment, the
            service's ``build`` (a :data:`~shared.runtime.Builder`); imports the
            service's code lazily.
        kinds: the job kinds it runs (intake, stream, tasks); each gets the pattern's
            grants (:func:`~shared.grants.job_kind_grants`) and a dead-letter depth
            gauge.
        grants: what it does beyond its kinds' pattern, resolved per prefix.
        resources: what it owns beyond its kinds (file drops), from settings.
        console: the path of an operator console it serves, if any (the dev runner
            points there).
    """

    name: str
    port: int
    build: Callable[[Sequence[JobKind], DropsOf], Builder]
    kinds: tuple[JobKind, ...] = ()
    grants: Callable[[GrantScope], Sequence[Grant]] = _no_grants
    resources: Callable[[Settings], Resources] = _no_resources
    console: str | None = None

    def all_grants(self, scope: GrantScope) -> list[Grant]:
        """Its kinds' pattern grants, then its own."""
        return [*(g for kind in self.kinds for g in job_kind_grants(kind, scope.prefix)),
                *self.grants(scope)]
