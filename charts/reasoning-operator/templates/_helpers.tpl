{{/* Names: <release>-reasoning-operator unless the release name already contains the chart's. */}}
{{- define "reasoning-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "reasoning-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "reasoning-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "reasoning-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "reasoning-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "reasoning-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "reasoning-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "reasoning-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "reasoning-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "reasoning-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "reasoning-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: reasoning-operator
{{- end }}

{{/*
What the operator does inside the namespaces it watches, and nothing more (no wildcards, no Secrets):
- reasoningruns: kopf watches them (it adds no finalizer or annotation: only event handlers are
  registered); status is the operator's to write, by merge patch;
- the children it creates (the garbage collector deletes them with their run, through ownerReferences):
  Jobs and PyTorchJobs (patched to suspend and resume them), the servers' Deployments and Services
  (deleted when their stage ends), ConfigMaps;
- PersistentVolumeClaims: created for a run's storage, never deleted (the data outlives the run);
- pods: read only, for the stage summaries in their termination messages;
- networkpolicies: the filter's pods (untrusted model output runs there) get no network;
- events: on the run, through the core API (the operator's and kopf's alike).
Pods reference the rewrite API key's Secret by secretKeyRef: the kubelet reads it, the operator never does.
*/}}
{{- define "reasoning-operator.namespacedRules" -}}
- apiGroups: ["reasoning.dev"]
  resources: ["reasoningruns"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["reasoning.dev"]
  resources: ["reasoningruns/status"]
  verbs: ["get", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "delete"]
# the run's run.yaml, rendered again when the spec changes
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# a running stage's progress line (rate, time left) is read from its pod's log tail
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["kubeflow.org"]
  resources: ["pytorchjobs"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Kueue's Workloads for the run's queued Jobs and PyTorchJobs: read for their place in the queue,
# deactivated to suspend a run (a workload Kueue admitted is never suspended behind its back)
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["get", "list", "patch"]
{{- end }}

{{/* Cluster-scoped reads kopf needs whatever it watches: the resources it serves, and namespaces. */}}
{{- define "reasoning-operator.clusterRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}
