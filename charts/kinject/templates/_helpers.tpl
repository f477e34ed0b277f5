{{/* Validation: the same contradictions `kinject install` refuses. */}}
{{- define "kinject.replicas" -}}
{{- if and .Values.ha (not (kindIs "invalid" .Values.replicas)) (lt (int .Values.replicas) 2) -}}
{{- fail (printf "ha with replicas %v is contradictory: high availability needs at least 2 replicas (leave replicas unset for 3)" .Values.replicas) -}}
{{- end -}}
{{- if not (kindIs "invalid" .Values.replicas) -}}
{{- if lt (int .Values.replicas) 1 -}}{{- fail "replicas must be at least 1" -}}{{- end -}}
{{- int .Values.replicas -}}
{{- else if .Values.ha -}}3{{- else -}}1{{- end -}}
{{- end -}}

{{- define "kinject.image" -}}
{{- if .Values.image -}}{{ .Values.image }}{{- else -}}{{ trimSuffix "/" .Values.registry }}/kinject:{{ .Chart.AppVersion }}{{- end -}}
{{- end -}}

{{- define "kinject.labels" -}}
linkerd.io/control-plane-component: {{ .component }}
linkerd.io/control-plane-ns: {{ .root.Release.Namespace }}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/part-of: kinject
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end -}}

{{- define "kinject.securityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kinject.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: {{ .period }}
failureThreshold: 3
timeoutSeconds: 1
{{- end -}}

{{- define "kinject.resources" -}}
requests:
  cpu: 10m
  memory: 32Mi
limits:
  memory: 256Mi
{{- end -}}

{{/* The pod spec parts both Deployments share. */}}
{{- define "kinject.podSpec" -}}
serviceAccountName: {{ .name }}
automountServiceAccountToken: true
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
nodeSelector:
  kubernetes.io/os: linux
{{- if .root.Values.ha }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        labelSelector:
          matchLabels:
            linkerd.io/control-plane-component: {{ .component }}
        topologyKey: kubernetes.io/hostname
{{- end }}
{{- end -}}

{{- define "kinject.deploymentSpec" -}}
replicas: {{ include "kinject.replicas" .root }}
revisionHistoryLimit: 10
selector:
  matchLabels:
    linkerd.io/control-plane-component: {{ .component }}
strategy:
  type: RollingUpdate
  rollingUpdate:
    maxUnavailable: 0
    maxSurge: 1
{{- end -}}
