"""deploy/ against the code: settings names and defaults, commands, routes, probes, shutdown timing.

No Docker engine or cluster is involved: the files are parsed and checked against
`slackbot.config.Settings`, `slackbot.cli`, the routes `slackbot.app` serves and pyproject.toml.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import secrets
import shlex
import tomllib
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
import yaml
from pydantic import TypeAdapter

from conftest import bot_settings, eventually, free_port
from slackbot.app import build_bolt, build_services, build_web, run_worker
from slackbot.cli import main as cli_main
from slackbot.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SECRET_NAMES = {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GEMINI_API_KEY", "REDIS_URL",
                "SLACK_CLIENT_SECRET", "DATABASE_URL"}
# The web process's research worker stops within this after the grace (app.serve: wait(..., timeout=5)).
WORKER_STOP_SECONDS = 5


# --- what the code defines -------------------------------------------------------------------------
def _settings_env() -> dict[str, str]:
    """Environment variable name -> Settings field name, for every field."""
    names = {}
    for field, info in Settings.model_fields.items():
        choices = info.validation_alias.choices
        assert len(choices) == 1, f"{field} has several environment names {choices}"
        names[str(choices[0])] = field
    return names


ENV = _settings_env()
DEFAULT_GRACE = Settings.model_fields["shutdown_grace_seconds"].default
DEFAULT_PORT = Settings.model_fields["port"].default


def _same_as_default(name: str, text: str) -> bool:
    """Does this environment string parse (as pydantic would) to the field's default?"""
    info = Settings.model_fields[ENV[name]]
    return TypeAdapter(info.annotation).validate_python(text) == info.default


@pytest.fixture(scope="module")
def routes(redis_url) -> dict[str, set[str]]:
    """GET paths served by `slackbot serve` (from the real web app) and by `slackbot worker` (asked over HTTP)."""
    settings = bot_settings(redis_url="redis://127.0.0.1:9/0", prefix="deploy-test",
                            slack_emu=SimpleNamespace(api_url="http://127.0.0.1:9/api/"),
                            gemini_emu=SimpleNamespace(base_url="http://127.0.0.1:9"), port=9)
    services = asyncio.run(build_services(settings))
    web_app = build_web(services, build_bolt(services))
    serve_paths = {r.resource.canonical for r in web_app.router.routes() if r.method == "GET"}
    asyncio.run(services.close())
    worker = settings.model_copy(update={"redis_url": redis_url, "port": free_port(),
                                         "redis_prefix": f"slackbot-test-{secrets.token_hex(4)}"})
    worker_paths = asyncio.run(_worker_answers(worker, serve_paths))
    assert {"/healthz", "/readyz"} <= serve_paths and worker_paths, (serve_paths, worker_paths)
    return {"serve": serve_paths, "worker": worker_paths}


async def _worker_answers(settings: Settings, paths: set[str]) -> set[str]:
    """Which of these GET paths a running `slackbot worker` (app.run_worker) serves; it has no Slack endpoint."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop=stop))
    url = f"http://127.0.0.1:{settings.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def alive():  # not ready: no Slack answers auth.test here, and the routes are served anyway
                try:
                    async with http.get(f"{url}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False
            await eventually(alive, 30, interval=0.1, message="the worker's /healthz")
            async with http.post(f"{url}/slack/events", data="{}") as resp:
                assert resp.status == 404, "the worker takes no Slack events"
            served = set()
            for path in sorted(paths):
                async with http.get(f"{url}{path}") as resp:
                    if resp.status != 404:
                        served.add(path)
            return served
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _accepted_by_cli(subcommand: str) -> bool:
    """`slackbot <subcommand> --help` exits 0 only for a subcommand the CLI defines."""
    try:
        cli_main([subcommand, "--help"])
    except SystemExit as exc:
        return exc.code == 0
    return False


# --- the files ------------------------------------------------------------------------------------
def _yaml_docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


K8S_FILES = sorted(p for p in K8S.glob("*.y*ml"))


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    """(kind, name) -> resource, over every k8s file except kustomization.yaml."""
    out = {}
    for path in K8S_FILES:
        if path.name == "kustomization.yaml":
            continue
        for doc in _yaml_docs(path):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    """NAME -> value for every `NAME=value` or `# NAME=value` line."""
    entries: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if not m:
            continue
        name, value = m.group(1), m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        assert name not in entries, f".env.example lists {name} twice"
        entries[name] = value
    return entries


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def _exec_form(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def _seconds(duration) -> float:
    if isinstance(duration, (int, float)):
        return float(duration)
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(duration)):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def _deployment(k8s: dict, name: str) -> tuple[dict, dict]:
    deployment = k8s[("Deployment", name)]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


# --- YAML ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [COMPOSE, *K8S_FILES, *sorted((DEPLOY / "redis").glob("*.yml"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    docs = _yaml_docs(path)
    assert docs and all(isinstance(d, dict) for d in docs)


SECRET_EXAMPLE = "secret.example.yaml"
CLUSTER_SCOPED = {"Namespace"}


def _render_kustomization() -> list[dict]:
    """What `kubectl apply -k deploy/k8s` would send, for the fields used here: the listed resources
    with the kustomization's namespace set on namespaced ones and its image overrides applied."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources", "images"}, (
        "a kustomize feature this renderer does not model")
    images = {i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}" for i in kustomization.get("images", [])}
    rendered = []
    for name in kustomization["resources"]:
        for doc in _yaml_docs(K8S / name):
            if doc["kind"] not in CLUSTER_SCOPED and "namespace" in kustomization:
                doc["metadata"]["namespace"] = kustomization["namespace"]
            for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                container["image"] = images.get(container["image"].split(":")[0], container["image"])
            rendered.append(doc)
    return rendered


def test_kustomization_lists_every_k8s_file_but_the_secret_example():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S_FILES} - {"kustomization.yaml", SECRET_EXAMPLE}
    assert listed == present
    assert {"namespace.yaml", "serviceaccount.yaml", "configmap.yaml", "deployment-web.yaml",
            "deployment-worker.yaml", "service.yaml", "pdb.yaml"} <= present


def test_kustomization_applies_cleanly_on_the_first_try(k8s):
    """Issue 14.1: the namespace comes with it, no placeholder Secret overwrites a real one, and the
    pods run as a ServiceAccount an operator can bind for Workload Identity."""
    rendered = _render_kustomization()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    (namespace,) = [d["metadata"]["name"] for d in rendered if d["kind"] == "Namespace"]
    assert all(d["metadata"]["namespace"] == namespace for d in rendered if d["kind"] != "Namespace")
    assert not any(d["kind"] == "Secret" for d in rendered), "apply -k must never overwrite the real Secret"
    # the example Secret: the exact names the pods read, in the same namespace, placeholders only
    example = k8s[("Secret", "slackbot-secrets")]
    assert example["metadata"]["namespace"] == namespace
    assert set(example["stringData"]) == SECRET_NAMES
    assert all(v == "" or "REPLACE-ME" in v for v in example["stringData"].values())
    for doc in rendered:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert ("ServiceAccount", pod["serviceAccountName"]) in kinds, "Workload Identity needs a ServiceAccount"
        (container,) = pod["containers"]
        assert {"name": "slackbot-secrets"} in [r["secretRef"] for r in container["envFrom"] if "secretRef" in r]
        assert container["image"] == "slackbot:0.1.0"
    # the README's first command creates the namespace the Secret goes into
    readme = (DEPLOY / "README.md").read_text()
    steps = [readme.index(c) for c in ("kubectl apply -f deploy/k8s/namespace.yaml",
                                       f"kubectl -n {namespace} create secret generic slackbot-secrets",
                                       "kubectl apply -k deploy/k8s")]
    assert steps == sorted(steps), "namespace, then the Secret, then everything else"


def test_k8s_resources_carry_no_namespace_of_their_own(k8s):
    for (kind, name), doc in k8s.items():
        if kind in CLUSTER_SCOPED or (kind, name) == ("Secret", "slackbot-secrets"):
            continue
        assert "namespace" not in doc["metadata"], f"{kind}/{name}: the kustomization sets it"


# --- settings names and defaults ---------------------------------------------------------------------
def test_settings_have_one_environment_name_each():
    assert len(ENV) == len(Settings.model_fields)
    assert SECRET_NAMES <= set(ENV)


def test_configmap_and_secret_hold_exactly_the_settings(k8s):
    config = k8s[("ConfigMap", "slackbot-config")]["data"]
    secret = k8s[("Secret", "slackbot-secrets")]["stringData"]
    assert set(secret) == SECRET_NAMES
    assert not set(config) & set(secret), "a name in both the ConfigMap and the Secret"
    assert set(config) | set(secret) == set(ENV), (
        f"missing: {sorted(set(ENV) - set(config) - set(secret))}, unknown: {sorted(set(config) - set(ENV))}")
    assert all(isinstance(v, str) for v in [*config.values(), *secret.values()]), "env values must be strings"


def test_configmap_values_are_the_code_defaults(k8s):
    config = k8s[("ConfigMap", "slackbot-config")]["data"]
    wrong = {name: value for name, value in config.items() if not _same_as_default(name, value)}
    assert not wrong, f"ConfigMap values differ from Settings defaults: {wrong}"


def test_env_example_lists_every_setting_with_its_default():
    entries = _env_example()
    assert set(entries) == set(ENV), (
        f"missing: {sorted(set(ENV) - set(entries))}, unknown: {sorted(set(entries) - set(ENV))}")
    wrong = {n: v for n, v in entries.items() if n not in SECRET_NAMES and not _same_as_default(n, v)}
    assert not wrong, f".env.example values differ from Settings defaults: {wrong}"
    assert _same_as_default("REDIS_URL", entries["REDIS_URL"])
    # the secrets are live lines to fill in, each explained by a comment
    text = ENV_EXAMPLE.read_text()
    for name in SECRET_NAMES:
        assert re.search(rf"^{name}=", text, re.M), f"{name} should be an uncommented line to fill in"
        assert re.search(rf"^# Secret.*\n(#.*\n)*{name}=", text, re.M), f"{name} needs a comment marking it secret"


def test_compose_environment_is_settings_only(compose):
    for name in ("bot", "worker"):
        service = compose["services"][name]
        env_files = service["env_file"] if isinstance(service["env_file"], list) else [service["env_file"]]
        assert env_files == [".env"], "the services read deploy/.env (a copy of deploy/.env.example)"
        assert ENV_EXAMPLE.exists()
        environment = service.get("environment") or {}
        keys = set(environment) if isinstance(environment, dict) else {e.split("=", 1)[0] for e in environment}
        assert keys <= set(ENV), f"{name}: unknown settings {sorted(keys - set(ENV))}"
        assert environment["REDIS_URL"].startswith("redis://redis:"), "the compose Redis service"
    assert compose["services"]["bot"]["environment"]["SLACKBOT_RESEARCH_WORKER"] == "false"
    assert "SLACKBOT_RESEARCH_WORKER" not in (compose["services"]["worker"].get("environment") or {})


# --- compose -----------------------------------------------------------------------------------------
def test_compose_services(compose, routes):
    services = compose["services"]
    assert set(services) == {"bot", "worker", "redis"}
    assert services["bot"]["command"] == ["serve"] and services["worker"]["command"] == ["worker"]
    for name, kind in (("bot", "serve"), ("worker", "worker")):
        service = services[name]
        assert _accepted_by_cli(service["command"][0])
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        check = " ".join(service["healthcheck"]["test"])
        paths = set(re.findall(r"/(?:healthz|readyz)\b", check))
        assert paths and paths <= routes[kind], f"{name} healthcheck asks {paths}"
        assert _seconds(service["stop_grace_period"]) >= DEFAULT_GRACE + WORKER_STOP_SECONDS + 5, (
            f"{name}: stop_grace_period must exceed SLACKBOT_SHUTDOWN_GRACE_SECONDS ({DEFAULT_GRACE}) plus margin")
    # one build (bot's), one image tag both run
    build = services["bot"]["build"]
    assert build["context"] == ".." and build["dockerfile"] == "deploy/Dockerfile"
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert "build" not in services["worker"] and services["worker"]["image"] == services["bot"]["image"]
    # the published port follows PORT (Compose interpolates ${PORT:-3000} from deploy/.env or the shell)
    (published,) = services["bot"]["ports"]
    assert published == "${PORT:-3000}:${PORT:-3000}" and not services["worker"].get("ports")
    assert f"${{PORT:-{DEFAULT_PORT}}}" in published
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"] if isinstance(redis["command"], str) else " ".join(redis["command"])
    assert "--appendonly yes" in command
    volume = redis["volumes"][0].split(":")
    assert volume[1] == "/data" and volume[0] in compose["volumes"]
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])


# --- Dockerfile --------------------------------------------------------------------------------------
def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _dockerfile():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, args))
    return stages


def test_dockerfile_base_user_and_layers():
    build, final = _stages()
    assert build[0] == ("FROM", "python:3.11-slim-bookworm AS build")
    assert final[0] == ("FROM", "python:3.11-slim-bookworm"), "the same Python the virtualenv was built with"
    assert "digest" in DOCKERFILE.read_text() and "@sha256:" in DOCKERFILE.read_text(), "mention digest pinning"
    (user,) = [a for k, a in final if k == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    # build stage: dependencies first (pyproject + lock only), then the source, then the package
    copies = [a.split() for k, a in build if k == "COPY"]
    assert copies[0] == ["pyproject.toml", "uv.lock", "./"]
    runs = [(i, a) for i, (k, a) in enumerate(build) if k == "RUN"]
    first_copy_src = next(i for i, (k, a) in enumerate(build) if k == "COPY" and a.split()[0] == "src")
    assert any(i < first_copy_src and "uv sync --locked" in a and "--no-install-project" in a for i, a in runs)
    assert any(i > first_copy_src and "uv sync --locked" in a and "--no-editable" in a for i, a in runs)
    assert re.search(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+", DOCKERFILE.read_text()), "uv itself pinned"
    # final stage: only the virtualenv is carried over; installs as root, runs as the user
    assert [a for k, a in final if k == "COPY"] == ["--from=build /venv /venv"]
    keywords = [k for k, _ in final]
    assert keywords.index("USER") > max(i for i, (k, _) in enumerate(final) if k in ("RUN", "COPY"))
    assert ("STOPSIGNAL", "SIGTERM") in final


def test_the_image_carries_neither_the_emulators_nor_the_sandbox_nor_the_bench():
    """Issue 17.4: the development kit is a package of its own (devkit/); the image builds the slackbot
    package alone from src/, which holds none of it, and the build context leaves devkit/ out."""
    from setuptools import find_packages

    shipped = find_packages(str(ROOT / "src"))
    assert "slackbot" in shipped and not [p for p in shipped if p.split(".")[-1] in ("emulators", "sandbox", "bench")]
    copied = {src for args in (a for i, a in _dockerfile() if i == "COPY" and "--from=" not in a)
              for src in args.split()[:-1]}
    assert copied <= {"pyproject.toml", "uv.lock", "README.md", "src"}, copied
    assert "devkit" in (ROOT / ".dockerignore").read_text().split()
    devkit = find_packages(str(ROOT / "devkit" / "src"))
    assert {"slackbot_emulators", "slackbot_sandbox", "slackbot_bench"} <= set(devkit)


def test_image_installs_the_lock_without_the_extras():
    """Issue 14.2: every dependency pinned by uv.lock, which matches pyproject.toml; the image
    installs the base set only (no sandbox, bench or test extras)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    root = packages["slackbot"]
    # the lock was made from this pyproject.toml (uv sync --locked would refuse a stale one)
    locked_requires = {(r["name"], r.get("specifier", ""), tuple(r.get("extras", [])), r.get("marker"))
                       for r in root["metadata"]["requires-dist"]}

    def norm(requirement: str, extra: str | None = None):
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?\s*([^;]*)", requirement)
        specifier = ",".join(sorted(p.strip() for p in m.group(3).split(",") if p.strip()))
        return (m.group(1).lower(), specifier, tuple(e.strip() for e in (m.group(2) or "").split(",") if e),
                f"extra == '{extra}'" if extra else None)
    declared = {norm(r) for r in pyproject["dependencies"]}
    declared |= {norm(r, extra) for extra, reqs in pyproject["optional-dependencies"].items() for r in reqs}
    locked = {(n, ",".join(sorted(s.split(","))) if s else "", e, m) for n, s, e, m in locked_requires}
    assert locked == declared, "uv.lock is stale: run `uv lock`"
    assert set(root["metadata"]["provides-extras"]) >= {"test"}
    # what the image gets: the closure of the base dependencies, every one pinned with hashes
    closure, todo = set(), [d["name"] for d in root["dependencies"]]
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        todo += [d["name"] for d in packages[name].get("dependencies", [])]
        for extra in [d for d in root["dependencies"] if d["name"] == name]:
            for e in extra.get("extra", []):
                todo += [d["name"] for d in packages[name].get("optional-dependencies", {}).get(e, [])]
        assert packages[name]["version"] and (packages[name].get("wheels") or packages[name].get("sdist")), name
        assert all("hash" in w for w in packages[name].get("wheels", [])), name
    assert {"slack-bolt", "google-genai", "redis", "aiohttp"} <= closure
    assert not closure & {"fakeredis", "psutil", "pytest", "playwright"}, "extras leaked into the image"
    for _, args in _dockerfile():
        assert "--extra" not in args and "--all-extras" not in args


def test_dockerfile_copies_exist_and_are_not_ignored():
    ignored = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
               if p.strip() and not p.startswith("#")]
    for keyword, args in _dockerfile():
        if keyword != "COPY" or args.startswith("--from="):  # from a build stage, not the context
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
            assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"{source} is .dockerignored"
    for needed in (".git", ".venv", ".env"):
        assert needed in ignored, f".dockerignore should exclude {needed}"


def test_dockerfile_commands_exist():
    instructions = dict(_dockerfile())
    entrypoint = _exec_form(instructions["ENTRYPOINT"])
    cmd = _exec_form(instructions["CMD"])
    assert entrypoint == ["slackbot"] and cmd == ["serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[entrypoint[0]] == "slackbot.cli:main", "ENTRYPOINT is the project's console script"
    for subcommand in (*cmd, "worker"):
        assert _accepted_by_cli(subcommand), f"`slackbot {subcommand}` is not a CLI subcommand"
    assert not _accepted_by_cli("no-such-command"), "the CLI check itself must be able to fail"


def test_dockerfile_port_and_healthcheck(routes):
    instructions = dict(_dockerfile())
    assert instructions["EXPOSE"] == str(DEFAULT_PORT)
    healthcheck = instructions["HEALTHCHECK"]
    assert "urllib.request" in healthcheck and "curl" not in healthcheck
    (path,) = re.findall(r"https?://[^/]+(/\w+)", healthcheck)
    assert path == "/healthz" and path in routes["serve"] and path in routes["worker"]


# --- Kubernetes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,subcommand", [("slackbot-web", "serve"), ("slackbot-worker", "worker")])
def test_deployments(k8s, routes, name, subcommand):
    deployment, container = _deployment(k8s, name)
    pod = deployment["spec"]["template"]["spec"]
    assert container["args"] == [subcommand] and _accepted_by_cli(subcommand)
    # configuration
    refs = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
    assert refs == {"configMapRef": "slackbot-config", "secretRef": "slackbot-secrets"}
    for item in container.get("env") or []:
        assert item["name"] in ENV
    # port and probes
    config = k8s[("ConfigMap", "slackbot-config")]["data"]
    (port,) = container["ports"]
    assert port["containerPort"] == int(config["PORT"]) == DEFAULT_PORT
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in routes[subcommand]
        assert get["port"] in (port["name"], port["containerPort"])
    # shutdown: the orchestrator must not kill answers the app still lets finish
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_seconds = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
    assert pod["terminationGracePeriodSeconds"] > pre_stop_seconds + DEFAULT_GRACE + WORKER_STOP_SECONDS
    assert float(config["SLACKBOT_SHUTDOWN_GRACE_SECONDS"]) == DEFAULT_GRACE
    # resources and security
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    dockerfile_uid = dict(_dockerfile())["USER"].split(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == dockerfile_uid
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod.get("enableServiceLinks") is False
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_web_runs_without_the_in_process_worker(k8s):
    _, web = _deployment(k8s, "slackbot-web")
    _, worker = _deployment(k8s, "slackbot-worker")
    assert {"name": "SLACKBOT_RESEARCH_WORKER", "value": "false"} in web["env"]
    assert "SLACKBOT_RESEARCH_WORKER" not in {e["name"] for e in worker.get("env") or []}


def test_service_and_pdb_select_the_web_pods(k8s):
    web, container = _deployment(k8s, "slackbot-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    service = k8s[("Service", "slackbot-web")]
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in (container["ports"][0]["name"], container["ports"][0]["containerPort"])
    pdb = k8s[("PodDisruptionBudget", "slackbot-web")]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert web["spec"]["replicas"] >= 2, "with minAvailable 1, a single replica would block node drains"
    _, worker_container = _deployment(k8s, "slackbot-worker")
    worker_labels = k8s[("Deployment", "slackbot-worker")]["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker_labels.items(), "the Service must not reach workers"


def test_readme_states_what_was_not_run():
    text = (DEPLOY / "README.md").read_text()
    assert "Not run here" in text
    for needle in ("docker compose", "kubectl apply -k", "SLACKBOT_SHUTDOWN_GRACE_SECONDS", "503", "lease"):
        assert needle in text
