"""validate.sh refuses broken manifests.

Each test copies base/ and overlays/ to a temporary folder, breaks one
thing, runs validate.sh on the copy and expects exit 1 with the problem
named; the unchanged copy passes. Run by `validate.sh --test` (which sets
STELLA_GATEWAY), or alone:

    STELLA_GATEWAY=target/debug/stella-gateway \
      deploy/kubernetes/.venv/bin/python -m unittest discover -s deploy/kubernetes/tests
"""

import os
import pathlib
import shutil
import subprocess
import tempfile
import unittest

import yaml

MANIFESTS = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = MANIFESTS / "validate.sh"
GATEWAY = os.environ.get("STELLA_GATEWAY", "")


def edit_docs(path, change):
    """Applies change(doc) to every document of a YAML file (comments go)."""
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for doc in docs:
        change(doc)
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f, sort_keys=False)


def of_kind(kind, name, change):
    def apply(doc):
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            change(doc)
    return apply


def gateway_container(doc):
    return doc["spec"]["template"]["spec"]["containers"][0]


@unittest.skipUnless(GATEWAY, "STELLA_GATEWAY names the stella-gateway binary")
class ValidateRefusesBrokenManifests(unittest.TestCase):
    def setUp(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="stella-k8s-test-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        for part in ("base", "overlays"):
            shutil.copytree(MANIFESTS / part, self.tmp / part)
        self.base = self.tmp / "base"

    def validate(self):
        return subprocess.run(
            ["bash", str(SCRIPT), "--gateway", GATEWAY, str(self.tmp)],
            capture_output=True, text=True, timeout=300,
        )

    def assertRefused(self, *needles):
        result = self.validate()
        out = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, out)
        for needle in needles:
            self.assertIn(needle, out)

    def edit_deployment(self, change):
        edit_docs(self.base / "gateway-deployment.yaml", of_kind("Deployment", "stella-gateway", change))

    def edit_config(self, old, new, path="base/gateway.yaml"):
        file = self.tmp / path
        text = file.read_text()
        self.assertIn(old, text)
        file.write_text(text.replace(old, new))

    def test_the_unchanged_copy_passes(self):
        result = self.validate()
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("PASSED: 2 kustomization(s)", result.stdout)

    def test_an_unknown_field_in_the_deployment_is_refused_by_the_kubernetes_schema(self):
        self.edit_deployment(lambda d: gateway_container(d).update(imagePullPolicyy="Always"))
        self.assertRefused("Deployment/stella-gateway: Kubernetes", "imagePullPolicyy")

    def test_a_misspelt_servicemonitor_field_is_refused_by_the_operator_schema(self):
        edit_docs(self.base / "gateway-servicemonitor.yaml",
                  lambda d: d["spec"]["endpoints"][0].update(intervall="15s"))
        self.assertRefused("ServiceMonitor/stella-gateway: Prometheus Operator schema", "intervall")

    def test_a_configuration_the_gateway_refuses_is_refused(self):
        self.edit_config("  shutdown_grace_seconds: 15\n", "  shutdown_grace_seconds: 15\n  listenerz: {}\n")
        self.assertRefused("stella-gateway check: gateway.listenerz")

    def test_a_relative_path_in_the_configuration_is_refused(self):
        self.edit_config("policies_dir: /etc/stella/policies", "policies_dir: policies")
        self.assertRefused("gateway.policies_dir: policies must be absolute")

    def test_a_grace_period_shorter_than_prestop_plus_shutdown_grace_is_refused(self):
        self.edit_deployment(lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=20))
        self.assertRefused("terminationGracePeriodSeconds 20 is less than preStop sleep 10 "
                           "+ gateway.shutdown_grace_seconds 15")

    def test_readiness_on_healthz_is_refused(self):
        self.edit_deployment(lambda d: gateway_container(d)["readinessProbe"]["httpGet"].update(path="/healthz"))
        self.assertRefused("readinessProbe is GET /healthz")

    def test_an_admin_listener_on_loopback_is_refused(self):
        self.edit_config("admin: 0.0.0.0:9090", "admin: 127.0.0.1:9090")
        self.assertRefused("the admin listener binds 127.0.0.1:9090")

    def test_a_subpath_mount_is_refused(self):
        def change(d):
            gateway_container(d)["volumeMounts"][0].update(
                mountPath="/etc/stella/gateway/gateway.yaml", subPath="gateway.yaml")
            gateway_container(d)["args"][-1] = "/etc/stella/gateway/gateway.yaml"
        self.edit_deployment(change)
        self.assertRefused("uses subPath")

    def test_a_configuration_configmap_edited_in_place_is_refused(self):
        for path in ("base/kustomization.yaml", "overlays/production/kustomization.yaml"):
            self.edit_config("    options:\n      immutable: true\n", "", path)
        self.assertRefused("must be immutable")

    def test_the_memory_replay_store_with_two_replicas_is_refused(self):
        self.edit_config("replay_store: redis://stella-redis:6379", "replay_store: memory")
        self.edit_deployment(lambda d: gateway_container(d).pop("env"))
        self.assertRefused("2 replicas with the memory replay store")

    def test_an_envelope_key_in_the_environment_is_refused(self):
        self.edit_deployment(lambda d: gateway_container(d)["env"].append({
            "name": "Router__IdentityEnvelopeSigningKey",
            "valueFrom": {"secretKeyRef": {"name": "stella-gateway-envelope-keys", "key": "gw-2026-11"}},
        }))
        self.assertRefused("env Router__IdentityEnvelopeSigningKey: keys and client secrets come from Secret files")

    def test_a_single_replica_is_refused(self):
        edit_docs(self.base / "gateway-hpa.yaml", lambda d: d["spec"].update(minReplicas=1))
        self.assertRefused("minReplicas 1")

    def test_the_admin_port_in_the_public_service_is_refused(self):
        edit_docs(self.base / "gateway-services.yaml", of_kind(
            "Service", "stella-gateway",
            lambda d: d["spec"]["ports"].append({"name": "admin", "port": 9090, "targetPort": "admin"})))
        self.assertRefused("Service/stella-gateway: exposes the admin listener")

    def test_a_network_policy_opening_the_admin_port_to_everyone_is_refused(self):
        edit_docs(self.base / "gateway-networkpolicy.yaml", lambda d: d["spec"]["ingress"][0].pop("ports"))
        self.assertRefused("NetworkPolicy/stella-gateway: ingress[0] opens the admin port 9090 to any source")

    def test_a_prometheus_rule_that_differs_from_alerts_yml_is_refused(self):
        edit_docs(self.base / "gateway-prometheusrule.yaml",
                  lambda d: d["spec"]["groups"][0]["rules"][0].update({"for": "1m"}))
        self.assertRefused("PrometheusRule/stella-gateway: differs from compose/prometheus/alerts.yml")

    def test_a_policy_file_left_out_of_the_configmap_is_refused(self):
        (self.base / "policies" / "extra.yaml").write_text(
            "service: orders\nroutes:\n  - {id: extra, path: /extra/**, policy: {anonymous: true}}\n")
        self.assertRefused("base/policies/extra.yaml is not in `files`")

    def test_a_failing_policy_test_is_refused(self):
        tests = self.base / "policies" / "tests" / "orders.yaml"
        tests.write_text(tests.read_text().replace("status: 401, route: orders-write", "status: 200, route: orders-write"))
        self.assertRefused("policy test:")

    def test_a_kustomization_field_render_py_does_not_know_is_refused(self):
        path = self.tmp / "overlays" / "production" / "kustomization.yaml"
        path.write_text(path.read_text() + "commonLabels:\n  team: edge\n")
        self.assertRefused("render.py does not support ['commonLabels']")


if __name__ == "__main__":
    unittest.main()
