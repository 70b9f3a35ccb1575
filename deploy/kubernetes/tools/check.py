#!/usr/bin/env python3
"""Validates the Kubernetes manifests of deploy/kubernetes (run by validate.sh).

    check.py --manifests DIR --repo ROOT --gateway BIN

DIR holds `base/` and `overlays/*/`, each a kustomization. Each is rendered
(tools/render.py, and `kubectl kustomize` too when kubectl is on PATH: both
must give the same objects), then:

1. every object is valid against the Kubernetes schemas (kubernetes-validate,
   strict: unknown fields are errors) for the oldest and newest supported
   Kubernetes; ServiceMonitor and PrometheusRule against the vendored
   Prometheus Operator schemas (schemas/README.md);
2. the gateway configuration in the ConfigMap passes `stella-gateway check`,
   with every file it names materialized where the pod's volumes put it
   (placeholder keys and certificates) and the container's environment;
3. the objects agree with the gateway and with each other: listeners and
   container ports, probes on /healthz and /readyz of the admin listener,
   preStop + shutdown_grace_seconds within terminationGracePeriodSeconds,
   no subPath mounts, an immutable configuration ConfigMap, keys from files
   only, the shared replay store with a password when there is more than one
   replica, the autoscaler, disruption budget, network policies (the admin
   port only from Prometheus, redis only from the gateway), Service and
   ServiceMonitor selectors, the alert rules equal to
   compose/prometheus/alerts.yml with every metric in docs/metrics.md;
4. every policy folder is wholly in its ConfigMap and passes
   `stella-gateway policy test`.

Every problem is printed as `FAIL <kustomization>: <object>: <problem>`;
the exit code is 1 if there is any, 2 for bad arguments.
"""

import argparse
import copy
import ipaddress
import json
import os
import pathlib
import re
import secrets
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import kubernetes_validate
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import render  # noqa: E402

# The oldest and the newest Kubernetes the manifests are checked against.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
}
# Margin between the gateway's last possible exit and the kubelet's SIGKILL.
GRACE_MARGIN_SECONDS = 5
LOOPBACK_HOSTS = {"localhost"}


class Report:
    def __init__(self):
        self.errors = 0

    def fail(self, target, what, message):
        self.errors += 1
        print(f"FAIL {target}: {what}: {message}")

    def ok(self, target, message):
        print(f"ok   {target}: {message}")


def ref(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def labels_match(selector, labels):
    """Whether a label selector (matchLabels / matchExpressions) selects labels."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(doc):
    return ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}


def workloads(docs):
    return [d for d in docs if d.get("kind") in render.POD_TEMPLATE_KINDS]


def port_number(container, port):
    """The number a probe / Service / NetworkPolicy port means for a container."""
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def split_host_port(addr):
    """('0.0.0.0', 8080) from '0.0.0.0:8080' or '[::]:8080'."""
    host, _, port = str(addr).rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host):
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fold(name):
    """An environment variable segment as the gateway compares it."""
    return name.replace("_", "").lower()


# ---------------------------------------------------------------- schemas


def strictify(schema):
    """Objects with declared properties accept no others (API server strict
    field validation); the CRD schemas leave that open."""
    if isinstance(schema, dict):
        out = {k: strictify(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strictify(v) for v in schema]
    return schema


def check_schemas(report, target, docs, schema_dir):
    core = crd = 0
    validators = {}
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CRD_SCHEMAS:
            if key not in validators:
                with open(schema_dir / CRD_SCHEMAS[key]) as f:
                    validators[key] = jsonschema.Draft7Validator(strictify(json.load(f)))
            try:
                problems = sorted(validators[key].iter_errors(doc), key=lambda e: list(e.path))
            except re.error as e:
                # A pattern written for Go's regexp that Python's re refuses.
                report.fail(target, ref(doc), f"Prometheus Operator schema: cannot apply a pattern: {e}")
                problems = []
            for e in problems:
                path = ".".join(str(p) for p in e.path)
                report.fail(target, ref(doc), f"Prometheus Operator schema: {path}: {e.message}")
            if not doc.get("metadata", {}).get("name"):
                report.fail(target, ref(doc), "metadata.name is missing")
            crd += 1
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                report.fail(target, ref(doc), f"Kubernetes {e.version} schema: {path}: {e.message}")
                break
            except kubernetes_validate.SchemaNotFoundError as e:
                report.fail(target, ref(doc), f"no schema: {e.message}")
                break
        core += 1
    versions = ", ".join(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS)
    report.ok(target, f"schemas: {core} objects against Kubernetes {versions}, "
                      f"{crd} against the Prometheus Operator CRDs")


# ---------------------------------------------------------------- the gateway


class Gateway:
    """The gateway Deployment of a rendered kustomization and what it uses."""

    def __init__(self, deployment, container):
        self.deployment = deployment
        self.container = container
        self.spec = deployment["spec"]["template"]["spec"]
        self.namespace = deployment["metadata"].get("namespace")
        self.labels = pod_labels(deployment)
        args = container.get("args") or []
        self.config_path = args[args.index("--config") + 1]
        self.volumes = {v["name"]: v for v in self.spec.get("volumes") or []}
        self.mounts = sorted(
            container.get("volumeMounts") or [], key=lambda m: -len(m["mountPath"])
        )

    @staticmethod
    def find(docs):
        for doc in docs:
            if doc.get("kind") != "Deployment":
                continue
            for c in doc["spec"]["template"]["spec"].get("containers") or []:
                args = c.get("args") or []
                if args[:1] == ["run"] and "--config" in args[:-1]:
                    return Gateway(doc, c)
        return None

    def mount_of(self, path):
        """(mount, path inside the volume) of a file in the container, or None."""
        for m in self.mounts:
            root = m["mountPath"].rstrip("/")
            if path == root or path.startswith(root + "/"):
                return m, path[len(root):].lstrip("/")
        return None


def find_object(docs, kind, name, namespace):
    for d in docs:
        md = d.get("metadata", {})
        if d.get("kind") == kind and md.get("name") == name and md.get("namespace") == namespace:
            return d
    return None


def volume_sources(volume):
    """[(kind, name, items or None)] of a configMap, secret or projected volume."""
    if "configMap" in volume:
        return [("ConfigMap", volume["configMap"]["name"], volume["configMap"].get("items"))]
    if "secret" in volume:
        return [("Secret", volume["secret"]["secretName"], volume["secret"].get("items"))]
    if "projected" in volume:
        out = []
        for s in volume["projected"].get("sources") or []:
            if "configMap" in s:
                out.append(("ConfigMap", s["configMap"]["name"], s["configMap"].get("items")))
            elif "secret" in s:
                out.append(("Secret", s["secret"]["name"], s["secret"].get("items")))
        return out
    return []


def config_file_settings(tree, path=""):
    """Every (key path, value) of a setting that names a file or a folder."""
    if isinstance(tree, dict):
        for k, v in tree.items():
            child = f"{path}.{k}" if path else k
            if isinstance(v, str) and (k.endswith("_file") or k.endswith("_dir")):
                yield child, v
            else:
                yield from config_file_settings(v, child)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from config_file_settings(v, f"{path}[{i}]")


def file_role(key):
    """What a file setting holds, for its placeholder."""
    last = re.sub(r"\[\d+\]", "", key).rsplit(".", 1)[-1]
    if key.startswith("router.") and last.endswith("key_file"):
        return "envelope-key"
    if last in ("cert_file", "client_ca_file", "ca_file", "replay_store_ca_file",
                "replay_store_client_cert_file"):
        return "certificate"
    if last in ("key_file", "replay_store_client_key_file"):
        return "private-key"
    if last in ("nonce_secret_file", "client_secret_file"):
        return "secret"
    if last == "state_dir":
        return "writable-folder"
    if last.endswith("_dir"):
        return "folder"
    return None


class Placeholders:
    """Stand-ins for what the operator puts in Secrets, made once per run."""

    def __init__(self, gateway_bin, workdir):
        self.gateway_bin = gateway_bin
        self.workdir = workdir
        self._cert = None
        self._envelope = None

    def certificate(self):
        if self._cert is None:
            key, crt = self.workdir / "placeholder.key", self.workdir / "placeholder.crt"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-subj", "/CN=placeholder.stella-gateway", "-days", "1",
                 "-keyout", str(key), "-out", str(crt)],
                check=True, capture_output=True,
            )
            self._cert = (crt.read_text(), key.read_text())
        return self._cert

    def envelope_key(self):
        if self._envelope is None:
            out = subprocess.run(
                [self.gateway_bin, "keys", "generate", "--alg", "EdDSA", "--kid", "placeholder"],
                check=True, capture_output=True, text=True,
            ).stdout
            line = next(l for l in out.splitlines() if l.startswith("Router__IdentityEnvelopeSigningKey="))
            self._envelope = line.split("=", 1)[1]
        return self._envelope

    def content(self, role):
        if role == "envelope-key":
            return self.envelope_key()
        if role == "certificate":
            return self.certificate()[0]
        if role == "private-key":
            return self.certificate()[1]
        return secrets.token_hex(32)


def resolve_env(container, docs, namespace):
    """The container's environment as the kubelet builds it: values, keys of
    rendered ConfigMaps, placeholders for Secret keys, $(VAR) expanded."""
    env = {}
    placeholders = {}
    for e in container.get("env") or []:
        if "value" in e:
            value = e["value"]
        else:
            source = e.get("valueFrom") or {}
            if "secretKeyRef" in source:
                r = source["secretKeyRef"]
                value = placeholders.setdefault((r["name"], r["key"]), secrets.token_hex(16))
            elif "configMapKeyRef" in source:
                r = source["configMapKeyRef"]
                cm = find_object(docs, "ConfigMap", r["name"], namespace)
                value = (cm or {}).get("data", {}).get(r["key"], "")
            else:
                value = ""
        value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
        env[e["name"]] = value
    return env


def check_gateway_config(report, target, docs, gw, ctx):
    """Runs `stella-gateway check` on the configuration as the pod sees it.
    Returns the effective configuration it prints, or None."""
    where = ref(gw.deployment)
    found = gw.mount_of(gw.config_path)
    if not found:
        report.fail(target, where, f"--config {gw.config_path} is on no volume of the container")
        return None
    mount, key = found
    if mount.get("subPath") or mount.get("subPathExpr"):
        return None  # reported by check_mounts
    volume = gw.volumes.get(mount["name"], {})
    sources = volume_sources(volume)
    if len(sources) != 1 or sources[0][0] != "ConfigMap":
        report.fail(target, where, f"{gw.config_path} must come from a ConfigMap volume")
        return None
    cm = find_object(docs, "ConfigMap", sources[0][1], gw.namespace)
    if cm is None or key not in (cm.get("data") or {}):
        report.fail(target, where, f"ConfigMap {sources[0][1]} has no key {key} for {gw.config_path}")
        return None
    if cm.get("immutable") is not True:
        report.fail(target, ref(cm), "holds the gateway configuration, so it must be immutable "
                    "(a new name for every change, which rolls the Deployment one pod at a time, so a "
                    "bad configuration stops at the first pod instead of reaching all of them)")
    text = cm["data"][key]
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        report.fail(target, ref(cm), f"{key} is not valid YAML: {e}")
        return None

    for secret_key in ("identity_envelope_signing_key", "nonce_secret", "client_secret", "key"):
        for path, value in find_keys(config, secret_key):
            if value is not None:
                report.fail(target, ref(cm), f"{path} holds a secret in a ConfigMap; "
                            f"use the _file form with a Secret volume")

    root = pathlib.Path(tempfile.mkdtemp(prefix="stella-k8s-check-", dir=ctx.workdir))
    files = {}  # path in the container -> (role, key path)
    for keypath, value in config_file_settings(config):
        role = file_role(keypath)
        if role is None:
            report.fail(target, ref(cm), f"{keypath}: a file setting validate.sh does not know; "
                        f"teach tools/check.py (file_role) what it holds")
            continue
        if not value.startswith("/"):
            report.fail(target, ref(cm), f"{keypath}: {value} must be absolute: relative paths are "
                        f"taken from the hidden, timestamped folder of the ConfigMap volume")
            continue
        if not gw.mount_of(value):
            report.fail(target, where, f"{keypath}: {value} is on no volume of the container")
            continue
        files[value] = (role, keypath)

    ok = materialize(report, target, docs, gw, root, files, ctx)
    env = resolve_env(gw.container, docs, gw.namespace)
    check_env(report, target, where, gw)
    if not ok:
        return None

    # The container's paths, moved under root (one pass, longest mount first).
    mounts = sorted((m["mountPath"].rstrip("/") for m in gw.mounts), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(map(re.escape, mounts)) + r")(?![\w.-])")

    def moved(value):
        return pattern.sub(lambda m: str(root) + m.group(1), value)

    config_file = root / gw.config_path.lstrip("/")
    config_file.write_text(moved(text))
    # Only the container's environment: none of this shell's Gateway__ or Router__.
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    run_env.update({name: moved(value) for name, value in env.items()})
    result = subprocess.run(
        [ctx.gateway, "check", "--config", str(config_file)],
        capture_output=True, text=True, env=run_env, timeout=120,
    )
    if result.returncode != 0:
        errors = result.stderr.strip().replace(str(root), "") or f"exit {result.returncode}"
        for line in errors.splitlines():
            report.fail(target, f"{ref(cm)} {key}", f"stella-gateway check: {line}")
        return None
    effective = yaml.safe_load(
        "\n".join(l for l in result.stdout.splitlines() if not l.startswith("#"))
    )
    report.ok(target, f"gateway configuration {ref(cm)} passes stella-gateway check "
                      f"with the container's volumes and environment")
    return effective


def find_keys(tree, wanted, path=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            child = f"{path}.{k}" if path else k
            if k == wanted:
                yield child, v
            else:
                yield from find_keys(v, wanted, child)
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from find_keys(v, wanted, f"{path}[{i}]")


def materialize(report, target, docs, gw, root, files, ctx):
    """Writes every volume of the gateway container under root: the data of
    rendered ConfigMaps, placeholders for what the operator creates."""
    ok = True
    where = ref(gw.deployment)
    for m in gw.mounts:
        base = root / m["mountPath"].lstrip("/")
        base.mkdir(parents=True, exist_ok=True)
        volume = gw.volumes.get(m["name"])
        if volume is None:
            report.fail(target, where, f"volumeMount {m['name']} has no volume")
            ok = False
            continue
        wanted = {}
        for path, (role, key) in files.items():
            found = gw.mount_of(path)
            if found and found[0] is m:
                wanted[found[1]] = (role, key)
        writable = ("emptyDir" in volume or "persistentVolumeClaim" in volume) and not m.get("readOnly")
        provided = {}
        for kind, name, items in volume_sources(volume):
            obj = find_object(docs, kind, name, gw.namespace)
            if obj is not None:
                data = obj.get("data") or {}
                keys = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
                for k, p in keys.items():
                    if k in data:
                        provided[p] = data[k]
                    else:
                        report.fail(target, where, f"volume {m['name']}: {kind} {name} has no key {k}")
                        ok = False
                continue
            # Created by the operator: placeholders for the files the
            # configuration names.
            paths = [i["path"] for i in items] if items else [
                rel for rel, (role, _) in wanted.items() if "folder" not in role and "/" not in rel]
            for p in paths:
                role = wanted.get(p, ("secret", None))[0]
                provided.setdefault(p, ctx.placeholders.content(role))
        for rel, (role, key) in wanted.items():
            path = f"{m['mountPath'].rstrip('/')}/{rel}".rstrip("/")
            if role == "writable-folder":
                if not writable:
                    report.fail(target, where, f"{key}: {path} is read-only; the gateway writes "
                                f"there (use an emptyDir)")
                    ok = False
            elif role == "folder":
                if rel:
                    report.fail(target, where, f"{key}: {path} must be the root of a volume")
                    ok = False
            elif rel not in provided:
                report.fail(target, where, f"{key}: {path}: volume {m['name']} does not provide {rel}")
                ok = False
        for p, content in provided.items():
            (base / p).parent.mkdir(parents=True, exist_ok=True)
            (base / p).write_text(content)
    return ok


SECRET_ENV_SUFFIXES = ("identityenvelopesigningkey", "noncesecret", "clientsecret")


def check_env(report, target, where, gw):
    """Gateway settings in the environment: no keys, no file paths, and the
    replay store password only through a Secret."""
    for e in gw.container.get("env") or []:
        segments = [fold(s) for s in e["name"].split("__")]
        if segments[0] not in ("gateway", "router", "services", "logging", "traces") or len(segments) < 2:
            continue
        last = segments[-1]
        if last in SECRET_ENV_SUFFIXES or last == "key" or last == "keyenv":
            report.fail(target, where, f"env {e['name']}: keys and client secrets come from Secret "
                        f"files (key_file, nonce_secret_file, client_secret_file), never the environment")
        if last.endswith("file") or last.endswith("dir"):
            report.fail(target, where, f"env {e['name']}: name files in the configuration file, "
                        f"where validate.sh can check them")
        if last == "replaystore" and "value" in e:
            userinfo = e["value"].split("://", 1)[-1].rpartition("@")[0]
            if userinfo and re.sub(r"\$\(\w+\)", "", userinfo).strip(":"):
                report.fail(target, where, f"env {e['name']}: the redis password is written in the "
                            f"manifest; take it from a Secret ($(VAR) of a secretKeyRef)")


def check_mounts(report, target, gw):
    for m in gw.container.get("volumeMounts") or []:
        if m.get("subPath") or m.get("subPathExpr"):
            report.fail(target, ref(gw.deployment), f"volumeMount {m['name']} uses subPath: such a file "
                        f"is never updated, so a change to its ConfigMap or Secret would not reach the gateway")


def check_deployment(report, target, docs, gw, effective, replicas):
    where = ref(gw.deployment)
    c = gw.container

    # Listeners and container ports.
    listeners = effective["gateway"]["listeners"]
    wanted = {}
    if listeners.get("http"):
        wanted["http"] = listeners["http"]
    if listeners.get("tls"):
        wanted["https"] = listeners["tls"]["addr"]
    if listeners.get("admin"):
        wanted["admin"] = listeners["admin"]
    else:
        report.fail(target, where, "gateway.listeners.admin is not set: no probes, no metrics")
    listener_ports = {}
    for name, addr in wanted.items():
        host, port = split_host_port(addr)
        listener_ports[name] = port
        if is_loopback(host):
            report.fail(target, where, f"the {name} listener binds {addr}: the kubelet's probes, "
                        f"Services and Prometheus cannot reach a loopback address")
    declared = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    for name, port in listener_ports.items():
        if declared.get(name) != port:
            report.fail(target, where, f"container port `{name}` is {declared.get(name)}, "
                        f"the gateway's {name} listener is on {port}")
    for name, port in declared.items():
        if name not in listener_ports:
            report.fail(target, where, f"container port `{name}` ({port}) has no gateway listener")
    admin = listener_ports.get("admin")

    # Probes.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (c.get(probe) or {}).get("httpGet")
        if not get:
            report.fail(target, where, f"{probe} must be an httpGet of {path} on the admin listener")
            continue
        if get.get("path") != path or port_number(c, get.get("port")) != admin:
            report.fail(target, where, f"{probe} is GET {get.get('path')} on port {get.get('port')}; "
                        f"the gateway answers {path} on the admin listener ({admin})")

    # Draining: preStop, shutdown_grace_seconds, terminationGracePeriodSeconds.
    command = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    sleep = None
    if len(command) == 2 and command[0] in ("sleep", "/bin/sleep"):
        try:
            sleep = int(command[1])
        except ValueError:
            pass
    if sleep is None:
        report.fail(target, where, "preStop must be `sleep N`: the pod keeps serving while it is "
                    "taken out of the Service, then SIGTERM drains")
        sleep = 0
    grace = effective["gateway"]["shutdown_grace_seconds"]
    period = gw.spec.get("terminationGracePeriodSeconds", 30)
    if period < sleep + grace + GRACE_MARGIN_SECONDS:
        report.fail(target, where, f"terminationGracePeriodSeconds {period} is less than preStop "
                    f"sleep {sleep} + gateway.shutdown_grace_seconds {grace} + {GRACE_MARGIN_SECONDS}: "
                    f"requests in flight would be killed")

    # Rolling updates never lower the serving capacity.
    strategy = gw.deployment["spec"].get("strategy") or {}
    unavailable = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if strategy.get("type", "RollingUpdate") != "RollingUpdate" or unavailable not in (0, "0", "0%"):
        report.fail(target, where, "strategy must be RollingUpdate with maxUnavailable 0")

    if not effective["gateway"].get("watch_config", True):
        report.fail(target, where, "gateway.watch_config is false: policy and key changes would "
                    "need `stella-gateway reload` on every pod")

    if not (c.get("resources") or {}).get("requests", {}).get("cpu"):
        report.fail(target, where, "the gateway container has no CPU request (the autoscaler scales on it)")

    # More than one replica needs the shared replay store and nonce secret.
    dpop = effective["gateway"]["auth"]["dpop"]
    if replicas > 1:
        if dpop.get("replay_store") in (None, "memory"):
            report.fail(target, where, f"{replicas} replicas with the memory replay store: a DPoP proof "
                        f"accepted by one pod would be accepted again by another; use redis")
        if not dpop.get("nonce_secret_file") and not dpop.get("nonce_secret"):
            report.fail(target, where, f"{replicas} replicas without gateway.auth.dpop.nonce_secret_file: "
                        f"each pod would refuse the nonces of the others")
    store = dpop.get("replay_store") or "memory"
    if store.startswith("redis://") or store.startswith("rediss://"):
        check_replay_store(report, target, docs, gw, store)


def check_replay_store(report, target, docs, gw, url):
    where = ref(gw.deployment)
    rest = url.split("://", 1)[1]
    userinfo, _, hostport = rest.rpartition("@")
    hostport = hostport.split("/", 1)[0]
    host, _, port = hostport.partition(":")
    port = int(port or 6379)
    name = host.split(".")[0]
    service = find_object(docs, "Service", name, gw.namespace)
    if service is None:
        report.ok(target, f"replay store {host}:{port} is outside these manifests (not checked)")
        return
    sport = next((p for p in service["spec"].get("ports") or [] if p.get("port") == port), None)
    if sport is None:
        report.fail(target, ref(service), f"has no port {port}, which the replay store URL names")
        return
    backends = [w for w in workloads(docs)
                if w["metadata"].get("namespace") == gw.namespace
                and labels_match({"matchLabels": service["spec"].get("selector") or {}}, pod_labels(w))]
    if len(backends) != 1:
        report.fail(target, ref(service), f"selects {len(backends)} workloads; the replay store must be one")
        return
    store = backends[0]
    spec = store["spec"]
    if store["kind"] == "Deployment":
        if (spec.get("strategy") or {}).get("type") != "Recreate":
            report.fail(target, ref(store), "needs strategy Recreate: during a rolling update two redis "
                        "would each accept a proof the other has seen")
    if spec.get("replicas", 1) != 1:
        report.fail(target, ref(store), "must run exactly one redis (Sentinel setups are external)")
    args = [a for c in store["spec"]["template"]["spec"]["containers"] for a in (c.get("args") or [])]
    if "--requirepass" not in args:
        report.fail(target, ref(store), "redis runs without a password (--requirepass)")
    if not userinfo:
        report.fail(target, where, "the replay store URL carries no password")
    report.ok(target, f"replay store: {ref(store)} behind Service {name}:{port}, password from a Secret")


def check_scaling(report, target, docs, gw):
    """The number of replicas the gateway runs with at least."""
    where = ref(gw.deployment)
    name = gw.deployment["metadata"]["name"]
    hpas = [d for d in docs if d.get("kind") == "HorizontalPodAutoscaler"
            and d["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and d["spec"]["scaleTargetRef"].get("name") == name]
    replicas = gw.deployment["spec"].get("replicas")
    if hpas:
        hpa = hpas[0]
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        if replicas is not None:
            report.fail(target, where, "sets spec.replicas while a HorizontalPodAutoscaler scales it: "
                        "every apply would reset what the autoscaler chose")
        if low < 2:
            report.fail(target, ref(hpa), f"minReplicas {low}: the gateway runs at least 2 replicas")
        if high < low:
            report.fail(target, ref(hpa), f"maxReplicas {high} is below minReplicas {low}")
        replicas = low
    else:
        report.fail(target, where, "no HorizontalPodAutoscaler scales the gateway")
        replicas = replicas or 1
        if replicas < 2:
            report.fail(target, where, f"{replicas} replica: the gateway runs at least 2")
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"
            and labels_match(d["spec"].get("selector"), gw.labels)]
    if not pdbs:
        report.fail(target, where, "no PodDisruptionBudget covers the gateway pods")
    for pdb in pdbs:
        low = pdb["spec"].get("minAvailable")
        if isinstance(low, int) and low >= replicas:
            report.fail(target, ref(pdb), f"minAvailable {low} with {replicas} replicas blocks every drain")
        if pdb["spec"].get("maxUnavailable") in (0, "0", "0%"):
            report.fail(target, ref(pdb), "maxUnavailable 0 blocks every drain")
    return replicas


def check_selectors(report, target, docs):
    """Workload selectors, Services and their target ports."""
    for w in workloads(docs):
        if not labels_match(w["spec"].get("selector"), pod_labels(w)):
            report.fail(target, ref(w), "spec.selector does not select its own pod template")
    for s in docs:
        if s.get("kind") != "Service" or not s["spec"].get("selector"):
            continue
        ns = s["metadata"].get("namespace")
        selected = [w for w in workloads(docs) if w["metadata"].get("namespace") == ns
                    and labels_match({"matchLabels": s["spec"]["selector"]}, pod_labels(w))]
        if not selected:
            report.fail(target, ref(s), "selects no pods of these manifests")
            continue
        containers = [c for w in selected for c in w["spec"]["template"]["spec"]["containers"]]
        for p in s["spec"].get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            if isinstance(tp, str) and not any(port_number(c, tp) for c in containers):
                report.fail(target, ref(s), f"targetPort {tp} is no port of the selected containers")


def check_exposure(report, target, docs, gw, effective):
    """The admin listener stays inside: no public Service, NetworkPolicy."""
    admin = split_host_port(effective["gateway"]["listeners"]["admin"])[1]
    public = 0
    for s in docs:
        if s.get("kind") != "Service" or s["metadata"].get("namespace") != gw.namespace:
            continue
        if not labels_match({"matchLabels": s["spec"].get("selector") or {}}, gw.labels):
            continue
        ports = [port_number(gw.container, p.get("targetPort", p.get("port"))) for p in s["spec"]["ports"]]
        if admin in ports:
            if len(ports) > 1 or s["spec"].get("type", "ClusterIP") != "ClusterIP":
                report.fail(target, ref(s), "exposes the admin listener (/config, POST /reload) beside "
                            "public ports or outside the cluster; give it a ClusterIP Service of its own")
        else:
            public += 1
    if not public:
        report.fail(target, ref(gw.deployment), "no Service exposes the gateway's public listener")

    policies = [n for n in docs if n.get("kind") == "NetworkPolicy"
                and n["metadata"].get("namespace") == gw.namespace
                and labels_match(n["spec"].get("podSelector"), gw.labels)
                and "Ingress" in (n["spec"].get("policyTypes") or ["Ingress"])]
    if not policies:
        report.fail(target, ref(gw.deployment), "no NetworkPolicy isolates the gateway pods: the admin "
                    "listener (/config, POST /reload) is open to every pod")
    for n in policies:
        for i, rule in enumerate(n["spec"].get("ingress") or []):
            ports = rule.get("ports")
            opens_admin = ports is None or any(
                port_number(gw.container, p.get("port")) == admin or p.get("port") is None for p in ports)
            if opens_admin and not internal_peers(rule.get("from")):
                report.fail(target, ref(n), f"ingress[{i}] opens the admin port {admin} to any source")

    # The replay store answers the gateway only.
    for store in workloads(docs):
        if store is gw.deployment or store["metadata"].get("namespace") != gw.namespace:
            continue
        args = [a for c in store["spec"]["template"]["spec"]["containers"] for a in (c.get("args") or [])]
        if "--requirepass" not in args:
            continue
        guards = [n for n in docs if n.get("kind") == "NetworkPolicy"
                  and n["metadata"].get("namespace") == gw.namespace
                  and labels_match(n["spec"].get("podSelector"), pod_labels(store))]
        if not guards:
            report.fail(target, ref(store), "no NetworkPolicy limits who reaches the replay store")
        for n in guards:
            for i, rule in enumerate(n["spec"].get("ingress") or []):
                if not internal_peers(rule.get("from")):
                    report.fail(target, ref(n), f"ingress[{i}] lets any source reach the replay store")


def internal_peers(peers):
    """Whether NetworkPolicy peers name some pods rather than everyone."""
    if not peers:
        return False
    for p in peers:
        block = p.get("ipBlock")
        if block:
            net = ipaddress.ip_network(block["cidr"], strict=False)
            if net.prefixlen == 0 or not net.is_private:
                return False
        elif not p.get("podSelector") and p.get("namespaceSelector") in ({}, None) and "namespaceSelector" in p:
            return False
    return True


def check_monitoring(report, target, docs, gw, effective, ctx):
    admin = split_host_port(effective["gateway"]["listeners"]["admin"])[1]
    monitors = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    if not monitors:
        report.fail(target, ref(gw.deployment), "no ServiceMonitor scrapes the gateway")
    for sm in monitors:
        ns = sm["metadata"].get("namespace")
        services = [s for s in docs if s.get("kind") == "Service" and s["metadata"].get("namespace") == ns
                    and labels_match(sm["spec"].get("selector"), s["metadata"].get("labels") or {})]
        if len(services) != 1:
            report.fail(target, ref(sm), f"selects {len(services)} Services; it must select the admin Service")
            continue
        svc = services[0]
        for ep in sm["spec"].get("endpoints") or []:
            port = next((p for p in svc["spec"]["ports"] if p.get("name") == ep.get("port")), None)
            if port is None:
                report.fail(target, ref(sm), f"endpoint port {ep.get('port')} is not a port of {ref(svc)}")
            elif port_number(gw.container, port.get("targetPort", port.get("port"))) != admin:
                report.fail(target, ref(sm), f"endpoint port {ep.get('port')} is not the admin listener")
            if ep.get("path", "/metrics") != "/metrics":
                report.fail(target, ref(sm), f"endpoint path {ep.get('path')}: metrics are at /metrics")

    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if not rules:
        report.fail(target, ref(gw.deployment), "no PrometheusRule carries the alert rules")
    with open(ctx.repo / "compose" / "prometheus" / "alerts.yml") as f:
        source = yaml.safe_load(f)["groups"]
    documented = set(re.findall(r"`(stella_gateway_[a-z0-9_]+)", (ctx.repo / "docs" / "metrics.md").read_text()))
    for rule in rules:
        groups = rule["spec"].get("groups")
        if groups != source:
            report.fail(target, ref(rule), "differs from compose/prometheus/alerts.yml; run "
                        "deploy/kubernetes/tools/sync_prometheusrule.py")
        for g in groups or []:
            for r in g.get("rules") or []:
                for metric in set(re.findall(r"stella_gateway_[a-z0-9_]+", str(r.get("expr")))):
                    base = re.sub(r"_(bucket|sum|count)$", "", metric)
                    if metric not in documented and base not in documented:
                        report.fail(target, ref(rule), f"{r.get('alert') or r.get('record')}: "
                                    f"{metric} is not a gateway metric (docs/metrics.md)")
    report.ok(target, f"monitoring: {len(monitors)} ServiceMonitor, {len(rules)} PrometheusRule "
                      f"(the rules of compose/prometheus/alerts.yml)")


def check_image(report, target, gw, is_overlay):
    image = gw.container.get("image", "")
    name, tag, digest = render.split_image(image)
    if is_overlay and (not (tag or digest) or tag == "latest"):
        report.fail(target, ref(gw.deployment), f"image {image}: an overlay pins the gateway image "
                    f"(kustomize images: newName and newTag or digest)")


def external_refs(docs):
    """(kind, name) of every Secret and ConfigMap a pod uses that these
    manifests do not hold: the operator creates them."""
    refs = set()
    for w in workloads(docs):
        ns = w["metadata"].get("namespace")
        spec = w["spec"]["template"]["spec"]
        for volume in spec.get("volumes") or []:
            refs.update((kind, name, ns) for kind, name, _ in volume_sources(volume))
        for c in render.pod_containers(w):
            for e in c.get("env") or []:
                source = e.get("valueFrom") or {}
                if "secretKeyRef" in source:
                    refs.add(("Secret", source["secretKeyRef"]["name"], ns))
                if "configMapKeyRef" in source:
                    refs.add(("ConfigMap", source["configMapKeyRef"]["name"], ns))
            for e in c.get("envFrom") or []:
                if "secretRef" in e:
                    refs.add(("Secret", e["secretRef"]["name"], ns))
                if "configMapRef" in e:
                    refs.add(("ConfigMap", e["configMapRef"]["name"], ns))
    return {(kind, name) for kind, name, ns in refs if find_object(docs, kind, name, ns) is None}


def check_no_secrets(report, target, docs):
    for d in docs:
        if d.get("kind") == "Secret":
            report.fail(target, ref(d), "Secrets are created by the operator (runbooks/kubernetes.md), "
                        "never kept with the manifests")


# ---------------------------------------------------------------- policies


def check_policy_folders(report, manifests, ctx):
    """Each folder a configMapGenerator reads policies from goes whole into
    the ConfigMap, and its decision tests pass."""
    for kfile in sorted(manifests.rglob("kustomization.yaml")):
        if ".venv" in kfile.parts:
            continue
        k = yaml.safe_load(kfile.read_text()) or {}
        for gen in k.get("configMapGenerator") or []:
            paths = [(kfile.parent / f.split("=", 1)[-1]).resolve() for f in gen.get("files") or []]
            folders = {p.parent for p in paths}
            for folder in folders:
                if any((folder / n).exists() for n in render.KUSTOMIZATION_NAMES):
                    continue
                target = str(kfile.parent.relative_to(manifests))
                listed = {p for p in paths if p.parent == folder}
                for f in sorted(folder.glob("*.y*ml")):
                    if f.resolve() not in listed:
                        report.fail(target, f"configMapGenerator {gen['name']}",
                                    f"{f.relative_to(manifests)} is not in `files`: the gateway would "
                                    f"run without it")
                if (folder / "tests").is_dir():
                    result = subprocess.run([ctx.gateway, "policy", "test", str(folder)],
                                            capture_output=True, text=True, timeout=120)
                    summary = (result.stdout.strip().splitlines() or [""])[-1]
                    if result.returncode != 0:
                        out = (result.stdout + result.stderr).strip().splitlines()
                        for line in out[-15:]:
                            report.fail(target, f"{folder.relative_to(manifests)}", f"policy test: {line}")
                    else:
                        report.ok(target, f"{folder.relative_to(manifests)}: policy test: {summary}")


# ---------------------------------------------------------------- driver


class Context:
    def __init__(self, args, workdir):
        self.repo = pathlib.Path(args.repo).resolve()
        self.gateway = args.gateway
        self.workdir = workdir
        self.placeholders = Placeholders(args.gateway, workdir)
        self.external = set()
        self.kubectl = None if args.kubectl == "never" else shutil.which("kubectl")


def compare_with_kubectl(report, target, folder, docs, ctx):
    if not ctx.kubectl:
        report.ok(target, f"rendered {len(docs)} objects (kubectl not found: render.py only)")
        return
    result = subprocess.run([ctx.kubectl, "kustomize", str(folder)], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        report.fail(target, "kubectl kustomize", result.stderr.strip())
        return
    theirs = [d for d in yaml.safe_load_all(result.stdout) if d]

    def key(d):
        return (d.get("apiVersion"), d.get("kind"), d["metadata"].get("namespace"), d["metadata"]["name"])

    ours = {key(d): d for d in docs}
    theirs = {key(d): d for d in theirs}
    for k in sorted(set(ours) ^ set(theirs), key=str):
        side = "render.py" if k in ours else "kubectl kustomize"
        report.fail(target, f"{k[1]}/{k[3]}", f"rendered by {side} only")
    for k in sorted(set(ours) & set(theirs), key=str):
        if ours[k] != theirs[k]:
            report.fail(target, f"{k[1]}/{k[3]}", "render.py and kubectl kustomize disagree")
    if ours.keys() == theirs.keys() and all(ours[k] == theirs[k] for k in ours):
        report.ok(target, f"rendered {len(docs)} objects (kubectl kustomize renders the same)")


def check_target(report, manifests, folder, ctx):
    target = str(folder.relative_to(manifests))
    try:
        docs = render.render(folder)
    except render.RenderError as e:
        report.fail(target, "render", str(e))
        return
    compare_with_kubectl(report, target, folder, copy.deepcopy(docs), ctx)
    check_schemas(report, target, docs, ctx.schemas)
    check_no_secrets(report, target, docs)
    ctx.external |= external_refs(docs)
    check_selectors(report, target, docs)
    gw = Gateway.find(docs)
    if gw is None:
        report.fail(target, "Deployment", "no gateway (a container with args `run --config FILE`)")
        return
    check_image(report, target, gw, is_overlay=target != "base")
    replicas = check_scaling(report, target, docs, gw)
    check_mounts(report, target, gw)
    errors = report.errors
    effective = check_gateway_config(report, target, docs, gw, ctx)
    if effective is None:
        # The checks below need the configuration the gateway accepted.
        if report.errors == errors:
            report.fail(target, ref(gw.deployment), "the gateway configuration could not be checked")
        return
    check_deployment(report, target, docs, gw, effective, replicas)
    check_exposure(report, target, docs, gw, effective)
    check_monitoring(report, target, docs, gw, effective, ctx)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifests", required=True, help="folder with base/ and overlays/")
    parser.add_argument("--repo", required=True, help="the repository (alert rules, metrics, runbooks)")
    parser.add_argument("--gateway", required=True, help="the stella-gateway binary")
    parser.add_argument("--kubectl", choices=["auto", "never"], default="auto",
                        help="compare with `kubectl kustomize` when kubectl is on PATH (default)")
    args = parser.parse_args(argv)
    manifests = pathlib.Path(args.manifests).resolve()
    targets = [manifests / "base"] + sorted(p.parent for p in manifests.glob("overlays/*/kustomization.yaml"))
    if not (manifests / "base" / "kustomization.yaml").is_file():
        print(f"{manifests}: no base/kustomization.yaml", file=sys.stderr)
        return 2
    report = Report()
    with tempfile.TemporaryDirectory(prefix="stella-k8s-") as tmp:
        ctx = Context(args, pathlib.Path(tmp))
        ctx.schemas = pathlib.Path(__file__).resolve().parent.parent / "schemas"
        for folder in targets:
            check_target(report, manifests, folder, ctx)
        check_policy_folders(report, manifests, ctx)
        runbook = (ctx.repo / "runbooks" / "kubernetes.md")
        text = runbook.read_text() if runbook.exists() else ""
        for kind, name in sorted(ctx.external):
            if name not in text:
                report.fail("runbooks/kubernetes.md", f"{kind}/{name}",
                            "is used by the manifests and created by the operator, but the runbook "
                            "does not say how")
    n = len(targets)
    if report.errors:
        print(f"FAILED: {report.errors} problem(s) in {n} kustomization(s)")
        return 1
    print(f"PASSED: {n} kustomization(s), no problem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
