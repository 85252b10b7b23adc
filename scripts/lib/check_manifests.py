"""Checks rendered Kubernetes manifests of rollwarden (scripts/check-manifests runs it).

Usage: check_manifests.py KUBERNETES_VERSION OVERLAY=RENDERED.yaml...

For each overlay's rendered YAML:
1. every object validates, strictly (unknown fields are errors), against the schemas
   of KUBERNETES_VERSION that kubernetes-validate ships; an object without a schema
   (a misspelt kind or apiVersion) is an error too, not a warning;
2. the security properties docs/deploy.md promises hold: non-root, read-only root
   filesystem, no capabilities, RuntimeDefault seccomp, no privilege escalation, probes
   on /healthz and /readyz, requests and limits, and RBAC that grants exactly the
   least-privilege set;
3. the overlay's own shape holds (single: SQLite on a volume, one replica, Recreate;
   ha: PostgreSQL from a Secret, two replicas, PDB minAvailable 1, anti-affinity);
4. with $ROLLWARDEN_BIN set, `rollwarden check-config` accepts the ConfigMap's
   rollwarden.toml with the environment the Deployment gives it, so no key is invented.

Exits 1 after printing every failure.
"""

import os
import subprocess
import sys
import tempfile
import tomllib

import kubernetes_validate
import yaml
from kubernetes_validate.utils import InvalidSchemaError, VersionNotSupportedError

CONFIG_PATH = "/etc/rollwarden/rollwarden.toml"

# The whole grant: (apiGroup, resource, verb). Nothing else may appear in any Role or
# ClusterRole of the render.
LEAST_PRIVILEGE = {
    *(("apps", r, v) for r in ("deployments", "replicasets") for v in ("get", "list", "watch")),
    ("apps", "deployments", "patch"),
    *(("", "secrets", v) for v in ("get", "list", "watch")),
}

failures = []


def check(condition, overlay, message):
    if not condition:
        failures.append(f"{overlay}: {message}")
    return condition


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def validate_schemas(overlay, objects, version):
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            check(False, overlay, f"{name_of(obj)} does not validate against {version}: {path}: {e.message}")
        except (kubernetes_validate.SchemaNotFoundError, InvalidSchemaError) as e:
            check(False, overlay, f"{name_of(obj)}: no schema: {e.message}")
        except VersionNotSupportedError:
            sys.exit(f"check_manifests: kubernetes-validate has no schemas for Kubernetes {version}")


def only(objects, kind, overlay):
    found = [o for o in objects if o["kind"] == kind]
    check(len(found) == 1, overlay, f"expected exactly one {kind}, found {len(found)}")
    return found[0] if found else None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_workload(overlay, objects):
    deployment = only(objects, "Deployment", overlay)
    if deployment is None:
        return None
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    check(selects(spec["selector"].get("matchLabels"), pod_labels), overlay,
          "the Deployment's selector does not match its pod labels")

    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, overlay, "pod securityContext.runAsNonRoot is not true")
    check(psc.get("runAsUser", 0) != 0, overlay, "pod runAsUser is missing or 0 (root)")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", overlay,
          "pod seccompProfile is not RuntimeDefault")
    check(pod.get("automountServiceAccountToken") is True, overlay,
          "automountServiceAccountToken is not true (the watchers need the token)")
    check(pod.get("serviceAccountName") == "rollwarden", overlay, "serviceAccountName is not rollwarden")
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        check(not pod.get(forbidden), overlay, f"{forbidden} is set")
    check(not any("hostPath" in v for v in pod.get("volumes", [])), overlay, "a hostPath volume is mounted")

    containers = pod.get("containers", [])
    check(len(containers) == 1 and not pod.get("initContainers"), overlay,
          "expected exactly one container and no init containers")
    c = containers[0]
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, overlay, "readOnlyRootFilesystem is not true")
    check(sc.get("allowPrivilegeEscalation") is False, overlay, "allowPrivilegeEscalation is not false")
    check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, overlay, "the container may run as root")
    check(not sc.get("privileged"), overlay, "the container is privileged")
    caps = sc.get("capabilities", {})
    check(caps.get("drop") == ["ALL"], overlay, "capabilities.drop is not [ALL]")
    check(not caps.get("add"), overlay, "capabilities are added")
    check(c.get("args") == ["serve", "--config", CONFIG_PATH], overlay, f"args are not serve --config {CONFIG_PATH}")

    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("http") == 8080, overlay, "no container port http = 8080")
    probes = {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
        "startupProbe": "/healthz",
    }
    for probe, path in probes.items():
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") in ("http", 8080), overlay,
              f"{probe} is not an httpGet of {path} on the http port")

    resources = c.get("resources", {})
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            check(resource in resources.get(part, {}), overlay, f"resources.{part}.{resource} is not set")

    grace = pod.get("terminationGracePeriodSeconds", 30)
    return deployment, pod, c, grace


def check_service_and_pdb(overlay, objects, pod_labels):
    service = only(objects, "Service", overlay)
    if service:
        check(selects(service["spec"].get("selector"), pod_labels), overlay, "the Service selects no rollwarden pod")
        check(any(p.get("targetPort") in ("http", 8080) for p in service["spec"]["ports"]), overlay,
              "the Service does not target the http port")
    pdb = only(objects, "PodDisruptionBudget", overlay)
    if pdb:
        check(selects(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels), overlay,
              "the PodDisruptionBudget selects no rollwarden pod")
        check(("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]), overlay,
              "the PodDisruptionBudget must set exactly one of minAvailable, maxUnavailable")
    return pdb


def check_rbac(overlay, objects, namespace):
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    granted = set()
    for role in roles:
        for rule in role.get("rules", []):
            check("resourceNames" not in rule and "nonResourceURLs" not in rule, overlay,
                  f"{name_of(role)} has resourceNames or nonResourceURLs")
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        granted.add((group, resource, verb))
    extra = sorted(granted - LEAST_PRIVILEGE)
    missing = sorted(LEAST_PRIVILEGE - granted)
    check(not extra, overlay, f"RBAC grants more than the least-privilege set: {extra}")
    check(not missing, overlay, f"RBAC lacks: {missing}")

    role_names = {(r["kind"], r["metadata"]["name"]) for r in roles}
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    check(bindings, overlay, "no RoleBinding or ClusterRoleBinding")
    for b in bindings:
        ref = b["roleRef"]
        check((ref["kind"], ref["name"]) in role_names, overlay, f"{name_of(b)} binds a role not in the render")
        check(b.get("subjects") == [{"kind": "ServiceAccount", "name": "rollwarden", "namespace": namespace}],
              overlay, f"{name_of(b)} must bind exactly the ServiceAccount {namespace}/rollwarden")
    sa = only(objects, "ServiceAccount", overlay)
    if sa:
        check(sa["metadata"].get("namespace") == namespace, overlay, "the ServiceAccount is not in the Deployment's namespace")


def mounted(container, pod, path):
    """The volume mounted at `path`, or None."""
    for m in container.get("volumeMounts", []):
        if m["mountPath"] == path:
            return next((v for v in pod.get("volumes", []) if v["name"] == m["name"]), None)
    return None


def config_of(overlay, objects, pod, container):
    volume = mounted(container, pod, os.path.dirname(CONFIG_PATH))
    if not check(volume and "configMap" in volume, overlay, f"no ConfigMap mounted at {os.path.dirname(CONFIG_PATH)}"):
        return None, None
    name = volume["configMap"]["name"]
    cm = next((o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name), None)
    if not check(cm and "rollwarden.toml" in cm.get("data", {}), overlay, f"ConfigMap {name} with rollwarden.toml is not in the render"):
        return None, None
    text = cm["data"]["rollwarden.toml"]
    return text, tomllib.loads(text)


def check_config(overlay, config, pod, container, grace):
    listen = config.get("server", {}).get("listen", "127.0.0.1:8080")
    check(listen == "0.0.0.0:8080", overlay, f"server.listen is {listen}, not 0.0.0.0:8080 (the container port)")
    shutdown = config.get("server", {}).get("shutdown_grace_secs", 30)
    check(shutdown < grace, overlay, f"server.shutdown_grace_secs ({shutdown}) is not below terminationGracePeriodSeconds ({grace})")
    check("database" not in config or "url" not in config["database"], overlay,
          "database.url belongs in the overlay's ROLLWARDEN__DATABASE__URL, not the shared file")
    tokens = config.get("auth", {}).get("tokens", [])
    check(tokens, overlay, "no auth tokens: rollwarden refuses a non-loopback listen without them")
    for t in tokens:
        f = t.get("token_file")
        if not check(f, overlay, f"token {t.get('name')} is not read from a file (the mounted Secret)"):
            continue
        volume = mounted(container, pod, os.path.dirname(f))
        check(volume and volume.get("secret", {}).get("secretName") == "rollwarden-tokens", overlay,
              f"{f} is not in the mounted Secret rollwarden-tokens")


def check_overlay_shape(overlay, objects, spec, pod, container, pdb):
    env = {e["name"]: e for e in container.get("env", [])}
    url = env.get("ROLLWARDEN__DATABASE__URL")
    if not check(url, overlay, "ROLLWARDEN__DATABASE__URL is not set"):
        return
    if overlay == "single":
        check(spec.get("replicas") == 1, overlay, "replicas is not 1")
        check(spec.get("strategy", {}).get("type") == "Recreate", overlay, "strategy is not Recreate")
        check(pod.get("securityContext", {}).get("fsGroup") is not None, overlay, "no fsGroup for the volume")
        value = url.get("value", "")
        if check(value.startswith("sqlite:/"), overlay, "the database URL is not an absolute sqlite: path"):
            volume = mounted(container, pod, os.path.dirname(value[len("sqlite:"):]))
            claim = (volume or {}).get("persistentVolumeClaim", {}).get("claimName")
            check(claim and any(o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == claim for o in objects),
                  overlay, "the SQLite file is not on a PersistentVolumeClaim of the render")
    elif overlay == "ha":
        check(spec.get("replicas") == 2, overlay, "replicas is not 2")
        ref = url.get("valueFrom", {}).get("secretKeyRef", {})
        check(ref.get("name") and ref.get("key"), overlay, "the database URL does not come from a Secret")
        check(pdb and pdb["spec"].get("minAvailable") == 1, overlay, "the PodDisruptionBudget is not minAvailable 1")
        check(pod.get("affinity", {}).get("podAntiAffinity"), overlay, "no pod anti-affinity")
        check(not any(o["kind"] == "PersistentVolumeClaim" for o in objects), overlay, "a PersistentVolumeClaim in ha")
    else:
        check(False, overlay, "unknown overlay: teach check_manifests.py its shape")


def check_config_with_binary(overlay, text, config, container):
    """`rollwarden check-config` on the ConfigMap's file, as the pod would load it."""
    binary = os.environ.get("ROLLWARDEN_BIN")
    if not binary:
        return
    with tempfile.TemporaryDirectory() as tmp:
        # The token files live in a Secret that is not part of the manifests: stand-ins.
        for t in config.get("auth", {}).get("tokens", []):
            f = t.get("token_file")
            if f:
                stand_in = os.path.join(tmp, os.path.basename(f))
                with open(stand_in, "w") as out:
                    out.write("stand-in-token-0123456789abcdef\n")
                text = text.replace(f'"{f}"', f'"{stand_in}"')
        path = os.path.join(tmp, "rollwarden.toml")
        with open(path, "w") as out:
            out.write(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWARDEN")}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e["name"] == "ROLLWARDEN__DATABASE__URL":
                env[e["name"]] = "postgres://rollwarden:stand-in@postgres:5432/rollwarden"
        run = subprocess.run([binary, "check-config", "--config", path], env=env,
                             capture_output=True, text=True)
        check(run.returncode == 0, overlay,
              f"rollwarden check-config rejects the ConfigMap's rollwarden.toml: {run.stderr.strip()}")


def main():
    version = sys.argv[1]
    for arg in sys.argv[2:]:
        overlay, rendered = arg.split("=", 1)
        with open(rendered) as f:
            objects = [o for o in yaml.safe_load_all(f) if o]
        if not check(objects, overlay, "renders to nothing"):
            continue
        validate_schemas(overlay, objects, version)
        workload = check_workload(overlay, objects)
        if workload is None:
            continue
        deployment, pod, container, grace = workload
        namespace = deployment["metadata"].get("namespace")
        check(namespace, overlay, "the Deployment has no namespace")
        for o in objects:
            # A Role or RoleBinding may grant in a watched namespace (docs/deploy.md's
            # narrowing of RBAC); everything else lives beside the Deployment.
            if o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
                check(o["metadata"].get("namespace") == namespace, overlay,
                      f"{name_of(o)} is not in namespace {namespace}")
        pdb = check_service_and_pdb(overlay, objects, deployment["spec"]["template"]["metadata"].get("labels", {}))
        check_rbac(overlay, objects, namespace)
        text, config = config_of(overlay, objects, pod, container)
        if config is not None:
            check_config(overlay, config, pod, container, grace)
            check_config_with_binary(overlay, text, config, container)
        check_overlay_shape(overlay, objects, deployment["spec"], pod, container, pdb)
        print(f"check-manifests: {overlay}: {len(objects)} objects checked")
    if failures:
        for failure in failures:
            print(f"FAIL {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
