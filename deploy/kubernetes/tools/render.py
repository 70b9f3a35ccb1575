#!/usr/bin/env python3
"""Renders a kustomization: the subset of kustomize that deploy/kubernetes uses.

    render.py DIR            # the rendered documents on stdout, as `kubectl kustomize DIR`

kustomize is not installable from the package registries this project
uses, so validate.sh renders with this and, where `kubectl` is at hand,
checks that `kubectl kustomize` renders the same objects. What it knows,
with kustomize's meaning:

- `resources`: files (one or more documents) and folders holding a
  kustomization, rendered first;
- `namespace`: set on every namespaced object; a Namespace object is
  renamed to it;
- `images`: `name` with `newName`, `newTag` and/or `digest`;
- `configMapGenerator`: `name`, `files` (`key=path` or `path`), `literals`,
  `behavior` (`create`, `replace`, `merge`), `options.disableNameSuffixHash`
  and `options.immutable`. Names get kustomize's content hash suffix
  (api/hasher) unless disabled, and references to them from pod templates
  follow;
- `patches`: JSON patches (RFC 6902) in a file (`path`), each with a
  `target` of `kind` and `name`.

Anything else in a kustomization is an error, never ignored.
"""

import copy
import hashlib
import json
import pathlib
import sys

import jsonpatch
import yaml

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KNOWN_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "configMapGenerator",
    "patches",
}
GENERATOR_FIELDS = {"name", "files", "literals", "behavior", "options"}
GENERATOR_OPTIONS = {"disableNameSuffixHash", "immutable"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# kustomize's legacy output order; other kinds follow, by group and kind.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


class RenderError(Exception):
    pass


class Resource:
    """One object, with what kustomize remembers about generated ones."""

    def __init__(self, doc, origin, generated=False, hashed=False):
        self.doc = doc
        self.origin = origin
        self.generated = generated
        self.hashed = hashed

    @property
    def kind(self):
        return self.doc.get("kind")

    @property
    def name(self):
        return self.doc.get("metadata", {}).get("name")

    @property
    def namespace(self):
        return self.doc.get("metadata", {}).get("namespace")


def kustomization_file(folder: pathlib.Path) -> pathlib.Path:
    for name in KUSTOMIZATION_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise RenderError(f"{folder}: no kustomization.yaml")


def load_yaml_docs(path: pathlib.Path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        raise RenderError(f"{path}: not valid YAML: {e}") from None


def go_json(value) -> str:
    """JSON as Go's encoding/json writes it (sorted keys, HTML escaped)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return text


def config_map_hash(doc) -> str:
    """kustomize's name suffix for a ConfigMap (api/hasher/hasher.go).

    kustomize looks the name up under the literal key "metadata/name",
    finds nothing and hashes an empty name; only the data counts."""
    encoded = {"kind": "ConfigMap", "name": "", "data": doc.get("data") or {}}
    if isinstance(doc.get("binaryData"), dict):
        encoded["binaryData"] = doc["binaryData"]
    digest = hashlib.sha256(go_json(encoded).encode()).hexdigest()
    return digest[:10].translate(str.maketrans("013ae", "ghkmt"))


def generate_config_map(folder: pathlib.Path, spec, where: str) -> Resource:
    unknown = set(spec) - GENERATOR_FIELDS
    if unknown:
        raise RenderError(f"{where}: unsupported configMapGenerator fields {sorted(unknown)}")
    options = spec.get("options") or {}
    unknown = set(options) - GENERATOR_OPTIONS
    if unknown:
        raise RenderError(f"{where}: unsupported configMapGenerator options {sorted(unknown)}")
    name = spec.get("name")
    if not name:
        raise RenderError(f"{where}: configMapGenerator entry without a name")
    data = {}
    for entry in spec.get("files") or []:
        key, _, rel = entry.partition("=") if "=" in entry else (None, None, entry)
        path = (folder / rel).resolve()
        if not path.is_file():
            raise RenderError(f"{where}: configMapGenerator {name}: no file {rel}")
        key = key or path.name
        if key in data:
            raise RenderError(f"{where}: configMapGenerator {name}: key {key} twice")
        data[key] = path.read_text()
    for entry in spec.get("literals") or []:
        key, sep, value = entry.partition("=")
        if not sep:
            raise RenderError(f"{where}: configMapGenerator {name}: literal without '='")
        data[key] = value
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
    if options.get("immutable"):
        doc["immutable"] = True
    return Resource(
        doc, f"{where}: configMapGenerator {name}", generated=True,
        hashed=not options.get("disableNameSuffixHash", False),
    )


def apply_generator(resources, folder, spec, where):
    new = generate_config_map(folder, spec, where)
    behavior = spec.get("behavior", "create")
    same = [r for r in resources if r.kind == "ConfigMap" and r.name == new.name]
    if behavior == "create":
        if same:
            raise RenderError(f"{where}: ConfigMap {new.name} exists; use behavior replace or merge")
        resources.append(new)
    elif behavior in ("replace", "merge"):
        if len(same) != 1:
            raise RenderError(f"{where}: behavior {behavior}: no ConfigMap {new.name} to change")
        old = same[0]
        if behavior == "merge":
            merged = dict(old.doc.get("data") or {})
            merged.update(new.doc["data"])
            new.doc["data"] = merged
        if old.namespace:
            new.doc["metadata"]["namespace"] = old.namespace
        # As kustomize: a name suffix disabled by either stays disabled.
        new.hashed = new.hashed and old.hashed
        resources[resources.index(old)] = new
    else:
        raise RenderError(f"{where}: unknown behavior {behavior}")


def apply_patch(resources, folder, spec, where):
    unknown = set(spec) - {"path", "target"}
    if unknown or "path" not in spec:
        raise RenderError(f"{where}: patches entries need `path` and `target` only")
    target = spec.get("target") or {}
    if set(target) != {"kind", "name"}:
        raise RenderError(f"{where}: patch {spec['path']}: target must give kind and name only")
    ops = load_yaml_docs(folder / spec["path"])
    if len(ops) != 1 or not isinstance(ops[0], list):
        raise RenderError(f"{where}: patch {spec['path']}: must be one JSON patch (a list of operations)")
    matched = [r for r in resources if r.kind == target["kind"] and r.name == target["name"]]
    if not matched:
        raise RenderError(f"{where}: patch {spec['path']}: no {target['kind']} {target['name']}")
    for r in matched:
        try:
            r.doc = jsonpatch.JsonPatch(ops[0]).apply(r.doc)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise RenderError(f"{where}: patch {spec['path']} on {r.kind} {r.name}: {e}") from None


def split_image(image: str):
    """(name, tag, digest) of an image reference."""
    name, digest = (image.split("@", 1) + [None])[:2]
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    return name, tag, digest


def apply_images(resources, images, where):
    for image in images:
        unknown = set(image) - {"name", "newName", "newTag", "digest"}
        if unknown:
            raise RenderError(f"{where}: unsupported images fields {sorted(unknown)}")
        for r in resources:
            for container in pod_containers(r.doc):
                name, tag, digest = split_image(container.get("image", ""))
                if name != image["name"]:
                    continue
                name = image.get("newName", name)
                if "digest" in image:
                    ref = f"{name}@{image['digest']}"
                elif "newTag" in image:
                    ref = f"{name}:{image['newTag']}"
                else:
                    ref = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                container["image"] = ref


def pod_spec(doc):
    if doc.get("kind") in POD_TEMPLATE_KINDS:
        return doc.get("spec", {}).get("template", {}).get("spec")
    if doc.get("kind") == "CronJob":
        return doc.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
    if doc.get("kind") == "Pod":
        return doc.get("spec")
    return None


def pod_containers(doc):
    spec = pod_spec(doc) or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def config_map_refs(doc):
    """Every (holder, key) whose holder[key] names a ConfigMap in a pod template."""
    spec = pod_spec(doc)
    if not spec:
        return
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            yield volume["configMap"], "name"
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                yield source["configMap"], "name"
    for container in pod_containers(doc):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                yield ref, "name"
        for env_from in container.get("envFrom") or []:
            if "configMapRef" in env_from:
                yield env_from["configMapRef"], "name"


def render_dir(folder: pathlib.Path, seen=()):
    """The resources of one kustomization, before names get their hash."""
    folder = folder.resolve()
    if folder in seen:
        raise RenderError(f"{folder}: kustomizations include each other")
    path = kustomization_file(folder)
    where = str(path)
    docs = load_yaml_docs(path)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise RenderError(f"{where}: must be one mapping")
    k = docs[0]
    unknown = set(k) - KNOWN_FIELDS
    if unknown:
        raise RenderError(f"{where}: render.py does not support {sorted(unknown)}")

    resources = []
    for entry in k.get("resources") or []:
        target = (folder / entry).resolve()
        if target.is_dir():
            resources.extend(render_dir(target, seen + (folder,)))
        elif target.is_file():
            for doc in load_yaml_docs(target):
                if not isinstance(doc, dict) or "kind" not in doc:
                    raise RenderError(f"{target}: a document without kind")
                resources.append(Resource(doc, str(target)))
        else:
            raise RenderError(f"{where}: resource {entry} does not exist")

    for spec in k.get("configMapGenerator") or []:
        apply_generator(resources, folder, spec, where)
    for spec in k.get("patches") or []:
        apply_patch(resources, folder, spec, where)
    namespace = k.get("namespace")
    if namespace:
        for r in resources:
            if r.kind == "Namespace":
                r.doc["metadata"]["name"] = namespace
            elif r.kind not in CLUSTER_SCOPED:
                r.doc.setdefault("metadata", {})["namespace"] = namespace
    apply_images(resources, k.get("images") or [], where)

    keys = {}
    for r in resources:
        key = (r.doc.get("apiVersion"), r.kind, r.namespace, r.name)
        if key in keys:
            raise RenderError(f"{where}: {r.kind} {r.name} twice ({keys[key]}, {r.origin})")
        keys[key] = r.origin
    return resources


def finish(resources):
    """Hash suffixes on generated names, references updated, kustomize's order."""
    renamed = {}
    for r in resources:
        if r.generated and r.hashed:
            new = f"{r.name}-{config_map_hash(r.doc)}"
            renamed[(r.namespace, r.name)] = new
            r.doc["metadata"]["name"] = new
    for r in resources:
        for holder, key in config_map_refs(r.doc):
            new = renamed.get((r.namespace, holder.get(key)))
            if new:
                holder[key] = new

    def order(r):
        kind = r.kind
        if kind in ORDER_FIRST:
            rank = (0, ORDER_FIRST.index(kind), "")
        elif kind in ORDER_LAST:
            rank = (2, ORDER_LAST.index(kind), "")
        else:
            rank = (1, 0, f"{r.doc.get('apiVersion')}/{kind}")
        return rank + (r.namespace or "", r.name or "")

    return [r.doc for r in sorted(resources, key=order)]


def render(folder) -> list:
    """The documents `kubectl kustomize FOLDER` prints, as Python values."""
    return finish(render_dir(pathlib.Path(folder)))


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value):
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump(docs) -> str:
    return yaml.dump_all(
        copy.deepcopy(docs), Dumper=_Dumper, sort_keys=True, default_flow_style=False,
        allow_unicode=True, explicit_start=False,
    ).replace("\n...\n", "\n")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dump(render(argv[1])))
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
