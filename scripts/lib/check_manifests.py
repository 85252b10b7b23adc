"""Checks rendered Kubernetes manifests of rollwarden (scripts/check-manifests runs it).

Usage: check_manifests.py KUBERNETES_VERSION RENDER=RENDERED.yaml...

RENDER names the overlay and the components the render carries: `ha`, or
`ha+helm-executor+prometheus`. For each render:
1. every object validates, strictly (unknown fields are errors), against the schemas
   of KUBERNETES_VERSION that kubernetes-validate ships; an object without a schema
   (a misspelt kind or apiVersion) is an error too, not a warning;
2. the security properties docs/deploy.md promises hold: non-root, read-only root
   filesystem, no capabilities, RuntimeDefault seccomp, no privilege escalation, probes
   on /healthz and /readyz, requests and limits, and RBAC that grants exactly the
   rows of src/k8s/rbac.toml for the base and the components carried, nothing more;
   a NetworkPolicy that admits only the listed namespaces on the http port;
3. the overlay's own shape holds (single: SQLite on a volume, one replica, Recreate;
   ha: PostgreSQL from a Secret, two replicas, PDB minAvailable 1, anti-affinity);
4. the prometheus component's ServiceMonitor scrapes the Service's http port;
5. with $ROLLWARDEN_BIN set, `rollwarden check-config --lint` accepts the ConfigMap's
   rollwarden.toml with the environment the Deployment gives it, so no key is invented.

Then, once: the PrometheusRule passes `promtool check rules` and its unit tests
(tests/prometheus/rollwarden-rules.test.yml); every expression of the Grafana dashboard
(deploy/grafana/rollwarden.json) parses as PromQL; and, with $ROLLWARDEN_BIN set, every
rollwarden_* metric the rules and the dashboard query is exported by a running
rollwarden's /metrics.

Exits 1 after printing every failure.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request

import kubernetes_validate
import yaml
from kubernetes_validate.utils import InvalidSchemaError, VersionNotSupportedError

CONFIG_PATH = "/etc/rollwarden/rollwarden.toml"

RBAC_TABLE = "src/k8s/rbac.toml"
DASHBOARD = "deploy/grafana/rollwarden.json"
RULE_TESTS = "tests/prometheus/rollwarden-rules.test.yml"
MONITORING_GROUP = "monitoring.coreos.com/"


def granted_by_table(components):
    """(apiGroup, resource, verb) the table grants to the base and `components`."""
    with open(RBAC_TABLE, "rb") as f:
        rows = tomllib.load(f)["grant"]
    known = {r["component"] for r in rows} - {""}
    for c in components - {"prometheus"}:
        check(c in known, c, f"component {c} grants nothing in {RBAC_TABLE}: teach the table or this check")
    return {
        (r["group"], r["resource"], verb)
        for r in rows
        if r["component"] == "" or r["component"] in components
        for verb in r["verbs"]
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
        if obj.get("apiVersion", "").startswith(MONITORING_GROUP):
            continue  # the Prometheus Operator's CRDs: check_monitoring checks them
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


def check_rbac(overlay, objects, namespace, components):
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
    expected = granted_by_table(components)
    extra = sorted(granted - expected)
    missing = sorted(expected - granted)
    check(not extra, overlay, f"RBAC grants more than {RBAC_TABLE} asks for: {extra}")
    check(not missing, overlay, f"RBAC lacks what {RBAC_TABLE} asks for: {missing}")

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


def check_network_policy(overlay, objects, pod_labels):
    policy = only(objects, "NetworkPolicy", overlay)
    if policy is None:
        return
    spec = policy["spec"]
    check(selects(spec.get("podSelector", {}).get("matchLabels"), pod_labels), overlay,
          "the NetworkPolicy selects no rollwarden pod")
    check(sorted(spec.get("policyTypes", [])) == ["Egress", "Ingress"], overlay,
          "the NetworkPolicy does not restrict both Ingress and Egress")
    ingress = spec.get("ingress", [])
    check(ingress, overlay, "the NetworkPolicy admits nothing: Alertmanager could not deliver")
    for rule in ingress:
        sources = rule.get("from", [])
        check(sources and all(set(src) == {"namespaceSelector"} for src in sources), overlay,
              "an ingress rule admits more than pods of listed namespaces")
        for src in sources:
            exprs = src["namespaceSelector"].get("matchExpressions", [])
            check(exprs and all(e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "In"
                                and e.get("values") for e in exprs), overlay,
                  "an ingress namespaceSelector is not a list of namespace names")
        ports = rule.get("ports", [])
        check(ports and all(p.get("port") in ("http", 8080) for p in ports), overlay,
              "an ingress rule opens more than the http port")
    egress_ports = {(p.get("protocol", "TCP"), p.get("port")) for r in spec.get("egress", []) for p in r.get("ports", [])}
    for needed in (("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443), ("TCP", 5432)):
        check(needed in egress_ports, overlay, f"the NetworkPolicy's egress lacks {needed[0]} {needed[1]}")
    check(all(r.get("ports") for r in spec.get("egress", [])), overlay,
          "an egress rule opens every port")


def check_monitoring(overlay, objects, components, service):
    """The prometheus component's objects; returns the PrometheusRule's groups."""
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    if "prometheus" not in components:
        check(not monitors and not rules, overlay, "Prometheus Operator objects without the prometheus component")
        return None
    monitor = only(objects, "ServiceMonitor", overlay)
    rule = only(objects, "PrometheusRule", overlay)
    if monitor and service:
        spec = monitor["spec"]
        check(selects(spec.get("selector", {}).get("matchLabels"), service["metadata"].get("labels", {})),
              overlay, "the ServiceMonitor selects no rollwarden Service")
        names = {p.get("name") for p in service["spec"]["ports"]}
        endpoints = spec.get("endpoints", [])
        check(endpoints and all(e.get("port") in names and e.get("path") == "/metrics" for e in endpoints),
              overlay, "the ServiceMonitor does not scrape /metrics on a port of the Service")
        check(set(spec) <= {"selector", "endpoints"}, overlay, f"unexpected ServiceMonitor fields: {sorted(spec)}")
    if rule:
        check(set(rule["spec"]) == {"groups"}, overlay, "the PrometheusRule has fields beside groups")
        return rule["spec"]["groups"]
    return None


def run_promtool(groups):
    """`promtool check rules` and the unit tests on the PrometheusRule's groups, and the
    dashboard's expressions parsed by promtool as recording rules."""
    promtool = os.environ.get("PROMTOOL", "promtool")
    with tempfile.TemporaryDirectory() as tmp:
        rules = os.path.join(tmp, "rollwarden-rules.yml")
        with open(rules, "w") as f:
            yaml.safe_dump({"groups": groups}, f, sort_keys=False)
        shutil.copy(RULE_TESTS, tmp)
        for argv in ([promtool, "check", "rules", rules],
                     [promtool, "test", "rules", os.path.join(tmp, os.path.basename(RULE_TESTS))]):
            run = subprocess.run(argv, capture_output=True, text=True, cwd=tmp)
            check(run.returncode == 0, "prometheus", f"{' '.join(argv[:3])} failed:\n{run.stdout}{run.stderr}")

        exprs = dashboard_exprs()
        check(exprs, "dashboard", f"{DASHBOARD} queries nothing")
        recorded = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:panel{i}", "expr": e
             .replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$namespace", ".*")}
            for i, e in enumerate(exprs)]}]}
        path = os.path.join(tmp, "dashboard-rules.yml")
        with open(path, "w") as f:
            yaml.safe_dump(recorded, f, sort_keys=False)
        run = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
        check(run.returncode == 0, "dashboard", f"an expression of {DASHBOARD} is not PromQL:\n{run.stdout}{run.stderr}")


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    exprs = []
    for panel in dashboard.get("panels", []):
        for sub in [panel, *panel.get("panels", [])]:
            exprs.extend(t["expr"] for t in sub.get("targets", []) if t.get("expr"))
    return exprs


def queried_metrics(groups):
    """Every rollwarden_* series name in the rules and the dashboard."""
    exprs = dashboard_exprs() + [r["expr"] for g in groups for r in g["rules"]]
    return {m for e in exprs for m in re.findall(r"\b(rollwarden_[a-z0-9_]+)", e)}


def exported_metrics(binary):
    """The series names a freshly started `rollwarden serve` exports on /metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # The watchers on, against an API server nobody answers at: their series (the
        # lease gauge, watch errors) exist as they would in a cluster.
        kubeconfig = os.path.join(tmp, "kubeconfig")
        with open(kubeconfig, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "unreachable",
                "clusters": [{"name": "unreachable", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "nobody", "user": {"token": "stand-in"}}],
                "contexts": [{"name": "unreachable", "context": {"cluster": "unreachable", "user": "nobody"}}],
            }, f)
        config = os.path.join(tmp, "rollwarden.toml")
        with open(config, "w") as f:
            f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n\n'
                    f'[database]\nurl = "sqlite:{tmp}/rollwarden.db"\n\n'
                    f'[kubernetes]\nenabled = true\nkubeconfig = "{kubeconfig}"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWARDEN")}
        server = subprocess.Popen([binary, "serve", "--config", config], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            text = None
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    # Twice: the first request is what the latency histogram then holds.
                    for _ in range(2):
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                            text = r.read().decode()
                    if "rollwarden_kubernetes_watchers_leading{" in text:
                        break
                    text = None
                    time.sleep(0.2)
                except OSError:
                    time.sleep(0.2)
            if text is None:
                server.terminate()
                err = server.communicate(timeout=10)[1]
                check(False, "metrics", f"rollwarden serve did not answer /metrics with its watchers started within 30 s: {err.strip()[-2000:]}")
                return None
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
    names = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""], "info": ["_info"]}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            for suffix in suffixes.get(kind, [""]):
                names.add(name + suffix)
    return names


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


def check_config_with_binary(overlay, text, container):
    """`rollwarden check-config --lint` on the ConfigMap's file, as the pod would load it
    (the token files live in a Secret outside the manifests: --lint does not read them)."""
    binary = os.environ.get("ROLLWARDEN_BIN")
    if not binary:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rollwarden.toml")
        with open(path, "w") as out:
            out.write(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROLLWARDEN")}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e["name"] == "ROLLWARDEN__DATABASE__URL":
                env[e["name"]] = "postgres://rollwarden:stand-in@postgres:5432/rollwarden"
        run = subprocess.run([binary, "check-config", "--lint", "--config", path], env=env,
                             capture_output=True, text=True)
        check(run.returncode == 0, overlay,
              f"rollwarden check-config --lint rejects the ConfigMap's rollwarden.toml: {run.stderr.strip()}")


def main():
    version = sys.argv[1]
    rule_groups = []
    for arg in sys.argv[2:]:
        overlay, rendered = arg.split("=", 1)
        base, *components = overlay.split("+")
        components = set(components)
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
        pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
        pdb = check_service_and_pdb(overlay, objects, pod_labels)
        check_rbac(overlay, objects, namespace, components)
        check_network_policy(overlay, objects, pod_labels)
        service = next((o for o in objects if o["kind"] == "Service"), None)
        groups = check_monitoring(overlay, objects, components, service)
        if groups and groups not in rule_groups:
            rule_groups.append(groups)
        text, config = config_of(overlay, objects, pod, container)
        if config is not None:
            check_config(overlay, config, pod, container, grace)
            check_config_with_binary(overlay, text, container)
        check_overlay_shape(base, objects, deployment["spec"], pod, container, pdb)
        print(f"check-manifests: {overlay}: {len(objects)} objects checked")

    if check(len(rule_groups) == 1, "prometheus", "no render carries the PrometheusRule, or renders differ"):
        run_promtool(rule_groups[0])
        binary = os.environ.get("ROLLWARDEN_BIN")
        queried = queried_metrics(rule_groups[0])
        if binary:
            exported = exported_metrics(binary)
            if exported is not None:
                unknown = sorted(queried - exported)
                check(not unknown, "metrics",
                      f"the dashboard or the rules query metrics /metrics does not export: {unknown}")
                print(f"check-manifests: {len(queried)} metrics queried by the rules and the dashboard, all exported")
        print(f"check-manifests: PrometheusRule (promtool check and unit tests) and {DASHBOARD} ok")
    if failures:
        for failure in failures:
            print(f"FAIL {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
