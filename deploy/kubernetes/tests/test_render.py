"""tools/render.py gives ConfigMaps the names kustomize gives them.

The expected suffixes are what `kubectl kustomize` (kustomize v5.5.0)
printed for the same data, so the renderer agrees with kustomize even where
kubectl is not installed.
"""

import pathlib
import sys
import tempfile
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tools"))
import render  # noqa: E402


class ConfigMapNamesMatchKustomize(unittest.TestCase):
    def test_hash_suffixes_are_kustomizes(self):
        cases = [
            ({"x": "y"}, "6gc9d749f7"),
            ({"gateway.yaml": "c: 2\n"}, "99gffthdgd"),
            # Go's JSON escapes <, > and & and keeps other characters as UTF-8.
            ({"gateway.yaml": 'a: 1\nb: "<x> & y \u00e9"\n'}, "d5t625fk42"),
        ]
        for data, suffix in cases:
            with self.subTest(data=data):
                self.assertEqual(render.config_map_hash({"data": data}), suffix)

    def test_a_disabled_suffix_stays_disabled_in_an_overlay(self):
        with tempfile.TemporaryDirectory() as tmp:
            base, overlay = pathlib.Path(tmp, "base"), pathlib.Path(tmp, "overlay")
            base.mkdir()
            overlay.mkdir()
            (base / "kustomization.yaml").write_text(
                "configMapGenerator:\n"
                "  - {name: a, literals: [x=1], options: {disableNameSuffixHash: true}}\n"
                "  - {name: b, literals: [x=1]}\n")
            (overlay / "kustomization.yaml").write_text(
                "resources: [../base]\n"
                "configMapGenerator:\n"
                "  - {name: a, behavior: replace, literals: [x=2]}\n"
                "  - {name: b, behavior: merge, literals: [y=2], options: {disableNameSuffixHash: true}}\n")
            names = sorted(d["metadata"]["name"] for d in render.render(overlay))
            self.assertEqual(names, ["a", "b"])

    def test_references_from_pod_templates_follow_the_new_name(self):
        with tempfile.TemporaryDirectory() as tmp:
            folder = pathlib.Path(tmp)
            (folder / "kustomization.yaml").write_text(
                "resources: [deployment.yaml]\n"
                "configMapGenerator:\n  - {name: cfg, literals: [x=y]}\n")
            (folder / "deployment.yaml").write_text(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
                "spec:\n  template:\n    spec:\n"
                "      containers: [{name: c, image: i}]\n"
                "      volumes:\n        - {name: v, configMap: {name: cfg}}\n"
                "        - name: p\n          projected: {sources: [{configMap: {name: cfg}}]}\n")
            docs = {d["kind"]: d for d in render.render(folder)}
            volumes = docs["Deployment"]["spec"]["template"]["spec"]["volumes"]
            self.assertEqual(docs["ConfigMap"]["metadata"]["name"], "cfg-6gc9d749f7")
            self.assertEqual(volumes[0]["configMap"]["name"], "cfg-6gc9d749f7")
            self.assertEqual(volumes[1]["projected"]["sources"][0]["configMap"]["name"], "cfg-6gc9d749f7")

    def test_an_unknown_kustomization_field_is_an_error(self):
        with tempfile.TemporaryDirectory() as tmp:
            pathlib.Path(tmp, "kustomization.yaml").write_text("namePrefix: x-\n")
            with self.assertRaisesRegex(render.RenderError, "does not support"):
                render.render(tmp)


if __name__ == "__main__":
    unittest.main()
