#!/usr/bin/env python3
"""Writes control-api/openapi/openapi.json, the control API's OpenAPI 3.0 document.

The document is data: edit this file, run it, and commit both. tests/openapi.rs keeps the
document true: every route the API serves is described, every described operation exists, and
random requests built from it get no 5xx and no answer that breaks its schema.
"""
import json
import os

def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}

S = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
INT = {"type": "integer", "minimum": 0}
# A formation quantity: a number, or a string as the Heroku CLI sends it ("2"), or a change to
# the current number ("+1", "-1").
QUANTITY = {"oneOf": [INT, {"type": "string", "pattern": "^[+-]?[0-9]{1,9}$"}]}

def obj(props, required=None, extra=False):
    o = {"type": "object", "properties": props, "required": sorted(required if required is not None else props.keys())}
    o["additionalProperties"] = extra
    return o

def nullable(schema):
    s = dict(schema)
    s["nullable"] = True
    return s

schemas = {
    "Error": obj({"id": S, "message": S}),
    "AppRef": obj({"id": UUID, "name": S}),
    "SpaceRef": obj({"id": UUID, "name": S}),
    "SiteRef": obj({"id": UUID, "domain": S}),
    "OwnerRef": obj({"id": UUID, "email": S}),
    "NamedRef": obj({"id": UUID, "name": S}),
    "Domain": obj({"id": UUID, "hostname": S, "kind": {"type": "string", "enum": ["heroku", "custom"]}, "cname": nullable(S),
                   "status": S, "acm_status": nullable(S), "sni_endpoint": nullable({"type": "object"}), "app": ref("AppRef"),
                   "created_at": TIME, "updated_at": TIME}),
    # `canary` also carries its settings: the canary's share and judge settings (docs/canary.md) and its soak
    # (`soak_requests`, `soak_seconds`: null when the soak does not wait for it);
    # `preview` its secret (`[redacted]`, or null when none is set) and `max_age_seconds`.
    "Feature": obj({"id": UUID, "name": S, "display_name": S, "description": S, "doc_url": S, "feedback_email": S,
                    "enabled": {"type": "boolean"}, "state": S, "weight": {"type": "number"},
                    "errors": {"type": "array", "items": S}, "false_alarm_rate": {"type": "number"},
                    "min_requests": INT, "min_errors": INT, "min_rate_ratio": {"type": "number"},
                    "min_rate_difference": {"type": "number"}, "slow_seconds": {"type": "number"}, "soak_requests": nullable(INT),
                    "soak_seconds": nullable(INT), "secret": nullable(S), "max_age_seconds": INT},
                   required=["id", "name", "display_name", "description", "doc_url", "feedback_email", "enabled", "state"]),
    "Account": obj({"id": UUID, "email": S, "name": S, "allow_tracking": {"type": "boolean"}, "beta": {"type": "boolean"},
                    "verified": {"type": "boolean"}, "two_factor_authentication": {"type": "boolean"},
                    "default_team": nullable({"type": "object"}), "default_organization": nullable({"type": "object"}),
                    "created_at": TIME, "updated_at": TIME}),
    "Compliance": {"type": "string", "enum": ["internal", "prod", "socs"]},
    "Space": obj({"id": UUID, "name": S, "compliance": {"type": "array", "items": ref("Compliance")},
                  "team": ref("NamedRef"), "region": ref("NamedRef"), "state": S, "shield": {"type": "boolean"},
                  "created_at": TIME, "updated_at": TIME}),
    "App": obj({"id": UUID, "name": S, "simple_name": S, "space": ref("SpaceRef"), "owner": ref("OwnerRef"),
                "region": ref("NamedRef"), "stack": ref("NamedRef"), "build_stack": ref("NamedRef"),
                "internal_routing": {"type": "boolean"}, "maintenance": {"type": "boolean"},
                # Wharf's: the page the app names in MAINTENANCE_PAGE_URL, and how its fetch went.
                "maintenance_page": nullable(obj({"url": S, "status": {"type": "string", "enum": ["pending", "fetched", "stale", "failed"]},
                                                  "error": nullable(S), "bytes": nullable(INT), "fetched_at": nullable(TIME)})),
                "acm": {"type": "boolean"},
                "create_status": S, "git_url": nullable(S), "repo_size": INT, "slug_size": INT, "web_url": S,
                "created_at": TIME, "updated_at": TIME}),
    # Workers, and web dynos not yet healthy, are the local supervisor's alone: no id, no endpoint.
    "Dyno": obj({"id": nullable(UUID), "name": S, "type": S,
                 "state": {"type": "string", "enum": ["starting", "up", "crashed"]},
                 "command": nullable(S), "size": S, "host": S, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                 "app": ref("AppRef"), "release": obj({"id": UUID, "version": {"type": "integer", "minimum": 1}}),
                 "created_at": TIME, "updated_at": TIME},
                required=["id", "name", "type", "state", "command", "size", "app", "created_at", "updated_at"]),
    # `ca` is present (true) only for a drain with its own trusted CAs; their PEM is not echoed.
    "Drain": obj({"id": UUID, "url": S, "token": S, "ca": {"type": "boolean"}, "addon": nullable({"type": "object"}),
                  "app": ref("AppRef"), "site": ref("SiteRef"), "created_at": TIME, "updated_at": TIME},
                 required=["id", "url", "token", "created_at", "updated_at"]),
    "LogSession": obj({"id": UUID, "logplex_url": S, "created_at": TIME, "updated_at": TIME}),
    "Site": obj({"id": UUID, "domain": S, "internal": {"type": "boolean"},
                 "compliance": {"type": "array", "items": ref("Compliance")}, "created_at": TIME, "updated_at": TIME}),
    "Route": obj({"id": UUID, "pending": {"type": "boolean"}, "app": ref("AppRef"), "site": ref("SiteRef"),
                  "source_path": S, "target_path": S, "created_at": TIME, "updated_at": TIME}),
    "Cert": obj({"id": UUID, "domains": {"type": "array", "items": S}, "subject": S, "issuer": S,
                 "fingerprint_sha256": S, "starts_at": TIME, "expires_at": TIME, "created_at": TIME, "updated_at": TIME}),
    # Each request counted once; `errors` is the sum of the three kinds, `abandoned` a part of `slow`.
    "Tally": obj({"requests": INT, "errors": INT, "server_errors": INT, "client_errors": INT, "slow": INT, "abandoned": INT}),
    "Evidence": obj({"baseline": ref("Tally"), "canary": ref("Tally"), "e_value": {"type": "number"},
                     "p_value": {"type": "number"}, "decision": S}),
    "Canary": obj({"id": UUID, "app": ref("AppRef"), "canary_app": ref("AppRef"), "state": {"type": "string", "enum": ["running", "promoted", "aborted"]},
                   "weight": {"type": "number"}, "errors": {"type": "array", "items": S}, "false_alarm_rate": {"type": "number"},
                   "min_requests": INT, "min_errors": INT, "min_rate_ratio": {"type": "number"},
                   "min_rate_difference": {"type": "number"}, "slow_seconds": {"type": "number"}, "evidence": nullable(ref("Evidence")),
                   "created_at": TIME, "updated_at": TIME}),
    "Formation": obj({"id": UUID, "type": S, "quantity": INT, "command": nullable(S),
                      "port": nullable({"type": "integer", "minimum": 1, "maximum": 65535}), "healthcheck": nullable(S),
                      "size": S, "app": ref("AppRef"), "created_at": TIME, "updated_at": TIME}),
    "ConfigVars": {"type": "object", "additionalProperties": S},
    # Every change to config vars or commands, and every deploy; `slug` is null for a release of commands alone.
    "Release": obj({"id": UUID, "version": {"type": "integer", "minimum": 1}, "description": S,
                    "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
                    "current": {"type": "boolean"}, "eligible_for_rollback": {"type": "boolean"},
                    "addon_plan_names": {"type": "array", "items": S}, "artifacts": {"type": "array"},
                    "app": ref("AppRef"), "slug": nullable(obj({"id": UUID})), "user": ref("OwnerRef"),
                    "output_stream_url": nullable(S), "created_at": TIME, "updated_at": TIME}),
    # Heroku's slug, with Wharf's `image` (an external runtime's, pinned by digest) and `state`;
    # `blob` (the upload URL) only in the answer to its creation.
    "Slug": obj({"id": UUID, "app": ref("AppRef"), "blob": nullable(obj({"method": {"type": "string", "enum": ["put"]}, "url": S})),
                 "buildpack_provided_description": nullable(S), "checksum": nullable(S), "commit": nullable(S),
                 "commit_description": nullable(S), "process_types": {"type": "object", "additionalProperties": S},
                 "size": nullable(INT), "image": nullable(S), "state": {"type": "string", "enum": ["pending", "uploaded", "image"]},
                 "stack": ref("NamedRef"), "created_at": TIME, "updated_at": TIME}),
    # Heroku's build; output_stream_url streams its output (text/plain) without the API token.
    "Build": obj({"id": UUID, "app": ref("AppRef"), "buildpacks": {"type": "array", "maxItems": 0}, "output_stream_url": S,
                  "release": nullable(obj({"id": UUID})), "slug": nullable(obj({"id": UUID})),
                  "source_blob": obj({"checksum": nullable(S), "url": S, "version": nullable(S), "version_description": nullable(S)}),
                  "stack": ref("NamedRef"), "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
                  "user": ref("OwnerRef"), "created_at": TIME, "updated_at": TIME}),
    "Accepted": obj({"accepted": INT}),
    "Health": obj({"status": S, "version": INT,
                   "storage": {"type": "string", "enum": ["ok", "unavailable"],
                               "description": "\"ok\", or \"unavailable\" when the store's last operation failed (writes answer 503; reads are served from memory)"}}),
    "Snapshot": {"type": "object", "required": ["version", "apps", "drains"], "additionalProperties": True,
                 "properties": {"version": INT, "apps": {"type": "array"}, "drains": {"type": "array"},
                                "images": {"type": "array"}}},
}

# Request bodies.
bodies = {
    "SpaceCreate": obj({"name": S, "compliance": {"type": "array", "items": ref("Compliance")}}, required=["name"]),
    "AppCreate": obj({"name": S, "space": S}, required=[]),
    "AppUpdate": obj({"name": S, "maintenance": {"type": "boolean"}}, required=[]),
    # Wharf has one team, region and stack; internal_routing follows the space; the rest are refused when set.
    "TeamAppCreate": obj({"name": S, "space": S, "team": S, "region": S, "stack": S, "internal_routing": {"type": "boolean"},
                          "locked": {"type": "boolean"}, "kernel": S, "feature_flags": {"type": "array", "items": S}},
                         required=[]),
    "DomainCreate": obj({"hostname": S, "sni_endpoint": nullable(S)}, required=["hostname"]),
    "DomainUpdate": obj({"sni_endpoint": nullable(S)}, required=["sni_endpoint"]),
    "SniEndpoint": obj({"id": UUID, "name": S, "domains": {"type": "array", "items": S},
                        "ssl_cert": obj({"cert_domains": {"type": "array", "items": S}, "subject": S, "issuer": S,
                                         "starts_at": TIME, "expires_at": TIME}),
                        "app": ref("AppRef"), "created_at": TIME, "updated_at": TIME}),
    # `attach` may only be false (no rendezvous); `type` only run; `env` adds to the config vars.
    "DynoCreate": obj({"command": S, "attach": {"type": "boolean"}, "env": {"type": "object", "additionalProperties": S},
                       "size": S, "type": S, "force_no_tty": {"type": "boolean"}}, required=["command"]),
    "DynoPut": obj({"type": S, "host": S, "port": {"type": "integer", "minimum": 1, "maximum": 65535}}),
    # `ca`: PEM certificates a syslog+tls or https drain trusts beside the Mozilla roots.
    "DrainCreate": obj({"url": S, "ca": S}, required=["url"]),
    "LogSessionCreate": obj({"lines": INT, "tail": {"type": "boolean"}, "source": S, "dyno": S}, required=[]),
    "SiteCreate": obj({"domain": S, "internal": {"type": "boolean"}}, required=["domain"]),
    "RouteCreate": obj({"site": S, "app": S, "source_path": S, "target_path": S}, required=["site", "app", "source_path"]),
    "SiteRouteCreate": obj({"app": S, "source_path": S, "target_path": S}, required=["app", "source_path"]),
    "CertCreate": obj({"certificate_chain": S, "private_key": S}),
    "CanaryPut": obj({"canary_app": S, "weight": {"type": "number", "minimum": 0, "maximum": 100},
                      "errors": {"type": "array", "items": {"type": "string", "enum": ["4xx", "5xx", "slow"]}},
                      "false_alarm_rate": {"type": "number"}, "min_requests": INT, "min_errors": INT,
                      "min_rate_ratio": {"type": "number"}, "min_rate_difference": {"type": "number"},
                      "slow_seconds": {"type": "number", "minimum": 0.01, "maximum": 3600}},
                     required=["canary_app", "weight"]),
    # `size`: one of the configured dyno sizes, in any case.
    "FormationUpdate": obj({"quantity": QUANTITY, "command": S, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            "healthcheck": S, "size": S}, required=[]),
    "FormationBatch": obj({"updates": {"type": "array", "items": obj({"type": S, "quantity": QUANTITY, "command": S,
                                                                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                                                        "healthcheck": S, "size": S}, required=["type"])}}),
    "ConfigVarsPatch": {"type": "object", "additionalProperties": nullable(S)},
    # Exactly one of: the release to roll back to (its id, or its version: 3, "3" or "v3"), or the slug to deploy.
    "ReleaseCreate": obj({"release": {"oneOf": [UUID, {"type": "integer", "minimum": 1}]}, "slug": UUID, "description": S},
                         required=[]),
    # `checksum`: SHA256:<64 hex>, which the upload must match; `image`: registry/name@sha256:<64 hex>, instead of an archive.
    # source_blob.url: http(s), or file:// when control_api.allow_file_urls; checksum SHA256:<64 hex>.
    "BuildCreate": obj({"source_blob": obj({"url": S, "checksum": S, "version": S, "version_description": S}, required=["url"]),
                        "buildpacks": {"type": "array"}}, required=["source_blob"]),
    "SlugCreate": obj({"process_types": {"type": "object", "additionalProperties": S}, "commit": S, "commit_description": S,
                       "checksum": S, "image": S, "buildpack_provided_description": S, "stack": S}, required=["process_types"]),
    "CanaryVerdict": obj({"id": UUID, "app": S, "evidence": ref("Evidence")}),
    "RouterInFlight": obj({"router": UUID, "version": {"type": "integer", "minimum": 0},
                           "dynos": {"type": "array", "items": obj({"address": S, "requests": {"type": "integer", "minimum": 0}})}}),
    "LogEvents": {"type": "array", "minItems": 1, "maxItems": 1000,
                  "items": obj({"app": S, "source": S, "process": S, "stream": {"type": "string", "enum": ["stdout", "stderr"]},
                                "time": TIME, "message": S}, required=["app", "source", "message"])},
}
schemas.update(bodies)

# GET /apps/{app}/metrics (issue 21): per-second (or per-step) figures of the last hour.
NUMBER = {"type": "number", "minimum": 0}
schemas.update({
    "DynoMetrics": obj({"name": S, "type": S, "samples": {"type": "array", "items": obj({
        "time": TIME, "cpu_percent": NUMBER, "memory_rss_bytes": INT, "memory_total_bytes": INT,
        "read_bytes_per_second": INT, "write_bytes_per_second": INT})}}),
    "RequestMetrics": obj({"time": TIME, "requests": INT, "status_4xx": INT, "status_5xx": INT,
                           "codes": {"type": "object", "additionalProperties": INT},
                           "latency_ms": obj({"p50": nullable(INT), "p95": nullable(INT), "p99": nullable(INT), "max": nullable(INT)})}),
    "Metrics": obj({"app": ref("AppRef"), "from": TIME, "to": TIME, "resolution": {"type": "integer", "minimum": 1, "maximum": 3600},
                    "dynos": {"type": "array", "items": ref("DynoMetrics")},
                    "requests": nullable({"type": "array", "items": ref("RequestMetrics")})}),
})

def param(name, description):
    return {"name": name, "in": "path", "required": True, "schema": S, "description": description}

P = {
    "app": param("app", "the app's id, key `app-space`, or bare name for an app in the `default` space"),
    "space": param("space", "the space's id or name"),
    "domain": param("domain", "the domain's hostname"),
    "team": param("team", "the team's id or name (Wharf has one, `wharf`)"),
    "dyno": param("dyno", "Heroku's dyno_id_or_name: the dyno's name (`type.N-xxxxx` for a dyno the local supervisor runs), its id, or Heroku's `type.N`: the local dyno of the type with index N (written as Heroku writes it: `web.01` is a 404); for DELETE and actions/stop also a process type, meaning every dyno of it"),
    "type": param("type", "the dyno type"),
    "drain": param("drain", "the drain's id, url or token"),
    "site": param("site", "the site's id or domain"),
    "route": param("route", "the route's id"),
    "cert": param("cert", "the certificate's id"),
    "name": param("name", "the SNI endpoint's name: its certificate's id"),
    "release": param("release", "the release's id, or its version: `3` or `v3`"),
    # The path of a release's output stream, which takes the id alone (no app to read a version in).
    "release_id": param("release", "the release's id"),
    "token": param("token", "the signed log session grant"),
    "slug": param("slug", "the slug's id"),
    "build": param("build", "the build's id"),
}

def op(summary, ok, schema, body=None, params=(), secure=True, content="application/json", streaming=False):
    o = {"summary": summary, "responses": {
        str(ok): {"description": "done", "content": {content: {"schema": schema}}},
        "default": {"description": "refused, with what to fix", "content": {"application/json": {"schema": ref("Error")}}},
    }}
    if params:
        o["parameters"] = [P[p] for p in params]
    if body:
        o["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    if not secure:
        o["security"] = []
    if streaming:
        o["x-streaming"] = True
    return o

def blob_op():
    """PUT of a slug's tar.gz to its blob URL: authorised by the URL's own token, not the API's."""
    o = op("Upload a slug's archive (tar.gz, the app under ./app); checked (size, checksum, safe unpack) before it is kept",
           200, ref("Slug"), params=["slug"], secure=False)
    o["parameters"].append({"name": "token", "in": "query", "required": True, "schema": S,
                            "description": "the upload token from the slug's blob.url: one slug, one upload, one hour"})
    o["requestBody"] = {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    return o

def arr(name):
    return {"type": "array", "items": ref(name)}

paths = {
    "/healthz": {"get": op("Whether the API is up, and the snapshot version", 200, ref("Health"), secure=False)},
    "/openapi.json": {"get": op("This document", 200, {"type": "object"}, secure=False)},
    "/account": {"get": op("The admin token's account (Heroku's account resource)", 200, ref("Account"))},
    "/users/~/apps": {"get": op("List the account's apps: every app (Heroku's user apps)", 200, arr("App"))},
    "/account/features": {"get": op("The account's features: none", 200, {"type": "array", "maxItems": 0})},
    "/teams/{team}/apps": {"get": op("List the team's apps: every app", 200, arr("App"), params=["team"])},
    "/apps/{app}/dynos/{dyno}/actions/stop": {"post": op("Stop a dyno the local supervisor runs; the formation replaces it (given a process type, every dyno of it: {\"restarted\": N})", 202,
                                                          {"oneOf": [nullable(ref("Dyno")), obj({"restarted": INT})]}, params=["app", "dyno"])},
    "/apps/{app}/formations/{type}": {"delete": op("Restart every dyno of a type the local supervisor runs", 202,
                                                   obj({"restarted": INT}), params=["app", "type"])},
    "/apps/{app}/formations/{type}/actions/stop": {"post": op("Stop every dyno of a type; the formation replaces them", 202,
                                                              obj({"restarted": INT}), params=["app", "type"])},
    "/apps/{app}/domains": {
        "get": op("List an app's domains: its default domain, then the sites that route / to it", 200, arr("Domain"), params=["app"]),
        "post": op("Add a domain: a site routing / to the app", 201, ref("Domain"), "DomainCreate", params=["app"])},
    "/apps/{app}/sni-endpoints": {"get": op("List the certificates that cover the app's domains, as SNI endpoints", 200,
                                            arr("SniEndpoint"), params=["app"]),
                                  "post": op("Upload a certificate into /certs, as one of the app's SNI endpoints", 201,
                                             ref("SniEndpoint"), "CertCreate", params=["app"])},
    "/apps/{app}/sni-endpoints/{name}": {
        "get": op("Show one of the certificates covering the app's domains", 200, ref("SniEndpoint"), params=["app", "name"]),
        "delete": op("Delete a certificate covering the app's domains from /certs (for every domain it covers)", 200,
                     ref("SniEndpoint"), params=["app", "name"])},
    "/teams/apps": {"post": op("Create an app in a space of Wharf's one team (apps:create --space)", 201, ref("App"),
                               "TeamAppCreate")},
    "/apps/{app}/domains/{domain}": {
        "get": op("Show one of an app's domains", 200, ref("Domain"), params=["app", "domain"]),
        "patch": op("Name the SNI endpoint of a domain: checked, nothing stored (the router picks by SNI)", 200, ref("Domain"), "DomainUpdate", params=["app", "domain"]),
        "delete": op("Remove a custom domain (its site, routes and drains)", 200, ref("Domain"), params=["app", "domain"])},
    "/apps/{app}/addons": {"get": op("List an app's add-ons: none yet", 200, {"type": "array", "maxItems": 0}, params=["app"])},
    "/apps/{app}/features": {"get": op("List Wharf's app features, enabled as the app's records say", 200, arr("Feature"), params=["app"])},
    "/spaces": {"get": op("List spaces", 200, arr("Space")), "post": op("Create a space", 201, ref("Space"), "SpaceCreate")},
    "/spaces/{space}": {"get": op("Show a space", 200, ref("Space"), params=["space"])},
    "/apps": {"get": op("List apps", 200, arr("App")), "post": op("Create an app", 201, ref("App"), "AppCreate")},
    "/apps/{app}": {"get": op("Show an app", 200, ref("App"), params=["app"]),
                    "patch": op("Rename an app within its space, and turn maintenance mode on or off", 200, ref("App"), "AppUpdate", params=["app"]),
                    "delete": op("Delete an app, with its dynos, drains, routes, canaries, formation, config vars and releases", 200, ref("App"), params=["app"])},
    "/apps/{app}/dynos": {"get": op("List an app's dynos", 200, arr("Dyno"), params=["app"]),
                          "post": op("Run a one-off dyno detached (run.N) with the app's config vars; its output goes to the app's logs",
                                     201, ref("Dyno"), "DynoCreate", params=["app"]),
                          "delete": op("Restart every dyno the local supervisor runs, rolling (an external runtime's: 422)",
                                       202, obj({}), params=["app"])},
    "/apps/{app}/dynos/{dyno}": {
        "get": op("Show a dyno", 200, ref("Dyno"), params=["app", "dyno"]),
        "put": op("Register or move a dyno (an external runtime)", 200, ref("Dyno"), "DynoPut", params=["app", "dyno"]),
        "delete": op("Restart a dyno the local supervisor runs, of any type (202), or remove one an external runtime registered (200); given a process type, restart every dyno of it (202, {\"restarted\": N})",
                     200, {"oneOf": [ref("Dyno"), obj({"restarted": INT})]}, params=["app", "dyno"])},
    "/apps/{app}/formation": {
        "get": op("List an app's formation", 200, arr("Formation"), params=["app"]),
        "patch": op("Change several dyno types at once", 200, arr("Formation"), "FormationBatch", params=["app"])},
    "/apps/{app}/formation/{type}": {
        "get": op("Show one dyno type", 200, ref("Formation"), params=["app", "type"]),
        "patch": op("Change one dyno type", 200, ref("Formation"), "FormationUpdate", params=["app", "type"]),
        "delete": op("Remove one dyno type", 200, ref("Formation"), params=["app", "type"])},
    "/apps/{app}/config-vars": {
        "get": op("Show config vars", 200, ref("ConfigVars"), params=["app"]),
        "patch": op("Set config vars; null deletes one", 200, ref("ConfigVars"), "ConfigVarsPatch", params=["app"])},
    "/apps/{app}/releases": {
        "get": op("List an app's releases; `Range: version ..; max=N, order=desc` pages them (206 and Next-Range while more remain)",
                  200, arr("Release"), params=["app"]),
        "post": op("Roll back to a release (`release`: its config vars, slug and commands), or deploy a slug (`slug`), as a new release",
                   201, ref("Release"), "ReleaseCreate", params=["app"])},
    "/apps/{app}/slugs": {"post": op("Create a slug; its answer's blob.url takes the tar.gz by PUT (an image slug has none)", 201,
                                     ref("Slug"), "SlugCreate", params=["app"])},
    "/apps/{app}/slugs/{slug}": {"get": op("Show a slug", 200, ref("Slug"), params=["app", "slug"])},
    "/slugs/{slug}/blob": {"put": blob_op()},
    "/apps/{app}/builds": {
        "get": op("List an app's builds", 200, arr("Build"), params=["app"]),
        "post": op("Build a source archive (tar.gz or zip with a Procfile) from a URL and release its slug", 201, ref("Build"),
                   "BuildCreate", params=["app"])},
    "/apps/{app}/builds/{build}": {"get": op("Show a build", 200, ref("Build"), params=["app", "build"])},
    "/builds/{build}/output": {"get": op("A build's output, streamed while it runs (its output_stream_url; no token)", 200, S,
                                         params=["build"], secure=False, content="text/plain", streaming=True)},
    "/releases/{release}/output": {"get": op(
        "A release's release phase output, streamed while it runs (its output_stream_url; no token)", 200, S,
        params=["release_id"], secure=False, content="text/plain", streaming=True)},
    "/apps/{app}/releases/{release}": {"get": op("Show a release", 200, ref("Release"), params=["app", "release"])},
    "/apps/{app}/releases/{release}/config-vars": {"get": op("The config vars as of a release", 200, ref("ConfigVars"),
                                                             params=["app", "release"])},
    "/apps/{app}/log-drains": {
        "get": op("List an app's drains", 200, arr("Drain"), params=["app"]),
        "post": op("Add a drain", 201, ref("Drain"), "DrainCreate", params=["app"])},
    "/apps/{app}/log-drains/{drain}": {
        "get": op("Show a drain", 200, ref("Drain"), params=["app", "drain"]),
        "delete": op("Remove a drain", 200, ref("Drain"), params=["app", "drain"])},
    "/apps/{app}/log-sessions": {"post": op("Open a log session", 201, ref("LogSession"), "LogSessionCreate", params=["app"])},
    "/apps/{app}/metrics": {"get": dict(op(
        "An app's figures per second, or per step of `resolution` seconds, over at most the last hour: each dyno's CPU "
        "(percent of one core), memory and storage bytes per second, averaged over the step (from the local runtime's "
        "/proc samples), and the app's requests, 4xx, 5xx, router error codes (H12, H14, ...) and latency percentiles, "
        "summed or merged over the step (from the router of this process; `requests` is null without one). Steps start "
        "at `from`; steps without figures are left out. A bad time, a reversed, empty or over-an-hour range, a "
        "resolution outside 1..3600 or an unknown parameter is a 422.",
        200, ref("Metrics"), params=["app"]), parameters=[P["app"]] + [
            {"name": "from", "in": "query", "required": False, "schema": TIME,
             "description": "RFC 3339 start, taken to the second (default: an hour before `to`)"},
            {"name": "to", "in": "query", "required": False, "schema": TIME,
             "description": "RFC 3339 end, exclusive (default: now)"},
            {"name": "resolution", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 1},
             "description": "seconds per step"}])},
    "/apps/{app}/routes": {"get": op("List the routes to an app", 200, arr("Route"), params=["app"])},
    "/apps/{app}/canary": {
        "get": op("Show an app's canary, with live counts", 200, ref("Canary"), params=["app"]),
        "put": op("Start or change a canary", 200, ref("Canary"), "CanaryPut", params=["app"]),
        "delete": op("Abort the canary", 200, ref("Canary"), params=["app"])},
    "/apps/{app}/canary/promote": {"post": op("Promote the canary", 200, ref("Canary"), params=["app"])},
    "/sites": {"get": op("List sites", 200, arr("Site")), "post": op("Create a site", 201, ref("Site"), "SiteCreate")},
    "/sites/{site}": {"get": op("Show a site", 200, ref("Site"), params=["site"]),
                      "delete": op("Delete a site, with its routes and drains", 200, ref("Site"), params=["site"])},
    "/sites/{site}/routes": {
        "get": op("List a site's routes", 200, arr("Route"), params=["site"]),
        "post": op("Add a route to a site", 201, ref("Route"), "SiteRouteCreate", params=["site"])},
    "/sites/{site}/log-drains": {
        "get": op("List a site's drains", 200, arr("Drain"), params=["site"]),
        "post": op("Add a site drain", 201, ref("Drain"), "DrainCreate", params=["site"])},
    "/sites/{site}/log-drains/{drain}": {
        "get": op("Show a site drain", 200, ref("Drain"), params=["site", "drain"]),
        "delete": op("Remove a site drain", 200, ref("Drain"), params=["site", "drain"])},
    "/routes": {"get": op("List routes", 200, arr("Route")), "post": op("Create a route", 201, ref("Route"), "RouteCreate")},
    "/routes/{route}": {"get": op("Show a route", 200, ref("Route"), params=["route"]),
                        "delete": op("Delete a route", 200, ref("Route"), params=["route"])},
    "/certs": {"get": op("List certificates", 200, arr("Cert")), "post": op("Upload a certificate", 201, ref("Cert"), "CertCreate")},
    "/certs/{cert}": {"get": op("Show a certificate", 200, ref("Cert"), params=["cert"]),
                      "delete": op("Delete a certificate", 200, ref("Cert"), params=["cert"])},
    "/log-events": {"post": op("Put platform components' lines on the log bus", 202, ref("Accepted"), "LogEvents")},
    "/log-sessions/{token}": {"get": op("Stream a log session's lines as text, or as Server-Sent Events (one `data:` event per line) when asked for text/event-stream", 200, S, params=["token"], secure=False,
                                        content="text/plain", streaming=True)},
    "/v1/snapshot": {"get": op("The current snapshot: all of it for the admin token, its role's part for the router, logshuttle or runtime token", 200, ref("Snapshot"))},
    "/v1/canary-verdicts": {"post": op("A router elsewhere reports a canary it aborted (admin or router token)", 200,
                                       obj({"recorded": {"type": "boolean"}}), "CanaryVerdict")},
    "/v1/router-in-flight": {"post": op("A router elsewhere reports the snapshot version it routes by and its requests at the dynos that "
                                        "left its table, for the supervisor's wait before it stops one (router token); answers the routers counted now",
                                        200, obj({"routers": {"type": "integer", "minimum": 1}}), "RouterInFlight")},
    "/v1/snapshot/watch": {"get": op("Every snapshot from now on, as newline-delimited JSON", 200, ref("Snapshot"),
                                     content="application/x-ndjson", streaming=True)},
}

# Pipelines (Akkeris' shapes, Heroku's where they agree) and app webhooks.
STAGE = {"type": "string", "enum": ["review", "development", "staging", "canary", "production"]}
CHECK_STATE = {"type": "string", "enum": ["pending", "success", "failure", "error"]}
REF_IN = {"oneOf": [S, obj({"id": S, "name": S}, required=[])]}
HOOK_EVENT = {"type": "string", "enum": ["release", "build", "promotion", "crashed", "destroy", "canary", "preview"]}
RELEASE_REF = obj({"id": UUID, "version": {"type": "integer", "minimum": 1}})
PROMOTED_APP = obj({"id": UUID, "name": nullable(S)})
PROMOTED_RELEASE = obj({"id": UUID, "version": nullable({"type": "integer", "minimum": 1})})
schemas.update({
    "Pipeline": obj({"id": UUID, "name": S, "created_at": TIME, "updated_at": TIME}),
    "PipelineCoupling": obj({"id": UUID, "app": ref("AppRef"), "pipeline": ref("NamedRef"), "stage": STAGE,
                             "required_status_checks": obj({"contexts": {"type": "array", "items": S}}),
                             "created_at": TIME, "updated_at": TIME}),
    "ReleaseStatus": obj({"id": UUID, "context": S, "state": CHECK_STATE, "name": nullable(S), "description": nullable(S),
                          "target_url": nullable(S), "created_at": TIME, "updated_at": TIME}),
    # `state` combines the statuses as GitHub does: failure if any failed or erred, else pending if any is pending or there are none.
    "ReleaseStatuses": obj({"state": CHECK_STATE, "release": RELEASE_REF, "statuses": {"type": "array", "items": ref("ReleaseStatus")}}),
    # A promotion outlives its apps: a deleted app's name and its release's version are null, its target `deleted`.
    # A target with the `canary` feature shows the canary release that holds its release.
    "PromotionTarget": obj({"id": UUID, "app": PROMOTED_APP, "release": PROMOTED_RELEASE,
                            "status": {"type": "string", "enum": ["pending", "succeeded", "failed", "deleted"]},
                            "error_message": nullable(S), "canary_release": ref("CanaryRelease"),
                            "pipeline_promotion": obj({"id": UUID})},
                           required=["id", "app", "release", "status", "error_message", "pipeline_promotion"]),
    # A production app's automatic canary release: its release (pending until the outcome), the canary app, and
    # how it ended, with the judge's evidence.
    "CanaryRelease": obj({"id": UUID, "app": nullable(ref("AppRef")),
                          "release": obj({"id": UUID, "version": nullable(INT), "status": nullable(S)}),
                          "canary_app": obj({"name": S}),
                          "state": {"type": "string", "enum": ["starting", "running", "promoted", "aborted"]},
                          "outcome": nullable(S), "evidence": nullable(ref("Evidence")),
                          "soak_requests": nullable(INT), "soak_seconds": nullable(INT), "running_since": nullable(TIME),
                          "created_at": TIME, "updated_at": TIME}),
    "PipelinePromotion": obj({"id": UUID, "pipeline": ref("NamedRef"), "source": obj({"app": PROMOTED_APP, "release": PROMOTED_RELEASE}),
                              "safe": {"type": "boolean"}, "status": {"type": "string", "enum": ["pending", "completed"]},
                              "targets": {"type": "array", "items": ref("PromotionTarget")}, "created_at": TIME, "updated_at": TIME}),
    # The secret is never shown.
    "Hook": obj({"id": UUID, "app": ref("AppRef"), "url": S, "events": {"type": "array", "items": HOOK_EVENT},
                 "active": {"type": "boolean"}, "secret": {"type": "string", "enum": ["[redacted]"]},
                 "created_at": TIME, "updated_at": TIME}),
    "HookDelivery": obj({"id": UUID, "event": HOOK_EVENT, "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                         "attempts": INT, "last_status_code": nullable(INT), "last_error": nullable(S),
                         "created_at": TIME, "updated_at": TIME}),
    "PipelineCreate": obj({"name": S}),
    "CouplingCreate": obj({"app": REF_IN, "pipeline": REF_IN, "stage": S,
                           "required_status_checks": obj({"contexts": {"type": "array", "items": S}})},
                          required=["app", "pipeline", "stage"]),
    "CouplingUpdate": obj({"stage": S, "required_status_checks": obj({"contexts": {"type": "array", "items": S}})}, required=[]),
    "StatusCreate": obj({"state": CHECK_STATE, "context": S, "name": S, "description": S, "target_url": S},
                        required=["state", "context"]),
    "StatusUpdate": obj({"state": CHECK_STATE, "name": S, "description": S, "target_url": S}, required=[]),
    "PromotionCreate": obj({"pipeline": REF_IN, "source": obj({"app": REF_IN, "release": REF_IN}, required=["app"]),
                            "targets": {"type": "array", "items": obj({"app": REF_IN})}, "safe": {"type": "boolean"}},
                           required=["pipeline", "source"]),
    "HookCreate": obj({"url": S, "events": {"type": "array", "items": HOOK_EVENT}, "secret": S, "active": {"type": "boolean"}},
                      required=["url", "events", "secret"]),
    # Absent fields keep their value; enabling needs the app in a pipeline's production stage.
    "CanaryFeatureUpdate": obj({"enabled": {"type": "boolean"}, "weight": {"type": "number", "minimum": 0, "maximum": 100},
                                "errors": {"type": "array", "items": {"type": "string", "enum": ["4xx", "5xx", "slow"]}},
                                "false_alarm_rate": {"type": "number"}, "min_requests": INT, "min_errors": INT,
                                "min_rate_ratio": {"type": "number"}, "min_rate_difference": {"type": "number"},
                                "slow_seconds": {"type": "number", "minimum": 0.01, "maximum": 3600},
                                "soak_requests": nullable({"type": "integer", "minimum": 1}),
                                "soak_seconds": nullable({"type": "integer", "minimum": 1, "maximum": 604800})}, required=[]),
    "HookUpdate": obj({"url": S, "events": {"type": "array", "items": HOOK_EVENT}, "secret": S, "active": {"type": "boolean"}},
                      required=[]),
})
P.update({
    "pipeline": param("pipeline", "the pipeline's id or name"),
    "coupling": param("coupling", "the coupling's id"),
    "status": param("status", "the status's id or context"),
    "promotion": param("promotion", "the promotion's id"),
    "hook": param("hook", "the hook's id"),
    "canary_release": param("canary_release", "the canary release's id"),
    "feature": param("feature", "the feature's name (`canary`, `internal-routing`, `preview`) or id"),
})
paths.update({
    "/pipelines": {"get": op("List pipelines", 200, arr("Pipeline")),
                   "post": op("Create a pipeline", 201, ref("Pipeline"), "PipelineCreate")},
    "/pipelines/{pipeline}": {"get": op("Show a pipeline", 200, ref("Pipeline"), params=["pipeline"]),
                              "patch": op("Rename a pipeline", 200, ref("Pipeline"), "PipelineCreate", params=["pipeline"]),
                              "delete": op("Delete a pipeline with its couplings and promotions", 200, ref("Pipeline"), params=["pipeline"])},
    "/pipelines/{pipeline}/pipeline-couplings": {"get": op("List a pipeline's couplings", 200, arr("PipelineCoupling"), params=["pipeline"])},
    "/pipeline-stages": {"get": op("The stages, first to last", 200, {"type": "array", "items": STAGE})},
    "/pipeline-couplings": {"get": op("List couplings", 200, arr("PipelineCoupling")),
                            "post": op("Couple an app to a pipeline stage; an app is in at most one pipeline", 201,
                                       ref("PipelineCoupling"), "CouplingCreate")},
    "/pipeline-couplings/{coupling}": {
        "get": op("Show a coupling", 200, ref("PipelineCoupling"), params=["coupling"]),
        "patch": op("Change a coupling's stage or required status checks", 200, ref("PipelineCoupling"), "CouplingUpdate", params=["coupling"]),
        "delete": op("Remove an app from its pipeline", 200, ref("PipelineCoupling"), params=["coupling"])},
    "/apps/{app}/pipeline-couplings": {"get": op("The app's coupling", 200, ref("PipelineCoupling"), params=["app"])},
    "/apps/{app}/releases/{release}/statuses": {
        "get": op("A release's statuses and their combined state", 200, ref("ReleaseStatuses"), params=["app", "release"]),
        "post": op("Add a status to a release, one per context", 201, ref("ReleaseStatus"), "StatusCreate", params=["app", "release"])},
    "/apps/{app}/releases/{release}/statuses/{status}": {
        "get": op("Show a release status", 200, ref("ReleaseStatus"), params=["app", "release", "status"]),
        "patch": op("Change a release status", 200, ref("ReleaseStatus"), "StatusUpdate", params=["app", "release", "status"])},
    "/pipeline-promotions": {
        "get": op("List promotions", 200, arr("PipelinePromotion")),
        "post": op("Promote a release's code (never its config vars) to the apps of the next stage", 201,
                   ref("PipelinePromotion"), "PromotionCreate")},
    "/pipeline-promotions/{promotion}": {"get": op("Show a promotion", 200, ref("PipelinePromotion"), params=["promotion"])},
    "/pipeline-promotions/{promotion}/promotion-targets": {
        "get": op("A promotion's targets, each with its release's status and error", 200, arr("PromotionTarget"), params=["promotion"])},
    "/apps/{app}/features/{feature}": {
        "get": op("Show an app feature, with the canary feature's settings", 200, ref("Feature"), params=["app", "feature"]),
        "patch": op("Turn automatic canary releases of a production app on or off, and set their share, judge and soak "
                    "(`canary`); turn preview apps of a development app on or off, with GitHub's webhook secret and their "
                    "age (`preview`)", 200, ref("Feature"), "FeatureUpdate", params=["app", "feature"])},
    "/apps/{app}/canary-releases": {"get": op("List the app's automatic canary releases, oldest first", 200,
                                              arr("CanaryRelease"), params=["app"])},
    "/apps/{app}/canary-releases/{canary_release}": {"get": op("Show one of the app's canary releases", 200,
                                                               ref("CanaryRelease"), params=["app", "canary_release"])},
    "/apps/{app}/hooks": {"get": op("List an app's webhooks", 200, arr("Hook"), params=["app"]),
                          "post": op("Add a webhook", 201, ref("Hook"), "HookCreate", params=["app"])},
    "/apps/{app}/hooks/{hook}": {"get": op("Show a webhook", 200, ref("Hook"), params=["app", "hook"]),
                                 "patch": op("Change a webhook", 200, ref("Hook"), "HookUpdate", params=["app", "hook"]),
                                 "delete": op("Remove a webhook", 200, ref("Hook"), params=["app", "hook"])},
    "/apps/{app}/hooks/{hook}/deliveries": {"get": op("A webhook's recent deliveries, newest first", 200, arr("HookDelivery"),
                                                      params=["app", "hook"])},
    "/apps/{app}/hooks/{hook}/results": {"get": op("A webhook's recent deliveries, newest first (Akkeris' name for /deliveries)",
                                                   200, arr("HookDelivery"), params=["app", "hook"])},
})

# Preview apps (issue 22): a development app's pull requests, each a review-stage app.
PREVIEW_HEADERS = [
    {"name": "X-GitHub-Event", "in": "header", "required": True, "schema": S,
     "description": "`pull_request` is acted on, `ping` answered 200, any other event 202 ignored"},
    {"name": "X-GitHub-Delivery", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
     "description": "GitHub's delivery id: one acted on before is a replay (409)"},
    {"name": "X-Hub-Signature-256", "in": "header", "required": True, "schema": {"type": "string", "pattern": "^sha256=[0-9a-fA-F]{64}$"},
     "description": "the HMAC-SHA256 of the raw body under the preview feature's secret, in hex: missing 401, wrong 403"},
]
schemas.update({
    "PreviewFeatureUpdate": obj({"enabled": {"type": "boolean"}, "secret": {"type": "string", "minLength": 16, "maxLength": 256},
                                 "max_age_seconds": {"type": "integer", "minimum": 1, "maximum": 30 * 24 * 3600}}, required=[]),
    "FeatureUpdate": {"oneOf": [ref("CanaryFeatureUpdate"), ref("PreviewFeatureUpdate")]},
    "Preview": obj({"id": UUID, "app": ref("AppRef"), "parent": ref("AppRef"),
                    "pull_request": obj({"number": INT, "head": obj({"ref": S, "sha": S})}),
                    "source_url": S, "build": nullable(obj({"id": UUID, "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]}})),
                    "created_at": TIME, "updated_at": TIME, "expires_at": TIME}),
    # The fields of GitHub's pull_request event Wharf reads; GitHub's others are allowed and ignored.
    "PullRequestEvent": obj({"action": S, "number": INT,
                             "pull_request": obj({"head": obj({"ref": S, "sha": S, "repo": nullable(obj({"full_name": S, "archive_url": S}, extra=True))}, extra=True),
                                                  "base": obj({"repo": obj({"full_name": S}, extra=True)}, extra=True),
                                                  "updated_at": TIME}, extra=True)},
                            required=["action", "number"], extra=True),
    "PreviewEventAnswer": obj({"event": S, "action": nullable(S),
                               "outcome": {"type": "string", "enum": ["pong", "ignored", "created", "rebuilt", "unchanged", "deleted"]},
                               "preview": nullable(ref("Preview"))}),
})

def webhook_op():
    """GitHub's pull_request webhook: no token; the signature authenticates it."""
    o = op("GitHub's pull_request event for a development app with the preview feature: opened, reopened and synchronize "
           "create or rebuild the pull request's preview app, closed deletes it", 202, ref("PreviewEventAnswer"),
           "PullRequestEvent", params=["app"], secure=False)
    o["responses"]["200"] = {"description": "a ping, answered", "content": {"application/json": {"schema": ref("PreviewEventAnswer")}}}
    o["parameters"] = o["parameters"] + PREVIEW_HEADERS
    return o

paths.update({
    "/apps/{app}/previews": {"get": op("The app's preview apps, by pull request number", 200, arr("Preview"), params=["app"])},
    "/apps/{app}/previews/webhook": {"post": webhook_op()},
})

doc = {
    "openapi": "3.0.3",
    "info": {"title": "Wharf control API", "version": "1", "description":
             "Apps, formations, dynos, config vars, sites, routes, drains, canaries and certificates, in the shapes of "
             "Heroku's Platform API where Heroku has the resource. Every refusal is {\"id\", \"message\"} with a 4xx status. "
             "While an automatic canary release is open, its canary app is read-only: every request that would change "
             "it is a 409 naming the canary release, but reads, log sessions, log drains, hooks and an external runtime's dyno registrations."},
    "servers": [{"url": "http://127.0.0.1:5000"}],
    # The token as a bearer token, or as the password of Basic credentials with any user name.
    "security": [{"bearer": []}, {"basic": []}],
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                       "basic": {"type": "http", "scheme": "basic"}}, "schemas": schemas},
    "paths": paths,
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=1, sort_keys=True)
    f.write("\n")
