# ruff: noqa: B018, F821
"""Names vulture cannot see used: model fields read through serialisation, protocol
callbacks called by frameworks (``http.server``, ``socketserver``, context managers).

``make lint`` runs ``vulture`` over the tree with this file (never imported); add a
name here only with the reason it is used.
"""

# pydantic model fields, read through model_dump / JSON
schema_version
advice_version
enriched_at
ADVICE_VERSION
# SweepReport.started_at: returned by POST /v1/sweep through dataclasses.asdict
started_at
# babel NumberPattern attribute, set to force the currency's minor units
frac_prec
# http.server / socketserver hooks and attributes
do_POST
do_GET
log_message
daemon_threads
block_on_close
# parameters the protocols require (__aexit__, BaseHTTPRequestHandler.log_message)
exc_type
tb
format
# read by the console's Jinja2 templates (services/sweeper/console/templates/)
heartbeat_at
oldest_age_s
# selenium ChromeOptions attribute (tests/browser/test_console_browser.py)
binary_location
# http.server hooks of the SES fault proxy (tests/faultproxy_ses.py)
protocol_version
do_DELETE
do_HEAD
do_PUT
# logging.Logger attribute set to route library records through our handler (shared/logs.py)
handlers
# HandoffReport fields: serialised in the sweep report (POST /v1/sweep, asdict)
window_start
window_end
# ThreadedMotoServer hook the emulator overrides (shared/aws/emulator.py)
_server_entry
# Settings field read by the CDK stack's archive bucket (deploy/cdk/archive_bucket.py)
archive_cold_after_days
# JobTrail.archived: read by the console's timeline template
archived
# Settings.partner_files_bucket: named by the partner-files drop's bucket_setting and
# read with getattr (shared/files/drop.py, FileDrop.resolved)
partner_files_bucket
# pydantic-settings hook: the core reads the environment minus its concern fields
# (shared/settings/__init__.py, _OwnVariables); its env_settings argument is replaced
settings_customise_sources
env_settings
# socketserver.StreamRequestHandler reads it: the emulator's answers leave through a
# buffer (shared/aws/emulator_http.py)
wbufsize
# aiobotocore's connection-pool lock, renewed when a test re-opens the process's
# clients in its own event loop (tests/conftest.py, WorkerClients)
_sessions_lock
