{{/* Names and labels shared by every template. */}}

{{- define "batchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "batchyard.fullname" -}}
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

{{- define "batchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "batchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "batchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "batchyard.labels" -}}
helm.sh/chart: {{ include "batchyard.chart" . }}
{{ include "batchyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: batchyard
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "batchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "batchyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "batchyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Permissions the operator needs wherever it works: the cluster-scoped Batchyard kinds, nodes
(node-pool sizing), and what kopf itself reads at startup. Exact verbs, no wildcards.
*/}}
{{- define "batchyard.clusterRules" -}}
# Cluster-scoped kinds: read and watch them, write only their status.
- apiGroups: ["batchyard.io"]
  resources: ["computeenvironments", "jobqueues", "schedulingpolicies", "consumableresources"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["batchyard.io"]
  resources: ["computeenvironments/status", "jobqueues/status", "schedulingpolicies/status", "consumableresources/status"]
  verbs: ["patch"]
# Nodes: capacity accounting watches them; the operator labels and cordons the ones it manages.
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list", "watch", "patch"{{ if .Values.nodePools.kwok.enabled }}, "create", "delete"{{ end }}]
# kopf: namespace discovery and CRD scanning; compute environments check that their
# eksConfiguration.kubernetesNamespace exists (get).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.nodePools.karpenter.enabled }}
# Karpenter provider: one NodePool per compute environment (read, create, resize, and
# delete the ones labelled with a compute environment that is gone).
- apiGroups: ["karpenter.sh"]
  resources: ["nodepools"]
  verbs: ["get", "list", "create", "patch", "delete"]
{{- end }}
{{- if .Values.nodePools.clusterAPI.enabled }}
# Cluster API provider: create the compute environment's MachineDeployment if missing, resize
# it through its scale subresource, and mark the Machines of drained nodes for deletion.
- apiGroups: ["cluster.x-k8s.io"]
  resources: ["machinedeployments"]
  verbs: ["create"]
- apiGroups: ["cluster.x-k8s.io"]
  resources: ["machinedeployments/scale"]
  verbs: ["get", "patch"]
- apiGroups: ["cluster.x-k8s.io"]
  resources: ["machines"]
  verbs: ["list", "patch"]
{{- end }}
{{- if and .Values.nodePools.kwok.enabled .Values.operator.watchNamespaces }}
# kwok provider: before removing a node it checks that no pod (from any namespace) runs there.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}
{{- end }}

{{/*
Permissions inside the namespaces the operator serves: all namespaces through the ClusterRole,
or one Role per namespace when operator.watchNamespaces is set.
*/}}
{{- define "batchyard.namespacedRules" -}}
# Jobs: the operator writes status, its own labels/annotations/finalizers (patch), and deletes
# finished jobs after their TTL.
- apiGroups: ["batchyard.io"]
  resources: ["batchjobs"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["batchyard.io"]
  resources: ["batchjobs/status"]
  verbs: ["patch"]
- apiGroups: ["batchyard.io"]
  resources: ["jobdefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["batchyard.io"]
  resources: ["jobdefinitions/status"]
  verbs: ["patch"]
# One pod per job attempt: created under a deterministic name, deleted on terminate/timeout/cleanup.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Multi-node parallel jobs: a headless Service per job for its main node (<job>-main).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "delete"]
# Events on jobs and pods (kopf uses core/v1, the operator events.k8s.io/v1).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The AWS Batch gateway: its own name label, so the operator's selectors never match it. */}}
{{- define "batchyard.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "batchyard.name" . }}-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "batchyard.gatewayLabels" -}}
helm.sh/chart: {{ include "batchyard.chart" . }}
{{ include "batchyard.gatewaySelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: batchyard
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* gateway.serviceAccounts grouped by namespace: {ns: [names]} (YAML, read with fromYaml). */}}
{{- define "batchyard.gatewayImpersonation" -}}
{{- $by := dict }}
{{- range .Values.gateway.serviceAccounts }}
{{- $_ := set $by .namespace (append (get $by .namespace | default list) .name) }}
{{- end }}
{{- toYaml $by }}
{{- end }}
