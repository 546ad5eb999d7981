{{/*
Helpers. Every helper takes this chart's scope (.Values, .Release, .Chart): a parent
chart that includes the sidecar helpers passes `.Subcharts.<name>`, or builds the same
with `dict "Values" .Values.<name> "Release" .Release "Chart" (dict "Name" "<name>"
"Version" "<version>" "AppVersion" "<appVersion>")` (<name>: the dependency's alias, if
any). No helper uses .Template, .Files or .Capabilities, so both forms work.
*/}}

{{- define "maintenance-window-manager.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every name this release creates (release-scoped). */}}
{{- define "maintenance-window-manager.fullname" -}}
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

{{/* A cluster-scoped name: unique per namespace and release. */}}
{{- define "maintenance-window-manager.clusterName" -}}
{{- printf "%s-%s-%s" .root.Release.Namespace (include "maintenance-window-manager.fullname" .root) .suffix }}
{{- end }}

{{- define "maintenance-window-manager.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "maintenance-window-manager.selectorLabels" -}}
app.kubernetes.io/name: {{ include "maintenance-window-manager.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "maintenance-window-manager.labels" -}}
helm.sh/chart: {{ include "maintenance-window-manager.chart" . }}
{{ include "maintenance-window-manager.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | default "Helm" }}
app.kubernetes.io/part-of: maintenance-window-manager
{{- end }}

{{- define "maintenance-window-manager.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "maintenance-window-manager.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "maintenance-window-manager.secretName" -}}
{{- default (include "maintenance-window-manager.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{- define "maintenance-window-manager.templatesConfigMapName" -}}
{{- if .Values.pageTemplatesConfigMap }}
{{- .Values.pageTemplatesConfigMap }}
{{- else if .Values.pageTemplates }}
{{- printf "%s-templates" (include "maintenance-window-manager.fullname" .) }}
{{- end }}
{{- end }}

{{- define "maintenance-window-manager.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Where the Secret and the override templates are mounted. */}}
{{- define "maintenance-window-manager.secretsDir" -}}/etc/mwm/secrets{{- end }}
{{- define "maintenance-window-manager.templatesDir" -}}/etc/mwm/templates{{- end }}

{{/*
The effective settings, as JSON: .Values.config with the chart's release-scoped defaults
filled in (namespace, Lease, ConfigMap switch) and the template directory when override
templates are mounted. Use with fromJson.
*/}}
{{- define "maintenance-window-manager.config" -}}
{{- $fullname := include "maintenance-window-manager.fullname" . }}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $source := default dict (get $config "source") }}
{{- $_ := set $config "source" $source }}
{{- $kube := default dict (get $source "kubernetes") }}
{{- $_ := set $source "kubernetes" $kube }}
{{- if not (get $kube "namespace") }}
{{- $_ := set $kube "namespace" .Release.Namespace }}
{{- end }}
{{- if .Values.switchConfigMap.enabled }}
{{- if not (get $kube "configmap_name") }}
{{- $_ := set $kube "configmap_name" (printf "%s-maintenance" $fullname) }}
{{- end }}
{{- else if get $kube "configmap_name" }}
{{- fail "config.source.kubernetes.configmap_name is set but switchConfigMap.enabled is false: enable the switch (which also grants read access to that ConfigMap) or unset the name" }}
{{- end }}
{{- $election := default dict (get $source "leader_election") }}
{{- $_ := set $source "leader_election" $election }}
{{- if not (get $election "lease_name") }}
{{- $_ := set $election "lease_name" (printf "%s-leader" $fullname) }}
{{- end }}
{{- if include "maintenance-window-manager.templatesConfigMapName" . }}
{{- if and .Values.pageTemplates .Values.pageTemplatesConfigMap }}
{{- fail "set pageTemplates or pageTemplatesConfigMap, not both" }}
{{- end }}
{{- $page := default dict (get $config "page") }}
{{- $_ := set $config "page" $page }}
{{- if get $page "template_dir" }}
{{- fail "config.page.template_dir is set by the chart when pageTemplates or pageTemplatesConfigMap is used: unset it" }}
{{- end }}
{{- $_ := set $page "template_dir" (include "maintenance-window-manager.templatesDir" .) }}
{{- end }}
{{- toJson $config }}
{{- end }}

{{/*
One env var value: lists as JSON (what the settings parse), whole numbers without the
exponent Go would print for a large float64 (4194304, not 4.194304e+06).
*/}}
{{- define "maintenance-window-manager.envValue" -}}
{{- if kindIs "slice" . }}
{{- toJson . }}
{{- else if kindIs "float64" . }}
{{- if eq . (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
The settings as env vars: {prefix, values} flattened recursively, MWM_<GROUP>__<KEY>;
null values are left out (the process's default applies).
*/}}
{{- define "maintenance-window-manager.flattenEnv" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .values }}
{{- $name := printf "%s%s" $prefix (upper $key) }}
{{- if kindIs "map" $value }}
{{- include "maintenance-window-manager.flattenEnv" (dict "prefix" (printf "%s__" $name) "values" $value) }}
{{- else if not (kindIs "invalid" $value) }}
- name: {{ $name }}
  value: {{ include "maintenance-window-manager.envValue" $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Every env var of the mwm container. */}}
{{- define "maintenance-window-manager.env" -}}
{{- $config := include "maintenance-window-manager.config" . | fromJson }}
{{- $secrets := include "maintenance-window-manager.secretsDir" . }}
{{- $env := include "maintenance-window-manager.flattenEnv" (dict "prefix" "MWM_" "values" $config) }}
{{- $env | trim }}
- name: MWM_BYPASS__TOKEN_FILE
  value: {{ printf "%s/bypass-token" $secrets }}
- name: MWM_BYPASS__COOKIE_SECRET_FILE
  value: {{ printf "%s/cookie-secret" $secrets }}
- name: MWM_MANAGEMENT__ADMIN_TOKEN_FILE
  value: {{ printf "%s/admin-token" $secrets }}
{{- range .Values.extraEnv }}
{{- if or (contains (printf "name: %s\n" .name) (printf "%s\n" $env)) (has .name (list "MWM_BYPASS__TOKEN_FILE" "MWM_BYPASS__COOKIE_SECRET_FILE" "MWM_MANAGEMENT__ADMIN_TOKEN_FILE")) }}
{{- fail (printf "extraEnv: %s is already set by the chart (use config for MWM_ settings)" .name) }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "maintenance-window-manager.port" -}}
{{- $listen := default dict .Values.config.listen }}
{{- include "maintenance-window-manager.envValue" (default .default (index $listen .key)) }}
{{- end }}

{{- define "maintenance-window-manager.publicPort" -}}
{{- include "maintenance-window-manager.port" (dict "Values" .Values "key" "public_port" "default" 8080) }}
{{- end }}

{{- define "maintenance-window-manager.managementPort" -}}
{{- include "maintenance-window-manager.port" (dict "Values" .Values "key" "management_port" "default" 8081) }}
{{- end }}

{{/*
The mwm container: the sidecar placement's parent chart includes this in its pod's
containers (with maintenance-window-manager.sidecarVolumes in its volumes); the gateway
Deployment uses it too.
*/}}
{{- define "maintenance-window-manager.sidecarContainer" -}}
name: mwm
image: {{ include "maintenance-window-manager.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
command: ["mwm", "run"]
ports:
  - name: http
    containerPort: {{ include "maintenance-window-manager.publicPort" . }}
    protocol: TCP
  - name: management
    containerPort: {{ include "maintenance-window-manager.managementPort" . }}
    protocol: TCP
env:
  {{- include "maintenance-window-manager.env" . | nindent 2 }}
volumeMounts:
  - name: mwm-tmp
    mountPath: /tmp
  - name: mwm-secrets
    mountPath: {{ include "maintenance-window-manager.secretsDir" . }}
    readOnly: true
  {{- if include "maintenance-window-manager.templatesConfigMapName" . }}
  - name: mwm-templates
    mountPath: {{ include "maintenance-window-manager.templatesDir" . }}
    readOnly: true
  {{- end }}
startupProbe:
  httpGet:
    path: /healthz
    port: management
  {{- toYaml .Values.startupProbe | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: management
  {{- toYaml .Values.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: management
  {{- toYaml .Values.readinessProbe | nindent 2 }}
{{- with .Values.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The volumes the mwm container mounts (a list, for the pod's volumes). */}}
{{- define "maintenance-window-manager.sidecarVolumes" -}}
- name: mwm-tmp
  emptyDir:
    sizeLimit: 64Mi
- name: mwm-secrets
  secret:
    secretName: {{ include "maintenance-window-manager.secretName" . }}
    defaultMode: 0444
    items:
      - key: bypass-token
        path: bypass-token
      - key: cookie-secret
        path: cookie-secret
      - key: admin-token
        path: admin-token
{{- with include "maintenance-window-manager.templatesConfigMapName" . }}
- name: mwm-templates
  configMap:
    name: {{ . }}
{{- end }}
{{- end }}

{{/*
Pod annotations that roll the pods when the Secret or the templates change (the process
reads both at start-up). A generated Secret keeps its values across upgrades (lookup),
so its checksum changes only when it is regenerated.
*/}}
{{- define "maintenance-window-manager.podAnnotations" -}}
checksum/secret: {{ include "maintenance-window-manager.secretManifest" . | sha256sum }}
checksum/templates: {{ include "maintenance-window-manager.templatesManifest" . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The Secret (rendered only when no existingSecret is given). */}}
{{- define "maintenance-window-manager.secretManifest" -}}
{{- if .Values.secrets.existingSecret }}
existingSecret: {{ .Values.secrets.existingSecret }}
{{- else }}
{{- $name := include "maintenance-window-manager.secretName" . }}
{{- $data := dict }}
{{- with lookup "v1" "Secret" .Release.Namespace $name }}
{{- $data = default dict .data }}
{{- end }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "maintenance-window-manager.labels" . | nindent 4 }}
type: Opaque
data:
  {{- range $key := list "bypass-token" "cookie-secret" "admin-token" }}
  {{ $key }}: {{ get $data $key | default (randAlphaNum 32 | b64enc) }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The ConfigMap of override templates (rendered only from pageTemplates). */}}
{{- define "maintenance-window-manager.templatesManifest" -}}
{{- if .Values.pageTemplatesConfigMap }}
existingConfigMap: {{ .Values.pageTemplatesConfigMap }}
{{- else if .Values.pageTemplates }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "maintenance-window-manager.templatesConfigMapName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "maintenance-window-manager.labels" . | nindent 4 }}
data:
  {{- range $file, $source := .Values.pageTemplates }}
  {{ $file }}: {{ $source | quote }}
  {{- end }}
{{- end }}
{{- end }}
