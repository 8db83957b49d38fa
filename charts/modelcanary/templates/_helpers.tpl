{{/* Names and labels shared by the templates. */}}
{{- define "modelcanary.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelcanary.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelcanary.operatorSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every predictor pod of the model (the monitors and policies select them). */}}
{{- define "modelcanary.predictorSelector" -}}
modelcanary.io/model: {{ .Values.model.name }}
{{- end -}}

{{/* The Secret holding Triton's control key (servingruntime.yaml). */}}
{{- define "modelcanary.tritonControlSecret" -}}
{{- .Values.triton.controlKey.secretName | default (printf "%s-triton-control" (include "modelcanary.fullname" .)) -}}
{{- end -}}

{{/* The InferenceService of one version in standard mode. */}}
{{- define "modelcanary.versionService" -}}
{{- printf "%s-v%v" .model.name .version | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelcanary.webhookSecret" -}}
{{- printf "%s-webhook" (include "modelcanary.fullname" .) -}}
{{- end -}}

{{/*
The predictor of one version: Triton from the chart's ServingRuntime, the shared model
repository, and `--model-config-name=v<N>` so that Triton serves exactly that version.
*/}}
{{- define "modelcanary.predictor" -}}
{{- $values := .root.Values -}}
labels:
  modelcanary.io/model: {{ $values.model.name }}
  modelcanary.io/version: {{ .version | quote }}
{{- if $values.triton.minReplicas }}
minReplicas: {{ $values.triton.minReplicas }}
{{- end }}
{{- if $values.triton.separateNodes }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchExpressions:
            - {key: modelcanary.io/model, operator: In, values: [{{ $values.model.name | quote }}]}
            - {key: modelcanary.io/version, operator: NotIn, values: [{{ .version | quote }}]}
{{- end }}
{{- $stable := eq (toString .version) (toString $values.model.stable) }}
{{- if and $values.shadow.enabled (or $stable (eq $values.mode "serverless")) }}
{{- /* KServe's inference logger sends each request and its answer to the comparator. In
Serverless mode both revisions log (the spec is the latest revision's); the comparator
compares only the answers stable gave. */}}
logger:
  mode: all
  url: {{ include "modelcanary.comparatorUrl" .root }}/
{{- end }}
model:
  modelFormat:
    name: triton
  runtime: {{ include "modelcanary.fullname" .root }}-triton
  protocolVersion: v2
  storageUri: {{ $values.model.storageUri }}
  args:
    - --model-config-name=v{{ .version }}
  resources:
    requests:
      cpu: {{ $values.triton.resources.cpu | quote }}
      memory: {{ $values.triton.resources.memory | quote }}
      {{- if $values.triton.resources.gpu }}
      nvidia.com/gpu: {{ $values.triton.resources.gpu | quote }}
      {{- end }}
    limits:
      cpu: {{ $values.triton.resources.cpu | quote }}
      memory: {{ $values.triton.resources.memory | quote }}
      {{- if $values.triton.resources.gpu }}
      nvidia.com/gpu: {{ $values.triton.resources.gpu | quote }}
      {{- end }}
{{- with $values.requestGuard }}
{{- if .enabled }}
{{- /* The request guard (values.yaml requestGuard): the pod's only HTTP way in to Triton,
which listens on 127.0.0.1:8085 (servingruntime.yaml). KServe routes to this container's
port. It asks Triton the model's max batch size with the control key (the image has no
tritonclient to read config.pbtxt). */}}
containers:
  - name: transformer-container
    image: "{{ $values.operator.image.repository }}:{{ $values.operator.image.tag | default $.root.Chart.AppVersion }}"
    imagePullPolicy: {{ $values.operator.image.pullPolicy }}
    args:
      - guard
      - --listen=0.0.0.0:8080
      - --upstream=http://127.0.0.1:8085
      - --model={{ $values.model.name }}
      - --control-key-env=MODELCANARY_TRITON_CONTROL_KEY
      - --max-body-bytes={{ int64 .maxBodyBytes }}
      - --timeout={{ .timeoutSeconds }}
    env:
      - name: MODELCANARY_TRITON_CONTROL_KEY
        valueFrom:
          secretKeyRef: {name: {{ include "modelcanary.tritonControlSecret" $.root }}, key: {{ $values.triton.controlKey.key }}}
    ports:
      - {name: http1, containerPort: 8080, protocol: TCP}
    readinessProbe:
      httpGet: {path: /v2/health/ready, port: 8080}
      periodSeconds: 10
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      runAsNonRoot: true
      runAsUser: 10001
      capabilities: {drop: [ALL]}
{{- end }}
{{- end }}
{{- end -}}

{{/* The rate window of the chosen profile's recording rules (files/profiles/, generated). */}}
{{- define "modelcanary.window" -}}
{{- (.Files.Get (printf "files/profiles/%s.yaml" .Values.alerts.profile) | fromYaml).window -}}
{{- end -}}

{{/* The shadow comparator: its name, selector, in-cluster URL and admin token Secret. */}}
{{- define "modelcanary.comparator" -}}
{{- printf "%s-comparator" (include "modelcanary.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelcanary.comparatorSelector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: comparator
{{- end -}}

{{- define "modelcanary.comparatorUrl" -}}
{{- printf "http://%s.%s.svc.cluster.local:%v" (include "modelcanary.comparator" .) .Release.Namespace .Values.shadow.port -}}
{{- end -}}
