"""Provisioning: every AWS resource of a deployment, from the job kinds and the
services' declared resources (``remitflow bootstrap``; ``docs/architecture.md``,
"Resource names"). Above the pattern: nothing in ``shared/pipeline`` imports it."""
