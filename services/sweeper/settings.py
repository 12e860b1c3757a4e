"""What only the sweeper reads, on top of the core (shared/settings)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings

RECONCILE_MARGIN_S = 60.0


class SweeperSettings(Settings):
    """The sweep, its leader lease, the start check, the hand-off check, the reconcile."""

    sweeper_interval_s: float = Field(default=60.0, gt=0)
    sweeper_leader_lease: bool = Field(
        default=True, description="only the holder of the sweeper:leader lease sweeps; false "
                                  "makes every replica sweep (safe, just more reads)")
    lease_ttl_s: float = Field(default=30.0, gt=0)
    start_check_after_s: float = Field(
        default=120.0, gt=0,
        description="a RUNNING job this old whose execution does not exist (a process "
                    "killed between its RUNNING write and StartExecution) is started by "
                    "the sweeper, instead of waiting for the reconcile")
    handoff_grace_s: float = Field(
        default=600.0, gt=0,
        description="a published job whose subscribers hold no job for it this long after "
                    "it succeeded is published again by the sweeper (divided by "
                    "REMITFLOW_DEV_TIME_SCALE); see docs/architecture.md, Hand-off check")
    handoff_max_repairs: int = Field(default=3, ge=1, le=100)
    reconcile_after_s: float | None = Field(
        default=None, gt=0,
        description="RUNNING longer than this is checked with DescribeExecution; default: "
                    "the workflow timeout (task_timeout_s * 3 + 120) plus 60 s")

    @property
    def handoff_grace_effective_s(self) -> float:
        return self.handoff_grace_s / self.dev_time_scale

    @property
    def reconcile_after_effective_s(self) -> float:
        """When a ``RUNNING`` job is checked against its execution.

        Past the workflow's timeout an execution has ended, so a margin beyond it
        never reconciles a live attempt.
        """
        if self.reconcile_after_s is not None:
            return self.reconcile_after_s
        return self.task.workflow_timeout_s + RECONCILE_MARGIN_S
