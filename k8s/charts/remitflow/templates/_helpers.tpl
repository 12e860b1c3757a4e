{{/* vim: set filetype=mustache: */}}

{{/* Chart name. */}}
{{- define "remitflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name (release name, plus chart name when it differs). */}}
{{- define "remitflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "remitflow.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "remitflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels (no component). */}}
{{- define "remitflow.labels" -}}
helm.sh/chart: {{ include "remitflow.chart" . }}
{{ include "remitflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: remitflow
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "remitflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "remitflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Per-service helpers take (dict "ctx" $ "name" "enrichment").
*/}}
{{- define "remitflow.svc.fullname" -}}
{{- printf "%s-%s" (include "remitflow.fullname" .ctx) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "remitflow.svc.labels" -}}
{{ include "remitflow.labels" .ctx }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "remitflow.svc.selectorLabels" -}}
{{ include "remitflow.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "remitflow.svc.serviceAccountName" -}}
{{- $svc := index .ctx.Values.services .name -}}
{{- if $svc.serviceAccount.create -}}
{{- default (include "remitflow.svc.fullname" .) $svc.serviceAccount.name -}}
{{- else -}}
{{- default "default" $svc.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference: digest wins over tag. */}}
{{- define "remitflow.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* AWS resource name from a suffix: <prefix>-<suffix>. */}}
{{- define "remitflow.resourceName" -}}
{{- printf "%s-%s" .ctx.Values.config.prefix .suffix -}}
{{- end -}}

{{- define "remitflow.apiTokenSecretName" -}}
{{- if .Values.apiToken.existingSecret -}}
{{- .Values.apiToken.existingSecret -}}
{{- else -}}
{{- printf "%s-api-token" (include "remitflow.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds = shutdown grace + 5 (integer). */}}
{{- define "remitflow.terminationGracePeriodSeconds" -}}
{{- add (int (ceil .Values.config.shutdownGraceSeconds)) 5 -}}
{{- end -}}

{{/* Environment shared by the services and the bootstrap job. */}}
{{- define "remitflow.commonEnv" -}}
- name: AWS_REGION
  value: {{ .Values.aws.region | quote }}
{{- with .Values.aws.endpointUrl }}
- name: AWS_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
- name: REMITFLOW_PREFIX
  value: {{ .Values.config.prefix | quote }}
- name: REMITFLOW_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: REMITFLOW_SENDER_EMAIL
  value: {{ .Values.config.senderEmail | quote }}
{{- end -}}

{{/* Validation: fail the render with a clear message. */}}
{{- define "remitflow.validate" -}}
{{- if and .Values.keda.enabled .Values.autoscaling.enabled -}}
{{- fail "keda.enabled and autoscaling.enabled are both true: KEDA creates its own HPA, so two autoscalers would fight over the replica count. Turn one off." -}}
{{- end -}}
{{- if and .Values.keda.enabled (not .Values.aws.accountId) (not .Values.aws.endpointUrl) -}}
{{- fail "keda.enabled=true needs aws.accountId to build the SQS queue URLs of the triggers." -}}
{{- end -}}
{{- if and .Values.apiToken.create .Values.apiToken.existingSecret -}}
{{- fail "apiToken.create and apiToken.existingSecret are exclusive: create a Secret or name an existing one." -}}
{{- end -}}
{{- if not (or .Values.apiToken.create .Values.apiToken.existingSecret) -}}
{{- fail "the services refuse to start without an API token: keep apiToken.create=true (a random token) or set apiToken.existingSecret." -}}
{{- end -}}
{{- end -}}

{{/* SQS queue URL for a KEDA trigger. */}}
{{- define "remitflow.queueUrl" -}}
{{- $v := .ctx.Values -}}
{{- $name := include "remitflow.resourceName" (dict "ctx" .ctx "suffix" .queue) -}}
{{- if $v.aws.endpointUrl -}}
{{- printf "%s/%s/%s" (trimSuffix "/" $v.aws.endpointUrl) (default "000000000000" ($v.aws.accountId | toString)) $name -}}
{{- else -}}
{{- printf "https://sqs.%s.amazonaws.com/%s/%s" $v.aws.region ($v.aws.accountId | toString) $name -}}
{{- end -}}
{{- end -}}

{{/*
Scratch space (/tmp emptyDir) of a service, in MiB. The enrichment pod reads bank
files through one spool each: partnerFiles.maxFileMiB x filesInFlight on top of the
base, from the same values that set REMITFLOW_PARTNER_FILES_MAX_BYTES.
*/}}
{{- define "remitflow.scratchMiB" -}}
{{- $v := .root.Values -}}
{{- if eq .name "enrichment" -}}
{{- add $v.scratch.baseMiB (mul $v.partnerFiles.maxFileMiB $v.partnerFiles.filesInFlight) -}}
{{- else -}}
{{- $v.scratch.baseMiB -}}
{{- end -}}
{{- end -}}
