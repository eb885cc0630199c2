#!/usr/bin/env bash
# debug-pod.sh POD [NAMESPACE]
# Everything an engineer looks at first for a failing pod: status, the important part of
# `describe`, its events, and the last log lines (of the previous container when it restarted).
# Read-only: it runs only kubectl get/describe/logs.
set -uo pipefail

usage() { echo "usage: debug-pod.sh POD [NAMESPACE]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
pod=$1
namespace=${2:-${POD_NAMESPACE:-default}}
name_re='^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
[[ $pod =~ $name_re ]] || { echo "debug-pod: '$pod' is not a pod name" >&2; exit 2; }
[[ $namespace =~ $name_re ]] || { echo "debug-pod: '$namespace' is not a namespace" >&2; exit 2; }

section() { printf '\n=== %s ===\n' "$1"; }

section "pod"
if ! kubectl get pod "$pod" -n "$namespace" -o wide; then
  echo "debug-pod: pod $namespace/$pod not found" >&2
  exit 1
fi

section "status"
kubectl get pod "$pod" -n "$namespace" -o jsonpath='{range .status.containerStatuses[*]}{.name}: ready={.ready} restarts={.restartCount} state={.state} lastState={.lastState}{"\n"}{end}'

section "describe (conditions, containers)"
kubectl describe pod "$pod" -n "$namespace" | sed -n '/^Containers:/,/^Volumes:/p;/^Conditions:/,/^Events:/p' | head -n 80

section "events"
kubectl get events -n "$namespace" --field-selector "involvedObject.name=$pod" \
  --sort-by=.lastTimestamp 2>&1 | tail -n 20

restarts=$(kubectl get pod "$pod" -n "$namespace" -o jsonpath='{.status.containerStatuses[0].restartCount}' 2>/dev/null)
section "logs (last 100 lines${restarts:+, restarts: $restarts})"
if [ "${restarts:-0}" != "0" ]; then
  kubectl logs "$pod" -n "$namespace" --previous --tail=100 2>&1 || true
else
  kubectl logs "$pod" -n "$namespace" --tail=100 2>&1 || true
fi
exit 0
