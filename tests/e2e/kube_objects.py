#!/usr/bin/env python3
"""Kubernetes objects for the drill's fake API server, shaped like the ones the
Deployment controller leaves behind (see tests/fixtures/deployment-with-replicasets.json).

  kube_objects.py initial --namespace NS --name NAME
      A `kind: List`: the Deployment, rolled out at revision 2 (VERSION_2) a day ago,
      and its two ReplicaSets, revision 1 (VERSION_1, two days ago) and revision 2.
  kube_objects.py rollout --version V [--change-cause TEXT] < deployment.json
      The Deployment (as read back from the API) with its template moved to version V,
      as `kubectl set image` would leave it. The generation is left to the API server
      to bump; the simulated controller then creates revision 3.
  kube_objects.py argo-initial --namespace NS --name NAME
      An Argo Rollout, fully promoted at revision 2 (VERSION_2), and its ReplicaSets
      for revisions 1 and 2, as the Argo Rollouts controller leaves them.
  kube_objects.py argo-canary --version V [--promoted] < rollout.json
      What the controller does when the Rollout's template moves to V: revision 3's
      ReplicaSet, and the Rollout in its first canary step (paused, stable still
      revision 2), or with --promoted fully promoted to revision 3. The fake API has
      no Argo controller: the drill plays it with these objects.

Python 3.11 standard library only.
"""

import argparse
import copy
import datetime
import json
import sys
import uuid

REGISTRY = "registry.example.com/drill"
VERSION_1 = "1.4.0"
VERSION_2 = "1.5.0"
# Pod-template hashes in the controller's alphabet; any stable ones do.
HASHES = {1: "c6df558d4", 2: "7c67857fd"}


def stamp(ago):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return (now - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def selector(name):
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}


def template(name, version, pod_hash=None):
    labels = {**selector(name), "app.kubernetes.io/version": version}
    if pod_hash:
        labels["pod-template-hash"] = pod_hash
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [
                {
                    "name": name,
                    "image": f"{REGISTRY}/{name}:{version}",
                    "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "failureThreshold": 3,
                        "timeoutSeconds": 1,
                    },
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
        },
    }


def replicaset(namespace, name, uid, revision, version, replicas, created):
    pod_hash = HASHES[revision]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{pod_hash}",
            "namespace": namespace,
            "creationTimestamp": created,
            "labels": {**selector(name), "pod-template-hash": pod_hash},
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": "3",
                "deployment.kubernetes.io/max-replicas": "4",
                "deployment.kubernetes.io/revision": str(revision),
                "kubernetes.io/change-cause": f"release {version}",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**selector(name), "pod-template-hash": pod_hash}},
            "template": template(name, version, pod_hash),
        },
        "status": {
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "observedGeneration": 1,
        },
    }


ARGO_HASHES = {1: "5b7d9c6f4", 2: "6f8c4d9b5", 3: "7d9f6b4c8"}
ARGO_HASH_LABEL = "rollouts-pod-template-hash"


def argo_template(name, version, pod_hash=None):
    t = template(name, version)
    t["metadata"]["labels"].pop("pod-template-hash", None)
    if pod_hash:
        t["metadata"]["labels"][ARGO_HASH_LABEL] = pod_hash
    return t


def argo_replicaset(namespace, name, uid, revision, version, replicas, created):
    pod_hash = ARGO_HASHES[revision]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{name}-{pod_hash}",
            "namespace": namespace,
            "creationTimestamp": created,
            "labels": {**selector(name), ARGO_HASH_LABEL: pod_hash},
            "annotations": {"rollout.argoproj.io/revision": str(revision)},
            "ownerReferences": [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "Rollout",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {**selector(name), ARGO_HASH_LABEL: pod_hash}},
            "template": argo_template(name, version, pod_hash),
        },
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def argo_status(current, stable, phase):
    return {
        "currentPodHash": ARGO_HASHES[current],
        "stableRS": ARGO_HASHES[stable],
        "phase": phase,
        "observedGeneration": "1",
    }


def argo_initial(args):
    namespace, name = args.namespace, args.name
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rollwarden-drill/argo/{namespace}/{name}"))
    two_days, one_day = stamp(datetime.timedelta(days=2)), stamp(datetime.timedelta(days=1))
    rollout_object = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "uid": uid,
                     "creationTimestamp": two_days, "generation": 2},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": selector(name)},
            "template": argo_template(name, VERSION_2),
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}},
        },
        "status": argo_status(2, 2, "Healthy"),
    }
    items = [
        rollout_object,
        argo_replicaset(namespace, name, uid, 1, VERSION_1, 0, two_days),
        argo_replicaset(namespace, name, uid, 2, VERSION_2, 3, one_day),
    ]
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}


def argo_canary(args):
    rollout_object = copy.deepcopy(json.load(sys.stdin))
    meta = rollout_object["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    for field in ("generation", "resourceVersion"):
        meta.pop(field, None)
    rollout_object["spec"]["template"] = argo_template(name, args.version)
    if args.promoted:
        rollout_object["status"] = argo_status(3, 3, "Healthy")
    else:
        rollout_object["status"] = argo_status(3, 2, "Paused")
    new_rs = argo_replicaset(namespace, name, uid, 3, args.version, 1, stamp(datetime.timedelta()))
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [new_rs, rollout_object]}


def initial(args):
    namespace, name = args.namespace, args.name
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"rollwarden-drill/{namespace}/{name}"))
    two_days, one_day = stamp(datetime.timedelta(days=2)), stamp(datetime.timedelta(days=1))
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": two_days,
            "generation": 2,
            "labels": {**selector(name), "app.kubernetes.io/part-of": "rollwarden-drill"},
            "annotations": {
                "deployment.kubernetes.io/revision": "2",
                "kubernetes.io/change-cause": f"release {VERSION_2}",
            },
        },
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": selector(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": template(name, VERSION_2),
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "updatedReplicas": 3,
            "readyReplicas": 3,
            "availableReplicas": 3,
            "conditions": [
                {
                    "type": "Available",
                    "status": "True",
                    "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.",
                    "lastUpdateTime": two_days,
                    "lastTransitionTime": two_days,
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{name}-{HASHES[2]}" has successfully progressed.',
                    "lastUpdateTime": one_day,
                    "lastTransitionTime": two_days,
                },
            ],
        },
    }
    items = [
        deployment,
        replicaset(namespace, name, uid, 1, VERSION_1, 0, two_days),
        replicaset(namespace, name, uid, 2, VERSION_2, 3, one_day),
    ]
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}


def rollout(args):
    deployment = copy.deepcopy(json.load(sys.stdin))
    name = deployment["metadata"]["name"]
    spec_template = deployment["spec"]["template"]
    container = spec_template["spec"]["containers"][0]
    container["image"] = container["image"].rsplit(":", 1)[0] + ":" + args.version
    spec_template["metadata"]["labels"]["app.kubernetes.io/version"] = args.version
    annotations = deployment["metadata"].setdefault("annotations", {})
    annotations["kubernetes.io/change-cause"] = args.change_cause or f"release {args.version}"
    for field in ("generation", "resourceVersion"):
        deployment["metadata"].pop(field, None)
    assert name, "a Deployment has a name"
    return deployment


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    first = sub.add_parser("initial")
    first.add_argument("--namespace", required=True)
    first.add_argument("--name", required=True)
    roll = sub.add_parser("rollout")
    roll.add_argument("--version", required=True)
    roll.add_argument("--change-cause")
    argo_first = sub.add_parser("argo-initial")
    argo_first.add_argument("--namespace", required=True)
    argo_first.add_argument("--name", required=True)
    canary = sub.add_parser("argo-canary")
    canary.add_argument("--version", required=True)
    canary.add_argument("--promoted", action="store_true")
    args = parser.parse_args()
    commands = {"initial": initial, "rollout": rollout, "argo-initial": argo_initial,
                "argo-canary": argo_canary}
    result = commands[args.command](args)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
