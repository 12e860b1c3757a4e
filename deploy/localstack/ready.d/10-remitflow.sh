#!/bin/sh
# LocalStack ready hook (mounted at /etc/localstack/init/ready.d, must be executable).
# `remitflow bootstrap` (the compose `bootstrap` service) creates every resource;
# this hook only verifies the SES sender so mail works whatever the start order.
# It runs before /_localstack/init/ready reports completed, which the healthcheck waits on.
set -eu
sender="${REMITFLOW_SENDER_EMAIL:-remittances@example.com}"
awslocal ses verify-email-identity --email-address "$sender" >/dev/null
echo "remitflow: SES identity $sender verified"
