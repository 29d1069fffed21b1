"""ray_cluster.yaml: valid for the Ray this project uses (the functions `ray up` runs before it
calls the cloud), consistent with itself, and secure: no port open to the internet, no service
bound to every interface, no credential in the repository. No cloud calls."""

from __future__ import annotations

import ast
import copy
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from tests.cluster.conftest import REPO

CLUSTER_YAML = REPO / "ray_cluster.yaml"
CLUSTER_DOC = REPO / "README.md"  # its "Run on a cluster" section
COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")
# Ray's head ports (GCS, object manager, dashboard, client, dashboard agent, metrics) and MLflow's.
SERVICE_PORTS = {6379, 8076, 8265, 10001, 52365, 8080, 5000}


def raw_config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def prepared(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` makes of the file before the provider's first cloud call
    (commands.py `_bootstrap_config`: prepare_config, then validate_config)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(config))
    validate_config(config)
    return config


def commands(config: dict[str, Any]) -> list[str]:
    found = [c for key in COMMAND_KEYS for c in config.get(key) or []]
    for node_type in config.get("available_node_types", {}).values():
        found += [c for key in COMMAND_KEYS for c in node_type.get(key) or []]
    return found


def invocations(command: str, program: tuple[str, ...]) -> Iterator[list[str]]:
    """The arguments of every ``program`` (e.g. ("ray", "start")) run by a shell command."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    for i in range(len(tokens) - len(program) + 1):
        if tuple(tokens[i:i + len(program)]) == program:
            args = []
            for token in tokens[i + len(program):]:
                if token and set(token) <= set(";&|()<>"):
                    break
                args.append(token)
            yield args


def flag_names(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("-") and not a.lstrip("-").isdigit()]


def shell_exports(config: dict[str, Any]) -> dict[str, str]:
    """The ``export NAME=value`` lines that the setup commands write for every later command."""
    return dict(re.findall(r"export (\w+)=([^'\s]+)", " ".join(commands(config))))


# --- Ray's own preparation and validation, pinned to the installed Ray ------------------------------


def test_the_yaml_is_written_for_the_installed_ray():
    config = raw_config()
    assert config["metadata"]["clphase"]["ray_version"] == ray.__version__
    pins = re.findall(r"ray\[[\w,]*\]==([\w.]+)", " ".join(commands(config)))
    assert pins and set(pins) == {ray.__version__}, pins


def test_ray_up_prepares_and_validates_it():
    config = prepared(raw_config())
    from ray.autoscaler._private.providers import _NODE_PROVIDERS

    assert config["provider"]["type"] in _NODE_PROVIDERS
    node_types = config["available_node_types"]
    head = node_types[config["head_node_type"]]
    assert head["max_workers"] == 0 and head["resources"].get("GPU", 0) == 0  # a CPU head
    workers = [t for name, t in node_types.items() if name != config["head_node_type"]]
    assert len(workers) == 1
    (gpu,) = workers
    assert gpu["resources"]["GPU"] >= 1
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= config["max_workers"]  # autoscales from 0


def test_the_ami_and_the_synced_repository_exist():
    config = prepared(raw_config())
    # `ImageId: latest_dlami` means Ray's default AMI for the region (aws/config.py `_check_ami`).
    source = Path(ray.__file__).parent / "autoscaler" / "_private" / "aws" / "config.py"
    tree = ast.parse(source.read_text())
    (default_ami,) = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                      and any(getattr(t, "id", None) == "DEFAULT_AMI" for t in n.targets)]
    for node_type in config["available_node_types"].values():
        if node_type["node_config"].get("ImageId") == "latest_dlami":
            assert config["provider"]["region"] in default_ami
    # file_mounts: remote -> local, local paths relative to where `ray up` runs (the repository root).
    mounts = config["file_mounts"]
    assert Path(REPO, mounts["~/clphase"]).resolve() == REPO
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"  # Ray's token, from the laptop, never the repo
    assert ".gitignore" in config["rsync_filter"]  # .venv, runs/, mlflow.db stay behind


def test_every_flag_of_ray_start_and_mlflow_server_exists():
    """A mistyped flag would only fail on the cloud; check them against the installed CLIs."""
    import mlflow.cli
    from ray.scripts.scripts import start

    def options(command: Any) -> set[str]:
        return {o for p in command.params for o in [*p.opts, *p.secondary_opts]}

    config = prepared(raw_config())
    seen = {"ray start": 0, "mlflow server": 0}
    for command in commands(config):
        for program, click_command in ((("ray", "start"), start), (("mlflow", "server"), mlflow.cli.server)):
            for args in invocations(command, program):
                seen[" ".join(program)] += 1
                unknown = set(flag_names(args)) - options(click_command)
                assert not unknown, f"{' '.join(program)} has no {sorted(unknown)}: {command}"
    assert seen == {"ray start": 2, "mlflow server": 1}


def test_the_head_runs_mlflow_on_the_shared_storage_and_every_node_uses_token_auth():
    config = prepared(raw_config())
    env = shell_exports(config)
    shared = config["metadata"]["clphase"]["shared_mount"]
    assert env["CLPHASE_SHARED"] == shared
    assert env["RAY_AUTH_MODE"] == "token"
    (server,) = [a for c in config["head_start_ray_commands"] for a in invocations(c, ("mlflow", "server"))]
    value = {flag: server[i + 1] for i, flag in enumerate(server[:-1]) if flag.startswith("--")}
    assert value["--backend-store-uri"] == "sqlite:///$CLPHASE_SHARED/mlflow/mlflow.db"
    assert value["--artifacts-destination"].startswith("$CLPHASE_SHARED/")
    assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{value['--port']}"
    # clphase is installed after torch (pip's default Linux wheel is the CUDA build), from the synced repo.
    setup = config["worker_setup_commands"]
    torch_at = next(i for i, c in enumerate(setup) if re.search(r"pip install( -q)? torch\b", c))
    clphase_at = next(i for i, c in enumerate(setup) if "pip install -q -e ~/clphase" in c)
    assert torch_at < clphase_at


# --- security ---------------------------------------------------------------------------------------

_ANYWHERE = {"0.0.0.0/0", "::/0"}
_BIND_ALL = re.compile(r"(?:^|\s)(?:--?[\w-]*(?:host|bind|address)[\w-]*)[= ]+['\"]?(?:0\.0\.0\.0|::|\[::\])(?![\d.])")
_CREDENTIALS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    "AWS secret key": re.compile(r"(?i)aws_?secret_?access_?key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{40}"),
    "AWS session token": re.compile(r"(?i)aws_?session_?token\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{20,}"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|\"private_key\"\s*:"),
    "Ray auth token": re.compile(r"RAY_AUTH_TOKEN\s*[:=]\s*['\"]?[0-9a-fA-F]{16,}"),
    "GitHub token": re.compile(r"\b(?:ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,}"),
    "password": re.compile(r"(?i)\b(?:password|passwd)\s*[:=]\s*['\"]?(?!\$)[^\s'\"]{4,}"),
}


def _ip_permissions(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "IpPermissions":
                yield from value
            else:
                yield from _ip_permissions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _ip_permissions(value)


def _ports(rule: dict[str, Any]) -> set[int] | None:
    """The ports a rule opens (None: every port)."""
    if str(rule.get("IpProtocol")) == "-1" or rule.get("FromPort", -1) == -1:
        return None
    return set(range(int(rule["FromPort"]), int(rule.get("ToPort", rule["FromPort"])) + 1))


def security_findings(config: dict[str, Any], text: str) -> list[str]:
    """Everything that would expose the cluster or leak a secret; empty when the file is clean."""
    findings = []
    for rule in _ip_permissions(config):
        cidrs = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [
            r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
        ports = _ports(rule)
        for cidr in filter(None, cidrs):
            if cidr in _ANYWHERE:
                findings.append(f"security group rule opens {sorted(ports) if ports else 'every port'} to {cidr}")
            elif ports is None or ports & SERVICE_PORTS:
                findings.append(f"security group rule opens Ray/MLflow ports to {cidr} (use port forwarding)")
    if config.get("provider", {}).get("type") == "aws":
        for name, node_type in config.get("available_node_types", {}).items():
            if "SecurityGroupIds" not in node_type.get("node_config", {}):
                findings.append(f"{name}: no SecurityGroupIds, so Ray creates a group with SSH open to 0.0.0.0/0")
    for command in commands(config):
        if _BIND_ALL.search(command) or "0.0.0.0" in command:
            findings.append(f"a command binds every interface: {command}")
        for args in invocations(command, ("ray", "start")):
            if "--head" in args and not any(re.fullmatch(r"--dashboard-host=(127\.0\.0\.1|localhost)", a)
                                            for a in args):
                findings.append(f"ray start --head without --dashboard-host=127.0.0.1: {command}")
        for program in (("mlflow", "server"), ("mlflow", "ui")):
            for args in invocations(command, program):
                if not any(h in args for h in ("--host", "-h")) or args[args.index(
                        "--host" if "--host" in args else "-h") + 1] not in ("127.0.0.1", "localhost"):
                    findings.append(f"{' '.join(program)} without --host 127.0.0.1: {command}")
    for what, pattern in _CREDENTIALS.items():
        for match in pattern.finditer(text):
            findings.append(f"looks like a {what}: {match.group(0)[:12]}...")
    return findings


def test_the_cluster_yaml_exposes_nothing_and_holds_no_secret():
    text = CLUSTER_YAML.read_text()
    assert security_findings(raw_config(), text) == []
    assert security_findings(prepared(raw_config()), text) == []  # Ray's defaults merged in


def test_the_cluster_doc_holds_no_secret():
    assert security_findings({}, CLUSTER_DOC.read_text()) == []


def _head_start(config: dict[str, Any], old: str, new: str) -> None:
    config["head_start_ray_commands"] = [c.replace(old, new) for c in config["head_start_ray_commands"]]


def _open_rule(cidr_key: str, cidr: str, port: int) -> dict[str, Any]:
    ranges = "Ipv6Ranges" if cidr_key == "CidrIpv6" else "IpRanges"
    return {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, ranges: [{cidr_key: cidr}]}


_BAD = {
    "ssh to the world": lambda c: c["provider"].update(security_group={"IpPermissions": [
        _open_rule("CidrIp", "0.0.0.0/0", 22)]}),
    "ipv6 world": lambda c: c["provider"].update(security_group={"IpPermissions": [
        _open_rule("CidrIpv6", "::/0", 443)]}),
    "dashboard to a cidr": lambda c: c["provider"].update(security_group={"IpPermissions": [
        _open_rule("CidrIp", "203.0.113.0/24", 8265)]}),
    "client port to a cidr": lambda c: c["provider"].update(security_group={"IpPermissions": [
        _open_rule("CidrIp", "203.0.113.7/32", 10001)]}),
    "ray's default group": lambda c: c["available_node_types"]["worker.gpu"]["node_config"].pop("SecurityGroupIds"),
    "dashboard on every interface": lambda c: _head_start(c, "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"),
    "dashboard host left out": lambda c: _head_start(c, "--dashboard-host=127.0.0.1", ""),
    "mlflow on every interface": lambda c: _head_start(c, "--host 127.0.0.1", "--host 0.0.0.0"),
    "mlflow ipv6 any": lambda c: _head_start(c, "--host 127.0.0.1", "--host ::"),
    "mlflow host left out": lambda c: _head_start(c, "--host 127.0.0.1", ""),
}
_LEAKS = {
    "aws key id": "AKIA" + "IOSFODNN7EXAMPLE",
    "aws secret": "aws_secret_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ray token": "export RAY_AUTH_TOKEN=" + "3f" * 32,
    "private key": "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
}


@pytest.mark.parametrize("mistake", sorted(_BAD))
def test_the_security_check_catches_an_exposed_service(mistake):
    config = raw_config()
    _BAD[mistake](config)
    assert security_findings(config, "") != []


@pytest.mark.parametrize("leak", sorted(_LEAKS))
def test_the_security_check_catches_a_credential(leak):
    assert security_findings({}, CLUSTER_YAML.read_text() + "\n# " + _LEAKS[leak] + "\n") != []
