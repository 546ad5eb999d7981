#!/usr/bin/env bash
# Asserts what the kind demo shows, against the cluster the current kubeconfig points at (after
# kind/demo.sh): one PASS or FAIL line per check, exit status 1 if any failed. On exit, however
# it ends, the app's replicas and the ServiceChecker's manual switch are put back as they were.
#
# Settings (environment):
#   E2E_URL           mwm's public URL                      http://127.0.0.1:8080
#   E2E_NAMESPACE     namespace of the demo                 shop
#   E2E_RELEASE       Helm release (to find its Secret)     mwm
#   E2E_BYPASS_TOKEN  the bypass token                      read from the release's Secret
#   E2E_TIMEOUT_S     longest wait for one transition       60
#   E2E_POLL_S        pause between two polls               1
# (Not MWM_*: mwm refuses unknown MWM_ variables, so a leftover export would stop `mwm run`.)
set -euo pipefail

url=${E2E_URL:-http://127.0.0.1:8080}
namespace=${E2E_NAMESPACE:-shop}
release=${E2E_RELEASE:-mwm}
timeout_s=${E2E_TIMEOUT_S:-60}
poll_s=${E2E_POLL_S:-1}
app=shop # the Deployment, Service and ServiceChecker of kind/demo-app.yaml and servicechecker.yaml
reason="kind e2e: manual switch"

for tool in curl kubectl base64; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "kind/e2e.sh: $tool not found on PATH" >&2
        exit 2
    fi
done

passed=0
failed=0
pass() {
    echo "PASS: $*"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}
# check DESCRIPTION COMMAND...: one PASS or FAIL line, by the command's exit status.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
# eventually COMMAND...: retry until it succeeds; fail after E2E_TIMEOUT_S seconds.
eventually() {
    local deadline=$((SECONDS + timeout_s))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep "$poll_s"
    done
}

# request PATH [curl options...]: sets $status; the response is in $work/headers and $work/body.
request() {
    local path=$1
    shift
    : >"$work/headers"
    : >"$work/body"
    status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' --max-time 5 \
        "$@" "$url$path") || status=000
}
# answers STATUS PATH [curl options...]: the request gets that status.
answers() {
    local expected=$1
    shift
    request "$@"
    [ "$status" = "$expected" ]
}
# header NAME: that header of the last response (the last one if repeated), trimmed.
header() {
    { grep -i "^$1:" "$work/headers" || true; } | tail -n 1 | cut -d: -f2- | tr -d '\r' |
        sed -e 's/^ *//' -e 's/ *$//'
}
has_header() { [ -n "$(header "$1")" ]; }
header_contains() { header "$1" | grep -qi -- "$2"; }
body_contains() { grep -q -- "$1" "$work/body"; }
# service_ready NAME true|false: /services lists NAME (in the namespace) with that readiness.
service_ready() {
    request /services
    [ "$status" = 200 ] &&
        tr -d ' \n' <"$work/body" | grep -o "{[^}]*\"name\":\"$1\"[^}]*}" |
        grep "\"namespace\":\"$namespace\"" | grep -q "\"ready\":$2"
}
problem_json() {
    request / -H 'Accept: application/json'
    [ "$status" = 503 ] && header_contains Content-Type application/problem+json
}
cookie_issued() {
    request "/_mwm/bypass/$bypass_token" -c "$work/cookies"
    [[ $status == 30? ]] && header_contains Set-Cookie "="
}
checker_active_is() {
    [ "$(kubectl get svcc "$app" -n "$namespace" -o jsonpath='{.status.maintenance.active}')" = "$1" ]
}
scale() { kubectl scale "deployment/$app" -n "$namespace" --replicas="$1" >/dev/null; }
switch() { kubectl patch svcc "$app" -n "$namespace" --type merge -p "$1" >/dev/null; }

original_replicas=$(kubectl get deployment "$app" -n "$namespace" -o jsonpath='{.spec.replicas}')
original_switch=$(kubectl get svcc "$app" -n "$namespace" -o jsonpath='{.spec.maintenance}')
work=$(mktemp -d)
restore() {
    echo "--- restoring: $app replicas ${original_replicas}, manual switch ${original_switch:-unset}"
    scale "$original_replicas" || echo "could not scale $app back to $original_replicas" >&2
    # Exactly as it was: a merge patch would keep the reason this script added.
    if [ -n "$original_switch" ]; then
        kubectl patch svcc "$app" -n "$namespace" --type json \
            -p "[{\"op\":\"add\",\"path\":\"/spec/maintenance\",\"value\":$original_switch}]" >/dev/null
    else
        switch '{"spec":{"maintenance":null}}'
    fi || echo "could not restore the manual switch of svcc/$app" >&2
    kubectl rollout status "deployment/$app" -n "$namespace" --timeout="${timeout_s}s" >/dev/null ||
        echo "$app did not become ready again within ${timeout_s}s" >&2
    rm -rf "$work"
}
trap restore EXIT
trap 'exit 130' INT TERM

bypass_token=${E2E_BYPASS_TOKEN:-$(
    kubectl get secret -n "$namespace" -l "app.kubernetes.io/instance=$release" \
        -o go-template='{{range .items}}{{if .data}}{{with index .data "bypass-token"}}{{.}}{{end}}{{end}}{{end}}' |
        base64 --decode
)}
if [ -z "$bypass_token" ]; then
    echo "kind/e2e.sh: no bypass-token in the Secrets of release $release; set E2E_BYPASS_TOKEN" >&2
    exit 2
fi
normal_replicas=$original_replicas
((normal_replicas > 0)) || normal_replicas=2

echo "--- mwm at $url, app $namespace/$app ($original_replicas replicas)"
scale "$normal_replicas"
check "normal operation: GET / answers 200 (the app)" eventually answers 200 /
check "ServiceChecker $app reports maintenance inactive" eventually checker_active_is false

echo "--- the critical service loses every endpoint (replicas 0)"
scale 0
check "GET / answers 503 once $app has no ready endpoint" eventually answers 503 / -H 'Accept: text/html'
check "the 503 carries Retry-After" has_header Retry-After
check "the 503 carries Cache-Control: no-store" header_contains Cache-Control no-store
check "the 503 is the HTML maintenance page" header_contains Content-Type text/html
check "Accept: application/json gets a 503 application/problem+json" problem_json
check "the problem+json body says status 503" body_contains '"status": *503'
check "/services lists $app as not ready" service_ready "$app" false
check "ServiceChecker $app status: maintenance active" eventually checker_active_is true

echo "--- the app comes back (replicas $normal_replicas)"
scale "$normal_replicas"
check "GET / answers 200 again" eventually answers 200 /
check "/services lists $app as ready" service_ready "$app" true
check "ServiceChecker $app status: maintenance inactive" eventually checker_active_is false

echo "--- the manual switch: kubectl patch svcc $app (spec.maintenance.enabled)"
switch "{\"spec\":{\"maintenance\":{\"enabled\":true,\"reason\":\"$reason\"}}}"
check "GET / answers 503 once switched on" eventually answers 503 / -H 'Accept: text/plain'
check "the page gives the reason" body_contains "$reason"
check "ServiceChecker $app status: maintenance active" eventually checker_active_is true
check "the admin path /admin passes (200)" answers 200 /admin
check "the bypass header with the token passes (200)" \
    answers 200 / -H "X-Maintenance-Bypass: $bypass_token"
check "a bypassed response is never stored by shared caches" header_contains Cache-Control private
check "the bypass header with a wrong token gets 503" \
    answers 503 / -H "X-Maintenance-Bypass: wrong-$bypass_token"
check "the bypass URL redirects and sets the bypass cookie" cookie_issued
check "the bypass cookie passes (200)" answers 200 / -b "$work/cookies"
switch '{"spec":{"maintenance":{"enabled":false}}}'
check "GET / answers 200 once switched off" eventually answers 200 /
check "ServiceChecker $app status: maintenance inactive" eventually checker_active_is false

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
