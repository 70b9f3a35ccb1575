#!/usr/bin/env bash
# Drill: change routes and policies under constant load. Each change must be
# seen within 1 s of the file being written, and no request may fail that
# was valid under both the old and the new configuration:
#   1. add a route (/drill/**): the policy file changes, nothing else (the
#      gateway's file watcher);
#   2. tighten a scope (GET /items/** needs echo.write, so the read-only
#      client gets 403): the file, then `stella-gateway reload`;
#   3. a bad change (an unknown policy key): POST /reload is refused with
#      422, the old policies keep serving, then the file is restored;
#   4. remove the route again: the file, then SIGHUP.
# A kind whose answer changes is told on the load generator's stdin to
# accept both answers while the change is under way, and only the new one
# once it has been seen.
#   scripts/drills/routes-policies.sh [--short]
source "$(dirname "$0")/lib.sh"
drill_init routes-policies "$@"

stack_up
POLICY="$CONF/policies/echo.yaml"
cp "$POLICY" "$RUN/echo.yaml.orig"

DRILL_ROUTE='
  # Added by the routes-policies drill.
  - id: echo-drill
    path: /drill/**
    policy:
      scopes_any: [echo.read]'
with_route() { cat "$RUN/echo.yaml.orig"; printf '%s\n' "$DRILL_ROUTE"; }
tightened() { sed 's/^      scopes_any: \[echo.read, echo.write\]$/      scopes_any: [echo.write]/' "$@"; }
grep -q '^      scopes_any: \[echo.read, echo.write\]$' "$RUN/echo.yaml.orig" ||
  abort "policies/echo.yaml no longer has the items-read scopes this drill tightens"

status_is() { # code url curl-args...
  local want=$1
  shift
  [ "$(status "$@")" = "$want" ]
}
# seen_within DESCRIPTION CODE URL CURL-ARGS...: waits for CODE; fails the
# drill unless it came within 1 s (measured from the file write).
seen_within() {
  local what=$1 ms
  shift
  ms=$(wait_for 10 "$what" status_is "$@") || abort "$what: not seen within 10 s (status $(status "${@:2}"))"
  if [ "$ms" -le 1000 ]; then
    ok "$what: seen after ${ms} ms"
  else
    fail "$what: seen after ${ms} ms (more than 1 s)"
  fi
}
version() { jget "$(gateway_get /config)" config_version; }

load_start "$(load_spec_default)
  - {name: drill-route, method: GET, url: '$GW/drill/1', credential: 'bearer:svc-bearer', expect: '404', weight: 2}"
step baseline
hold

step add-route
expect drill-route 404,2xx
with_route | write_atomic "$POLICY"
seen_within "route /drill/** added (file watcher)" 200 "$GW/drill/1" -H "Authorization: Bearer $BEARER_TOKEN"
expect drill-route 2xx
hold

step tighten-scope
expect items-readonly 2xx,403
with_route | tightened | write_atomic "$POLICY"
out=$("$BIN/stella-gateway" reload --admin "$ADMIN" 2>&1) || abort "stella-gateway reload: $out"
seen_within "GET /items/** needs echo.write (reload command)" 403 "$GW/items/2" -H "Authorization: Bearer $READONLY_TOKEN"
expect items-readonly 403
s=$(status "$GW/items/1" -H "Authorization: Bearer $BEARER_TOKEN")
[ "$s" = 200 ] && ok "a token with echo.write still reads: 200" || fail "a token with echo.write reads: $s"
hold

step bad-change-refused
good=$(version)
rejected_before=$(metric stella_gateway_config_reloads_total 'result="rejected"')
cp "$POLICY" "$RUN/echo.yaml.good"
{ cat "$RUN/echo.yaml.good"; printf '  - id: echo-broken\n    path: /broken/**\n    polcy: {anonymous: true}\n'; } | write_atomic "$POLICY"
answer=$(curl -s --max-time 10 -o "$RUN/reload-bad.json" -w '%{http_code}' -X POST "$ADMIN/reload")
body=$(cat "$RUN/reload-bad.json")
if [ "$answer" = 422 ] && [ "$(jget "$body" result)" = rejected ]; then
  ok "POST /reload refused the bad policy: 422 $(jget "$body" errors)"
else
  fail "POST /reload of a bad policy: $answer $body (wanted 422 rejected)"
fi
config=$(gateway_get /config)
[ "$(jget "$config" config_version)" = "$good" ] && ok "config_version still $good" ||
  fail "config_version changed to $(jget "$config" config_version) after a refused reload"
[ -n "$(jget "$config" last_rejected)" ] && [ "$(jget "$config" last_rejected)" != null ] &&
  ok "/config last_rejected: $(jget "$config" last_rejected)" || fail "/config has no last_rejected: $config"
rejected=$(metric stella_gateway_config_reloads_total 'result="rejected"')
[ "${rejected%.*}" -gt "${rejected_before%.*}" ] &&
  ok "stella_gateway_config_reloads_total{result=\"rejected\"}: $rejected_before -> $rejected" ||
  fail "stella_gateway_config_reloads_total{result=\"rejected\"} stayed $rejected"
s=$(status "$GW/broken/1")
[ "$s" = 404 ] && ok "the refused route does not exist: 404" || fail "GET /broken/1: $s (wanted 404)"
write_atomic "$POLICY" <"$RUN/echo.yaml.good"
gateway_reload
hold

step remove-route
expect drill-route 2xx,404
tightened "$RUN/echo.yaml.orig" | write_atomic "$POLICY"
kill -HUP "${PIDS[gateway]}"
seen_within "route /drill/** removed (SIGHUP)" 404 "$GW/drill/1" -H "Authorization: Bearer $BEARER_TOKEN"
expect drill-route 404
alive gateway && ok "the gateway is still running after SIGHUP" || abort "the gateway exited on SIGHUP"
hold

drill_finish
