"""check-arm's workload form reading its input: every image of Kubernetes manifests or a
compose file, where each is used (file and line), each Pod template's arch scheduling, and bad
input as one sentence naming the file, the line and the fix."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

import pytest

from provision.armcheck.workload import (
    Template,
    Use,
    Workload,
    interpolate,
    merge,
    read_compose,
    read_manifests,
    scheduling_hint,
)
from provision.errors import UserError

HERE = Path(__file__).parent / "workloads"
NGINX = "docker.io/library/nginx:latest"


def where(workload: Workload) -> dict[str, list[str]]:
    """Each image and its uses as a user reads them, with file:line."""
    return {image: [f"{use} {use.file}:{use.line}" for use in uses]
            for image, uses in workload.images.items()}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "Fix: " in message and "\n" not in message
    return message


# -- Kubernetes ------------------------------------------------------------------------------

def test_every_kind_with_a_pod_template_and_only_those():
    workload = read_manifests(str(HERE / "kinds.yaml"))
    kinds = ["pod", "deployment", "statefulset", "daemonset", "replicaset",
             "replicationcontroller", "job", "podtemplate", "cronjob"]
    assert list(workload.images) == [f"127.0.0.1:5000/kinds/{k}:1" for k in kinds]
    assert [f"{t.kind}/{t.name}" for t in workload.templates] == [
        "Pod/pod", "Deployment/deployment", "StatefulSet/statefulset", "DaemonSet/daemonset",
        "ReplicaSet/replicaset", "ReplicationController/replicationcontroller", "Job/job",
        "PodTemplate/podtemplate", "CronJob/cronjob"]
    # the ConfigMap's and the custom resource's images are not Pod templates
    assert not any("configmap" in i or "crd" in i for i in workload.images)
    cronjob = workload.images["127.0.0.1:5000/kinds/cronjob:1"][0]
    assert (cronjob.kind, cronjob.name, cronjob.container, cronjob.line) == (
        "CronJob", "cronjob", "c", 63)
    assert [t.line for t in workload.templates][:2] == [2, 7]  # the line of `kind:`
    assert workload.sources == [str(HERE / "kinds.yaml")]


def test_a_directory_dedups_spellings_keeps_every_use_and_skips_what_is_not_a_workload():
    given = str(HERE / "app")
    workload = read_manifests(given)
    deployment, cronjob, pod = (os.path.join(given, f) for f in
                                ("deployment.yaml", "cronjob.yml", "nested/pod.json"))
    assert where(workload) == {
        "127.0.0.1:5000/shop/migrate:1.0": [
            f"CronJob/report (init container migrate) {cronjob}:15",
            f"Deployment/shop/web (init container migrate) {deployment}:12"],
        NGINX: [f"CronJob/report (container report) {cronjob}:18",
                f"Deployment/shop/web (container proxy) {deployment}:17"],
        "127.0.0.1:5000/shop/web:1.0": [f"Deployment/shop/web (container app) {deployment}:15"],
        "127.0.0.1:5000/tools/shell:2": [f"Pod/debug (container shell) {pod}:6"],
        "127.0.0.1:5000/tools/debug:2": [f"Pod/debug (ephemeral container dbg) {pod}:7"],
    }
    # `nginx` and `docker.io/library/nginx:latest` are one image; the first spelling is kept
    assert workload.written[NGINX] == "docker.io/library/nginx:latest"
    assert [u.section for u in workload.images["127.0.0.1:5000/tools/debug:2"]] == [
        "ephemeralContainers"]
    # sorted, recursive; values.yaml read and skipped; README.md and .hidden/ never read
    assert workload.sources == [cronjob, deployment, os.path.join(given, "values.yaml"), pod]
    web = next(t for t in workload.templates if t.name == "shop/web")
    assert web.images == ("127.0.0.1:5000/shop/migrate:1.0", "127.0.0.1:5000/shop/web:1.0",
                          NGINX)


def test_dedup_across_files_keeps_the_first_spelling(tmp_path):
    write(tmp_path, "a.yaml", """\
        kind: Pod
        metadata: {name: a}
        spec: {containers: [{name: web, image: nginx}]}
        """)
    write(tmp_path, "b.yaml", """\
        kind: Pod
        metadata: {name: b, namespace: edge}
        spec: {containers: [{name: web, image: "docker.io/library/nginx:latest"}]}
        """)
    workload = read_manifests(str(tmp_path))
    assert list(workload.images) == [NGINX]
    assert workload.written[NGINX] == "nginx"
    assert [str(u) for u in workload.images[NGINX]] == [
        "Pod/a (container web)", "Pod/edge/b (container web)"]


def test_a_list_and_a_typed_list_whose_items_have_no_kind():
    workload = read_manifests(str(HERE / "list.yaml"))
    assert [str(u) for uses in workload.images.values() for u in uses] == [
        "Deployment/prod/api (container api)", "Deployment/worker (container worker)"]


def test_helm_template_output_on_stdin():
    text = (HERE / "helm.yaml").read_text()
    workload = read_manifests("-", stdin=io.StringIO(text))
    assert where(workload) == {
        "127.0.0.1:5000/shop/web:1.0": ["Deployment/release-shop (container shop) -:20"],
        "127.0.0.1:5000/busybox:1.36": [
            "Pod/release-shop-test-connection (container wget) -:33"]}
    assert workload.sources == ["-"]


def test_stdin_read_as_bytes_like_a_pipe():
    pipe = io.TextIOWrapper(io.BytesIO((HERE / "helm.yaml").read_bytes()))
    assert len(read_manifests("-", stdin=pipe).images) == 2


def test_anchors_and_aliases_are_read_and_a_bomb_is_cut_short(tmp_path):
    path = write(tmp_path, "anchors.yaml", """\
        kind: List
        items:
          - kind: Deployment
            metadata: {name: one}
            spec: &spec
              template:
                spec:
                  containers: [&c {name: app, image: "127.0.0.1:5000/app:1"}]
                  initContainers: [*c]
          - kind: Deployment
            metadata: {name: two}
            spec: *spec
        """)
    assert [str(u) for u in read_manifests(path).images["127.0.0.1:5000/app:1"]] == [
        "Deployment/one (container app)", "Deployment/one (init container app)",
        "Deployment/two (container app)", "Deployment/two (init container app)"]
    # 1000 items sharing one Pod spec of 1000 aliases to one container: a million uses
    aliases = ", ".join(["*c"] * 1000)
    bomb = (f"kind: List\nitems:\n- &d {{kind: Pod, metadata: {{name: x}}, spec: {{containers:"
            f" [&c {{name: c, image: '127.0.0.1:5000/x:1'}}, {aliases}]}}}}\n"
            f"- {{kind: List, items: [{', '.join(['*d'] * 1000)}]}}\n")
    message = refused(read_manifests, write(tmp_path, "bomb.yaml", bomb))
    assert "bomb.yaml:3: YAML aliases reuse" in message and "alias bomb" in message


# -- scheduling ------------------------------------------------------------------------------

def template_of(tmp_path: Path, pod_spec: str) -> Template:
    spec = textwrap.indent(textwrap.dedent(pod_spec), "  ")
    path = write(tmp_path, "pod.yaml", "kind: Pod\nmetadata: {name: p}\nspec:\n"
                 f"  containers: [{{name: c, image: '127.0.0.1:5000/p:1'}}]\n{spec}")
    [template] = read_manifests(path).templates
    return template


@pytest.mark.parametrize("pod_spec, allowed", [
    ("", None),
    ("nodeSelector: {kubernetes.io/arch: arm64}", {"arm64"}),
    ("nodeSelector: {kubernetes.io/arch: amd64, disktype: ssd}", {"amd64"}),
    ("nodeSelector: {beta.kubernetes.io/arch: arm64}", {"arm64"}),
    ("nodeSelector: {disktype: ssd}", None),
    ("""\
     affinity:
       nodeAffinity:
         requiredDuringSchedulingIgnoredDuringExecution:
           nodeSelectorTerms:
           - matchExpressions:
             - {key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}
     """, {"amd64", "arm64"}),
    ("""\
     affinity:
       nodeAffinity:
         requiredDuringSchedulingIgnoredDuringExecution:
           nodeSelectorTerms:
           - matchExpressions:
             - {key: kubernetes.io/arch, operator: NotIn, values: [arm64, arm, ppc64le, s390x]}
     """, {"amd64"}),
    ("""\
     affinity:
       nodeAffinity:
         requiredDuringSchedulingIgnoredDuringExecution:
           nodeSelectorTerms:
           - matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]
           - matchExpressions: [{key: disktype, operator: In, values: [ssd]}]
     """, None),  # terms are ORed: the second allows any arch
    ("""\
     nodeSelector: {kubernetes.io/arch: arm64}
     affinity:
       nodeAffinity:
         preferredDuringSchedulingIgnoredDuringExecution:
         - weight: 1
           preference:
             matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]
         requiredDuringSchedulingIgnoredDuringExecution:
           nodeSelectorTerms:
           - matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}]
     """, {"arm64"}),  # both must hold; a preference constrains nothing
])
def test_the_arches_a_pod_template_allows(tmp_path, pod_spec, allowed):
    template = template_of(tmp_path, pod_spec)
    assert template.allowed_arches == (None if allowed is None else frozenset(allowed))
    assert template.images == ("127.0.0.1:5000/p:1",)


@pytest.mark.parametrize("tolerations, tolerates", [
    ("[]", False),
    ("[{key: kubernetes.io/arch, operator: Equal, value: arm64, effect: NoSchedule}]", True),
    ("[{key: kubernetes.io/arch, value: arm64}]", True),  # Equal is the default, any effect
    ("[{key: kubernetes.io/arch, operator: Equal, value: amd64, effect: NoSchedule}]", False),
    ("[{key: kubernetes.io/arch, operator: Exists, effect: NoSchedule}]", True),
    ("[{key: kubernetes.io/arch, operator: Exists, effect: NoExecute}]", False),
    ("[{operator: Exists}]", True),  # an empty key with Exists tolerates every taint
    ("[{key: dedicated, operator: Exists}]", False),
])
def test_the_toleration_of_the_arm64_taint(tmp_path, tolerations, tolerates):
    assert template_of(tmp_path, f"tolerations: {tolerations}").tolerates_arm64 is tolerates


def hint(allowed, tolerates=False):
    template = Template("Deployment", "web", "-", 1,
                        None if allowed is None else frozenset(allowed), tolerates, ())
    return scheduling_hint(template)


def test_scheduling_hint():
    assert hint({"arm64"}) is None
    assert hint({"amd64", "arm64"}) is None
    assert hint(None, tolerates=True) is None
    assert hint(None) == (
        "add `nodeSelector: {kubernetes.io/arch: arm64}` to its Pod spec (GKE then adds the"
        " toleration for the kubernetes.io/arch=arm64:NoSchedule taint of its Arm nodes), or"
        " only that toleration to let it run on Arm and x86 nodes alike")
    pinned = hint({"amd64"}, tolerates=True)  # tolerating the taint does not undo a pin
    assert pinned is not None
    assert "pins it to amd64" in pinned and "never runs on Arm nodes" in pinned
    assert "`kubernetes.io/arch: arm64`" in pinned and "values: [amd64, arm64]" in pinned
    assert "pins it to no architecture at all" in (hint(set()) or "")


# -- Compose ---------------------------------------------------------------------------------

def test_compose_services_with_env_interpolation_platform_and_build_only():
    path = str(HERE / "compose" / "compose.yaml")
    workload = read_compose(path, environ={})
    assert where(workload) == {
        "127.0.0.1:5000/shop/web:2.0": [f"compose service web {path}:7"],
        "127.0.0.1:5000/base:2.0": [f"compose service cache {path}:3"],  # via `<<: *base`
        "127.0.0.1:5000/db:16": [f"compose service db {path}:12"],  # DB_TAG empty in .env
        "127.0.0.1:5000/shop/worker:v2.0": [f"compose service worker {path}:17"],
    }
    assert workload.images["127.0.0.1:5000/shop/web:2.0"][0].platform == "linux/arm64"
    assert workload.images["127.0.0.1:5000/db:16"][0].platform is None
    assert [(u.name, u.line) for u in workload.unbuilt] == [("builder", 13)]
    assert workload.templates == []
    assert workload.sources == [path, str(HERE / "compose" / ".env")]
    # the environment wins over .env
    workload = read_compose(path, environ={"TAG": "3", "REGISTRY": "localhost:5000"})
    assert list(workload.images) == ["localhost:5000/shop/web:3", "127.0.0.1:5000/base:3",
                                     "localhost:5000/db:16", "localhost:5000/shop/worker:v3"]


@pytest.mark.parametrize("text, expected, unset", [
    ("a$$b", "a$b", []),
    ("$V/x", "set/x", []),
    ("${V}x", "setx", []),
    ("${E:-d}|${E-d}|${U:-d}|${U-d}", "d||d|d", []),
    ("${V:-d}", "set", []),
    ("${U:-${V}}", "set", []),
    ("${V:+alt}|${E:+alt}|${E+alt}|${U+alt}", "alt||alt|", []),
    ("${E?no}${V:?no}${V?no}", "setset", []),
    ("$U/${U2}", "/", ["U", "U2"]),
])
def test_compose_interpolation(text, expected, unset):
    found: list[str] = []
    assert interpolate(text, {"V": "set", "E": ""}, found) == expected
    assert found == unset


def test_compose_required_and_unset_variables_are_named(tmp_path):
    path = write(tmp_path, "compose.yaml", """\
        services:
          web:
            image: ${REGISTRY:?set the lab registry}/web:1
        """)
    message = refused(read_compose, path, environ={})
    assert message.startswith(f"{path}:3: compose service web: variable REGISTRY is required:"
                              " set the lab registry.")
    assert "Fix: set REGISTRY in the environment or in the .env file beside" in message
    assert read_compose(path, environ={"REGISTRY": "127.0.0.1:5000"}).images

    path = write(tmp_path, "compose.yaml", """\
        services:
          web:
            image: ${IMAGE}
        """)
    message = refused(read_compose, path, environ={})
    assert message.startswith(f"{path}:3: compose service web has image '${{IMAGE}}', which is"
                              " '' (unset: IMAGE), not a docker reference: it is empty.")
    assert "Fix: set IMAGE in the environment or in the .env file" in message

    path = write(tmp_path, "compose.yaml", """\
        services:
          web:
            image: $REGISTRY/web:$TAG
        """)
    message = refused(read_compose, path, environ={"REGISTRY": "127.0.0.1:5000"})
    assert message.startswith(f"{path}:3: compose service web has image '$REGISTRY/web:$TAG',"
                              " which is '127.0.0.1:5000/web:' (unset: TAG), not a docker"
                              " reference: the tag after ':' is empty.")

    path = write(tmp_path, "compose.yaml", "services:\n  web:\n    image: a/$-b\n")
    message = refused(read_compose, path, environ={})
    assert f"{path}:3: compose service web:" in message and "write `$$` for a `$`" in message


def test_compose_bad_input(tmp_path):
    path = write(tmp_path, "compose.yaml", "version: '3'\nvolumes: {}\n")
    message = refused(read_compose, path, environ={})
    assert message.startswith(f"{path}: a compose file needs `services:`")

    path = write(tmp_path, "compose.yaml", "services:\n  web: {build: .}\n")
    message = refused(read_compose, path, environ={})
    assert message.startswith(f"{path}: found no images in {path} (its services all have"
                              " `build:` and no `image:`).")

    path = write(tmp_path, "compose.yaml", "services:\n  web:\n    ports: ['80:80']\n")
    assert refused(read_compose, path, environ={}).startswith(
        f"{path}:2: compose service web has no image. Fix: add `image: ")

    path = write(tmp_path, "compose.yaml", "services:\n  web:\n    image: [a, b]\n")
    assert refused(read_compose, path, environ={}).startswith(
        f"{path}:3: compose service web has image [a, b], which is not a string.")

    path = write(tmp_path, "compose.yaml", "services:\n  web:\n    image: 127.0.0.1:5000/Web\n")
    message = refused(read_compose, path, environ={})
    assert f"{path}:3:" in message and "the repository must be lowercase" in message

    message = refused(read_compose, str(tmp_path / "missing.yaml"), environ={})
    assert message == f"{tmp_path / 'missing.yaml'}: no such file. Fix: check the path."


# -- bad manifests ---------------------------------------------------------------------------

POD = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n"


@pytest.mark.parametrize("container, line, problem, fix", [
    ("", 5, "Pod/p (container c) has no image.", "add `image: REGISTRY/REPOSITORY:TAG`"),
    ("    image: null\n", 5, "Pod/p (container c) has no image.", "add `image:"),
    ("    image: 5\n", 6, "Pod/p (container c) has image 5, which is not a string.",
     "write the image as"),
    ("    image: 127.0.0.1:5000/App:1\n", 6, "Pod/p (container c) has image"
     " '127.0.0.1:5000/App:1', which is not a docker reference: the repository must be"
     " lowercase.", "write it as REGISTRY/REPOSITORY:TAG"),
    ("    image: http://127.0.0.1:5000/app\n", 6, "not a docker reference: a URL", "write it"),
    ('    image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"\n', 6,
     "unrendered Helm template", "helm template"),
    ("    image: {{ .Values.image }}\n", 6, "has image {{ .Values.image }}, this is an"
     " unrendered Helm template", "render the chart with `helm template`"),
])
def test_a_bad_container_names_file_line_and_fix(tmp_path, container, line, problem, fix):
    path = write(tmp_path, "pod.yaml", POD + container)
    message = refused(read_manifests, path)
    assert message.startswith(f"{path}:{line}: ")
    assert problem in message
    assert fix in message.partition("Fix: ")[2]


def test_bad_manifest_files(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    assert refused(read_manifests, missing) == f"{missing}: no such file. Fix: check the path."

    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    (empty / "docs" / "notes.txt").write_text("kind: Pod\n")
    message = refused(read_manifests, str(empty))
    assert message.startswith(f"{empty}: a directory with no .yaml, .yml or .json file")

    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"kind: Pod\nmetadata: {name: caf\xe9}\n")
    message = refused(read_manifests, str(path))
    assert message.startswith(f"{path}:2: not UTF-8 text (byte 0xe9). Fix: save it as UTF-8")

    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(21 << 20)
    assert refused(read_manifests, str(big)).startswith(f"{big}: it is over the 20 MB")

    path = write(tmp_path, "syntax.yaml", "kind: Pod\nspec:\n  containers: [a, b\n  x: y\n")
    message = refused(read_manifests, path)
    assert message.startswith(f"{path}:4: not valid YAML: ")
    assert "Fix: fix the YAML syntax" in message

    path = write(tmp_path, "chart.yaml", """\
        kind: Deployment
        metadata:
          name: {{ include "x.fullname" . }}
          labels:
            {{- include "x.labels" . | nindent 4 }}
        """)
    message = refused(read_manifests, path)
    assert f"{path}:5: not valid YAML" in message and "helm template RELEASE CHART" in message

    path = write(tmp_path, "containers.yaml", "kind: Pod\nmetadata: {name: p}\nspec:\n"
                 "  containers: {name: c, image: nginx}\n")
    message = refused(read_manifests, path)
    assert message.startswith(f"{path}:4: Pod/p: containers is not a list.")

    path = write(tmp_path, "service.yaml", "kind: Service\nmetadata: {name: s}\n---\n")
    message = refused(read_manifests, path)
    assert message.startswith(f"{path}: found no images in {path}: no Pod, Deployment")
    assert "helm template" in message

    message = refused(read_manifests, "-", stdin=io.StringIO(""))
    assert message.startswith("-: found no images in standard input")

    pipe = io.TextIOWrapper(io.BytesIO(b"kind: Pod\n\xff\n"))
    assert refused(read_manifests, "-", stdin=pipe).startswith("-:2: not UTF-8 text")


def test_merge_joins_the_uses_of_one_image():
    manifests = read_manifests(str(HERE / "helm.yaml"))
    compose = read_compose(str(HERE / "compose" / "compose.yaml"), environ={"TAG": "1.0"})
    merged = merge(manifests, compose)
    assert [str(u) for u in merged.images["127.0.0.1:5000/shop/web:1.0"]] == [
        "Deployment/release-shop (container shop)", "compose service web"]
    assert len(merged.images) == 5
    assert merged.templates == manifests.templates
    assert merged.unbuilt == compose.unbuilt
    assert merged.sources == manifests.sources + compose.sources


def test_use_as_a_user_reads_it():
    assert str(Use("CronJob", "report", "migrate", "initContainers", "f", 1)) == (
        "CronJob/report (init container migrate)")
    assert str(Use("compose", "web", "", "service", "f", 1)) == "compose service web"


def test_compose_extends_takes_the_image_and_platform_it_does_not_set_itself(tmp_path):
    """`extends:` (of the same file's service, or of another file's) gives a service what it
    does not set; the image is located where it is written."""
    base = write(tmp_path, "base.yaml", """\
        services:
          web:
            image: 127.0.0.1:5000/shop/web:1
            platform: linux/amd64
        """)
    path = write(tmp_path, "compose.yaml", """\
        services:
          web:
            extends: {file: base.yaml, service: web}
          api:
            extends: web
            platform: linux/arm64
        """)
    workload = read_compose(path, environ={})
    [uses] = workload.images.values()
    assert [(u.name, u.file, u.line, u.platform) for u in uses] == [
        ("web", base, 3, "linux/amd64"), ("api", base, 3, "linux/arm64")]
    assert base in workload.sources


def test_compose_extends_that_loops_or_names_nothing_is_bad_input(tmp_path):
    path = write(tmp_path, "compose.yaml", """\
        services:
          a:
            extends: b
          b:
            extends: a
        """)
    assert refused(read_compose, path, environ={}).startswith(
        f"{path}:3: compose service a extends b, which extends it back")
    path = write(tmp_path, "compose.yaml", "services:\n  a:\n    extends: {service: nope}\n")
    assert refused(read_compose, path, environ={}).startswith(
        f"{path}:3: compose service a extends nope, which {path} does not define")


def test_what_runs_in_place_of_the_entrypoint_is_kept_with_each_use(tmp_path):
    path = write(tmp_path, "pod.yaml", """\
        kind: Pod
        metadata: {name: p}
        spec:
          containers:
            - {name: a, image: 127.0.0.1:5000/x:1, command: [/opt/tool, --serve], args: [-v]}
            - {name: b, image: 127.0.0.1:5000/x:1}
        """)
    [uses] = read_manifests(path).images.values()
    assert [u.command for u in uses] == [("/opt/tool", "--serve"), ()]
    path = write(tmp_path, "compose.yaml", """\
        services:
          a: {image: 127.0.0.1:5000/x:1, entrypoint: "/opt/tool --name 'a b'"}
          b: {image: 127.0.0.1:5000/x:1, entrypoint: [/bin/sh, -c]}
        """)
    [uses] = read_compose(path, environ={}).images.values()
    assert [u.command for u in uses] == [("/opt/tool", "--name", "a b"), ("/bin/sh", "-c")]
    path = write(tmp_path, "compose.yaml", """\
        services:
          a: {image: 127.0.0.1:5000/x:1, entrypoint: "/opt/tool 'open"}
        """)
    assert refused(read_compose, path, environ={}).startswith(
        f"{path}:2: compose service a has entrypoint \"/opt/tool 'open\", which cannot be"
        " split")
