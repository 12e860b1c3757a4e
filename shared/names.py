"""Resource names (DESIGN §5), derived from one prefix so tests can isolate themselves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    prefix: str = "remitflow"

    def _n(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    # queues
    @property
    def remittance_events(self) -> str:
        return self._n("remittance-events")

    @property
    def enrichment_tasks(self) -> str:
        return self._n("enrichment-tasks")

    @property
    def notification_tasks(self) -> str:
        return self._n("notification-tasks")

    @property
    def notification_events(self) -> str:
        return self._n("notification-events")

    @property
    def queues(self) -> tuple[str, ...]:
        return (self.remittance_events, self.enrichment_tasks,
                self.notification_tasks, self.notification_events)

    @staticmethod
    def dlq(queue: str) -> str:
        return f"{queue}-dlq"

    # topic
    @property
    def enriched_topic(self) -> str:
        return self._n("remittance-enriched")

    # tables
    @property
    def remittances(self) -> str:
        return self._n("remittances")

    @property
    def notifications(self) -> str:
        return self._n("notifications")

    @property
    def payees(self) -> str:
        return self._n("payees")

    @property
    def invoices(self) -> str:
        return self._n("invoices")

    @property
    def leases(self) -> str:
        return self._n("leases")

    # state machines
    @property
    def enrichment_sm(self) -> str:
        return self._n("enrichment")

    @property
    def notification_sm(self) -> str:
        return self._n("notification")

    @property
    def sfn_role(self) -> str:
        return self._n("stepfunctions")

    def table(self, short: str) -> str:
        """``remittances`` → ``remitflow-remittances`` (the API uses short names)."""
        return self._n(short)
