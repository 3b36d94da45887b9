"""`detector register | expectations | sync` against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import textwrap

import pytest
from aiohttp import web

from detector import cli as top_cli
from detector.registration import cli
from detector.registration.model import parse_registration
from detector.registration.service import InMemoryRegistrationService
from regtest_helpers import TOKEN, VALID, make_app

GOOD = textwrap.dedent(
    """\
    experiment: subs-mvp-crm-qa
    owner: subscriptions
    starts_at: 2021-02-09T18:00:00Z
    population:
      allowlist: [qa-001, qa-002, qa-003]
      max_users: 3
    severity: critical
    """
)
ROLLOUT = textwrap.dedent(
    """\
    experiment: checkout-rollout
    population: {fraction: 0.1}
    variants: {control: 0.5, treatment: 0.5}
    """
)
RISKY = GOOD.replace("max_users: 3", "max_users: 3\n  fraction: 0.6")
BAD = GOOD.replace("max_users: 3", "max_users: -3")


@pytest.fixture
async def server():
    service = InMemoryRegistrationService()
    runner = web.AppRunner(make_app(service))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield service, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def run(*argv, token=TOKEN, url=None):
    out, err = io.StringIO(), io.StringIO()
    args = list(argv)
    if url:
        args += ["--url", url]
    if token:
        args += ["--token", token]
    code = await asyncio.to_thread(cli.main, args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def test_register_file_creates_and_is_idempotent(server, tmp_path):
    service, url = server
    f = write(tmp_path, "qa.yaml", GOOD)
    code, out, err = await run("register", f, url=url)
    assert code == 0, err
    assert "subs-mvp-crm-qa: created" in out
    assert service.get("subs-mvp-crm-qa").max_users == 3
    code, out, _ = await run("register", f, url=url)
    assert code == 0 and "leave unchanged" in out and service.writes == 1


async def test_invalid_file_exits_1_without_a_server(tmp_path):
    f = write(tmp_path, "bad.yaml", BAD)
    code, _, err = await run("register", f, url="http://127.0.0.1:9")
    assert code == 1
    assert "population.max_users" in err and "bad.yaml" in err


async def test_invalid_file_in_dir_sends_nothing(server, tmp_path):
    service, url = server
    write(tmp_path, "a.yaml", ROLLOUT)
    write(tmp_path, "b.yaml", BAD)
    code, _, err = await run("register", str(tmp_path), url=url)
    assert code == 1 and "nothing was sent" in err
    assert service.writes == 0


async def test_risky_needs_confirm_exit_3_then_0(server, tmp_path):
    service, url = server
    write(tmp_path, "a.yaml", ROLLOUT)
    write(tmp_path, "qa.yaml", RISKY)
    code, out, err = await run("register", str(tmp_path), url=url)
    assert code == 3, (out, err)
    assert "allowlist_with_large_fraction" in err and "--confirm" in err
    assert service.writes == 0  # the safe one in the same directory is not written either
    code, out, err = await run("register", str(tmp_path), "--confirm", url=url)
    assert code == 0, err
    assert service.get("subs-mvp-crm-qa").fraction == 0.6 and service.get("checkout-rollout") is not None


async def test_dry_run_writes_nothing(server, tmp_path):
    service, url = server
    f = write(tmp_path, "qa.yaml", GOOD)
    code, out, _ = await run("register", f, "--dry-run", url=url)
    assert code == 0 and "would create" in out and "population.max_users" in out
    assert service.writes == 0
    f2 = write(tmp_path, "risky.yaml", RISKY)
    code, _, _ = await run("register", f2, "--dry-run", url=url)
    assert code == 3 and service.writes == 0


async def test_wrong_token_and_unreachable_exit_4(server, tmp_path):
    service, url = server
    f = write(tmp_path, "qa.yaml", GOOD)
    code, _, err = await run("register", f, url=url, token="nope")
    assert code == 4 and "invalid token" in err
    code, _, err = await run("register", f, url=url, token=None)
    assert code == 4 and "authentication required" in err
    code, _, err = await run("register", f, url="http://127.0.0.1:9")
    assert code == 4 and "cannot reach" in err
    assert service.writes == 0


async def test_url_from_environment(server, tmp_path, monkeypatch):
    service, url = server
    monkeypatch.setenv("DETECTOR_URL", url)
    monkeypatch.setenv("DETECTOR_API_TOKEN", TOKEN)
    code, _, err = await run("register", write(tmp_path, "qa.yaml", GOOD), token=None)
    assert code == 0, err
    assert service.writes == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["register"],
        ["register", "--bogus", "x.yaml"],
        ["expectations"],
        ["expectations", "frobnicate"],
        ["expectations", "show"],
        ["sync"],
        ["nope"],
        [],
    ],
)
async def test_usage_errors_exit_2(argv):
    code = await asyncio.to_thread(cli.main, argv, out=io.StringIO(), err=io.StringIO())
    assert code == 2


async def test_sync_requires_a_directory(tmp_path):
    code, _, err = await run("sync", write(tmp_path, "qa.yaml", GOOD), url="http://127.0.0.1:9")
    assert code == 2 and "not a directory" in err


async def test_missing_path_is_invalid(tmp_path):
    code, _, err = await run("register", str(tmp_path / "missing.yaml"), url="http://127.0.0.1:9")
    assert code == 1 and "no such file" in err


async def test_registrations_list_show_history_status_delete(server, tmp_path):
    service, url = server
    await service.put(parse_registration(VALID), "seed")
    code, out, _ = await run("expectations", "list", url=url)
    assert code == 0 and "subs-mvp-crm-qa" in out
    code, out, _ = await run("expectations", "show", "subs-mvp-crm-qa", url=url)
    assert code == 0 and "max_users: 3" in out
    code, out, _ = await run("expectations", "show", "unknown-exp", url=url)
    assert code == 1
    code, out, _ = await run("expectations", "history", "subs-mvp-crm-qa", url=url)
    assert code == 0 and "seed" in out
    code, out, _ = await run("expectations", "status", "subs-mvp-crm-qa", url=url)
    assert code == 0 and '"registered": true' in out

    service.observations["subs-mvp-crm-qa"] = {"enrolled_users": 3, "eligible_users": 100}
    code, _, err = await run("expectations", "delete", "subs-mvp-crm-qa", url=url)
    assert code == 3 and "delete_with_traffic" in err
    assert service.get("subs-mvp-crm-qa") is not None
    code, _, _ = await run("expectations", "delete", "subs-mvp-crm-qa", "--confirm", url=url)
    assert code == 0 and service.get("subs-mvp-crm-qa") is None
    code, _, _ = await run("expectations", "delete", "subs-mvp-crm-qa", "--confirm", url=url)
    assert code == 1


async def test_sync_with_prune(server, tmp_path):
    service, url = server
    await service.put(parse_registration(dict(VALID, experiment="old-exp")), "seed")
    write(tmp_path, "qa.yaml", GOOD)
    write(tmp_path, "rollout.yaml", ROLLOUT)
    code, out, _ = await run("sync", str(tmp_path), url=url)
    assert code == 0 and "old-exp" in out and "--prune" in out
    assert set(service.all()) == {"old-exp", "subs-mvp-crm-qa", "checkout-rollout"}
    code, out, err = await run("sync", str(tmp_path), "--prune", url=url)
    assert code == 0, err
    assert set(service.all()) == {"subs-mvp-crm-qa", "checkout-rollout"}


async def test_validate_locally(tmp_path):
    code, out, _ = await run("expectations", "validate", write(tmp_path, "qa.yaml", GOOD), token=None)
    assert code == 0 and "subs-mvp-crm-qa: ok" in out
    code, _, err = await run("expectations", "validate", write(tmp_path, "bad.yaml", BAD), token=None)
    assert code == 1 and "population.max_users" in err


async def test_top_level_dispatch_passes_the_command_name(tmp_path, capsys):
    code = await asyncio.to_thread(top_cli.main, ["expectations", "validate", write(tmp_path, "qa.yaml", GOOD)])
    assert code == 0
    assert "subs-mvp-crm-qa: ok" in capsys.readouterr().out
