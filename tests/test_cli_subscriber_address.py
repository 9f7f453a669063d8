"""``siprouter subscriber`` / ``siprouter address``: data written, bad input refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprouter.cli import main
from siprouter.storage.credentials import open_credential_store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_subscriber_lifecycle(capsys: pytest.CaptureFixture[str], db: str) -> None:
    assert run(capsys, "subscriber", "add", "alice@Example.com", "s3cret", "--db", db)[0] == 0
    assert run(capsys, "subscriber", "add", "sip:bob@example.com", "pw", "--db", db)[0] == 0
    rc, out, _ = run(capsys, "subscriber", "list", "--db", db)
    assert rc == 0 and out.split() == ["alice@example.com", "bob@example.com"]
    assert run(capsys, "subscriber", "passwd", "alice@example.com", "new", "--db", db)[0] == 0
    store = open_credential_store(db)
    row = store.get("alice", "example.com")
    assert row is not None and row.password == "new"
    store.close()
    assert run(capsys, "subscriber", "rm", "bob@example.com", "--db", db)[0] == 0
    rc, out, _ = run(capsys, "subscriber", "list", "--db", db)
    assert out.split() == ["alice@example.com"]


def test_subscriber_db_from_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "main.db"}"\n'
                   f'[modules.auth_db]\ndb_url = "sqlite:///{tmp_path / "auth.db"}"\n')
    assert run(capsys, "subscriber", "add", "a@b.example", "pw", "-c", str(cfg))[0] == 0
    assert (tmp_path / "auth.db").exists()
    store = open_credential_store(f"sqlite:///{tmp_path / 'auth.db'}")
    assert store.get("a", "b.example") is not None
    store.close()


@pytest.mark.parametrize(("argv", "code", "msg"), [
    (["subscriber", "add", "alice@", "pw"], 2, "invalid SIP URI"),
    (["subscriber", "add", "example.com", "pw"], 2, "expected USER@DOMAIN"),
    (["subscriber", "add", "a@b.com;x=1", "pw"], 2, "expected USER@DOMAIN"),
    (["subscriber", "add", "a@b.com", ""], 2, "must not be empty"),
    (["subscriber", "add", "a@b.com"], 2, "required"),
    (["subscriber", "passwd", "nobody@b.com", "pw"], 1, "no subscriber nobody@b.com"),
    (["subscriber", "rm", "nobody@b.com"], 1, "no subscriber"),
    (["subscriber"], 2, "an action is required"),
    (["address", "add", "x", "1.2.3.4"], 2, "bad group"),
    (["address", "add", "1", "1.2.3.400"], 2, "bad IP address"),
    (["address", "add", "1", "10.0.0.1/8"], 2, "host bits"),
    (["address", "add", "1", "10.0.0.1", "99999"], 2, "bad port"),
    (["address", "rm", "7", "10.0.0.1"], 1, "unknown group 7"),
])
def test_bad_input_one_line_nonzero(capsys: pytest.CaptureFixture[str], db: str,
                                    argv: list[str], code: int, msg: str) -> None:
    rc, _out, err = run(capsys, *argv, "--db", db)
    assert rc == code
    assert msg in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_duplicate_subscriber_refused(capsys: pytest.CaptureFixture[str], db: str) -> None:
    assert run(capsys, "subscriber", "add", "a@b.com", "pw", "--db", db)[0] == 0
    rc, _, err = run(capsys, "subscriber", "add", "a@b.com", "pw2", "--db", db)
    assert rc == 1 and "exists" in err


def test_database_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "subscriber", "add", "a@b.com", "pw", "--db",
                     "postgresql://root@127.0.0.1:1/test")
    assert rc == 1 and "cannot connect" in err and err.count("\n") == 1


def test_address_lifecycle(capsys: pytest.CaptureFixture[str], db: str) -> None:
    assert run(capsys, "address", "add", "1", "10.0.0.0/8", "--db", db)[0] == 0
    assert run(capsys, "address", "add", "1", "192.0.2.1", "5060", "gw", "--db", db)[0] == 0
    assert run(capsys, "address", "add", "2", "2001:db8::/32", "--db", db)[0] == 0
    rc, out, _ = run(capsys, "address", "list", "--db", db)
    assert out.splitlines() == ["1 10.0.0.0/8 0", "1 192.0.2.1/32 5060 gw",
                                "2 2001:db8::/32 0"]
    rc, _, err = run(capsys, "address", "add", "1", "192.0.2.1", "5060", "--db", db)
    assert rc == 1 and "already has" in err
    assert run(capsys, "address", "rm", "1", "10.0.0.0/8", "--db", db)[0] == 0
    rc, _, err = run(capsys, "address", "rm", "1", "10.0.0.0/8", "--db", db)
    assert rc == 1 and "no entry" in err
    rc, out, _ = run(capsys, "address", "list", "--db", db)
    assert len(out.splitlines()) == 2
