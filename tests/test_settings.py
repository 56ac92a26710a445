"""The configuration file, the environment and the options, read one way for
every section: which wins, how variables are named, what is refused."""
from __future__ import annotations

from pathlib import Path

import pytest

from hypervisor.policy import LibvirtSettings
from metadata_content.errors import BadInput
from metadata_content.server.config import AgentConfig, ApiConfig, load_agent_config, load_config
from metadata_content.settings import ConfigError, load
from tests.conftest import ROOT


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "configdrive.toml"
    path.write_text(text)
    return path


def test_defaults_then_file_then_environment_then_options(tmp_path: Path) -> None:
    conf = _file(tmp_path, '[store]\nurl = "sqlite:////tmp/x.db"\n[api]\nworkers = 3\nthreads = 5\n'
                           '[agent]\ntimeout = 2.5\nsocket_mode = "0600"\n[vendordata]\ndynamic_timeout = 1\n'
                           '[libvirt]\nforce_config_drive = true\n')
    env = {"CONFIGDRIVE_API_THREADS": "7", "CONFIGDRIVE_API_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.0/8",
           "CONFIGDRIVE_AGENT_SOCKET_MODE": "0640", "CONFIGDRIVE_DATA": "/srv/data"}
    api = load_config(conf, env, bind="127.0.0.1:1", threads=None)
    assert (api.workers, api.threads, api.bind, api.admin_bind) == (3, 7, "127.0.0.1:1", "127.0.0.1:8776")
    assert api.trusted_proxies == ["10.0.0.1", "10.0.0.0/8"] and api.vendordata_dynamic_timeout == 1.0
    assert (api.store_url, api.data_dir) == ("sqlite:////tmp/x.db", "/srv/data")
    agent = load_agent_config(conf, env, workers=2)
    assert (agent.timeout, agent.socket_mode, agent.workers, agent.threads) == (2.5, 0o640, 2, 4)
    assert agent.store_url == api.store_url
    assert load_config(None, {"CONFIGDRIVE_CONFIG": str(conf)}).workers == 3
    assert load_config(None, {"CONFIGDRIVE_DATA": "/a", "CONFIGDRIVE_STORE_DATA_DIR": "/b"}).data_dir == "/b"
    assert AgentConfig.from_json(agent.to_json()) == agent and ApiConfig.from_json(api.to_json()) == api


@pytest.mark.parametrize(("text", "env", "message"), [
    ("[api]\nworker = 2\n", {}, "unknown key 'worker' in [api]"),
    ("[agnet]\nworkers = 2\n", {}, "unknown section [agnet]"),
    ("workers = 2\n", {}, "top-level key 'workers' must be a [section]"),
    ("[api]\nworkers = 0\n", {}, "[api] workers: 0 is out of range (must be at least 1)"),
    ("[api]\nworkers = 'many'\n", {}, "[api] workers: 'many' is not a whole number"),
    ("", {"CONFIGDRIVE_API_CACHE_TTL": "soon"}, "CONFIGDRIVE_API_CACHE_TTL: 'soon' is not a number"),
    ("", {"CONFIGDRIVE_VENDORDATA_DYNAMIC_FAILURE_FATAL": "maybe"}, "is not true or false"),
    ("[api\n", {}, "configdrive.toml: "),
    ("[api]\ncache_ttl = nan\n", {}, "[api] cache_ttl: nan is not a number"),
    ("", {"CONFIGDRIVE_API_CACHE_TTL": "inf"}, "CONFIGDRIVE_API_CACHE_TTL: inf is not a number"),
])
def test_refused(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_file(tmp_path, text), env)
    assert message in str(err.value) and isinstance(err.value, BadInput) and err.value.exit_code == 2


def test_each_component_checks_only_its_own_sections(tmp_path: Path) -> None:
    """The agent's typo is the agent's to refuse; the API starts."""
    conf = _file(tmp_path, "[agent]\ntimeout = 99999\n")
    assert load_config(conf, {}).workers == 2
    with pytest.raises(ConfigError, match=r"between 0.1 and 3600"):
        load_agent_config(conf, {})
    with pytest.raises(ConfigError, match="not an octal mode"):
        load_agent_config(None, {"CONFIGDRIVE_AGENT_SOCKET_MODE": "rw"})


def test_the_secret_comes_only_from_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    with pytest.raises(ConfigError, match="needs the shared secret"):
        load_agent_config(None, {"CONFIGDRIVE_AGENT_SECRET": "s3cret"}).check()
    load_agent_config(None, {"CONFIGDRIVE_AGENT_SECRET_FILE": str(secret)}).check()
    with pytest.raises(ConfigError, match="is not http://HOST"):
        load_agent_config(None, {"CONFIGDRIVE_AGENT_SECRET_FILE": str(secret),
                                 "CONFIGDRIVE_AGENT_API": "https://api"}).check()


def test_the_readme_example_is_accepted_by_every_component(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("#### Configuration file"):readme.index("#### Environment")]
    conf = _file(tmp_path, section.split("```toml\n", 1)[1].split("```", 1)[0])
    assert (load_config(conf, {}).store_url or "").startswith("postgresql://")
    assert load_agent_config(conf, {}).socket_mode == 0o660
    assert load(LibvirtSettings, conf, {}).force_config_drive is False


@pytest.mark.parametrize(("text", "message"), [
    ("[agent]\nsocket_mode = 1.5\n", "[agent] socket_mode: 1.5 is not a whole number"),
    ("[agent]\nsocket_mode = true\n", "[agent] socket_mode: True is not a whole number")])
def test_a_mode_is_an_octal_text_or_an_integer(tmp_path: Path, text: str, message: str) -> None:
    """A float or a boolean mode reached the agent's start-up and ended in a traceback."""
    with pytest.raises(ConfigError) as err:
        load_agent_config(_file(tmp_path, text), {})
    assert message in str(err.value)
    assert load_agent_config(_file(tmp_path, '[agent]\nsocket_mode = "0600"\n'), {}).socket_mode == 0o600



def test_store_commands_read_only_the_store_section(tmp_path: Path) -> None:
    """`instances` opens the store and nothing else: a mistake in [api] is the API's to
    report, not a reason to refuse `instances list`; one in [store] still stops it (exit 2)."""
    from tests.conftest import run_cli

    data = tmp_path / "data"
    conf = _file(tmp_path, f'[store]\ndata_dir = "{data}"\n[api]\nworkerz = 2\n')
    listed = run_cli("instances", "--config", str(conf), "list")
    assert listed.returncode == 0, listed.stderr
    served = run_cli("serve", "api", "--config", str(conf), "--mode", "direct")
    assert served.returncode == 2 and b"unknown key 'workerz' in [api]" in served.stderr
    bad = _file(tmp_path, "[store]\nurll = 'x'\n")
    refused = run_cli("instances", "--config", str(bad), "list")
    assert refused.returncode == 2 and b"unknown key 'urll' in [store]" in refused.stderr
