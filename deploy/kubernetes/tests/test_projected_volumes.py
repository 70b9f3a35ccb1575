"""What the gateway's file watcher does with volumes the kubelet writes.

The kubelet writes a ConfigMap or Secret volume as a hidden timestamped
folder, `..data` pointing at it and one link `name -> ..data/name` per key;
a change writes a new folder, swaps `..data` by rename and deletes the old
folder (kubernetes pkg/volume/util/atomic_writer.go). These tests write
volumes that way around a running gateway and check what
runbooks/kubernetes.md ("Reloading configuration and policies") says:
policies, keys and the configuration file itself changed in place are all
reloaded (the gateway reads its configuration through the link, never from
the folder the kubelet has deleted).
"""

import datetime
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

GATEWAY = os.environ.get("STELLA_GATEWAY", "")


class KubeletVolume:
    """A folder written the way the kubelet writes a ConfigMap or Secret volume."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        root.mkdir(parents=True)

    def write(self, files):
        data = self.root / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        stamp = datetime.datetime.now().strftime("..%Y_%m_%d_%H_%M_%S.") + str(time.monotonic_ns())
        (self.root / stamp).mkdir()
        for name, text in files.items():
            (self.root / stamp / name).write_text(text)
        tmp = self.root / "..data_tmp"
        os.symlink(stamp, tmp)
        os.rename(tmp, data)
        for name in files:
            link = self.root / name
            if not link.is_symlink():
                os.symlink(f"..data/{name}", link)
        if old:
            shutil.rmtree(self.root / old)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def wait_for(what, check, timeout=15.0):
    """Polls check() until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def envelope_key():
    out = subprocess.run([GATEWAY, "keys", "generate", "--alg", "HS256", "--kid", "k1"],
                         check=True, capture_output=True, text=True).stdout
    return next(l.split("=", 1)[1] for l in out.splitlines()
                if l.startswith("Router__IdentityEnvelopeSigningKey="))


POLICY = """service: echo
routes:
  - {id: public, path: /public/**, policy: {anonymous: true}}
"""
MORE = POLICY + "  - {id: more, path: /more/**, policy: {anonymous: true}}\n"


@unittest.skipUnless(GATEWAY, "STELLA_GATEWAY names the stella-gateway binary")
class GatewayReloadsFromKubeletVolumes(unittest.TestCase):
    def setUp(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="stella-k8s-volumes-"))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.config = KubeletVolume(self.tmp / "etc" / "gateway")
        self.policies = KubeletVolume(self.tmp / "etc" / "policies")
        self.keys = KubeletVolume(self.tmp / "secrets" / "envelope")
        self.http, self.admin = free_port(), free_port()
        # Nothing listens on these: the gateway serves without them.
        authority, upstream = free_port(), free_port()
        self.config_text = f"""gateway:
  id: volumes-test
  public_origin: http://127.0.0.1:{self.http}
  listeners:
    http: 127.0.0.1:{self.http}
    admin: 127.0.0.1:{self.admin}
  auth:
    authority:
      issuer: http://127.0.0.1:{authority}
      require_https_metadata: false
      audiences: [volumes-test]
  policies_dir: {self.policies.root}
router:
  on_missing_authorization: Deny
  identity_envelope_keys:
    - kid: k1
      key_file: {self.keys.root}/k1
  identity_envelope_active_kid: k1
services:
  - name: echo
    upstreams: [127.0.0.1:{upstream}]
"""
        self.config.write({"gateway.yaml": self.config_text})
        self.policies.write({"echo.yaml": POLICY})
        self.keys.write({"k1": envelope_key()})
        log = open(self.tmp / "gateway.log", "w")
        self.addCleanup(log.close)
        self.process = subprocess.Popen(
            [GATEWAY, "run", "--config", str(self.config.root / "gateway.yaml")],
            stdout=log, stderr=subprocess.STDOUT,
        )
        self.addCleanup(self.stop)
        wait_for("the admin listener", lambda: get(self.url("/healthz"))[0] == 200)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def url(self, path, port=None):
        return f"http://127.0.0.1:{port or self.admin}{path}"

    def status(self):
        return json.loads(get(self.url("/config"))[1])

    def rejected(self):
        """stella_gateway_config_reloads_total{result="rejected"}."""
        for line in get(self.url("/metrics"))[1].decode().splitlines():
            if line.startswith('stella_gateway_config_reloads_total{result="rejected"}'):
                return float(line.split()[-1])
        return 0.0

    def wait_for_reload(self, before):
        return wait_for("a reload", lambda: (lambda s: s if s["generation"] > before["generation"]
                                             or s["last_rejected"] else None)(self.status()))

    def test_policies_changed_in_place_are_reloaded(self):
        before = self.status()
        self.assertEqual(get(self.url("/more/x", self.http))[0], 404)
        self.policies.write({"echo.yaml": MORE})
        after = self.wait_for_reload(before)
        self.assertIsNone(after["last_rejected"])
        self.assertNotEqual(after["config_version"], before["config_version"])
        # The route exists now; its upstream does not listen.
        self.assertEqual(get(self.url("/more/x", self.http))[0], 502)

    def test_a_key_changed_in_place_in_its_secret_is_reloaded(self):
        before = self.status()
        self.keys.write({"k1": envelope_key()})
        after = self.wait_for_reload(before)
        self.assertIsNone(after["last_rejected"])
        self.assertNotEqual(after["config_version"], before["config_version"])

    def test_the_configuration_file_changed_in_place_is_reloaded(self):
        before = self.status()
        self.config.write({"gateway.yaml": self.config_text + "logging:\n  level: debug\n"})
        after = self.wait_for_reload(before)
        # Read through the link, so from the new folder, not the deleted one.
        self.assertIsNone(after["last_rejected"])
        self.assertGreater(after["generation"], before["generation"])
        # And the next change still reloads (policies here).
        self.policies.write({"echo.yaml": MORE})
        wait_for("the policy reload", lambda: get(self.url("/more/x", self.http))[0] == 502)
        self.assertEqual(self.rejected(), 0.0)

if __name__ == "__main__":
    unittest.main()
